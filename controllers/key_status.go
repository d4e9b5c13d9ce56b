package controllers

import (
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/crypto"
	"github.com/kubekms/kubekms/internal/keystore"
)

// maxStatusVersions bounds status.versions; older versions still exist.
const maxStatusVersions = 50

// blocker is a terminal reason the key cannot progress: an unsupported spec
// or a restore that cannot happen. It is shown, not retried.
type blocker struct {
	reason, message string
}

// observed is what one reconcile found: the key ID and the stored versions.
type observed struct {
	keyID        string
	versions     []keystore.Version
	nextRotation time.Time
	blocked      *blocker
	// wake is the earliest time the key needs looking at again.
	wake time.Time

	// External keys: the published import parameters, why material is not
	// (or could not be) imported, and whether it has expired.
	importParams  *kmsv1alpha1.KeyImportParameters
	importSecret  *corev1.Secret // the import Secret read this time, if any
	importProblem *blocker
	expired       bool
}

// wakeAt asks for another reconcile at t, keeping the earliest request.
func (o *observed) wakeAt(t time.Time) {
	if !t.IsZero() && (o.wake.IsZero() || t.Before(o.wake)) {
		o.wake = t
	}
}

// computeStatus derives the Key's status from what was observed now. It never
// reads the previous status, except to keep condition transition times.
func computeStatus(key *kmsv1alpha1.Key, obs observed) kmsv1alpha1.KeyStatus {
	st := kmsv1alpha1.KeyStatus{
		KeyID:              obs.keyID,
		KeyUsage:           effectiveKeyUsage(&key.Spec),
		ObservedGeneration: key.Generation,
		Conditions:         slices.Clone(key.Status.Conditions),
		// Written by the data plane; the controller only carries it over.
		LastUsed: key.Status.LastUsed,
		State:    kmsv1alpha1.KeyStateCreating,
	}
	ready := metav1.Condition{Type: kmsv1alpha1.KeyConditionReady, ObservedGeneration: key.Generation}
	switch {
	case obs.blocked != nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, obs.blocked.reason, obs.blocked.message
		if key.Spec.Origin == kmsv1alpha1.KeyOriginExternal {
			st.State = kmsv1alpha1.KeyStatePendingImport
		}
		if obs.blocked.reason == kmsv1alpha1.KeyReasonMaterialMissing {
			// Keep what was known, so the latch holds on the next run.
			st.State, st.CurrentVersion, st.Versions = key.Status.State, key.Status.CurrentVersion, key.Status.Versions
		}
	case key.Spec.Origin == kmsv1alpha1.KeyOriginExternal && (len(obs.versions) == 0 || obs.expired):
		imported := importCondition(key, obs)
		st.State = kmsv1alpha1.KeyStatePendingImport
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, imported.Reason, imported.Message
	case len(obs.versions) == 0:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, kmsv1alpha1.KeyReasonCreating, "Creating key material"
	case key.Spec.State == kmsv1alpha1.KeyDesiredDisabled:
		st.State = kmsv1alpha1.KeyStateDisabled
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, kmsv1alpha1.KeyReasonDisabled, "Key is disabled: it refuses every cryptographic operation"
	default:
		st.State = kmsv1alpha1.KeyStateEnabled
		ready.Status, ready.Reason, ready.Message = metav1.ConditionTrue, kmsv1alpha1.KeyReasonEnabled, "Key is enabled"
	}
	meta.SetStatusCondition(&st.Conditions, ready)
	if key.Spec.Origin == kmsv1alpha1.KeyOriginExternal && obs.blocked == nil {
		meta.SetStatusCondition(&st.Conditions, importCondition(key, obs))
		st.ImportParameters = obs.importParams
	}

	if n := len(obs.versions); n > 0 {
		current := obs.versions[n-1]
		st.CurrentVersion = current.Version
		for _, v := range obs.versions[max(0, n-maxStatusVersions):] {
			st.Versions = append(st.Versions, kmsv1alpha1.KeyVersion{Version: v.Version, CreatedAt: metav1.NewTime(v.CreatedAt)})
		}
		if current.Version > 1 {
			st.LastRotationTime = new(metav1.NewTime(current.CreatedAt))
		}
		if len(current.PublicKey) > 0 {
			st.PublicKey = crypto.PublicKeyPEM(current.PublicKey)
		}
	}
	if !obs.nextRotation.IsZero() {
		st.NextRotationTime = new(metav1.NewTime(obs.nextRotation))
	}
	return st
}

// effectiveKeyUsage is spec.keyUsage, or what keySpec implies when it is
// omitted: the rule the CRD's validation applies too.
func effectiveKeyUsage(spec *kmsv1alpha1.KeySpec) kmsv1alpha1.KeyUsage {
	if spec.KeyUsage != "" {
		return spec.KeyUsage
	}
	switch s := string(spec.KeySpec); {
	case strings.HasPrefix(s, "HMAC_"):
		return kmsv1alpha1.KeyUsageGenerateVerifyMAC
	case strings.HasPrefix(s, "ECC_"):
		return kmsv1alpha1.KeyUsageSignVerify
	default:
		return kmsv1alpha1.KeyUsageEncryptDecrypt
	}
}

// stateEvent is the Event for a change of observed state, if any. Only a
// change between Enabled and Disabled is an event; a status rebuilt from
// nothing is not.
func stateEvent(before, after kmsv1alpha1.KeyState) (reason, note string, ok bool) {
	switch {
	case before == kmsv1alpha1.KeyStateEnabled && after == kmsv1alpha1.KeyStateDisabled:
		return ReasonDisabled, "Disabled key", true
	case before == kmsv1alpha1.KeyStateDisabled && after == kmsv1alpha1.KeyStateEnabled:
		return ReasonEnabled, "Enabled key", true
	}
	return "", "", false
}
