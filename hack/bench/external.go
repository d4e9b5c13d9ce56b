package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	"github.com/kubekms/kubekms/internal/operator"
	"github.com/kubekms/kubekms/internal/testenv"
)

// The external mode (`make bench`, the reference): every server in its own
// process and the load generator (this process) apart from them, the way
// users run kubekms:
//   - the manager as `make run` starts it (hack/devenv: a local control
//     plane, quotas on with a limit the bench never reaches, audit records
//     to a file);
//   - a bare gRPC+TLS echo server (this binary with -mode=echo), the ceiling;
//   - local-kms (hack/localkms, pinned), an AWS KMS emulator with no TLS,
//     authentication or audit.
//
// Each run keeps `inflight` requests in flight: on one TLS connection for
// the gRPC servers, over as many HTTP/1.1 connections for local-kms (which
// speaks HTTP/1.1). Rounds are interleaved and medians reported.
var (
	devenvBin  = flag.String("devenv", "bin/devenv", "External mode: the devenv binary (make run).")
	managerBin = flag.String("manager", "bin/manager", "External mode: the manager binary.")
	localKMS   = flag.String("localkms", "", "External mode: the local-kms binary (make builds it from hack/localkms).")
	inflight   = flag.Int("inflight", 64, "External mode: requests in flight.")
	rounds     = flag.Int("rounds", 3, "External mode: interleaved rounds; medians are reported.")
	pacedRate  = flag.Float64("paced-rate", 6000, "External mode: the rate (calls/s) at which p99 latency is measured.")
	echoAddr   = flag.String("echo-addr", "127.0.0.1:0", "Echo mode: address to serve on.")
	echoCert   = flag.String("echo-cert", "", "Echo mode: PEM certificate and key file.")
	profileDir = flag.String("manager-profile", "", "External mode: write the manager's CPU (cpu.pprof) and allocation (allocs.pprof) profiles, taken during an extra Encrypt 4 KiB run, into this directory.")
)

// serveEcho is -mode=echo: the bare gRPC+TLS echo in its own process.
func serveEcho() error {
	pemBytes, err := os.ReadFile(*echoCert)
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(pemBytes, pemBytes)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *echoAddr)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	kmsv1.RegisterKeyManagementServiceServer(srv, echo{})
	fmt.Printf("echo listening on %s\n", lis.Addr())
	return srv.Serve(lis)
}

