package adminwebhook

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/authn"
	"github.com/kubekms/kubekms/internal/authz"
	"github.com/kubekms/kubekms/internal/policy"
)

// What the validators share: the policy governing a key, evaluating an
// admin action under it (with RBAC behind it), and the lockout check.

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
		if err != nil || !d.Allowed {
			return answer(d.Allowed, err, fmt.Sprintf("kubekms: %s may not %s key %s/%s: %s", user.Username, action, namespace, key, d.Explanation))
		}
	}
	return admission.Allowed("")
}

// answer is the response to a decision: the webhook's own failure (500,
// so the API server applies the webhook's failure policy), a denial that
// says why, or allowed.
func answer(allowed bool, err error, denied string) admission.Response {
	switch {
	case err != nil:
		return admission.Errored(http.StatusInternalServerError, err)
	case !allowed:
		return admission.Denied(denied)
	}
	return admission.Allowed("")
}

// lockout refuses a policy under which its author could not PutPolicy again.
func (v *Validator) lockout(ctx context.Context, user authenticationv1.UserInfo, namespace, key string, pol *policy.Policy, what string) admission.Response {
	d, err := policy.Evaluate(v.request(user, policy.ActionPutPolicy), pol, nil, v.rbac(ctx, user, namespace, key, policy.ActionPutPolicy))
	return answer(d.Allowed, err, fmt.Sprintf("kubekms: this %s would leave %s unable to change it again (no statement allows PutPolicy for them); "+
		"set bypassPolicyLockoutSafetyCheck: true if you mean it", what, user.Username))
}

// governing is the policy of the Key (namespace, key, uid): the KeyPolicy
// governing it, else its spec.initialPolicy, or, while it is being
// restored (restoreFrom set, no keyID yet), the policy it had when deleted,
// so that nobody slips a policy or grant in before the restored policy is
// back.
func (v *Validator) governing(ctx context.Context, namespace, key string, uid types.UID) (*policy.Policy, error) {
	if pol, _ := v.Access.For(namespace, uid, v.now()); pol != nil {
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

// self says whether the request comes from the manager itself.
func (v *Validator) self(user authenticationv1.UserInfo) bool {
	return v.Self != "" && user.Username == v.Self
}

// request is the policy question "may user do action".
func (v *Validator) request(user authenticationv1.UserInfo, action string) policy.Request {
	return policy.Request{Principal: principalOf(user), Action: action}
}

// principalOf is the user as policies name principals, with a
// ServiceAccount's namespace and name taken from its username.
func principalOf(user authenticationv1.UserInfo) policy.Principal {
	p := policy.Principal{Username: user.Username, UID: user.UID, Groups: user.Groups}
	if rest, ok := strings.CutPrefix(user.Username, "system:serviceaccount:"); ok {
		p.Namespace, p.ServiceAccount, _ = strings.Cut(rest, ":")
	}
	return p
}

// rbac asks RBAC about an admin action by its verb (authz.Verb).
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
