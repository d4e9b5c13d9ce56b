package seal

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
)

// The local root of trust: root keys kept in one Secret of the operator's
// namespace. Anyone who can read that Secret (or etcd) can unseal every key;
// see docs/root-of-trust.md for the threat model.
const (
	// LocalProvider is the provider name of the local root of trust.
	LocalProvider = "local"
	// RootKeySecretName is the Secret that holds the local root keys.
	RootKeySecretName = "kubekms-root-key"
	// RootKeySecretType is the fixed type of that Secret.
	RootKeySecretType corev1.SecretType = "kms.kubekms.io/root-key"
	// CurrentRootKeyAnnotation names the root key version new seals use.
	CurrentRootKeyAnnotation = "kms.kubekms.io/current-root-key-version"
	// rootKeyDataPrefix prefixes each root key's data entry: root-key-v1, ...
	rootKeyDataPrefix = "root-key-v"

	// SealedSecretType is the fixed type of every Secret that holds something
	// sealed under the root of trust: key versions (tombstones too) and
	// import wrapping keys. The keystore writes them; a root key is never
	// created while one exists.
	SealedSecretType corev1.SecretType = "kms.kubekms.io/sealed-key"
)

// MissingRootKeyError is returned instead of creating a root key when the
// root key Secret is gone but Secrets sealed under it remain: a new root key
// could not unseal them, and keeping the manager down is the only way to make
// an admin restore the old one.
type MissingRootKeyError struct {
	// Namespace and Name are the root key Secret to restore.
	Namespace, Name string
	// Sealed counts the Secrets of type SealedSecretType in Namespace.
	Sealed int
}

func (e *MissingRootKeyError) Error() string {
	secrets, depend := "Secrets", "depend"
	if e.Sealed == 1 {
		secrets, depend = "Secret", "depends"
	}
	return fmt.Sprintf("root key Secret %s/%s is missing but %d sealed %s (type %s) in namespace %s %s on it: "+
		"restore Secret %s in namespace %s from your backup; the manager takes it up without a restart. "+
		"A new root key could not unseal them, so none is created; only if that backup is lost for good, "+
		"delete those Secrets (every key they hold is lost) and the manager begins with a new root key",
		e.Namespace, e.Name, e.Sealed, secrets, SealedSecretType, e.Namespace, depend, e.Name, e.Namespace)
}

// LoadOrCreateLocal returns the local sealer, creating the root key Secret
// on first start. Replicas that start at once agree on one root key: the
// Secret's name is fixed, so only one Create succeeds and the others read
// what it wrote. A missing root key is never replaced while sealed Secrets
// exist in namespace: that is a *MissingRootKeyError. reader must not be a
// cache.
func LoadOrCreateLocal(ctx context.Context, c client.Client, reader client.Reader, namespace string, random io.Reader) (*AESGCM, error) {
	return loadLocal(ctx, reader, namespace, func(key types.NamespacedName) (*corev1.Secret, error) {
		return createRootKey(ctx, c, reader, key, random)
	})
}

// LoadLocal is LoadOrCreateLocal for a process that has loaded the root key
// before: it never creates one. Whatever is missing besides the Secret (the
// root check, the sealed material), this process may have sealed under the
// old root key moments ago, so only a restore, or a restart, brings a root
// back.
func LoadLocal(ctx context.Context, reader client.Reader, namespace string) (*AESGCM, error) {
	return loadLocal(ctx, reader, namespace, nil)
}

// loadLocal reads the root key Secret; when it is missing and nothing
// forbids a new one (refuseNewRootKey), create makes one, if given.
func loadLocal(ctx context.Context, reader client.Reader, namespace string, create func(types.NamespacedName) (*corev1.Secret, error)) (*AESGCM, error) {
	key := types.NamespacedName{Namespace: namespace, Name: RootKeySecretName}
	secret := &corev1.Secret{}
	err := reader.Get(ctx, key, secret)
	if apierrors.IsNotFound(err) {
		if err := refuseNewRootKey(ctx, reader, key); err != nil {
			return nil, err
		}
		if create == nil {
			return nil, fmt.Errorf("root key Secret %s is missing, and this manager replica has sealed under it: restore Secret %s in namespace %s from your backup; "+
				"the manager takes it up without a restart. It never replaces a root key it has used; restart it to begin with a new one", key, key.Name, key.Namespace)
		}
		secret, err = create(key)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: load root key Secret %s: %w", ErrRootUnavailable, key, err)
	}
	return localFromSecret(secret)
}

