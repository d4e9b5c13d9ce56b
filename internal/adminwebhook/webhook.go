// Package adminwebhook holds the webhooks that make key administration
// follow the key's policy, on top of RBAC: changing a Key, its KeyPolicy or
// its KeyGrants needs the matching admin action (Rotate, Disable,
// Administer, ScheduleDeletion, ImportKeyMaterial, PutPolicy, CreateGrant)
// under the KeyPolicy governing the key; restoring a deleted key needs
// CancelKeyDeletion under the policy it had when deleted. With no policy,
// RBAC alone decides (the API server already did; a restore asks for the
// verb restore). A policy that would leave its author unable to change it
// again is refused unless it says it means it
// (bypassPolicyLockoutSafetyCheck), as on AWS.
//
// A mutating webhook binds each new KeyPolicy and KeyGrant to the Key it
// names by an ownerReference (its UID); the validating webhooks refuse a
// policy or grant for a Key that does not exist and any change of that
// binding. Every webhook refuses until the caches it reads have synced.
package adminwebhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/authn"
	"github.com/kubekms/kubekms/internal/authz"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/policy"
)

// Paths the webhooks are served on.
const (
	KeyPath       = "/validate-kms-kubekms-io-v1alpha1-key"
	KeyPolicyPath = "/validate-kms-kubekms-io-v1alpha1-keypolicy"
	KeyGrantPath  = "/validate-kms-kubekms-io-v1alpha1-keygrant"
	BindPath      = "/mutate-kms-kubekms-io-v1alpha1-bind"
)

// The key webhooks always fail closed (failurePolicy Fail): while no replica
// answers, nobody changes a key, its policy or its grants.
// +kubebuilder:webhook:path=/validate-kms-kubekms-io-v1alpha1-key,mutating=false,failurePolicy=fail,sideEffects=None,groups=kms.kubekms.io,resources=keys,verbs=create;update;delete,versions=v1alpha1,name=vkey.kms.kubekms.io,admissionReviewVersions=v1,timeoutSeconds=5
// +kubebuilder:webhook:path=/validate-kms-kubekms-io-v1alpha1-keypolicy,mutating=false,failurePolicy=fail,sideEffects=None,groups=kms.kubekms.io,resources=keypolicies,verbs=create;update;delete,versions=v1alpha1,name=vkeypolicy.kms.kubekms.io,admissionReviewVersions=v1,timeoutSeconds=5
// +kubebuilder:webhook:path=/validate-kms-kubekms-io-v1alpha1-keygrant,mutating=false,failurePolicy=fail,sideEffects=None,groups=kms.kubekms.io,resources=keygrants,verbs=create;update;delete,versions=v1alpha1,name=vkeygrant.kms.kubekms.io,admissionReviewVersions=v1,timeoutSeconds=5
// +kubebuilder:webhook:path=/mutate-kms-kubekms-io-v1alpha1-bind,mutating=true,failurePolicy=fail,sideEffects=None,groups=kms.kubekms.io,resources=keypolicies;keygrants,verbs=create,versions=v1alpha1,name=mbind.kms.kubekms.io,admissionReviewVersions=v1,timeoutSeconds=5

// Validator checks admin actions against key policies.
type Validator struct {
	Access     *access.Index
	Authorizer *authz.Authorizer
	Decoder    admission.Decoder
	// Reader reads Keys and Namespaces (the manager's cache); APIReader
	// reads uncached, for a Key the cache has not seen yet.
	Reader, APIReader client.Reader
	// Tombstones lists the versions of a key ID, tombstoned or not (keystore.Store.ByKeyID).
	Tombstones func(ctx context.Context, keyID string) ([]keystore.Version, error)
	// Self is the manager's own username: what it does to the objects it
	// keeps (finalizer, a finished import request, a restored policy) is
	// not an admin act of a user.
	Self string
	// Synced says whether the caches the decisions read have synced; until
	// then every request is refused.
	Synced func() bool
	Clock  clock.PassiveClock
}

