// Command manager runs the kubekms controllers.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/kubekms/kubekms/internal/audit"
	"github.com/kubekms/kubekms/internal/backup"
	"github.com/kubekms/kubekms/internal/dataplane"
	"github.com/kubekms/kubekms/internal/inject"
	"github.com/kubekms/kubekms/internal/operator"
	"github.com/kubekms/kubekms/internal/quota"
	"github.com/kubekms/kubekms/internal/seal"
)

type options struct {
	namespace           string
	metricsAddr         string
	probeAddr           string
	pprofAddr           string
	leaderElect         bool
	devDeletionWindow   time.Duration
	leaderElectionID    string
	maxConcurrentKeys   int
	dataplaneAddr       string
	dataplaneInsecure   bool
	dataplaneDNSNames   string
	dataplaneIPs        string
	dataplaneService    string
	quotaConfig         string
	auditLog            string
	auditFailClosed     bool
	usageInterval       time.Duration
	webhookPort         int
	webhookHost         string
	webhookCertDir      string
	agentImage          string
	agentResources      [4]string
	rootOfTrust         string
	previousRootOfTrust string
	previousRootKeyPath string
	previousAWSKMSKeyID string
	previousPKCS11      seal.PKCS11Config
	rootKeyPath         string
	awsKMSKeyID         string
	pkcs11              seal.PKCS11Config
	rootCheckInterval   time.Duration
	backupRecipients    []string
	backupDir           string
	backupInterval      time.Duration
	backupStaleAfter    time.Duration
	backupKeep          int
	zap                 zap.Options
}

