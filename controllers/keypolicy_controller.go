package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
)

// KeyPolicyReconciler reports which KeyPolicy governs each Key, as the
// access index decides it (access.Governing): the oldest policy bound to
// the Key (by its UID) wins.
type KeyPolicyReconciler struct {
	client.Client
	Recorder events.EventRecorder
}

// keypolicies: read them and report Accepted in their status.
// +kubebuilder:rbac:groups=kms.kubekms.io,resources=keypolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=kms.kubekms.io,resources=keypolicies/status,verbs=get;patch

// Reconcile computes one KeyPolicy's Accepted condition.
func (r *KeyPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pol := &kmsv1alpha1.KeyPolicy{}
	if err := r.Get(ctx, req.NamespacedName, pol); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	cond := metav1.Condition{Type: kmsv1alpha1.KeyPolicyConditionAccepted, Status: metav1.ConditionTrue,
		Reason: kmsv1alpha1.KeyPolicyReasonAccepted, Message: fmt.Sprintf("Governs key %s", pol.Spec.KeyRef.Name), ObservedGeneration: pol.Generation}
	key := &kmsv1alpha1.Key{}
	err := r.Get(ctx, types.NamespacedName{Namespace: pol.Namespace, Name: pol.Spec.KeyRef.Name}, key)
	uid, bound := access.BoundKey(pol.OwnerReferences, pol.Spec.KeyRef.Name)
	switch {
	case err != nil && !apierrors.IsNotFound(err):
		return ctrl.Result{}, err
	case apierrors.IsNotFound(err) || !bound || key.UID != uid:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, kmsv1alpha1.KeyPolicyReasonKeyNotFound,
			fmt.Sprintf("The Key %s this policy was created for no longer exists in namespace %s; a policy never governs a later Key of the same name", pol.Spec.KeyRef.Name, pol.Namespace)
	default:
		list := &kmsv1alpha1.KeyPolicyList{}
		if err := r.List(ctx, list, client.InNamespace(pol.Namespace)); err != nil {
			return ctrl.Result{}, err
		}
		if winner := access.Governing(list.Items, pol.Namespace, key.UID); winner != nil && winner.Name != pol.Name {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, kmsv1alpha1.KeyPolicyReasonDuplicate,
				fmt.Sprintf("KeyPolicy %s already governs key %s; a key has at most one policy", winner.Name, pol.Spec.KeyRef.Name)
		}
	}
	before := meta.FindStatusCondition(pol.Status.Conditions, kmsv1alpha1.KeyPolicyConditionAccepted)
	if before == nil || before.Status != cond.Status || before.Reason != cond.Reason {
		typ, reason := corev1.EventTypeNormal, "PolicyAccepted"
		if cond.Status != metav1.ConditionTrue {
			typ, reason = corev1.EventTypeWarning, "PolicyRejected"
		}
		r.Recorder.Eventf(pol, nil, typ, reason, "Evaluate", cond.Message)
	}
	orig := pol.DeepCopy()
	meta.SetStatusCondition(&pol.Status.Conditions, cond)
	pol.Status.ObservedGeneration = pol.Generation
	return ctrl.Result{}, r.Status().Patch(ctx, pol, client.MergeFrom(orig))
}

// SetupWithManager re-evaluates a namespace's policies when a Key or
// another policy there changes.
func (r *KeyPolicyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&kmsv1alpha1.KeyPolicy{}).
		Watches(&kmsv1alpha1.Key{}, handler.EnqueueRequestsFromMapFunc(r.policiesInNamespace)).
		Watches(&kmsv1alpha1.KeyPolicy{}, handler.EnqueueRequestsFromMapFunc(r.policiesInNamespace)).
		Named("keypolicy").
		Complete(r)
}

func (r *KeyPolicyReconciler) policiesInNamespace(ctx context.Context, obj client.Object) []reconcile.Request {
	list := &kmsv1alpha1.KeyPolicyList{}
	if err := r.List(ctx, list, client.InNamespace(obj.GetNamespace())); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, p := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&p)})
	}
	return out
}
