package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/dataplane"
)

// opensslVerifies checks a signature with openssl and the PEM public key.
func opensslVerifies(pubPEM, alg string, msg, sig []byte) bool {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	pub, m, s := filepath.Join(dir, "pub.pem"), filepath.Join(dir, "msg"), filepath.Join(dir, "sig")
	Expect(os.WriteFile(pub, []byte(pubPEM), 0o600)).To(Succeed())
	Expect(os.WriteFile(m, msg, 0o600)).To(Succeed())
	Expect(os.WriteFile(s, sig, 0o600)).To(Succeed())
	args := []string{"dgst", "-sha" + alg[len(alg)-3:], "-verify", pub, "-signature", s}
	if strings.Contains(alg, "PSS") {
		args = append(args, "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest")
	}
	args = append(args, m)
	if strings.HasPrefix(alg, "ED25519") {
		args = []string{"pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", m, "-sigfile", s}
	}
	out, err := exec.Command("openssl", args...).CombinedOutput()
	return err == nil && (bytes.Contains(out, []byte("Verified OK")) || bytes.Contains(out, []byte("Signature Verified Successfully")))
}

var _ = Describe("Signing keys", func() {
	var (
		ns   string
		actx context.Context
	)
	BeforeEach(func(ctx SpecContext) { ns, actx = appNamespace(ctx) })

	DescribeTable("sign with the service; openssl verifies with the downloaded public key",
		func(ctx SpecContext, spec kmsv1alpha1.KeySpecType, usage kmsv1alpha1.KeyUsage, algs ...string) {
			key := &kmsv1alpha1.Key{}
			key.Namespace, key.Name = ns, "signer"
			key.Spec.KeySpec, key.Spec.KeyUsage = spec, usage
			Expect(k8sClient.Create(ctx, key)).To(Succeed())
			key = waitVersion(ctx, key, 1)
			grant(ctx, ns, "app", "signer", "sign", "verify", "getpublickey")

			var pk *kmsv1.GetPublicKeyResponse
			Eventually(func() error {
				var err error
				pk, err = kms.GetPublicKey(actx, &kmsv1.GetPublicKeyRequest{KeyId: "signer"})
				return err
			}).Should(Succeed())
			Expect(pk.PublicKeyPem).To(Equal(key.Status.PublicKey), "status.publicKey is the service's public key")
			Expect(pk.SigningAlgorithms).To(ConsistOf(algs))

			msg := []byte("release v1.2.3, sha256 0a1b2c")
			for _, alg := range algs {
				sig, err := kms.Sign(actx, &kmsv1.SignRequest{KeyId: "signer", Message: msg, SigningAlgorithm: alg})
				Expect(err).NotTo(HaveOccurred(), alg)
				Expect(opensslVerifies(key.Status.PublicKey, alg, msg, sig.Signature)).To(BeTrue(), "openssl verifies %s", alg)
				v, err := kms.Verify(actx, &kmsv1.VerifyRequest{KeyId: "signer", Message: msg, Signature: sig.Signature, SigningAlgorithm: alg})
				Expect(err).NotTo(HaveOccurred())
				Expect(v.SignatureValid).To(BeTrue())
				bad := bytes.Clone(sig.Signature)
				bad[len(bad)/2] ^= 1
				_, err = kms.Verify(actx, &kmsv1.VerifyRequest{KeyId: "signer", Message: msg, Signature: bad, SigningAlgorithm: alg})
				Expect(dataplane.ReasonOf(err)).To(Equal(dataplane.ReasonInvalidSignature))
				Expect(opensslVerifies(key.Status.PublicKey, alg, msg, bad)).To(BeFalse())
			}
		},
		Entry("RSA_2048", kmsv1alpha1.KeySpecRSA2048, kmsv1alpha1.KeyUsageSignVerify,
			"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512", "RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512"),
		Entry("ECC_NIST_P256", kmsv1alpha1.KeySpecECCNISTP256, kmsv1alpha1.KeyUsage(""), "ECDSA_SHA_256"),
		Entry("ECC_NIST_P384", kmsv1alpha1.KeySpecECCNISTP384, kmsv1alpha1.KeyUsage(""), "ECDSA_SHA_384"),
		Entry("ECC_NIST_P521", kmsv1alpha1.KeySpecECCNISTP521, kmsv1alpha1.KeyUsage(""), "ECDSA_SHA_512"),
		Entry("ECC_NIST_EDWARDS25519", kmsv1alpha1.KeySpecECCNISTEdwards25519, kmsv1alpha1.KeyUsage(""), "ED25519_SHA_512"),
	)

	It("keeps old signatures verifiable after rotation, and refuses misuse", func(ctx SpecContext) {
		key := &kmsv1alpha1.Key{}
		key.Namespace, key.Name = ns, "ec"
		key.Spec.KeySpec = kmsv1alpha1.KeySpecECCNISTP256
		Expect(k8sClient.Create(ctx, key)).To(Succeed())
		key = waitVersion(ctx, key, 1)
		grant(ctx, ns, "app", "ec", "sign", "verify", "encrypt")
		msg := []byte("m")
		var old *kmsv1.SignResponse
		Eventually(func() error {
			var err error
			old, err = kms.Sign(actx, &kmsv1.SignRequest{KeyId: "ec", Message: msg, SigningAlgorithm: "ECDSA_SHA_256"})
			return err
		}).Should(Succeed())
		patchKey(ctx, key, func(k *kmsv1alpha1.Key) { k.Annotations = map[string]string{kmsv1alpha1.RotateAnnotation: "r"} })
		waitVersion(ctx, key, 2)
		Eventually(func() uint32 {
			r, err := kms.Sign(actx, &kmsv1.SignRequest{KeyId: "ec", Message: msg, SigningAlgorithm: "ECDSA_SHA_256"})
			Expect(err).NotTo(HaveOccurred())
			return r.KeyVersion
		}).Should(Equal(uint32(2)))
		v, err := kms.Verify(actx, &kmsv1.VerifyRequest{KeyId: "ec", Message: msg, Signature: old.Signature, SigningAlgorithm: "ECDSA_SHA_256"})
		Expect(err).NotTo(HaveOccurred())
		Expect(v.KeyVersion).To(Equal(uint32(1)))

		_, err = kms.Sign(actx, &kmsv1.SignRequest{KeyId: "ec", Message: msg, SigningAlgorithm: "RSASSA_PSS_SHA_256"})
		Expect(status.Convert(err).Message()).To(ContainSubstring("signing_algorithm must be one of [ECDSA_SHA_256]"))
		digest := make([]byte, 20)
		_, err = kms.Sign(actx, &kmsv1.SignRequest{KeyId: "ec", Message: digest, MessageType: "DIGEST", SigningAlgorithm: "ECDSA_SHA_256"})
		Expect(status.Convert(err).Message()).To(ContainSubstring("must be 32 bytes, got 20"))
		_, err = kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "ec", Plaintext: msg})
		Expect(dataplane.ReasonOf(err)).To(Equal(dataplane.ReasonInvalidKeyUsage))
		Expect(status.Code(err)).To(Equal(codes.InvalidArgument))
	})
})
