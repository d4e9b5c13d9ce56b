package seal

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
)

const (
	// RootCheckSecretName is the Secret that proves, at every start, that
	// the configured root of trust is the one the material was sealed
	// under: it holds a known value sealed by that root.
	RootCheckSecretName = "kubekms-root-check"
	// RootCheckSecretType is its fixed type (not SealedSecretType: it
	// holds no key material, so it never keeps a new root key from being
	// made).
	RootCheckSecretType corev1.SecretType = "kms.kubekms.io/root-check"
	checkValue                            = "kubekms root of trust check v1"
	checkData                             = "sealed"
	checkProvider                         = "sealer"
)

// VerifyRoot checks s against the root check Secret of namespace, writing
// it when there is none. A root of trust that does not unseal it (another
// file, another AWS key, another provider: a misconfiguration, a node with
// the wrong file, or an alias re-pointed) is refused while any sealed
// Secret exists, since everything new would be sealed under a root the
// rest of the material does not know; with no sealed Secret left, the
// check is simply rewritten under s. reader must not be a cache.
//
// With no root check Secret but sealed Secrets present (written before the
// check existed, or the check deleted), trial, when set, must unseal some
// of that material under s before the check is written: otherwise any root
// would be taken for the right one.
//
// previous, when set, is the root of trust a migration moves away from: a
// root check sealed by it, and unsealed by it, passes too.
func VerifyRoot(ctx context.Context, c client.Client, reader client.Reader, namespace string, s, previous Sealer, trial func(context.Context, Sealer) error) error {
	key := types.NamespacedName{Namespace: namespace, Name: RootCheckSecretName}
	for range 3 {
		secret := &corev1.Secret{}
		err := reader.Get(ctx, key, secret)
		if apierrors.IsNotFound(err) {
			if trial != nil {
				if err := trial(ctx, s); err != nil {
					return fmt.Errorf("no root check Secret %s to prove the configured root of trust %s: %w", key, s.Provider(), err)
				}
			}
			err = createCheck(ctx, c, key, s)
			if apierrors.IsAlreadyExists(err) {
				continue // another replica wrote it first: check that one
			}
			return err
		}
		if err != nil {
			return fmt.Errorf("%w: read root check Secret %s: %w", ErrRootUnavailable, key, err)
		}
		mismatch := checkMismatch(ctx, secret, s, previous)
		if mismatch == nil {
			return nil
		}
		_, sealedBy, _ := SealedBlob(secret, checkData, checkProvider)
		if errors.Is(mismatch, ErrRootUnavailable) && (sealedBy == s.Provider() || previous != nil && sealedBy == previous.Provider()) {
			// Not a wrong root: one that cannot answer now.
			return fmt.Errorf("root check Secret %s: %w", key, mismatch)
		}
		n, err := countSealed(ctx, reader, namespace)
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: the configured root of trust %s is not the one the %d sealed Secrets of namespace %s were sealed under "+
				"(Secret %s, sealed by root of trust %q, does not unseal: %v): configure that root again (the same root key files, AWS KMS key, or provider). "+
				"Nothing is sealed under this one, so nothing is lost",
				ErrWrongRoot, s.Provider(), n, namespace, key, sealedBy, mismatch)
		}
		if err := c.Delete(ctx, secret, client.Preconditions{UID: &secret.UID}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("replace root check Secret %s: %w", key, err)
		}
	}
	return fmt.Errorf("root check Secret %s keeps changing: another manager with another root of trust is starting", key)
}

func checkMismatch(ctx context.Context, secret *corev1.Secret, s, previous Sealer) error {
	if secret.Type != RootCheckSecretType {
		return fmt.Errorf("type %q, want %q", secret.Type, RootCheckSecretType)
	}
	if string(secret.Data[checkProvider]) == s.Provider() {
		// Sealed by this provider: this root, not the previous one, must
		// open it, or any root of the same provider would pass while a
		// migration keeps the previous root configured.
		previous = nil
	}
	got, _, _, err := OpenSealed(ctx, secret, checkData, checkProvider, []byte(checkValue), s, previous)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, []byte(checkValue)) {
		return ErrUnseal
	}
	return nil
}

func createCheck(ctx context.Context, c client.Client, key types.NamespacedName, s Sealer) error {
	blob, err := s.Seal(ctx, []byte(checkValue), []byte(checkValue))
	if err != nil {
		return fmt.Errorf("seal the root check: %w", err)
	}
	return c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace, Labels: map[string]string{
			kmsv1alpha1.ManagedByLabel: kmsv1alpha1.ManagedByValue, kmsv1alpha1.ComponentLabel: "root-check"}},
		Type:      RootCheckSecretType,
		Immutable: ImmutableUnder(s),
		Data:      map[string][]byte{checkData: blob, checkProvider: []byte(s.Provider())},
	})
}

// countSealed counts the Secrets of namespace sealed under the root of
// trust, by type; only metadata is listed.
func countSealed(ctx context.Context, reader client.Reader, namespace string) (int, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := reader.List(ctx, list, client.InNamespace(namespace), client.MatchingFields{"type": string(SealedSecretType)}); err != nil {
		return 0, fmt.Errorf("list sealed Secrets of %s: %w", namespace, err)
	}
	return len(list.Items), nil
}
