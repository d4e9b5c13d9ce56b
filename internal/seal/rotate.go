package seal

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Root key rotation. A sealed Secret's data is immutable (it is written
// once, so that creating a version is a compare-and-swap); a blob resealed
// under a new root goes into two annotations of the same Secret instead,
// written in one optimistic-locked patch, and wins over the data from then
// on. There is no moment at which the Secret is missing or holds half of
// either, so a crash at any point leaves it readable under the root it was
// read under before or the one after.
const (
	// AnnotationResealed holds the blob resealed under the current root
	// (base64); when present it wins over the Secret's data.
	AnnotationResealed = "kms.kubekms.io/resealed"
	// AnnotationResealedBy names the root of trust that sealed it.
	AnnotationResealedBy = "kms.kubekms.io/resealed-by"

	// RotateRequestAnnotation, on the local root key Secret, holds the
	// rotation request (RootOfTrust spec.rotationRequest) its current
	// version answered: one request makes one version.
	RotateRequestAnnotation = "kms.kubekms.io/rotate-request"
	// RotatedAtAnnotation, on the local root key Secret, is when its
	// current version was made by a rotation (RFC 3339).
	RotatedAtAnnotation = "kms.kubekms.io/rotated-at"
)

// SealedBlob is the blob a sealed Secret holds and the root of trust that
// sealed it: the resealed annotations when set, else the data entries
// blobKey and providerKey.
func SealedBlob(secret *corev1.Secret, blobKey, providerKey string) ([]byte, string, error) {
	if b64, ok := secret.Annotations[AnnotationResealed]; ok {
		blob, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, "", fmt.Errorf("%w: Secret %s/%s: annotation %s is not base64", ErrUnseal, secret.Namespace, secret.Name, AnnotationResealed)
		}
		return blob, secret.Annotations[AnnotationResealedBy], nil
	}
	return secret.Data[blobKey], string(secret.Data[providerKey]), nil
}

// Reseal unseals the blob of secret (SealedBlob) bound to aad under from,
// seals it under to, checks that it unseals again, and writes it to the
// Secret's resealed annotations with an optimistic lock on the
// resourceVersion read, so a concurrent change (a tombstone, another
// reseal) makes it fail, not overwrite. It reports false, writing nothing,
// when the blob is sealed by to's provider under its current root already.
func Reseal(ctx context.Context, c client.Client, secret *corev1.Secret, blobKey, providerKey string, aad []byte, from, to Sealer) (bool, error) {
	blob, provider, err := SealedBlob(secret, blobKey, providerKey)
	if err != nil {
		return false, err
	}
	if provider == to.Provider() && SealedUnderCurrent(to, blob) {
		return false, nil
	}
	if provider != from.Provider() {
		return false, fmt.Errorf("%w: Secret %s/%s is sealed by root of trust %q, not %q", ErrWrongRoot, secret.Namespace, secret.Name, provider, from.Provider())
	}
	plaintext, err := from.Unseal(ctx, blob, aad)
	if err != nil {
		return false, fmt.Errorf("unseal Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	defer clear(plaintext)
	fresh, err := to.Seal(ctx, plaintext, aad)
	if err != nil {
		return false, fmt.Errorf("reseal Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	again, err := to.Unseal(ctx, fresh, aad)
	clear(again)
	if err != nil {
		return false, fmt.Errorf("Secret %s/%s resealed does not unseal: %w", secret.Namespace, secret.Name, err)
	}
	orig := secret.DeepCopy()
	if secret.Annotations == nil {
		secret.Annotations = map[string]string{}
	}
	secret.Annotations[AnnotationResealed] = base64.StdEncoding.EncodeToString(fresh)
	secret.Annotations[AnnotationResealedBy] = to.Provider()
	if err := c.Patch(ctx, secret, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return false, fmt.Errorf("write resealed Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	return true, nil
}

// ResealCheck reseals the root check Secret of namespace under s (see
// Reseal); false when there is none or it is current already.
func ResealCheck(ctx context.Context, c client.Client, reader client.Reader, namespace string, s Sealer) (bool, error) {
	secret := &corev1.Secret{}
	err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: RootCheckSecretName}, secret)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read root check Secret: %w", err)
	}
	return Reseal(ctx, c, secret, checkData, checkProvider, []byte(checkValue), s, s)
}

// CheckSealedUnderCurrent reports whether the root check Secret of
// namespace is sealed under s's current root (true when there is none).
func CheckSealedUnderCurrent(ctx context.Context, reader client.Reader, namespace string, s Sealer) (bool, error) {
	secret := &corev1.Secret{}
	err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: RootCheckSecretName}, secret)
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read root check Secret: %w", err)
	}
	blob, provider, err := SealedBlob(secret, checkData, checkProvider)
	if err != nil {
		return false, err
	}
	return provider == s.Provider() && SealedUnderCurrent(s, blob), nil
}

