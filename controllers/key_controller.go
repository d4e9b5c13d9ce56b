// Package controllers holds one reconciler per kubekms kind, plus the
// retention controller that destroys material after its deletion window.
package controllers

import (
	"context"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keyspec"
	"github.com/kubekms/kubekms/internal/keystore"
)

// newMaterial makes a version's material for keySpec from the key-spec
// table (internal/keyspec): random bytes of the key size for symmetric and
// HMAC specs, a PKCS#8 private key and its public key for RSA and ECC specs.
func newMaterial(keySpec kmsv1alpha1.KeySpecType, random io.Reader) (material, public []byte, err error) {
	spec, ok := keyspec.Lookup(string(keySpec))
	if !ok {
		return nil, nil, fmt.Errorf("no material for keySpec %s", keySpec)
	}
	if material, err = spec.Generate(random); err != nil {
		return nil, nil, err
	}
	public, err = spec.PublicKey(material)
	return material, public, err
}

// supportedKeySpec says whether this release makes material of keySpec:
// every spec in the key-spec table.
func supportedKeySpec(keySpec kmsv1alpha1.KeySpecType) bool {
	_, ok := keyspec.Lookup(string(keySpec))
	return ok
}

// KeyReconciler makes, rotates and retires the material of Keys.
type KeyReconciler struct {
	client.Client
	// Reader reads import Secrets; it must not be a cache (the manager
	// caches no Secret outside its namespace).
	Reader   client.Reader
	Store    *keystore.Store
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
	Random   io.Reader
	// DeletionWindowOverride, when not zero, replaces every Key's deletion
	// window. For tests and local development only.
	DeletionWindowOverride time.Duration
	// ImportPollInterval is how often a named import Secret is looked at
	// (default DefaultImportPollInterval).
	ImportPollInterval time.Duration
}

// RBAC, each rule justified (docs/install.md has the whole list):
// keys: watch them all; patch to add and remove the finalizer and to close
// a finished import request (spec.import.secretRef).
// +kubebuilder:rbac:groups=kms.kubekms.io,resources=keys,verbs=get;list;watch;patch
// keypolicies: a restored key gets back the policy it had when deleted.
// +kubebuilder:rbac:groups=kms.kubekms.io,resources=keypolicies,verbs=create
// keys/status: the controller and the data plane (lastUsed) patch status.
// +kubebuilder:rbac:groups=kms.kubekms.io,resources=keys/status,verbs=get;patch
// keys/finalizers: setting a finalizer needs it where OwnerReferencesPermissionEnforcement is on.
// +kubebuilder:rbac:groups=kms.kubekms.io,resources=keys/finalizers,verbs=update
// events: lifecycle and usage Events on Keys and material Secrets.
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// secrets in other namespaces: none here. Importing material (origin:
// External) needs get and delete on the import Secret, granted per namespace
// by binding the ClusterRole kubekms-key-import (config/rbac/kms_roles.yaml).
// secrets, only in the operator's namespace: the root key, the CA and one
// Secret per key version (create), tombstones (patch), destruction after the
// window (delete). Never Secrets of other namespaces.
// +kubebuilder:rbac:groups="",namespace=kubekms-system,resources=secrets,verbs=get;list;watch;create;patch;delete

// Reconcile brings a Key's material and status in line with its spec, in
// phases a reader can follow: observe (read only) → check the spec →
// restore → guard lost material → generate or import → rotate → record the
// policy → compute status → one status patch. Status is computed from what
// this run saw and did, never remembered from an earlier run.
func (r *KeyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := &kmsv1alpha1.Key{}
	if err := r.Get(ctx, req.NamespacedName, key); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !key.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, key)
	}
	if err := r.ensureFinalizer(ctx, key); err != nil {
		return ctrl.Result{}, err
	}

	seen, err := r.observe(ctx, key)
	if err != nil {
		return ctrl.Result{}, err
	}
	s := newKeyScope(key, seen)
	phases := []keyPhase{
		r.checkSpec,         // terminal: a keySpec this release cannot make
		r.reconcileRestore,  // spec.restoreFrom: tombstones and their policy come back
		r.guardMaterial,     // terminal: material status counted is gone
		r.reconcileGenerate, // Generated keys: version 1
		r.reconcileImport,   // External keys: import parameters, spec.import
		r.reconcileRotation, // Generated keys: on-demand and scheduled rotation
		r.recordPolicy,      // the governing policy's record on every live version
	}
	for _, phase := range phases {
		if s.terminal != nil {
			break
		}
		if err := phase(ctx, s); err != nil {
			return ctrl.Result{}, err
		}
	}

	status := computeStatus(key, s)
	r.eventTransitions(key, status, s)
	if err := r.patchStatus(ctx, key, status); err != nil {
		return ctrl.Result{}, err
	}
	return s.result(r.Clock.Now())
}