// external is -mode=external.
func external() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if *localKMS == "" {
		return fmt.Errorf("-localkms is required (make bench builds it)")
	}
	// The load generator collects less often than a server would: its own
	// GC pauses would show up as the servers' latency.
	debug.SetGCPercent(400)
	dir, err := os.MkdirTemp("", "kubekms-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	addrs, err := testenv.LoopbackAddrs(4)
	if err != nil {
		return err
	}

	// The manager as make run starts it, with quotas on and a limit the
	// bench never reaches (the defaults, 2,000/s, would measure the quota).
	quotaFile := filepath.Join(dir, "quota.yaml")
	if err := os.WriteFile(quotaFile, []byte("defaults: {symmetric: 1000000000}\n"), 0o600); err != nil {
		return err
	}
	devDir := filepath.Join(dir, "dev")
	stopDev, err := start(ctx, "Press Ctrl-C", *devenvBin, "--dir", devDir, "--manager", *managerBin,
		"--metrics-bind-address", addrs[3], "--health-probe-bind-address", addrs[1], "--dataplane-address", addrs[0],
		"--quota-config", quotaFile, "--pprof-bind-address", addrs[2])
	if err != nil {
		return fmt.Errorf("devenv: %w", err)
	}
	defer stopDev()
	kmsAddr := addrs[0]

	echoPEM, echoRoots, err := selfSigned()
	if err != nil {
		return err
	}
	certFile := filepath.Join(dir, "echo.pem")
	if err := os.WriteFile(certFile, echoPEM, 0o600); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	echoLine := make(chan string, 1)
	stopEcho, err := startLine(ctx, "echo listening on ", echoLine, self, "-mode=echo", "-echo-cert", certFile)
	if err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	defer stopEcho()
	lkLine := make(chan string, 1)
	stopLK, err := startLine(ctx, "local-kms serving on ", lkLine, *localKMS, "-data", filepath.Join(dir, "local-kms"))
	if err != nil {
		return fmt.Errorf("local-kms: %w", err)
	}
	defer stopLK()
	echoAt, lkAt := <-echoLine, <-lkLine

	// The caller: the same key, ServiceAccount and token setup as the
	// in-process mode, through the control plane's kubeconfig.
	restCfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(devDir, "kubeconfig"))
	if err != nil {
		return err
	}
	c, err := client.New(restCfg, client.Options{Scheme: operator.NewScheme()})
	if err != nil {
		return err
	}
	token, err := setupCaller(ctx, c, kubernetes.NewForConfigOrDie(restCfg))
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(filepath.Join(devDir, "ca.crt"))
	if err != nil {
		return err
	}
	kmsRoots := x509.NewCertPool()
	kmsRoots.AppendCertsFromPEM(caPEM)
	kms, err := dialOne(kmsAddr, kmsRoots)
	if err != nil {
		return err
	}
	echoClient, err := dialOne(echoAt, echoRoots)
	if err != nil {
		return err
	}
	lk := &localKMSClient{url: "http://" + lkAt + "/", http: &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: *inflight, MaxConnsPerHost: *inflight}}}
	if err := lk.createKey(); err != nil {
		return fmt.Errorf("local-kms CreateKey: %w", err)
	}
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)

	small, bigPT := make([]byte, 32), make([]byte, 4096)
	var ct *kmsv1.EncryptResponse
	deadline := time.Now().Add(30 * time.Second)
	for ct == nil {
		// The key cache and RBAC may lag the setup by a moment.
		if ct, err = kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "bench", Plaintext: bigPT}); err != nil && time.Now().After(deadline) {
			return fmt.Errorf("first Encrypt: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	grpcEncrypt := func(k kmsv1.KeyManagementServiceClient, pt []byte) func(int) error {
		return func(int) error {
			_, err := k.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "bench", Plaintext: pt})
			return err
		}
	}
	runs := []struct {
		name string
		call func(int) error
	}{
		{"echo_tls_32B", grpcEncrypt(echoClient, small)},
		{"encrypt_32B", grpcEncrypt(kms, small)},
		{"localkms_32B", lk.encrypt(small)},
		{"echo_tls_4KiB", grpcEncrypt(echoClient, bigPT)},
		{"encrypt_4KiB", grpcEncrypt(kms, bigPT)},
		{"localkms_4KiB", lk.encrypt(bigPT)},
		{"decrypt_4KiB", func(int) error {
			_, err := kms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: ct.CiphertextBlob})
			return err
		}},
	}
	fmt.Printf("kubekms data plane benchmark, external: load generator in its own process, %d requests in flight, %s per run, %d interleaved rounds (medians)\n", *inflight, *duration, *rounds)
	fmt.Printf("kubekms: the manager as make run starts it (TLS, quotas on, audit records to a file); echo_tls: bare gRPC+TLS echo; localkms: local-kms (no TLS, auth or audit)\n\n")
	perRound := map[string][]float64{}
	for range *rounds {
		for _, r := range runs {
			res, err := load(*inflight, *duration, 0, r.call)
			if err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			perRound[r.name] = append(perRound[r.name], res.opsPerSec)
		}
	}
	fmt.Printf("%-24s %12s\n", "operation", "ops/s")
	for _, r := range runs {
		fmt.Printf("%-24s %12.0f\n", r.name, median(perRound[r.name]))
	}
	fmt.Printf("\np99 latency at %.0f calls/s (4 KiB):\n", *pacedRate)
	for _, r := range []struct {
		name string
		call func(int) error
	}{{"echo_tls_4KiB", grpcEncrypt(echoClient, bigPT)}, {"encrypt_4KiB", grpcEncrypt(kms, bigPT)}, {"localkms_4KiB", lk.encrypt(bigPT)}} {
		res, err := load(*inflight, *duration, *pacedRate, r.call)
		if err != nil {
			return fmt.Errorf("%s paced: %w", r.name, err)
		}
		fmt.Printf("%-24s %12.0f/s  p50 %-10s p99 %s\n", r.name, res.opsPerSec, res.p50, res.p99)
	}
	if records, writes, err := auditBatches(addrs[3]); err != nil {
		return fmt.Errorf("manager metrics: %w", err)
	} else if writes > 0 {
		fmt.Printf("\naudit: %.0f records in %.0f writes of the audit log, %.1f per write (group commit)\n", records, writes, records/writes)
	}
	if *profileDir != "" {
		if err := profileManager(addrs[2], *profileDir, grpcEncrypt(kms, bigPT)); err != nil {
			return fmt.Errorf("manager profile: %w", err)
		}
	}
	m := func(name string) float64 { return median(perRound[name]) }
	fmt.Printf("\nratio encrypt_4KiB/echo_tls_4KiB = %.2f\n", m("encrypt_4KiB")/m("echo_tls_4KiB"))
	fmt.Printf("ratio encrypt_32B/echo_tls_32B = %.2f\n", m("encrypt_32B")/m("echo_tls_32B"))
	fmt.Printf("ratio encrypt_4KiB/localkms_4KiB = %.2f\n", m("encrypt_4KiB")/m("localkms_4KiB"))
	return nil
}

