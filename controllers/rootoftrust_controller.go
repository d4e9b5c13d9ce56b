package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/recovery"
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
	// Rotator, when set, answers spec.rotationRequest; the old root key
	// versions are retired RetireAfter after a rotation at the earliest.
	Rotator     RootRotator
	RetireAfter time.Duration
	Clock       clock.PassiveClock
	Recorder    events.EventRecorder
	// Backups, when set, reports scheduled backups: the BackedUp
	// condition and status.lastBackupTime.
	Backups BackupReporter
}

// BackupReporter is the state of scheduled backups (recovery.Scheduler).
type BackupReporter interface {
	Report(now time.Time) recovery.Report
	// StaleAt is when the last backup becomes stale (zero before the first).
	StaleAt() time.Time
	// Notify registers a function called after every backup attempt.
	Notify(func())
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
	var result ctrl.Result
	var rotateErr error
	if r.Rotator != nil && r.Root.Err() == nil {
		result, rotateErr = r.rotate(ctx, rot, before)
	}
	if r.Backups != nil {
		r.reportBackups(rot, &result)
	}
	if equality.Semantic.DeepEqual(before.Status, rot.Status) {
		return result, rotateErr
	}
	if err := r.Client.Status().Patch(ctx, rot, client.MergeFrom(before)); err != nil {
		return ctrl.Result{}, errors.Join(rotateErr, err)
	}
	return result, rotateErr
}

// reportBackups writes the BackedUp condition and lastBackupTime, and asks
// to run again when the last backup turns stale.
func (r *RootOfTrustReconciler) reportBackups(rot *kmsv1alpha1.RootOfTrust, result *ctrl.Result) {
	now := r.Clock.Now()
	rep := r.Backups.Report(now)
	cond := metav1.Condition{Type: kmsv1alpha1.RootOfTrustConditionBackedUp, ObservedGeneration: rot.Generation,
		Status: metav1.ConditionTrue, Reason: kmsv1alpha1.RootOfTrustReasonBackupCurrent}
	rot.Status.LastBackupTime, rot.Status.LastBackupFile, rot.Status.LastBackupSHA256 = nil, rep.File, rep.SHA256
	if !rep.Last.IsZero() {
		rot.Status.LastBackupTime = &metav1.Time{Time: rep.Last.Truncate(time.Second)}
	}
	switch {
	case rep.Err != nil:
		cond.Status, cond.Reason = metav1.ConditionFalse, kmsv1alpha1.RootOfTrustReasonBackupFailed
		cond.Message = limit("The last scheduled backup failed: "+rep.Err.Error(), 1024)
	case rep.Last.IsZero():
		cond.Status, cond.Reason = metav1.ConditionFalse, kmsv1alpha1.RootOfTrustReasonBackupStale
		cond.Message = "No scheduled backup has been written yet"
	case rep.Stale:
		cond.Status, cond.Reason = metav1.ConditionFalse, kmsv1alpha1.RootOfTrustReasonBackupStale
		cond.Message = fmt.Sprintf("The last scheduled backup (%s) was written at %s: too long ago", rep.File, rep.Last.UTC().Format(time.RFC3339))
	default:
		cond.Message = fmt.Sprintf("Backup %s written at %s", rep.File, rep.Last.UTC().Format(time.RFC3339))
	}
	meta.SetStatusCondition(&rot.Status.Conditions, cond)
	if at := r.Backups.StaleAt(); !at.IsZero() && at.After(now) {
		if wait := at.Sub(now) + time.Second; result.RequeueAfter == 0 || wait < result.RequeueAfter {
			result.RequeueAfter = wait
		}
	}
}

// resealBatch is how many sealed Secrets one reconcile reseals before it
// writes its progress and goes on.
const resealBatch = 200

