package access

import (
	"reflect"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/policy"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func testKey(uid types.UID) *kmsv1alpha1.Key {
	return &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "payments", UID: uid}}
}

// boundPolicy is a KeyPolicy of namespace shop bound to key, created at created.
func boundPolicy(name string, key *kmsv1alpha1.Key, created time.Time, opts ...func(*kmsv1alpha1.KeyPolicy)) kmsv1alpha1.KeyPolicy {
	p := kmsv1alpha1.KeyPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, CreationTimestamp: metav1.NewTime(created),
			OwnerReferences: []metav1.OwnerReference{KeyOwnerReference(key)}},
		Spec: kmsv1alpha1.KeyPolicySpec{KeyRef: kmsv1alpha1.KeyReference{Name: key.Name}},
	}
	for _, o := range opts {
		o(&p)
	}
	return p
}

func TestGoverning(t *testing.T) {
	key, earlier := testKey("uid-1"), testKey("uid-0")
	deleting := func(p *kmsv1alpha1.KeyPolicy) {
		p.DeletionTimestamp = &metav1.Time{Time: t0}
		p.Finalizers = []string{"x"}
	}
	for name, tc := range map[string]struct {
		policies []kmsv1alpha1.KeyPolicy
		want     string // "" for none: the default policy
	}{
		"no policy": {},
		"one":       {policies: []kmsv1alpha1.KeyPolicy{boundPolicy("a", key, t0)}, want: "a"},
		"the oldest wins": {policies: []kmsv1alpha1.KeyPolicy{boundPolicy("a", key, t0.Add(time.Second)), boundPolicy("b", key, t0)},
			want: "b"},
		"a tie goes to the first name": {policies: []kmsv1alpha1.KeyPolicy{boundPolicy("b", key, t0), boundPolicy("a", key, t0)},
			want: "a"},
		"one being deleted governs nothing": {policies: []kmsv1alpha1.KeyPolicy{boundPolicy("a", key, t0, deleting), boundPolicy("b", key, t0.Add(time.Hour))},
			want: "b"},
		"a policy of an earlier key of the same name":    {policies: []kmsv1alpha1.KeyPolicy{boundPolicy("a", earlier, t0)}},
		"an unbound policy naming the key":               {policies: []kmsv1alpha1.KeyPolicy{boundPolicy("a", key, t0, func(p *kmsv1alpha1.KeyPolicy) { p.OwnerReferences = nil })}},
		"a policy of another namespace bound to the uid": {policies: []kmsv1alpha1.KeyPolicy{boundPolicy("a", key, t0, func(p *kmsv1alpha1.KeyPolicy) { p.Namespace = "web" })}},
	} {
		t.Run(name, func(t *testing.T) {
			got := ""
			if p := Governing(tc.policies, "shop", key.UID); p != nil {
				got = p.Name
			}
			if got != tc.want {
				t.Fatalf("Governing = %q, want %q", got, tc.want)
			}
			// The index elects the same policy from the same objects, in either order.
			reversed := slices.Clone(tc.policies)
			slices.Reverse(reversed)
			for _, order := range [][]kmsv1alpha1.KeyPolicy{tc.policies, reversed} {
				ix := NewIndex()
				for i := range order {
					ix.PolicyHandler().OnAdd(&order[i], true)
				}
				pol, _ := ix.For("shop", key.UID, t0)
				if (pol == nil) != (tc.want == "") || (pol != nil && pol.Name != tc.want) {
					t.Fatalf("the index elects %+v, want %q", pol, tc.want)
				}
			}
		})
	}
}