// Handlers returns the admission handlers by path.
func (v *Validator) Handlers() map[string]http.Handler {
	return map[string]http.Handler{
		KeyPath:       &admission.Webhook{Handler: v.whenSynced(v.key)},
		KeyPolicyPath: &admission.Webhook{Handler: v.whenSynced(v.keyPolicy)},
		KeyGrantPath:  &admission.Webhook{Handler: v.whenSynced(v.keyGrant)},
		BindPath:      &admission.Webhook{Handler: v.whenSynced(v.bind)},
	}
}

// whenSynced refuses every request until the caches have synced: a
// starting replica that has not seen the policies would allow everything.
func (v *Validator) whenSynced(h admission.HandlerFunc) admission.HandlerFunc {
	return func(ctx context.Context, req admission.Request) admission.Response {
		if v.Synced == nil || !v.Synced() {
			return admission.Denied("kubekms: the manager is starting and has not read the key policies yet; try again in a few seconds")
		}
		return h(ctx, req)
	}
}

// KeyActions says which admin actions a change of a Key is by user: none
// for metadata kubekms itself keeps (its finalizer, when self removes it;
// labels), and none for withdrawing an import request.
func KeyActions(old, new *kmsv1alpha1.Key, bySelf bool) []string {
	var out []string
	if new.Annotations[kmsv1alpha1.RotateAnnotation] != old.Annotations[kmsv1alpha1.RotateAnnotation] {
		out = append(out, "Rotate")
	}
	if new.Spec.State != old.Spec.State && new.Spec.State == kmsv1alpha1.KeyDesiredDisabled {
		out = append(out, "Disable")
	}
	if !bySelf && slices.Contains(old.Finalizers, kmsv1alpha1.KeyFinalizer) && !slices.Contains(new.Finalizers, kmsv1alpha1.KeyFinalizer) {
		// Without it the material is not kept as a tombstone but left
		// labelled for the name, for the next Key of that name to take.
		out = append(out, "ScheduleDeletion")
	}
	others := func(f []string) []string {
		return slices.Sorted(slices.Values(slices.DeleteFunc(slices.Clone(f), func(s string) bool { return s == kmsv1alpha1.KeyFinalizer })))
	}
	if !bySelf && !slices.Equal(others(old.Finalizers), others(new.Finalizers)) {
		// Another finalizer (foregroundDeletion, orphan, anyone's) changes
		// how and whether the Key goes: the key's administrators decide.
		out = append(out, "Administer")
	}
	o, n := old.Spec.DeepCopy(), new.Spec.DeepCopy()
	if n.State == kmsv1alpha1.KeyDesiredDisabled {
		o.State, n.State = "", "" // judged as Disable above
	}
	if ref := importRef(n); ref != nil && !reflect.DeepEqual(ref, importRef(o)) {
		out = append(out, "ImportKeyMaterial")
	}
	// A new import request is judged as ImportKeyMaterial above; withdrawing
	// one (or the manager closing it once done) is no admin act.
	o.Import, n.Import = withoutRef(o.Import), withoutRef(n.Import)
	if !reflect.DeepEqual(o, n) {
		out = append(out, "Administer")
	}
	return out
}

// importRef is a Key's import request: the Secret and the material it names.
func importRef(s *kmsv1alpha1.KeySpec) *kmsv1alpha1.KeyImport {
	if s.Import == nil || s.Import.SecretRef == nil {
		return nil
	}
	return &kmsv1alpha1.KeyImport{SecretRef: s.Import.SecretRef, WrappedKeyMaterialSHA256: s.Import.WrappedKeyMaterialSHA256}
}

func withoutRef(i *kmsv1alpha1.KeyImport) *kmsv1alpha1.KeyImport {
	if i == nil {
		return nil
	}
	out := i.DeepCopy()
	out.SecretRef, out.WrappedKeyMaterialSHA256 = nil, ""
	if reflect.DeepEqual(*out, kmsv1alpha1.KeyImport{}) {
		return nil
	}
	return out
}

