package controllers_test

import (
	"context"
	"crypto/rand"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/seal"
)

// Finding 10 of issue 12: deleting the root key Secret made the next start
// create a new root key, under which no existing key unseals.
var _ = Describe("A missing local root key", func() {
	// rootedNamespace is a fresh operator namespace with its root key and a
	// keystore sealing under it.
	rootedNamespace := func(ctx context.Context) (string, *keystore.Store) {
		ns := newNamespace(ctx)
		sealer, err := seal.LoadOrCreateLocal(ctx, k8sClient, k8sClient, ns, rand.Reader)
		Expect(err).NotTo(HaveOccurred())
		return ns, &keystore.Store{Client: k8sClient, Reader: k8sClient, Namespace: ns, Sealer: sealer}
	}
	// deleteRootKey deletes the root key Secret and returns the copy an
	// admin would have kept as a backup.
	deleteRootKey := func(ctx context.Context, ns string) *corev1.Secret {
		root := &corev1.Secret{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: seal.RootKeySecretName}, root)).To(Succeed())
		Expect(k8sClient.Delete(ctx, root)).To(Succeed())
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: root.Name, Labels: root.Labels, Annotations: root.Annotations},
			Type:       root.Type,
			Data:       root.Data,
		}
	}
	expectNoRootKey := func(ctx context.Context, ns string) {
		GinkgoHelper()
		err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: seal.RootKeySecretName}, &corev1.Secret{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no new root key Secret was created (get: %v)", err)
	}
	// Each spec has its own operator namespace, so one key identity serves all.
	o := keystore.Owner{Namespace: "shop", Name: "payments", KeyID: "8d5c4e8a-1c2b-4f3e-9a7d-0e6f5b4c3a21", KeySpec: "SYMMETRIC_DEFAULT"}

	It("is not replaced while key versions sealed under it exist, says what to restore, and works again once restored", func(ctx SpecContext) {
		ns, st := rootedNamespace(ctx)
		material := []byte("0123456789abcdef0123456789abcdef")
		for v := int32(1); v <= 2; v++ {
			created, err := st.Create(ctx, o, v, material, nil, time.Now(), "")
			Expect(err).NotTo(HaveOccurred())
			Expect(created).To(BeTrue())
		}
		backup := deleteRootKey(ctx, ns)

		_, err := seal.LoadOrCreateLocal(ctx, k8sClient, k8sClient, ns, rand.Reader)
		Expect(err).To(HaveOccurred(), "a new root key was made while sealed material exists")
		var missing *seal.MissingRootKeyError
		Expect(err).To(BeAssignableToTypeOf(missing))
		Expect(err).To(MatchError(And(
			ContainSubstring("root key Secret %s/%s is missing but 2 sealed Secrets", ns, seal.RootKeySecretName),
			ContainSubstring("restore Secret %s in namespace %s from your backup", seal.RootKeySecretName, ns),
			ContainSubstring("none is created"),
		)))
		expectNoRootKey(ctx, ns)

		By("restoring the root key Secret from the backup")
		Expect(k8sClient.Create(ctx, backup)).To(Succeed())
		sealer, err := seal.LoadOrCreateLocal(ctx, k8sClient, k8sClient, ns, rand.Reader)
		Expect(err).NotTo(HaveOccurred())
		st.Sealer = sealer
		got, err := st.Load(ctx, o.KeyID, 2, o.KeySpec)
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Equal(material))
	})

	It("is not replaced while only an import wrapping key is sealed under it", func(ctx SpecContext) {
		ns, st := rootedNamespace(ctx)
		created, err := st.CreateImportParameters(ctx, o.KeyID, []byte("private"), []byte("public"), "token", time.Now().Add(time.Hour))
		Expect(err).NotTo(HaveOccurred())
		Expect(created).To(BeTrue())
		deleteRootKey(ctx, ns)

		_, err = seal.LoadOrCreateLocal(ctx, k8sClient, k8sClient, ns, rand.Reader)
		Expect(err).To(MatchError(ContainSubstring("is missing but 1 sealed Secret (type")))
		expectNoRootKey(ctx, ns)
	})

	It("counts a sealed Secret by its type even when its labels were removed", func(ctx SpecContext) {
		ns, st := rootedNamespace(ctx)
		_, err := st.Create(ctx, o, 1, []byte("0123456789abcdef0123456789abcdef"), nil, time.Now(), "")
		Expect(err).NotTo(HaveOccurred())
		s := &corev1.Secret{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: keystore.SecretName(o.KeyID, 1)}, s)).To(Succeed())
		s.Labels = nil
		Expect(k8sClient.Update(ctx, s)).To(Succeed())
		deleteRootKey(ctx, ns)

		_, err = seal.LoadOrCreateLocal(ctx, k8sClient, k8sClient, ns, rand.Reader)
		Expect(err).To(MatchError(ContainSubstring("is missing but 1 sealed Secret (type")))
		expectNoRootKey(ctx, ns)
	})

	// Review of issue 15, finding 1: with nothing sealed yet, one replica
	// re-created a deleted root key and rewrote the root check under it,
	// while another replica still sealed under the old one: material sealed
	// then was lost at the next check.
	It("is not replaced while the root check shows one was in use, even with nothing sealed yet", func(ctx SpecContext) {
		ns, st := rootedNamespace(ctx)
		Expect(seal.VerifyRoot(ctx, k8sClient, k8sClient, ns, st.Sealer, nil, st.TrialUnseal)).To(Succeed()) // what every replica does before it seals
		deleteRootKey(ctx, ns)

		_, err := seal.LoadOrCreateLocal(ctx, k8sClient, k8sClient, ns, rand.Reader)
		Expect(err).To(MatchError(And(
			ContainSubstring("root key Secret %s/%s is missing", ns, seal.RootKeySecretName),
			ContainSubstring("Secret %s/%s shows a root key was in use", ns, seal.RootCheckSecretName),
			ContainSubstring("Restore Secret %s", seal.RootKeySecretName),
		)))
		expectNoRootKey(ctx, ns)
		// The replica still holding the old root seals, and its material stays readable.
		created, err := st.Create(ctx, o, 1, []byte("0123456789abcdef0123456789abcdef"), nil, time.Now(), "")
		Expect(err).NotTo(HaveOccurred())
		Expect(created).To(BeTrue())

		By("deleting the root check too, which an admin does only to start over")
		Expect(k8sClient.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: seal.RootCheckSecretName}})).To(Succeed())
		_, err = seal.LoadOrCreateLocal(ctx, k8sClient, k8sClient, ns, rand.Reader)
		Expect(err).To(MatchError(ContainSubstring("is missing but 1 sealed Secret")), "material sealed meanwhile still counts")
		expectNoRootKey(ctx, ns)
	})

	It("is never created by a replica that has loaded one, even with no root check and nothing sealed", func(ctx SpecContext) {
		ns, _ := rootedNamespace(ctx)
		deleteRootKey(ctx, ns)
		_, err := seal.LoadLocal(ctx, k8sClient, ns)
		Expect(err).To(MatchError(And(ContainSubstring("this manager replica has sealed under it"), ContainSubstring("restore Secret %s", seal.RootKeySecretName))))
		expectNoRootKey(ctx, ns)
	})

	// Review of issue 15, finding 3: with no root check Secret, any root
	// was taken for the right one, even over sealed material.
	It("is proved against sealed material when there is no root check Secret", func(ctx SpecContext) {
		ns, st := rootedNamespace(ctx)
		_, err := st.Create(ctx, o, 1, []byte("0123456789abcdef0123456789abcdef"), nil, time.Now(), "")
		Expect(err).NotTo(HaveOccurred())
		_, other := rootedNamespace(ctx) // another root key, of another namespace
		check := client.ObjectKey{Namespace: ns, Name: seal.RootCheckSecretName}

		err = seal.VerifyRoot(ctx, k8sClient, k8sClient, ns, other.Sealer, nil, st.TrialUnseal)
		Expect(err).To(MatchError(seal.ErrWrongRoot))
		Expect(err).To(MatchError(ContainSubstring("Secret %s/%s does not unseal under the configured root of trust local", ns, keystore.SecretName(o.KeyID, 1))))
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, check, &corev1.Secret{}))).To(BeTrue(), "no root check is written for the wrong root")

		Expect(seal.VerifyRoot(ctx, k8sClient, k8sClient, ns, st.Sealer, nil, st.TrialUnseal)).To(Succeed())
		Expect(k8sClient.Get(ctx, check, &corev1.Secret{})).To(Succeed())
		Expect(seal.VerifyRoot(ctx, k8sClient, k8sClient, ns, other.Sealer, nil, st.TrialUnseal)).To(MatchError(seal.ErrWrongRoot), "and then by the check")
	})

	It("is created when the namespace holds Secrets, but none sealed", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		Expect(k8sClient.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kubekms-ca",
				Labels: map[string]string{kmsv1alpha1.ManagedByLabel: kmsv1alpha1.ManagedByValue}},
			Data: map[string][]byte{"x": []byte("y")},
		})).To(Succeed())
		_, err := seal.LoadOrCreateLocal(ctx, k8sClient, k8sClient, ns, rand.Reader)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: seal.RootKeySecretName}, &corev1.Secret{})).To(Succeed())
	})
})