func main() {
	opts := options{}
	defaultNS := os.Getenv("POD_NAMESPACE")
	if defaultNS == "" {
		defaultNS = "kubekms-system"
	}
	flag.StringVar(&opts.namespace, "operator-namespace", defaultNS, "Namespace of the operator: its root key, key material and leader election lease live here (default $POD_NAMESPACE, else kubekms-system).")
	flag.StringVar(&opts.metricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 turns it off.")
	flag.StringVar(&opts.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	flag.StringVar(&opts.pprofAddr, "pprof-bind-address", "0", "Address of the net/http/pprof endpoints (profiling; keep it on loopback); 0 turns them off.")
	flag.BoolVar(&opts.leaderElect, "leader-elect", true, "Elect one active controller among replicas.")
	flag.StringVar(&opts.leaderElectionID, "leader-election-id", "kubekms-manager.kms.kubekms.io", "Name of the leader election Lease.")
	flag.IntVar(&opts.maxConcurrentKeys, "max-concurrent-key-reconciles", 4, "Keys reconciled in parallel.")
	flag.DurationVar(&opts.devDeletionWindow, "dev-deletion-window", 0,
		"FOR TESTS AND LOCAL DEVELOPMENT ONLY: replace every Key's deletion window (168h..720h) with this duration, so deleted material is destroyed sooner. Never set it in production.")
	flag.StringVar(&opts.dataplaneAddr, "dataplane-bind-address", ":50051", "Address of the gRPC KeyManagementService (every replica serves).")
	flag.BoolVar(&opts.dataplaneInsecure, "dataplane-insecure", false, "FOR LOCAL DEVELOPMENT ONLY: serve the data plane without TLS.")
	flag.StringVar(&opts.dataplaneDNSNames, "dataplane-dns-names", "", "Comma-separated DNS names of the serving certificate (default kubekms.<namespace>.svc and kubekms.<namespace>.svc.cluster.local).")
	flag.StringVar(&opts.dataplaneIPs, "dataplane-ip-addresses", "", "Comma-separated IP addresses of the serving certificate, e.g. 127.0.0.1 for local use.")
	flag.StringVar(&opts.dataplaneService, "dataplane-service", "kubekms", "Service of the data plane: each replica enforces quota / its ready endpoints.")
	flag.StringVar(&opts.quotaConfig, "quota-config", "", "Quota configuration file (YAML), reloaded when it changes; built-in defaults when empty.")
	flag.StringVar(&opts.auditLog, "audit-log", "-", "Where audit records go: - for stdout, or a file path (appended).")
	flag.BoolVar(&opts.auditFailClosed, "audit-fail-closed", false, "Refuse data-plane requests whose audit record cannot be written.")
	flag.DurationVar(&opts.usageInterval, "usage-interval", time.Minute, "How often key use is summarised as Events and status.lastUsed.")
	flag.IntVar(&opts.webhookPort, "webhook-port", 9443, "Port of the admin validating webhook.")
	flag.StringVar(&opts.webhookHost, "webhook-host", "", "Address the webhook listens on (default: all).")
	flag.StringVar(&opts.webhookCertDir, "webhook-cert-dir", "", "Directory with tls.crt and tls.key for the webhook; empty: a certificate from the operator's CA for kubekms-webhook-service.<namespace>.svc.")
	flag.StringVar(&opts.agentImage, "agent-image", "ghcr.io/kubekms/kubekms:latest", "Image of the agent the pod webhook injects (contains /kubekms-agent).")
	flag.StringVar(&opts.agentResources[0], "agent-cpu-request", "10m", "Default CPU request of the injected agent; empty for none.")
	flag.StringVar(&opts.agentResources[1], "agent-memory-request", "16Mi", "Default memory request of the injected agent; empty for none.")
	flag.StringVar(&opts.agentResources[2], "agent-cpu-limit", "", "Default CPU limit of the injected agent; empty for none.")
	flag.StringVar(&opts.agentResources[3], "agent-memory-limit", "32Mi", "Default memory limit of the injected agent; empty for none.")
	flag.StringVar(&opts.rootOfTrust, "root-of-trust", operator.RootOfTrustLocal, "Provider of the root key that seals key material: local (a Secret in the operator's namespace), file (--root-key-path), awskms (--aws-kms-key-id) or pkcs11 (--pkcs11-*, the -pkcs11 image).")
	flag.StringVar(&opts.previousRootOfTrust, "previous-root-of-trust", "", "Migration between roots of trust: the provider (local, file, awskms or pkcs11) that sealed the material so far, set with the --previous-* flags; it keeps unsealing while the leader reseals it all under --root-of-trust; remove it once the RootOfTrust says nothing needs it.")
	flag.StringVar(&opts.previousRootKeyPath, "previous-root-key-path", "", "Migration from file: the previous root key file or directory.")
	flag.StringVar(&opts.previousAWSKMSKeyID, "previous-aws-kms-key-id", "", "Migration from awskms: the previous AWS KMS key (same SDK chain as --aws-kms-key-id).")
	flag.StringVar(&opts.previousPKCS11.Module, "previous-pkcs11-module", "", "Migration from pkcs11: the previous HSM's PKCS#11 library.")
	flag.StringVar(&opts.previousPKCS11.TokenLabel, "previous-pkcs11-token-label", "", "Migration from pkcs11: the previous token's label.")
	flag.StringVar(&opts.previousPKCS11.KeyLabel, "previous-pkcs11-key-label", "", "Migration from pkcs11: the previous AES root key's label.")
	flag.StringVar(&opts.previousPKCS11.PINFile, "previous-pkcs11-pin-file", "", "Migration from pkcs11: a file holding the previous token's user PIN.")
	flag.StringVar(&opts.rootKeyPath, "root-key-path", "", "file root of trust: a file of 32 raw bytes (root key version 1), or a directory of root-key-v<N> files (the highest N seals).")
	flag.DurationVar(&opts.rootCheckInterval, "root-check-interval", operator.DefaultRootCheckInterval, "How often the root of trust is checked again: while it is missing, unreachable or wrong the manager is not ready, and it recovers on its own when the root comes back.")
	flag.StringVar(&opts.pkcs11.Module, "pkcs11-module", "", "pkcs11 root of trust: the HSM's PKCS#11 shared library (the -pkcs11 image only).")
	flag.StringVar(&opts.pkcs11.TokenLabel, "pkcs11-token-label", "", "pkcs11 root of trust: the label of the token that holds the root key.")
	flag.StringVar(&opts.pkcs11.KeyLabel, "pkcs11-key-label", "", "pkcs11 root of trust: the label of the AES root key on that token.")
	flag.StringVar(&opts.pkcs11.PINFile, "pkcs11-pin-file", "", "pkcs11 root of trust: a file holding the token's user PIN (a mounted Secret).")
	flag.StringVar(&opts.awsKMSKeyID, "aws-kms-key-id", "", "awskms root of trust: the AWS KMS key (ID, ARN or alias/NAME); region, endpoint (AWS_ENDPOINT_URL_KMS) and credentials come from the AWS SDK's usual chain.")
	flag.Func("backup-recipient", "A backup recipient (kmsbackup1:..., from kubectl kms backup-identity) every backup bundle is encrypted to; repeat it for several.", func(s string) error {
		opts.backupRecipients = append(opts.backupRecipients, s)
		return nil
	})
	flag.StringVar(&opts.backupDir, "backup-dir", "", "Directory (a mounted volume) where the leader writes a backup bundle at start, after every change to keys, policies, grants or material, and at least every --backup-interval; empty turns scheduled backups off.")
	flag.DurationVar(&opts.backupInterval, "backup-interval", 24*time.Hour, "Longest time between two scheduled backups.")
	flag.DurationVar(&opts.backupStaleAfter, "backup-stale-after", 0, "Age of the last scheduled backup after which the RootOfTrust's BackedUp condition turns False (default twice --backup-interval).")
	flag.IntVar(&opts.backupKeep, "backup-keep", 7, "How many scheduled backup bundles are kept in --backup-dir.")
	opts.zap.BindFlags(flag.CommandLine)
	flag.Parse()

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts.zap)))
	if err := run(ctrl.SetupSignalHandler(), opts); err != nil {
		ctrl.Log.Error(err, "Manager stopped")
		os.Exit(1)
	}
}

