// Command kubekms-agent is the workload agent the webhook injects into pods:
// it decrypts the values the pod names in its kms.kubekms.io annotations
// through the data plane and writes them as files in a memory volume.
//
//	kubekms-agent            write the files; keep them current (sidecar) or exit (init)
//	kubekms-agent ready      exit 0 once every file has been written (startup probe)
//	kubekms-agent exec --dir DIR [--env VAR=FILE]... [--reload-signal SIG] -- COMMAND...
//	                         run an app's command with values in its environment
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubekms/kubekms/internal/agent"
	"github.com/kubekms/kubekms/internal/kmsclient"
)

type options struct {
	annotationsFile, dir, tokenFile, address, caFile, serverName, kubeconfig, namespace, binDir string
	timeout                                                                                     time.Duration
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "ready" {
		fs := flag.NewFlagSet("ready", flag.ExitOnError)
		dir := fs.String("dir", agent.AgentDir, "The directory the agent writes.")
		_ = fs.Parse(os.Args[2:])
		if err := agent.IsReady(*dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "exec" {
		os.Exit(execCommand(os.Args[2:]))
	}
	var o options
	flag.StringVar(&o.binDir, "bin-dir", "", "If set, copy this binary there first, for the exec wrapper in app containers.")
	flag.StringVar(&o.annotationsFile, "annotations-file", agent.AnnotationsFile, "The pod's annotations, as the downward API writes them.")
	flag.StringVar(&o.dir, "dir", agent.AgentDir, "Where to write the files (the shared memory volume).")
	flag.StringVar(&o.tokenFile, "token-file", agent.TokenFile, "The projected ServiceAccount token with audience kubekms; read before every call.")
	flag.StringVar(&o.address, "address", os.Getenv("KUBEKMS_ADDRESS"), "The data plane, host:port (KUBEKMS_ADDRESS).")
	flag.StringVar(&o.caFile, "ca-file", agent.CAFile, "The operator's CA (ConfigMap kubekms-ca.crt).")
	flag.StringVar(&o.serverName, "server-name", os.Getenv("KUBEKMS_SERVER_NAME"), "Name to check in the data plane's certificate, if not the address's host.")
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "Kubeconfig for reading Secrets and ConfigMaps; in a pod, its ServiceAccount.")
	flag.StringVar(&o.namespace, "namespace", os.Getenv("POD_NAMESPACE"), "The pod's namespace (POD_NAMESPACE).")
	flag.DurationVar(&o.timeout, "init-timeout", 5*time.Minute, "In init mode, how long to retry failures that may pass (throttling, the service restarting).")
	flag.Parse()

	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		log.Error("Agent failed", "error", err.Error())
		fmt.Fprintln(os.Stderr, "kubekms-agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	if o.binDir != "" {
		if err := agent.CopySelf(o.binDir); err != nil {
			return fmt.Errorf("copy the exec wrapper to %s: %w", o.binDir, err)
		}
	}
	raw, err := os.ReadFile(o.annotationsFile)
	if err != nil {
		return fmt.Errorf("read the pod's annotations: %w", err)
	}
	annotations, err := agent.ParseAnnotationsFile(raw)
	if err != nil {
		return err
	}
	cfg, err := agent.ParseAnnotations(annotations)
	if err != nil {
		return err
	}
	if o.namespace == "" {
		ns, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
		if err != nil {
			return errors.New("no namespace: set --namespace or POD_NAMESPACE")
		}
		o.namespace = strings.TrimSpace(string(ns))
	}
	restCfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	restCfg.UserAgent = "kubekms-agent"
	httpClient, err := rest.HTTPClientFor(restCfg)
	if err != nil {
		return err
	}
	kms, err := kmsclient.New(kmsclient.Config{
		Address: o.address, CAFile: o.caFile, ServerName: o.serverName,
		Token: kmsclient.TokenFile(o.tokenFile),
		// Each call gives up after a while so a Sync can report it; the agent retries.
		Retry: kmsclient.Retry{Budget: 30 * time.Second},
	})
	if err != nil {
		return err
	}
	defer kms.Close()

	a := &agent.Agent{
		Config:  cfg,
		Dir:     agent.Dir{Path: o.dir, Mode: cfg.FileMode, Keep: 10 * time.Second},
		KMS:     agent.KMSDecrypter{Client: kms},
		Objects: agent.KubeObjects{Host: restCfg.Host, Client: httpClient, Namespace: o.namespace, Log: log},
		Log:     log,
	}
	log.Info("Starting", "mode", cfg.Mode, "files", len(cfg.Files), "dir", o.dir)
	if cfg.Mode == agent.ModeInit {
		ctx, cancel := context.WithTimeout(ctx, o.timeout)
		defer cancel()
		return a.Once(ctx)
	}
	return a.Run(ctx)
}

// restConfig is the kubeconfig's, or the pod's ServiceAccount through the
// token and CA the webhook projects for the agent.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("not in a pod (no KUBERNETES_SERVICE_HOST): set --kubeconfig")
	}
	return &rest.Config{
		Host:            "https://" + net.JoinHostPort(host, port),
		BearerTokenFile: agent.APITokenFile,
		TLSClientConfig: rest.TLSClientConfig{CAFile: agent.APICAFile},
	}, nil
}

// execCommand is the exec wrapper: kubekms-agent exec --dir DIR --env
// VAR=FILE... [--reload-signal SIG] -- COMMAND ARGS...
func execCommand(args []string) int {
	fs := flag.NewFlagSet("exec", flag.ExitOnError)
	dir := fs.String("dir", agent.DefaultMountPath, "The files' directory as this container sees it.")
	reload := fs.String("reload-signal", "", "Signal to send the command when the files change; the wrapper then stays its parent.")
	var env []agent.EnvVar
	fs.Func("env", "VAR=FILE: set VAR to the content of FILE in --dir (repeatable).", func(v string) error {
		name, file, ok := strings.Cut(v, "=")
		if !ok || name == "" || file == "" {
			return fmt.Errorf("%q is not VAR=FILE", v)
		}
		env = append(env, agent.EnvVar{Name: name, File: file})
		return nil
	})
	_ = fs.Parse(args)
	w := agent.Wrapper{Dir: *dir, Env: env, Argv: fs.Args()}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "kubekms-agent exec:", err)
		return 127
	}
	if *reload == "" {
		return fail(w.Exec()) // returns only on failure
	}
	sig, err := agent.ParseSignal(*reload)
	if err != nil {
		return fail(err)
	}
	w.Signal = sig
	code, err := w.Run(context.Background(), os.Stdin, os.Stdout, os.Stderr)
	if err != nil {
		return fail(err)
	}
	return code
}
