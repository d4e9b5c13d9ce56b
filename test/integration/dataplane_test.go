package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/dataplane"
	"github.com/kubekms/kubekms/internal/kmscrypto"
)

// syncBuffer collects logs for the check that no secret reaches them.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	GinkgoWriter.Write(p)
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// expectError checks a gRPC error's code and ErrorInfo reason.
func expectError(err error, code codes.Code, reason string) string {
	GinkgoHelper()
	Expect(err).To(HaveOccurred())
	Expect(status.Code(err)).To(Equal(code), "error: %v", err)
	Expect(dataplane.ReasonOf(err)).To(Equal(reason), "error: %v", err)
	return status.Convert(err).Message()
}

var secretsSeen []string // plaintexts and tokens used by the specs

var _ = Describe("KeyManagementService", func() {
	var (
		ns    string
		key   *kmsv1alpha1.Key
		tok   string
		actx  context.Context
		plain = []byte("4111 1111 1111 1111")
	)
	BeforeEach(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		key = newReadyKey(ctx, ns, "payments")
		newServiceAccount(ctx, ns, "api")
		grant(ctx, ns, "api", "payments", "encrypt", "decrypt", "reencryptfrom", "reencryptto", "generatedatakey", "generatedatakeywithoutplaintext", "describekey")
		tok = kmsToken(ctx, ns, "api")
		actx = withToken(context.Background(), tok)
		secretsSeen = append(secretsSeen, tok, string(plain))
		usable(actx, "payments")
	})

	It("encrypts and decrypts, naming the key by name, namespace/name or keyID", func() {
		for _, ref := range []string{"payments", ns + "/payments", key.Status.KeyID} {
			enc, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: ref, Plaintext: plain, EncryptionContext: map[string]string{"tenant": "shop"}})
			Expect(err).NotTo(HaveOccurred(), "ref %s", ref)
			Expect(enc.KeyId).To(Equal(key.Status.KeyID))
			Expect(enc.KeyVersion).To(Equal(uint32(1)))
			Expect(enc.CiphertextBlob).NotTo(ContainSubstring(string(plain)))
			Expect(len(enc.CiphertextBlob)).To(BeNumerically("<=", dataplane.MaxCiphertext))

			dec, err := kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"tenant": "shop"}})
			Expect(err).NotTo(HaveOccurred())
			Expect(dec.Plaintext).To(Equal(plain))
			Expect(dec.KeyId).To(Equal(key.Status.KeyID))
		}
	})

	It("accepts the text form kms:v1:... in Decrypt", func() {
		enc, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: plain})
		Expect(err).NotTo(HaveOccurred())
		dec, err := kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: []byte(kmscrypto.EncodeText(enc.CiphertextBlob))})
		Expect(err).NotTo(HaveOccurred())
		Expect(dec.Plaintext).To(Equal(plain))
	})

	It("gives one InvalidCiphertext answer for tampering, wrong context and another key's ciphertext", func(ctx SpecContext) {
		enc, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: plain, EncryptionContext: map[string]string{"tenant": "shop"}})
		Expect(err).NotTo(HaveOccurred())
		newReadyKey(ctx, ns, "other")
		grant(ctx, ns, "api", "other", "encrypt", "decrypt")
		usable(actx, "other")
		other, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "other", Plaintext: plain, EncryptionContext: map[string]string{"tenant": "shop"}})
		Expect(err).NotTo(HaveOccurred())

		tampered := bytes.Clone(enc.CiphertextBlob)
		tampered[len(tampered)-5] ^= 0x40
		spliced := append(bytes.Clone(enc.CiphertextBlob[:kmscrypto.HeaderSize]), other.CiphertextBlob[kmscrypto.HeaderSize:]...)
		cases := map[string]*kmsv1.DecryptRequest{
			"tampered body":                        {CiphertextBlob: tampered, EncryptionContext: map[string]string{"tenant": "shop"}},
			"wrong context":                        {CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"tenant": "web"}},
			"no context":                           {CiphertextBlob: enc.CiphertextBlob},
			"another key's body under this header": {CiphertextBlob: spliced, EncryptionContext: map[string]string{"tenant": "shop"}},
			"garbage":                              {CiphertextBlob: []byte("not a ciphertext at all, but long enough to have a header and a tag ....")},
			"bad text form":                        {CiphertextBlob: []byte("kms:v1:***")},
		}
		messages := map[string]bool{}
		for name, req := range cases {
			_, err := kms.Decrypt(actx, req)
			By(name)
			messages[expectError(err, codes.InvalidArgument, dataplane.ReasonInvalidCiphertext)] = true
		}
		Expect(messages).To(HaveLen(1), "every failure has the same message")
	})

	It("answers IncorrectKey when Decrypt names another key than the ciphertext's", func(ctx SpecContext) {
		newReadyKey(ctx, ns, "other")
		enc, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: plain})
		Expect(err).NotTo(HaveOccurred())
		_, err = kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob, KeyId: "other"})
		expectError(err, codes.InvalidArgument, dataplane.ReasonIncorrectKey)
		dec, err := kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob, KeyId: "payments"})
		Expect(err).NotTo(HaveOccurred())
		Expect(dec.Plaintext).To(Equal(plain))
	})

	DescribeTable("refuses requests over the limits with a message naming the limit",
		func(call func() error, wantInMessage string) {
			msg := expectError(call(), codes.InvalidArgument, dataplane.ReasonValidation)
			Expect(msg).To(ContainSubstring(wantInMessage))
		},
		Entry("plaintext over 4096 bytes", func() error {
			_, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: make([]byte, 4097)})
			return err
		}, "plaintext must be 1 to 4096 bytes, got 4097"),
		Entry("empty plaintext", func() error {
			_, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "payments"})
			return err
		}, "plaintext must be 1 to 4096 bytes, got 0"),
		Entry("random of 0 bytes", func() error {
			_, err := kms.GenerateRandom(actx, &kmsv1.GenerateRandomRequest{NumberOfBytes: 0})
			return err
		}, "number_of_bytes must be between 1 and 1024, got 0"),
		Entry("random of 2000 bytes", func() error {
			_, err := kms.GenerateRandom(actx, &kmsv1.GenerateRandomRequest{NumberOfBytes: 2000})
			return err
		}, "number_of_bytes must be between 1 and 1024, got 2000"),
		Entry("data key of 2000 bytes", func() error {
			_, err := kms.GenerateDataKey(actx, &kmsv1.GenerateDataKeyRequest{KeyId: "payments", NumberOfBytes: 2000})
			return err
		}, "number_of_bytes must be between 1 and 1024"),
		Entry("data key with both size and spec", func() error {
			_, err := kms.GenerateDataKey(actx, &kmsv1.GenerateDataKeyRequest{KeyId: "payments", NumberOfBytes: 32, KeySpec: "AES_256"})
			return err
		}, "either number_of_bytes or key_spec"),
		Entry("ciphertext over 6144 bytes", func() error {
			_, err := kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: make([]byte, 6145)})
			return err
		}, "at most 6144 bytes"),
		Entry("unknown algorithm", func() error {
			_, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: plain, EncryptionAlgorithm: "AES_GCM_SIV"})
			return err
		}, "encryption_algorithm must be SYMMETRIC_DEFAULT"),
		Entry("no key", func() error {
			_, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{Plaintext: plain})
			return err
		}, "key_id is required"),
	)

	It("makes data key pairs whose private key decrypts and matches the public key", func(ctx SpecContext) {
		grant(ctx, ns, "api", "payments", "generatedatakeypair", "generatedatakeypairwithoutplaintext")
		var pair *kmsv1.GenerateDataKeyPairResponse
		Eventually(func() error {
			var err error
			pair, err = kms.GenerateDataKeyPair(actx, &kmsv1.GenerateDataKeyPairRequest{KeyId: "payments", KeyPairSpec: "ECC_NIST_P256", EncryptionContext: map[string]string{"use": "tls"}})
			return err
		}).Should(Succeed())
		pub, err := kmscrypto.PublicKeyOf(pair.PrivateKeyPlaintext)
		Expect(err).NotTo(HaveOccurred())
		Expect(pub).To(Equal(pair.PublicKey))
		dec, err := kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: pair.PrivateKeyCiphertextBlob, EncryptionContext: map[string]string{"use": "tls"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(dec.Plaintext).To(Equal(pair.PrivateKeyPlaintext))
		sig, err := kmscrypto.Sign(dec.Plaintext, "ECDSA_SHA_256", "RAW", []byte("m"), rand.Reader)
		Expect(err).NotTo(HaveOccurred())
		Expect(kmscrypto.Verify(pair.PublicKey, "ECDSA_SHA_256", "RAW", []byte("m"), sig)).To(Succeed())

		np, err := kms.GenerateDataKeyPairWithoutPlaintext(actx, &kmsv1.GenerateDataKeyPairWithoutPlaintextRequest{KeyId: "payments", KeyPairSpec: "RSA_2048"})
		Expect(err).NotTo(HaveOccurred())
		dec, err = kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: np.PrivateKeyCiphertextBlob})
		Expect(err).NotTo(HaveOccurred())
		pub, err = kmscrypto.PublicKeyOf(dec.Plaintext)
		Expect(err).NotTo(HaveOccurred())
		Expect(pub).To(Equal(np.PublicKey))

		_, err = kms.GenerateDataKeyPair(actx, &kmsv1.GenerateDataKeyPairRequest{KeyId: "payments", KeyPairSpec: "ECC_NIST_EDWARDS25519"})
		Expect(status.Convert(err).Message()).To(ContainSubstring("key_pair_spec must be one of"))
	})

	It("makes data keys and random bytes", func() {
		dk, err := kms.GenerateDataKey(actx, &kmsv1.GenerateDataKeyRequest{KeyId: "payments", KeySpec: "AES_256", EncryptionContext: map[string]string{"file": "a"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(dk.Plaintext).To(HaveLen(32))
		dec, err := kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: dk.CiphertextBlob, EncryptionContext: map[string]string{"file": "a"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(dec.Plaintext).To(Equal(dk.Plaintext))

		np, err := kms.GenerateDataKeyWithoutPlaintext(actx, &kmsv1.GenerateDataKeyWithoutPlaintextRequest{KeyId: "payments", NumberOfBytes: 64})
		Expect(err).NotTo(HaveOccurred())
		dec, err = kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: np.CiphertextBlob})
		Expect(err).NotTo(HaveOccurred())
		Expect(dec.Plaintext).To(HaveLen(64))

		r1, err := kms.GenerateRandom(actx, &kmsv1.GenerateRandomRequest{NumberOfBytes: 32})
		Expect(err).NotTo(HaveOccurred())
		r2, _ := kms.GenerateRandom(actx, &kmsv1.GenerateRandomRequest{NumberOfBytes: 32})
		Expect(r1.Plaintext).To(HaveLen(32))
		Expect(r1.Plaintext).NotTo(Equal(r2.Plaintext))
	})

	It("describes a key without its material", func() {
		d, err := kms.DescribeKey(actx, &kmsv1.DescribeKeyRequest{KeyId: "payments"})
		Expect(err).NotTo(HaveOccurred())
		md := d.KeyMetadata
		Expect(md.KeyId).To(Equal(key.Status.KeyID))
		Expect(md.Namespace).To(Equal(ns))
		Expect(md.KeyState).To(Equal("Enabled"))
		Expect(md.KeySpec).To(Equal("SYMMETRIC_DEFAULT"))
		Expect(md.EncryptionAlgorithms).To(ConsistOf("SYMMETRIC_DEFAULT"))
		Expect(md.CurrentVersion).To(Equal(uint32(1)))
	})

	It("keeps old ciphertexts working after rotation, and ReEncrypt moves them to the current version", func(ctx SpecContext) {
		old, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: plain})
		Expect(err).NotTo(HaveOccurred())
		patchKey(ctx, key, func(k *kmsv1alpha1.Key) {
			k.Annotations = map[string]string{kmsv1alpha1.RotateAnnotation: "r2"}
		})
		waitVersion(ctx, key, 2)
		var fresh *kmsv1.EncryptResponse
		Eventually(func() uint32 {
			fresh, err = kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: plain})
			Expect(err).NotTo(HaveOccurred())
			return fresh.KeyVersion
		}).Should(Equal(uint32(2)), "new ciphertexts use the new version")

		dec, err := kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: old.CiphertextBlob})
		Expect(err).NotTo(HaveOccurred())
		Expect(dec.Plaintext).To(Equal(plain))
		Expect(dec.KeyVersion).To(Equal(uint32(1)))

		re, err := kms.ReEncrypt(actx, &kmsv1.ReEncryptRequest{CiphertextBlob: old.CiphertextBlob, DestinationEncryptionContext: map[string]string{"moved": "yes"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(re.SourceKeyVersion).To(Equal(uint32(1)))
		Expect(re.KeyVersion).To(Equal(uint32(2)))
		Expect(re.CiphertextBlob).NotTo(ContainSubstring(string(plain)))
		dec, err = kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: re.CiphertextBlob, EncryptionContext: map[string]string{"moved": "yes"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(dec.Plaintext).To(Equal(plain))
	})

	It("decrypts on a second replica what the first made, also right after a rotation", func(ctx SpecContext) {
		enc, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: plain})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() error {
			_, err := kms2.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
			return err
		}).Should(Succeed())

		patchKey(ctx, key, func(k *kmsv1alpha1.Key) {
			k.Annotations = map[string]string{kmsv1alpha1.RotateAnnotation: "replicas"}
		})
		var rotated *kmsv1.EncryptResponse
		Eventually(func() uint32 {
			rotated, err = kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: plain})
			Expect(err).NotTo(HaveOccurred())
			return rotated.KeyVersion
		}).Should(Equal(uint32(2)))
		dec, err := kms2.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: rotated.CiphertextBlob})
		Expect(err).NotTo(HaveOccurred(), "a version the replica has not seen yet is read fresh")
		Expect(dec.KeyVersion).To(Equal(uint32(2)))
	})

	It("refuses a disabled key with FailedPrecondition to allowed callers only", func(ctx SpecContext) {
		enc, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: plain})
		Expect(err).NotTo(HaveOccurred())
		patchKey(ctx, key, func(k *kmsv1alpha1.Key) { k.Spec.State = kmsv1alpha1.KeyDesiredDisabled })
		Eventually(func() error {
			_, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: plain})
			return err
		}).Should(HaveOccurred())
		_, err = kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: plain})
		expectError(err, codes.FailedPrecondition, dataplane.ReasonDisabled)
		_, err = kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
		expectError(err, codes.FailedPrecondition, dataplane.ReasonDisabled)

		newServiceAccount(ctx, ns, "stranger")
		_, err = kms.Encrypt(withToken(ctx, kmsToken(ctx, ns, "stranger")), &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: plain})
		expectError(err, codes.PermissionDenied, dataplane.ReasonAccessDenied)
	})

	It("denies without the verb, allows once a Role grants it, and hides which keys exist", func(ctx SpecContext) {
		enc, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: plain})
		Expect(err).NotTo(HaveOccurred())
		newServiceAccount(ctx, ns, "reader")
		rctx := withToken(ctx, kmsToken(ctx, ns, "reader"))

		_, err = kms.Decrypt(rctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
		forbidden := expectError(err, codes.PermissionDenied, dataplane.ReasonAccessDenied)
		_, err = kms.Encrypt(rctx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: plain})
		forbiddenByName := expectError(err, codes.PermissionDenied, dataplane.ReasonAccessDenied)
		_, err = kms.Encrypt(rctx, &kmsv1.EncryptRequest{KeyId: "no-such-key", Plaintext: plain})
		unknown := expectError(err, codes.PermissionDenied, dataplane.ReasonAccessDenied)
		Expect(strings.Replace(unknown, "no-such-key", "payments", 1)).To(Equal(forbiddenByName), "unknown and forbidden keys answer alike")
		Expect(forbidden).To(ContainSubstring("not allowed to Decrypt"))

		grant(ctx, ns, "reader", "payments", "decrypt")
		Eventually(func() error {
			_, err := kms.Decrypt(rctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
			return err
		}, "10s").Should(Succeed())
		_, err = kms.Encrypt(rctx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: plain})
		expectError(err, codes.PermissionDenied, dataplane.ReasonAccessDenied)
	})

	It("does not let another namespace's ServiceAccount use a key by RBAC of its own namespace", func(ctx SpecContext) {
		other := newNamespace(ctx)
		newServiceAccount(ctx, other, "web")
		grant(ctx, other, "web", "payments", "encrypt") // a Role in the wrong namespace
		_, err := kms.Encrypt(withToken(ctx, kmsToken(ctx, other, "web")), &kmsv1.EncryptRequest{KeyId: ns + "/payments", Plaintext: plain})
		expectError(err, codes.PermissionDenied, dataplane.ReasonAccessDenied)
	})

	It("serves every operation of the proto", func() {
		_, err := kms.GenerateMac(actx, &kmsv1.GenerateMacRequest{KeyId: "payments", Message: plain})
		Expect(status.Code(err)).NotTo(Equal(codes.Unimplemented), "served now")
		_, err = kms.ExplainAccess(actx, &kmsv1.ExplainAccessRequest{})
		Expect(status.Code(err)).To(Equal(codes.InvalidArgument))
	})
})

