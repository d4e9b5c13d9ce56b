package keystore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/seal"
)

const (
	operatorNS = "kubekms-system"
	keyID      = "0b5c8f5e-5a0e-4f43-a5a3-1c2d3e4f5a6b"
	keySpec    = "SYMMETRIC_DEFAULT"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)

// newSealer is a local sealer with a fixed root key.
func newSealer(t *testing.T, provider string, root byte) *seal.AESGCM {
	t.Helper()
	s, err := seal.NewAESGCM(provider, map[uint32][]byte{1: bytes.Repeat([]byte{root}, seal.RootKeySize)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newStore is a Store over a fake API server that, as the real one does,
// gives every object a UID and honours UID preconditions on delete (the
// fake client alone does neither).
func newStore(t *testing.T, objs ...client.Object) (*Store, client.Client) {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	n := 0
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			n++
			obj.SetUID(types.UID(fmt.Sprintf("uid-%d", n)))
			return c.Create(ctx, obj, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			o := &client.DeleteOptions{}
			o.ApplyOptions(opts)
			if o.Preconditions != nil && o.Preconditions.UID != nil {
				cur := obj.DeepCopyObject().(client.Object)
				if err := c.Get(ctx, client.ObjectKeyFromObject(obj), cur); err != nil {
					return err
				}
				if cur.GetUID() != *o.Preconditions.UID {
					return apierrors.NewConflict(corev1.Resource("secrets"), obj.GetName(), errors.New("UID precondition failed"))
				}
			}
			return c.Delete(ctx, obj, opts...)
		},
	}).Build()
	return &Store{Client: c, Reader: c, Namespace: operatorNS, Sealer: newSealer(t, seal.LocalProvider, 1)}, c
}

func owner(namespace, name string) Owner {
	return Owner{Namespace: namespace, Name: name, KeyID: keyID, KeySpec: keySpec}
}

// mustCreate creates a version and fails unless it was new.
func mustCreate(t *testing.T, s *Store, o Owner, version int32, material []byte) {
	t.Helper()
	created, err := s.Create(context.Background(), o, version, material, nil, t0, "")
	if err != nil || !created {
		t.Fatalf("Create version %d = %v, %v; want created", version, created, err)
	}
}

func secretOf(t *testing.T, c client.Client, name string) *corev1.Secret {
	t.Helper()
	secret := &corev1.Secret{}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: operatorNS, Name: name}, secret); err != nil {
		t.Fatal(err)
	}
	return secret
}

// A version is written once: the second writer of a version learns that
// someone else made it, and the first material is the one that counts.
func TestCreateWritesAVersionOnce(t *testing.T) {
	ctx := context.Background()
	s, c := newStore(t)
	first, second := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	mustCreate(t, s, owner("shop", "payments"), 1, first)
	created, err := s.Create(ctx, owner("shop", "payments"), 1, second, nil, t0.Add(time.Hour), "r2")
	if err != nil || created {
		t.Fatalf("second Create = %v, %v; want false, nil (AlreadyExists is done)", created, err)
	}
	got, err := s.Load(ctx, keyID, 1, keySpec)
	if err != nil || !bytes.Equal(got, first) {
		t.Fatalf("Load = %x, %v; want the first material", got, err)
	}

	secret := secretOf(t, c, SecretName(keyID, 1))
	if secret.Name != "kubekms-key-"+keyID+"-v1" {
		t.Errorf("name %q, want kubekms-key-<keyID>-v1", secret.Name)
	}
	// Not immutable: a root key rotation reseals the data in place, so no
	// copy under the old root key stays (seal.Reseal).
	if secret.Type != SecretType || secret.Immutable != nil && *secret.Immutable {
		t.Errorf("type %q immutable %v; want %q and mutable", secret.Type, secret.Immutable, SecretType)
	}
	for k, want := range map[string]string{kmsv1alpha1.ManagedByLabel: kmsv1alpha1.ManagedByValue, kmsv1alpha1.ComponentLabel: ComponentMaterial,
		LabelKeyNamespace: "shop", LabelKeyName: "payments", LabelKeyID: keyID, LabelKeyVersion: "1"} {
		if secret.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, secret.Labels[k], want)
		}
	}
	if bytes.Contains(secret.Data[dataSealed], first) || len(secret.Data[dataSealed]) <= len(first) {
		t.Errorf("the Secret holds the material in the clear")
	}
	if string(secret.Data[dataProvider]) != seal.LocalProvider {
		t.Errorf("provider %q, want %q", secret.Data[dataProvider], seal.LocalProvider)
	}
}