func (v *Validator) key(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation == admissionv1.Create {
		key := &kmsv1alpha1.Key{}
		if err := v.Decoder.DecodeRaw(req.Object, key); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		if key.Spec.RestoreFrom != "" {
			return v.restore(ctx, req.UserInfo, key)
		}
		if ip := key.Spec.InitialPolicy; ip != nil && !ip.BypassPolicyLockoutSafetyCheck && !v.self(req.UserInfo) {
			return v.lockout(ctx, req.UserInfo, key.Namespace, key.Name, access.InitialPolicy(key), "spec.initialPolicy")
		}
		return admission.Allowed("")
	}
	old := &kmsv1alpha1.Key{}
	if err := v.Decoder.DecodeRaw(req.OldObject, old); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	actions := []string{"ScheduleDeletion"}
	if req.Operation == admissionv1.Update {
		key := &kmsv1alpha1.Key{}
		if err := v.Decoder.DecodeRaw(req.Object, key); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		actions = KeyActions(old, key, v.self(req.UserInfo))
	} else if v.namespaceTerminating(ctx, old.Namespace) {
		return admission.Allowed("the namespace is being deleted")
	} else if p := propagation(req); p == metav1.DeletePropagationForeground || p == metav1.DeletePropagationOrphan {
		// Foreground deletion deletes the key's policy before the key; orphan
		// deletion would strip its policies' and grants' binding.
		return admission.Denied(fmt.Sprintf("kubekms: delete Keys with background propagation (the default), not %s: the key's policies and grants go with it, and its policy is kept with its tombstone for a restore", p))
	}
	return v.check(ctx, req.UserInfo, old.Namespace, old.Name, old.UID, actions)
}

// restore allows creating a Key that restores a deleted one only to who may
// cancel that key's deletion: CancelKeyDeletion under the policy the key had
// when it was deleted, or, for a key that had the default policy, the RBAC
// verb restore on the deleted key's name.
func (v *Validator) restore(ctx context.Context, user authenticationv1.UserInfo, key *kmsv1alpha1.Key) admission.Response {
	all, err := v.Tombstones(ctx, key.Spec.RestoreFrom)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	now := v.Clock.Now()
	var deleted *keystore.Version
	for i := range all {
		if all[i].Tombstone && all[i].KeyNamespace == key.Namespace && now.Before(all[i].DestroyAfter) {
			deleted = &all[i]
			break
		}
	}
	if deleted == nil {
		return admission.Denied(fmt.Sprintf("kubekms: spec.restoreFrom: no key with keyID %s was deleted from namespace %s within its deletion window", key.Spec.RestoreFrom, key.Namespace))
	}
	if key.Spec.Import != nil && key.Spec.Import.SecretRef != nil {
		return admission.Denied("kubekms: a restore cannot also import material: restore the key first, then ask for the import (ImportKeyMaterial)")
	}
	rec := access.ParseDeletedPolicy(deleted.DeletedPolicy)
	if rec.TooLarge {
		ok, _, err := v.rbacVerb(ctx, user, key.Namespace, deleted.KeyName, "cancelkeydeletion")()
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		if !ok {
			return admission.Denied(fmt.Sprintf("kubekms: %s may not restore deleted key %s/%s (keyID %s): its policy was too large to keep, so only RBAC verb cancelkeydeletion on keys named %s (a cluster admin's) decides",
				user.Username, key.Namespace, deleted.KeyName, key.Spec.RestoreFrom, deleted.KeyName))
		}
		return admission.Allowed("")
	}
	rbac := v.rbacVerb(ctx, user, key.Namespace, deleted.KeyName, "restore")
	if rec.Spec == nil {
		ok, _, err := rbac()
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		if !ok {
			return admission.Denied(fmt.Sprintf("kubekms: %s may not restore deleted key %s/%s (keyID %s): it had the default policy, so RBAC verb restore on keys named %s decides",
				user.Username, key.Namespace, deleted.KeyName, key.Spec.RestoreFrom, deleted.KeyName))
		}
		return admission.Allowed("")
	}
	pol := access.PolicyFrom(&kmsv1alpha1.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Name: rec.Name}, Spec: *rec.Spec})
	d, err := policy.Evaluate(v.request(user, "CancelKeyDeletion"), pol, nil, v.rbacVerb(ctx, user, key.Namespace, deleted.KeyName, "cancelkeydeletion"))
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if !d.Allowed {
		return admission.Denied(fmt.Sprintf("kubekms: %s may not CancelKeyDeletion of deleted key %s/%s (keyID %s) under the policy it had (KeyPolicy %s): %s",
			user.Username, key.Namespace, deleted.KeyName, key.Spec.RestoreFrom, rec.Name, d.Explanation))
	}
	return admission.Allowed("")
}

