package seal

import (
	"bytes"
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

// Root key rotation and migration between roots of trust reseal each
// sealed Secret in place, in one optimistic-locked patch: into its data
// when it is mutable (under the local root, see ImmutableUnder), into two
// annotations that win over the data when it is immutable (written under
// another root, or by releases before rotation). There is no moment at
// which the Secret is missing or holds half of either, so a crash at any
// point leaves it readable under the root it was read under before or the
// one after.
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

// ImmutableUnder says whether a sealed Secret written under s is made
// immutable. Under the local root it is not: a root key rotation reseals
// its data in place, so that no copy under the old root key stays, and
// whoever may write Secrets in that namespace can overwrite the root key
// Secret anyway. Under the other roots (file, awskms, pkcs11), which
// kubekms does not rotate, it is: nothing in the namespace can then change
// the material, and no root key Secret sits next to it.
func ImmutableUnder(s Sealer) *bool {
	if s.Provider() == LocalProvider {
		return nil
	}
	return new(true)
}

// SealedBlob is the blob a sealed Secret holds and the root of trust that
// sealed it, as written last: the resealed annotations when set, else the
// data entries blobKey and providerKey. Unsealing goes through OpenSealed,
// which falls back to the data.
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

// OpenSealed unseals, under s, the blob of a sealed Secret bound to aad: the
// resealed annotations' when they unseal, else the data's, so an annotation
// that does not unseal (written by hand, or by someone who may patch but
// not delete Secrets) never hides a data blob that does. It returns the
// plaintext, and the blob and provider that opened it. A blob sealed by
// another provider is unsealed by previous when that is its provider (a
// migration between roots of trust), else it is ErrWrongRoot. The first
// error is the one returned.
func OpenSealed(ctx context.Context, secret *corev1.Secret, blobKey, providerKey string, aad []byte, s, previous Sealer) ([]byte, []byte, string, error) {
	type candidate struct {
		blob     []byte
		provider string
	}
	var candidates []candidate
	var first error
	if _, ok := secret.Annotations[AnnotationResealed]; ok {
		if blob, provider, err := SealedBlob(secret, blobKey, providerKey); err != nil {
			first = err
		} else {
			candidates = append(candidates, candidate{blob, provider})
		}
	}
	if blob := secret.Data[blobKey]; len(blob) > 0 || len(candidates) == 0 {
		candidates = append(candidates, candidate{blob, string(secret.Data[providerKey])})
	}
	for _, c := range candidates {
		var err error
		by := s
		if previous != nil && c.provider == previous.Provider() && c.provider != s.Provider() {
			by = previous
		}
		if c.provider != by.Provider() {
			err = fmt.Errorf("%w: sealed by root of trust %q, this manager uses %q", ErrWrongRoot, c.provider, s.Provider())
		} else {
			var pt []byte
			if pt, err = by.Unseal(ctx, c.blob, aad); err == nil {
				return pt, c.blob, c.provider, nil
			}
		}
		if first == nil {
			first = err
		}
	}
	return nil, nil, "", first
}

// Reseal unseals the blob of secret bound to aad (OpenSealed) under s or
// previous, seals it under s's current root, checks that it unseals again, and
// writes it with an optimistic lock on the resourceVersion read, so a
// concurrent change (a tombstone, another reseal) makes it fail, not
// overwrite: into the data of a mutable Secret (the blob under the old
// root is gone from it; it turns immutable when s is not local), into the
// resealed annotations of an immutable one (written by releases before
// root rotation, or under another root; its data keeps the old blob).
// It reports whether the Secret needed it; with dryRun it writes nothing.
func Reseal(ctx context.Context, c client.Client, secret *corev1.Secret, blobKey, providerKey string, aad []byte, s, previous Sealer, dryRun bool) (bool, error) {
	plaintext, blob, provider, err := OpenSealed(ctx, secret, blobKey, providerKey, aad, s, previous)
	if err != nil {
		return false, fmt.Errorf("unseal Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	defer clear(plaintext)
	inData := bytes.Equal(blob, secret.Data[blobKey]) && provider == string(secret.Data[providerKey])
	immutable := secret.Immutable != nil && *secret.Immutable
	_, annotated := secret.Annotations[AnnotationResealed]
	current := provider == s.Provider() && SealedUnderCurrent(s, blob)
	if current && (immutable || inData && !annotated) {
		return false, nil
	}
	if dryRun {
		return true, nil
	}
	fresh := blob
	if !current {
		if fresh, err = s.Seal(ctx, plaintext, aad); err != nil {
			return false, fmt.Errorf("reseal Secret %s/%s: %w", secret.Namespace, secret.Name, err)
		}
		again, err := s.Unseal(ctx, fresh, aad)
		clear(again)
		if err != nil {
			return false, fmt.Errorf("Secret %s/%s resealed does not unseal: %w", secret.Namespace, secret.Name, err)
		}
	}
	orig := secret.DeepCopy()
	if secret.Annotations == nil {
		secret.Annotations = map[string]string{}
	}
	if immutable {
		secret.Annotations[AnnotationResealed] = base64.StdEncoding.EncodeToString(fresh)
		secret.Annotations[AnnotationResealedBy] = s.Provider()
	} else {
		secret.Data[blobKey], secret.Data[providerKey] = fresh, []byte(s.Provider())
		delete(secret.Annotations, AnnotationResealed)
		delete(secret.Annotations, AnnotationResealedBy)
		secret.Immutable = ImmutableUnder(s) // migrated off local: immutable from now on
	}
	if err := c.Patch(ctx, secret, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return false, fmt.Errorf("write resealed Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	return true, nil
}

// ResealCheck reseals the root check Secret of namespace under s (see
// Reseal); false when there is none or it needed nothing. An immutable one
// that needs it (written by releases before root rotation, or under the
// previous root of a migration) is replaced by a new one sealed under s
// instead: its data would otherwise keep proving the old
// root, to replicas that still use it and, in a migration, to any root
// configured next to it (checkMismatch).
func ResealCheck(ctx context.Context, c client.Client, reader client.Reader, namespace string, s, previous Sealer, dryRun bool) (bool, error) {
	key := types.NamespacedName{Namespace: namespace, Name: RootCheckSecretName}
	secret := &corev1.Secret{}
	err := reader.Get(ctx, key, secret)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read root check Secret: %w", err)
	}
	needed, err := Reseal(ctx, c, secret, checkData, checkProvider, []byte(checkValue), s, previous, true)
	if err != nil || !needed || dryRun {
		return needed, err
	}
	if secret.Immutable == nil || !*secret.Immutable {
		return Reseal(ctx, c, secret, checkData, checkProvider, []byte(checkValue), s, previous, false)
	}
	if err := checkMismatch(ctx, secret, s, previous); err != nil {
		return false, fmt.Errorf("root check Secret %s: %w", key, err)
	}
	if err := c.Delete(ctx, secret, client.Preconditions{UID: &secret.UID, ResourceVersion: &secret.ResourceVersion}); err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("replace root check Secret %s: %w", key, err)
	}
	// A replica that finds it missing meanwhile writes one under its own
	// root after proving that root against the material (VerifyRoot);
	// then this create fails and the next round reseals that one.
	if err := createCheck(ctx, c, key, s); err != nil && !apierrors.IsAlreadyExists(err) {
		return false, err
	}
	return true, nil
}

// CurrentRootVersion is the root key version s seals under, for sealers
// whose root has versions (local, file).
func CurrentRootVersion(s Sealer) (uint32, bool) {
	if v, ok := s.(interface{ CurrentRootVersion() (uint32, bool) }); ok {
		return v.CurrentRootVersion()
	}
	return 0, false
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

// StampRotatedAt records now as the time of the local root key Secret's
// last rotation (RotatedAtAnnotation), for a Secret with several versions
// that does not say when: the wait before retiring them starts now.
func StampRotatedAt(ctx context.Context, c client.Client, reader client.Reader, namespace string, now time.Time) (time.Time, error) {
	secret := &corev1.Secret{}
	if err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: RootKeySecretName}, secret); err != nil {
		return time.Time{}, fmt.Errorf("read root key Secret %s/%s: %w", namespace, RootKeySecretName, err)
	}
	orig := secret.DeepCopy()
	if secret.Annotations == nil {
		secret.Annotations = map[string]string{}
	}
	secret.Annotations[RotatedAtAnnotation] = now.UTC().Format(time.RFC3339Nano)
	if err := c.Patch(ctx, secret, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return time.Time{}, fmt.Errorf("record the rotation time of Secret %s/%s: %w", namespace, RootKeySecretName, err)
	}
	return now, nil
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