// A grant allows until its expiresAt, not at it: at the instant itself it
// is over, in the pure rule and in the index alike.
func TestGrantActiveAtExpiry(t *testing.T) {
	key := testKey("uid-1")
	expires := metav1.NewTime(t0)
	grant := func(opts ...func(*kmsv1alpha1.KeyGrant)) *kmsv1alpha1.KeyGrant {
		g := &kmsv1alpha1.KeyGrant{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "g", OwnerReferences: []metav1.OwnerReference{KeyOwnerReference(key)}},
			Spec: kmsv1alpha1.KeyGrantSpec{KeyRef: kmsv1alpha1.KeyReference{Name: key.Name}, Grantee: kmsv1alpha1.GrantPrincipal{User: "u"},
				Operations: []string{"Decrypt"}, ExpiresAt: &expires},
			Status: kmsv1alpha1.KeyGrantStatus{State: kmsv1alpha1.KeyGrantActive},
		}
		for _, o := range opts {
			o(g)
		}
		return g
	}
	for name, tc := range map[string]struct {
		grant *kmsv1alpha1.KeyGrant
		at    time.Time
		want  bool
	}{
		"a nanosecond before expiry":  {grant: grant(), at: t0.Add(-time.Nanosecond), want: true},
		"at the expiry instant":       {grant: grant(), at: t0},
		"after expiry":                {grant: grant(), at: t0.Add(time.Hour)},
		"no expiry":                   {grant: grant(func(g *kmsv1alpha1.KeyGrant) { g.Spec.ExpiresAt = nil }), at: t0.Add(1000 * time.Hour), want: true},
		"not Active (grantee absent)": {grant: grant(func(g *kmsv1alpha1.KeyGrant) { g.Status.State = kmsv1alpha1.KeyGrantInvalid }), at: t0.Add(-time.Hour)},
		"no state yet":                {grant: grant(func(g *kmsv1alpha1.KeyGrant) { g.Status.State = "" }), at: t0.Add(-time.Hour)},
		"being deleted": {grant: grant(func(g *kmsv1alpha1.KeyGrant) {
			g.DeletionTimestamp = &metav1.Time{Time: t0}
			g.Finalizers = []string{"x"}
		}),
			at: t0.Add(-time.Hour)},
		"bound to an earlier key of the name": {grant: grant(func(g *kmsv1alpha1.KeyGrant) {
			g.OwnerReferences = []metav1.OwnerReference{KeyOwnerReference(testKey("uid-0"))}
		}), at: t0.Add(-time.Hour)},
		"of another namespace": {grant: grant(func(g *kmsv1alpha1.KeyGrant) { g.Namespace = "web" }), at: t0.Add(-time.Hour)},
	} {
		t.Run(name, func(t *testing.T) {
			clock := clocktesting.NewFakePassiveClock(tc.at)
			if got := GrantActive(tc.grant, "shop", key.UID, clock.Now()); got != tc.want {
				t.Fatalf("GrantActive = %v, want %v", got, tc.want)
			}
			ix := NewIndex()
			ix.GrantHandler().OnAdd(tc.grant, true)
			_, grants := ix.For("shop", key.UID, clock.Now())
			if got := len(grants) == 1; got != tc.want {
				t.Fatalf("the index has %d active grants, want active=%v", len(grants), tc.want)
			}
		})
	}
}

func TestBoundKeyNeedsOurGroup(t *testing.T) {
	ref := KeyOwnerReference(testKey("uid-1"))
	if uid, ok := BoundKey([]metav1.OwnerReference{ref}, "payments"); !ok || uid != "uid-1" {
		t.Fatalf("BoundKey = %q, %v; want uid-1", uid, ok)
	}
	ref.APIVersion = "example.com/v1" // a Key of someone else's API group
	if uid, ok := BoundKey([]metav1.OwnerReference{ref}, "payments"); ok {
		t.Fatalf("BoundKey = %q, want bound to nothing", uid)
	}
	ref.APIVersion, ref.UID = KeyAPIVersion, ""
	if _, ok := BoundKey([]metav1.OwnerReference{ref}, "payments"); ok {
		t.Fatal("a reference without a UID binds")
	}
}

