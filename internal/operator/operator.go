// Package operator assembles one kubekms manager process: the scheme and
// caches, the root of trust (sealer), the key store, the operator's CA, the
// access index and the one SubjectAccessReview authorizer, then whichever of
// the admission webhooks, the controllers and the data plane the caller
// asks for.
//
// It is the only place that wires these parts together. cmd/manager,
// hack/bench and every test suite that runs a manager call New with
// Options; they differ only in the options they pass. The parts themselves
// (controllers, dataplane, adminwebhook, inject) know nothing of each
// other: what they share (the store, the access index, the authorizer, the
// key cache) is built here once and handed to each.
package operator

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/controllers"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/adminwebhook"
	"github.com/kubekms/kubekms/internal/authz"
	"github.com/kubekms/kubekms/internal/backup"
	"github.com/kubekms/kubekms/internal/certs"
	"github.com/kubekms/kubekms/internal/dataplane"
	"github.com/kubekms/kubekms/internal/inject"
	"github.com/kubekms/kubekms/internal/keycache"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/recovery"
	"github.com/kubekms/kubekms/internal/seal"
)

// leases, only in the operator's namespace: leader election.
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=kubekms-system,resources=leases,verbs=get;create;update
// core events, only in the operator's namespace: leader election records
// "became leader" on its Lease.
// +kubebuilder:rbac:groups="",namespace=kubekms-system,resources=events,verbs=create;patch

// The roots of trust (docs/root-of-trust.md).
const (
	// RootOfTrustLocal is the root key kept in a Secret of the operator's
	// namespace (DESIGN §4), the default.
	RootOfTrustLocal = seal.LocalProvider
	// RootOfTrustFile is root keys read from RootKeyPath.
	RootOfTrustFile = seal.FileProvider
	// RootOfTrustAWSKMS is a key in AWS KMS (or an API-compatible
	// service), AWSKMSKeyID.
	RootOfTrustAWSKMS = seal.AWSKMSProvider
	// RootOfTrustPKCS11 is an AES key in an HSM, PKCS11; only builds with
	// the pkcs11 tag (the -pkcs11 image) have it.
	RootOfTrustPKCS11 = seal.PKCS11Provider
)

// Options choose what one manager process runs. The zero value of every
// optional part turns that part off.
type Options struct {
	// Namespace of the operator: its root key, key material, CA and
	// leader election Lease live here.
	Namespace string
	// MetricsAddr, ProbeAddr and PprofAddr are the metrics, health and
	// profiling (net/http/pprof) endpoints; "0" (or empty) turns them off.
	MetricsAddr, ProbeAddr, PprofAddr string
	// LeaderElection elects one replica to run the controllers; the Lease
	// is LeaderElectionID.
	LeaderElection   bool
	LeaderElectionID string
	// SeveralPerProcess lets more than one manager run in one process
	// (test suites and the bench): controller names are not checked for
	// uniqueness.
	SeveralPerProcess bool

	// RootOfTrust names the sealer provider; empty means RootOfTrustLocal.
	RootOfTrust string
	// PreviousRootOfTrust, when set, is the root of trust a migration
	// moves away from: material it sealed still unseals, and the leader
	// reseals all of it under RootOfTrust. Any provider but RootOfTrust's
	// can be previous; RootOfTrustLocal's Secret is never created here.
	// PreviousRootKeyPath, PreviousAWSKMSKeyID and PreviousPKCS11 are its
	// settings, as RootKeyPath, AWSKMSKeyID and PKCS11 are RootOfTrust's.
	PreviousRootOfTrust string
	PreviousRootKeyPath string
	PreviousAWSKMSKeyID string
	PreviousPKCS11      seal.PKCS11Config
	// RootKeyPath is the file root of trust's key file or directory.
	RootKeyPath string
	// AWSKMSKeyID is the awskms root of trust's key (ID, ARN or alias);
	// region, endpoint and credentials come from the AWS SDK's chain.
	AWSKMSKeyID string
	// PKCS11 names the pkcs11 root of trust's module, token, key and PIN.
	PKCS11 seal.PKCS11Config
	// RootCheckInterval is how often the root of trust is checked again
	// (readiness, recovery); zero means DefaultRootCheckInterval.
	RootCheckInterval time.Duration
	// Clock decides time in the controllers, the admin webhook and the
	// certificates; nil is the real clock.
	Clock clock.Clock
	// Random is the source of key material; nil is crypto/rand.
	Random io.Reader
	// Authz tunes the one SubjectAccessReview cache the admin webhook and
	// the data plane share.
	Authz authz.Options

	// Webhooks, when set, serves the admission webhooks.
	Webhooks *WebhookOptions
	// Controllers, when set, runs the controllers (on the elected leader).
	Controllers *ControllerOptions
	// DataPlane, when set, serves the gRPC data plane. Store, Access,
	// Keys, Authorizer and Namespace are filled in by New; TLS comes from
	// Serving.
	DataPlane *dataplane.Config
	// Serving names the data plane's serving certificate.
	Serving Serving
	// Backup configures backups: the recipients of every bundle (the
	// data plane's BackupService and scheduled ones) and, with Dir,
	// scheduled backups on the leader.
	Backup BackupOptions
}

