// Package keystore keeps sealed key material in Secrets of the operator's
// namespace: one Secret per key version, named after the key ID and
// version, so that creating a version is a compare-and-swap (AlreadyExists
// means another writer made it) and versions are only ever added.
//
// Deleting a Key turns its versions into tombstones (a label and a destroy-after
// time); restoring takes them back; only the retention controller deletes a
// material Secret, after its destroy-after time.
package keystore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/seal"
)

// Labels, annotations and data of a material Secret.
const (
	// SecretType is the fixed type of every material Secret and import
	// wrapping key: the root of trust counts these before it would ever
	// create a root key.
	SecretType = seal.SealedSecretType
	// ComponentMaterial is the app.kubernetes.io/component of material Secrets.
	ComponentMaterial = "key-material"

	LabelKeyNamespace = "kms.kubekms.io/key-namespace"
	LabelKeyName      = "kms.kubekms.io/key-name"
	LabelKeyID        = "kms.kubekms.io/key-id"
	LabelKeyVersion   = "kms.kubekms.io/key-version"
	// LabelTombstone is "true" on the versions of a deleted key.
	LabelTombstone = "kms.kubekms.io/tombstone"

	AnnotationKeySpec   = "kms.kubekms.io/key-spec"
	AnnotationCreatedAt = "kms.kubekms.io/created-at"
	// AnnotationRotateRequest holds the value of the Key's rotate annotation
	// a version answered (on-demand rotation), so a value makes one version.
	AnnotationRotateRequest = "kms.kubekms.io/rotate-request"
	// AnnotationImportRequest names the import request an imported version
	// answered (see Version.ImportRequest), so a request imports once.
	AnnotationImportRequest = "kms.kubekms.io/import-request"
	AnnotationDestroyAfter  = "kms.kubekms.io/destroy-after"
	// AnnotationDeletedPolicy, on a tombstone, holds the policy the key had
	// when it was deleted (JSON, see access.DeletedPolicy): a restore is
	// checked under it and the restored key comes back under it.
	AnnotationDeletedPolicy = "kms.kubekms.io/deleted-policy"
	// AnnotationPublicKey holds an asymmetric version's public key
	// (SubjectPublicKeyInfo DER, base64): public, so not sealed.
	AnnotationPublicKey = "kms.kubekms.io/public-key"
	// AnnotationRestoredFrom, on a version a restore wrote, is the SHA-256
	// of the backup contents it came from: a restore run again with the
	// same contents finishes what it began, any other refuses to touch
	// the key.
	AnnotationRestoredFrom = "kms.kubekms.io/restored-from"

	dataSealed   = "sealed"
	dataProvider = "sealer"

	// legacyImportRequestPrefix: releases before the import request had
	// its own annotation wrote it into AnnotationRotateRequest behind this
	// prefix. Reading still maps it to ImportRequest, so material imported
	// by such a release is never imported a second time.
	legacyImportRequestPrefix = "import:"
)

// Version describes one stored version of a key. It never holds material.
type Version struct {
	KeyID        string
	Version      int32
	KeyNamespace string
	KeyName      string
	KeySpec      string
	CreatedAt    time.Time
	// RotateRequest is the value of the rotate annotation this version
	// answered, if any.
	RotateRequest string
	// ImportRequest names the import request an imported version answered,
	// if any: an opaque string the Key controller chooses (the import
	// Secret's UID and the Key's UID and generation). New versions carry
	// it in AnnotationImportRequest; for versions an older release wrote it
	// is read from RotateRequest (legacyImportRequestPrefix).
	ImportRequest string
	Tombstone     bool
	DestroyAfter  time.Time
	// DeletedPolicy is the record of the policy of the version's key
	// (AnnotationDeletedPolicy): kept current while the key lives, frozen
	// when it is deleted.
	DeletedPolicy string
	// PublicKey is the SubjectPublicKeyInfo DER of an asymmetric version.
	PublicKey []byte
	// RestoredFrom is AnnotationRestoredFrom ("" for versions made here).
	RestoredFrom string

	secretName      string
	uid             types.UID
	resourceVersion string
}

