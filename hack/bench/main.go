// Command bench measures the data plane in two modes.
//
// -mode=external (`make bench`, the reference; external.go): the manager as
// `make run` starts it, a bare gRPC+TLS echo and local-kms, each in its own
// process, under a load generator in this one.
//
// -mode=inprocess (`make bench-inprocess`, for quick A/B work): the real
// data plane (TLS, TokenReview and SubjectAccessReview against a local
// kube-apiserver, cached as in production) under a concurrent load
// generator in the same process, next to a bare gRPC echo server with the
// same messages and TLS as the ceiling.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/audit"
	"github.com/kubekms/kubekms/internal/dataplane"
	"github.com/kubekms/kubekms/internal/operator"
	"github.com/kubekms/kubekms/internal/quota"
	"github.com/kubekms/kubekms/internal/testenv"
)

const ns = testenv.OperatorNamespace

var (
	mode     = flag.String("mode", "inprocess", "inprocess: the data plane in this process (quick A/B); external: every server in its own process (the reference, make bench); echo: serve the bare echo (used by external).")
	duration = flag.Duration("duration", 4*time.Second, "Measuring time of each run.")
	workers  = flag.Int("workers", 32, "Concurrent callers in the peak runs.")
	conns    = flag.Int("conns", 4, "gRPC connections the callers share.")

	overheadRounds = flag.Int("overhead-rounds", 5, "Interleaved rounds of the quota and audit overhead measurement.")
	cpuProfile     = flag.String("cpuprofile", "", "Write a CPU profile of the whole run (data planes and load generator) to this file.")
)