// BackupOptions configure backups (docs/backup.md).
type BackupOptions struct {
	// Recipients are the public keys every bundle is encrypted to; without
	// any, the BackupService refuses to back up (it still restores).
	Recipients []backup.Recipient
	// Dir, when set, receives a bundle at start, after every change and at
	// least every Interval; Keep are kept; older than StaleAfter is stale.
	Dir                  string
	Interval, StaleAfter time.Duration
	Keep                 int
	// Check is how often the leader looks for changes (default 1m).
	Check time.Duration
}

// WebhookOptions configure the admission webhooks' server and which
// webhooks it serves.
type WebhookOptions struct {
	// Host and Port to listen on.
	Host string
	Port int
	// CertDir holds tls.crt and tls.key. Empty: a certificate issued by the
	// operator's CA for kubekms-webhook-service.<namespace>.svc, whose CA
	// bundle the manager then writes into the pod injector's configuration.
	CertDir string
	// Injector, when set, also serves the pod injector.
	Injector *inject.Options
}

// ControllerOptions tune the controllers.
type ControllerOptions struct {
	// MaxConcurrentKeys is how many Keys are reconciled in parallel.
	MaxConcurrentKeys int
	// DeletionWindowOverride: see controllers.KeyReconciler. Tests and
	// local development only.
	DeletionWindowOverride time.Duration
	// ImportPollInterval: see controllers.KeyReconciler.
	ImportPollInterval time.Duration
}

// Serving names the data plane's serving certificate.
type Serving struct {
	// Insecure serves the data plane without TLS (local development only).
	Insecure bool
	// DNSNames and IPs of the certificate; without either the names are
	// kubekms.<namespace>.svc and kubekms.<namespace>.svc.cluster.local.
	DNSNames []string
	IPs      []net.IP
}

// Operator is an assembled manager and the parts its components share.
type Operator struct {
	Manager ctrl.Manager
	Sealer  seal.Sealer
	// RootOfTrust is the root of trust behind Sealer, checked again every
	// RootCheckInterval; its Ready is the manager's "root-of-trust"
	// readiness check.
	RootOfTrust *seal.Guarded
	// Previous is the root of trust of Options.PreviousRootOfTrust (nil
	// without one), checked every RootCheckInterval too.
	Previous *seal.Guarded
	Store    *keystore.Store
	CA       *certs.CA
	// Access is the policy and grant index, Keys the key cache: both fed by
	// the manager's informers, shared by the admin webhook and every data
	// plane.
	Access *access.Index
	Keys   *keycache.Cache
	// Authorizer is the one SubjectAccessReview client and cache.
	Authorizer *authz.Authorizer
	// DataPlane is the gRPC server of Options.DataPlane (nil without one).
	DataPlane *grpc.Server
	// Backups writes scheduled backups (nil without Options.Backup.Dir).
	Backups *recovery.Scheduler

	opts      Options
	clientset kubernetes.Interface
	// replica is this process's host name, for the root-of-trust reports.
	replica string
	// rootLoaded: the local root key was loaded once; it is never created
	// again by this process.
	rootLoaded atomic.Bool
	// migrationVerified is when a finished migration was last confirmed by
	// unsealing every sealed Secret (UnixNano; 0 never).
	migrationVerified atomic.Int64
}

