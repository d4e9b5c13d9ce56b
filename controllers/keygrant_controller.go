package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
)

// KeyGrantReconciler keeps each KeyGrant's state: Active, Expired at
// expiresAt, or Invalid when its key or grantee does not exist.
type KeyGrantReconciler struct {
	client.Client
	// Reader reads ServiceAccounts uncached (the manager does not cache them).
	Reader   client.Reader
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
}

// keygrants: read them and report their state.
// +kubebuilder:rbac:groups=kms.kubekms.io,resources=keygrants,verbs=get;list;watch
// +kubebuilder:rbac:groups=kms.kubekms.io,resources=keygrants/status,verbs=get;patch
// serviceaccounts: bind a grant to its grantee's UID.
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get

// granteeRecheck is how often an Invalid grant looks for its grantee again.
const granteeRecheck = 30 * time.Second

// Reconcile computes one KeyGrant's state.
func (r *KeyGrantReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	g := &kmsv1alpha1.KeyGrant{}
	if err := r.Get(ctx, req.NamespacedName, g); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	now := r.Clock.Now()
	state, reason, msg := kmsv1alpha1.KeyGrantActive, kmsv1alpha1.KeyGrantReasonActive, "Grant is active"
	uid := g.Status.GranteeUID
	if g.Status.ObservedGeneration != g.Generation {
		// A changed grant (an admin act: CreateGrant) binds to the
		// grantee that exists now.
		uid = ""
	}
	result := ctrl.Result{}

	key := &kmsv1alpha1.Key{}
	err := r.Get(ctx, types.NamespacedName{Namespace: g.Namespace, Name: g.Spec.KeyRef.Name}, key)
	keyUID, bound := access.BoundKey(g.OwnerReferences, g.Spec.KeyRef.Name)
	switch {
	case err != nil && !apierrors.IsNotFound(err):
		return ctrl.Result{}, err
	case apierrors.IsNotFound(err) || !bound || key.UID != keyUID:
		state, reason, msg = kmsv1alpha1.KeyGrantInvalid, kmsv1alpha1.KeyGrantReasonKeyNotFound,
			fmt.Sprintf("The Key %s this grant was created for no longer exists in namespace %s; a grant never applies to a later Key of the same name", g.Spec.KeyRef.Name, g.Namespace)
	case g.Spec.ExpiresAt != nil && !now.Before(g.Spec.ExpiresAt.Time):
		state, reason, msg = kmsv1alpha1.KeyGrantExpired, kmsv1alpha1.KeyGrantReasonExpired,
			fmt.Sprintf("Grant expired at %s", g.Spec.ExpiresAt.UTC().Format(time.RFC3339))
	case g.Spec.Grantee.ServiceAccount != "":
		ns, name, _ := strings.Cut(g.Spec.Grantee.ServiceAccount, "/")
		sa := &corev1.ServiceAccount{}
		err := r.Reader.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, sa)
		switch {
		case apierrors.IsNotFound(err):
			state, reason, msg = kmsv1alpha1.KeyGrantInvalid, kmsv1alpha1.KeyGrantReasonGranteeNotFound,
				fmt.Sprintf("ServiceAccount %s does not exist", g.Spec.Grantee.ServiceAccount)
			result.RequeueAfter = granteeRecheck
		case err != nil:
			return ctrl.Result{}, err
		case uid != "" && string(sa.UID) != uid:
			state, reason, msg = kmsv1alpha1.KeyGrantInvalid, kmsv1alpha1.KeyGrantReasonGranteeNotFound,
				fmt.Sprintf("ServiceAccount %s was deleted and re-created; a grant is not inherited: create a new grant", g.Spec.Grantee.ServiceAccount)
		default:
			uid = string(sa.UID)
		}
	}
	if state == kmsv1alpha1.KeyGrantActive && g.Spec.ExpiresAt != nil {
		result.RequeueAfter = g.Spec.ExpiresAt.Sub(now)
	}

	if g.Status.State != state {
		typ := corev1.EventTypeNormal
		if state != kmsv1alpha1.KeyGrantActive {
			typ = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(g, nil, typ, "Grant"+string(state), "Evaluate", msg)
	}
	orig := g.DeepCopy()
	g.Status.State, g.Status.GranteeUID, g.Status.ObservedGeneration = state, uid, g.Generation
	status := metav1.ConditionTrue
	if state != kmsv1alpha1.KeyGrantActive {
		status = metav1.ConditionFalse
	}
	meta.SetStatusCondition(&g.Status.Conditions, metav1.Condition{Type: kmsv1alpha1.KeyGrantConditionActive, Status: status, Reason: reason, Message: msg, ObservedGeneration: g.Generation})
	if err := r.Status().Patch(ctx, g, client.MergeFrom(orig)); err != nil {
		return ctrl.Result{}, err
	}
	return result, nil
}

// SetupWithManager re-evaluates a namespace's grants when a Key there changes.
func (r *KeyGrantReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&kmsv1alpha1.KeyGrant{}).
		Watches(&kmsv1alpha1.Key{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, obj client.Object) []reconcile.Request {
			list := &kmsv1alpha1.KeyGrantList{}
			if err := r.List(ctx, list, client.InNamespace(obj.GetNamespace())); err != nil {
				return nil
			}
			var out []reconcile.Request
			for _, g := range list.Items {
				if g.Spec.KeyRef.Name == obj.GetName() {
					out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&g)})
				}
			}
			return out
		})).
		Named("keygrant").
		Complete(r)
}