func main() {
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: cpu profile:", err)
			os.Exit(1)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	var err error
	switch *mode {
	case "inprocess":
		err = run()
	case "external":
		err = external()
	case "echo":
		err = serveEcho()
	default:
		err = fmt.Errorf("-mode %q: want inprocess, external or echo", *mode)
	}
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// echo answers Encrypt with the plaintext as the ciphertext: gRPC, TLS and
// protobuf with no authentication, policy or crypto.
type echo struct {
	kmsv1.UnimplementedKeyManagementServiceServer
}

func (echo) Encrypt(_ context.Context, req *kmsv1.EncryptRequest) (*kmsv1.EncryptResponse, error) {
	return &kmsv1.EncryptResponse{CiphertextBlob: req.Plaintext, KeyId: "echo", KeyVersion: 1}, nil
}

func run() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctrl.SetLogger(logrDiscard())

	env, err := testenv.Start(testenv.Options{CRDs: true})
	if err != nil {
		return err
	}
	defer env.Stop()
	cfg, c, cs := env.Config, env.Client, env.Clientset

	// The manager as cmd/manager builds it, with the controllers and
	// without a data plane of its own: three are added below.
	op, err := operator.New(ctx, cfg, operator.Options{
		Namespace:   ns,
		Controllers: &operator.ControllerOptions{},
		Serving:     operator.Serving{IPs: []net.IP{net.ParseIP("127.0.0.1")}},
	})
	if err != nil {
		return err
	}
	serverTLS, err := op.ServingTLS()
	if err != nil {
		return err
	}
	// Three data planes on one manager: as in production (quotas, with a
	// limit the bench never reaches, and an audit log file), without
	// quotas, and bare (neither), to show what each costs.
	auditDir, err := os.MkdirTemp("", "kubekms-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(auditDir)
	listening := map[string]chan net.Addr{}
	for _, v := range []struct {
		name         string
		quota, audit bool
	}{{"production", true, true}, {"no-quota", false, true}, {"bare", false, false}} {
		cfg := dataplane.Config{Addr: "127.0.0.1:0", TLS: serverTLS, Registry: prometheus.NewRegistry(), UsageInterval: time.Minute}
		if v.quota {
			cfg.Quota = quota.NewLimiter(quota.Config{Defaults: quota.Limits{Symmetric: new(1e9)}}, nil)
		}
		if v.audit {
			sink, closer, err := audit.Open(filepath.Join(auditDir, v.name+".log"))
			if err != nil {
				return err
			}
			defer closer.Close()
			cfg.Audit = sink
		} else {
			cfg.UsageInterval = -1
		}
		listening[v.name] = make(chan net.Addr, 1)
		cfg.Listening = listening[v.name]
		if _, err := op.AddDataPlane(ctx, cfg); err != nil {
			return err
		}
	}
	go func() { _ = op.Start(ctx) }()
	addrs := map[string]string{}
	for name, ch := range listening {
		addrs[name] = (<-ch).String()
	}
	kmsAddr := addrs["production"]

	echoLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	echoSrv := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)))
	kmsv1.RegisterKeyManagementServiceServer(echoSrv, echo{})
	go func() { _ = echoSrv.Serve(echoLis) }()
	defer echoSrv.Stop()

	token, err := setupCaller(ctx, c, cs)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(op.CA.Cert)
	kms, err := dialAll(kmsAddr, roots)
	if err != nil {
		return err
	}
	noQuota, err := dialAll(addrs["no-quota"], roots)
	if err != nil {
		return err
	}
	bare, err := dialAll(addrs["bare"], roots)
	if err != nil {
		return err
	}
	echoClients, err := dialAll(echoLis.Addr().String(), roots)
	if err != nil {
		return err
	}
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)

	small, big := make([]byte, 32), make([]byte, 4096)
	ct, err := kms[0].Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "bench", Plaintext: big})
	if err != nil {
		return fmt.Errorf("first Encrypt: %w", err)
	}

	encrypt := func(pt []byte) func(kmsv1.KeyManagementServiceClient) error {
		return func(k kmsv1.KeyManagementServiceClient) error {
			_, err := k.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "bench", Plaintext: pt})
			return err
		}
	}
	runs := []struct {
		name    string
		clients []kmsv1.KeyManagementServiceClient
		call    func(kmsv1.KeyManagementServiceClient) error
	}{
		{"echo_32B", echoClients, encrypt(small)},
		{"encrypt_32B", kms, encrypt(small)},
		{"echo_4KiB", echoClients, encrypt(big)},
		{"encrypt_4KiB", kms, encrypt(big)},
		{"decrypt_4KiB", kms, func(k kmsv1.KeyManagementServiceClient) error {
			_, err := k.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: ct.CiphertextBlob})
			return err
		}},
		{"generate_data_key", kms, func(k kmsv1.KeyManagementServiceClient) error {
			_, err := k.GenerateDataKey(actx, &kmsv1.GenerateDataKeyRequest{KeyId: "bench", KeySpec: "AES_256"})
			return err
		}},
	}
	fmt.Printf("kubekms data plane benchmark: %d callers over %d TLS connections, %s per run, load generator in the same process\n", *workers, *conns, *duration)
	fmt.Printf("the data plane runs as in production (quotas on, audit records to a file) unless the name says /no-quota (audit only) or /bare (neither)\n\n")
	fmt.Printf("%-24s %12s %10s %10s\n", "operation", "ops/s", "p50", "p99")
	results := map[string]result{}
	for _, r := range runs {
		res, err := measure(r.clients, *workers, *duration, 0, r.call)
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		results[r.name] = res
		fmt.Printf("%-24s %12.0f %10s %10s\n", r.name, res.opsPerSec, res.p50, res.p99)
	}
	half := results["encrypt_4KiB"].opsPerSec / 2
	paced, err := measure(kms, *workers, *duration, half, encrypt(big))
	if err != nil {
		return err
	}
	fmt.Printf("%-24s %12.0f %10s %10s   (paced at half of peak)\n", "encrypt_4KiB@50%", paced.opsPerSec, paced.p50, paced.p99)
	// Overhead of quotas and audit: the three servers in turn, in short
	// rounds, so drift of the machine hits them alike; medians compared.
	servers := []struct {
		name    string
		clients []kmsv1.KeyManagementServiceClient
	}{{"production", kms}, {"no-quota", noQuota}, {"bare", bare}}
	rounds := map[string][]float64{}
	for range *overheadRounds {
		for _, srv := range servers {
			res, err := measure(srv.clients, *workers, *duration/2, 0, encrypt(big))
			if err != nil {
				return err
			}
			rounds[srv.name] = append(rounds[srv.name], res.opsPerSec)
		}
	}
	prod, nq, b := median(rounds["production"]), median(rounds["no-quota"]), median(rounds["bare"])
	fmt.Printf("\nencrypt_4KiB, %d interleaved rounds (median ops/s): production %.0f, without quotas %.0f, bare %.0f\n", *overheadRounds, prod, nq, b)
	fmt.Printf("overhead on encrypt_4KiB: quotas %.1f%%, quotas and audit %.1f%%\n", 100*(nq-prod)/nq, 100*(b-prod)/b)
	fmt.Printf("\nratio encrypt_32B/echo_32B = %.2f\n", results["encrypt_32B"].opsPerSec/results["echo_32B"].opsPerSec)
	fmt.Printf("ratio encrypt_4KiB/echo_4KiB = %.2f\n", results["encrypt_4KiB"].opsPerSec/results["echo_4KiB"].opsPerSec)
	return nil
}

