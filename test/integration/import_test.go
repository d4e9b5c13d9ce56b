package integration

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/audit"
	"github.com/kubekms/kubekms/internal/dataplane"
	"github.com/kubekms/kubekms/internal/kmscrypto"
)

var _ = Describe("Bring your own key", func() {
	var (
		ns   string
		actx context.Context
	)
	BeforeEach(func(ctx SpecContext) { ns, actx = appNamespace(ctx) })

	// importKey creates an External key and returns its import parameters,
	// got from the data plane by app, which may GetParametersForImport.
	importKey := func(ctx context.Context, name string, spec kmsv1alpha1.KeySpecType, wrapping string) (*kmsv1alpha1.Key, *kmsv1.GetParametersForImportResponse) {
		key := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: kmsv1alpha1.KeySpec{
			KeySpec: spec, Origin: kmsv1alpha1.KeyOriginExternal,
			Import: &kmsv1alpha1.KeyImport{WrappingAlgorithm: wrapping},
		}}
		Expect(k8sClient.Create(ctx, key)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(key), key)).To(Succeed())
			g.Expect(key.Status.State).To(Equal(kmsv1alpha1.KeyStatePendingImport))
			g.Expect(key.Status.ImportParameters).NotTo(BeNil())
		}, time.Minute).Should(Succeed())
		grant(ctx, ns, "app", name, "getparametersforimport")
		var params *kmsv1.GetParametersForImportResponse
		Eventually(func() (err error) {
			params, err = kms.GetParametersForImport(actx, &kmsv1.GetParametersForImportRequest{KeyId: name})
			return err
		}).Should(Succeed())
		secretsSeen = append(secretsSeen, string(params.ImportToken))
		return key, params
	}
	// putWrapped stores the wrapped material and asks for its import (the
	// request names the material by its SHA-256).
	putWrapped := func(ctx context.Context, key *kmsv1alpha1.Key, wrapped []byte, token string) {
		Expect(k8sClient.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: key.Name + "-wrapped"},
			Data:       map[string][]byte{"wrappedKeyMaterial": wrapped, "importToken": []byte(token)},
		})).To(Succeed())
		sum := sha256.Sum256(wrapped)
		patchKey(ctx, key, func(k *kmsv1alpha1.Key) {
			k.Spec.Import.SecretRef = &kmsv1alpha1.LocalSecretReference{Name: key.Name + "-wrapped"}
			k.Spec.Import.WrappedKeyMaterialSHA256 = hex.EncodeToString(sum[:])
		})
	}

	It("imports material openssl wrapped with RSAES_OAEP_SHA_256; the service encrypts with exactly that material; it stops at validTo", func(ctx SpecContext) {
		key, params := importKey(ctx, "byok", kmsv1alpha1.KeySpecSymmetricDefault, "")
		material := make([]byte, 32)
		_, _ = rand.Read(material)
		putWrapped(ctx, key, opensslEncrypt(kmscrypto.PublicKeyPEM(params.PublicKey), "sha256", material), string(params.ImportToken))
		key = waitVersion(ctx, key, 1)
		grant(ctx, ns, "app", "byok", "encrypt", "decrypt")
		usable(actx, "byok")

		enc, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "byok", Plaintext: []byte("card 4111"), EncryptionContext: map[string]string{"order": "7"}})
		Expect(err).NotTo(HaveOccurred())
		dec, err := kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"order": "7"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(dec.Plaintext).To(Equal([]byte("card 4111")))
		local, err := kmscrypto.Decrypt(material, enc.CiphertextBlob, map[string]string{"order": "7"})
		Expect(err).NotTo(HaveOccurred(), "the ciphertext was made with the imported material")
		Expect(local).To(Equal([]byte("card 4111")))

		By("the material expiring at validTo")
		patchKey(ctx, key, func(k *kmsv1alpha1.Key) { k.Spec.Import.ValidTo = &metav1.Time{Time: time.Now().Add(2 * time.Second)} })
		Eventually(func() string {
			_, err := kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"order": "7"}})
			return status.Convert(err).Message()
		}, 30*time.Second).Should(ContainSubstring("imported material of key " + ns + "/byok expired at"))
		_, err = kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "byok", Plaintext: []byte("x")})
		Expect(status.Code(err)).To(Equal(codes.FailedPrecondition))
	})

	It("imports an ECDSA key openssl made and wrapped with RSA_AES_KEY_WRAP_SHA_256; openssl verifies what the service signs", func(ctx SpecContext) {
		key, params := importKey(ctx, "signer", kmsv1alpha1.KeySpecECCNISTP256, kmsv1alpha1.WrappingRSAAESKeyWrapSHA256)
		dir := GinkgoT().TempDir()
		keyPEM := filepath.Join(dir, "key.pem")
		run := func(args ...string) {
			cmd := exec.Command("openssl", args...)
			cmd.Dir = dir
			b, err := cmd.CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), string(b))
		}
		run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", keyPEM)
		run("pkcs8", "-topk8", "-nocrypt", "-in", keyPEM, "-outform", "DER", "-out", "key.der")
		run("pkey", "-in", keyPEM, "-pubout", "-out", "pub.pem")
		aesKey := make([]byte, 32)
		_, _ = rand.Read(aesKey)
		run("enc", "-id-aes256-wrap-pad", "-K", hex.EncodeToString(aesKey), "-iv", "A65959A6", "-in", "key.der", "-out", "material.wrapped")
		wrappedMaterial, err := os.ReadFile(filepath.Join(dir, "material.wrapped"))
		Expect(err).NotTo(HaveOccurred())
		putWrapped(ctx, key, append(opensslEncrypt(kmscrypto.PublicKeyPEM(params.PublicKey), "sha256", aesKey), wrappedMaterial...), string(params.ImportToken))
		key = waitVersion(ctx, key, 1)
		theirPub, err := os.ReadFile(filepath.Join(dir, "pub.pem"))
		Expect(err).NotTo(HaveOccurred())
		Expect(key.Status.PublicKey).To(Equal(string(theirPub)), "the published public key is the imported key's")

		grant(ctx, ns, "app", "signer", "sign")
		msg := []byte("release v1.2.3")
		Eventually(func() error {
			_, err := kms.Sign(actx, &kmsv1.SignRequest{KeyId: "signer", Message: msg, SigningAlgorithm: "ECDSA_SHA_256"})
			return err
		}).Should(Succeed())
		sig, err := kms.Sign(actx, &kmsv1.SignRequest{KeyId: "signer", Message: msg, SigningAlgorithm: "ECDSA_SHA_256"})
		Expect(err).NotTo(HaveOccurred())
		Expect(opensslVerifies(string(theirPub), "ECDSA_SHA_256", msg, sig.Signature)).To(BeTrue())
		Expect(opensslVerifies(string(theirPub), "ECDSA_SHA_256", []byte("release v1.2.4"), sig.Signature)).To(BeFalse())
	})
	// Issue 12: view sees no import token. The token is a credential for an
	// import, so it is not in the Key's status; the data plane hands it out
	// as GetParametersForImport, under the key's policy.
	It("refuses the import token to a caller who may only view Keys, and the Key that caller reads does not carry it", func(ctx SpecContext) {
		key, params := importKey(ctx, "byok-view", kmsv1alpha1.KeySpecSymmetricDefault, "")
		token := string(params.ImportToken)
		Expect(token).To(HavePrefix("kubekms-import-v1."))
		for _, k := range []kmsv1.KeyManagementServiceClient{kms, kms2} {
			Eventually(func() error {
				_, err := k.GetParametersForImport(actx, &kmsv1.GetParametersForImportRequest{KeyId: "byok-view"})
				return err
			}).Should(Succeed(), "both replicas know the key and serve a caller with getparametersforimport")
		}

		By("a viewer: get, list and watch on Keys, as the view role has")
		newServiceAccount(ctx, ns, "viewer")
		Expect(k8sClient.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "viewer"}, Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"kms.kubekms.io"}, Resources: []string{"keys", "keys/status"}, Verbs: []string{"get", "list", "watch"}}}})).To(Succeed())
		Expect(k8sClient.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "viewer"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "viewer"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "viewer"}}})).To(Succeed())
		viewerConfig := rest.CopyConfig(cfg)
		viewerConfig.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":viewer",
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}
		viewer, err := client.New(viewerConfig, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		seen := &unstructured.Unstructured{}
		seen.SetGroupVersionKind(kmsv1alpha1.GroupVersion.WithKind("Key"))
		Eventually(func() error { return viewer.Get(ctx, client.ObjectKeyFromObject(key), seen) }).Should(Succeed(), "the viewer reads the Key")
		raw, err := json.Marshal(seen.Object)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(raw)).NotTo(ContainSubstring(token), "the Key the viewer reads carries no import token")
		published, found, err := unstructured.NestedMap(seen.Object, "status", "importParameters")
		Expect(err).NotTo(HaveOccurred())
		Expect(found).To(BeTrue())
		Expect(published).To(HaveKeyWithValue("wrappingPublicKey", kmscrypto.PublicKeyPEM(params.PublicKey)))
		Expect(published).NotTo(HaveKey("importToken"))

		By("the viewer asking the data plane for the token")
		before := auditRecords()
		vctx := withToken(context.Background(), kmsToken(ctx, ns, "viewer"))
		for _, k := range []kmsv1.KeyManagementServiceClient{kms, kms2} {
			_, err := k.GetParametersForImport(vctx, &kmsv1.GetParametersForImportRequest{KeyId: "byok-view"})
			Expect(expectError(err, codes.PermissionDenied, dataplane.ReasonAccessDenied)).To(ContainSubstring("is not allowed to GetParametersForImport"))
		}
		denied := 0
		for _, r := range recordsSince(before) {
			if r.EventName == "GetParametersForImport" && r.Principal.Username == "system:serviceaccount:"+ns+":viewer" &&
				r.Outcome == audit.Denied && r.Key != nil && r.Key.Name == "byok-view" {
				denied++
			}
		}
		Expect(denied).To(Equal(2), "each refusal is audited")
	})

	It("gives a caller with getparametersforimport the key's current parameters, and material wrapped with them imports", func(ctx SpecContext) {
		key, params := importKey(ctx, "byok-params", kmsv1alpha1.KeySpecSymmetricDefault, "")
		Expect(params.KeyId).To(Equal(key.Status.KeyID))
		Expect(kmscrypto.PublicKeyPEM(params.PublicKey)).To(Equal(key.Status.ImportParameters.WrappingPublicKey), "the public key status shows")
		Expect(params.ParametersValidTo.AsTime()).To(BeTemporally("==", key.Status.ImportParameters.ExpiresAt.Time))
		pub, err := x509.ParsePKIXPublicKey(params.PublicKey)
		Expect(err).NotTo(HaveOccurred())
		Expect(pub.(*rsa.PublicKey).N.BitLen()).To(Equal(4096))

		By("importing material wrapped with them, with their token")
		material := make([]byte, 32)
		_, _ = rand.Read(material)
		putWrapped(ctx, key, opensslEncrypt(kmscrypto.PublicKeyPEM(params.PublicKey), "sha256", material), string(params.ImportToken))
		waitVersion(ctx, key, 1)
		grant(ctx, ns, "app", "byok-params", "encrypt")
		usable(actx, "byok-params")
		enc, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "byok-params", Plaintext: []byte("imported")})
		Expect(err).NotTo(HaveOccurred())
		local, err := kmscrypto.Decrypt(material, enc.CiphertextBlob, nil)
		Expect(err).NotTo(HaveOccurred(), "the key encrypts with the material imported with the token")
		Expect(local).To(Equal([]byte("imported")))

		By("asking for a wrapping key kubekms does not make")
		_, err = kms.GetParametersForImport(actx, &kmsv1.GetParametersForImportRequest{KeyId: "byok-params", WrappingKeySpec: "RSA_2048"})
		Expect(expectError(err, codes.InvalidArgument, dataplane.ReasonValidation)).To(ContainSubstring("wrapping_key_spec must be RSA_4096"))

		By("asking about a Generated key")
		newReadyKey(ctx, ns, "generated")
		grant(ctx, ns, "app", "generated", "getparametersforimport")
		Eventually(func() string {
			_, err := kms.GetParametersForImport(actx, &kmsv1.GetParametersForImportRequest{KeyId: "generated"})
			return dataplane.ReasonOf(err)
		}).Should(Equal(dataplane.ReasonUnsupportedOperation))
		_, err = kms.GetParametersForImport(actx, &kmsv1.GetParametersForImportRequest{KeyId: "generated"})
		Expect(expectError(err, codes.FailedPrecondition, dataplane.ReasonUnsupportedOperation)).To(ContainSubstring("only origin External keys take imported material"))
	})
})
