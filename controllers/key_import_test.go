package controllers_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/controllers"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/kmscrypto"
)

// Bring your own key. openssl does the wrapping in the data plane suite's
// round trip; here Go wraps, so each refusal can be provoked precisely.
var _ = Describe("Key import (origin: External)", func() {
	var ns string
	BeforeEach(func(ctx SpecContext) { ns = newNamespace(ctx) })

	external := func(name string, opts ...keyOption) *kmsv1alpha1.Key {
		k := newKey(ns, name, opts...)
		k.Spec.Origin = kmsv1alpha1.KeyOriginExternal
		return k
	}

	// pendingImport waits for the key's import parameters and returns the key.
	pendingImport := func(ctx context.Context, k *kmsv1alpha1.Key) *kmsv1alpha1.Key {
		var got *kmsv1alpha1.Key
		Eventually(func(g Gomega) {
			got = getKey(ctx, k)()
			g.Expect(got.Status.State).To(Equal(kmsv1alpha1.KeyStatePendingImport))
			g.Expect(got.Status.ImportParameters).NotTo(BeNil())
		}).Should(Succeed())
		return got
	}

	wrapOAEP := func(params *kmsv1alpha1.KeyImportParameters, material []byte) []byte {
		block, _ := pem.Decode([]byte(params.WrappingPublicKey))
		Expect(block).NotTo(BeNil())
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		Expect(err).NotTo(HaveOccurred())
		wrapped, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub.(*rsa.PublicKey), material, nil)
		Expect(err).NotTo(HaveOccurred())
		return wrapped
	}

	// token is the key's current import token, as GetParametersForImport
	// hands it out (it is not in the Key's status).
	token := func(ctx context.Context, k *kmsv1alpha1.Key) string {
		GinkgoHelper()
		p, err := store.ImportParameters(ctx, getKey(ctx, k)().Status.KeyID)
		Expect(err).NotTo(HaveOccurred())
		Expect(p).NotTo(BeNil())
		return p.Token
	}
	requestClosed := func(ctx context.Context, k *kmsv1alpha1.Key) func() bool {
		return func() bool {
			i := getKey(ctx, k)().Spec.Import
			return i == nil || i.SecretRef == nil
		}
	}

	putImportSecret := func(ctx context.Context, name string, wrapped []byte, token string) *corev1.Secret {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Data:       map[string][]byte{kmsv1alpha1.ImportSecretWrappedMaterial: wrapped, kmsv1alpha1.ImportSecretToken: []byte(token)},
		}
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		return s
	}

	setImport := func(ctx context.Context, k *kmsv1alpha1.Key, mutate func(*kmsv1alpha1.KeyImport)) {
		cur := getKey(ctx, k)()
		orig := cur.DeepCopy()
		if cur.Spec.Import == nil {
			cur.Spec.Import = &kmsv1alpha1.KeyImport{}
		}
		mutate(cur.Spec.Import)
		Expect(k8sClient.Patch(ctx, cur, client.MergeFrom(orig))).To(Succeed())
	}
	// pointAt asks for the import of the Secret name as it is now (the
	// request names its material by hash; a missing Secret gets a hash of nothing).
	pointAt := func(name string) func(*kmsv1alpha1.KeyImport) {
		return func(i *kmsv1alpha1.KeyImport) {
			s := &corev1.Secret{}
			_ = k8sClient.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s)
			sum := sha256.Sum256(s.Data[kmsv1alpha1.ImportSecretWrappedMaterial])
			i.SecretRef = &kmsv1alpha1.LocalSecretReference{Name: name}
			i.WrappedKeyMaterialSHA256 = hex.EncodeToString(sum[:])
		}
	}

	secretGone := func(ctx context.Context, name string) func() bool {
		return func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.Secret{}))
		}
	}

	// crashWithRequestOpen stops the manager and leaves key as a crash
	// between making an imported version and closing its request would:
	// new material, wrapped for the key's import parameters, in Secret
	// "wrapped", and an open request for it (changed by also). The caller
	// makes the version, as the crashed manager did. It returns the key as
	// stored now, the material and the Secret.
	crashWithRequestOpen := func(ctx context.Context, k *kmsv1alpha1.Key, also ...func(*kmsv1alpha1.KeyImport)) (*kmsv1alpha1.Key, []byte, *corev1.Secret) {
		GinkgoHelper()
		stopMgr()
		material := make([]byte, 32)
		_, _ = rand.Read(material)
		secret := putImportSecret(ctx, "wrapped", wrapOAEP(k.Status.ImportParameters, material), token(ctx, k))
		setImport(ctx, k, func(i *kmsv1alpha1.KeyImport) {
			pointAt("wrapped")(i)
			for _, f := range also {
				f(i)
			}
		})
		return getKey(ctx, k)(), material, secret
	}
	// expectAnsweredOnceThenRestart reconciles the key once, without the
	// manager, and checks that the version made before the crash answered
	// the request: nothing imported twice, the Secret deleted, the request
	// closed. Then it starts the manager again.
	expectAnsweredOnceThenRestart := func(ctx context.Context, k *kmsv1alpha1.Key) {
		GinkgoHelper()
		_, err := directReconciler().Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(k)})
		Expect(err).NotTo(HaveOccurred())
		Expect(countMaterial(ctx, k.Status.KeyID)()).To(Equal(2), "version 1 and the wrapping key: nothing imported twice")
		Expect(secretGone(ctx, "wrapped")()).To(BeTrue(), "the imported Secret is deleted")
		Expect(requestClosed(ctx, k)()).To(BeTrue(), "the request is closed")
		stopMgr = startManager()
	}

	importCondition := func(ctx context.Context, k *kmsv1alpha1.Key) func() *metav1.Condition {
		return func() *metav1.Condition {
			return meta.FindStatusCondition(getKey(ctx, k)().Status.Conditions, kmsv1alpha1.KeyConditionImported)
		}
	}

	It("publishes RSA 4096 import parameters valid for 24h, then imports, deletes the wrapped copy and imports again as a new version", func(ctx SpecContext) {
		key := pendingImport(ctx, createKey(ctx, external("byok")))
		params := key.Status.ImportParameters
		block, _ := pem.Decode([]byte(params.WrappingPublicKey))
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		Expect(err).NotTo(HaveOccurred())
		Expect(pub.(*rsa.PublicKey).N.BitLen()).To(Equal(4096))
		Expect(params.ExpiresAt.Time).To(BeTemporally("~", fakeClock.Now().Add(24*time.Hour), time.Minute))
		firstToken := token(ctx, key)
		Expect(firstToken).To(HavePrefix("kubekms-import-v1."))
		expectReadyReason(ctx, key, kmsv1alpha1.KeyReasonPendingImport)
		Expect(key.Status.CurrentVersion).To(BeZero())

		material := make([]byte, 32)
		_, _ = rand.Read(material)
		wrappedSecret := putImportSecret(ctx, "wrapped", wrapOAEP(params, material), firstToken)
		setImport(ctx, key, pointAt("wrapped"))
		generation := getKey(ctx, key)().Generation

		key = waitReady(ctx, key, 1)
		Eventually(requestClosed(ctx, key)).Should(BeTrue(), "the import request is answered once and closed")
		v1 := versionSecret(ctx, key.Status.KeyID, 1)
		Expect(v1.Annotations).To(HaveKeyWithValue(keystore.AnnotationImportRequest, fmt.Sprintf("%s@%s/%d", wrappedSecret.UID, key.UID, generation)),
			"the version names the import request it answered in its own annotation")
		Expect(v1.Annotations).NotTo(HaveKey(keystore.AnnotationRotateRequest), "an import is no rotate request")
		Eventually(func() string { return token(ctx, key) }).ShouldNot(Equal(firstToken), "a token is good for one import")
		Expect(key.Status.State).To(Equal(kmsv1alpha1.KeyStateEnabled))
		Expect(meta.IsStatusConditionTrue(key.Status.Conditions, kmsv1alpha1.KeyConditionImported)).To(BeTrue())
		Eventually(secretGone(ctx, "wrapped")).Should(BeTrue(), "the wrapped copy is deleted")
		got, err := store.Load(ctx, key.Status.KeyID, 1, "SYMMETRIC_DEFAULT")
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Equal(material), "the sealed version is the imported material")
		Eventually(eventReasons(ctx, ns, "byok")).Should(ContainElement(controllers.ReasonImported))

		By("the material and the wrapping private key exist only sealed")
		secrets := &corev1.SecretList{}
		Expect(k8sClient.List(ctx, secrets)).To(Succeed())
		for _, sec := range secrets.Items {
			for k, v := range sec.Data {
				Expect(bytes.Contains(v, material)).To(BeFalse(), "Secret %s/%s key %s holds the material", sec.Namespace, sec.Name, k)
				_, err := x509.ParsePKCS8PrivateKey(v)
				Expect(err).To(HaveOccurred(), "Secret %s/%s key %s holds a private key", sec.Namespace, sec.Name, k)
			}
		}
		shown, err := json.Marshal(getKey(ctx, key)())
		Expect(err).NotTo(HaveOccurred())
		Expect(bytes.Contains(shown, material)).To(BeFalse())
		Expect(string(shown)).NotTo(ContainSubstring(base64.StdEncoding.EncodeToString(material)))
		for _, note := range eventNotes(ctx, ns, "byok", controllers.ReasonImported)() {
			Expect(note).NotTo(ContainSubstring(base64.StdEncoding.EncodeToString(material)))
		}

		// A Secret that merely appears under the old name does nothing.
		key = getKey(ctx, key)()
		second := bytes.Repeat([]byte{0x5a}, 32)
		putImportSecret(ctx, "wrapped", wrapOAEP(key.Status.ImportParameters, second), token(ctx, key))
		Consistently(func() int32 { return getKey(ctx, key)().Status.CurrentVersion }, "3s", "300ms").Should(Equal(int32(1)))

		// A new import request (setting secretRef again) adds version 2.
		setImport(ctx, key, pointAt("wrapped"))
		key = waitReady(ctx, key, 2)
		Eventually(secretGone(ctx, "wrapped")).Should(BeTrue())
		got, err = store.Load(ctx, key.Status.KeyID, 2, "SYMMETRIC_DEFAULT")
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Equal(second))
		Expect(key.Status.Versions).To(HaveLen(2))
		Eventually(eventNotes(ctx, ns, "byok", controllers.ReasonImported)).Should(ContainElement(ContainSubstring("as version 2")),
			"each import is its own Event, not a fold of the first")

		// Deleting the Key removes its wrapping key (not material) at once.
		Expect(k8sClient.Delete(ctx, key)).To(Succeed())
		Eventually(func() bool {
			err := k8sClient.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: keystore.ImportSecretName(key.Status.KeyID)}, &corev1.Secret{})
			return apierrors.IsNotFound(err)
		}).Should(BeTrue())
	})

	It("imports an RSA private key wrapped with RSA_AES_KEY_WRAP_SHA_256 and publishes its public key", func(ctx SpecContext) {
		key := pendingImport(ctx, createKey(ctx, external("signing", withKeySpec(kmsv1alpha1.KeySpecRSA2048))))
		rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
		Expect(err).NotTo(HaveOccurred())
		pkcs8, err := x509.MarshalPKCS8PrivateKey(rsaKey)
		Expect(err).NotTo(HaveOccurred())
		aesKey := make([]byte, 32)
		_, _ = rand.Read(aesKey)
		wrappedMaterial, err := kmscrypto.WrapKWP(aesKey, pkcs8)
		Expect(err).NotTo(HaveOccurred())
		putImportSecret(ctx, "wrapped", append(wrapOAEP(key.Status.ImportParameters, aesKey), wrappedMaterial...), token(ctx, key))
		setImport(ctx, key, func(i *kmsv1alpha1.KeyImport) {
			pointAt("wrapped")(i)
			i.WrappingAlgorithm = kmsv1alpha1.WrappingRSAAESKeyWrapSHA256
		})
		key = waitReady(ctx, key, 1)
		der, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
		Expect(err).NotTo(HaveOccurred())
		Expect(key.Status.PublicKey).To(Equal(kmscrypto.PublicKeyPEM(der)))
		Expect(key.Status.KeyUsage).To(Equal(kmsv1alpha1.KeyUsageEncryptDecrypt))
	})

	It("refuses a wrong wrapping key, material of the wrong length and an expired token, naming the problem and keeping the Secret", func(ctx SpecContext) {
		key := pendingImport(ctx, createKey(ctx, external("picky")))
		params := key.Status.ImportParameters
		picky := token(ctx, key)
		expectFailure := func(want string) {
			Eventually(func(g Gomega) {
				c := importCondition(ctx, key)()
				g.Expect(c).NotTo(BeNil())
				g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
				g.Expect(c.Reason).To(Equal(kmsv1alpha1.KeyReasonImportFailed))
				g.Expect(c.Message).To(ContainSubstring(want))
				got := getKey(ctx, key)()
				g.Expect(got.Status.State).To(Equal(kmsv1alpha1.KeyStatePendingImport))
				g.Expect(meta.FindStatusCondition(got.Status.Conditions, kmsv1alpha1.KeyConditionReady).Message).To(ContainSubstring(want))
			}).Should(Succeed())
			Expect(secretGone(ctx, "wrapped")()).To(BeFalse(), "a refused Secret is left for the user")
			Eventually(eventNotes(ctx, ns, "picky", controllers.ReasonImportFailed)).Should(ContainElement(ContainSubstring(want)))
			Expect(k8sClient.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "wrapped"}})).To(Succeed())
		}
		setImport(ctx, key, pointAt("wrapped"))
		Eventually(importCondition(ctx, key)).Should(HaveField("Message", ContainSubstring("Waiting for Secret "+ns+"/wrapped")))

		other, _, err := kmscrypto.NewWrappingKey(rand.Reader)
		Expect(err).NotTo(HaveOccurred())
		otherKey, err := x509.ParsePKCS8PrivateKey(other)
		Expect(err).NotTo(HaveOccurred())
		wrongWrap, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &otherKey.(*rsa.PrivateKey).PublicKey, make([]byte, 32), nil)
		Expect(err).NotTo(HaveOccurred())
		By("a Secret whose material is not the one the request names")
		putImportSecret(ctx, "wrapped", wrapOAEP(params, make([]byte, 32)), picky)
		expectFailure("its wrappedKeyMaterial does not match spec.import.wrappedKeyMaterialSHA256")

		putImportSecret(ctx, "wrapped", wrongWrap, picky)
		setImport(ctx, key, pointAt("wrapped"))
		expectFailure("wrapped material does not unwrap: wrong wrapping key")

		putImportSecret(ctx, "wrapped", wrapOAEP(params, make([]byte, 16)), picky)
		setImport(ctx, key, pointAt("wrapped"))
		expectFailure("SYMMETRIC_DEFAULT material must be 32 bytes (AES-256), got 16")

		putImportSecret(ctx, "wrapped", wrapOAEP(params, make([]byte, 32)), "kubekms-import-v1.bm90IGEgdG9rZW4")
		setImport(ctx, key, pointAt("wrapped"))
		expectFailure("importToken is not a kubekms import token")

		// A day later the token has expired and new parameters are published.
		fakeClock.Step(25 * time.Hour)
		putImportSecret(ctx, "wrapped", wrapOAEP(params, make([]byte, 32)), picky)
		setImport(ctx, key, pointAt("wrapped"))
		expectFailure("importToken expired at " + params.ExpiresAt.UTC().Format(time.RFC3339))
		renewed := getKey(ctx, key)().Status.ImportParameters
		Expect(token(ctx, key)).NotTo(Equal(picky))
		Expect(renewed.ExpiresAt.Time).To(BeTemporally(">", params.ExpiresAt.Time))
		Expect(materialSecrets(ctx, key.Status.KeyID)).To(HaveLen(1), "only the wrapping key, no material")
	})

	It("imports once even when the wrapped copy outlives a crash, and makes the key unusable at validTo", func(ctx SpecContext) {
		key := pendingImport(ctx, createKey(ctx, external("expiring")))

		By("a crash between making the version and closing the request")
		validTo := metav1.NewTime(fakeClock.Now().Add(2 * time.Hour).Truncate(time.Second))
		key, material, secret := crashWithRequestOpen(ctx, key, func(i *kmsv1alpha1.KeyImport) { i.ValidTo = &validTo })
		owner := keystore.Owner{Namespace: ns, Name: "expiring", KeyID: key.Status.KeyID, KeySpec: "SYMMETRIC_DEFAULT"}
		created, err := store.CreateImported(ctx, owner, 1, material, nil, fakeClock.Now(), controllers.ImportRequest(string(secret.UID), key))
		Expect(err).NotTo(HaveOccurred())
		Expect(created).To(BeTrue())
		expectAnsweredOnceThenRestart(ctx, key)
		key = waitReady(ctx, key, 1)

		fakeClock.Step(3 * time.Hour)
		annotate(ctx, key, "test.kubekms.io/poke", "1")
		Eventually(func(g Gomega) {
			got := getKey(ctx, key)()
			g.Expect(got.Status.State).To(Equal(kmsv1alpha1.KeyStatePendingImport))
			ready := meta.FindStatusCondition(got.Status.Conditions, kmsv1alpha1.KeyConditionReady)
			g.Expect(ready.Reason).To(Equal(kmsv1alpha1.KeyReasonMaterialExpired))
			g.Expect(ready.Message).To(ContainSubstring("expired at " + validTo.UTC().Format(time.RFC3339)))
		}).Should(Succeed())
		Eventually(eventReasons(ctx, ns, "expiring")).Should(ContainElement(controllers.ReasonMaterialExpired))

		// Moving validTo later makes the same material usable again.
		setImport(ctx, key, func(i *kmsv1alpha1.KeyImport) { i.ValidTo = &metav1.Time{Time: fakeClock.Now().Add(time.Hour)} })
		waitReady(ctx, key, 1)
	})

	// The previous release kept a version's import request in the
	// rotate-request annotation, as "import:<Secret UID>@<Key UID>/<generation>".
	It("never imports twice a request a previous release answered, its mark in the rotate-request annotation", func(ctx SpecContext) {
		key := pendingImport(ctx, createKey(ctx, external("legacy")))

		By("a crash of the previous release between making the version and closing the request")
		key, material, secret := crashWithRequestOpen(ctx, key)
		owner := keystore.Owner{Namespace: ns, Name: "legacy", KeyID: key.Status.KeyID, KeySpec: "SYMMETRIC_DEFAULT"}
		legacyMark := fmt.Sprintf("import:%s@%s/%d", secret.UID, key.UID, key.Generation)
		created, err := store.Create(ctx, owner, 1, material, nil, fakeClock.Now(), legacyMark)
		Expect(err).NotTo(HaveOccurred())
		Expect(created).To(BeTrue())
		Expect(versionSecret(ctx, key.Status.KeyID, 1).Annotations).To(HaveKeyWithValue(keystore.AnnotationRotateRequest, legacyMark))

		By("the new release reconciling")
		expectAnsweredOnceThenRestart(ctx, key)
		got := waitReady(ctx, key, 1)
		Expect(meta.IsStatusConditionTrue(got.Status.Conditions, kmsv1alpha1.KeyConditionImported)).To(BeTrue())
		stored, err := store.Load(ctx, key.Status.KeyID, 1, "SYMMETRIC_DEFAULT")
		Expect(err).NotTo(HaveOccurred())
		Expect(stored).To(Equal(material))
	})
})

// versionSecret is the material Secret of one version of a key, read
// through the API server.
func versionSecret(ctx context.Context, keyID string, version int32) corev1.Secret {
	GinkgoHelper()
	s := corev1.Secret{}
	Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: keystore.SecretName(keyID, version)}, &s)).To(Succeed())
	return s
}
