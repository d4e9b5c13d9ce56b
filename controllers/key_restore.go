package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/keystore"
)

// reconcileRestore is the restore phase: a Key with spec.restoreFrom takes
// back the tombstoned versions of that key ID, under the policy the key had
// when it was deleted. Only versions deleted from this namespace, still
// inside their window, can be restored; a partial restore is finished by the
// next run. A refused restore is a terminal problem.
func (r *KeyReconciler) reconcileRestore(ctx context.Context, s *keyScope) error {
	key := s.key
	if key.Spec.RestoreFrom == "" || key.Spec.RestoreFrom != s.keyID {
		return nil
	}
	plan := planRestore(key, s.versions, s.seen.restoreSource, r.Clock.Now())
	s.restore = &restoreOutcome{refused: plan.refused}
	if plan.refused != nil {
		s.terminal = plan.refused
		r.Recorder.Eventf(key, nil, corev1.EventTypeWarning, ReasonRestoreFailed, StepRestore, plan.refused.message)
		return nil
	}
	if len(plan.pending) == 0 {
		return nil
	}
	// The key comes back under the policy it had, before its material does.
	if err := r.restorePolicy(ctx, key, access.ParseDeletedPolicy(plan.pending[0].DeletedPolicy)); err != nil {
		return err
	}
	for _, v := range plan.pending {
		if err := r.Store.Restore(ctx, v, key.Namespace, key.Name); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	versions, err := r.Store.ActiveByKeyName(ctx, key.Namespace, key.Name)
	if err != nil {
		return err
	}
	s.versions, s.restore.restored = versions, len(plan.pending)
	r.Recorder.Eventf(key, nil, corev1.EventTypeNormal, ReasonRestored, StepRestore,
		"Restored key %s with %d versions", s.keyID, len(s.versions))
	return nil
}

// restorePlan is what the restore phase is to do: take back pending, or
// refuse.
type restorePlan struct {
	pending []keystore.Version
	refused *terminalProblem
}

// planRestore decides the restore of key (keyID spec.restoreFrom) from its
// live versions and the versions of that key ID (source) at now. The
// tombstones it may take back were deleted from key's namespace and are
// still inside their window; with none, and no live version, there is
// nothing to restore. Every one must have key's keySpec.
func planRestore(key *kmsv1alpha1.Key, active, source []keystore.Version, now time.Time) restorePlan {
	keyID := key.Spec.RestoreFrom
	var pending []keystore.Version
	for _, v := range source {
		if v.Tombstone && v.KeyNamespace == key.Namespace && now.Before(v.DestroyAfter) {
			pending = append(pending, v)
		}
	}
	if len(active) == 0 && len(pending) == 0 {
		return restorePlan{refused: &terminalProblem{kmsv1alpha1.KeyReasonRestoreSourceNotFound,
			fmt.Sprintf("No key with keyID %s was deleted from namespace %s within its deletion window", keyID, key.Namespace)}}
	}
	for _, v := range pending {
		if v.KeySpec != string(key.Spec.KeySpec) {
			return restorePlan{refused: &terminalProblem{kmsv1alpha1.KeyReasonRestoreKeySpecMismatch,
				fmt.Sprintf("Deleted key %s has keySpec %s, this Key asks for %s", keyID, v.KeySpec, key.Spec.KeySpec)}}
		}
	}
	return restorePlan{pending: pending}
}

// restorePolicy re-creates the KeyPolicy a restored key had when it was
// deleted, bound to the restored Key. A KeyPolicy of that name bound to this
// Key means it is done; one bound to something else keeps its name and the
// restored policy gets a generated one.
func (r *KeyReconciler) restorePolicy(ctx context.Context, key *kmsv1alpha1.Key, rec access.DeletedPolicy) error {
	if rec.Spec == nil {
		return nil
	}
	existing := &kmsv1alpha1.KeyPolicyList{}
	if err := r.List(ctx, existing, client.InNamespace(key.Namespace)); err != nil {
		return err
	}
	for _, p := range existing.Items {
		if uid, ok := access.BoundKey(p.OwnerReferences, p.Spec.KeyRef.Name); ok && uid == key.UID && p.Annotations[kmsv1alpha1.RestoredPolicyAnnotation] == key.Spec.RestoreFrom {
			return nil
		}
	}
	pol := &kmsv1alpha1.KeyPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: rec.Name,
			Annotations:     map[string]string{kmsv1alpha1.RestoredPolicyAnnotation: key.Spec.RestoreFrom},
			OwnerReferences: []metav1.OwnerReference{access.KeyOwnerReference(key)}},
		Spec: *rec.Spec,
	}
	pol.Spec.KeyRef.Name = key.Name
	err := r.Create(ctx, pol)
	if apierrors.IsAlreadyExists(err) {
		pol.Name, pol.GenerateName, pol.ResourceVersion = "", rec.Name+"-", ""
		err = r.Create(ctx, pol)
	}
	if err != nil {
		return fmt.Errorf("restore KeyPolicy %s: %w", rec.Name, err)
	}
	r.Recorder.Eventf(key, nil, corev1.EventTypeNormal, ReasonRestored, StepRestore,
		"Restored KeyPolicy %s, which governed key %s when it was deleted", pol.Name, key.Spec.RestoreFrom)
	return nil
}