// rotate answers a new spec.rotationRequest with a new root key version,
// reseals a batch of sealed Secrets under the current version, writes the
// progress into rot's status, and retires the old versions once nothing is
// sealed under them and RetireAfter has passed since the rotation. Every
// step is resumable: after a crash the next reconcile goes on from what
// the Secrets say.
func (r *RootOfTrustReconciler) rotate(ctx context.Context, rot, before *kmsv1alpha1.RootOfTrust) (ctrl.Result, error) {
	if req := rot.Spec.RotationRequest; req != "" && req != rot.Status.ObservedRotationRequest {
		version, rotated, err := r.Rotator.Rotate(ctx, req)
		switch {
		case errors.Is(err, ErrRotationUnsupported):
			rot.Status.ObservedRotationRequest = req
			meta.SetStatusCondition(&rot.Status.Conditions, metav1.Condition{Type: kmsv1alpha1.RootOfTrustConditionResealed, Status: metav1.ConditionFalse,
				Reason: kmsv1alpha1.RootOfTrustReasonRotationUnsupported, Message: limit(err.Error(), 4096), ObservedGeneration: rot.Generation})
			r.Recorder.Eventf(rot, nil, corev1.EventTypeWarning, ReasonRotationUnsupported, StepRotateRootKey, "%s", limit(err.Error(), 1000))
			return ctrl.Result{}, nil
		case err != nil:
			return ctrl.Result{}, err
		}
		rot.Status.ObservedRotationRequest = req
		if rotated {
			r.Recorder.Eventf(rot, nil, corev1.EventTypeNormal, ReasonRootKeyRotated, StepRotateRootKey,
				"root key version %d made for rotation request %q; every sealed Secret is resealed under it in the background", version, limit(req, 253))
		}
	}
	state, err := r.Rotator.Versions(ctx)
	if errors.Is(err, ErrRotationUnsupported) {
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	p, err := r.Rotator.Reseal(ctx, resealBatch)
	if err != nil {
		return ctrl.Result{}, err
	}
	resealPending.Set(float64(p.Pending))
	rot.Status.RootKeyVersion = int32(state.Current)
	rot.Status.SealedSecrets, rot.Status.ResealPending = int32(p.Total), int32(p.Pending)
	var result ctrl.Result
	under := fmt.Sprintf("root key version %d", state.Current)
	if state.Current == 0 {
		under = "the " + r.Root.Provider() + " root of trust"
	}
	cond := metav1.Condition{Type: kmsv1alpha1.RootOfTrustConditionResealed, Status: metav1.ConditionTrue, Reason: kmsv1alpha1.RootOfTrustReasonResealed,
		Message: fmt.Sprintf("all %d sealed Secrets are sealed under %s", p.Total, under), ObservedGeneration: rot.Generation}
	if previous := r.Rotator.Migrating(); previous != "" {
		// Counted again every resealRetry while the migration lasts: a
		// replica still on the previous root (a rollout, a second leader)
		// may seal under it after this count.
		result.RequeueAfter = resealRetry
		if previous == seal.LocalProvider {
			cond.Message += fmt.Sprintf("; nothing needs the previous root of trust %s any more: remove --previous-root-of-trust "+
				"(chart: rootOfTrust.previousProvider), then keep a backup of its root key Secret and delete it", previous)
		} else {
			cond.Message += fmt.Sprintf("; nothing needs the previous root of trust %s any more: remove --previous-root-of-trust "+
				"and the --previous-* flags, then retire that root (its key files, AWS KMS key or HSM key): Secrets it sealed still hold its blobs in their data", previous)
		}
	}
	switch {
	case len(p.Failed) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, kmsv1alpha1.RootOfTrustReasonResealFailed
		cond.Message = limit(fmt.Sprintf("%d of %d sealed Secrets are not sealed under %s yet, and the old root is kept; these could not be resealed: %s",
			p.Pending, p.Total, under, strings.Join(p.Failed, "; ")), 4096)
		result.RequeueAfter = resealRetry
	case p.Pending > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, kmsv1alpha1.RootOfTrustReasonResealing
		cond.Message = fmt.Sprintf("%d of %d sealed Secrets resealed under %s, %d to go", p.Total-p.Pending, p.Total, under, p.Pending)
		if p.Resealed > 0 {
			// After, not rate-limited: a long reseal is many rounds.
			result.RequeueAfter = time.Millisecond
		} else {
			result.RequeueAfter = resealRetry // only conflicts: they settle
		}
	}
	old := meta.FindStatusCondition(before.Status.Conditions, kmsv1alpha1.RootOfTrustConditionResealed)
	switch {
	case cond.Reason == kmsv1alpha1.RootOfTrustReasonResealed && (p.Resealed > 0 || old != nil && old.Reason != cond.Reason):
		// A reseal finished: in this round, or in rounds before.
		r.Recorder.Eventf(rot, nil, corev1.EventTypeNormal, ReasonResealed, StepReseal, "%s", cond.Message)
	case cond.Reason == kmsv1alpha1.RootOfTrustReasonResealFailed && (old == nil || old.Reason != cond.Reason):
		r.Recorder.Eventf(rot, nil, corev1.EventTypeWarning, ReasonResealFailed, StepReseal, "%s", limit(cond.Message, 1000))
	}
	meta.SetStatusCondition(&rot.Status.Conditions, cond)
	rot.Status.RootKeyVersions = int32(len(state.Versions))
	if p.Pending > 0 || len(state.Versions) < 2 {
		return result, nil
	}
	// Every replica reloads the root within a root check interval; one
	// that has not may still seal under an old version, so the old
	// versions are kept for RetireAfter after the rotation.
	if wait := state.RotatedAt.Add(r.RetireAfter).Sub(r.Clock.Now()); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	retired, err := r.Rotator.Retire(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	if len(retired) > 0 {
		rot.Status.RootKeyVersions = 1
		r.Recorder.Eventf(rot, nil, corev1.EventTypeNormal, ReasonRootKeyRetired, StepRetireRootKey,
			"root key versions %v retired: nothing is sealed under them; every sealed Secret is sealed under version %d", retired, state.Current)
	}
	return ctrl.Result{}, nil
}

// resealPending is the reseal's progress as a metric.
var resealPending = func() prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "kubekms_root_reseal_pending",
		Help: "Sealed Secrets not yet sealed under the current root key version, as the leader last counted (0 when no reseal is under way)."})
	ctrlmetrics.Registry.MustRegister(g)
	return g
}()

