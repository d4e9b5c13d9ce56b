package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/audit"
	"github.com/kubekms/kubekms/internal/dataplane"
	"github.com/kubekms/kubekms/internal/kmsclient"
	"github.com/kubekms/kubekms/internal/quota"
)

// auditRecords reads every replica's audit log.
func auditRecords() []audit.Record {
	GinkgoHelper()
	var out []audit.Record
	paths, _ := filepath.Glob(filepath.Join(auditDir, "audit-*.log"))
	for _, p := range paths {
		f, err := os.Open(p)
		Expect(err).NotTo(HaveOccurred())
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var r audit.Record
			Expect(json.Unmarshal(sc.Bytes(), &r)).To(Succeed(), "every line is one JSON record: %s", sc.Text())
			out = append(out, r)
		}
		Expect(sc.Err()).NotTo(HaveOccurred())
		f.Close()
	}
	return out
}

// recordsSince returns the records not in an earlier reading.
func recordsSince(earlier []audit.Record) []audit.Record {
	seen := make(map[string]bool, len(earlier))
	for _, r := range earlier {
		seen[r.RequestID] = true
	}
	var out []audit.Record
	for _, r := range auditRecords() {
		if !seen[r.RequestID] {
			out = append(out, r)
		}
	}
	return out
}

func waitForLimit(ns string, want float64) {
	GinkgoHelper()
	for _, l := range limiters {
		Eventually(func() float64 { return l.Limit(ns, quota.Symmetric) }).Should(Equal(want), "the quota file is reloaded without a restart")
	}
}

// tenant is a namespace with a key and a ServiceAccount allowed to use it.
type tenant struct {
	ns   string
	ctx  context.Context
	tok  string
	plan int64 // requests to send
}

func newTenant(ctx context.Context) tenant {
	ns := newNamespace(ctx)
	newReadyKey(ctx, ns, "k")
	newServiceAccount(ctx, ns, "app")
	grant(ctx, ns, "app", "k", "encrypt", "decrypt")
	tok := kmsToken(ctx, ns, "app")
	secretsSeen = append(secretsSeen, tok)
	t := tenant{ns: ns, ctx: withToken(context.Background(), tok), tok: tok}
	usable(t.ctx, "k")
	return t
}

