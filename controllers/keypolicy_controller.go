package controllers

import (
	"context"
	"fmt"
	"slices"

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
)

// KeyPolicyReconciler decides which KeyPolicy governs each Key: it must
// name an existing Key, and of several for one Key the oldest wins.
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
	err := r.Get(ctx, types.NamespacedName{Namespace: pol.Namespace, Name: pol.Spec.KeyRef.Name}, &kmsv1alpha1.Key{})
	switch {
	case apierrors.IsNotFound(err):
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, kmsv1alpha1.KeyPolicyReasonKeyNotFound,
			fmt.Sprintf("Key %s does not exist in namespace %s", pol.Spec.KeyRef.Name, pol.Namespace)
	case err != nil:
		return ctrl.Result{}, err
	default:
		if winner, err := r.governing(ctx, pol.Namespace, pol.Spec.KeyRef.Name); err != nil {
			return ctrl.Result{}, err
		} else if winner != pol.Name {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, kmsv1alpha1.KeyPolicyReasonDuplicate,
				fmt.Sprintf("KeyPolicy %s already governs key %s; a key has at most one policy", winner, pol.Spec.KeyRef.Name)
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

// governing is the oldest KeyPolicy naming the key (ties: by name).
func (r *KeyPolicyReconciler) governing(ctx context.Context, namespace, key string) (string, error) {
	list := &kmsv1alpha1.KeyPolicyList{}
	if err := r.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return "", err
	}
	items := slices.DeleteFunc(list.Items, func(p kmsv1alpha1.KeyPolicy) bool {
		return p.Spec.KeyRef.Name != key || !p.DeletionTimestamp.IsZero()
	})
	if len(items) == 0 {
		return "", nil
	}
	oldest := slices.MinFunc(items, func(a, b kmsv1alpha1.KeyPolicy) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return compareStrings(a.Name, b.Name)
	})
	return oldest.Name, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
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