// resourceRequirements reads the agent's default cpu/memory requests and
// limits (in the order of options.agentResources).
func resourceRequirements(v [4]string) (corev1.ResourceRequirements, error) {
	r := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for i, f := range []struct {
		flag string
		list corev1.ResourceList
		name corev1.ResourceName
	}{
		{"agent-cpu-request", r.Requests, corev1.ResourceCPU},
		{"agent-memory-request", r.Requests, corev1.ResourceMemory},
		{"agent-cpu-limit", r.Limits, corev1.ResourceCPU},
		{"agent-memory-limit", r.Limits, corev1.ResourceMemory},
	} {
		if v[i] == "" {
			continue
		}
		q, err := resource.ParseQuantity(v[i])
		if err != nil {
			return r, fmt.Errorf("--%s: %q is not a quantity", f.flag, v[i])
		}
		f.list[f.name] = q
	}
	return r, nil
}

// portOf is the port of a listen address like ":50051".
func portOf(addr string) string {
	if _, port, err := net.SplitHostPort(addr); err == nil {
		return port
	}
	return "50051"
}

func run(ctx context.Context, opts options) error {
	log := ctrl.Log.WithName("setup")
	if opts.devDeletionWindow != 0 {
		log.Info("WARNING: --dev-deletion-window replaces every Key's deletion window; for tests and local development only",
			"window", opts.devDeletionWindow.String())
	}
	auditSink, auditFile, err := audit.Open(opts.auditLog)
	if err != nil {
		return err
	}
	defer auditFile.Close()
	agentResources, err := resourceRequirements(opts.agentResources)
	if err != nil {
		return err
	}
	var ips []net.IP
	for _, s := range splitList(opts.dataplaneIPs) {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("--dataplane-ip-addresses: %q is not an IP address", s)
		}
		ips = append(ips, ip)
	}

	var recipients []backup.Recipient
	for _, s := range opts.backupRecipients {
		r, err := backup.ParseRecipient(s)
		if err != nil {
			return fmt.Errorf("--backup-recipient: %w", err)
		}
		recipients = append(recipients, r)
	}

	op, err := operator.New(ctx, ctrl.GetConfigOrDie(), operator.Options{
		Namespace:           opts.namespace,
		MetricsAddr:         opts.metricsAddr,
		ProbeAddr:           opts.probeAddr,
		PprofAddr:           opts.pprofAddr,
		LeaderElection:      opts.leaderElect,
		LeaderElectionID:    opts.leaderElectionID,
		RootOfTrust:         opts.rootOfTrust,
		PreviousRootOfTrust: opts.previousRootOfTrust,
		PreviousRootKeyPath: opts.previousRootKeyPath,
		PreviousAWSKMSKeyID: opts.previousAWSKMSKeyID,
		PreviousPKCS11:      opts.previousPKCS11,
		RootKeyPath:         opts.rootKeyPath,
		AWSKMSKeyID:         opts.awsKMSKeyID,
		PKCS11:              opts.pkcs11,
		RootCheckInterval:   opts.rootCheckInterval,
		Backup: operator.BackupOptions{Recipients: recipients, Dir: opts.backupDir,
			Interval: opts.backupInterval, StaleAfter: opts.backupStaleAfter, Keep: opts.backupKeep},
		Webhooks: &operator.WebhookOptions{
			Host:    opts.webhookHost,
			Port:    opts.webhookPort,
			CertDir: opts.webhookCertDir,
			Injector: &inject.Options{
				Image:     opts.agentImage,
				Address:   fmt.Sprintf("%s.%s.svc:%s", opts.dataplaneService, opts.namespace, portOf(opts.dataplaneAddr)),
				Resources: agentResources,
			},
		},
		Controllers: &operator.ControllerOptions{
			MaxConcurrentKeys:      opts.maxConcurrentKeys,
			DeletionWindowOverride: opts.devDeletionWindow,
		},
		DataPlane: &dataplane.Config{
			Addr:            opts.dataplaneAddr,
			Quota:           quota.NewLimiter(quota.DefaultConfig(), nil),
			QuotaFile:       opts.quotaConfig,
			Service:         opts.dataplaneService,
			Audit:           auditSink,
			AuditFailClosed: opts.auditFailClosed,
			UsageInterval:   opts.usageInterval,
		},
		Serving: operator.Serving{Insecure: opts.dataplaneInsecure, DNSNames: splitList(opts.dataplaneDNSNames), IPs: ips},
	})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("%w (does namespace %q exist?)", err, opts.namespace)
		}
		return err
	}
	log.Info("Starting manager", "namespace", opts.namespace, "leaderElection", opts.leaderElect)
	return op.Start(ctx)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
