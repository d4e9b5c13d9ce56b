package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/authn"
	"github.com/kubekms/kubekms/internal/dataplane"
	"github.com/kubekms/kubekms/internal/kmscrypto"
	"github.com/kubekms/kubekms/internal/quota"
)

// apiRequests is how many requests for a resource with a verb (GET, POST)
// the API server has served since it started, from its own metrics: what an
// attack costs the API server, counted where it lands.
func apiRequests(ctx context.Context, resource, verb string) int {
	GinkgoHelper()
	raw, err := clientset.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	Expect(err).NotTo(HaveOccurred())
	total := 0
	for line := range strings.Lines(string(raw)) {
		if !strings.HasPrefix(line, "apiserver_request_total{") ||
			!strings.Contains(line, `resource="`+resource+`"`) || !strings.Contains(line, `verb="`+verb+`"`) {
			continue
		}
		fields := strings.Fields(line)
		n, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		Expect(err).NotTo(HaveOccurred())
		total += int(n)
	}
	return total
}

// settledAPIRequests is apiRequests once the count has stopped moving: the
// API server counts a request after it has answered it.
func settledAPIRequests(ctx context.Context, resource, verb string) int {
	GinkgoHelper()
	last := -1
	for {
		n := apiRequests(ctx, resource, verb)
		if n == last {
			return n
		}
		last = n
		time.Sleep(300 * time.Millisecond)
	}
}

// withVersion returns a ciphertext whose header names another key version.
func withVersion(blob []byte, version uint32) []byte {
	out := bytes.Clone(blob)
	binary.BigEndian.PutUint32(out[3+kmscrypto.KeyIDSize:], version)
	return out
}

