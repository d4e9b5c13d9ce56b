package adminwebhook

import (
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
)

func TestKeyPolicy(t *testing.T) {
	key := newKey("payments", keyUID)
	governing := newPolicy("payments", key, allow([]string{"PutPolicy"}, alice))
	// proposed is a new policy: it keeps alice in, or not.
	proposed := func(statements ...kmsv1alpha1.PolicyStatement) *kmsv1alpha1.KeyPolicy {
		p := newPolicy("payments-v2", key, statements...)
		p.CreationTimestamp = metav1.Time{}
		return p
	}
	unbound := proposed(allow([]string{"*"}, alice))
	unbound.OwnerReferences = nil
	wrongUID := proposed(allow([]string{"*"}, alice))
	wrongUID.OwnerReferences = []metav1.OwnerReference{access.KeyOwnerReference(newKey("payments", "old-key-uid"))}
	bypass := proposed(allow([]string{"*"}, bob))
	bypass.Spec.BypassPolicyLockoutSafetyCheck = true
	restored := proposed(allow([]string{"*"}, bob))
	restored.Annotations = map[string]string{kmsv1alpha1.RestoredPolicyAnnotation: "0b5c8f5e-5a0e-4f43-a5a3-1c2d3e4f5a6b"}
	deleting := key.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: t0}
	for name, tc := range map[string]struct {
		opts        []fixtureOption
		op          admissionv1.Operation
		user        string
		obj, old    *kmsv1alpha1.KeyPolicy
		wantAllowed bool
		wantMessage string
	}{
		"create: the first policy, keeping its author in": {opts: []fixtureOption{withObjects(key)}, op: admissionv1.Create, user: alice,
			obj: proposed(allow([]string{"*"}, alice)), wantAllowed: true},
		"create: the first policy locks its author out": {opts: []fixtureOption{withObjects(key)}, op: admissionv1.Create, user: bob,
			obj: proposed(allow([]string{"*"}, alice)), wantMessage: "this KeyPolicy would leave bob unable to change it again"},
		"create: a lockout its author means": {opts: []fixtureOption{withObjects(key), withPolicies(governing)}, op: admissionv1.Create, user: alice,
			obj: bypass, wantAllowed: true},
		"create: the governing policy does not allow PutPolicy to bob": {opts: []fixtureOption{withObjects(key), withPolicies(governing)},
			op: admissionv1.Create, user: bob, obj: proposed(allow([]string{"*"}, bob)), wantMessage: "bob may not PutPolicy key shop/payments"},
		"create: the governing policy allows alice, who locks herself out": {opts: []fixtureOption{withObjects(key), withPolicies(governing)},
			op: admissionv1.Create, user: alice, obj: proposed(allow([]string{"*"}, bob)), wantMessage: "would leave alice unable"},
		"create: the manager restores the policy a restored key had": {opts: []fixtureOption{withObjects(key), withPolicies(governing)},
			op: admissionv1.Create, user: selfUser, obj: restored, wantAllowed: true},
		"create: a restored-policy mark from anyone else counts for nothing": {opts: []fixtureOption{withObjects(key), withPolicies(governing)},
			op: admissionv1.Create, user: bob, obj: restored, wantMessage: "bob may not PutPolicy"},
		"create: for a key that does not exist": {op: admissionv1.Create, user: alice, obj: proposed(allow([]string{"*"}, alice)),
			wantMessage: "Key payments does not exist in namespace shop; create the Key first: a KeyPolicy binds to an existing key"},
		"create: for a key being deleted": {opts: []fixtureOption{withObjects(deleting)}, op: admissionv1.Create, user: alice,
			obj: proposed(allow([]string{"*"}, alice)), wantMessage: "does not exist"},
		"create: for a key the cache has not seen yet": {opts: []fixtureOption{withUncached(key)}, op: admissionv1.Create, user: alice,
			obj: proposed(allow([]string{"*"}, alice)), wantAllowed: true},
		"create: not bound (no mutating webhook)": {opts: []fixtureOption{withObjects(key)}, op: admissionv1.Create, user: alice, obj: unbound,
			wantMessage: "is not bound to Key payments (UID key-uid-1)"},
		"create: bound to an earlier key of the same name": {opts: []fixtureOption{withObjects(key)}, op: admissionv1.Create, user: alice, obj: wrongUID,
			wantMessage: "is not bound to Key payments"},
		"update: the binding is immutable": {opts: []fixtureOption{withObjects(key), withPolicies(governing)}, op: admissionv1.Update, user: alice,
			old: governing, obj: func() *kmsv1alpha1.KeyPolicy {
				p := governing.DeepCopy()
				p.OwnerReferences = wrongUID.OwnerReferences
				return p
			}(),
			wantMessage: "the ownerReference that binds this KeyPolicy to its Key is immutable"},
		"update: unbinding is a change of the binding": {opts: []fixtureOption{withObjects(key), withPolicies(governing)}, op: admissionv1.Update, user: alice,
			old: governing, obj: func() *kmsv1alpha1.KeyPolicy { p := governing.DeepCopy(); p.OwnerReferences = nil; return p }(),
			wantMessage: "immutable"},
		"update: a second Key reference unbinds": {opts: []fixtureOption{withObjects(key), withPolicies(governing)}, op: admissionv1.Update, user: alice,
			old: governing, obj: func() *kmsv1alpha1.KeyPolicy {
				p := governing.DeepCopy()
				p.OwnerReferences = append(p.OwnerReferences, access.KeyOwnerReference(newKey("orders", "orders-uid")))
				return p
			}(), wantMessage: "immutable"},
		"update: statements by whom the policy allows": {opts: []fixtureOption{withObjects(key), withPolicies(governing)}, op: admissionv1.Update, user: alice,
			old: governing, obj: func() *kmsv1alpha1.KeyPolicy {
				p := governing.DeepCopy()
				p.Spec.Statements = append(p.Spec.Statements, allow([]string{"Decrypt"}, bob))
				return p
			}(), wantAllowed: true},
		"delete: bob may not": {opts: []fixtureOption{withObjects(key), withPolicies(governing)}, op: admissionv1.Delete, user: bob,
			old: governing, wantMessage: "bob may not PutPolicy"},
		"delete: a policy that would lock alice out is no lockout": {opts: []fixtureOption{withObjects(key), withPolicies(governing)}, op: admissionv1.Delete,
			user: alice, old: proposed(allow([]string{"*"}, bob)), wantAllowed: true},
		"delete: the cache still has an earlier key of the name": {opts: []fixtureOption{withStale(newKey("payments", "old-key-uid")), withUncached(key), withPolicies(governing)},
			op: admissionv1.Delete, user: bob, old: governing, wantMessage: "bob may not PutPolicy"},
		"delete: alice may, with no lockout check": {opts: []fixtureOption{withObjects(key), withPolicies(governing)}, op: admissionv1.Delete, user: alice,
			old: governing, wantAllowed: true},
		"delete: a policy whose key is gone": {opts: []fixtureOption{withPolicies(governing)}, op: admissionv1.Delete, user: bob,
			old: governing, wantAllowed: true},
		"delete: a policy bound to no key": {opts: []fixtureOption{withObjects(key)}, op: admissionv1.Delete, user: bob,
			old: unbound, wantAllowed: true},
		"delete: a policy of an earlier key of the same name": {opts: []fixtureOption{withObjects(key)}, op: admissionv1.Delete, user: bob,
			old: wrongUID, wantAllowed: true},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, tc.opts...)
			req := request(t, tc.op, tc.user, tc.obj, tc.old)
			wantResponse(t, f.handle(t, KeyPolicyPath, req), tc.wantAllowed, tc.wantMessage)
		})
	}
}

