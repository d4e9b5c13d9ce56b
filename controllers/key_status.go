package controllers

import (
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keyspec"
	"github.com/kubekms/kubekms/internal/kmscrypto"
)

// maxStatusVersions bounds status.versions; older versions still exist.
const maxStatusVersions = 50

// computeStatus derives the Key's status from what this reconcile saw and
// did (s). It never reads the previous status, except to keep condition
// transition times and, for a key whose material is missing, what it knew.
// Ready summarises the phases: the first terminal problem, else the
// material (imported or generated), else the desired state.
func computeStatus(key *kmsv1alpha1.Key, s *keyScope) kmsv1alpha1.KeyStatus {
	st := kmsv1alpha1.KeyStatus{
		KeyID:              publishedKeyID(key, s),
		KeyUsage:           effectiveKeyUsage(&key.Spec),
		ObservedGeneration: key.Generation,
		Conditions:         slices.Clone(key.Status.Conditions),
		// Written by the data plane; the controller only carries it over.
		LastUsed: key.Status.LastUsed,
		State:    kmsv1alpha1.KeyStateCreating,
	}
	external := key.Spec.Origin == kmsv1alpha1.KeyOriginExternal
	ready := metav1.Condition{Type: kmsv1alpha1.KeyConditionReady, ObservedGeneration: key.Generation}
	switch {
	case s.terminal != nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, s.terminal.reason, s.terminal.message
		if external {
			st.State = kmsv1alpha1.KeyStatePendingImport
		}
		if s.terminal.reason == kmsv1alpha1.KeyReasonMaterialMissing {
			// Keep what was known, so the latch holds on the next run.
			st.State, st.CurrentVersion, st.Versions = key.Status.State, key.Status.CurrentVersion, key.Status.Versions
		}
	case external && (len(s.versions) == 0 || s.imported.expired):
		imported := importedCondition(key, s.imported, len(s.versions))
		st.State = kmsv1alpha1.KeyStatePendingImport
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, imported.Reason, imported.Message
	case len(s.versions) == 0:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, kmsv1alpha1.KeyReasonCreating, "Creating key material"
	case key.Spec.State == kmsv1alpha1.KeyDesiredDisabled:
		st.State = kmsv1alpha1.KeyStateDisabled
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, kmsv1alpha1.KeyReasonDisabled, "Key is disabled: it refuses every cryptographic operation"
	default:
		st.State = kmsv1alpha1.KeyStateEnabled
		ready.Status, ready.Reason, ready.Message = metav1.ConditionTrue, kmsv1alpha1.KeyReasonEnabled, "Key is enabled"
	}
	meta.SetStatusCondition(&st.Conditions, ready)
	// A phase that did not run (a terminal problem came first) leaves its
	// condition as it was.
	if s.imported != nil {
		meta.SetStatusCondition(&st.Conditions, importedCondition(key, s.imported, len(s.versions)))
		st.ImportParameters = s.imported.params
	}
	if s.restore != nil {
		meta.SetStatusCondition(&st.Conditions, restoredCondition(key, s.restore))
	}

	if n := len(s.versions); n > 0 {
		current := s.versions[n-1]
		st.CurrentVersion = current.Version
		for _, v := range s.versions[max(0, n-maxStatusVersions):] {
			st.Versions = append(st.Versions, kmsv1alpha1.KeyVersion{Version: v.Version, CreatedAt: metav1.NewTime(v.CreatedAt)})
		}
		if current.Version > 1 {
			st.LastRotationTime = new(metav1.NewTime(current.CreatedAt))
		}
		if len(current.PublicKey) > 0 {
			st.PublicKey = kmscrypto.PublicKeyPEM(current.PublicKey)
		}
	}
	if !s.nextRotation.IsZero() {
		st.NextRotationTime = new(metav1.NewTime(s.nextRotation))
	}
	return st
}

// publishedKeyID is the keyID status shows. It is the key's identity, except
// that a refused restore with no material publishes none (status never
// claims a keyID no material labelled for this Key carries), and a key
// stopped by an unsupported keySpec or missing material keeps the one it had.
func publishedKeyID(key *kmsv1alpha1.Key, s *keyScope) string {
	if t := s.terminal; t != nil && (t.reason == kmsv1alpha1.KeyReasonUnsupportedKeySpec || t.reason == kmsv1alpha1.KeyReasonMaterialMissing) {
		return key.Status.KeyID
	}
	if s.restore != nil && s.restore.refused != nil && len(s.versions) == 0 {
		return ""
	}
	return s.keyID
}

// importedCondition is the Imported condition of an External key, from what
// the import phase found and how many live versions the key has.
func importedCondition(key *kmsv1alpha1.Key, imp *importOutcome, versions int) metav1.Condition {
	c := metav1.Condition{Type: kmsv1alpha1.KeyConditionImported, ObservedGeneration: key.Generation,
		Status: metav1.ConditionTrue, Reason: kmsv1alpha1.KeyReasonImported, Message: "Key material is imported"}
	switch w := imp.waiting; {
	case w != nil && (w.reason == kmsv1alpha1.KeyReasonImportFailed || versions == 0):
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, w.reason, w.message
	case imp.expired:
		c.Status, c.Reason = metav1.ConditionFalse, kmsv1alpha1.KeyReasonMaterialExpired
		c.Message = fmt.Sprintf("Imported material expired at %s (spec.import.validTo)", key.Spec.Import.ValidTo.UTC().Format(time.RFC3339))
	}
	return c
}

// restoredCondition is the Restored condition of a Key with restoreFrom.
func restoredCondition(key *kmsv1alpha1.Key, r *restoreOutcome) metav1.Condition {
	c := metav1.Condition{Type: kmsv1alpha1.KeyConditionRestored, ObservedGeneration: key.Generation,
		Status: metav1.ConditionTrue, Reason: kmsv1alpha1.KeyReasonRestored,
		Message: fmt.Sprintf("Restored key %s, deleted from namespace %s within its deletion window", key.Spec.RestoreFrom, key.Namespace)}
	if r.refused != nil {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, r.refused.reason, r.refused.message
	}
	return c
}

// effectiveKeyUsage is spec.keyUsage, or the key-spec table's default usage
// for keySpec when it is omitted (ENCRYPT_DECRYPT for a spec the table does
// not know, which the CRD's enum refuses anyway).
func effectiveKeyUsage(spec *kmsv1alpha1.KeySpec) kmsv1alpha1.KeyUsage {
	if spec.KeyUsage != "" {
		return spec.KeyUsage
	}
	if s, ok := keyspec.Lookup(string(spec.KeySpec)); ok {
		return s.DefaultUsage
	}
	return kmsv1alpha1.KeyUsageEncryptDecrypt
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

// importEvent is the Event for a change of the Imported condition worth a
// human's attention: a new failure message, or the material expiring.
func importEvent(before []metav1.Condition, after metav1.Condition) (reason, note string, ok bool) {
	old := meta.FindStatusCondition(before, kmsv1alpha1.KeyConditionImported)
	if old != nil && old.Reason == after.Reason && old.Message == after.Message {
		return "", "", false
	}
	switch after.Reason {
	case kmsv1alpha1.KeyReasonImportFailed:
		return ReasonImportFailed, after.Message, true
	case kmsv1alpha1.KeyReasonMaterialExpired:
		return ReasonMaterialExpired, after.Message, true
	}
	return "", "", false
}