// NewScheme is the scheme every kubekms client uses: the built-in types and
// the kms.kubekms.io types.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	// Both only add registered Go types: they cannot fail.
	_ = clientgoscheme.AddToScheme(s)
	_ = kmsv1alpha1.AddToScheme(s)
	return s
}

// New builds a manager from cfg and opts with every part added; Start runs
// it. The root of trust and the CA are loaded (or created once) here, so an
// error that stops the process (a missing root key with sealed material
// left, say) is returned before anything serves.
func New(ctx context.Context, cfg *rest.Config, opts Options) (*Operator, error) {
	if opts.RootOfTrust == "" {
		opts.RootOfTrust = RootOfTrustLocal
	}
	if !slices.Contains(rootsOfTrust, opts.RootOfTrust) {
		return nil, fmt.Errorf("root of trust %q: want one of %q", opts.RootOfTrust, rootsOfTrust)
	}
	switch p := opts.PreviousRootOfTrust; {
	case p == "":
	case !slices.Contains(rootsOfTrust, p):
		return nil, fmt.Errorf("--previous-root-of-trust %q: want one of %q", p, rootsOfTrust)
	case opts.RootOfTrust == RootOfTrustLocal:
		return nil, errors.New("--root-of-trust local with --previous-root-of-trust: a migration moves to a root of trust outside the cluster, never to local (to change the local root key, rotate it: RootOfTrust spec.rotationRequest)")
	case p == opts.RootOfTrust:
		return nil, fmt.Errorf("--previous-root-of-trust %s with --root-of-trust %s: a migration moves to another provider; a new root key of the same provider is a rotation (docs/root-of-trust.md)", p, p)
	}
	if err := checkRootSettings(currentRoot(opts)); err != nil {
		return nil, fmt.Errorf("root of trust %s: %w", opts.RootOfTrust, err)
	}
	if opts.PreviousRootOfTrust == "" && (opts.PreviousRootKeyPath != "" || opts.PreviousAWSKMSKeyID != "" || opts.PreviousPKCS11 != (seal.PKCS11Config{})) {
		return nil, errors.New("--previous-* settings without --previous-root-of-trust: name the provider the material is migrated from, or drop them")
	}
	if opts.PreviousRootOfTrust != "" {
		if err := checkRootSettings(previousRoot(opts)); err != nil {
			return nil, fmt.Errorf("previous root of trust %s: %w (the --previous-* flags)", opts.PreviousRootOfTrust, err)
		}
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Random == nil {
		opts.Random = rand.Reader
	}
	webhookIssuer := &certs.Issuer{Clock: opts.Clock, DNSNames: []string{
		"kubekms-webhook-service." + opts.Namespace + ".svc", "kubekms-webhook-service." + opts.Namespace + ".svc.cluster.local"}}
	mopts := ctrl.Options{
		Scheme:                        NewScheme(),
		Metrics:                       metricsserver.Options{BindAddress: orOff(opts.MetricsAddr)},
		HealthProbeBindAddress:        orOff(opts.ProbeAddr),
		PprofBindAddress:              orOff(opts.PprofAddr),
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              opts.LeaderElectionID,
		LeaderElectionNamespace:       opts.Namespace,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         CacheOptions(opts.Namespace),
	}
	if opts.SeveralPerProcess {
		mopts.Controller = config.Controller{SkipNameValidation: new(true)}
	}
	if w := opts.Webhooks; w != nil {
		wo := webhook.Options{Host: w.Host, Port: w.Port, CertDir: w.CertDir}
		if w.CertDir == "" {
			wo.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.GetCertificate = webhookIssuer.GetCertificate }}
		}
		mopts.WebhookServer = webhook.NewServer(wo)
	}
	mgr, err := ctrl.NewManager(cfg, mopts)
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return nil, err
	}
	op := &Operator{Manager: mgr, opts: opts, clientset: cs, Access: access.NewIndex()}
	authzOpts := opts.Authz
	if authzOpts.Clock == nil {
		authzOpts.Clock = opts.Clock
	}
	op.Authorizer = authz.New(cs.AuthorizationV1().SubjectAccessReviews(), authzOpts)

	// A root of trust that is missing, unreachable or not the one the
	// material needs does not stop the start: the manager is not ready,
	// says why, seals and unseals nothing new, and checks again every
	// RootCheckInterval (docs/root-of-trust.md).
	var previous seal.Sealer
	if opts.PreviousRootOfTrust != "" {
		// Loaded, never created; what it unseals proves it.
		op.Previous, _ = seal.NewGuarded(ctx, opts.PreviousRootOfTrust, opts.PreviousRootOfTrust == RootOfTrustLocal, func(ctx context.Context) (seal.Sealer, error) {
			return op.loadRoot(ctx, previousRoot(op.opts), false)
		}, func(ctx context.Context, s seal.Sealer) error {
			// Proved against what it sealed: one unseal per check at most,
			// usually from the first page of material Secrets.
			return (&keystore.Store{Reader: mgr.GetAPIReader(), Namespace: opts.Namespace}).TrialUnsealPrevious(ctx, s)
		})
		previous = op.Previous
	}
	op.RootOfTrust, err = seal.NewGuarded(ctx, opts.RootOfTrust, opts.RootOfTrust == RootOfTrustLocal, func(ctx context.Context) (seal.Sealer, error) {
		return op.loadRoot(ctx, currentRoot(op.opts), true)
	},
		func(ctx context.Context, s seal.Sealer) error {
			trial := (&keystore.Store{Reader: mgr.GetAPIReader(), Namespace: opts.Namespace, Previous: previous}).TrialUnseal
			return seal.VerifyRoot(ctx, mgr.GetClient(), mgr.GetAPIReader(), opts.Namespace, s, previous, trial)
		})
	// Its error is logged by the check itself and kept for readiness; each
	// change is an Event on the RootOfTrust, from every replica.
	op.replica, _ = os.Hostname()
	op.RootOfTrust.Notify(controllers.RootOfTrustEvents(mgr.GetEventRecorder("kubekms-root-of-trust"), mgr.GetAPIReader(), opts.Namespace, op.replica, opts.RootOfTrust))
	if op.Sealer, err = seal.Instrument(op.RootOfTrust, ctrlmetrics.Registry); err != nil {
		return nil, err
	}
	interval := cmp.Or(opts.RootCheckInterval, DefaultRootCheckInterval)
	if err := mgr.Add(everyReplica(func(ctx context.Context) error { op.RootOfTrust.Run(ctx, interval); return nil })); err != nil {
		return nil, err
	}
	op.Store = &keystore.Store{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: opts.Namespace, Sealer: op.Sealer}
	if op.Previous != nil {
		if op.Store.Previous, err = seal.Instrument(op.Previous, ctrlmetrics.Registry); err != nil {
			return nil, err
		}
		if err := mgr.Add(everyReplica(func(ctx context.Context) error { op.Previous.Run(ctx, interval); return nil })); err != nil {
			return nil, err
		}
	}
	if op.CA, err = certs.LoadOrCreateCA(ctx, mgr.GetClient(), mgr.GetAPIReader(), opts.Namespace, opts.Clock.Now()); err != nil {
		return nil, fmt.Errorf("certificate authority: %w", err)
	}
	webhookIssuer.CA = op.CA
	op.Keys = keycache.New(op.Store.LoadServing)
	if err := op.feedCaches(ctx); err != nil {
		return nil, err
	}

	if opts.Webhooks != nil {
		if err := op.addWebhooks(ctx); err != nil {
			return nil, err
		}
	}
	exporter := &recovery.Exporter{Reader: mgr.GetAPIReader(), Store: op.Store, Provider: opts.RootOfTrust}
	if b := opts.Backup; b.Dir != "" {
		if len(b.Recipients) == 0 {
			return nil, errors.New("scheduled backups (--backup-dir) need at least one --backup-recipient")
		}
		op.Backups = &recovery.Scheduler{Exporter: exporter, Cache: mgr.GetClient(), Recipients: b.Recipients, Dir: b.Dir,
			Interval: b.Interval, StaleAfter: b.StaleAfter, Check: b.Check, Keep: b.Keep, Clock: opts.Clock}
		if err := op.Backups.Register(ctrlmetrics.Registry); err != nil {
			return nil, err
		}
		if err := mgr.Add(op.Backups); err != nil {
			return nil, err
		}
	}
	if opts.Controllers != nil {
		if err := op.addControllers(); err != nil {
			return nil, fmt.Errorf("set up controllers: %w", err)
		}
	}
	if opts.DataPlane != nil {
		dp := *opts.DataPlane
		dp.Backup = &dataplane.Backup{Exporter: exporter, Recipients: opts.Backup.Recipients,
			Restorer: &recovery.Restorer{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Store: op.Store}}
		if op.DataPlane, err = op.AddDataPlane(ctx, dp); err != nil {
			return nil, fmt.Errorf("set up data plane: %w", err)
		}
	}
	return op, op.addHealthChecks()
}