func TestKeyGrant(t *testing.T) {
	key := newKey("payments", keyUID)
	governing := newPolicy("payments", key, allow([]string{"CreateGrant"}, alice))
	retiredBy := func(p kmsv1alpha1.GrantPrincipal) func(*kmsv1alpha1.KeyGrant) {
		return func(g *kmsv1alpha1.KeyGrant) { g.Spec.RetiringPrincipal = &p }
	}
	for name, tc := range map[string]struct {
		opts        []fixtureOption
		op          admissionv1.Operation
		user        string
		grant       *kmsv1alpha1.KeyGrant
		wantAllowed bool
		wantMessage string
	}{
		"create: no policy, RBAC already decided": {opts: []fixtureOption{withObjects(key)}, op: admissionv1.Create, user: bob,
			grant: newGrant("web", key), wantAllowed: true},
		"create: the policy allows CreateGrant": {opts: []fixtureOption{withObjects(key), withPolicies(governing)}, op: admissionv1.Create, user: alice,
			grant: newGrant("web", key), wantAllowed: true},
		"create: the policy does not allow it to bob": {opts: []fixtureOption{withObjects(key), withPolicies(governing)}, op: admissionv1.Create, user: bob,
			grant: newGrant("web", key), wantMessage: "bob may not CreateGrant key shop/payments"},
		"create: for a key that does not exist": {op: admissionv1.Create, user: alice, grant: newGrant("web", key),
			wantMessage: "a KeyGrant binds to an existing key"},
		"delete: bob may not": {opts: []fixtureOption{withObjects(key), withPolicies(governing)}, op: admissionv1.Delete, user: bob,
			grant: newGrant("web", key), wantMessage: "bob may not CreateGrant"},
		"delete: the retiring principal may": {opts: []fixtureOption{withObjects(key), withPolicies(governing)}, op: admissionv1.Delete, user: bob,
			grant: newGrant("web", key, retiredBy(kmsv1alpha1.GrantPrincipal{User: bob})), wantAllowed: true},
		"delete: someone else than the retiring principal may not": {opts: []fixtureOption{withObjects(key), withPolicies(governing)}, op: admissionv1.Delete, user: bob,
			grant: newGrant("web", key, retiredBy(kmsv1alpha1.GrantPrincipal{User: "carol"})), wantMessage: "bob may not CreateGrant"},
		"delete: the grant's key is gone": {opts: []fixtureOption{withPolicies(governing)}, op: admissionv1.Delete, user: bob,
			grant: newGrant("web", key), wantAllowed: true},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, tc.opts...)
			req := request(t, tc.op, tc.user, tc.grant, nil)
			if tc.op == admissionv1.Delete {
				req = request(t, tc.op, tc.user, nil, tc.grant)
			}
			wantResponse(t, f.handle(t, KeyGrantPath, req), tc.wantAllowed, tc.wantMessage)
		})
	}
}