// ensureFinalizer adds the finalizer that keeps a Key until its material is
// tombstoned.
func (r *KeyReconciler) ensureFinalizer(ctx context.Context, key *kmsv1alpha1.Key) error {
	if controllerutil.ContainsFinalizer(key, kmsv1alpha1.KeyFinalizer) {
		return nil
	}
	orig := key.DeepCopy()
	controllerutil.AddFinalizer(key, kmsv1alpha1.KeyFinalizer)
	if err := r.Patch(ctx, key, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("add finalizer: %w", err)
	}
	return nil
}

// eventTransitions emits the Events of status transitions: Enabled ↔
// Disabled, and a new import failure or expiry (the Imported condition).
func (r *KeyReconciler) eventTransitions(key *kmsv1alpha1.Key, status kmsv1alpha1.KeyStatus, s *keyScope) {
	if reason, note, ok := stateEvent(key.Status.State, status.State); ok {
		r.Recorder.Eventf(key, nil, corev1.EventTypeNormal, reason, StepChangeState, note)
	}
	c := meta.FindStatusCondition(status.Conditions, kmsv1alpha1.KeyConditionImported)
	if c == nil {
		return
	}
	if reason, note, ok := importEvent(key.Status.Conditions, *c); ok {
		// Related to the Secret (its UID and resourceVersion): the recorder
		// folds Events of one object, reason and related object into a
		// series that keeps the first note.
		var related runtime.Object
		if s.imported != nil && s.imported.secret != nil {
			related = s.imported.secret
		}
		r.Recorder.Eventf(key, related, corev1.EventTypeWarning, reason, StepImportMaterial, note)
	}
}

// patchStatus writes status in one patch, when it changed.
func (r *KeyReconciler) patchStatus(ctx context.Context, key *kmsv1alpha1.Key, status kmsv1alpha1.KeyStatus) error {
	if equality.Semantic.DeepEqual(key.Status, status) {
		return nil
	}
	orig := key.DeepCopy()
	key.Status = status
	if err := r.Status().Patch(ctx, key, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("update status: %w", err)
	}
	return nil
}

// durationOr is d, or def when d is unset (the API server defaults it, but
// an object written before a default existed may lack it).
func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil || d.Duration <= 0 {
		return def
	}
	return d.Duration
}

// SetupWithManager registers the reconciler; it also watches the material
// Secrets (the manager caches only its own) so changes to them are seen.
func (r *KeyReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&kmsv1alpha1.Key{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(keyForMaterial)).
		Watches(&kmsv1alpha1.KeyPolicy{}, handler.EnqueueRequestsFromMapFunc(keyForPolicy)).
		WithOptions(opts).
		Named("key").
		Complete(r)
}

func keyForMaterial(_ context.Context, obj client.Object) []reconcile.Request {
	l := obj.GetLabels()
	if l[keystore.LabelKeyName] == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: l[keystore.LabelKeyNamespace], Name: l[keystore.LabelKeyName]}}}
}

// keyForPolicy wakes the Key a KeyPolicy names, to keep its policy record current.
func keyForPolicy(_ context.Context, obj client.Object) []reconcile.Request {
	p, ok := obj.(*kmsv1alpha1.KeyPolicy)
	if !ok {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Spec.KeyRef.Name}}}
}
