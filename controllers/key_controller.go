// Package controllers holds one reconciler per kubekms kind, plus the
// retention controller that destroys material after its deletion window.
package controllers

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/crypto"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/rotation"
)

// newMaterial makes a version's material for a key spec this release
// supports: 32 random bytes for SYMMETRIC_DEFAULT, the HMAC key size for
// HMAC_*, a PKCS#8 private key (and its public key) for RSA and ECC specs.
func newMaterial(keySpec kmsv1alpha1.KeySpecType, random io.Reader) (material, public []byte, err error) {
	size := 0
	switch {
	case keySpec == kmsv1alpha1.KeySpecSymmetricDefault:
		size = crypto.VersionKeySize
	default:
		if s, ok := crypto.HMACSpec(string(keySpec)); ok {
			size = s.KeySize
		} else if a, ok := crypto.Asymmetric(string(keySpec)); ok {
			return a.GenerateKeyPair(random)
		} else {
			return nil, nil, fmt.Errorf("no material for keySpec %s", keySpec)
		}
	}
	material = make([]byte, size)
	_, err = io.ReadFull(random, material)
	return material, nil, err
}

// supportedKeySpec says whether this release makes material of keySpec.
func supportedKeySpec(keySpec kmsv1alpha1.KeySpecType) bool {
	_, hmacOK := crypto.HMACSpec(string(keySpec))
	_, asymOK := crypto.Asymmetric(string(keySpec))
	return keySpec == kmsv1alpha1.KeySpecSymmetricDefault || hmacOK || asymOK
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
// by binding the ClusterRole kubekms-key-import (config/rbac/key_import_role.yaml).
// secrets, only in the operator's namespace: the root key, the CA and one
// Secret per key version (create), tombstones (patch), destruction after the
// window (delete). Never Secrets of other namespaces.
// +kubebuilder:rbac:groups="",namespace=kubekms-system,resources=secrets,verbs=get;list;watch;create;patch;delete

// Reconcile brings a Key's material and status in line with its spec.
func (r *KeyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := &kmsv1alpha1.Key{}
	if err := r.Get(ctx, req.NamespacedName, key); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !key.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, key)
	}
	if !controllerutil.ContainsFinalizer(key, kmsv1alpha1.KeyFinalizer) {
		orig := key.DeepCopy()
		controllerutil.AddFinalizer(key, kmsv1alpha1.KeyFinalizer)
		if err := r.Patch(ctx, key, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
		}
	}

	obs, err := r.observe(ctx, key)
	if err != nil {
		return ctrl.Result{}, err
	}
	if obs.blocked == nil {
		if err := r.ensureVersions(ctx, key, &obs); err != nil {
			return ctrl.Result{}, err
		}
		if err := r.recordPolicy(ctx, key, obs.versions); err != nil {
			return ctrl.Result{}, err
		}
	}

	status := computeStatus(key, obs)
	if reason, note, ok := stateEvent(key.Status.State, status.State); ok {
		r.Recorder.Eventf(key, nil, corev1.EventTypeNormal, reason, ActionChangeState, note)
	}
	if c := meta.FindStatusCondition(status.Conditions, kmsv1alpha1.KeyConditionImported); c != nil {
		if reason, note, ok := importEvent(key.Status.Conditions, *c); ok {
			// Related to the Secret (its UID and resourceVersion): the
			// recorder folds Events of one object, reason and related object
			// into a series that keeps the first note.
			var related runtime.Object
			if obs.importSecret != nil {
				related = obs.importSecret
			}
			r.Recorder.Eventf(key, related, corev1.EventTypeWarning, reason, ActionImport, note)
		}
	}
	if err := r.patchStatus(ctx, key, status); err != nil {
		return ctrl.Result{}, err
	}
	if obs.blocked != nil {
		return ctrl.Result{}, reconcile.TerminalError(fmt.Errorf("%s: %s", obs.blocked.reason, obs.blocked.message))
	}
	obs.wakeAt(obs.nextRotation)
	if !obs.wake.IsZero() {
		return ctrl.Result{RequeueAfter: max(obs.wake.Sub(r.Clock.Now()), time.Second)}, nil
	}
	return ctrl.Result{}, nil
}

