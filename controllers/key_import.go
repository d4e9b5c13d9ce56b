package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/crypto"
	"github.com/kubekms/kubekms/internal/keystore"
)

const (
	// ImportParametersTTL is how long a wrapping key and import token are
	// accepted, as on AWS KMS.
	ImportParametersTTL = 24 * time.Hour
	// DefaultImportPollInterval: the manager watches no Secret outside its
	// own namespace, so while a Key names an import Secret it looks this often.
	DefaultImportPollInterval = 15 * time.Second
	// importStampPrefix marks the version made from one import Secret (by
	// UID), so a crash between import and deleting the Secret imports once.
	importStampPrefix = "import:"
)

// reconcileImport keeps an External key's import parameters current and
// imports the Secret named by spec.import.secretRef as a new version.
// Problems with the Secret are not errors: they are shown in the Imported
// condition and an Event, and looked at again on the next poll.
func (r *KeyReconciler) reconcileImport(ctx context.Context, key *kmsv1alpha1.Key, obs *observed) error {
	now := r.Clock.Now()
	if answered := answeredImport(key, obs.versions); answered != nil {
		// This import request is done (maybe by a run that crashed before
		// closing it): close it, so a Secret that appears later under the
		// same name does nothing.
		if err := r.closeImport(ctx, key, obs.keyID, *answered); err != nil {
			return err
		}
	}
	params, err := r.ensureImportParameters(ctx, obs.keyID, now)
	if err != nil {
		return err
	}
	obs.importParams = &kmsv1alpha1.KeyImportParameters{
		WrappingPublicKey: crypto.PublicKeyPEM(params.PublicKey),
		ExpiresAt:         metav1.NewTime(params.ExpiresAt),
	}
	obs.wakeAt(params.ExpiresAt)
	if v := key.Spec.Import; v != nil && v.ValidTo != nil {
		obs.expired = !now.Before(v.ValidTo.Time)
		if !obs.expired {
			obs.wakeAt(v.ValidTo.Time)
		}
	}
	if key.Spec.Import == nil || key.Spec.Import.SecretRef == nil {
		obs.importProblem = &blocker{kmsv1alpha1.KeyReasonPendingImport,
			"Set spec.import.secretRef to a Secret holding the wrapped material and import token (docs/keys.md)"}
		return nil
	}
	poll := r.ImportPollInterval
	if poll <= 0 {
		poll = DefaultImportPollInterval
	}
	obs.wakeAt(now.Add(poll))

	ref := types.NamespacedName{Namespace: key.Namespace, Name: key.Spec.Import.SecretRef.Name}
	secret := &corev1.Secret{}
	switch err := r.Reader.Get(ctx, ref, secret); {
	case apierrors.IsNotFound(err):
		obs.importProblem = &blocker{kmsv1alpha1.KeyReasonPendingImport, fmt.Sprintf("Waiting for Secret %s with %s and %s",
			ref, kmsv1alpha1.ImportSecretWrappedMaterial, kmsv1alpha1.ImportSecretToken)}
		return nil
	case apierrors.IsForbidden(err):
		obs.importProblem = &blocker{kmsv1alpha1.KeyReasonImportFailed, fmt.Sprintf(
			"kubekms may not read Secret %s: bind the ClusterRole kubekms-key-import to the kubekms ServiceAccount in namespace %s (docs/keys.md)", ref, ref.Namespace)}
		return nil
	case err != nil:
		return fmt.Errorf("read import Secret %s: %w", ref, err)
	}
	obs.importSecret = secret
	sum := sha256.Sum256(secret.Data[kmsv1alpha1.ImportSecretWrappedMaterial])
	if hex.EncodeToString(sum[:]) != key.Spec.Import.WrappedKeyMaterialSHA256 {
		obs.importProblem = &blocker{kmsv1alpha1.KeyReasonImportFailed, fmt.Sprintf(
			"Cannot import Secret %s: its %s does not match spec.import.wrappedKeyMaterialSHA256 (was it changed after the import was asked for?)", ref, kmsv1alpha1.ImportSecretWrappedMaterial)}
		return nil
	}

	stamp := importStamp(string(secret.UID), key)
	material, public, err := r.unwrapImportSecret(ctx, key, obs.keyID, params, secret, now)
	defer clear(material)
	if err != nil {
		obs.importProblem = &blocker{kmsv1alpha1.KeyReasonImportFailed, fmt.Sprintf("Cannot import Secret %s: %s", ref, err)}
		return nil
	}
	next := int32(1)
	if n := len(obs.versions); n > 0 {
		next = obs.versions[n-1].Version + 1
	}
	owner := keystore.Owner{Namespace: key.Namespace, Name: key.Name, KeyID: obs.keyID, KeySpec: string(key.Spec.KeySpec)}
	created, err := r.Store.Create(ctx, owner, next, material, public, now, stamp)
	if err != nil {
		return err
	}
	if !created {
		return fmt.Errorf("version %d of key %s was made concurrently; deciding again", next, obs.keyID)
	}
	r.Recorder.Eventf(key, secret, corev1.EventTypeNormal, ReasonImported, ActionImport,
		"Imported material from Secret %s as version %d of key %s", ref, next, obs.keyID)
	if obs.versions, err = r.Store.ActiveByKeyName(ctx, key.Namespace, key.Name); err != nil {
		return err
	}
	obs.importSecret = nil
	if err := r.closeImport(ctx, key, obs.keyID, keystore.Version{RotateRequest: stamp, CreatedAt: now}); err != nil {
		return err
	}
	// New parameters for the next import: a token is good for one.
	if params, err = r.ensureImportParameters(ctx, obs.keyID, now); err != nil {
		return err
	}
	obs.importParams.WrappingPublicKey, obs.importParams.ExpiresAt = crypto.PublicKeyPEM(params.PublicKey), metav1.NewTime(params.ExpiresAt)
	obs.importProblem = nil
	return nil
}

