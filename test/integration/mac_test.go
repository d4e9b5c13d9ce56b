package integration

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"hash"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/dataplane"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/seal"
)

func newKeyOfSpec(ctx context.Context, ns, name string, spec kmsv1alpha1.KeySpecType) *kmsv1alpha1.Key {
	key := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: kmsv1alpha1.KeySpec{KeySpec: spec}}
	Expect(k8sClient.Create(ctx, key)).To(Succeed())
	return waitVersion(ctx, key, 1)
}

// material unseals a version the way the data plane does, so the test can
// compute the expected MAC independently.
func material(ctx context.Context, key *kmsv1alpha1.Key, version int32) []byte {
	GinkgoHelper()
	sealer, err := seal.LoadOrCreateLocal(ctx, k8sClient, k8sClient, operatorNamespace, rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	store := &keystore.Store{Client: k8sClient, Reader: k8sClient, Namespace: operatorNamespace, Sealer: sealer}
	m, err := store.Load(ctx, key.Status.KeyID, version, string(key.Spec.KeySpec))
	Expect(err).NotTo(HaveOccurred())
	return m
}

var _ = Describe("HMAC keys", func() {
	var (
		ns   string
		actx context.Context
	)
	BeforeEach(func(ctx SpecContext) { ns, actx = appNamespace(ctx) })

	DescribeTable("make MACs that are the HMAC of the message under the key's material",
		func(ctx SpecContext, spec kmsv1alpha1.KeySpecType, alg string, size int, h func() hash.Hash) {
			key := newKeyOfSpec(ctx, ns, "mac", spec)
			Expect(key.Status.KeyUsage).To(Equal(kmsv1alpha1.KeyUsageGenerateVerifyMAC))
			grant(ctx, ns, "app", "mac", "generatemac", "verifymac")
			m := material(ctx, key, 1)
			Expect(m).To(HaveLen(size))

			msg := []byte("transfer 100 EUR to shop")
			var r *kmsv1.GenerateMacResponse
			Eventually(func() error {
				var err error
				r, err = kms.GenerateMac(actx, &kmsv1.GenerateMacRequest{KeyId: "mac", Message: msg})
				return err
			}).Should(Succeed())
			want := hmac.New(h, m)
			want.Write(msg)
			Expect(r.Mac).To(Equal(want.Sum(nil)))
			Expect(r.MacAlgorithm).To(Equal(alg))

			v, err := kms.VerifyMac(actx, &kmsv1.VerifyMacRequest{KeyId: "mac", Message: msg, Mac: r.Mac, MacAlgorithm: alg})
			Expect(err).NotTo(HaveOccurred())
			Expect(v.MacValid).To(BeTrue())
			for i := range len(r.Mac) * 8 {
				bad := bytes.Clone(r.Mac)
				bad[i/8] ^= 1 << (i % 8)
				_, err := kms.VerifyMac(actx, &kmsv1.VerifyMacRequest{KeyId: "mac", Message: msg, Mac: bad})
				Expect(dataplane.ReasonOf(err)).To(Equal(dataplane.ReasonInvalidMac), "bit %d flipped", i)
			}
		},
		Entry("HMAC_224", kmsv1alpha1.KeySpecHMAC224, "HMAC_SHA_224", 28, sha256.New224),
		Entry("HMAC_256", kmsv1alpha1.KeySpecHMAC256, "HMAC_SHA_256", 32, sha256.New),
		Entry("HMAC_384", kmsv1alpha1.KeySpecHMAC384, "HMAC_SHA_384", 48, sha512.New384),
		Entry("HMAC_512", kmsv1alpha1.KeySpecHMAC512, "HMAC_SHA_512", 64, sha512.New),
	)

	It("keeps verifying MACs of older versions after rotation, and refuses misuse", func(ctx SpecContext) {
		key := newKeyOfSpec(ctx, ns, "mac", kmsv1alpha1.KeySpecHMAC256)
		grant(ctx, ns, "app", "mac", "generatemac", "verifymac", "encrypt")
		msg := []byte("message")
		var old *kmsv1.GenerateMacResponse
		Eventually(func() error {
			var err error
			old, err = kms.GenerateMac(actx, &kmsv1.GenerateMacRequest{KeyId: "mac", Message: msg})
			return err
		}).Should(Succeed())

		patchKey(ctx, key, func(k *kmsv1alpha1.Key) { k.Annotations = map[string]string{kmsv1alpha1.RotateAnnotation: "r"} })
		Eventually(func() uint32 {
			r, err := kms.GenerateMac(actx, &kmsv1.GenerateMacRequest{KeyId: "mac", Message: msg})
			Expect(err).NotTo(HaveOccurred())
			return r.KeyVersion
		}).Should(Equal(uint32(2)))
		v, err := kms.VerifyMac(actx, &kmsv1.VerifyMacRequest{KeyId: "mac", Message: msg, Mac: old.Mac})
		Expect(err).NotTo(HaveOccurred())
		Expect(v.KeyVersion).To(Equal(uint32(1)), "the old version verified it")

		_, err = kms.VerifyMac(actx, &kmsv1.VerifyMacRequest{KeyId: "mac", Message: []byte("other message"), Mac: old.Mac})
		Expect(dataplane.ReasonOf(err)).To(Equal(dataplane.ReasonInvalidMac))
		_, err = kms.GenerateMac(actx, &kmsv1.GenerateMacRequest{KeyId: "mac", Message: msg, MacAlgorithm: "HMAC_SHA_512"})
		Expect(status.Convert(err).Message()).To(ContainSubstring("mac_algorithm must be HMAC_SHA_256 for a HMAC_256 key"))
		_, err = kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "mac", Plaintext: msg})
		Expect(dataplane.ReasonOf(err)).To(Equal(dataplane.ReasonInvalidKeyUsage))
		_, err = kms.GenerateMac(actx, &kmsv1.GenerateMacRequest{KeyId: "mac", Message: make([]byte, 4097)})
		Expect(status.Code(err)).To(Equal(codes.InvalidArgument))

		By("a symmetric key makes no MACs")
		newReadyKey(ctx, ns, "sym")
		grant(ctx, ns, "app", "sym", "generatemac")
		Eventually(func() string {
			_, err := kms.GenerateMac(actx, &kmsv1.GenerateMacRequest{KeyId: "sym", Message: msg})
			return dataplane.ReasonOf(err)
		}).Should(Equal(dataplane.ReasonInvalidKeyUsage))

		_, err = kms.DescribeKey(actx, &kmsv1.DescribeKeyRequest{KeyId: "mac"})
		Expect(status.Code(err)).To(Equal(codes.PermissionDenied), "describekey was not granted")
	})
})
