package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/seal"
)

// +kubebuilder:rbac:groups=kms.kubekms.io,namespace=kubekms-system,resources=rootoftrusts,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=kms.kubekms.io,namespace=kubekms-system,resources=rootoftrusts/status,verbs=get;patch

// RootState is the root of trust as one replica holds it (seal.Guarded).
type RootState interface {
	Provider() string
	// Err is nil when the last check passed.
	Err() error
	// Notify registers a function called with each new outcome.
	Notify(func(error))
}

// RootOfTrustReconciler keeps the RootOfTrust of the operator's namespace:
// it creates it when it is missing (it is never deleted for good) and
// writes, from the leader's own check, its provider and Ready condition
// with what to restore. Objects of other names or namespaces are ignored.
type RootOfTrustReconciler struct {
	Client    client.Client
	Namespace string
	Root      RootState
	// ReportedBy names this replica in the status.
	ReportedBy string
}

// Reconcile implements reconcile.Reconciler.
func (r *RootOfTrustReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if req.Namespace != r.Namespace || req.Name != kmsv1alpha1.RootOfTrustName {
		return ctrl.Result{}, nil
	}
	rot := &kmsv1alpha1.RootOfTrust{}
	err := r.Client.Get(ctx, req.NamespacedName, rot)
	if apierrors.IsNotFound(err) {
		rot = &kmsv1alpha1.RootOfTrust{ObjectMeta: metav1.ObjectMeta{Namespace: req.Namespace, Name: req.Name,
			Labels: map[string]string{kmsv1alpha1.ManagedByLabel: kmsv1alpha1.ManagedByValue}}}
		if err := r.Client.Create(ctx, rot); err != nil {
			return ctrl.Result{}, fmt.Errorf("create RootOfTrust %s: %w", req.NamespacedName, err)
		}
	} else if err != nil {
		return ctrl.Result{}, err
	}
	before := rot.DeepCopy()
	rot.Status.Provider = r.Root.Provider()
	rot.Status.ReportedBy = r.ReportedBy
	meta.SetStatusCondition(&rot.Status.Conditions, rootCondition(r.Root.Provider(), r.Root.Err(), rot.Generation))
	if equality.Semantic.DeepEqual(before.Status, rot.Status) {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.Client.Status().Patch(ctx, rot, client.MergeFrom(before))
}

// rootCondition is the Ready condition for a check's outcome.
func rootCondition(provider string, err error, generation int64) metav1.Condition {
	c := metav1.Condition{Type: kmsv1alpha1.RootOfTrustConditionReady, Status: metav1.ConditionTrue, Reason: kmsv1alpha1.RootOfTrustReasonReady,
		Message: "the " + provider + " root of trust unseals the sealed material of this namespace", ObservedGeneration: generation}
	if err != nil {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, rootReason(err), limit(err.Error(), 4096)
	}
	return c
}

func rootReason(err error) string {
	if errors.Is(err, seal.ErrWrongRoot) {
		return kmsv1alpha1.RootOfTrustReasonWrongRoot
	}
	return kmsv1alpha1.RootOfTrustReasonUnavailable
}

// limit cuts s to at most n bytes, on a rune boundary.
func limit(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

// SetupWithManager reconciles the RootOfTrust when it is deleted and
// whenever the root's state changes; once at start, too.
func (r *RootOfTrustReconciler) SetupWithManager(mgr ctrl.Manager) error {
	changes := make(chan event.TypedGenericEvent[*kmsv1alpha1.RootOfTrust], 1)
	poke := func() {
		select {
		case changes <- event.TypedGenericEvent[*kmsv1alpha1.RootOfTrust]{Object: &kmsv1alpha1.RootOfTrust{
			ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: kmsv1alpha1.RootOfTrustName}}}:
		default: // one is pending already; it reads the state when it runs
		}
	}
	poke()
	r.Root.Notify(func(error) { poke() })
	ours := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == r.Namespace && o.GetName() == kmsv1alpha1.RootOfTrustName
	})
	// Edits are not answered: two managers that both lead (or one of
	// another root) would otherwise overwrite each other's view in a loop.
	// A deleted object is recreated; the status is written when this
	// replica's view changes and at every resync (an update event with no
	// new resourceVersion), which also undoes a status someone else wrote.
	notUpdates := predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetResourceVersion() == e.ObjectNew.GetResourceVersion()
	}}
	return ctrl.NewControllerManagedBy(mgr).
		For(&kmsv1alpha1.RootOfTrust{}, builder.WithPredicates(ours, notUpdates)).
		WatchesRawSource(source.Channel(changes, &handler.TypedEnqueueRequestForObject[*kmsv1alpha1.RootOfTrust]{})).
		Named("rootoftrust").
		Complete(r)
}

// RootOfTrustEvents records an Event on the namespace's RootOfTrust for
// each new outcome of this replica's root check: what to restore when the
// root goes away, and that it is back.
func RootOfTrustEvents(recorder events.EventRecorder, reader client.Reader, namespace, replica, provider string) func(error) {
	return func(err error) {
		regarding := &kmsv1alpha1.RootOfTrust{}
		// Its UID, when it exists, so that kubectl describe shows the Event.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: kmsv1alpha1.RootOfTrustName}, regarding) != nil {
			regarding.ObjectMeta = metav1.ObjectMeta{Namespace: namespace, Name: kmsv1alpha1.RootOfTrustName}
		}
		cancel()
		regarding.TypeMeta = metav1.TypeMeta{APIVersion: kmsv1alpha1.GroupVersion.String(), Kind: "RootOfTrust"}
		if err == nil {
			recorder.Eventf(regarding, nil, corev1.EventTypeNormal, ReasonRootOfTrustReady, StepCheckRootOfTrust,
				"replica %s: the %s root of trust is ready again", replica, provider)
			return
		}
		// An Event's note is at most 1 KiB.
		recorder.Eventf(regarding, nil, corev1.EventTypeWarning, rootEventReason(err), StepCheckRootOfTrust, "%s",
			limit(fmt.Sprintf("replica %s is not ready and seals nothing new: %v", replica, err), 1000))
	}
}

func rootEventReason(err error) string {
	if errors.Is(err, seal.ErrWrongRoot) {
		return ReasonWrongRootOfTrust
	}
	return ReasonRootOfTrustUnavailable
}
