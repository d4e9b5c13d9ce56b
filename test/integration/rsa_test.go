package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/status"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/dataplane"
)

// opensslEncrypt encrypts with RSA-OAEP and the PEM public key.
func opensslEncrypt(pubPEM, md string, plaintext []byte) []byte {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	pub, in, out := filepath.Join(dir, "pub.pem"), filepath.Join(dir, "in"), filepath.Join(dir, "out")
	Expect(os.WriteFile(pub, []byte(pubPEM), 0o600)).To(Succeed())
	Expect(os.WriteFile(in, plaintext, 0o600)).To(Succeed())
	cmd := exec.Command("openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", pub,
		"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:"+md, "-pkeyopt", "rsa_mgf1_md:"+md, "-in", in, "-out", out)
	b, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(b))
	ct, err := os.ReadFile(out)
	Expect(err).NotTo(HaveOccurred())
	return ct
}

var _ = Describe("RSA encryption keys", func() {
	It("decrypt what openssl encrypts with the published public key, and refuse misuse", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		newServiceAccount(ctx, ns, "app")
		actx := withToken(context.Background(), kmsToken(ctx, ns, "app"))
		key := &kmsv1alpha1.Key{}
		key.Namespace, key.Name = ns, "rsa"
		key.Spec.KeySpec, key.Spec.KeyUsage = kmsv1alpha1.KeySpecRSA2048, kmsv1alpha1.KeyUsageEncryptDecrypt
		Expect(k8sClient.Create(ctx, key)).To(Succeed())
		key = waitVersion(ctx, key, 1)
		grant(ctx, ns, "app", "rsa", "encrypt", "decrypt", "getpublickey")
		Eventually(func() error {
			_, err := kms.GetPublicKey(actx, &kmsv1.GetPublicKeyRequest{KeyId: "rsa"})
			return err
		}).Should(Succeed())
		pk, _ := kms.GetPublicKey(actx, &kmsv1.GetPublicKeyRequest{KeyId: "rsa"})
		Expect(pk.EncryptionAlgorithms).To(ConsistOf("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"))

		secret := []byte("a database password")
		for alg, md := range map[string]string{"RSAES_OAEP_SHA_256": "sha256", "RSAES_OAEP_SHA_1": "sha1"} {
			ct := opensslEncrypt(key.Status.PublicKey, md, secret)
			dec, err := kms.Decrypt(actx, &kmsv1.DecryptRequest{KeyId: "rsa", CiphertextBlob: ct, EncryptionAlgorithm: alg})
			Expect(err).NotTo(HaveOccurred(), alg)
			Expect(dec.Plaintext).To(Equal(secret))

			bad := bytes.Clone(ct)
			bad[10] ^= 1
			_, err = kms.Decrypt(actx, &kmsv1.DecryptRequest{KeyId: "rsa", CiphertextBlob: bad, EncryptionAlgorithm: alg})
			Expect(dataplane.ReasonOf(err)).To(Equal(dataplane.ReasonInvalidCiphertext))
		}

		enc, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "rsa", Plaintext: secret, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
		Expect(err).NotTo(HaveOccurred())
		Expect(enc.CiphertextBlob).To(HaveLen(256))

		By("limits and misuse")
		_, err = kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "rsa", Plaintext: make([]byte, 191), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
		Expect(status.Convert(err).Message()).To(ContainSubstring("plaintext must be 1 to 190 bytes for RSA_2048 with RSAES_OAEP_SHA_256"))
		_, err = kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
		Expect(status.Convert(err).Message()).To(ContainSubstring("key_id is required"))
		_, err = kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "rsa", Plaintext: secret, EncryptionAlgorithm: "RSAES_OAEP_SHA_256", EncryptionContext: map[string]string{"a": "b"}})
		Expect(status.Convert(err).Message()).To(ContainSubstring("encryption_context is not valid"))
		_, err = kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "rsa", Plaintext: secret})
		Expect(dataplane.ReasonOf(err)).To(Equal(dataplane.ReasonInvalidKeyUsage), "symmetric encryption with an RSA key")

		By("old ciphertexts decrypt after rotation")
		patchKey(ctx, key, func(k *kmsv1alpha1.Key) { k.Annotations = map[string]string{kmsv1alpha1.RotateAnnotation: "r"} })
		waitVersion(ctx, key, 2)
		Eventually(func() uint32 {
			r, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "rsa", Plaintext: secret, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
			Expect(err).NotTo(HaveOccurred())
			return r.KeyVersion
		}).Should(Equal(uint32(2)))
		dec, err := kms.Decrypt(actx, &kmsv1.DecryptRequest{KeyId: "rsa", CiphertextBlob: enc.CiphertextBlob, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
		Expect(err).NotTo(HaveOccurred())
		Expect(dec.KeyVersion).To(Equal(uint32(1)))
	})
})
