package dataplane

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/authn"
	"github.com/kubekms/kubekms/internal/authz"
	"github.com/kubekms/kubekms/internal/keyring"
	"github.com/kubekms/kubekms/internal/keystore"
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
	// Authn and Authz tune the caches; zero values take the defaults.
	Authn authn.Options
	Authz authz.Options
	// Listening, if set, receives the bound address once serving.
	Listening chan<- net.Addr
}

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Setup adds the data plane to the manager: a keyring kept in step with
// the Keys informer, and the gRPC server on every replica.
func Setup(ctx context.Context, mgr ctrl.Manager, cfg Config) (*grpc.Server, error) {
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return nil, err
	}
	keys := keyring.New(cfg.Store.Load)
	inf, err := mgr.GetCache().GetInformer(ctx, &kmsv1alpha1.Key{})
	if err != nil {
		return nil, fmt.Errorf("keys informer: %w", err)
	}
	if _, err := inf.AddEventHandler(keys.EventHandler()); err != nil {
		return nil, err
	}
	metrics, err := NewMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("data plane metrics: %w", err)
	}
	srv := NewGRPCServer(&Server{
		Keys:       keys,
		Authorizer: authz.New(cs.AuthorizationV1().SubjectAccessReviews(), cfg.Authz),
		Random:     rand.Reader,
	}, Options{
		TLS:           cfg.TLS,
		Authenticator: authn.New(cs.AuthenticationV1().TokenReviews(), cfg.Authn),
		Metrics:       metrics,
	})
	if err := mgr.Add(&Runnable{Addr: cfg.Addr, Server: srv, Listening: cfg.Listening}); err != nil {
		return nil, err
	}
	return srv, nil
}
