package dataplane_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/crypto"
)

var _ = Describe("Bring your own key", func() {
	var (
		ns   string
		actx context.Context
	)
	BeforeEach(func(ctx SpecContext) { ns, actx = appNamespace(ctx) })

	// importKey creates an External key and returns its import parameters.
	importKey := func(ctx context.Context, name string, spec kmsv1alpha1.KeySpecType, wrapping string) (*kmsv1alpha1.Key, *kmsv1alpha1.KeyImportParameters) {
		key := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: kmsv1alpha1.KeySpec{
			KeySpec: spec, Origin: kmsv1alpha1.KeyOriginExternal,
			Import: &kmsv1alpha1.KeyImport{SecretRef: &kmsv1alpha1.LocalSecretReference{Name: name + "-wrapped"}, WrappingAlgorithm: wrapping},
		}}
		Expect(k8sClient.Create(ctx, key)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(key), key)).To(Succeed())
			g.Expect(key.Status.State).To(Equal(kmsv1alpha1.KeyStatePendingImport))
			g.Expect(key.Status.ImportParameters).NotTo(BeNil())
		}, time.Minute).Should(Succeed())
		return key, key.Status.ImportParameters
	}
	putWrapped := func(ctx context.Context, key *kmsv1alpha1.Key, wrapped []byte, token string) {
		Expect(k8sClient.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: key.Spec.Import.SecretRef.Name},
			Data:       map[string][]byte{"wrappedKeyMaterial": wrapped, "importToken": []byte(token)},
		})).To(Succeed())
	}

	It("imports material openssl wrapped with RSAES_OAEP_SHA_256; the service encrypts with exactly that material; it stops at validTo", func(ctx SpecContext) {
		key, params := importKey(ctx, "byok", kmsv1alpha1.KeySpecSymmetricDefault, "")
		material := make([]byte, 32)
		_, _ = rand.Read(material)
		putWrapped(ctx, key, opensslEncrypt(params.WrappingPublicKey, "sha256", material), params.ImportToken)
		key = waitVersion(ctx, key, 1)
		grant(ctx, ns, "app", "byok", "encrypt", "decrypt")
		usable(actx, "byok")

		enc, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "byok", Plaintext: []byte("card 4111"), EncryptionContext: map[string]string{"order": "7"}})
		Expect(err).NotTo(HaveOccurred())
		dec, err := kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"order": "7"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(dec.Plaintext).To(Equal([]byte("card 4111")))
		local, err := crypto.Decrypt(material, enc.CiphertextBlob, map[string]string{"order": "7"})
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
		putWrapped(ctx, key, append(opensslEncrypt(params.WrappingPublicKey, "sha256", aesKey), wrappedMaterial...), params.ImportToken)
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
})
