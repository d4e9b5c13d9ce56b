package controllers

import (
	"io"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	"github.com/kubekms/kubekms/internal/keystore"
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
	// CAPEM, when set, is published to every namespace (CABundlePublisher).
	CAPEM []byte
	// RootOfTrust, when set, is reported in the RootOfTrust of Namespace
	// (RootOfTrustReconciler), as seen by the replica named ReportedBy.
	RootOfTrust RootState
	Namespace   string
	ReportedBy  string
	// RootRotator, when set, answers the RootOfTrust's rotation requests
	// (RootOfTrustReconciler.Rotator); RetireRootAfter is its grace.
	RootRotator     RootRotator
	RetireRootAfter time.Duration
	// Backups, when set, reports scheduled backups on the RootOfTrust.
	Backups BackupReporter
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
	if cfg.RootOfTrust != nil {
		if err := (&RootOfTrustReconciler{Client: mgr.GetClient(), Namespace: cfg.Namespace, Root: cfg.RootOfTrust, ReportedBy: cfg.ReportedBy,
			Rotator: cfg.RootRotator, RetireAfter: cfg.RetireRootAfter, Clock: cfg.Clock, Recorder: mgr.GetEventRecorder("kubekms-root-of-trust"),
			Backups: cfg.Backups}).SetupWithManager(mgr); err != nil {
			return err
		}
	}
	if len(cfg.CAPEM) == 0 {
		return nil
	}
	return (&CABundlePublisher{Client: mgr.GetClient(), CAPEM: cfg.CAPEM}).SetupWithManager(mgr)
}