// Start runs the manager until ctx ends.
func (op *Operator) Start(ctx context.Context) error { return op.Manager.Start(ctx) }

// feedCaches keeps the key cache and the access index in step with the Keys,
// KeyPolicies and KeyGrants informers, and counts the index as synced once
// both have received every object the informers started with: until then
// the admin webhook and the data plane refuse rather than decide blind.
func (op *Operator) feedCaches(ctx context.Context) error {
	var regs []toolscache.ResourceEventHandlerRegistration
	for _, h := range []struct {
		obj     client.Object
		handler toolscache.ResourceEventHandler
	}{
		{&kmsv1alpha1.Key{}, op.Keys.EventHandler()},
		{&kmsv1alpha1.KeyPolicy{}, op.Access.PolicyHandler()},
		{&kmsv1alpha1.KeyGrant{}, op.Access.GrantHandler()},
	} {
		inf, err := op.Manager.GetCache().GetInformer(ctx, h.obj)
		if err != nil {
			return fmt.Errorf("informer for %T: %w", h.obj, err)
		}
		reg, err := inf.AddEventHandler(h.handler)
		if err != nil {
			return err
		}
		regs = append(regs, reg)
	}
	op.Access.SetSynced(func() bool {
		for _, r := range regs {
			if !r.HasSynced() {
				return false
			}
		}
		return true
	})
	return nil
}