// importStamp marks the version made from one import request: the Secret
// (UID) named at one generation of the Key. A request is answered once; a
// new one needs a change of the Key, which the admin webhook checks as
// ImportKeyMaterial.
func importStamp(secretUID string, key *kmsv1alpha1.Key) string {
	return fmt.Sprintf("%s%s@%s", importStampPrefix, secretUID, requestOf(key))
}

// requestOf names a Key's current import request: its UID (a restored Key
// keeps the versions, and their stamps, of the Key it restores) and generation.
func requestOf(key *kmsv1alpha1.Key) string {
	return fmt.Sprintf("%s/%d", key.UID, key.Generation)
}

// answeredImport is the version that answered the Key's current import
// request, if there is a request and it was answered.
func answeredImport(key *kmsv1alpha1.Key, versions []keystore.Version) *keystore.Version {
	if key.Spec.Import == nil || key.Spec.Import.SecretRef == nil {
		return nil
	}
	suffix := "@" + requestOf(key)
	for i := range versions {
		if v := versions[i].RotateRequest; strings.HasPrefix(v, importStampPrefix) && strings.HasSuffix(v, suffix) {
			return &versions[i]
		}
	}
	return nil
}

// closeImport finishes an answered import request: it deletes the user's
// wrapped copy (only the Secret that was imported), retires the import
// parameters it used (the token is single-use) and clears
// spec.import.secretRef.
func (r *KeyReconciler) closeImport(ctx context.Context, key *kmsv1alpha1.Key, keyID string, answered keystore.Version) error {
	secretUID, _, _ := strings.Cut(strings.TrimPrefix(answered.RotateRequest, importStampPrefix), "@")
	secret := &corev1.Secret{}
	switch err := r.Reader.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: key.Spec.Import.SecretRef.Name}, secret); {
	case err == nil && string(secret.UID) == secretUID:
		if err := r.deleteImportSecret(ctx, secret); err != nil {
			return err
		}
	case err != nil && !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err):
		return fmt.Errorf("read import Secret: %w", err)
	}
	if p, err := r.Store.ImportParameters(ctx, keyID); err != nil {
		return err
	} else if p != nil && !p.ExpiresAt.Add(-ImportParametersTTL).After(answered.CreatedAt) {
		if err := r.Store.DeleteImportParameters(ctx, p); err != nil {
			return err
		}
	}
	orig := key.DeepCopy()
	key.Spec.Import.SecretRef, key.Spec.Import.WrappedKeyMaterialSHA256 = nil, ""
	if *key.Spec.Import == (kmsv1alpha1.KeyImport{}) {
		key.Spec.Import = nil
	}
	if err := r.Patch(ctx, key, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("close import request: %w", err)
	}
	return nil
}

