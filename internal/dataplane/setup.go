package dataplane

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/audit"
	"github.com/kubekms/kubekms/internal/authn"
	"github.com/kubekms/kubekms/internal/authz"
	"github.com/kubekms/kubekms/internal/keycache"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/quota"
)

// Config is what the data plane needs from the manager.
type Config struct {
	// Addr to listen on, e.g. ":50051".
	Addr string
	// TLS for the server; nil serves plaintext (local development only).
	TLS   *tls.Config
	Store *keystore.Store
	// Registry receives the data-plane metrics (the manager's registry).
	Registry prometheus.Registerer
	// Authn tunes the token cache; zero values take the defaults.
	Authn authn.Options
	// Listening, if set, receives the bound address once serving.
	Listening chan<- net.Addr

	// Quota throttles callers (nil: no quotas). QuotaFile, when set, is
	// watched and reloaded every QuotaReload (default 5s).
	Quota       *quota.Limiter
	QuotaFile   string
	QuotaReload time.Duration
	// Namespace and Service name the Service whose ready endpoints count
	// the replicas sharing the quota (each enforces limit / replicas).
	Namespace, Service string

	// Audit receives one record per call (nil: none); AuditFailClosed
	// refuses calls whose record cannot be written.
	Audit           audit.Sink
	AuditFailClosed bool
	// UsageInterval is how often use is summarised as Events and
	// status.lastUsed (default 1m; negative turns it off).
	UsageInterval time.Duration
	// Keys (the key cache), Access (the policy and grant index, counted as
	// synced once the key cache is too) and Authorizer are shared with the
	// admin webhook and any other data plane of the process: internal/operator
	// builds and feeds them.
	Keys       *keycache.Cache
	Access     *access.Index
	Authorizer *authz.Authorizer
	// Backup, when set, also serves the BackupService.
	Backup *Backup
	// Clock gives each call its time, which decides expiry (grants,
	// imported material, import parameters) and is the audit record's
	// eventTime; nil is the real clock. Authn.Clock is the token cache's.
	Clock clock.PassiveClock
}

// tokenreviews: authenticate every caller's token.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// subjectaccessreviews: the default key policy asks RBAC.
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
// endpointslices, only in the operator's namespace: count the ready replicas
// that share each quota.
// +kubebuilder:rbac:groups=discovery.k8s.io,namespace=kubekms-system,resources=endpointslices,verbs=get;list;watch

// Setup adds the data plane to the manager: the gRPC server on every
// replica, quota bookkeeping and use summaries.
func Setup(ctx context.Context, mgr ctrl.Manager, cfg Config) (*grpc.Server, error) {
	if cfg.Store == nil || cfg.Keys == nil || cfg.Access == nil || cfg.Authorizer == nil {
		return nil, errors.New("data plane: Store, Keys, Access and Authorizer are required (internal/operator fills them)")
	}
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return nil, err
	}
	metrics, err := NewMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("data plane metrics: %w", err)
	}
	if w, ok := cfg.Audit.(*audit.WriterSink); ok {
		w.ObserveBatches(func(n int) { metrics.AuditBatch.Observe(float64(n)) })
	}
	if err := setupQuota(ctx, mgr, cfg); err != nil {
		return nil, err
	}
	var usage *audit.Usage
	if cfg.UsageInterval >= 0 {
		usage = &audit.Usage{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("kubekms-dataplane"), Interval: cmp.Or(cfg.UsageInterval, time.Minute)}
		if err := mgr.Add(usage); err != nil {
			return nil, err
		}
	}
	if cfg.Backup != nil && (cfg.Backup.Exporter == nil || cfg.Backup.Restorer == nil) {
		return nil, errBackupMisconfigured
	}
	authenticator := authn.New(cs.AuthenticationV1().TokenReviews(), cfg.Authn)
	srv := NewGRPCServer(&Server{
		Keys:       cfg.Keys,
		Authorizer: cfg.Authorizer,
		Access:     cfg.Access,
		ServiceAccountUID: func(ctx context.Context, namespace, name string) (string, error) {
			sa := &corev1.ServiceAccount{}
			err := mgr.GetAPIReader().Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, sa)
			return string(sa.UID), err
		},
		ImportParameters: cfg.Store.ImportParameters,
		Random:           rand.Reader,
	}, Options{
		TLS:             cfg.TLS,
		Authenticator:   authenticator,
		Metrics:         metrics,
		Quota:           cfg.Quota,
		Audit:           cfg.Audit,
		AuditFailClosed: cfg.AuditFailClosed,
		Usage:           usage,
		Clock:           cfg.Clock,
	})
	if cfg.Backup != nil {
		kmsv1.RegisterBackupServiceServer(srv, &backupServer{
			cfg: *cfg.Backup, namespace: cfg.Namespace, authn: authenticator, authorizer: cfg.Authorizer,
			audit: cfg.Audit, failClose: cfg.AuditFailClosed, clock: cmp.Or[clock.PassiveClock](cfg.Clock, clock.RealClock{}),
		})
	}
	if err := mgr.Add(&Runnable{Addr: cfg.Addr, Server: srv, Listening: cfg.Listening, Synced: cfg.Access.Synced}); err != nil {
		return nil, err
	}
	return srv, nil
}

// setupQuota loads and watches the quota file, counts the replicas from the
// Service's ready endpoints, and exports the buckets' levels.
func setupQuota(ctx context.Context, mgr ctrl.Manager, cfg Config) error {
	if cfg.Quota == nil {
		return nil
	}
	if cfg.QuotaFile != "" {
		w := &quota.FileWatcher{Path: cfg.QuotaFile, Interval: cmp.Or(cfg.QuotaReload, 5*time.Second), Limiter: cfg.Quota}
		if err := w.Load(); err != nil {
			return err
		}
		if err := mgr.Add(w); err != nil {
			return err
		}
	}
	if err := cfg.Registry.Register(levels{cfg.Quota}); err != nil {
		return err
	}
	if cfg.Service == "" {
		return nil
	}
	inf, err := mgr.GetCache().GetInformer(ctx, &discoveryv1.EndpointSlice{})
	if err != nil {
		return fmt.Errorf("endpointslices informer: %w", err)
	}
	recount := func() {
		list := &discoveryv1.EndpointSliceList{}
		if err := mgr.GetClient().List(ctx, list, client.InNamespace(cfg.Namespace),
			client.MatchingLabels{discoveryv1.LabelServiceName: cfg.Service}); err != nil {
			return
		}
		cfg.Quota.SetReplicas(readyEndpoints(list.Items))
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { recount() },
		UpdateFunc: func(any, any) { recount() },
		DeleteFunc: func(any) { recount() },
	})
	return err
}

// readyEndpoints counts the distinct ready endpoints across slices.
func readyEndpoints(slices []discoveryv1.EndpointSlice) int {
	seen := map[string]bool{}
	for _, s := range slices {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			if len(e.Addresses) > 0 {
				seen[e.Addresses[0]] = true
			}
		}
	}
	return len(seen)
}

// levels exports the tokens left in each quota bucket.
type levels struct{ l *quota.Limiter }

var levelsDesc = prometheus.NewDesc("kubekms_quota_tokens", "Tokens left in a quota bucket (this replica).",
	[]string{"namespace", "class", "operation"}, nil)

func (levels) Describe(ch chan<- *prometheus.Desc) { ch <- levelsDesc }

func (c levels) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.l.Levels() {
		ch <- prometheus.MustNewConstMetric(levelsDesc, prometheus.GaugeValue, l.Tokens, l.Namespace, l.Class, l.Operation)
	}
}