// Another error than AlreadyExists is an error, not "someone else made it".
func TestCreateReportsOtherErrors(t *testing.T) {
	s, _ := newStore(t)
	s.Client = fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error {
			return apierrors.NewForbidden(corev1.Resource("secrets"), "x", errors.New("no"))
		},
	}).Build()
	if created, err := s.Create(context.Background(), owner("shop", "payments"), 1, []byte("m"), nil, t0, ""); created || !apierrors.IsForbidden(err) {
		t.Fatalf("Create = %v, %v; want false and the Forbidden error", created, err)
	}
}

func TestVersionDescription(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	public := []byte{0x30, 0x59, 0x30, 0x13}
	if _, err := s.Create(ctx, Owner{Namespace: "shop", Name: "signer", KeyID: keyID, KeySpec: "ECC_NIST_P256"}, 2, []byte("private"), public, t0, "rotate-7"); err != nil {
		t.Fatal(err)
	}
	vs, err := s.ByKeyID(ctx, keyID)
	if err != nil || len(vs) != 1 {
		t.Fatalf("ByKeyID = %v, %v; want one version", vs, err)
	}
	v := vs[0]
	if v.KeyID != keyID || v.Version != 2 || v.KeyNamespace != "shop" || v.KeyName != "signer" || v.KeySpec != "ECC_NIST_P256" ||
		!v.CreatedAt.Equal(t0) || v.RotateRequest != "rotate-7" || v.Tombstone || !bytes.Equal(v.PublicKey, public) {
		t.Fatalf("version read back as %+v", v)
	}

	// An imported version answers an import request, not a rotate request.
	if created, err := s.CreateImported(ctx, Owner{Namespace: "shop", Name: "signer", KeyID: keyID, KeySpec: "ECC_NIST_P256"}, 3, []byte("imported"), public, t0, "secret-uid@key-uid/1"); !created || err != nil {
		t.Fatalf("CreateImported = %v, %v", created, err)
	}
	vs, err = s.ByKeyID(ctx, keyID)
	if err != nil || len(vs) != 2 || vs[1].ImportRequest != "secret-uid@key-uid/1" || vs[1].RotateRequest != "" {
		t.Fatalf("an imported version read back as %+v, %v", vs, err)
	}
}

// Material is bound to its key ID, version and key spec: asked as anything
// else, or moved into another version's Secret, it does not unseal.
func TestLoadIsBoundToWhatTheMaterialIs(t *testing.T) {
	ctx := context.Background()
	s, c := newStore(t)
	mustCreate(t, s, owner("shop", "payments"), 1, []byte("material one"))
	mustCreate(t, s, owner("shop", "payments"), 2, []byte("material two"))
	if _, err := s.Load(ctx, keyID, 1, "HMAC_256"); !errors.Is(err, seal.ErrUnseal) {
		t.Fatalf("another key spec: %v, want seal.ErrUnseal", err)
	}
	if _, err := s.Load(ctx, keyID, 3, keySpec); !apierrors.IsNotFound(err) {
		t.Fatalf("a version that does not exist: %v, want NotFound", err)
	}

	// Version 2's Secret gets version 1's blob.
	v1, v2 := secretOf(t, c, SecretName(keyID, 1)), secretOf(t, c, SecretName(keyID, 2))
	v2.Data[dataSealed] = v1.Data[dataSealed]
	if err := c.Update(ctx, v2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, keyID, 2, keySpec); !errors.Is(err, seal.ErrUnseal) {
		t.Fatalf("a moved blob: %v, want seal.ErrUnseal", err)
	}
}