var _ = Describe("Quotas and audit", Ordered, func() {
	var low, a, b tenant
	const lowRate = 200.0

	BeforeAll(func(ctx SpecContext) {
		Expect(limiters[0].Replicas()).To(Equal(2), "replicas come from the ready endpoints of the Service")
		low, a, b = newTenant(ctx), newTenant(ctx), newTenant(ctx)
		writeQuota(fmt.Sprintf("defaults: {symmetric: 4000}\nnamespaces:\n  %s: {symmetric: %v}\n", low.ns, lowRate))
		waitForLimit(low.ns, lowRate)
	})

	It("serves 20,000 requests over two replicas: each succeeds or is throttled with RetryInfo, at the configured cluster-wide rate", func() {
		const total = 20000
		plaintext := []byte("load test plaintext 0123456789")
		secretsSeen = append(secretsSeen, string(plaintext))
		before := auditRecords()

		type tally struct {
			ok, throttled, other atomic.Int64
			mu                   sync.Mutex
			okTimes              []time.Time
		}
		tallies := map[string]*tally{low.ns: {}, a.ns: {}, b.ns: {}}
		// Offered load per tenant (requests per second): the low tenant
		// offers far more than its quota.
		offered := map[string]float64{low.ns: 800, a.ns: 1000, b.ns: 1000}
		var sent atomic.Int64
		start := time.Now()
		deadline := start.Add(60 * time.Second)
		var wg sync.WaitGroup
		for _, t := range []tenant{low, a, b} {
			const workers = 8
			for w := range workers {
				wg.Go(func() {
					defer GinkgoRecover()
					clients := []kmsv1.KeyManagementServiceClient{kms, kms2}
					interval := time.Duration(float64(time.Second) * workers / offered[t.ns])
					next := time.Now().Add(time.Duration(w) * interval / workers)
					for i := 0; ; i++ {
						time.Sleep(time.Until(next))
						next = next.Add(interval)
						if sent.Add(1) > total || time.Now().After(deadline) {
							return
						}
						cctx, cancel := context.WithTimeout(t.ctx, 5*time.Second)
						_, err := clients[(w+i)%2].Encrypt(cctx, &kmsv1.EncryptRequest{KeyId: "k", Plaintext: plaintext})
						cancel()
						tl := tallies[t.ns]
						switch {
						case err == nil:
							tl.ok.Add(1)
							tl.mu.Lock()
							tl.okTimes = append(tl.okTimes, time.Now())
							tl.mu.Unlock()
						case status.Code(err) == codes.ResourceExhausted:
							Expect(dataplane.ReasonOf(err)).To(Equal(dataplane.ReasonThrottling))
							Expect(retryDelay(err)).To(BeNumerically(">", 0), "a throttled call says when to retry")
							tl.throttled.Add(1)
						default:
							tl.other.Add(1)
							Fail(fmt.Sprintf("a request was neither served nor throttled: %v", err))
						}
					}
				})
			}
		}
		wg.Wait()
		elapsed := time.Since(start)

		var done int64
		for _, tl := range tallies {
			done += tl.ok.Load() + tl.throttled.Load() + tl.other.Load()
		}
		Expect(done).To(BeEquivalentTo(total), "every request ended (none lost, none hung)")

		By("the throttled namespace is held to its rate, measured after its burst")
		lt := tallies[low.ns]
		Expect(lt.throttled.Load()).To(BeNumerically(">", 0))
		from := start.Add(2 * time.Second)
		var inWindow int
		for _, at := range lt.okTimes {
			if at.After(from) {
				inWindow++
			}
		}
		window := start.Add(elapsed).Sub(from).Seconds()
		rate := float64(inWindow) / window
		GinkgoWriter.Printf("load test: %d requests in %s; %s accepted %.0f/s (quota %.0f/s)\n", total, elapsed, low.ns, rate, lowRate)
		Expect(rate).To(BeNumerically("~", lowRate, lowRate*0.10), "cluster-wide accepted rate across both replicas")

		By("the other namespaces are not slowed by it")
		for _, t := range []tenant{a, b} {
			Expect(tallies[t.ns].throttled.Load()).To(BeZero())
			Expect(tallies[t.ns].ok.Load()).To(BeNumerically(">", 0))
		}

		By("every request has exactly one audit record, and none holds a secret")
		records := recordsSince(before)
		ids := map[string]bool{}
		var load int
		for _, r := range records {
			Expect(ids[r.RequestID]).To(BeFalse(), "request IDs are unique")
			ids[r.RequestID] = true
			if r.EventName == "Encrypt" && (r.SourceNamespace == low.ns || r.SourceNamespace == a.ns || r.SourceNamespace == b.ns) && r.RequestedKey == "k" {
				load++
				Expect(r.AuditVersion).To(Equal(audit.Version))
				Expect(r.Outcome).To(Or(Equal(audit.Allowed), Equal(audit.Denied)))
				if r.Outcome == audit.Denied {
					Expect(r.ErrorCode).To(Equal(dataplane.ReasonThrottling))
				}
				Expect(r.Principal.ServiceAccount).To(Equal("app"))
			}
		}
		Expect(load).To(Equal(total))
		raw := readAll(auditDir)
		Expect(raw).NotTo(ContainSubstring(string(plaintext)))
		for _, t := range []tenant{low, a, b} {
			Expect(raw).NotTo(ContainSubstring(t.tok))
		}
	})

	It("summarises use and throttling as a bounded number of Events on the Key, and sets lastUsed", func(ctx SpecContext) {
		key := &kmsv1alpha1.Key{}
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: low.ns, Name: "k"}, key)).To(Succeed())
			g.Expect(key.Status.LastUsed).To(HaveLen(1))
		}).Should(Succeed())
		Expect(key.Status.LastUsed[0].Class).To(Equal("symmetric"))
		Expect(key.Status.LastUsed[0].Principal).To(Equal("system:serviceaccount:" + low.ns + ":app"))

		var usage []eventsv1.Event
		Eventually(func(g Gomega) {
			list := &eventsv1.EventList{}
			g.Expect(k8sClient.List(ctx, list, client.InNamespace(low.ns))).To(Succeed())
			usage = nil
			reasons := map[string]bool{}
			for _, e := range list.Items {
				if e.Regarding.Name == "k" && e.Action == "Use" {
					usage = append(usage, e)
					reasons[e.Reason] = true
				}
			}
			g.Expect(reasons).To(HaveKey(audit.ReasonUsed))
			g.Expect(reasons).To(HaveKey(audit.ReasonThrottled))
		}).Should(Succeed())
		// At most MaxEventsPerKey+1 per key, per replica, per interval (1s
		// here): the load test ran well under a minute.
		Expect(len(usage)).To(BeNumerically("<=", 60*2*(audit.DefaultMaxEventsPerKey+1)))
		Expect(len(usage)).To(BeNumerically("<", 200), "thousands of calls, a handful of Events")
		for _, e := range usage {
			if e.Reason == audit.ReasonThrottled {
				Expect(e.Note).To(ContainSubstring("ThrottlingException"))
			}
		}
	})

	It("lets the client package finish a job in a throttled namespace by backing off", func(ctx SpecContext) {
		slow := newTenant(ctx)
		writeQuota(fmt.Sprintf("defaults: {symmetric: 4000}\nnamespaces:\n  %s: {symmetric: 10}\n", slow.ns))
		waitForLimit(slow.ns, 10)
		c, err := kmsclient.New(kmsclient.Config{
			Address: conn.Target(), RootCAs: publishedCA(), Token: kmsclient.StaticToken(slow.tok),
			Retry: kmsclient.Retry{Initial: 20 * time.Millisecond, Max: 500 * time.Millisecond, Budget: 30 * time.Second},
		})
		Expect(err).NotTo(HaveOccurred())
		defer c.Close()
		before := auditRecords()

		var wg sync.WaitGroup
		var failed atomic.Int32
		for range 60 {
			wg.Go(func() {
				if _, err := c.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: "k", Plaintext: []byte("job")}); err != nil {
					failed.Add(1)
				}
			})
		}
		wg.Wait()
		Expect(failed.Load()).To(BeZero(), "every call of the job succeeded in the end")
		throttled := 0
		for _, r := range recordsSince(before) {
			if r.SourceNamespace == slow.ns && r.ErrorCode == dataplane.ReasonThrottling {
				throttled++
			}
		}
		Expect(throttled).To(BeNumerically(">", 0), "the service did throttle; the client backed off and retried")
	})

	It("refuses requests it cannot audit when fail-closed, and returns nothing unaudited", func(ctx SpecContext) {
		closed, _, _ := startReplica(replicaOptions{auditPath: "/dev/full", failClosed: true})
		open, _, _ := startReplica(replicaOptions{auditPath: "/dev/full"})
		t := newTenant(ctx)
		enc, err := kms.Encrypt(t.ctx, &kmsv1.EncryptRequest{KeyId: "k", Plaintext: []byte("audited")})
		Expect(err).NotTo(HaveOccurred())

		Eventually(func() codes.Code {
			_, err := closed.Decrypt(t.ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
			return status.Code(err)
		}).Should(Equal(codes.Unavailable))
		dec, err := closed.Decrypt(t.ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
		Expect(dec).To(BeNil(), "no plaintext leaves without its record")
		Expect(status.Convert(err).Message()).To(ContainSubstring("audit log cannot be written"))
		_, err = closed.Encrypt(t.ctx, &kmsv1.EncryptRequest{KeyId: "k", Plaintext: []byte("x")})
		Expect(status.Code(err)).To(Equal(codes.Unavailable))

		By("fail-open (the default) serves on and logs the failure")
		Eventually(func() error {
			_, err := open.Decrypt(t.ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
			return err
		}).Should(Succeed())
	})
})

func retryDelay(err error) time.Duration {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.RetryDelay.AsDuration()
		}
	}
	return 0
}

func readAll(dir string) string {
	var sb strings.Builder
	paths, _ := filepath.Glob(filepath.Join(dir, "audit-*.log"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		Expect(err).NotTo(HaveOccurred())
		sb.Write(b)
	}
	return sb.String()
}