var _ = Describe("Overload paths (issue 12, finding 9)", func() {
	It("limits the TokenReviews of unverified tokens per client address, keeps failures out of the success cache, and keeps serving cached tokens", func(ctx SpecContext) {
		// A replica of its own, with a small token cache and a per-address
		// limit of 1/s with a burst of 60.
		lim, limConn, _ := startReplica(replicaOptions{auditPath: "/dev/null", authn: authn.Options{
			TTL: time.Minute, MaxEntries: 5, PeerReviewRate: 1, PeerReviewBurst: 60,
		}})
		ns, actx := appNamespace(ctx)
		Eventually(func() error {
			_, err := lim.GenerateRandom(actx, &kmsv1.GenerateRandomRequest{NumberOfBytes: 8})
			return err
		}).Should(Succeed())

		By("50 bad tokens (within the burst) each cost a TokenReview, and do not evict the good token")
		for i := range 50 {
			_, err := lim.GenerateRandom(withToken(ctx, fmt.Sprintf("garbage-%s-%d", ns, i)), &kmsv1.GenerateRandomRequest{NumberOfBytes: 8})
			expectError(err, codes.Unauthenticated, dataplane.ReasonUnauthenticated)
		}
		reviews := settledAPIRequests(ctx, "tokenreviews", "POST")
		_, err := lim.GenerateRandom(actx, &kmsv1.GenerateRandomRequest{NumberOfBytes: 8})
		Expect(err).NotTo(HaveOccurred())
		Expect(settledAPIRequests(ctx, "tokenreviews", "POST")).To(Equal(reviews), "the good token is still cached: failures live in a cache of their own")

		By("beyond the burst, bad tokens are throttled before any TokenReview, also over a second connection from the same address")
		second, err := grpc.NewClient(limConn.Target(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: publishedCA()})))
		Expect(err).NotTo(HaveOccurred())
		defer second.Close()
		clients := []kmsv1.KeyManagementServiceClient{lim, kmsv1.NewKeyManagementServiceClient(second)}
		reviews = apiRequests(ctx, "tokenreviews", "POST")
		throttled := 0
		for i := range 100 {
			_, err := clients[i%2].GenerateRandom(withToken(ctx, fmt.Sprintf("flood-%s-%d", ns, i)), &kmsv1.GenerateRandomRequest{NumberOfBytes: 8})
			if status.Code(err) == codes.ResourceExhausted {
				throttled++
				msg := expectError(err, codes.ResourceExhausted, dataplane.ReasonThrottling)
				Expect(msg).To(ContainSubstring("client address 127.0.0.1"))
				Expect(msg).To(ContainSubstring("TokenReview"))
				Expect(retryDelay(err)).To(BeNumerically(">", 0), "a throttled call says when to retry")
				continue
			}
			expectError(err, codes.Unauthenticated, dataplane.ReasonUnauthenticated)
		}
		Expect(throttled).To(BeNumerically(">=", 85), "about 10 left in the burst, plus 1/s")
		Expect(apiRequests(ctx, "tokenreviews", "POST") - reviews).To(BeNumerically("<=", 15))

		By("a caller whose token is cached is not limited")
		for range 20 {
			_, err := lim.GenerateRandom(actx, &kmsv1.GenerateRandomRequest{NumberOfBytes: 8})
			Expect(err).NotTo(HaveOccurred())
		}
	})

	It("answers unknown key names without a SubjectAccessReview each, alike to forbidden keys", func(ctx SpecContext) {
		ns, actx := appNamespace(ctx)
		newReadyKey(ctx, ns, "payments") // exists; app may not use it
		_, err := kms.GenerateRandom(actx, &kmsv1.GenerateRandomRequest{NumberOfBytes: 8})
		Expect(err).NotTo(HaveOccurred(), "the token is reviewed and cached first")
		_, err = kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: []byte("x")})
		forbidden := expectError(err, codes.PermissionDenied, dataplane.ReasonAccessDenied)

		sars := apiRequests(ctx, "subjectaccessreviews", "POST")
		for i := range 60 {
			name := fmt.Sprintf("no-such-key-%d", i)
			for _, ref := range []string{name, ns + "/" + name, "other-" + ns + "/" + name} {
				_, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: ref, Plaintext: []byte("x")})
				msg := expectError(err, codes.PermissionDenied, dataplane.ReasonAccessDenied)
				Expect(strings.Replace(msg, ref, "payments", 1)).To(Equal(forbidden), "unknown and forbidden keys answer alike")
			}
		}
		Expect(apiRequests(ctx, "subjectaccessreviews", "POST")-sars).To(BeNumerically("<", 10),
			"180 made-up key names must not cost 180 SubjectAccessReviews")
	})

	It("does not read the API server for every made-up version in a ciphertext header", func(ctx SpecContext) {
		ns, actx := appNamespace(ctx)
		newReadyKey(ctx, ns, "k")
		grant(ctx, ns, "app", "k", "encrypt", "decrypt")
		usable(actx, "k")
		enc, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "k", Plaintext: []byte("versioned")})
		Expect(err).NotTo(HaveOccurred())
		_, err = kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
		Expect(err).NotTo(HaveOccurred(), "version 1 is loaded")

		gets := apiRequests(ctx, "secrets", "GET")
		for i := range uint32(100) {
			// Distinct versions far past the current one.
			_, err := kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: withVersion(enc.CiphertextBlob, 1000+i)})
			expectError(err, codes.InvalidArgument, dataplane.ReasonInvalidCiphertext)
			// The next version could be a rotation this replica has not
			// seen yet: read, then remembered as missing for a second.
			_, err = kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: withVersion(enc.CiphertextBlob, 2)})
			expectError(err, codes.InvalidArgument, dataplane.ReasonInvalidCiphertext)
		}
		Expect(apiRequests(ctx, "secrets", "GET")-gets).To(BeNumerically("<", 30), "200 made-up versions, a few reads")
	})

	It("refuses a key_id longer than AWS allows before authenticating, naming the field, and bounds the audit record", func(ctx SpecContext) {
		long := strings.Repeat("k", dataplane.MaxKeyIDLength+1)
		reviews := settledAPIRequests(ctx, "tokenreviews", "POST")
		garbage := withToken(ctx, "garbage-long-key-id")
		before := auditRecords()

		_, err := kms.Encrypt(garbage, &kmsv1.EncryptRequest{KeyId: long, Plaintext: []byte("x")})
		Expect(expectError(err, codes.InvalidArgument, dataplane.ReasonValidation)).To(ContainSubstring("key_id must be at most 2048 bytes"))
		_, err = kms.ReEncrypt(garbage, &kmsv1.ReEncryptRequest{CiphertextBlob: []byte("x"), DestinationKeyId: long})
		Expect(expectError(err, codes.InvalidArgument, dataplane.ReasonValidation)).To(ContainSubstring("destination_key_id must be at most 2048 bytes"))
		_, err = kms.ReEncrypt(garbage, &kmsv1.ReEncryptRequest{CiphertextBlob: []byte("x"), SourceKeyId: long})
		Expect(expectError(err, codes.InvalidArgument, dataplane.ReasonValidation)).To(ContainSubstring("source_key_id must be at most 2048 bytes"))
		_, err = kms.DescribeKey(garbage, &kmsv1.DescribeKeyRequest{KeyId: long + long})
		Expect(expectError(err, codes.InvalidArgument, dataplane.ReasonValidation)).To(ContainSubstring("key_id must be at most 2048 bytes, got 4098"))
		Expect(settledAPIRequests(ctx, "tokenreviews", "POST")).To(Equal(reviews), "refused before any TokenReview")

		By("the longest allowed key_id is an ordinary unknown key")
		_, actx := appNamespace(ctx)
		_, err = kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: long[:dataplane.MaxKeyIDLength], Plaintext: []byte("x")})
		expectError(err, codes.PermissionDenied, dataplane.ReasonAccessDenied)

		By("every audit record names a bounded key")
		var refused int
		Eventually(func(g Gomega) {
			refused = 0
			for _, r := range recordsSince(before) {
				g.Expect(len(r.RequestedKey)).To(BeNumerically("<=", dataplane.MaxKeyIDLength))
				if r.ErrorCode == dataplane.ReasonValidation && strings.HasPrefix(r.RequestedKey, "kkkk") {
					refused++
				}
			}
			g.Expect(refused).To(Equal(3), "Encrypt, ReEncrypt (source) and DescribeKey name the key they asked for")
		}).Should(Succeed())
	})

	It("counts an RSA key's Encrypt and Decrypt in the rsa quota class", func(ctx SpecContext) {
		ns, actx := appNamespace(ctx)
		newRSAEncryptionKey(ctx, ns)
		newReadyKey(ctx, ns, "sym")
		grant(ctx, ns, "app", "rsa", "encrypt", "decrypt")
		grant(ctx, ns, "app", "sym", "encrypt", "decrypt")
		usable(actx, "sym")
		rsaEncrypt := &kmsv1.EncryptRequest{KeyId: "rsa", Plaintext: []byte("x"), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"}
		var enc *kmsv1.EncryptResponse
		Eventually(func() (err error) {
			enc, err = kms.Encrypt(actx, rsaEncrypt)
			return err
		}).Should(Succeed())

		DeferCleanup(writeQuota, "defaults: {symmetric: 4000}")
		writeQuota(fmt.Sprintf("defaults: {symmetric: 4000}\nnamespaces:\n  %s: {rsa: 1}\n", ns))
		for _, l := range limiters {
			Eventually(func() float64 { return l.Limit(ns, quota.RSA) }).Should(Equal(1.0))
		}

		var throttled error
		for range 20 {
			if _, err := kms.Encrypt(actx, rsaEncrypt); status.Code(err) == codes.ResourceExhausted {
				throttled = err
				break
			}
		}
		Expect(throttled).To(HaveOccurred(), "an RSA Encrypt is throttled at the namespace's rsa quota")
		Expect(expectError(throttled, codes.ResourceExhausted, dataplane.ReasonThrottling)).To(ContainSubstring("over its rsa request quota"))
		_, err := kms.Decrypt(actx, &kmsv1.DecryptRequest{KeyId: "rsa", CiphertextBlob: enc.CiphertextBlob, EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
		Expect(expectError(err, codes.ResourceExhausted, dataplane.ReasonThrottling)).To(ContainSubstring("over its rsa request quota"), "so is an RSA Decrypt")

		By("symmetric calls of the same namespace have their own bucket")
		for range 20 {
			_, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "sym", Plaintext: []byte("x")})
			Expect(err).NotTo(HaveOccurred())
		}
	})

	It("tries at most 4 versions of an RSA key to decrypt, newest first", func(ctx SpecContext) {
		ns, actx := appNamespace(ctx)
		key := newRSAEncryptionKey(ctx, ns)
		grant(ctx, ns, "app", "rsa", "encrypt", "decrypt")
		encryptAt := func(version uint32) []byte {
			GinkgoHelper()
			var enc *kmsv1.EncryptResponse
			Eventually(func(g Gomega) uint32 {
				var err error
				enc, err = kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "rsa", Plaintext: []byte(fmt.Sprint("v", version)), EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
				g.Expect(err).NotTo(HaveOccurred())
				return enc.KeyVersion
			}).Should(Equal(version))
			return enc.CiphertextBlob
		}
		cts := map[uint32][]byte{1: encryptAt(1)}
		for v := int32(2); v <= 5; v++ {
			patchKey(ctx, key, func(k *kmsv1alpha1.Key) {
				k.Annotations = map[string]string{kmsv1alpha1.RotateAnnotation: fmt.Sprint("r", v)}
			})
			waitVersion(ctx, key, v)
			cts[uint32(v)] = encryptAt(uint32(v))
		}
		for v := uint32(2); v <= 5; v++ {
			dec, err := kms.Decrypt(actx, &kmsv1.DecryptRequest{KeyId: "rsa", CiphertextBlob: cts[v], EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
			Expect(err).NotTo(HaveOccurred(), "version %d is among the newest 4", v)
			Expect(dec.KeyVersion).To(Equal(v))
		}
		_, err := kms.Decrypt(actx, &kmsv1.DecryptRequest{KeyId: "rsa", CiphertextBlob: cts[1], EncryptionAlgorithm: "RSAES_OAEP_SHA_256"})
		expectError(err, codes.InvalidArgument, dataplane.ReasonInvalidCiphertext)
	})
})

var _ = Describe("ExplainAccess (issue 12, finding 10)", func() {
	It("refuses actions that are not kubekms actions, naming them, instead of asking RBAC about any verb", func(ctx SpecContext) {
		ns, actx := appNamespace(ctx)
		newReadyKey(ctx, ns, "k")
		grant(ctx, ns, "app", "k", "decrypt")
		for _, action := range []string{"delete", "escalate", "*", "get", "ReEncrypt"} {
			_, err := kms.ExplainAccess(actx, &kmsv1.ExplainAccessRequest{KeyId: "k", Action: action})
			msg := expectError(err, codes.InvalidArgument, dataplane.ReasonValidation)
			Expect(msg).To(ContainSubstring(fmt.Sprintf("action %q is not a kubekms action", action)))
			Expect(msg).To(ContainSubstring("Decrypt"), "it lists the actions")
		}
		Eventually(func(g Gomega) {
			r, err := kms.ExplainAccess(actx, &kmsv1.ExplainAccessRequest{KeyId: "k", Action: "decrypt"})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(r.Allowed).To(BeTrue(), "an action's name in any case is that action")
		}).Should(Succeed())
	})
})

// newRSAEncryptionKey is a ready RSA_2048 ENCRYPT_DECRYPT key "rsa" in ns.
func newRSAEncryptionKey(ctx context.Context, ns string) *kmsv1alpha1.Key {
	GinkgoHelper()
	key := &kmsv1alpha1.Key{}
	key.Namespace, key.Name = ns, "rsa"
	key.Spec.KeySpec, key.Spec.KeyUsage = kmsv1alpha1.KeySpecRSA2048, kmsv1alpha1.KeyUsageEncryptDecrypt
	Expect(k8sClient.Create(ctx, key)).To(Succeed())
	return waitVersion(ctx, key, 1)
}