// Owner names the Key a new version belongs to.
type Owner struct {
	Namespace, Name, KeyID, KeySpec string
}

// Store reads and writes material Secrets.
type Store struct {
	// Client writes; Reader reads and must not be a cache, so that decisions
	// to generate material are never taken on stale data.
	Client    client.Client
	Reader    client.Reader
	Namespace string
	Sealer    seal.Sealer
	// Previous, when set, is the root of trust a migration moves away
	// from: material it sealed still unseals, and ResealBatch moves it
	// under Sealer.
	Previous seal.Sealer
}

// SecretName is the deterministic name of a version's Secret.
func SecretName(keyID string, version int32) string {
	return fmt.Sprintf("kubekms-key-%s-v%d", keyID, version)
}

// ByKeyID lists every version of a key ID, tombstoned or not, oldest first.
func (s *Store) ByKeyID(ctx context.Context, keyID string) ([]Version, error) {
	return s.list(ctx, client.MatchingLabels{LabelKeyID: keyID})
}

// ActiveByKeyName lists the live (not tombstoned) versions labelled with a
// Key's namespace and name, oldest first.
func (s *Store) ActiveByKeyName(ctx context.Context, namespace, name string) ([]Version, error) {
	vs, err := s.list(ctx, client.MatchingLabels{LabelKeyNamespace: namespace, LabelKeyName: name})
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(vs, func(v Version) bool { return v.Tombstone }), nil
}

func (s *Store) list(ctx context.Context, sel client.MatchingLabels) ([]Version, error) {
	sel = client.MatchingLabels(mergeLabels(sel, map[string]string{
		kmsv1alpha1.ManagedByLabel: kmsv1alpha1.ManagedByValue,
		kmsv1alpha1.ComponentLabel: ComponentMaterial,
	}))
	list := &corev1.SecretList{}
	if err := s.Reader.List(ctx, list, client.InNamespace(s.Namespace), sel); err != nil {
		return nil, fmt.Errorf("list key material: %w", err)
	}
	out := make([]Version, 0, len(list.Items))
	for i := range list.Items {
		v, err := versionFromSecret(&list.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b Version) int { return int(a.Version) - int(b.Version) })
	return out, nil
}

// FromSecret reads the description of a version from its Secret.
func FromSecret(secret *corev1.Secret) (Version, error) { return versionFromSecret(secret) }

func versionFromSecret(secret *corev1.Secret) (Version, error) {
	bad := func(what string) (Version, error) {
		return Version{}, fmt.Errorf("material Secret %s/%s: %s", secret.Namespace, secret.Name, what)
	}
	if secret.Type != SecretType {
		return bad(fmt.Sprintf("type is %q, want %q", secret.Type, SecretType))
	}
	n, err := strconv.ParseInt(secret.Labels[LabelKeyVersion], 10, 32)
	if err != nil || n < 1 {
		return bad(fmt.Sprintf("label %s is %q, want a version number", LabelKeyVersion, secret.Labels[LabelKeyVersion]))
	}
	created, err := time.Parse(time.RFC3339Nano, secret.Annotations[AnnotationCreatedAt])
	if err != nil {
		return bad(fmt.Sprintf("annotation %s is not an RFC 3339 time", AnnotationCreatedAt))
	}
	v := Version{
		KeyID:           secret.Labels[LabelKeyID],
		Version:         int32(n),
		KeyNamespace:    secret.Labels[LabelKeyNamespace],
		KeyName:         secret.Labels[LabelKeyName],
		KeySpec:         secret.Annotations[AnnotationKeySpec],
		CreatedAt:       created,
		RotateRequest:   secret.Annotations[AnnotationRotateRequest],
		ImportRequest:   secret.Annotations[AnnotationImportRequest],
		Tombstone:       secret.Labels[LabelTombstone] == "true",
		secretName:      secret.Name,
		uid:             secret.UID,
		resourceVersion: secret.ResourceVersion,
	}
	if legacy, ok := strings.CutPrefix(v.RotateRequest, legacyImportRequestPrefix); ok && v.ImportRequest == "" {
		// RotateRequest keeps its value: on a Generated key it may be a
		// rotate annotation that merely starts with the prefix, and it must
		// still count as answered.
		v.ImportRequest = legacy
	}
	v.DeletedPolicy = secret.Annotations[AnnotationDeletedPolicy]
	v.RestoredFrom = secret.Annotations[AnnotationRestoredFrom]
	if pk := secret.Annotations[AnnotationPublicKey]; pk != "" {
		if v.PublicKey, err = base64.StdEncoding.DecodeString(pk); err != nil {
			return bad(fmt.Sprintf("annotation %s is not base64", AnnotationPublicKey))
		}
	}
	if v.Tombstone {
		if v.DestroyAfter, err = time.Parse(time.RFC3339Nano, secret.Annotations[AnnotationDestroyAfter]); err != nil {
			return bad(fmt.Sprintf("tombstone without a valid %s annotation", AnnotationDestroyAfter))
		}
	}
	return v, nil
}

