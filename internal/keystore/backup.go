package keystore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/seal"
)

// EachWithMaterial calls fn with every version of every key, live and
// tombstoned, and its unsealed material, oldest version of a key first. It
// stops at the first error. The material is fn's only for the call: it is
// not kept here.
func (s *Store) EachWithMaterial(ctx context.Context, fn func(Version, []byte) error) error {
	list := &corev1.SecretList{}
	if err := s.Reader.List(ctx, list, client.InNamespace(s.Namespace), client.MatchingLabels{
		kmsv1alpha1.ManagedByLabel: kmsv1alpha1.ManagedByValue,
		kmsv1alpha1.ComponentLabel: ComponentMaterial,
	}); err != nil {
		return fmt.Errorf("list key material: %w", err)
	}
	for i := range list.Items {
		secret := &list.Items[i]
		v, err := versionFromSecret(secret)
		if err != nil {
			return err
		}
		material, err := s.unsealSecret(ctx, secret, seal.MaterialAAD(v.KeyID, v.Version, v.KeySpec))
		if err != nil {
			return fmt.Errorf("unseal key %s version %d: %w", v.KeyID, v.Version, err)
		}
		if err := fn(v, material); err != nil {
			return err
		}
	}
	return nil
}

// LoadVersion reads the description of one version from the API server,
// nil when it does not exist.
func (s *Store) LoadVersion(ctx context.Context, keyID string, version int32) (*Version, error) {
	secret := &corev1.Secret{}
	err := s.Reader.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: SecretName(keyID, version)}, secret)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read key %s version %d: %w", keyID, version, err)
	}
	v, err := versionFromSecret(secret)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// CreateTombstone seals material restored from a backup as a tombstoned
// version of v.KeyID, kept until v.DestroyAfter with the policy record
// v.DeletedPolicy, as if its key had been deleted from v.KeyNamespace: a
// Key with spec.restoreFrom takes it back, under that policy, before the
// window ends. v.RestoredFrom names the backup contents. Like Create it
// never overwrites: it reports false when the version's Secret already
// exists. With dryRun the API server checks the Secret and stores nothing.
func (s *Store) CreateTombstone(ctx context.Context, v Version, material []byte, dryRun bool) (bool, error) {
	annotations := map[string]string{
		AnnotationKeySpec:       v.KeySpec,
		AnnotationCreatedAt:     v.CreatedAt.UTC().Format(time.RFC3339Nano),
		AnnotationDestroyAfter:  v.DestroyAfter.UTC().Format(time.RFC3339Nano),
		AnnotationDeletedPolicy: v.DeletedPolicy,
		AnnotationRestoredFrom:  v.RestoredFrom,
	}
	if v.RotateRequest != "" {
		annotations[AnnotationRotateRequest] = v.RotateRequest
	}
	if v.ImportRequest != "" {
		annotations[AnnotationImportRequest] = v.ImportRequest
	}
	if len(v.PublicKey) > 0 {
		annotations[AnnotationPublicKey] = base64.StdEncoding.EncodeToString(v.PublicKey)
	}
	labels := map[string]string{
		kmsv1alpha1.ComponentLabel: ComponentMaterial,
		LabelKeyNamespace:          v.KeyNamespace,
		LabelKeyName:               v.KeyName,
		LabelKeyID:                 v.KeyID,
		LabelKeyVersion:            strconv.Itoa(int(v.Version)),
		LabelTombstone:             "true",
	}
	what := fmt.Sprintf("key %s version %d", v.KeyID, v.Version)
	var opts []client.CreateOption
	if dryRun {
		opts = append(opts, client.DryRunAll)
	}
	return s.createSealed(ctx, what, SecretName(v.KeyID, v.Version), labels, annotations, material, seal.MaterialAAD(v.KeyID, v.Version, v.KeySpec), opts...)
}

// All lists every version of every key, live and tombstoned, without
// unsealing anything.
func (s *Store) All(ctx context.Context) ([]Version, error) {
	return s.list(ctx, client.MatchingLabels{})
}

// ResourceVersion is the resourceVersion of the version's Secret when it
// was read: it changes with every write (a tombstone, a restore, a reseal).
func (v Version) ResourceVersion() string { return v.resourceVersion }

// TrialUnsealPrevious proves the previous root of a migration against a
// key version it sealed: the first material Secret whose data names the
// previous provider is unsealed from its data (a resealed copy in its
// annotations does not count). With none left there is nothing to prove.
// One that does not unseal is seal.ErrWrongRoot: the --previous-* settings
// name another root than the one that sealed the material.
func (s *Store) TrialUnsealPrevious(ctx context.Context, previous seal.Sealer) error {
	opts := []client.ListOption{client.InNamespace(s.Namespace), client.Limit(200), client.MatchingLabels{
		kmsv1alpha1.ManagedByLabel: kmsv1alpha1.ManagedByValue,
		kmsv1alpha1.ComponentLabel: ComponentMaterial,
	}}
	for cont := ""; ; {
		list := &corev1.SecretList{}
		if err := s.Reader.List(ctx, list, append(opts, client.Continue(cont))...); err != nil {
			return fmt.Errorf("%w: list sealed Secrets of %s: %w", seal.ErrRootUnavailable, s.Namespace, err)
		}
		for i := range list.Items {
			secret := &list.Items[i]
			if string(secret.Data[dataProvider]) != previous.Provider() {
				continue
			}
			aad, _ := sealedAAD(secret)
			if aad == nil {
				continue
			}
			material, err := previous.Unseal(ctx, secret.Data[dataSealed], aad)
			clear(material)
			if errors.Is(err, seal.ErrUnseal) {
				return fmt.Errorf("%w: Secret %s/%s, sealed by the previous root of trust %s, does not unseal under it: the --previous-* settings name another root",
					seal.ErrWrongRoot, s.Namespace, secret.Name, previous.Provider())
			}
			return err
		}
		if cont = list.Continue; cont == "" {
			return nil
		}
	}
}