// addWebhooks registers the admin webhooks and, when asked, the pod
// injector. When the manager issues its own serving certificate, it also
// writes the operator's CA bundle into both webhook configurations.
func (op *Operator) addWebhooks(ctx context.Context) error {
	self, err := adminwebhook.WhoAmI(ctx, op.clientset)
	if err != nil {
		return err
	}
	adminwebhook.Setup(op.Manager, &adminwebhook.Validator{
		Access:     op.Access,
		Authorizer: op.Authorizer,
		Tombstones: op.Store.ByKeyID,
		Self:       self,
		Synced:     op.Access.Synced,
		Clock:      op.opts.Clock,
	})
	w := op.opts.Webhooks
	if w.Injector != nil {
		inj := *w.Injector
		if inj.SkipNamespaces == nil {
			inj.SkipNamespaces = []string{op.opts.Namespace, metav1.NamespaceSystem}
		}
		inject.Setup(op.Manager, inj)
	}
	if w.CertDir != "" {
		return nil
	}
	return op.Manager.Add(&adminwebhook.WebhookCABundleInjector{Client: op.Manager.GetClient(), Reader: op.Manager.GetAPIReader(), CAPEM: op.CA.CertPEM})
}

func (op *Operator) addControllers() error {
	c := op.opts.Controllers
	return controllers.Setup(op.Manager, controllers.Config{
		Store:                  op.Store,
		Clock:                  op.opts.Clock,
		Random:                 op.opts.Random,
		DeletionWindowOverride: c.DeletionWindowOverride,
		ImportPollInterval:     c.ImportPollInterval,
		KeyController:          controller.Options{MaxConcurrentReconciles: max(c.MaxConcurrentKeys, 1)},
		CAPEM:                  op.CA.CertPEM,
		RootOfTrust:            op.RootOfTrust,
		Namespace:              op.opts.Namespace,
		ReportedBy:             op.replica,
		RootRotator:            rootRotator{op},
		// Every replica reloads the root within a root check interval.
		RetireRootAfter: 3 * cmp.Or(op.opts.RootCheckInterval, DefaultRootCheckInterval),
		Backups:         op.backupReporter(),
	})
}