// Create seals material as the given version of a key, marked as the answer
// to rotateRequest (the rotate annotation's value, "" for none). It reports
// false when the version already exists: someone else made it first, and
// that version, not this material, is the one that counts.
func (s *Store) Create(ctx context.Context, owner Owner, version int32, material, publicKey []byte, createdAt time.Time, rotateRequest string) (bool, error) {
	return s.create(ctx, owner, version, material, publicKey, createdAt, AnnotationRotateRequest, rotateRequest)
}

// CreateImported seals imported material as the given version of a key,
// marked as the answer to importRequest (Version.ImportRequest). Like
// Create, it reports false when the version already exists.
func (s *Store) CreateImported(ctx context.Context, owner Owner, version int32, material, publicKey []byte, createdAt time.Time, importRequest string) (bool, error) {
	return s.create(ctx, owner, version, material, publicKey, createdAt, AnnotationImportRequest, importRequest)
}

// create seals a version whose request annotation (rotate or import) holds
// request, when it is not empty.
func (s *Store) create(ctx context.Context, owner Owner, version int32, material, publicKey []byte, createdAt time.Time, requestAnnotation, request string) (bool, error) {
	annotations := map[string]string{
		AnnotationKeySpec:   owner.KeySpec,
		AnnotationCreatedAt: createdAt.UTC().Format(time.RFC3339Nano),
	}
	if request != "" {
		annotations[requestAnnotation] = request
	}
	if len(publicKey) > 0 {
		annotations[AnnotationPublicKey] = base64.StdEncoding.EncodeToString(publicKey)
	}
	labels := map[string]string{
		kmsv1alpha1.ComponentLabel: ComponentMaterial,
		LabelKeyNamespace:          owner.Namespace,
		LabelKeyName:               owner.Name,
		LabelKeyID:                 owner.KeyID,
		LabelKeyVersion:            strconv.Itoa(int(version)),
	}
	what := fmt.Sprintf("key %s version %d", owner.KeyID, version)
	return s.createSealed(ctx, what, SecretName(owner.KeyID, version), labels, annotations, material, seal.MaterialAAD(owner.KeyID, version, owner.KeySpec))
}

// createSealed seals plaintext bound to aad into a new Secret of the
// operator namespace, immutable unless the root is local
// (seal.ImmutableUnder). It reports false when the Secret already exists:
// another writer made it first.
func (s *Store) createSealed(ctx context.Context, what, name string, labels, annotations map[string]string, plaintext, aad []byte, opts ...client.CreateOption) (bool, error) {
	sealed, err := s.Sealer.Seal(ctx, plaintext, aad)
	if err != nil {
		return false, fmt.Errorf("seal %s: %w", what, err)
	}
	labels[kmsv1alpha1.ManagedByLabel] = kmsv1alpha1.ManagedByValue
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.Namespace, Labels: labels, Annotations: annotations},
		Immutable:  seal.ImmutableUnder(s.Sealer),
		Type:       SecretType,
		Data:       map[string][]byte{dataSealed: sealed, dataProvider: []byte(s.Sealer.Provider())},
	}
	switch err := s.Client.Create(ctx, secret, opts...); {
	case apierrors.IsAlreadyExists(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("store %s: %w", what, err)
	}
	return true, nil
}

