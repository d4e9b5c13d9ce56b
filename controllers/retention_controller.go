package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubekms/kubekms/internal/keystore"
)

// RetentionReconciler destroys the material of deleted keys once their
// deletion window has passed. It is the only place material is deleted.
type RetentionReconciler struct {
	client.Client
	Store    *keystore.Store
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
}

// Reconcile destroys one tombstoned version when its time has come, or
// requeues for that time.
func (r *RetentionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	secret := &corev1.Secret{}
	if err := r.Get(ctx, req.NamespacedName, secret); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	v, err := keystore.FromSecret(secret)
	if err != nil {
		return ctrl.Result{}, reconcile.TerminalError(err)
	}
	if !v.Tombstone {
		return ctrl.Result{}, nil
	}
	if now := r.Clock.Now(); now.Before(v.DestroyAfter) {
		return ctrl.Result{RequeueAfter: v.DestroyAfter.Sub(now)}, nil
	}
	if err := r.Store.Destroy(ctx, v); err != nil {
		return ctrl.Result{}, err
	}
	r.Recorder.Eventf(secret, nil, corev1.EventTypeNormal, ReasonDestroyed, StepDestroyMaterial,
		"Destroyed key %s version %d (deleted from %s/%s) after its deletion window", v.KeyID, v.Version, v.KeyNamespace, v.KeyName)
	return ctrl.Result{}, nil
}

// SetupWithManager registers the reconciler for tombstoned material Secrets.
func (r *RetentionReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	isTombstone := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetLabels()[keystore.LabelTombstone] == "true"
	})
	if r.Store == nil {
		return fmt.Errorf("retention controller needs a key store")
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&corev1.Secret{}, builder.WithPredicates(isTombstone)).
		WithOptions(opts).
		Named("retention").
		Complete(r)
}
