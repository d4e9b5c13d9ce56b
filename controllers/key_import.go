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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keyspec"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/kmscrypto"
)

const (
	// ImportParametersTTL is how long a wrapping key and import token are
	// accepted, as on AWS KMS.
	ImportParametersTTL = 24 * time.Hour
	// DefaultImportPollInterval: the manager watches no Secret outside its
	// own namespace, so while a Key names an import Secret it looks this often.
	DefaultImportPollInterval = 15 * time.Second
)

// reconcileImport is the material phase of External keys: it keeps the key's
// import parameters current and imports the Secret spec.import.secretRef
// names as a new version, once per import request. What the key waits for
// (a request, the Secret, a corrected Secret, an RBAC binding) is a
// retryable problem: shown in the Imported condition and looked at again
// after the poll interval, never returned as an error.
func (r *KeyReconciler) reconcileImport(ctx context.Context, s *keyScope) error {
	key := s.key
	if key.Spec.Origin != kmsv1alpha1.KeyOriginExternal {
		return nil
	}
	now := r.Clock.Now()
	if answered := answeredImport(key, s.versions); answered != nil {
		// This import request is done (maybe by a run that crashed before
		// closing it): close it, so a Secret that appears later under the
		// same name does nothing.
		if err := r.closeImport(ctx, key, s.keyID, answered.ImportRequest, answered.CreatedAt); err != nil {
			return err
		}
	}
	params, err := r.ensureImportParameters(ctx, s.keyID, now)
	if err != nil {
		return err
	}
	imp := &importOutcome{params: publishedImportParameters(params)}
	s.imported = imp
	s.wakeAt(params.ExpiresAt)
	if v := key.Spec.Import; v != nil && v.ValidTo != nil {
		imp.expired = !now.Before(v.ValidTo.Time)
		if !imp.expired {
			s.wakeAt(v.ValidTo.Time)
		}
	}
	if key.Spec.Import == nil || key.Spec.Import.SecretRef == nil {
		imp.waiting = &retryableProblem{kmsv1alpha1.KeyReasonPendingImport,
			"Set spec.import.secretRef to a Secret holding the wrapped material and import token (docs/keys.md)"}
		return nil
	}
	s.wakeAt(now.Add(r.importPollInterval()))

	secret, waiting, err := r.readImportSecret(ctx, key)
	imp.secret, imp.waiting = secret, waiting
	if err != nil || waiting != nil {
		return err
	}
	material, public, err := r.unwrapImportSecret(ctx, key, s.keyID, params, secret, now)
	defer clear(material)
	if err != nil {
		imp.waiting = &retryableProblem{kmsv1alpha1.KeyReasonImportFailed, fmt.Sprintf("Cannot import Secret %s: %s", client.ObjectKeyFromObject(secret), err)}
		return nil
	}
	request := importRequest(string(secret.UID), key)
	next := int32(1)
	if n := len(s.versions); n > 0 {
		next = s.versions[n-1].Version + 1
	}
	created, err := r.Store.CreateImported(ctx, s.owner(), next, material, public, now, request)
	if err != nil {
		return err
	}
	if !created {
		return fmt.Errorf("version %d of key %s was made concurrently; deciding again", next, s.keyID)
	}
	r.Recorder.Eventf(key, secret, corev1.EventTypeNormal, ReasonImported, StepImportMaterial,
		"Imported material from Secret %s as version %d of key %s", client.ObjectKeyFromObject(secret), next, s.keyID)
	if s.versions, err = r.Store.ActiveByKeyName(ctx, key.Namespace, key.Name); err != nil {
		return err
	}
	imp.secret, imp.version = nil, next
	if err := r.closeImport(ctx, key, s.keyID, request, now); err != nil {
		return err
	}
	// New parameters for the next import: a token is good for one.
	if params, err = r.ensureImportParameters(ctx, s.keyID, now); err != nil {
		return err
	}
	imp.params = publishedImportParameters(params)
	return nil
}

// importPollInterval is ImportPollInterval or its default.
func (r *KeyReconciler) importPollInterval() time.Duration {
	if r.ImportPollInterval > 0 {
		return r.ImportPollInterval
	}
	return DefaultImportPollInterval
}

// publishedImportParameters is the public half of p, for status.
func publishedImportParameters(p *keystore.ImportParameters) *kmsv1alpha1.KeyImportParameters {
	return &kmsv1alpha1.KeyImportParameters{WrappingPublicKey: kmscrypto.PublicKeyPEM(p.PublicKey), ExpiresAt: metav1.NewTime(p.ExpiresAt)}
}