var _ = Describe("Authentication", func() {
	var (
		ns  string
		req = &kmsv1.GenerateRandomRequest{NumberOfBytes: 8}
	)
	BeforeEach(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		newServiceAccount(ctx, ns, "app")
	})

	It("accepts a token for audience kubekms", func(ctx SpecContext) {
		_, err := kms.GenerateRandom(withToken(ctx, kmsToken(ctx, ns, "app")), req)
		Expect(err).NotTo(HaveOccurred())
	})

	It("accepts a token re-signed by the test's signer when it has not expired", func(ctx SpecContext) {
		// Shows the expired-token case fails for its expiry, not its signature.
		_, err := kms.GenerateRandom(withToken(ctx, resignedToken(ctx, ns, "app", 0)), req)
		Expect(err).NotTo(HaveOccurred())
	})

	DescribeTable("refuses every other token as Unauthenticated",
		func(ctx SpecContext, token func(ctx context.Context) string) {
			t := token(ctx)
			secretsSeen = append(secretsSeen, t)
			var callCtx context.Context = ctx
			if t != "" {
				callCtx = withToken(ctx, t)
			}
			_, err := kms.GenerateRandom(callCtx, req)
			expectError(err, codes.Unauthenticated, dataplane.ReasonUnauthenticated)
		},
		Entry("the API server's default audience", func(ctx context.Context) string { return tokenFor(ctx, ns, "app", nil, nil) }),
		Entry("another audience", func(ctx context.Context) string { return tokenFor(ctx, ns, "app", []string{"vault"}, nil) }),
		Entry("an expired token", func(ctx context.Context) string { return resignedToken(ctx, ns, "app", -time.Hour) }),
		Entry("garbage", func(context.Context) string { return "not-a-token" }),
		Entry("no token", func(context.Context) string { return "" }),
	)

	It("refuses a pod-bound token once its pod is deleted, within the cache TTL", func(ctx SpecContext) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"},
			Spec:       corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}
		Expect(k8sClient.Create(ctx, pod)).To(Succeed())
		t := tokenFor(ctx, ns, "app", []string{"kubekms"}, &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID})
		secretsSeen = append(secretsSeen, t)
		_, err := kms.GenerateRandom(withToken(ctx, t), req)
		Expect(err).NotTo(HaveOccurred(), "valid while the pod exists")

		// The API server caches a successful authentication for 10s, and
		// kubekms for its TTL (2s here): revocation lands within both.
		Expect(k8sClient.Delete(ctx, pod, client.GracePeriodSeconds(0))).To(Succeed())
		Eventually(func() codes.Code {
			_, err := kms.GenerateRandom(withToken(ctx, t), req)
			return status.Code(err)
		}, "30s", "500ms").Should(Equal(codes.Unauthenticated))
	})

	It("serves only TLS that chains to the published CA", func(ctx SpecContext) {
		target := conn.Target()
		plain, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		Expect(err).NotTo(HaveOccurred())
		defer plain.Close()
		_, err = healthpb.NewHealthClient(plain).Check(ctx, &healthpb.HealthCheckRequest{})
		Expect(status.Code(err)).To(Equal(codes.Unavailable), "plaintext is refused")

		untrusted, err := grpc.NewClient(target, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: x509.NewCertPool()})))
		Expect(err).NotTo(HaveOccurred())
		defer untrusted.Close()
		_, err = healthpb.NewHealthClient(untrusted).Check(ctx, &healthpb.HealthCheckRequest{})
		Expect(err).To(MatchError(ContainSubstring("certificate")))
	})

	It("serves health and reflection without a token", func(ctx SpecContext) {
		h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "kubekms.v1.KeyManagementService"})
		Expect(err).NotTo(HaveOccurred())
		Expect(h.Status).To(Equal(healthpb.HealthCheckResponse_SERVING))
	})
})

// expectNoSecretsInLogs runs after every spec (from AfterSuite).
func expectNoSecretsInLogs() {
	l := logs.String()
	Expect(l).NotTo(BeEmpty())
	for _, s := range secretsSeen {
		if len(s) >= 8 {
			Expect(l).NotTo(ContainSubstring(s), "a plaintext or token reached the logs")
		}
	}
}