// resealRetry is how long a reseal that made no progress waits.
const resealRetry = 30 * time.Second

// ErrRotationUnsupported is what a RootRotator returns for a root of trust
// whose root key versions kubekms does not make.
var ErrRotationUnsupported = errors.New("root key rotation is not supported by this root of trust")

// RootRotator rotates the root key and reseals under it; the operator
// implements it over the keystore and the root of trust.
type RootRotator interface {
	// Rotate answers request with a new root key version, once per value:
	// it reports the current version and whether this call made it.
	Rotate(ctx context.Context, request string) (version uint32, rotated bool, err error)
	// Versions describes the root key versions held (none for a root of
	// trust without versions, in a migration).
	Versions(ctx context.Context) (seal.LocalRoot, error)
	// Migrating names the root of trust a migration moves away from, or "".
	Migrating() string
	// Reseal reseals up to limit sealed Secrets under the current version.
	Reseal(ctx context.Context, limit int) (keystore.ResealProgress, error)
	// Retire removes every version but the current one, once it has made
	// sure again that nothing is sealed under them; it reports those
	// removed.
	Retire(ctx context.Context) ([]uint32, error)
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
	if r.Backups != nil {
		r.Backups.Notify(poke)
	}
	ours := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == r.Namespace && o.GetName() == kmsv1alpha1.RootOfTrustName
	})
	// Edits but those of the spec are not answered: two managers that both lead (or one of
	// another root) would otherwise overwrite each other's view in a loop.
	// A deleted object is recreated; the status is written when this
	// replica's view changes and at every resync (an update event with no
	// new resourceVersion), which also undoes a status someone else wrote.
	notUpdates := predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetResourceVersion() == e.ObjectNew.GetResourceVersion() ||
			e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() // a new rotation request
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