func TestSynced(t *testing.T) {
	ix := NewIndex()
	if ix.Synced() {
		t.Fatal("an index told nothing says it is synced")
	}
	synced := false
	ix.SetSynced(func() bool { return synced })
	if ix.Synced() {
		t.Fatal("synced before its informers are")
	}
	synced = true
	if !ix.Synced() {
		t.Fatal("not synced once its informers are")
	}
}

func TestConversions(t *testing.T) {
	statements := []kmsv1alpha1.PolicyStatement{
		{Sid: "Admins", Effect: kmsv1alpha1.PolicyAllow, Actions: []string{"*"},
			Principals: kmsv1alpha1.PolicyPrincipals{Users: []string{"alice"}, Groups: []string{"ops"}, ServiceAccounts: []string{"shop/*"}, RBAC: true}},
		{Sid: "NoCrossTenant", Effect: kmsv1alpha1.PolicyDeny, Actions: []string{"Decrypt"}, Principals: kmsv1alpha1.PolicyPrincipals{Groups: []string{"web"}},
			Conditions: &kmsv1alpha1.EncryptionContextConditions{EncryptionContextEquals: map[string]string{"tenant": "a"}, EncryptionContextSubset: map[string]string{"app": "x"}}},
	}
	want := &policy.Policy{Name: "payments", Statements: []policy.Statement{
		{Sid: "Admins", Effect: policy.Allow, Actions: []string{"*"},
			Principals: policy.Principals{Users: []string{"alice"}, Groups: []string{"ops"}, ServiceAccounts: []string{"shop/*"}, RBAC: true}},
		{Sid: "NoCrossTenant", Effect: policy.Deny, Actions: []string{"Decrypt"}, Principals: policy.Principals{Groups: []string{"web"}},
			Conditions: policy.Conditions{EncryptionContextEquals: map[string]string{"tenant": "a"}, EncryptionContextSubset: map[string]string{"app": "x"}}},
	}}
	got := PolicyFrom(&kmsv1alpha1.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Name: "payments"}, Spec: kmsv1alpha1.KeyPolicySpec{Statements: statements}})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PolicyFrom = %+v, want %+v", got, want)
	}

	key := testKey("uid-1")
	if InitialPolicy(key) != nil || InitialKeyPolicy(key) != nil {
		t.Fatal("a Key without spec.initialPolicy has an initial policy")
	}
	key.Spec.InitialPolicy = &kmsv1alpha1.KeyInitialPolicy{Statements: statements, BypassPolicyLockoutSafetyCheck: true}
	want.Name = "payments (initialPolicy)"
	if got := InitialPolicy(key); !reflect.DeepEqual(got, want) {
		t.Fatalf("InitialPolicy = %+v, want %+v", got, want)
	}
	kp := InitialKeyPolicy(key)
	if kp.Namespace != "shop" || kp.Name != "payments" || kp.Spec.KeyRef.Name != "payments" || !kp.Spec.BypassPolicyLockoutSafetyCheck || len(kp.Spec.Statements) != 2 {
		t.Fatalf("InitialKeyPolicy = %+v", kp)
	}

	g := GrantFrom(&kmsv1alpha1.KeyGrant{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: kmsv1alpha1.KeyGrantSpec{Grantee: kmsv1alpha1.GrantPrincipal{ServiceAccount: "web/api"}, Operations: []string{"Decrypt"},
			Constraints: &kmsv1alpha1.EncryptionContextConditions{EncryptionContextSubset: map[string]string{"tenant": "web"}}},
		Status: kmsv1alpha1.KeyGrantStatus{GranteeUID: "sa-uid"}})
	if g.Name != "web" || g.Grantee.ServiceAccount != "web/api" || g.Grantee.ServiceAccountUID != "sa-uid" ||
		!slices.Equal(g.Operations, []string{"Decrypt"}) || g.Constraints.EncryptionContextSubset["tenant"] != "web" {
		t.Fatalf("GrantFrom = %+v", g)
	}
}
