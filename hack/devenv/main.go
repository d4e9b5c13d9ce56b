// Command devenv is `make run`: a local kube-apiserver and etcd (envtest),
// the CRDs, the manager binary in the foreground and the samples applied.
// It writes a kubeconfig and a shell file so `source bin/dev/env` points
// kubectl at it. Ctrl-C (or SIGTERM) stops everything it started.
//
// The control plane is ephemeral: every run starts from an empty etcd.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

type options struct {
	dir, manager, crds, samples, namespace string
	webhooks                               string
	metricsAddr, probeAddr, dataplaneAddr  string
	pprofAddr                              string
	deletionWindow                         time.Duration
	quotaConfig                            string
	usageInterval                          time.Duration
	managerArgs                            []string
}

func main() {
	o := options{}
	flag.StringVar(&o.dir, "dir", "bin/dev", "Where to write kubeconfig and env.")
	flag.StringVar(&o.manager, "manager", "bin/manager", "The manager binary to run.")
	flag.StringVar(&o.crds, "crds", "config/crd/bases", "The CRDs to install.")
	flag.StringVar(&o.webhooks, "webhooks", "config/webhook", "The webhook configurations to install.")
	flag.StringVar(&o.samples, "samples", "config/samples", "Manifests to apply once the manager is ready; empty for none.")
	flag.StringVar(&o.namespace, "operator-namespace", "kubekms-system", "The operator's namespace.")
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", "127.0.0.1:8080", "The manager's metrics address.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", "127.0.0.1:8081", "The manager's health probe address.")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "0", "The manager's net/http/pprof address; 0 turns it off.")
	flag.StringVar(&o.dataplaneAddr, "dataplane-address", "127.0.0.1:50051", "Where the manager serves the gRPC data plane (TLS, certificate valid for 127.0.0.1 and localhost).")
	flag.StringVar(&o.quotaConfig, "quota-config", "", "Quota configuration file for the manager (built-in defaults when empty).")
	flag.DurationVar(&o.usageInterval, "usage-interval", 10*time.Second, "How often the manager summarises key use as Events.")
	flag.DurationVar(&o.deletionWindow, "deletion-window", 5*time.Minute, "Deletion window of every key here (short, for local development only).")
	flag.Func("manager-arg", "One more argument for the manager, e.g. --manager-arg=--backup-dir=/tmp/b (repeatable).", func(s string) error {
		o.managerArgs = append(o.managerArgs, s)
		return nil
	})
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "devenv: %v\n", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf("devenv: "+format+"\n", args...) }