func TestLoadRefusesAnotherRootOfTrust(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	mustCreate(t, s, owner("shop", "payments"), 1, []byte("material"))
	s.Sealer = newSealer(t, "pkcs11", 1)
	if _, err := s.Load(ctx, keyID, 1, keySpec); err == nil || !strings.Contains(err.Error(), `sealed by root of trust "local", this manager uses "pkcs11"`) {
		t.Fatalf("Load = %v; want the provider mismatch", err)
	}
	s.Sealer = newSealer(t, seal.LocalProvider, 2) // another root key, same provider
	if _, err := s.Load(ctx, keyID, 1, keySpec); !errors.Is(err, seal.ErrUnseal) {
		t.Fatalf("Load under another root key = %v; want seal.ErrUnseal", err)
	}
}

// Lists are oldest first, select only material Secrets of the operator
// (not import wrapping keys, not look-alikes without the managed-by label,
// not other namespaces), and ActiveByKeyName leaves tombstones out.
func TestLists(t *testing.T) {
	ctx := context.Background()
	lookalike := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: "lookalike",
		Labels: map[string]string{kmsv1alpha1.ComponentLabel: ComponentMaterial, LabelKeyID: keyID, LabelKeyNamespace: "shop", LabelKeyName: "payments", LabelKeyVersion: "9"}}}
	elsewhere := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "elsewhere",
		Labels: map[string]string{kmsv1alpha1.ManagedByLabel: kmsv1alpha1.ManagedByValue, kmsv1alpha1.ComponentLabel: ComponentMaterial, LabelKeyID: keyID, LabelKeyNamespace: "shop", LabelKeyName: "payments", LabelKeyVersion: "8"}}}
	s, _ := newStore(t, lookalike, elsewhere)
	for _, v := range []int32{10, 2, 1} { // 10 sorts before 2 as a string
		mustCreate(t, s, owner("shop", "payments"), v, []byte("m"))
	}
	if _, err := s.CreateImportParameters(ctx, keyID, []byte("private"), []byte("public"), "token", t0); err != nil {
		t.Fatal(err)
	}
	other := owner("shop", "orders")
	other.KeyID = "11111111-2222-3333-4444-555555555555"
	mustCreate(t, s, other, 1, []byte("m"))

	all, err := s.ByKeyID(ctx, keyID)
	if err != nil {
		t.Fatal(err)
	}
	if got := versionsOf(all); got != "1 2 10" {
		t.Fatalf("ByKeyID = %s, want 1 2 10", got)
	}
	if err := s.Tombstone(ctx, all[1], t0.Add(time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	active, err := s.ActiveByKeyName(ctx, "shop", "payments")
	if err != nil {
		t.Fatal(err)
	}
	if got := versionsOf(active); got != "1 10" {
		t.Fatalf("ActiveByKeyName = %s, want 1 10 (version 2 is a tombstone)", got)
	}
	if all, err = s.ByKeyID(ctx, keyID); err != nil || versionsOf(all) != "1 2 10" {
		t.Fatalf("ByKeyID after a tombstone = %s, %v; want 1 2 10 (tombstones too)", versionsOf(all), err)
	}
	if vs, err := s.ActiveByKeyName(ctx, "web", "payments"); err != nil || len(vs) != 0 {
		t.Fatalf("another namespace's key of that name = %v, %v; want none", vs, err)
	}
}

func versionsOf(vs []Version) string {
	var out []string
	for _, v := range vs {
		out = append(out, fmt.Sprint(v.Version))
	}
	return strings.Join(out, " ")
}

// A material Secret that is not what the store wrote fails the list: a
// version is never guessed.
func TestMalformedSecrets(t *testing.T) {
	good := func() *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: SecretName(keyID, 1),
				Labels:      map[string]string{kmsv1alpha1.ManagedByLabel: kmsv1alpha1.ManagedByValue, kmsv1alpha1.ComponentLabel: ComponentMaterial, LabelKeyID: keyID, LabelKeyVersion: "1"},
				Annotations: map[string]string{AnnotationCreatedAt: t0.Format(time.RFC3339Nano)}},
			Type: SecretType,
		}
	}
	for name, tc := range map[string]struct {
		change      func(*corev1.Secret)
		wantMessage string
	}{
		"well formed":                     {change: func(*corev1.Secret) {}},
		"another type":                    {change: func(s *corev1.Secret) { s.Type = corev1.SecretTypeOpaque }, wantMessage: "type is"},
		"no version":                      {change: func(s *corev1.Secret) { delete(s.Labels, LabelKeyVersion) }, wantMessage: "want a version number"},
		"version 0":                       {change: func(s *corev1.Secret) { s.Labels[LabelKeyVersion] = "0" }, wantMessage: "want a version number"},
		"a creation time that is no time": {change: func(s *corev1.Secret) { s.Annotations[AnnotationCreatedAt] = "yesterday" }, wantMessage: "is not an RFC 3339 time"},
		"a public key that is no base64":  {change: func(s *corev1.Secret) { s.Annotations[AnnotationPublicKey] = "!!" }, wantMessage: "is not base64"},
		"a tombstone without destroy-after": {change: func(s *corev1.Secret) { s.Labels[LabelTombstone] = "true" },
			wantMessage: "tombstone without a valid"},
	} {
		t.Run(name, func(t *testing.T) {
			secret := good()
			tc.change(secret)
			s, _ := newStore(t, secret)
			_, err := s.ByKeyID(context.Background(), keyID)
			if (err == nil) != (tc.wantMessage == "") || (err != nil && !strings.Contains(err.Error(), tc.wantMessage)) {
				t.Fatalf("ByKeyID error = %v, want one containing %q", err, tc.wantMessage)
			}
		})
	}
}