// decodeSubject decodes the object a request is about: the new one, or the
// old one for a deletion.
func (v *Validator) decodeSubject(req admission.Request, into runtime.Object) error {
	raw := req.Object
	if req.Operation == admissionv1.Delete {
		raw = req.OldObject
	}
	return v.Decoder.DecodeRaw(raw, into)
}

// bind sets the ownerReference that binds a new KeyPolicy or KeyGrant to
// the Key it names, now: its UID, so that it never governs a later Key of
// the same name, and the garbage collector deletes it with its Key.
func (v *Validator) bind(ctx context.Context, req admission.Request) admission.Response {
	var obj client.Object
	var keyName string
	switch req.Kind.Kind {
	case "KeyPolicy":
		p := &kmsv1alpha1.KeyPolicy{}
		if err := v.Decoder.DecodeRaw(req.Object, p); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		obj, keyName = p, p.Spec.KeyRef.Name
	case "KeyGrant":
		g := &kmsv1alpha1.KeyGrant{}
		if err := v.Decoder.DecodeRaw(req.Object, g); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		obj, keyName = g, g.Spec.KeyRef.Name
	default:
		return admission.Allowed("")
	}
	key, resp := v.existingKey(ctx, req.Namespace, keyName, req.Kind.Kind)
	if key == nil {
		return resp
	}
	refs := slices.DeleteFunc(slices.Clone(obj.GetOwnerReferences()), func(r metav1.OwnerReference) bool { return r.Kind == access.KeyKind })
	obj.SetOwnerReferences(append(refs, access.KeyOwnerReference(key)))
	raw, err := json.Marshal(obj)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, raw)
}

// existingKey reads the Key a policy or grant names, from the cache or,
// when the cache has not seen it yet, from the API server.
func (v *Validator) existingKey(ctx context.Context, namespace, name, kind string) (*kmsv1alpha1.Key, admission.Response) {
	key := &kmsv1alpha1.Key{}
	nn := client.ObjectKey{Namespace: namespace, Name: name}
	err := v.Reader.Get(ctx, nn, key)
	if apierrors.IsNotFound(err) {
		err = v.APIReader.Get(ctx, nn, key)
	}
	switch {
	case apierrors.IsNotFound(err) || (err == nil && !key.DeletionTimestamp.IsZero()):
		return nil, admission.Denied(fmt.Sprintf("kubekms: spec.keyRef: Key %s does not exist in namespace %s; create the Key first: a %s binds to an existing key", name, namespace, kind))
	case err != nil:
		return nil, admission.Errored(http.StatusInternalServerError, err)
	}
	return key, admission.Response{}
}

// target finds the Key a policy or grant is bound to and checks the
// binding on create and update: on create it must be the existing Key the
// object names (set by bind), on update it must not change. It returns the
// Key's UID, or "" with allowed when the object governs nothing any more
// (its Key is gone), which only a deletion may find.
func (v *Validator) target(ctx context.Context, req admission.Request, obj client.Object, keyName, kind string) (types.UID, admission.Response) {
	uid, bound := access.BoundKey(obj.GetOwnerReferences(), keyName)
	switch req.Operation {
	case admissionv1.Create:
		key, resp := v.existingKey(ctx, obj.GetNamespace(), keyName, kind)
		if key == nil {
			return "", resp
		}
		if !bound || uid != key.UID {
			return "", admission.Denied(fmt.Sprintf("kubekms: this %s is not bound to Key %s (UID %s) by an ownerReference; is the kubekms mutating webhook (mbind.kms.kubekms.io) installed?", kind, keyName, key.UID))
		}
		return uid, admission.Allowed("")
	case admissionv1.Update:
		old := obj.DeepCopyObject().(client.Object)
		if err := v.Decoder.DecodeRaw(req.OldObject, old); err != nil {
			return "", admission.Errored(http.StatusBadRequest, err)
		}
		oldUID, oldBound := access.BoundKey(old.GetOwnerReferences(), keyName)
		if oldBound != bound || oldUID != uid {
			return "", admission.Denied(fmt.Sprintf("kubekms: the ownerReference that binds this %s to its Key is immutable", kind))
		}
	}
	if !bound {
		return "", admission.Allowed("bound to no key")
	}
	key := &kmsv1alpha1.Key{}
	nn := client.ObjectKey{Namespace: obj.GetNamespace(), Name: keyName}
	err := v.Reader.Get(ctx, nn, key)
	if apierrors.IsNotFound(err) || (err == nil && key.UID != uid) {
		// The cache may lag: only the API server may say the key is gone.
		err = v.APIReader.Get(ctx, nn, key)
	}
	switch {
	case apierrors.IsNotFound(err) || (err == nil && key.UID != uid):
		return "", admission.Allowed("its key is gone")
	case err != nil:
		return "", admission.Errored(http.StatusInternalServerError, err)
	}
	return uid, admission.Allowed("")
}