// LocalRoot describes the local root key Secret; it holds no key bytes.
type LocalRoot struct {
	// Current is the version new seals use; Versions every version held.
	Current  uint32
	Versions []uint32
	// Request is the rotation request Current answered ("" for none),
	// RotatedAt when that rotation was made (zero for none).
	Request   string
	RotatedAt time.Time
}

// ReadLocalRoot describes the local root key Secret of namespace.
func ReadLocalRoot(ctx context.Context, reader client.Reader, namespace string) (LocalRoot, error) {
	secret := &corev1.Secret{}
	if err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: RootKeySecretName}, secret); err != nil {
		return LocalRoot{}, fmt.Errorf("read root key Secret %s/%s: %w", namespace, RootKeySecretName, err)
	}
	s, err := localFromSecret(secret)
	if err != nil {
		return LocalRoot{}, err
	}
	r := LocalRoot{Current: s.current, Versions: slices.Sorted(maps.Keys(s.aeads)), Request: secret.Annotations[RotateRequestAnnotation]}
	r.RotatedAt, _ = time.Parse(time.RFC3339Nano, secret.Annotations[RotatedAtAnnotation])
	return r, nil
}

// RotateLocal adds a new root key version to the local root key Secret of
// namespace and makes it the one new seals use, answering request: a
// request the current version answered already makes nothing. The write is
// a patch with the resourceVersion read, so two managers answering the
// same request make one version. Older versions stay, and unseal, until
// RetireLocal removes them. It reports the current version and whether
// this call made it.
func RotateLocal(ctx context.Context, c client.Client, reader client.Reader, namespace, request string, random io.Reader, now time.Time) (uint32, bool, error) {
	secret := &corev1.Secret{}
	if err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: RootKeySecretName}, secret); err != nil {
		return 0, false, fmt.Errorf("read root key Secret %s/%s: %w", namespace, RootKeySecretName, err)
	}
	s, err := localFromSecret(secret)
	if err != nil {
		return 0, false, err
	}
	if secret.Annotations[RotateRequestAnnotation] == request {
		return s.current, false, nil
	}
	next := slices.Max(slices.Collect(maps.Keys(s.aeads))) + 1
	root := make([]byte, RootKeySize)
	if _, err := io.ReadFull(random, root); err != nil {
		return 0, false, fmt.Errorf("generate root key: %w", err)
	}
	orig := secret.DeepCopy()
	secret.Data[rootKeyDataPrefix+strconv.FormatUint(uint64(next), 10)] = root
	secret.Annotations[CurrentRootKeyAnnotation] = strconv.FormatUint(uint64(next), 10)
	secret.Annotations[RotateRequestAnnotation] = request
	secret.Annotations[RotatedAtAnnotation] = now.UTC().Format(time.RFC3339Nano)
	if err := c.Patch(ctx, secret, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return 0, false, fmt.Errorf("write root key version %d to Secret %s/%s: %w", next, namespace, RootKeySecretName, err)
	}
	return next, true, nil
}

// RetireLocal removes from the local root key Secret of namespace every
// version but keep, which must be the current one, with the
// resourceVersion read (see RotateLocal). The caller must first make sure
// nothing is sealed under them. It reports the versions removed.
func RetireLocal(ctx context.Context, c client.Client, reader client.Reader, namespace string, keep uint32) ([]uint32, error) {
	secret := &corev1.Secret{}
	if err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: RootKeySecretName}, secret); err != nil {
		return nil, fmt.Errorf("read root key Secret %s/%s: %w", namespace, RootKeySecretName, err)
	}
	s, err := localFromSecret(secret)
	if err != nil {
		return nil, err
	}
	if s.current != keep {
		return nil, fmt.Errorf("root key Secret %s/%s: the current root key version is %d, not %d: it was rotated again; retire later", namespace, RootKeySecretName, s.current, keep)
	}
	orig := secret.DeepCopy()
	var retired []uint32
	for v := range s.aeads {
		if v != s.current {
			delete(secret.Data, rootKeyDataPrefix+strconv.FormatUint(uint64(v), 10))
			retired = append(retired, v)
		}
	}
	if len(retired) == 0 {
		return nil, nil
	}
	if err := c.Patch(ctx, secret, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return nil, fmt.Errorf("retire root key versions %v of Secret %s/%s: %w", retired, namespace, RootKeySecretName, err)
	}
	slices.Sort(retired)
	return retired, nil
}
