package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keystore"
)

// A Key reconcile has three kinds of trouble, kept apart so a reader sees
// which is which:
//   - an error (returned): kubekms or the API server failed; controller-runtime
//     retries with backoff;
//   - a retryableProblem: the key waits for something outside kubekms (an
//     import Secret, an RBAC binding); a condition says what, and the
//     reconcile asks to run again after RequeueAfter, without an error;
//   - a terminalProblem: the key cannot progress until a person acts; Ready
//     says why and the reconcile ends with reconcile.TerminalError (no retry;
//     the next change of the Key or of its material starts a new one).

// terminalProblem stops a Key where it is: its spec asks for what cannot be
// (a keySpec this release cannot make, a restore of nothing) or material it
// had is gone. Retrying cannot help.
type terminalProblem struct {
	reason, message string
}

// retryableProblem is what an External key waits for outside kubekms. It is
// shown, not returned as an error, and looked at again after the import poll
// interval.
type retryableProblem struct {
	reason, message string
}

// keyPhase is one step of reconciling a live Key. A phase reads the scope,
// writes what it owns (material, tombstones, policies, the import Secret),
// records what it did in the scope and returns only real errors. A phase
// that meets a terminal problem records it in scope.terminal; no later
// phase runs.
type keyPhase func(ctx context.Context, s *keyScope) error

// keyScope is one reconcile of one Key: what observe saw (seen, never
// changed afterwards) and what each phase decided and did, in phase order.
// computeStatus derives the status from it.
type keyScope struct {
	key  *kmsv1alpha1.Key
	seen observation

	// keyID is the key's identity (keyIDFor), under which phases write.
	keyID string
	// versions are the live versions, oldest first: seen.active, read
	// again by every phase that adds or restores one.
	versions []keystore.Version
	// terminal is the first terminal problem met, if any.
	terminal *terminalProblem

	// restore is what the restore phase did; nil when it had nothing to do
	// (no spec.restoreFrom, or live material of another key ID).
	restore *restoreOutcome
	// imported is what the import phase found and did; nil for Generated
	// keys and when a terminal problem came first.
	imported *importOutcome
	// nextRotation is when scheduled rotation is due (rotation phase).
	nextRotation time.Time
	// wake is the earliest time a phase asked to look at the key again.
	wake time.Time
}

// restoreOutcome is what the restore phase did for a Key with restoreFrom.
type restoreOutcome struct {
	// refused says why the restore cannot happen (also scope.terminal).
	refused *terminalProblem
	// restored counts the versions taken back from tombstones this run
	// (0: an earlier run restored them).
	restored int
}

// importOutcome is what the import phase of an External key found and did.
type importOutcome struct {
	// params are the published import parameters.
	params *kmsv1alpha1.KeyImportParameters
	// secret is the import Secret read and not imported this run, if any:
	// an ImportFailed Event is related to it.
	secret *corev1.Secret
	// waiting says why no material was imported this run.
	waiting *retryableProblem
	// version is the version imported this run (0: none).
	version int32
	// expired: the material is past spec.import.validTo.
	expired bool
}

// newKeyScope starts a reconcile of key from what observe saw.
func newKeyScope(key *kmsv1alpha1.Key, seen observation) *keyScope {
	return &keyScope{key: key, seen: seen, keyID: keyIDFor(key, seen), versions: seen.active}
}

// wakeAt asks for another reconcile at t, keeping the earliest request.
func (s *keyScope) wakeAt(t time.Time) {
	if !t.IsZero() && (s.wake.IsZero() || t.Before(s.wake)) {
		s.wake = t
	}
}

// result is how the reconcile ends: a terminal error without retry, or a
// wake-up at the earliest time a phase asked for (at least a second away).
func (s *keyScope) result(now time.Time) (ctrl.Result, error) {
	if s.terminal != nil {
		return ctrl.Result{}, reconcile.TerminalError(fmt.Errorf("%s: %s", s.terminal.reason, s.terminal.message))
	}
	if s.wake.IsZero() {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: max(s.wake.Sub(now), time.Second)}, nil
}

// owner names the Key new versions belong to.
func (s *keyScope) owner() keystore.Owner {
	return keystore.Owner{Namespace: s.key.Namespace, Name: s.key.Name, KeyID: s.keyID, KeySpec: string(s.key.Spec.KeySpec)}
}