func (v *Validator) keyPolicy(ctx context.Context, req admission.Request) admission.Response {
	p := &kmsv1alpha1.KeyPolicy{}
	if err := v.decodeSubject(req, p); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if req.Operation == admissionv1.Delete && v.namespaceTerminating(ctx, p.Namespace) {
		return admission.Allowed("the namespace is being deleted")
	}
	uid, resp := v.target(ctx, req, p, p.Spec.KeyRef.Name, "KeyPolicy")
	if uid == "" {
		return resp
	}
	if req.Operation == admissionv1.Create && v.self(req.UserInfo) && p.Annotations[kmsv1alpha1.RestoredPolicyAnnotation] != "" {
		return admission.Allowed("the manager restores the policy a restored key had")
	}
	if resp := v.check(ctx, req.UserInfo, p.Namespace, p.Spec.KeyRef.Name, uid, []string{"PutPolicy"}); !resp.Allowed {
		return resp
	}
	if req.Operation == admissionv1.Delete || p.Spec.BypassPolicyLockoutSafetyCheck || v.self(req.UserInfo) {
		return admission.Allowed("")
	}
	return v.lockout(ctx, req.UserInfo, p.Namespace, p.Spec.KeyRef.Name, access.PolicyFrom(p), "KeyPolicy")
}

// lockout refuses a policy under which its author could not PutPolicy again.
func (v *Validator) lockout(ctx context.Context, user authenticationv1.UserInfo, namespace, key string, pol *policy.Policy, what string) admission.Response {
	d, err := policy.Evaluate(v.request(user, "PutPolicy"), pol, nil, v.rbac(ctx, user, namespace, key, "PutPolicy"))
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if !d.Allowed {
		return admission.Denied(fmt.Sprintf("kubekms: this %s would leave %s unable to change it again (no statement allows PutPolicy for them); "+
			"set bypassPolicyLockoutSafetyCheck: true if you mean it", what, user.Username))
	}
	return admission.Allowed("")
}

func (v *Validator) keyGrant(ctx context.Context, req admission.Request) admission.Response {
	g := &kmsv1alpha1.KeyGrant{}
	if err := v.decodeSubject(req, g); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if req.Operation == admissionv1.Delete && (retiring(g.Spec.RetiringPrincipal, req.UserInfo) || v.namespaceTerminating(ctx, g.Namespace)) {
		return admission.Allowed("the retiring principal may delete the grant, and anyone who may delete its namespace")
	}
	uid, resp := v.target(ctx, req, g, g.Spec.KeyRef.Name, "KeyGrant")
	if uid == "" {
		return resp
	}
	return v.check(ctx, req.UserInfo, g.Namespace, g.Spec.KeyRef.Name, uid, []string{"CreateGrant"})
}

// namespaceTerminating says whether a namespace is being deleted: then its
// objects go (the namespace controller and the garbage collector delete
// them), whatever their policies say. Deleting a namespace is the cluster's
// own admin act, checked by RBAC.
func (v *Validator) namespaceTerminating(ctx context.Context, name string) bool {
	ns := &corev1.Namespace{}
	if err := v.APIReader.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		return apierrors.IsNotFound(err)
	}
	return !ns.DeletionTimestamp.IsZero() || ns.Status.Phase == corev1.NamespaceTerminating
}