// A deleted key's versions become tombstones with the policy it had; a
// restore takes them back, for the restoring Key's namespace and name.
func TestTombstoneAndRestore(t *testing.T) {
	ctx := context.Background()
	s, c := newStore(t)
	mustCreate(t, s, owner("shop", "payments"), 1, []byte("m"))
	live, _ := s.ByKeyID(ctx, keyID)
	if err := s.RecordPolicy(ctx, live[0], `{"name":"p1"}`); err != nil {
		t.Fatal(err)
	}
	read, _ := s.ByKeyID(ctx, keyID)
	if read[0].DeletedPolicy != `{"name":"p1"}` || read[0].Tombstone {
		t.Fatalf("after RecordPolicy: %+v; want the record on a live version", read[0])
	}

	destroyAfter := t0.Add(7 * 24 * time.Hour)
	if err := s.Tombstone(ctx, read[0], destroyAfter, `{"name":"p2"}`); err != nil {
		t.Fatal(err)
	}
	dead, _ := s.ByKeyID(ctx, keyID)
	if v := dead[0]; !v.Tombstone || !v.DestroyAfter.Equal(destroyAfter) || v.DeletedPolicy != `{"name":"p2"}` {
		t.Fatalf("after Tombstone: %+v", v)
	}
	if vs, _ := s.ActiveByKeyName(ctx, "shop", "payments"); len(vs) != 0 {
		t.Fatalf("a tombstone is still active: %v", vs)
	}

	if err := s.Restore(ctx, dead[0], "shop", "payments-again"); err != nil {
		t.Fatal(err)
	}
	back, _ := s.ActiveByKeyName(ctx, "shop", "payments-again")
	if len(back) != 1 || back[0].Tombstone || !back[0].DestroyAfter.IsZero() || back[0].DeletedPolicy != "" || back[0].KeyName != "payments-again" {
		t.Fatalf("after Restore: %+v", back)
	}
	secret := secretOf(t, c, SecretName(keyID, 1))
	if _, ok := secret.Annotations[AnnotationDestroyAfter]; ok {
		t.Fatal("Restore left the destroy-after annotation")
	}
	if got, err := s.Load(ctx, keyID, 1, keySpec); err != nil || string(got) != "m" {
		t.Fatalf("a restored version loads %q, %v", got, err)
	}
}