// backupReporter is the scheduler as the RootOfTrust reconciler sees it;
// nil (not a nil *Scheduler) without scheduled backups.
func (op *Operator) backupReporter() controllers.BackupReporter {
	if op.Backups == nil {
		return nil
	}
	return op.Backups
}

// AddDataPlane adds a data plane serving cfg to the manager, sharing the
// operator's store, key cache, access index and authorizer. New calls it for
// Options.DataPlane; the bench calls it again for variants side by side.
func (op *Operator) AddDataPlane(ctx context.Context, cfg dataplane.Config) (*grpc.Server, error) {
	cfg.Store, cfg.Keys, cfg.Access, cfg.Authorizer = op.Store, op.Keys, op.Access, op.Authorizer
	cfg.Namespace = op.opts.Namespace
	if cfg.Clock == nil {
		cfg.Clock = op.opts.Clock
	}
	if cfg.Registry == nil {
		cfg.Registry = ctrlmetrics.Registry
	}
	if cfg.TLS == nil {
		tlsConfig, err := op.ServingTLS()
		if err != nil {
			return nil, err
		}
		cfg.TLS = tlsConfig
	}
	return dataplane.Setup(ctx, op.Manager, cfg)
}

// ServingTLS is the data plane's TLS configuration: a certificate issued by
// the operator's CA for the configured names; nil when TLS is turned off.
func (op *Operator) ServingTLS() (*tls.Config, error) {
	s := op.opts.Serving
	if s.Insecure {
		ctrl.Log.Info("WARNING: the data plane serves without TLS; for local development only")
		return nil, nil
	}
	issuer := &certs.Issuer{CA: op.CA, Clock: op.opts.Clock, DNSNames: s.DNSNames, IPs: s.IPs}
	if len(issuer.DNSNames) == 0 {
		issuer.DNSNames = []string{"kubekms." + op.opts.Namespace + ".svc", "kubekms." + op.opts.Namespace + ".svc.cluster.local"}
	}
	return issuer.TLSConfig()
}

// addHealthChecks: alive once running; ready once the webhooks serve and
// every key, policy and grant has been read, since before that the
// webhooks and the data plane refuse.
func (op *Operator) addHealthChecks() error {
	if err := op.Manager.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := op.Manager.AddReadyzCheck("root-of-trust", op.RootOfTrust.Ready); err != nil {
		return err
	}
	if op.Previous != nil {
		if err := op.Manager.AddReadyzCheck("previous-root-of-trust", op.Previous.Ready); err != nil {
			return err
		}
	}
	if op.opts.Webhooks != nil {
		if err := op.Manager.AddReadyzCheck("webhook", op.Manager.GetWebhookServer().StartedChecker()); err != nil {
			return err
		}
	}
	return op.Manager.AddReadyzCheck("access", func(*http.Request) error {
		if !op.Access.Synced() {
			return errors.New("keys, key policies and grants not read yet")
		}
		return nil
	})
}