type result struct {
	opsPerSec float64
	p50, p99  time.Duration
}

// measure runs call from n workers spread over clients (see load).
func measure(clients []kmsv1.KeyManagementServiceClient, n int, d time.Duration, rate float64, call func(kmsv1.KeyManagementServiceClient) error) (result, error) {
	return load(n, d, rate, func(w int) error { return call(clients[w%len(clients)]) })
}

// load runs call(worker) from n workers for d after a short warm-up. With
// rate > 0 the workers are paced to that many calls per second in total.
func load(n int, d time.Duration, rate float64, call func(worker int) error) (result, error) {
	warm := time.Now().Add(500 * time.Millisecond)
	end := warm.Add(d)
	var mu sync.Mutex
	var all []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			var lat []time.Duration
			var interval time.Duration
			next := time.Now()
			if rate > 0 {
				interval = time.Duration(float64(time.Second) * float64(n) / rate)
				next = next.Add(time.Duration(w) * interval / time.Duration(n))
			}
			for {
				if interval > 0 {
					time.Sleep(time.Until(next))
					next = next.Add(interval)
				}
				start := time.Now()
				if start.After(end) {
					break
				}
				if err := call(w); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				if start.After(warm) {
					lat = append(lat, time.Since(start))
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if firstErr != nil {
		return result{}, firstErr
	}
	if len(all) == 0 {
		return result{}, fmt.Errorf("no calls completed")
	}
	slices.Sort(all)
	return result{
		opsPerSec: float64(len(all)) / d.Seconds(),
		p50:       all[len(all)/2].Round(time.Microsecond),
		p99:       all[len(all)*99/100].Round(time.Microsecond),
	}, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func dialAll(addr string, roots *x509.CertPool) ([]kmsv1.KeyManagementServiceClient, error) {
	var out []kmsv1.KeyManagementServiceClient
	for range *conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots})))
		if err != nil {
			return nil, err
		}
		out = append(out, kmsv1.NewKeyManagementServiceClient(cc))
	}
	return out, nil
}

// setupCaller makes the key "bench", a ServiceAccount allowed to use it, and
// a token for that account.
func setupCaller(ctx context.Context, c client.Client, cs kubernetes.Interface) (string, error) {
	const app = "default"
	objs := []client.Object{
		&kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: app, Name: "bench"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: app, Name: "bench"}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: app, Name: "bench"}, Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"kms.kubekms.io"}, Resources: []string{"keys"}, Verbs: []string{"encrypt", "decrypt", "generatedatakey"},
		}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: app, Name: "bench"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "bench"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: app, Name: "bench"}}},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			return "", err
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		key := &kmsv1alpha1.Key{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: app, Name: "bench"}, key); err == nil && key.Status.State == kmsv1alpha1.KeyStateEnabled {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("key bench not ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	tr, err := cs.CoreV1().ServiceAccounts(app).CreateToken(ctx, "bench", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"kubekms"}, ExpirationSeconds: new(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return tr.Status.Token, nil
}

func logrDiscard() logr.Logger { return logr.Discard() }
