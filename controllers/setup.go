package controllers

import (
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	"github.com/kubekms/kubekms/internal/certs"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/seal"
)

// Config is what the controllers share.
type Config struct {
	Store  *keystore.Store
	Clock  clock.PassiveClock
	Random io.Reader
	// DeletionWindowOverride: see KeyReconciler. Tests and development only.
	DeletionWindowOverride time.Duration
	// ImportPollInterval: see KeyReconciler.
	ImportPollInterval time.Duration
	// KeyController and RetentionController tune the two controllers.
	KeyController, RetentionController controller.Options
	// CAPEM, when set, is published to every namespace (CABundleReconciler).
	CAPEM []byte
}

// Setup registers every kubekms controller with the manager.
func Setup(mgr ctrl.Manager, cfg Config) error {
	if err := (&KeyReconciler{
		Client:                 mgr.GetClient(),
		Reader:                 mgr.GetAPIReader(),
		Store:                  cfg.Store,
		Recorder:               mgr.GetEventRecorder("kubekms-key-controller"),
		Clock:                  cfg.Clock,
		Random:                 cfg.Random,
		DeletionWindowOverride: cfg.DeletionWindowOverride,
		ImportPollInterval:     cfg.ImportPollInterval,
	}).SetupWithManager(mgr, cfg.KeyController); err != nil {
		return err
	}
	if err := (&RetentionReconciler{
		Client:   mgr.GetClient(),
		Store:    cfg.Store,
		Recorder: mgr.GetEventRecorder("kubekms-retention-controller"),
		Clock:    cfg.Clock,
	}).SetupWithManager(mgr, cfg.RetentionController); err != nil {
		return err
	}
	if err := (&KeyPolicyReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("kubekms-keypolicy-controller")}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&KeyGrantReconciler{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("kubekms-keygrant-controller"), Clock: cfg.Clock}).SetupWithManager(mgr); err != nil {
		return err
	}
	if len(cfg.CAPEM) == 0 {
		return nil
	}
	return (&CABundleReconciler{Client: mgr.GetClient(), CAPEM: cfg.CAPEM}).SetupWithManager(mgr)
}

// CacheOptions limits the manager's Secret cache to the Secrets kubekms
// writes in its own namespace (it never caches the cluster's Secrets), its
// ConfigMap cache to the published CA bundles, and its EndpointSlice cache
// to its own namespace.
func CacheOptions(namespace string) cache.Options {
	own := labels.SelectorFromSet(labels.Set{seal.ManagedByLabel: seal.ManagedByValue})
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Secret{}:    {Namespaces: map[string]cache.Config{namespace: {}}, Label: own},
		&corev1.ConfigMap{}: {Field: fields.OneTermEqualSelector("metadata.name", certs.CAConfigMapName)},
		// The data plane counts its replicas from its Service's endpoints.
		&discoveryv1.EndpointSlice{}: {Namespaces: map[string]cache.Config{namespace: {}}},
	}}
}