// localKMSClient speaks the AWS KMS JSON 1.1 protocol to local-kms (which
// checks no signature).
type localKMSClient struct {
	url   string
	http  *http.Client
	keyID string
}

func (l *localKMSClient) call(target string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, l.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-Amz-Target", "TrentService."+target)
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	resp, err := l.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d: %s", target, resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

func (l *localKMSClient) createKey() error {
	var out struct{ KeyMetadata struct{ KeyId string } }
	if err := l.call("CreateKey", map[string]any{}, &out); err != nil {
		return err
	}
	l.keyID = out.KeyMetadata.KeyId
	return nil
}

// encrypt calls Encrypt with pt ([]byte is base64 in JSON, as AWS's blobs).
func (l *localKMSClient) encrypt(pt []byte) func(int) error {
	return func(int) error {
		return l.call("Encrypt", map[string]any{"KeyId": l.keyID, "Plaintext": pt}, nil)
	}
}

// dialOne is one TLS connection: every in-flight request shares it.
func dialOne(addr string, roots *x509.CertPool) (kmsv1.KeyManagementServiceClient, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots})))
	if err != nil {
		return nil, err
	}
	return kmsv1.NewKeyManagementServiceClient(cc), nil
}

// selfSigned is the echo server's certificate (ECDSA P-256, as the
// manager's) for 127.0.0.1, as PEM (certificate then key), and a pool
// that trusts it.
func selfSigned() ([]byte, *x509.CertPool, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench echo"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...), pool, nil
}

// start runs a server process until stop, waiting for a line of its output
// that contains ready.
func start(ctx context.Context, ready string, name string, args ...string) (stop func(), err error) {
	line := make(chan string, 1)
	return startLine(ctx, ready, line, name, args...)
}

// startLine runs a server process in its own process group and sends the
// rest of the first output line after prefix to line; stop interrupts the
// group and waits. Other output is discarded (local-kms logs every call).
func startLine(ctx context.Context, prefix string, line chan<- string, name string, args ...string) (stop func(), err error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop = func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		sent := false
		for sc.Scan() {
			if _, rest, ok := strings.Cut(sc.Text(), prefix); ok && !sent {
				sent = true
				line <- strings.TrimSpace(rest)
				close(found)
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case <-found:
		return stop, nil
	case <-time.After(3 * time.Minute):
		stop()
		return nil, fmt.Errorf("%s did not print %q within 3 minutes", name, prefix)
	}
}

// profileManager takes the manager's CPU profile during an Encrypt run of
// the bench's length, then its allocation profile, into dir.
func profileManager(pprofAddr, dir string, call func(int) error) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fetch := func(path, file string) error {
		resp, err := http.Get("http://" + pprofAddr + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode)
		}
		f, err := os.Create(filepath.Join(dir, file))
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(f, resp.Body)
		return err
	}
	cpu := make(chan error, 1)
	go func() {
		cpu <- fetch(fmt.Sprintf("/debug/pprof/profile?seconds=%d", max(1, int(duration.Seconds()))), "cpu.pprof")
	}()
	if _, err := load(*inflight, *duration, 0, call); err != nil {
		return err
	}
	if err := <-cpu; err != nil {
		return err
	}
	if err := fetch("/debug/pprof/allocs", "allocs.pprof"); err != nil {
		return err
	}
	fmt.Printf("\nmanager profiles: %s/cpu.pprof, %s/allocs.pprof (go tool pprof -top bin/manager FILE)\n", dir, dir)
	return nil
}

// auditBatches reads the manager's kubekms_audit_batch_records histogram:
// how many audit records it wrote, in how many writes.
func auditBatches(metricsAddr string) (records, writes float64, err error) {
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "kubekms_audit_batch_records_sum":
			_, err = fmt.Sscan(value, &records)
		case "kubekms_audit_batch_records_count":
			_, err = fmt.Sscan(value, &writes)
		}
		if err != nil {
			return 0, 0, err
		}
	}
	return records, writes, sc.Err()
}