// Load unseals a version's material. The key ID, version and key spec come
// from the caller, not from the Secret, so a blob moved to another key's
// Secret, or altered in place, fails with seal.ErrUnseal.
func (s *Store) Load(ctx context.Context, keyID string, version int32, keySpec string) ([]byte, error) {
	return s.load(ctx, keyID, version, keySpec, false)
}

// LoadServing is Load for the data plane: a tombstoned version (a deleted
// key's, or one a restore holds until its Key takes it back) is NotFound,
// as if it did not exist. A live key is served only from live versions,
// so a tombstone of its keyID, however it came to be, never decrypts.
func (s *Store) LoadServing(ctx context.Context, keyID string, version int32, keySpec string) ([]byte, error) {
	return s.load(ctx, keyID, version, keySpec, true)
}

func (s *Store) load(ctx context.Context, keyID string, version int32, keySpec string, liveOnly bool) ([]byte, error) {
	secret := &corev1.Secret{}
	name := types.NamespacedName{Namespace: s.Namespace, Name: SecretName(keyID, version)}
	if err := s.Reader.Get(ctx, name, secret); err != nil {
		return nil, fmt.Errorf("load key %s version %d: %w", keyID, version, err)
	}
	if liveOnly && secret.Labels[LabelTombstone] == "true" {
		return nil, fmt.Errorf("load key %s version %d: it is a tombstone: %w", keyID, version,
			apierrors.NewNotFound(corev1.Resource("secrets"), name.Name))
	}
	material, err := s.unsealSecret(ctx, secret, seal.MaterialAAD(keyID, version, keySpec))
	if err != nil {
		return nil, fmt.Errorf("load key %s version %d: %w", keyID, version, err)
	}
	return material, nil
}

// unsealSecret unseals a Secret made by createSealed, bound to aad.
func (s *Store) unsealSecret(ctx context.Context, secret *corev1.Secret, aad []byte) ([]byte, error) {
	pt, _, _, err := seal.OpenSealed(ctx, secret, dataSealed, dataProvider, aad, s.Sealer, s.Previous)
	return pt, err
}

// Tombstone marks a version as belonging to a deleted key, to be destroyed
// after destroyAfter, and records the policy the key had (deletedPolicy).
// It re-reads the Secret uncached, refuses one that was replaced (another
// UID than the version read), and patches with an optimistic lock on the
// resourceVersion it just read, so a concurrent change makes it fail, not
// overwrite.
func (s *Store) Tombstone(ctx context.Context, v Version, destroyAfter time.Time, deletedPolicy string) error {
	return s.patch(ctx, v, func(secret *corev1.Secret) {
		secret.Labels[LabelTombstone] = "true"
		secret.Annotations[AnnotationDestroyAfter] = destroyAfter.UTC().Format(time.RFC3339Nano)
		secret.Annotations[AnnotationDeletedPolicy] = deletedPolicy
		// A key deleted here is no longer the restore's that made it: the
		// same restore run again must not bring it back.
		delete(secret.Annotations, AnnotationRestoredFrom)
	})
}

// RecordPolicy keeps, on a live version, the record of the policy that
// governs its key (AnnotationDeletedPolicy), so that it is already there
// when the key is deleted, even if its KeyPolicy went first (a namespace
// being deleted).
func (s *Store) RecordPolicy(ctx context.Context, v Version, record string) error {
	return s.patch(ctx, v, func(secret *corev1.Secret) { secret.Annotations[AnnotationDeletedPolicy] = record })
}

// Restore takes a tombstoned version back for the Key namespace/name.
func (s *Store) Restore(ctx context.Context, v Version, namespace, name string) error {
	return s.patch(ctx, v, func(secret *corev1.Secret) {
		delete(secret.Labels, LabelTombstone)
		delete(secret.Annotations, AnnotationDestroyAfter)
		delete(secret.Annotations, AnnotationDeletedPolicy)
		delete(secret.Annotations, AnnotationRestoredFrom)
		secret.Labels[LabelKeyNamespace] = namespace
		secret.Labels[LabelKeyName] = name
	})
}