// propagation is a deletion's propagation policy ("" when not given).
func propagation(req admission.Request) metav1.DeletionPropagation {
	opts := &metav1.DeleteOptions{}
	if len(req.Options.Raw) == 0 || json.Unmarshal(req.Options.Raw, opts) != nil || opts.PropagationPolicy == nil {
		return ""
	}
	if opts.OrphanDependents != nil && *opts.OrphanDependents {
		return metav1.DeletePropagationOrphan
	}
	return *opts.PropagationPolicy
}

func (v *Validator) self(user authenticationv1.UserInfo) bool {
	return v.Self != "" && user.Username == v.Self
}

// check allows the change when the policy governing the key (if any)
// allows every action to the user.
func (v *Validator) check(ctx context.Context, user authenticationv1.UserInfo, namespace, key string, uid types.UID, actions []string) admission.Response {
	if len(actions) == 0 {
		return admission.Allowed("")
	}
	pol, err := v.governing(ctx, namespace, key, uid)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if pol == nil {
		return admission.Allowed("")
	}
	for _, action := range actions {
		d, err := policy.Evaluate(v.request(user, action), pol, nil, v.rbac(ctx, user, namespace, key, action))
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		if !d.Allowed {
			return admission.Denied(fmt.Sprintf("kubekms: %s may not %s key %s/%s: %s", user.Username, action, namespace, key, d.Explanation))
		}
	}
	return admission.Allowed("")
}

// governing is the policy of the Key (namespace, key, uid): the KeyPolicy
// governing it, else its spec.initialPolicy, or, while it is being
// restored (restoreFrom set, no keyID yet), the policy it had when deleted,
// so that nobody slips a policy or grant in before the restored policy is
// back.
func (v *Validator) governing(ctx context.Context, namespace, key string, uid types.UID) (*policy.Policy, error) {
	if pol, _ := v.Access.For(namespace, uid, v.Clock.Now()); pol != nil {
		return pol, nil
	}
	k := &kmsv1alpha1.Key{}
	nn := client.ObjectKey{Namespace: namespace, Name: key}
	err := v.Reader.Get(ctx, nn, k)
	if apierrors.IsNotFound(err) || (err == nil && k.UID != uid) {
		err = v.APIReader.Get(ctx, nn, k)
	}
	if err != nil || k.UID != uid {
		return nil, client.IgnoreNotFound(err)
	}
	if pol := access.InitialPolicy(k); pol != nil {
		return pol, nil
	}
	if k.Spec.RestoreFrom == "" || k.Status.KeyID != "" {
		return nil, nil
	}
	all, err := v.Tombstones(ctx, k.Spec.RestoreFrom)
	if err != nil {
		return nil, err
	}
	for _, t := range all {
		if t.Tombstone && t.KeyNamespace == namespace {
			if rec := access.ParseDeletedPolicy(t.DeletedPolicy); rec.Spec != nil {
				return access.PolicyFrom(&kmsv1alpha1.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Name: rec.Name}, Spec: *rec.Spec}), nil
			}
			return nil, nil
		}
	}
	return nil, nil
}

func (v *Validator) request(user authenticationv1.UserInfo, action string) policy.Request {
	p := policy.Principal{Username: user.Username, UID: user.UID, Groups: user.Groups}
	if rest, ok := strings.CutPrefix(user.Username, "system:serviceaccount:"); ok {
		p.Namespace, p.ServiceAccount, _ = strings.Cut(rest, ":")
	}
	return policy.Request{Principal: p, Action: action}
}

func (v *Validator) rbac(ctx context.Context, user authenticationv1.UserInfo, namespace, key, action string) policy.RBACFunc {
	return v.rbacVerb(ctx, user, namespace, key, authz.Verb(action))
}

