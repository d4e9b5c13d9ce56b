package controllers

import (
	"bytes"
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/certs"
)

// CABundlePublisher publishes the data plane's CA certificate to every
// namespace as the ConfigMap kubekms-ca.crt (key ca.crt), the way
// kube-root-ca.crt is published, so sidecars and clients can trust it.
// (adminwebhook.WebhookCABundleInjector is another job: it sets the
// caBundle of kubekms's own webhook configurations.)
type CABundlePublisher struct {
	client.Client
	CAPEM []byte
}

// namespaces: to publish the CA bundle into each one.
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// configmaps, cluster-wide: create and update kubekms-ca.crt in every
// namespace (RBAC cannot limit create by name); the cache holds only that name.
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update

// Reconcile ensures one namespace's ConfigMap holds the CA bundle.
func (r *CABundlePublisher) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ns := &corev1.Namespace{}
	if err := r.Get(ctx, types.NamespacedName{Name: req.Name}, ns); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ns.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	cm := &corev1.ConfigMap{}
	err := r.Get(ctx, types.NamespacedName{Namespace: req.Name, Name: certs.CAConfigMapName}, cm)
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: req.Name, Name: certs.CAConfigMapName,
				Labels: map[string]string{kmsv1alpha1.ManagedByLabel: kmsv1alpha1.ManagedByValue}},
			Data: map[string]string{certs.CAConfigMapKey: string(r.CAPEM)},
		}
		err = r.Create(ctx, cm)
		if apierrors.IsAlreadyExists(err) || apierrors.IsForbidden(err) { // namespace terminating
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if bytes.Equal([]byte(cm.Data[certs.CAConfigMapKey]), r.CAPEM) {
		return ctrl.Result{}, nil
	}
	cm = cm.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[certs.CAConfigMapKey] = string(r.CAPEM)
	return ctrl.Result{}, r.Update(ctx, cm)
}

// SetupWithManager watches namespaces and the published ConfigMaps.
func (r *CABundlePublisher) SetupWithManager(mgr ctrl.Manager) error {
	isBundle := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetName() == certs.CAConfigMapName })
	return ctrl.NewControllerManagedBy(mgr).
		For(&corev1.Namespace{}, builder.WithPredicates(predicate.ResourceVersionChangedPredicate{})).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetNamespace()}}}
		}), builder.WithPredicates(isBundle)).
		Named("cabundle").
		Complete(r)
}