// orOff turns an empty address into "0", controller-runtime's "off".
func orOff(addr string) string {
	if addr == "" {
		return "0"
	}
	return addr
}

// DefaultRootCheckInterval is how often the root of trust is checked again.
const DefaultRootCheckInterval = 10 * time.Second

// rootSettings are a root of trust's provider and settings: the
// configured one's (current) or a migration's previous one's (previous).
type rootSettings struct {
	provider, keyPath, awsKeyID string
	pkcs11                      seal.PKCS11Config
}

func currentRoot(o Options) rootSettings {
	return rootSettings{provider: o.RootOfTrust, keyPath: o.RootKeyPath, awsKeyID: o.AWSKMSKeyID, pkcs11: o.PKCS11}
}

func previousRoot(o Options) rootSettings {
	return rootSettings{provider: o.PreviousRootOfTrust, keyPath: o.PreviousRootKeyPath, awsKeyID: o.PreviousAWSKMSKeyID, pkcs11: o.PreviousPKCS11}
}

// checkRootSettings refuses at once what no retry can fix: a provider's
// required setting missing, or pkcs11 in a build without it.
func checkRootSettings(r rootSettings) error {
	switch r.provider {
	case RootOfTrustFile:
		if r.keyPath == "" {
			return errors.New("set --root-key-path to the root key file or directory")
		}
	case RootOfTrustAWSKMS:
		if r.awsKeyID == "" {
			return errors.New("the awskms root of trust needs a key: set --aws-kms-key-id (a key ID, key ARN or alias/NAME)")
		}
	case RootOfTrustPKCS11:
		if !seal.PKCS11Available {
			_, err := seal.NewPKCS11(context.Background(), r.pkcs11)
			return err
		}
		return r.pkcs11.Validate()
	}
	return nil
}

// everyReplica is a Runnable that runs on every replica, not only on the
// elected leader.
type everyReplica func(context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }
func (everyReplica) NeedLeaderElection() bool          { return false }

// rootsOfTrust are the providers --root-of-trust accepts.
var rootsOfTrust = []string{RootOfTrustLocal, RootOfTrustFile, RootOfTrustAWSKMS, RootOfTrustPKCS11}

// loadRoot builds the sealer of a root of trust. Only the configured local
// root (mayCreate) may create a root key, once, and never while sealed
// material exists; a previous local root is only read; the others are
// given one and fail, naming what is missing, when it is not there.
func (op *Operator) loadRoot(ctx context.Context, r rootSettings, mayCreate bool) (seal.Sealer, error) {
	switch r.provider {
	case RootOfTrustFile:
		if r.keyPath == "" {
			return nil, errors.New("set --root-key-path to the root key file or directory")
		}
		s, err := seal.LoadFile(r.keyPath)
		if err != nil {
			return nil, err
		}
		return s, nil
	case RootOfTrustAWSKMS:
		s, err := seal.NewAWSKMS(ctx, r.awsKeyID)
		if err != nil {
			return nil, err
		}
		return s, nil
	case RootOfTrustPKCS11:
		s, err := seal.NewPKCS11(ctx, r.pkcs11)
		if err != nil {
			return nil, err
		}
		return s, nil
	default:
		if !mayCreate || op.rootLoaded.Load() {
			// Once used, a root key is only ever re-read, never replaced.
			s, err := seal.LoadLocal(ctx, op.Manager.GetAPIReader(), op.opts.Namespace)
			if err != nil {
				return nil, err
			}
			return s, nil
		}
		s, err := seal.LoadOrCreateLocal(ctx, op.Manager.GetClient(), op.Manager.GetAPIReader(), op.opts.Namespace, op.opts.Random)
		if err != nil {
			return nil, err
		}
		op.rootLoaded.Store(true)
		return s, nil
	}
}