// refuseNewRootKey fails when any Secret of the namespace is sealed: by type,
// not by label, so a sealed Secret whose labels were edited still counts;
// and when, with nothing sealed yet, the root check shows a local root key
// was verified here: another replica may hold it and seal under it at any
// moment, so a new one would orphan that material. Only metadata of the
// sealed Secrets is listed; their blobs stay on the server.
func refuseNewRootKey(ctx context.Context, reader client.Reader, key types.NamespacedName) error {
	n, err := countSealed(ctx, reader, key.Namespace)
	if err != nil {
		return fmt.Errorf("root key Secret %s is missing; %w", key, err)
	}
	check := &corev1.Secret{}
	err = reader.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: RootCheckSecretName}, check)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("root key Secret %s is missing; read root check Secret: %w", key, err)
	}
	checked := err == nil
	_, p, _ := SealedBlob(check, checkData, checkProvider)
	switch {
	case n > 0 && checked && p != LocalProvider:
		return fmt.Errorf("%w: the configured root of trust local is not the one the %d sealed Secrets of namespace %s were sealed under "+
			"(Secret %s/%s says root of trust %q): start the manager with that root of trust again; no local root key is created",
			ErrWrongRoot, n, key.Namespace, key.Namespace, RootCheckSecretName, p)
	case n > 0:
		return &MissingRootKeyError{Namespace: key.Namespace, Name: key.Name, Sealed: n}
	case checked && p == LocalProvider:
		return fmt.Errorf("root key Secret %s is missing and Secret %s/%s shows a root key was in use: another replica may still seal under it. "+
			"Restore Secret %s in namespace %s from your backup; the manager takes it up without a restart. "+
			"Only to start over with a new root key when nothing was sealed under the old one, stop every manager replica and delete Secret %s",
			key, key.Namespace, RootCheckSecretName, key.Name, key.Namespace, RootCheckSecretName)
	}
	return nil
}

func createRootKey(ctx context.Context, c client.Client, reader client.Reader, key types.NamespacedName, random io.Reader) (*corev1.Secret, error) {
	root := make([]byte, RootKeySize)
	if _, err := io.ReadFull(random, root); err != nil {
		return nil, fmt.Errorf("generate root key: %w", err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:        key.Name,
			Namespace:   key.Namespace,
			Labels:      map[string]string{kmsv1alpha1.ManagedByLabel: kmsv1alpha1.ManagedByValue, kmsv1alpha1.ComponentLabel: "root-key"},
			Annotations: map[string]string{CurrentRootKeyAnnotation: "1"},
		},
		Type: RootKeySecretType,
		Data: map[string][]byte{rootKeyDataPrefix + "1": root},
	}
	err := c.Create(ctx, secret)
	if apierrors.IsAlreadyExists(err) {
		// Another replica won the race: use its root key.
		secret = &corev1.Secret{}
		err = reader.Get(ctx, key, secret)
	}
	return secret, err
}

func localFromSecret(secret *corev1.Secret) (*AESGCM, error) {
	if secret.Type != RootKeySecretType {
		return nil, fmt.Errorf("root key Secret %s/%s has type %q, want %q", secret.Namespace, secret.Name, secret.Type, RootKeySecretType)
	}
	keys := map[uint32][]byte{}
	for name, value := range secret.Data {
		v, ok := strings.CutPrefix(name, rootKeyDataPrefix)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("root key Secret %s/%s: data entry %q is not %s<N>", secret.Namespace, secret.Name, name, rootKeyDataPrefix)
		}
		keys[uint32(n)] = value
	}
	current, err := strconv.ParseUint(secret.Annotations[CurrentRootKeyAnnotation], 10, 32)
	if err != nil {
		return nil, fmt.Errorf("root key Secret %s/%s: annotation %s must name a root key version, have %q (versions %v)",
			secret.Namespace, secret.Name, CurrentRootKeyAnnotation, secret.Annotations[CurrentRootKeyAnnotation], slices.Sorted(maps.Keys(keys)))
	}
	s, err := NewAESGCM(LocalProvider, keys, uint32(current))
	if err != nil {
		return nil, fmt.Errorf("root key Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	return s, nil
}