// observe finds the key's identity and its stored versions. The key ID is
// never taken from status: it is the ID of the live material labelled for
// this Key, else the ID named by restoreFrom, else the Key's UID (so two
// managers creating the same Key agree on it).
func (r *KeyReconciler) observe(ctx context.Context, key *kmsv1alpha1.Key) (observed, error) {
	if b := unsupported(key); b != nil {
		return observed{keyID: key.Status.KeyID, blocked: b}, nil
	}
	active, err := r.Store.ActiveByKeyName(ctx, key.Namespace, key.Name)
	if err != nil {
		return observed{}, err
	}
	obs := observed{keyID: string(key.UID), versions: active}
	if len(active) > 0 {
		obs.keyID = active[0].KeyID
		if i := slices.IndexFunc(active, func(v keystore.Version) bool { return v.KeyID != obs.keyID }); i >= 0 {
			return observed{}, fmt.Errorf("material of two key IDs (%s, %s) is labelled for this Key", obs.keyID, active[i].KeyID)
		}
	} else if key.Spec.RestoreFrom != "" {
		obs.keyID = key.Spec.RestoreFrom
	}
	if key.Spec.RestoreFrom == obs.keyID {
		if err := r.restore(ctx, key, &obs); err != nil {
			return observed{}, err
		}
	}
	if len(obs.versions) == 0 && obs.blocked == nil && key.Status.CurrentVersion > 0 {
		// The one place status is trusted: as a latch. New material under a
		// key ID that had versions would make every old ciphertext undecryptable.
		obs.blocked = &blocker{kmsv1alpha1.KeyReasonMaterialMissing, fmt.Sprintf(
			"The sealed material of key %s (version %d and older) is missing from namespace %s; restore its Secrets from a backup. No new material is made under this key ID",
			key.Status.KeyID, key.Status.CurrentVersion, r.Store.Namespace)}
		obs.keyID = key.Status.KeyID
		r.Recorder.Eventf(key, nil, corev1.EventTypeWarning, ReasonMaterialMissing, ActionValidate, obs.blocked.message)
	}
	return obs, nil
}

// restore takes back the tombstoned versions of the key named by
// restoreFrom. Only versions deleted from this namespace, still inside their
// window, can be restored; a partial restore is finished by the next run.
func (r *KeyReconciler) restore(ctx context.Context, key *kmsv1alpha1.Key, obs *observed) error {
	all, err := r.Store.ByKeyID(ctx, obs.keyID)
	if err != nil {
		return err
	}
	now := r.Clock.Now()
	var pending []keystore.Version
	for _, v := range all {
		if v.Tombstone && v.KeyNamespace == key.Namespace && now.Before(v.DestroyAfter) {
			pending = append(pending, v)
		}
	}
	if len(obs.versions) == 0 && len(pending) == 0 {
		obs.blocked = &blocker{kmsv1alpha1.KeyReasonRestoreSourceNotFound,
			fmt.Sprintf("No key with keyID %s was deleted from namespace %s within its deletion window", obs.keyID, key.Namespace)}
		r.Recorder.Eventf(key, nil, corev1.EventTypeWarning, ReasonRestoreFailed, ActionRestore, obs.blocked.message)
		obs.keyID = "" // a refused restore publishes no keyID
		return nil
	}
	for _, v := range pending {
		if v.KeySpec != string(key.Spec.KeySpec) {
			obs.blocked = &blocker{kmsv1alpha1.KeyReasonRestoreKeySpecMismatch,
				fmt.Sprintf("Deleted key %s has keySpec %s, this Key asks for %s", obs.keyID, v.KeySpec, key.Spec.KeySpec)}
			r.Recorder.Eventf(key, nil, corev1.EventTypeWarning, ReasonRestoreFailed, ActionRestore, obs.blocked.message)
			if len(obs.versions) == 0 {
				obs.keyID = ""
			}
			return nil
		}
	}
	if len(pending) == 0 {
		return nil
	}
	// The key comes back under the policy it had, before its material does.
	if err := r.restorePolicy(ctx, key, access.ParseDeletedPolicy(pending[0].DeletedPolicy)); err != nil {
		return err
	}
	for _, v := range pending {
		if err := r.Store.Restore(ctx, v, key.Namespace, key.Name); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	if obs.versions, err = r.Store.ActiveByKeyName(ctx, key.Namespace, key.Name); err != nil {
		return err
	}
	r.Recorder.Eventf(key, nil, corev1.EventTypeNormal, ReasonRestored, ActionRestore,
		"Restored key %s with %d versions", obs.keyID, len(obs.versions))
	return nil
}

// governingPolicy is the policy governing key now: its KeyPolicy, else its
// spec.initialPolicy (nil: the default policy).
func (r *KeyReconciler) governingPolicy(ctx context.Context, key *kmsv1alpha1.Key) (*kmsv1alpha1.KeyPolicy, error) {
	policies := &kmsv1alpha1.KeyPolicyList{}
	if err := r.List(ctx, policies, client.InNamespace(key.Namespace)); err != nil {
		return nil, err
	}
	if p := access.Governing(policies.Items, key.Namespace, key.UID); p != nil {
		return p, nil
	}
	return access.InitialKeyPolicy(key), nil
}

// recordPolicy keeps the record of the key's policy on its live versions
// current, so a deletion finds it even when the KeyPolicy went first. While
// the key's namespace is being deleted the record is not touched: its
// policies are deleted before it, and that is no change of policy.
func (r *KeyReconciler) recordPolicy(ctx context.Context, key *kmsv1alpha1.Key, versions []keystore.Version) error {
	if len(versions) == 0 {
		return nil
	}
	ns := &corev1.Namespace{}
	if err := r.Get(ctx, types.NamespacedName{Name: key.Namespace}, ns); err != nil || !ns.DeletionTimestamp.IsZero() {
		return client.IgnoreNotFound(err)
	}
	pol, err := r.governingPolicy(ctx, key)
	if err != nil {
		return err
	}
	record := access.RecordPolicy(pol)
	for _, v := range versions {
		if v.DeletedPolicy != record {
			if err := r.Store.RecordPolicy(ctx, v, record); err != nil {
				return fmt.Errorf("record the key's policy: %w", err)
			}
		}
	}
	return nil
}

// restorePolicy re-creates the KeyPolicy a restored key had when it was
// deleted, bound to the restored Key. A KeyPolicy of that name bound to this
// Key means it is done; one bound to something else keeps its name and the
// restored policy gets a generated one.
func (r *KeyReconciler) restorePolicy(ctx context.Context, key *kmsv1alpha1.Key, rec access.DeletedPolicy) error {
	if rec.Spec == nil {
		return nil
	}
	existing := &kmsv1alpha1.KeyPolicyList{}
	if err := r.List(ctx, existing, client.InNamespace(key.Namespace)); err != nil {
		return err
	}
	for _, p := range existing.Items {
		if uid, ok := access.BoundKey(p.OwnerReferences, p.Spec.KeyRef.Name); ok && uid == key.UID && p.Annotations[kmsv1alpha1.RestoredPolicyAnnotation] == key.Spec.RestoreFrom {
			return nil
		}
	}
	pol := &kmsv1alpha1.KeyPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: rec.Name,
			Annotations:     map[string]string{kmsv1alpha1.RestoredPolicyAnnotation: key.Spec.RestoreFrom},
			OwnerReferences: []metav1.OwnerReference{access.KeyOwnerReference(key)}},
		Spec: *rec.Spec,
	}
	pol.Spec.KeyRef.Name = key.Name
	err := r.Create(ctx, pol)
	if apierrors.IsAlreadyExists(err) {
		pol.Name, pol.GenerateName, pol.ResourceVersion = "", rec.Name+"-", ""
		err = r.Create(ctx, pol)
	}
	if err != nil {
		return fmt.Errorf("restore KeyPolicy %s: %w", rec.Name, err)
	}
	r.Recorder.Eventf(key, nil, corev1.EventTypeNormal, ReasonRestored, ActionRestore,
		"Restored KeyPolicy %s, which governed key %s when it was deleted", pol.Name, key.Spec.RestoreFrom)
	return nil
}