// rbacVerb asks RBAC whether user may use verb on the key named key.
func (v *Validator) rbacVerb(ctx context.Context, user authenticationv1.UserInfo, namespace, key, verb string) policy.RBACFunc {
	return func() (bool, string, error) {
		extra := map[string][]string{}
		for k, val := range user.Extra {
			extra[k] = val
		}
		d, err := v.Authorizer.Authorize(ctx, authz.Request{
			Principal: &authn.Principal{Username: user.Username, UID: user.UID, Groups: user.Groups, Extra: extra},
			Action:    verb, Namespace: namespace, Name: key,
		})
		return d.Allowed, d.DecidedBy, err
	}
}

func retiring(p *kmsv1alpha1.GrantPrincipal, user authenticationv1.UserInfo) bool {
	switch {
	case p == nil:
		return false
	case p.ServiceAccount != "":
		return user.Username == "system:serviceaccount:"+strings.Replace(p.ServiceAccount, "/", ":", 1)
	case p.User != "":
		return user.Username == p.User
	case p.Group != "":
		for _, g := range user.Groups {
			if g == p.Group {
				return true
			}
		}
	}
	return false
}

// VWCName is the ValidatingWebhookConfiguration whose caBundle the manager
// keeps set to its CA.
const VWCName = "kubekms-validating-webhook-configuration"

// MWCName is the pod injector's webhook configuration (package inject).
const MWCName = "kubekms-mutating-webhook-configuration"

// Setup registers the webhooks with the manager's webhook server. v needs
// Access, Authorizer, Tombstones, Self and Synced; the rest comes from mgr.
func Setup(mgr ctrl.Manager, v *Validator) {
	v.Decoder = admission.NewDecoder(mgr.GetScheme())
	v.Reader, v.APIReader = mgr.GetClient(), mgr.GetAPIReader()
	if v.Clock == nil {
		v.Clock = clock.RealClock{}
	}
	for path, h := range v.Handlers() {
		mgr.GetWebhookServer().Register(path, h)
	}
}

// validating- and mutatingwebhookconfigurations: keep our own caBundles set to our CA.
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=get;patch,resourceNames=kubekms-validating-webhook-configuration
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;patch,resourceNames=kubekms-mutating-webhook-configuration

// CABundleInjector sets the caBundle of our webhook configuration once the
// manager starts (every replica; the write is idempotent).
type CABundleInjector struct {
	Client client.Client
	// Reader must not be a cache: the manager may only get and patch this
	// one object, not list or watch them all.
	Reader client.Reader
	CAPEM  []byte
}

// NeedLeaderElection: any replica may set it.
func (c *CABundleInjector) NeedLeaderElection() bool { return false }

// Start patches the caBundle, retrying until it succeeds or ctx ends.
func (c *CABundleInjector) Start(ctx context.Context) error {
	for {
		err := c.inject(ctx)
		if err == nil || apierrors.IsNotFound(err) {
			if apierrors.IsNotFound(err) {
				log.FromContext(ctx).Info("No webhook configuration to inject the CA into", "name", VWCName)
			}
			return nil
		}
		log.FromContext(ctx).Error(err, "Could not set the webhook caBundle; retrying")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}

func (c *CABundleInjector) inject(ctx context.Context) error {
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := c.Reader.Get(ctx, client.ObjectKey{Name: VWCName}, vwc); err != nil {
		return err
	}
	orig := vwc.DeepCopy()
	for i := range vwc.Webhooks {
		vwc.Webhooks[i].ClientConfig.CABundle = c.CAPEM
	}
	if err := c.Client.Patch(ctx, vwc, client.MergeFrom(orig)); err != nil {
		return err
	}
	// The pod injector's configuration is optional (absent where injection is off).
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Reader.Get(ctx, client.ObjectKey{Name: MWCName}, mwc); err != nil {
		return client.IgnoreNotFound(err)
	}
	orig2 := mwc.DeepCopy()
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig.CABundle = c.CAPEM
	}
	return c.Client.Patch(ctx, mwc, client.MergeFrom(orig2))
}

// WhoAmI is the username the manager's own requests carry (SelfSubjectReview),
// for Validator.Self.
func WhoAmI(ctx context.Context, cs kubernetes.Interface) (string, error) {
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("who am I (SelfSubjectReview): %w", err)
	}
	return r.Status.UserInfo.Username, nil
}