// Changing a version reads it again and patches under an optimistic lock
// (a write in between makes the patch fail) and refuses a Secret replaced
// under the same name; destroying is conditional on the very version read.
func TestChangesAreCompareAndSwap(t *testing.T) {
	ctx := context.Background()
	s, c := newStore(t)
	mustCreate(t, s, owner("shop", "payments"), 1, []byte("m"))
	stale, _ := s.ByKeyID(ctx, keyID)
	if err := s.RecordPolicy(ctx, stale[0], "first"); err != nil {
		t.Fatal(err)
	}
	if err := s.Destroy(ctx, stale[0]); !apierrors.IsConflict(err) {
		t.Fatalf("Destroy of a stale read = %v, want a conflict", err)
	}
	secretOf(t, c, SecretName(keyID, 1)) // still there

	// Someone writes the Secret between the store's read and its patch.
	racing := *s
	racing.Client = interceptor.NewClient(c.(client.WithWatch), interceptor.Funcs{
		Patch: func(ctx context.Context, cl client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			other := secretOf(t, cl, obj.GetName())
			other.Annotations["someone"] = "else"
			if err := cl.Update(ctx, other); err != nil {
				return err
			}
			return cl.Patch(ctx, obj, patch, opts...)
		},
	})
	if err := racing.Tombstone(ctx, stale[0], t0, "second"); !apierrors.IsConflict(err) {
		t.Fatalf("Tombstone with a write in between = %v, want a conflict", err)
	}
	if v, _ := s.ByKeyID(ctx, keyID); v[0].Tombstone {
		t.Fatal("the conflicting Tombstone was applied")
	}

	// The Secret is deleted and written again under the same name.
	read, _ := s.ByKeyID(ctx, keyID)
	if err := c.Delete(ctx, secretOf(t, c, SecretName(keyID, 1))); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, owner("shop", "payments"), 1, []byte("m2"))
	for name, change := range map[string]func(Version) error{
		"Tombstone":    func(v Version) error { return s.Tombstone(ctx, v, t0, "") },
		"RecordPolicy": func(v Version) error { return s.RecordPolicy(ctx, v, "") },
		"Restore":      func(v Version) error { return s.Restore(ctx, v, "shop", "x") },
	} {
		if err := change(read[0]); err == nil || !strings.Contains(err.Error(), "was replaced") {
			t.Errorf("%s of a replaced Secret = %v, want 'was replaced'", name, err)
		}
	}
	replaced := secretOf(t, c, SecretName(keyID, 1))
	read[0].resourceVersion = replaced.ResourceVersion // only the UID differs now
	if err := s.Destroy(ctx, read[0]); !apierrors.IsConflict(err) {
		t.Fatalf("Destroy of a replaced Secret = %v, want a conflict", err)
	}
	secretOf(t, c, SecretName(keyID, 1)) // still there
}

func TestDestroy(t *testing.T) {
	ctx := context.Background()
	s, c := newStore(t)
	mustCreate(t, s, owner("shop", "payments"), 1, []byte("m"))
	vs, _ := s.ByKeyID(ctx, keyID)
	if err := s.Destroy(ctx, vs[0]); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, types.NamespacedName{Namespace: operatorNS, Name: SecretName(keyID, 1)}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after Destroy: %v, want NotFound", err)
	}
	if err := s.Destroy(ctx, vs[0]); err != nil {
		t.Fatalf("Destroy of a version already gone = %v, want nil", err)
	}
}

// The data plane loads live versions only: a tombstone of a keyID, however
// it came to be (a key being deleted, a restore not taken back yet, a
// planted one), is NotFound to it, while Load (restore, reseal) still reads it.
func TestLoadServingRefusesTombstones(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	o := owner("shop", "payments")
	mustCreate(t, s, o, 1, bytes.Repeat([]byte{1}, 32))
	mustCreate(t, s, o, 2, bytes.Repeat([]byte{2}, 32))
	if m, err := s.LoadServing(ctx, keyID, 2, keySpec); err != nil || m[0] != 2 {
		t.Fatalf("LoadServing of a live version = %v, %v", m, err)
	}
	all, err := s.ByKeyID(ctx, keyID)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Tombstone(ctx, all[1], t0.Add(time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadServing(ctx, keyID, 2, keySpec); !apierrors.IsNotFound(err) {
		t.Fatalf("LoadServing of a tombstone = %v, want NotFound", err)
	}
	if m, err := s.Load(ctx, keyID, 2, keySpec); err != nil || m[0] != 2 {
		t.Fatalf("Load of a tombstone = %v, %v; want its material", m, err)
	}
	if _, err := s.LoadServing(ctx, keyID, 1, keySpec); err != nil {
		t.Fatalf("LoadServing of the live version 1 = %v", err)
	}
}
