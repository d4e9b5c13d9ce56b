package keystore

import (
	"context"
	"encoding/base64"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/seal"
)

// Import wrapping keys: one immutable Secret per External key, named after
// the key ID, holding the sealed RSA private key the key's material is
// wrapped for. Renewing the parameters deletes and recreates it, so at most
// one set is valid at a time.

const (
	// ComponentImportWrappingKey is the app.kubernetes.io/component of import wrapping key Secrets.
	ComponentImportWrappingKey = "import-wrapping-key"
	// AnnotationImportToken holds the token issued with the wrapping key.
	AnnotationImportToken = "kms.kubekms.io/import-token"
	// AnnotationExpiresAt holds when the wrapping key stops being accepted.
	AnnotationExpiresAt = "kms.kubekms.io/expires-at"

	// wrappingKeySpec binds a sealed wrapping key to its purpose in the AAD.
	wrappingKeySpec = "IMPORT_WRAPPING_RSA_4096"
)

// ImportParameters describes a key's current import wrapping key. It never
// holds the private key.
type ImportParameters struct {
	KeyID     string
	Token     string
	ExpiresAt time.Time
	// PublicKey is the wrapping key's SubjectPublicKeyInfo DER.
	PublicKey []byte

	uid types.UID
}

// ImportSecretName is the name of a key's import wrapping key Secret.
func ImportSecretName(keyID string) string { return "kubekms-import-" + keyID }

// ImportParameters reads the key's import parameters; nil when there are none.
func (s *Store) ImportParameters(ctx context.Context, keyID string) (*ImportParameters, error) {
	secret := &corev1.Secret{}
	err := s.Reader.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: ImportSecretName(keyID)}, secret)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read import parameters of key %s: %w", keyID, err)
	}
	bad := func(what string) (*ImportParameters, error) {
		return nil, fmt.Errorf("import wrapping key Secret %s/%s: %s", secret.Namespace, secret.Name, what)
	}
	if secret.Type != SecretType || secret.Labels[LabelKeyID] != keyID {
		return bad("not a kubekms import wrapping key of this key")
	}
	expires, err := time.Parse(time.RFC3339Nano, secret.Annotations[AnnotationExpiresAt])
	if err != nil {
		return bad(fmt.Sprintf("annotation %s is not an RFC 3339 time", AnnotationExpiresAt))
	}
	public, err := base64.StdEncoding.DecodeString(secret.Annotations[AnnotationPublicKey])
	if err != nil || len(public) == 0 {
		return bad(fmt.Sprintf("annotation %s is not base64", AnnotationPublicKey))
	}
	return &ImportParameters{
		KeyID: keyID, Token: secret.Annotations[AnnotationImportToken], ExpiresAt: expires, PublicKey: public,
		uid: secret.UID,
	}, nil
}

// CreateImportParameters seals a new wrapping key for keyID. It reports
// false when another writer made parameters first; read them again.
func (s *Store) CreateImportParameters(ctx context.Context, keyID string, private, public []byte, token string, expires time.Time) (bool, error) {
	labels := map[string]string{kmsv1alpha1.ComponentLabel: ComponentImportWrappingKey, LabelKeyID: keyID}
	annotations := map[string]string{
		AnnotationImportToken: token,
		AnnotationExpiresAt:   expires.UTC().Format(time.RFC3339Nano),
		AnnotationPublicKey:   base64.StdEncoding.EncodeToString(public),
	}
	return s.createSealed(ctx, "import wrapping key of key "+keyID, ImportSecretName(keyID), labels, annotations,
		private, seal.MaterialAAD(keyID, 0, wrappingKeySpec))
}

// LoadImportKey unseals the wrapping private key (PKCS#8 DER) of p.
func (s *Store) LoadImportKey(ctx context.Context, p *ImportParameters) ([]byte, error) {
	secret := &corev1.Secret{}
	if err := s.Reader.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: ImportSecretName(p.KeyID)}, secret); err != nil {
		return nil, fmt.Errorf("load import wrapping key of key %s: %w", p.KeyID, err)
	}
	if secret.UID != p.uid {
		return nil, fmt.Errorf("import wrapping key of key %s was renewed meanwhile", p.KeyID)
	}
	return s.unsealSecret(ctx, secret, seal.MaterialAAD(p.KeyID, 0, wrappingKeySpec))
}

// DeleteImportParameters deletes p's wrapping key, only if it is still the
// one that was read: the same UID (new parameters are a new Secret). Not
// the same resourceVersion: a root key rotation reseals the Secret in
// place, and that must not keep it from being deleted.
func (s *Store) DeleteImportParameters(ctx context.Context, p *ImportParameters) error {
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: ImportSecretName(p.KeyID)}}
	err := s.Client.Delete(ctx, secret, client.Preconditions{UID: &p.uid})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete import wrapping key of key %s: %w", p.KeyID, err)
	}
	return nil
}
