package controllers

import (
	"context"
	"fmt"
	"slices"
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
	params, err := r.ensureImportParameters(ctx, obs.keyID, now)
	if err != nil {
		return err
	}
	obs.importParams = &kmsv1alpha1.KeyImportParameters{
		WrappingPublicKey: crypto.PublicKeyPEM(params.PublicKey),
		ImportToken:       params.Token,
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

	stamp := importStampPrefix + string(secret.UID)
	if slices.ContainsFunc(obs.versions, func(v keystore.Version) bool { return v.RotateRequest == stamp }) {
		return r.deleteImportSecret(ctx, secret)
	}
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
	return r.deleteImportSecret(ctx, secret)
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