// Destroy deletes a version's Secret, only if it is still the tombstone that
// was read (UID and resourceVersion preconditions).
func (s *Store) Destroy(ctx context.Context, v Version) error {
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: v.secretName}}
	err := s.Client.Delete(ctx, secret, client.Preconditions{UID: &v.uid, ResourceVersion: &v.resourceVersion})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("destroy key %s version %d: %w", v.KeyID, v.Version, err)
	}
	return nil
}

func (s *Store) patch(ctx context.Context, v Version, mutate func(*corev1.Secret)) error {
	secret := &corev1.Secret{}
	if err := s.Reader.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: v.secretName}, secret); err != nil {
		return fmt.Errorf("key %s version %d: %w", v.KeyID, v.Version, err)
	}
	if secret.UID != v.uid {
		return fmt.Errorf("key %s version %d: Secret %s was replaced", v.KeyID, v.Version, v.secretName)
	}
	orig := secret.DeepCopy()
	if secret.Annotations == nil {
		secret.Annotations = map[string]string{}
	}
	mutate(secret)
	if err := s.Client.Patch(ctx, secret, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("key %s version %d: %w", v.KeyID, v.Version, err)
	}
	return nil
}

func mergeLabels(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

// TrialUnseal unseals one key version (or import wrapping key) of the
// namespace under sealer, to prove it is the root the material was sealed
// under when there is no root check Secret to say so (seal.VerifyRoot).
// One that does not unseal, or names another root of trust, is
// seal.ErrWrongRoot, and so are sealed Secrets none of which can be tried;
// with no sealed Secret at all there is nothing to prove. The material
// unsealed is dropped at once.
func (s *Store) TrialUnseal(ctx context.Context, sealer seal.Sealer) error {
	list := &corev1.SecretList{}
	if err := s.Reader.List(ctx, list, client.InNamespace(s.Namespace), client.MatchingFields{"type": string(SecretType)}); err != nil {
		return fmt.Errorf("%w: list sealed Secrets of %s: %w", seal.ErrRootUnavailable, s.Namespace, err)
	}
	trial := *s
	trial.Sealer = sealer
	// A Secret that claims to be sealed by this provider proves it, or
	// proves it wrong, alone: the previous root of a migration is tried
	// only when nothing claims the configured provider yet (the migration
	// has not sealed anything under it), or any root of that provider
	// would pass.
	claims := func(secret *corev1.Secret) bool {
		return string(secret.Data[dataProvider]) == sealer.Provider() || secret.Annotations[seal.AnnotationResealedBy] == sealer.Provider()
	}
	if i := slices.IndexFunc(list.Items, func(secret corev1.Secret) bool { aad, _ := sealedAAD(&secret); return aad != nil && claims(&secret) }); i >= 0 {
		trial.Previous = nil
		list.Items = list.Items[i : i+1]
	}
	for _, secret := range list.Items {
		aad, _ := sealedAAD(&secret)
		if aad == nil {
			continue // its labels were edited: it proves nothing
		}
		material, err := trial.unsealSecret(ctx, &secret, aad)
		clear(material)
		switch {
		case errors.Is(err, seal.ErrUnseal):
			return fmt.Errorf("%w: Secret %s/%s does not unseal under the configured root of trust %s: configure the root it was sealed under",
				seal.ErrWrongRoot, s.Namespace, secret.Name, sealer.Provider())
		case err != nil:
			return err
		}
		return nil
	}
	if len(list.Items) > 0 {
		return fmt.Errorf("%w: none of the %d sealed Secrets of %s carries the labels that say what it seals, so none can prove the configured root of trust %s: "+
			"restore their labels, or Secret %s, from your backup",
			seal.ErrWrongRoot, len(list.Items), s.Namespace, sealer.Provider(), seal.RootCheckSecretName)
	}
	return nil
}

// ResealProgress counts the sealed Secrets of the namespace during a
// reseal under a new root (ResealBatch).
type ResealProgress struct {
	// Total counts the sealed Secrets; Pending those not yet sealed under
	// the current root, after this batch; Resealed those this batch
	// resealed.
	Total, Pending, Resealed int
	// Failed says, for a few of the pending ones, why they could not be
	// resealed (labels edited so that they no longer say what they seal,
	// a blob that does not unseal); they keep the old root from being
	// retired.
	Failed []string
}

// resealPageSize is how many sealed Secrets one List returns.
const resealPageSize = 500

// ResealBatch reseals under the store's sealer, with seal.Reseal, up to
// limit sealed Secrets (key versions, tombstones and import wrapping keys)
// that are not sealed under its current root yet, and counts the rest;
// with limit 0 it only counts. Whether a Secret is current is read from
// its blob's provider and header, or, with verify, decided by unsealing it
// (an HSM or AWS KMS call per Secret: for the count before old roots are
// retired). Each Secret is written alone and at once, so a crash between
// two leaves each one readable; calling it again goes on where it stopped.
func (s *Store) ResealBatch(ctx context.Context, limit int, verify bool) (ResealProgress, error) {
	var p ResealProgress
	opts := []client.ListOption{client.InNamespace(s.Namespace), client.MatchingFields{"type": string(SecretType)}, client.Limit(resealPageSize)}
	for cont := ""; ; {
		list := &corev1.SecretList{}
		if err := s.Reader.List(ctx, list, append(opts, client.Continue(cont))...); err != nil {
			return p, fmt.Errorf("list sealed Secrets of %s: %w", s.Namespace, err)
		}
		for i := range list.Items {
			secret := &list.Items[i]
			p.Total++
			if !verify && currentByHeader(secret, s.Sealer) {
				continue
			}
			aad, why := sealedAAD(secret)
			var needed bool
			err := errors.New(why)
			if aad != nil {
				needed, err = seal.Reseal(ctx, s.Client, secret, dataSealed, dataProvider, aad, s.Sealer, s.Previous, p.Resealed >= limit)
			}
			switch {
			case err == nil && !needed:
			case err == nil && p.Resealed >= limit:
				p.Pending++
			case err == nil:
				p.Resealed++
			case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
				p.Pending++ // changed (a tombstone) or destroyed meanwhile: the next batch sees it
			default:
				p.Pending++
				if len(p.Failed) < 5 {
					p.Failed = append(p.Failed, fmt.Sprintf("%s: %v", secret.Name, err))
				}
			}
		}
		if cont = list.Continue; cont == "" {
			return p, nil
		}
	}
}

// currentByHeader says, without unsealing, that secret's blob names
// sealer's provider and current root key version, where reseal would put it.
func currentByHeader(secret *corev1.Secret, sealer seal.Sealer) bool {
	blob, provider, err := seal.SealedBlob(secret, dataSealed, dataProvider)
	_, annotated := secret.Annotations[seal.AnnotationResealed]
	immutable := secret.Immutable != nil && *secret.Immutable
	return err == nil && provider == sealer.Provider() && seal.SealedUnderCurrent(sealer, blob) && (immutable || !annotated)
}

// sealedAAD is the associated data a sealed Secret's blob is bound to, read
// from its labels; nil, and why, when they do not say.
func sealedAAD(secret *corev1.Secret) ([]byte, string) {
	keyID := secret.Labels[LabelKeyID]
	if secret.Labels[kmsv1alpha1.ComponentLabel] == ComponentImportWrappingKey && keyID != "" {
		return seal.MaterialAAD(keyID, 0, wrappingKeySpec), ""
	}
	version, err := strconv.Atoi(secret.Labels[LabelKeyVersion])
	keySpec := secret.Annotations[AnnotationKeySpec]
	if err != nil || keyID == "" || keySpec == "" {
		return nil, fmt.Sprintf("its labels %s and %s or annotation %s were edited: restore them from your backup", LabelKeyID, LabelKeyVersion, AnnotationKeySpec)
	}
	return seal.MaterialAAD(keyID, int32(version), keySpec), ""
}