// ensureVersions makes version 1 if there is none, then the one rotation
// that is due, if any. Each version is a create of a deterministically named
// Secret, so racing writers make it once; a lost race is retried after a
// fresh read.
func (r *KeyReconciler) ensureVersions(ctx context.Context, key *kmsv1alpha1.Key, obs *observed) error {
	owner := keystore.Owner{Namespace: key.Namespace, Name: key.Name, KeyID: obs.keyID, KeySpec: string(key.Spec.KeySpec)}
	if key.Spec.Origin == kmsv1alpha1.KeyOriginExternal {
		// Imported keys get versions only by import, never from rotation.
		return r.reconcileImport(ctx, key, obs)
	}
	request := key.Annotations[kmsv1alpha1.RotateAnnotation]
	now := r.Clock.Now()

	if len(obs.versions) == 0 {
		// A rotate value present at creation is not a request to rotate.
		created, err := r.createVersion(ctx, owner, 1, now, request)
		if err != nil {
			return err
		}
		if created {
			r.Recorder.Eventf(key, nil, corev1.EventTypeNormal, ReasonCreated, ActionCreateMaterial, "Created key %s version 1", obs.keyID)
		}
		if obs.versions, err = r.Store.ActiveByKeyName(ctx, key.Namespace, key.Name); err != nil {
			return err
		}
		if len(obs.versions) == 0 {
			return fmt.Errorf("version 1 of key %s is not readable yet", obs.keyID)
		}
	}

	in := rotation.Input{
		RotateRequest:   request,
		KeyEnabled:      key.Spec.State != kmsv1alpha1.KeyDesiredDisabled,
		ScheduleEnabled: key.Spec.Rotation.Enabled,
		Period:          durationOr(key.Spec.Rotation.Period, 8760*time.Hour),
		Now:             now,
	}
	for _, v := range obs.versions {
		in.Versions = append(in.Versions, rotation.Version{Number: v.Version, CreatedAt: v.CreatedAt, RotateRequest: v.RotateRequest})
	}
	decision := rotation.Decide(in)
	obs.nextRotation = decision.NextRotation
	if decision.Reason == rotation.None {
		return nil
	}
	stamp := ""
	if decision.Reason == rotation.OnDemand {
		stamp = request
	}
	created, err := r.createVersion(ctx, owner, decision.NextVersion, now, stamp)
	if err != nil {
		return err
	}
	if !created {
		return fmt.Errorf("version %d of key %s was made concurrently; deciding again", decision.NextVersion, obs.keyID)
	}
	r.Recorder.Eventf(key, nil, corev1.EventTypeNormal, ReasonRotated, ActionRotate,
		"Rotated key %s to version %d (%s)", obs.keyID, decision.NextVersion, decision.Reason)
	obs.versions, err = r.Store.ActiveByKeyName(ctx, key.Namespace, key.Name)
	return err
}

