package adminwebhook

import (
	"context"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/policy"
)

// The KeyPolicy and KeyGrant validators: writing a policy is PutPolicy and
// writing a grant CreateGrant under the policy governing the key they are
// bound to; the binding (set by bind) must name the existing Key on create
// and never change.

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
	if resp := v.check(ctx, req.UserInfo, p.Namespace, p.Spec.KeyRef.Name, uid, []string{policy.ActionPutPolicy}); !resp.Allowed {
		return resp
	}
	if req.Operation == admissionv1.Delete || p.Spec.BypassPolicyLockoutSafetyCheck || v.self(req.UserInfo) {
		return admission.Allowed("")
	}
	return v.lockout(ctx, req.UserInfo, p.Namespace, p.Spec.KeyRef.Name, access.PolicyFrom(p), "KeyPolicy")
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
	if req.Operation == admissionv1.Create && v.self(req.UserInfo) && g.Annotations[kmsv1alpha1.RestoredGrantAnnotation] != "" {
		return admission.Allowed("the manager restores the grants of a key restored from a backup")
	}
	return v.check(ctx, req.UserInfo, g.Namespace, g.Spec.KeyRef.Name, uid, []string{policy.ActionCreateGrant})
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

// retiring says whether user is a grant's retiring principal, who may
// delete the grant whatever the key's policy says. It names a principal as
// a grantee does and is matched by the same rule, without a UID.
func retiring(p *kmsv1alpha1.GrantPrincipal, user authenticationv1.UserInfo) bool {
	if p == nil {
		return false
	}
	return policy.Grantee{ServiceAccount: p.ServiceAccount, User: p.User, Group: p.Group}.Matches(principalOf(user))
}
