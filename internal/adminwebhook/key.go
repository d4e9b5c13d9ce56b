package adminwebhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/policy"
)

// The Key validator: creating, changing and deleting a Key are admin
// actions under the key's policy; creating a Key that restores a deleted
// one is CancelKeyDeletion under the policy it had when deleted.

// KeyActions says which admin actions a change of a Key is by user: none
// for metadata kubekms itself keeps (its finalizer, when self removes it;
// labels), and none for withdrawing an import request.
func KeyActions(old, new *kmsv1alpha1.Key, bySelf bool) []string {
	var out []string
	if new.Annotations[kmsv1alpha1.RotateAnnotation] != old.Annotations[kmsv1alpha1.RotateAnnotation] {
		out = append(out, policy.ActionRotate)
	}
	if new.Spec.State != old.Spec.State && new.Spec.State == kmsv1alpha1.KeyDesiredDisabled {
		out = append(out, policy.ActionDisable)
	}
	if !bySelf && slices.Contains(old.Finalizers, kmsv1alpha1.KeyFinalizer) && !slices.Contains(new.Finalizers, kmsv1alpha1.KeyFinalizer) {
		// Without it the material is not kept as a tombstone but left
		// labelled for the name, for the next Key of that name to take.
		out = append(out, policy.ActionScheduleDeletion)
	}
	others := func(f []string) []string {
		return slices.Sorted(slices.Values(slices.DeleteFunc(slices.Clone(f), func(s string) bool { return s == kmsv1alpha1.KeyFinalizer })))
	}
	if !bySelf && !slices.Equal(others(old.Finalizers), others(new.Finalizers)) {
		// Another finalizer (foregroundDeletion, orphan, anyone's) changes
		// how and whether the Key goes: the key's administrators decide.
		out = append(out, policy.ActionAdminister)
	}
	o, n := old.Spec.DeepCopy(), new.Spec.DeepCopy()
	if n.State == kmsv1alpha1.KeyDesiredDisabled {
		o.State, n.State = "", "" // judged as Disable above
	}
	if ref := importRef(n); ref != nil && !reflect.DeepEqual(ref, importRef(o)) {
		out = append(out, policy.ActionImportKeyMaterial)
	}
	// A new import request is judged as ImportKeyMaterial above; withdrawing
	// one (or the manager closing it once done) is no admin act.
	o.Import, n.Import = withoutRef(o.Import), withoutRef(n.Import)
	if !reflect.DeepEqual(o, n) {
		out = append(out, policy.ActionAdminister)
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

// withoutRef is an import section without its request (nil when nothing
// else is left), to compare the rest of it.
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
			if v.self(req.UserInfo) {
				// Only a restore from a backup (internal/recovery), which
				// the caller was authorized for as a whole, makes the
				// manager create a Key.
				return admission.Allowed("the manager restores a key from a backup")
			}
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
	actions := []string{policy.ActionScheduleDeletion}
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
	now := v.now()
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
	refused := fmt.Sprintf("kubekms: %s may not restore deleted key %s/%s (keyID %s)", user.Username, key.Namespace, deleted.KeyName, key.Spec.RestoreFrom)
	if rec.TooLarge {
		ok, _, err := v.rbac(ctx, user, key.Namespace, deleted.KeyName, policy.ActionCancelKeyDeletion)()
		return answer(ok, err, fmt.Sprintf("%s: its policy was too large to keep, so only RBAC verb cancelkeydeletion on keys named %s (a cluster admin's) decides",
			refused, deleted.KeyName))
	}
	if rec.Spec == nil {
		ok, _, err := v.rbacVerb(ctx, user, key.Namespace, deleted.KeyName, policy.DefaultPolicyVerb(policy.ActionCancelKeyDeletion))()
		return answer(ok, err, fmt.Sprintf("%s: it had the default policy, so RBAC verb restore on keys named %s decides", refused, deleted.KeyName))
	}
	pol := access.PolicyFrom(&kmsv1alpha1.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Name: rec.Name}, Spec: *rec.Spec})
	d, err := policy.Evaluate(v.request(user, policy.ActionCancelKeyDeletion), pol, nil, v.rbac(ctx, user, key.Namespace, deleted.KeyName, policy.ActionCancelKeyDeletion))
	return answer(d.Allowed, err, fmt.Sprintf("kubekms: %s may not CancelKeyDeletion of deleted key %s/%s (keyID %s) under the policy it had (KeyPolicy %s): %s",
		user.Username, key.Namespace, deleted.KeyName, key.Spec.RestoreFrom, rec.Name, d.Explanation))
}

// propagation is a deletion's propagation policy ("" when not given). The
// deprecated orphanDependents option still orphans, with or without a
// policy, so it counts as Orphan.
func propagation(req admission.Request) metav1.DeletionPropagation {
	opts := &metav1.DeleteOptions{}
	if len(req.Options.Raw) == 0 || json.Unmarshal(req.Options.Raw, opts) != nil {
		return ""
	}
	if opts.OrphanDependents != nil && *opts.OrphanDependents {
		return metav1.DeletePropagationOrphan
	}
	if opts.PropagationPolicy == nil {
		return ""
	}
	return *opts.PropagationPolicy
}