// readImportSecret reads the Secret spec.import.secretRef names and checks
// it holds the material the request names. A Secret that is missing, that
// kubekms may not read or that holds other material is a retryable problem
// (with the Secret, when it was read); only a failing API server is an error.
func (r *KeyReconciler) readImportSecret(ctx context.Context, key *kmsv1alpha1.Key) (*corev1.Secret, *retryableProblem, error) {
	ref := types.NamespacedName{Namespace: key.Namespace, Name: key.Spec.Import.SecretRef.Name}
	secret := &corev1.Secret{}
	switch err := r.Reader.Get(ctx, ref, secret); {
	case apierrors.IsNotFound(err):
		return nil, &retryableProblem{kmsv1alpha1.KeyReasonPendingImport, fmt.Sprintf("Waiting for Secret %s with %s and %s",
			ref, kmsv1alpha1.ImportSecretWrappedMaterial, kmsv1alpha1.ImportSecretToken)}, nil
	case apierrors.IsForbidden(err):
		return nil, &retryableProblem{kmsv1alpha1.KeyReasonImportFailed, fmt.Sprintf(
			"kubekms may not read Secret %s: bind the ClusterRole kubekms-key-import to the kubekms ServiceAccount in namespace %s (docs/keys.md)", ref, ref.Namespace)}, nil
	case err != nil:
		return nil, nil, fmt.Errorf("read import Secret %s: %w", ref, err)
	}
	sum := sha256.Sum256(secret.Data[kmsv1alpha1.ImportSecretWrappedMaterial])
	if hex.EncodeToString(sum[:]) != key.Spec.Import.WrappedKeyMaterialSHA256 {
		return secret, &retryableProblem{kmsv1alpha1.KeyReasonImportFailed, fmt.Sprintf(
			"Cannot import Secret %s: its %s does not match spec.import.wrappedKeyMaterialSHA256 (was it changed after the import was asked for?)", ref, kmsv1alpha1.ImportSecretWrappedMaterial)}, nil
	}
	return secret, nil, nil
}

// importRequest names one import request, as the version that answers it
// records it (keystore.Version.ImportRequest): the Secret (UID) named at one
// generation of the Key. A request is answered once; a new one needs a
// change of the Key, which the admin webhook checks as ImportKeyMaterial.
func importRequest(secretUID string, key *kmsv1alpha1.Key) string {
	return secretUID + "@" + requestOf(key)
}

// requestOf names a Key's current import request: its UID (a restored Key
// keeps the versions, and their marks, of the Key it restores) and generation.
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
		if strings.HasSuffix(versions[i].ImportRequest, suffix) {
			return &versions[i]
		}
	}
	return nil
}

// closeImport finishes the import request answered at answeredAt: it
// deletes the user's wrapped copy (only the Secret that was imported),
// retires the import parameters it used (the token is single-use) and
// clears spec.import.secretRef.
func (r *KeyReconciler) closeImport(ctx context.Context, key *kmsv1alpha1.Key, keyID, request string, answeredAt time.Time) error {
	secretUID, _, _ := strings.Cut(request, "@")
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
	} else if p != nil && !p.ExpiresAt.Add(-ImportParametersTTL).After(answeredAt) {
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
	id, err := kmscrypto.ParseKeyID(keyID)
	if err != nil {
		return nil, nil, err
	}
	if err := kmscrypto.CheckImportToken(string(token), id, params.Token, now); err != nil {
		return nil, nil, err
	}
	wrappingKey, err := r.Store.LoadImportKey(ctx, params)
	defer clear(wrappingKey)
	if err != nil {
		return nil, nil, err
	}
	unwrapped, err := kmscrypto.UnwrapImport(wrappingKey, key.Spec.Import.WrappingAlgorithm, wrapped)
	if err != nil {
		return nil, nil, err
	}
	stored, public, err := keyspec.Import(string(key.Spec.KeySpec), unwrapped)
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
	id, err := kmscrypto.ParseKeyID(keyID)
	if err != nil {
		return nil, err
	}
	private, public, err := kmscrypto.NewWrappingKey(r.Random)
	defer clear(private)
	if err != nil {
		return nil, fmt.Errorf("make import wrapping key: %w", err)
	}
	// Whole seconds: the token carries the expiry in seconds.
	expires := now.Add(ImportParametersTTL).Truncate(time.Second)
	token, err := kmscrypto.NewImportToken(id, expires, r.Random)
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