func TestRetiring(t *testing.T) {
	user := authenticationv1.UserInfo{Username: "system:serviceaccount:web:api", Groups: []string{"system:serviceaccounts", "ops"}}
	for name, tc := range map[string]struct {
		principal *kmsv1alpha1.GrantPrincipal
		want      bool
	}{
		"no retiring principal":            {},
		"the ServiceAccount":               {principal: &kmsv1alpha1.GrantPrincipal{ServiceAccount: "web/api"}, want: true},
		"another namespace's account":      {principal: &kmsv1alpha1.GrantPrincipal{ServiceAccount: "shop/api"}},
		"the user by name":                 {principal: &kmsv1alpha1.GrantPrincipal{User: "system:serviceaccount:web:api"}, want: true},
		"another user":                     {principal: &kmsv1alpha1.GrantPrincipal{User: "alice"}},
		"a group of the user":              {principal: &kmsv1alpha1.GrantPrincipal{Group: "ops"}, want: true},
		"a group the user is not a member": {principal: &kmsv1alpha1.GrantPrincipal{Group: "admins"}},
	} {
		t.Run(name, func(t *testing.T) {
			if got := retiring(tc.principal, user); got != tc.want {
				t.Fatalf("retiring = %v, want %v", got, tc.want)
			}
		})
	}
}

// A deletion in a namespace being deleted goes whatever the policy says:
// the namespace's own deletion was the admin act.
func TestDeletionsInTerminatingNamespace(t *testing.T) {
	key := newKey("payments", keyUID)
	governing := newPolicy("payments", key, allow([]string{"*"}, alice))
	for name, tc := range map[string]struct {
		path string
		old  client.Object
	}{
		"KeyPolicy": {path: KeyPolicyPath, old: governing},
		"KeyGrant":  {path: KeyGrantPath, old: newGrant("web", key)},
	} {
		t.Run(name, func(t *testing.T) {
			req := request(t, admissionv1.Delete, bob, nil, tc.old)
			f := newFixture(t, withObjects(key), withPolicies(governing))
			wantResponse(t, f.handle(t, tc.path, req), false, "bob may not")
			f = newFixture(t, withObjects(key), withPolicies(governing), terminating())
			wantResponse(t, f.handle(t, tc.path, req), true, "")
		})
	}
}