func (r *KeyReconciler) createVersion(ctx context.Context, owner keystore.Owner, version int32, now time.Time, request string) (bool, error) {
	material, public, err := newMaterial(kmsv1alpha1.KeySpecType(owner.KeySpec), r.Random)
	defer clear(material)
	if err != nil {
		return false, fmt.Errorf("generate material: %w", err)
	}
	return r.Store.Create(ctx, owner, version, material, public, now, request)
}

// reconcileDelete moves the key's material to tombstones kept for the
// deletion window, then lets the Key go. It needs nothing but the API
// server, so deleting a namespace never hangs on it.
func (r *KeyReconciler) reconcileDelete(ctx context.Context, key *kmsv1alpha1.Key) error {
	if !controllerutil.ContainsFinalizer(key, kmsv1alpha1.KeyFinalizer) {
		return nil
	}
	active, err := r.Store.ActiveByKeyName(ctx, key.Namespace, key.Name)
	if err != nil {
		return err
	}
	window := r.DeletionWindowOverride
	if window == 0 {
		window = durationOr(key.Spec.DeletionWindow, 720*time.Hour)
	}
	destroyAfter := r.Clock.Now().Add(window)
	record := ""
	if len(active) > 0 {
		// The policy goes with the Key (garbage collector); a restore is
		// checked under, and comes back under, this record of it. A policy
		// already gone (its namespace is being deleted) leaves the record
		// the versions carry.
		policies := &kmsv1alpha1.KeyPolicyList{}
		if err := r.List(ctx, policies, client.InNamespace(key.Namespace)); err != nil {
			return err
		}
		record = active[len(active)-1].DeletedPolicy
		if bound := access.Governing(policies.Items, key.Namespace, key.UID); bound != nil {
			record = access.RecordPolicy(bound)
		} else if record == "" {
			record = access.RecordPolicy(access.InitialKeyPolicy(key))
		}
	}
	for _, v := range active {
		if err := r.Store.Tombstone(ctx, v, destroyAfter, record); err != nil {
			return fmt.Errorf("schedule deletion: %w", err)
		}
	}
	if len(active) > 0 {
		r.Recorder.Eventf(key, nil, corev1.EventTypeNormal, ReasonDeletionScheduled, ActionScheduleDelete,
			"Scheduled destruction of key %s (%d versions) at %s; a Key with spec.restoreFrom: %s restores it until then",
			active[0].KeyID, len(active), destroyAfter.UTC().Format(time.RFC3339), active[0].KeyID)
	}
	if key.Spec.Origin == kmsv1alpha1.KeyOriginExternal && key.Status.KeyID != "" {
		// The wrapping key is not material: nothing to keep for a restore.
		p, err := r.Store.ImportParameters(ctx, key.Status.KeyID)
		if err != nil {
			return err
		}
		if p != nil {
			if err := r.Store.DeleteImportParameters(ctx, p); err != nil {
				return err
			}
		}
	}
	orig := key.DeepCopy()
	controllerutil.RemoveFinalizer(key, kmsv1alpha1.KeyFinalizer)
	if err := r.Patch(ctx, key, client.MergeFrom(orig)); err != nil {
		return client.IgnoreNotFound(err)
	}
	return nil
}

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

// unsupported says why this release cannot make the key's material, if so.
func unsupported(key *kmsv1alpha1.Key) *blocker {
	if !supportedKeySpec(key.Spec.KeySpec) {
		return &blocker{kmsv1alpha1.KeyReasonUnsupportedKeySpec, fmt.Sprintf("keySpec %s is not supported yet", key.Spec.KeySpec)}
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