// unwrapImportSecret checks the token, unwraps the material with the
// wrapping key and checks it fits the key spec.
func (r *KeyReconciler) unwrapImportSecret(ctx context.Context, key *kmsv1alpha1.Key, keyID string, params *keystore.ImportParameters, secret *corev1.Secret, now time.Time) (material, public []byte, err error) {
	wrapped, token := secret.Data[kmsv1alpha1.ImportSecretWrappedMaterial], secret.Data[kmsv1alpha1.ImportSecretToken]
	if len(wrapped) == 0 || len(token) == 0 {
		return nil, nil, fmt.Errorf("the Secret needs data keys %s and %s", kmsv1alpha1.ImportSecretWrappedMaterial, kmsv1alpha1.ImportSecretToken)
	}
	id, err := crypto.ParseKeyID(keyID)
	if err != nil {
		return nil, nil, err
	}
	if err := crypto.CheckImportToken(string(token), id, params.Token, now); err != nil {
		return nil, nil, err
	}
	wrappingKey, err := r.Store.LoadImportKey(ctx, params)
	defer clear(wrappingKey)
	if err != nil {
		return nil, nil, err
	}
	unwrapped, err := crypto.UnwrapImport(wrappingKey, key.Spec.Import.WrappingAlgorithm, wrapped)
	if err != nil {
		return nil, nil, err
	}
	stored, public, err := crypto.CheckImportedMaterial(string(key.Spec.KeySpec), unwrapped)
	if err != nil {
		clear(unwrapped)
		return nil, nil, err
	}
	return stored, public, nil
}

// ensureImportParameters returns the key's wrapping key and token, making
// new ones when there are none or they have expired.
func (r *KeyReconciler) ensureImportParameters(ctx context.Context, keyID string, now time.Time) (*keystore.ImportParameters, error) {
	p, err := r.Store.ImportParameters(ctx, keyID)
	if err != nil || (p != nil && now.Before(p.ExpiresAt)) {
		return p, err
	}
	if p != nil {
		if err := r.Store.DeleteImportParameters(ctx, p); err != nil {
			return nil, err
		}
	}
	id, err := crypto.ParseKeyID(keyID)
	if err != nil {
		return nil, err
	}
	private, public, err := crypto.NewWrappingKey(r.Random)
	defer clear(private)
	if err != nil {
		return nil, fmt.Errorf("make import wrapping key: %w", err)
	}
	// Whole seconds: the token carries the expiry in seconds.
	expires := now.Add(ImportParametersTTL).Truncate(time.Second)
	token, err := crypto.NewImportToken(id, expires, r.Random)
	if err != nil {
		return nil, err
	}
	if _, err := r.Store.CreateImportParameters(ctx, keyID, private, public, token, expires); err != nil {
		return nil, err
	}
	if p, err = r.Store.ImportParameters(ctx, keyID); err == nil && p == nil {
		err = fmt.Errorf("import parameters of key %s are not readable yet", keyID)
	}
	return p, err
}

// deleteImportSecret deletes the user's wrapped copy once it is imported,
// only if it is still the Secret that was imported.
func (r *KeyReconciler) deleteImportSecret(ctx context.Context, secret *corev1.Secret) error {
	err := r.Delete(ctx, secret, client.Preconditions{UID: &secret.UID})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete imported Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	return nil
}

// importCondition is the Imported condition of an External key.
func importCondition(key *kmsv1alpha1.Key, obs observed) metav1.Condition {
	c := metav1.Condition{Type: kmsv1alpha1.KeyConditionImported, ObservedGeneration: key.Generation,
		Status: metav1.ConditionTrue, Reason: kmsv1alpha1.KeyReasonImported, Message: "Key material is imported"}
	switch p := obs.importProblem; {
	case p != nil && (p.reason == kmsv1alpha1.KeyReasonImportFailed || len(obs.versions) == 0):
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, p.reason, p.message
	case obs.expired:
		c.Status, c.Reason = metav1.ConditionFalse, kmsv1alpha1.KeyReasonMaterialExpired
		c.Message = fmt.Sprintf("Imported material expired at %s (spec.import.validTo)", key.Spec.Import.ValidTo.UTC().Format(time.RFC3339))
	}
	return c
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