func run(ctx context.Context, o options) (err error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return errors.New("KUBEBUILDER_ASSETS is not set: run through `make run`, which builds the local control plane first")
	}
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}

	say("starting kube-apiserver and etcd from %s", assets)
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{o.crds},
		ErrorIfCRDPathMissing: true,
		// The admin webhook, pointed at the local manager with envtest's
		// own serving certificate.
		WebhookInstallOptions: envtest.WebhookInstallOptions{Paths: []string{o.webhooks}, LocalServingHost: "127.0.0.1"},
	}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("start control plane: %w", err)
	}
	defer func() {
		say("stopping kube-apiserver and etcd")
		err = errors.Join(err, env.Stop())
	}()

	admin, err := env.AddUser(envtest.User{Name: "kubekms-dev-admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		return fmt.Errorf("create admin user: %w", err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return err
	}
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		return err
	}

	cs, err := kubernetes.NewForConfig(admin.Config())
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.namespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", o.namespace, err)
	}

	say("starting the manager (audit records go to %s)", filepath.Join(dir, "audit.log"))
	args := []string{
		"--audit-log", filepath.Join(dir, "audit.log"),
		"--usage-interval", o.usageInterval.String(),
	}
	if o.quotaConfig != "" {
		args = append(args, "--quota-config", o.quotaConfig)
	}
	mgr := exec.Command(o.manager, append(args,
		"--kubeconfig", kubeconfigPath,
		"--operator-namespace", o.namespace,
		"--metrics-bind-address", o.metricsAddr,
		"--health-probe-bind-address", o.probeAddr,
		"--pprof-bind-address", o.pprofAddr,
		"--dev-deletion-window", o.deletionWindow.String(),
		"--dataplane-bind-address", o.dataplaneAddr,
		"--dataplane-dns-names", "localhost",
		"--dataplane-ip-addresses", "127.0.0.1,::1",
		"--leader-elect=false",
		"--webhook-host", env.WebhookInstallOptions.LocalServingHost,
		"--webhook-port", fmt.Sprint(env.WebhookInstallOptions.LocalServingPort),
		"--webhook-cert-dir", env.WebhookInstallOptions.LocalServingCertDir,
	)...)
	mgr.Args = append(mgr.Args, o.managerArgs...)
	mgr.Stdout, mgr.Stderr = os.Stdout, os.Stderr
	// Its own process group: Ctrl-C reaches devenv, which stops the manager
	// once and in order.
	mgr.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := mgr.Start(); err != nil {
		return fmt.Errorf("start manager %s: %w", o.manager, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- mgr.Wait() }()
	defer func() {
		if mgr.ProcessState != nil {
			return
		}
		say("stopping the manager")
		_ = mgr.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = mgr.Process.Kill()
			<-exited
		}
	}()

	if err := waitReady(ctx, "http://"+o.probeAddr+"/readyz", exited); err != nil {
		return err
	}
	caPath := filepath.Join(dir, "ca.crt")
	if err := writeCA(ctx, cs, caPath); err != nil {
		return err
	}
	envPath := filepath.Join(dir, "env")
	envFile := fmt.Sprintf("# Written by `make run`: source it to use the local control plane.\n"+
		"export KUBECONFIG=%q\n"+
		"export KUBEKMS_ADDRESS=%q\n"+
		"export KUBEKMS_CA_FILE=%q\n"+
		"# kubectl matching the local kube-apiserver.\n"+
		"export PATH=%q:\"$PATH\"\n", kubeconfigPath, o.dataplaneAddr, caPath, assets)
	if err := os.WriteFile(envPath, []byte(envFile), 0o600); err != nil {
		return err
	}

	if o.samples != "" {
		say("applying %s", o.samples)
		apply := exec.CommandContext(ctx, filepath.Join(assets, "kubectl"), "--kubeconfig", kubeconfigPath, "apply", "-f", o.samples)
		apply.Stdout, apply.Stderr = os.Stdout, os.Stderr
		if err := apply.Run(); err != nil {
			return fmt.Errorf("apply samples: %w", err)
		}
	}

	fmt.Printf(`
kubekms is running against a local control plane.

In another terminal:
  source %s
  kubectl get keys -A
  kubectl describe key sample
  kubectl annotate key sample kms.kubekms.io/rotate="$(date +%%s)"

Deleted keys are destroyed after %s here (never this short elsewhere).
Press Ctrl-C to stop everything.
`, envPath, o.deletionWindow)

	select {
	case <-ctx.Done():
		return nil
	case err := <-exited:
		return fmt.Errorf("manager exited: %v", err)
	}
}

// writeCA saves the CA bundle the manager publishes (ConfigMap
// kubekms-ca.crt), as any client in the cluster would read it.
func writeCA(ctx context.Context, cs kubernetes.Interface, path string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		cm, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "kubekms-ca.crt", metav1.GetOptions{})
		if err == nil && cm.Data["ca.crt"] != "" {
			return os.WriteFile(path, []byte(cm.Data["ca.crt"]), 0o644)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the manager did not publish ConfigMap default/kubekms-ca.crt: %v", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitReady polls the manager's readiness endpoint.
func waitReady(ctx context.Context, url string, exited <-chan error) error {
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-exited:
			return fmt.Errorf("manager exited before it was ready: %v", err)
		case <-deadline:
			return fmt.Errorf("manager not ready at %s after 60s", url)
		case <-tick.C:
			resp, err := http.Get(url)
			if err == nil {
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					say("manager is ready")
					return nil
				}
			}
		}
	}
}
