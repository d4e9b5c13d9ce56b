package adminwebhook

import (
	"context"
	"slices"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/keystore"
)

const (
	alice = "alice" // the key's administrator under its policy
	bob   = "bob"   // anyone else
)

func TestKeyCreate(t *testing.T) {
	withInitialPolicy := func(bypass bool, statements ...kmsv1alpha1.PolicyStatement) func(*kmsv1alpha1.Key) {
		return func(k *kmsv1alpha1.Key) {
			k.Spec.InitialPolicy = &kmsv1alpha1.KeyInitialPolicy{Statements: statements, BypassPolicyLockoutSafetyCheck: bypass}
		}
	}
	for name, tc := range map[string]struct {
		user        string
		key         *kmsv1alpha1.Key
		wantAllowed bool
		wantMessage string
	}{
		"no initial policy: RBAC already decided": {user: bob, key: newKey("payments", ""), wantAllowed: true},
		"an initial policy its author may change": {user: alice, key: newKey("payments", "", withInitialPolicy(false, allow([]string{"*"}, alice))), wantAllowed: true},
		"an initial policy that locks its author out": {user: bob, key: newKey("payments", "", withInitialPolicy(false, allow([]string{"*"}, alice))),
			wantMessage: "this spec.initialPolicy would leave bob unable to change it again"},
		"a lockout the author means":    {user: bob, key: newKey("payments", "", withInitialPolicy(true, allow([]string{"*"}, alice))), wantAllowed: true},
		"the manager is not locked out": {user: selfUser, key: newKey("payments", "", withInitialPolicy(false, allow([]string{"*"}, alice))), wantAllowed: true},
		"an explicit deny of PutPolicy locks out": {user: alice, key: newKey("payments", "", withInitialPolicy(false, allow([]string{"*"}, alice),
			kmsv1alpha1.PolicyStatement{Effect: kmsv1alpha1.PolicyDeny, Principals: kmsv1alpha1.PolicyPrincipals{Users: []string{alice}}, Actions: []string{"PutPolicy"}})),
			wantMessage: "unable to change it again"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			resp := f.handle(t, KeyPath, request(t, admissionv1.Create, tc.user, tc.key, nil))
			wantResponse(t, resp, tc.wantAllowed, tc.wantMessage)
		})
	}
}

// An initial policy that delegates PutPolicy to RBAC keeps its author in
// when RBAC allows them the verb putpolicy on the key.
func TestKeyCreateLockoutAsksRBAC(t *testing.T) {
	f := newFixture(t)
	key := newKey("payments", "", func(k *kmsv1alpha1.Key) {
		k.Spec.InitialPolicy = &kmsv1alpha1.KeyInitialPolicy{Statements: []kmsv1alpha1.PolicyStatement{
			{Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{RBAC: true}, Actions: []string{"PutPolicy"}}}}
	})
	wantResponse(t, f.handle(t, KeyPath, request(t, admissionv1.Create, bob, key, nil)), false, "unable to change it again")
	f.rbac.allow[bob+" putpolicy"] = true
	wantResponse(t, f.handle(t, KeyPath, request(t, admissionv1.Create, bob, key, nil)), true, "")
	if want := bob + " putpolicy shop/payments"; !slices.Contains(f.rbac.asked, want) {
		t.Fatalf("RBAC was asked %v, want %q", f.rbac.asked, want)
	}
}

func TestKeyUpdate(t *testing.T) {
	key := newKey("payments", keyUID)
	rotated := func(k *kmsv1alpha1.Key) { k.Annotations = map[string]string{kmsv1alpha1.RotateAnnotation: "1"} }
	disabled := func(k *kmsv1alpha1.Key) { k.Spec.State = kmsv1alpha1.KeyDesiredDisabled }
	policy := newPolicy("payments", key, allow([]string{"Rotate", "Administer"}, alice),
		kmsv1alpha1.PolicyStatement{Sid: "Rotator", Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{ServiceAccounts: []string{"shop/rotator"}}, Actions: []string{"Rotate"}},
		kmsv1alpha1.PolicyStatement{Sid: "RBACDisables", Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{RBAC: true}, Actions: []string{"Disable"}})
	for name, tc := range map[string]struct {
		opts        []fixtureOption
		user        string
		change      func(*kmsv1alpha1.Key)
		rbac        []string
		wantAllowed bool
		wantMessage string
	}{
		"no policy: RBAC already decided": {opts: []fixtureOption{withObjects(key)}, user: bob, change: rotated, wantAllowed: true},
		"the policy allows Rotate":        {opts: []fixtureOption{withObjects(key), withPolicies(policy)}, user: alice, change: rotated, wantAllowed: true},
		"the policy does not allow Rotate to bob": {opts: []fixtureOption{withObjects(key), withPolicies(policy)}, user: bob, change: rotated,
			wantMessage: "bob may not Rotate key shop/payments"},
		"a ServiceAccount the policy names": {opts: []fixtureOption{withObjects(key), withPolicies(policy)}, user: "system:serviceaccount:shop:rotator", change: rotated,
			wantAllowed: true},
		"a ServiceAccount of another namespace": {opts: []fixtureOption{withObjects(key), withPolicies(policy)}, user: "system:serviceaccount:web:rotator", change: rotated,
			wantMessage: "may not Rotate"},
		"labels are no admin act": {opts: []fixtureOption{withObjects(key), withPolicies(policy)}, user: bob,
			change: func(k *kmsv1alpha1.Key) { k.Labels = map[string]string{"team": "a"} }, wantAllowed: true},
		"every action must be allowed": {opts: []fixtureOption{withObjects(key), withPolicies(policy)}, user: alice,
			change: func(k *kmsv1alpha1.Key) { rotated(k); disabled(k) }, wantMessage: "alice may not Disable"},
		"a statement delegating to RBAC: RBAC allows": {opts: []fixtureOption{withObjects(key), withPolicies(policy)}, user: bob, change: disabled,
			rbac: []string{bob + " disable"}, wantAllowed: true},
		"a statement delegating to RBAC: RBAC refuses": {opts: []fixtureOption{withObjects(key), withPolicies(policy)}, user: bob, change: disabled,
			wantMessage: "bob may not Disable"},
		"the initial policy governs while no KeyPolicy is bound": {user: bob, change: rotated, wantMessage: "bob may not Rotate",
			opts: []fixtureOption{withObjects(newKey("payments", keyUID, func(k *kmsv1alpha1.Key) {
				k.Spec.InitialPolicy = &kmsv1alpha1.KeyInitialPolicy{Statements: []kmsv1alpha1.PolicyStatement{allow([]string{"*"}, alice)}}
			}))}},
		"the cache has not seen the key yet": {user: bob, change: rotated, wantMessage: "bob may not Rotate",
			opts: []fixtureOption{withUncached(newKey("payments", keyUID, func(k *kmsv1alpha1.Key) {
				k.Spec.InitialPolicy = &kmsv1alpha1.KeyInitialPolicy{Statements: []kmsv1alpha1.PolicyStatement{allow([]string{"*"}, alice)}}
			}))}},
		"a policy of another key of the same name does not govern": {user: bob, change: rotated, wantAllowed: true,
			opts: []fixtureOption{withObjects(key), withPolicies(newPolicy("payments", newKey("payments", "old-key-uid"), allow([]string{"*"}, alice)))}},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, tc.opts...)
			for _, r := range tc.rbac {
				f.rbac.allow[r] = true
			}
			old, new := key.DeepCopy(), key.DeepCopy()
			tc.change(new)
			wantResponse(t, f.handle(t, KeyPath, request(t, admissionv1.Update, tc.user, new, old)), tc.wantAllowed, tc.wantMessage)
		})
	}
}

// RBAC failing is an error, never an answer.
func TestKeyUpdateRBACError(t *testing.T) {
	key := newKey("payments", keyUID)
	f := newFixture(t, withObjects(key), withPolicies(newPolicy("payments", key,
		kmsv1alpha1.PolicyStatement{Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{RBAC: true}, Actions: []string{"*"}})))
	f.rbac.err = errRBACDown
	new := key.DeepCopy()
	new.Spec.Description = "changed"
	resp := f.handle(t, KeyPath, request(t, admissionv1.Update, alice, new, key))
	wantResponse(t, resp, false, "connection refused")
	if resp.Result.Code != 500 {
		t.Fatalf("code %d, want 500", resp.Result.Code)
	}
}

func TestKeyDelete(t *testing.T) {
	key := newKey("payments", keyUID)
	policy := newPolicy("payments", key, allow([]string{"ScheduleDeletion"}, alice))
	propagate := func(p metav1.DeletionPropagation) *metav1.DeleteOptions {
		return &metav1.DeleteOptions{PropagationPolicy: &p}
	}
	for name, tc := range map[string]struct {
		user          string
		key           *kmsv1alpha1.Key
		options       *metav1.DeleteOptions
		terminating   bool
		namespaceGone bool
		wantAllowed   bool
		wantMessage   string
	}{
		"the policy allows ScheduleDeletion":        {user: alice, key: key, wantAllowed: true},
		"the policy does not allow it to bob":       {user: bob, key: key, wantMessage: "bob may not ScheduleDeletion key shop/payments"},
		"background propagation is the default":     {user: alice, key: key, options: propagate(metav1.DeletePropagationBackground), wantAllowed: true},
		"foreground propagation is refused":         {user: alice, key: key, options: propagate(metav1.DeletePropagationForeground), wantMessage: "not Foreground"},
		"orphan propagation is refused":             {user: alice, key: key, options: propagate(metav1.DeletePropagationOrphan), wantMessage: "not Orphan"},
		"a key of a terminating namespace goes":     {user: bob, key: key, terminating: true, wantAllowed: true},
		"whatever its propagation":                  {user: bob, key: key, terminating: true, options: propagate(metav1.DeletePropagationForeground), wantAllowed: true},
		"a key of a namespace that is gone, too":    {user: bob, key: key, namespaceGone: true, wantAllowed: true},
		"the manager's own deletion is checked too": {user: selfUser, key: key, wantMessage: "may not ScheduleDeletion"},
	} {
		t.Run(name, func(t *testing.T) {
			opts := []fixtureOption{withObjects(key), withPolicies(policy)}
			if tc.terminating {
				opts = append(opts, terminating())
			}
			if tc.namespaceGone {
				opts = append(opts, namespaceGone())
			}
			f := newFixture(t, opts...)
			req := request(t, admissionv1.Delete, tc.user, nil, tc.key)
			if tc.options != nil {
				req = withDeleteOptions(t, req, *tc.options)
			}
			wantResponse(t, f.handle(t, KeyPath, req), tc.wantAllowed, tc.wantMessage)
		})
	}
}

func TestPropagation(t *testing.T) {
	p := func(p metav1.DeletionPropagation) *metav1.DeletionPropagation { return &p }
	yes := true
	for name, tc := range map[string]struct {
		options *metav1.DeleteOptions
		raw     string
		want    metav1.DeletionPropagation
	}{
		"no options":             {},
		"no policy given":        {options: &metav1.DeleteOptions{}},
		"background":             {options: &metav1.DeleteOptions{PropagationPolicy: p(metav1.DeletePropagationBackground)}, want: metav1.DeletePropagationBackground},
		"foreground":             {options: &metav1.DeleteOptions{PropagationPolicy: p(metav1.DeletePropagationForeground)}, want: metav1.DeletePropagationForeground},
		"orphanDependents wins":  {options: &metav1.DeleteOptions{PropagationPolicy: p(metav1.DeletePropagationBackground), OrphanDependents: &yes}, want: metav1.DeletePropagationOrphan},
		"orphanDependents alone": {options: &metav1.DeleteOptions{OrphanDependents: &yes}, want: metav1.DeletePropagationOrphan},
		"options that not parse": {raw: "{not json", want: ""},
	} {
		t.Run(name, func(t *testing.T) {
			req := request(t, admissionv1.Delete, bob, nil, newKey("payments", keyUID))
			if tc.options != nil {
				req = withDeleteOptions(t, req, *tc.options)
			}
			if tc.raw != "" {
				req.Options.Raw = []byte(tc.raw)
			}
			if got := propagation(req); got != tc.want {
				t.Fatalf("propagation = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestKeyRestore(t *testing.T) {
	const keyID = "0b5c8f5e-5a0e-4f43-a5a3-1c2d3e4f5a6b"
	restoring := func(opts ...func(*kmsv1alpha1.Key)) *kmsv1alpha1.Key {
		k := newKey("payments-again", "", func(k *kmsv1alpha1.Key) { k.Spec.RestoreFrom = keyID })
		for _, o := range opts {
			o(k)
		}
		return k
	}
	withPolicy := access.RecordPolicy(newPolicy("payments", newKey("payments", keyUID), allow([]string{"CancelKeyDeletion"}, alice)))
	deleted := func(record string, opts ...func(*keystore.Version)) keystore.Version {
		v := tombstone(keyID, "payments", record)
		for _, o := range opts {
			o(&v)
		}
		return v
	}
	for name, tc := range map[string]struct {
		user        string
		key         *kmsv1alpha1.Key
		tombstone   keystore.Version
		rbac        []string
		clockStep   time.Duration
		wantAllowed bool
		wantMessage string
		wantAsked   string
	}{
		"the policy it had allows CancelKeyDeletion": {user: alice, key: restoring(), tombstone: deleted(withPolicy), wantAllowed: true},
		"the policy it had does not allow it to bob": {user: bob, key: restoring(), tombstone: deleted(withPolicy),
			wantMessage: "bob may not CancelKeyDeletion of deleted key shop/payments (keyID " + keyID + ") under the policy it had (KeyPolicy payments)"},
		"the default policy: RBAC verb restore allows": {user: bob, key: restoring(), tombstone: deleted(access.RecordPolicy(nil)),
			rbac: []string{bob + " restore"}, wantAllowed: true, wantAsked: bob + " restore shop/payments"},
		"the default policy: RBAC verb restore refuses": {user: bob, key: restoring(), tombstone: deleted(""),
			wantMessage: "it had the default policy, so RBAC verb restore"},
		"a policy too large to keep: RBAC verb cancelkeydeletion allows": {user: bob, key: restoring(), tombstone: deleted(`{"tooLarge":true}`),
			rbac: []string{bob + " cancelkeydeletion"}, wantAllowed: true, wantAsked: bob + " cancelkeydeletion shop/payments"},
		"a policy too large to keep: the verb restore does not do": {user: bob, key: restoring(), tombstone: deleted(`{"tooLarge":true}`),
			rbac: []string{bob + " restore"}, wantMessage: "too large to keep"},
		"a record that does not parse is closed": {user: alice, key: restoring(), tombstone: deleted("{broken"), wantMessage: "too large to keep"},
		"at the end of the deletion window":      {user: alice, key: restoring(), tombstone: deleted(withPolicy), clockStep: time.Hour, wantMessage: "within its deletion window"},
		"a second before its end":                {user: alice, key: restoring(), tombstone: deleted(withPolicy), clockStep: time.Hour - time.Second, wantAllowed: true},
		"deleted from another namespace": {user: alice, key: restoring(), tombstone: deleted(withPolicy, func(v *keystore.Version) { v.KeyNamespace = "web" }),
			wantMessage: "no key with keyID " + keyID + " was deleted from namespace shop"},
		"a live version is no tombstone": {user: alice, key: restoring(), tombstone: deleted(withPolicy, func(v *keystore.Version) { v.Tombstone = false }),
			wantMessage: "within its deletion window"},
		"a restore that also imports": {user: alice, tombstone: deleted(withPolicy), key: restoring(func(k *kmsv1alpha1.Key) {
			k.Spec.Import = &kmsv1alpha1.KeyImport{SecretRef: &kmsv1alpha1.LocalSecretReference{Name: "material"}}
		}), wantMessage: "cannot also import"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			f.tombstones = []keystore.Version{tc.tombstone}
			for _, r := range tc.rbac {
				f.rbac.allow[r] = true
			}
			f.clock.SetTime(t0.Add(tc.clockStep))
			wantResponse(t, f.handle(t, KeyPath, request(t, admissionv1.Create, tc.user, tc.key, nil)), tc.wantAllowed, tc.wantMessage)
			if tc.wantAsked != "" && !slices.Contains(f.rbac.asked, tc.wantAsked) {
				t.Fatalf("RBAC was asked %v, want %q", f.rbac.asked, tc.wantAsked)
			}
		})
	}
}

// While a restored key waits for its keyID, the policy it had governs it:
// nobody slips a grant in before the restored KeyPolicy is back.
func TestRestoringKeyIsGovernedByThePolicyItHad(t *testing.T) {
	const keyID = "0b5c8f5e-5a0e-4f43-a5a3-1c2d3e4f5a6b"
	key := newKey("payments", keyUID, func(k *kmsv1alpha1.Key) { k.Spec.RestoreFrom = keyID })
	for name, tc := range map[string]struct {
		keyID       string
		record      string
		user        string
		wantAllowed bool
		wantMessage string
	}{
		"bob under the policy it had": {record: access.RecordPolicy(newPolicy("payments", key, allow([]string{"*"}, alice))), user: bob,
			wantMessage: "bob may not CreateGrant"},
		"alice under the policy it had": {record: access.RecordPolicy(newPolicy("payments", key, allow([]string{"*"}, alice))), user: alice, wantAllowed: true},
		"it had the default policy":     {record: access.RecordPolicy(nil), user: bob, wantAllowed: true},
		"restored (keyID set): the policy it had no longer governs": {keyID: keyID,
			record: access.RecordPolicy(newPolicy("payments", key, allow([]string{"*"}, alice))), user: bob, wantAllowed: true},
	} {
		t.Run(name, func(t *testing.T) {
			k := key.DeepCopy()
			k.Status.KeyID = tc.keyID
			f := newFixture(t, withObjects(k))
			f.tombstones = []keystore.Version{tombstone(keyID, "payments", tc.record)}
			resp := f.handle(t, KeyGrantPath, request(t, admissionv1.Create, tc.user, newGrant("web", k), nil))
			wantResponse(t, resp, tc.wantAllowed, tc.wantMessage)
		})
	}
}

// Without a Clock the Validator decides at the real time.
func TestNilClockIsTheRealClock(t *testing.T) {
	const keyID = "0b5c8f5e-5a0e-4f43-a5a3-1c2d3e4f5a6b"
	key := newKey("payments", "", func(k *kmsv1alpha1.Key) { k.Spec.RestoreFrom = keyID })
	record := access.RecordPolicy(newPolicy("payments", newKey("payments", keyUID), allow([]string{"CancelKeyDeletion"}, alice)))
	for name, tc := range map[string]struct {
		destroyAfter time.Time
		wantAllowed  bool
		wantMessage  string
	}{
		"within the window": {destroyAfter: time.Now().Add(time.Hour), wantAllowed: true},
		"past it":           {destroyAfter: time.Now().Add(-time.Second), wantMessage: "within its deletion window"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			f.v.Clock = nil
			v := tombstone(keyID, "payments", record)
			v.DestroyAfter = tc.destroyAfter
			f.tombstones = []keystore.Version{v}
			wantResponse(t, f.handle(t, KeyPath, request(t, admissionv1.Create, alice, key, nil)), tc.wantAllowed, tc.wantMessage)
		})
	}
}

// RBAC is asked about the whole user: an authorizer may decide on groups,
// UID or Extra (the pod a token was issued for).
func TestRBACIsAskedAboutTheWholeUser(t *testing.T) {
	f := newFixture(t)
	f.rbac.allow[bob+" rotate"] = true
	user := authenticationv1.UserInfo{Username: bob, UID: "bob-uid", Groups: []string{"ops"}, Extra: map[string]authenticationv1.ExtraValue{"pod": {"api-1"}}}
	ok, by, err := f.v.rbac(context.Background(), user, ns, "payments", "Rotate")()
	if err != nil || !ok || by != "fake rbac" {
		t.Fatalf("rbac = %v, %q, %v", ok, by, err)
	}
	p := f.rbac.last.Principal
	if f.rbac.last.Action != "rotate" || p.UID != "bob-uid" || !slices.Equal(p.Groups, []string{"ops"}) || !slices.Equal(p.Extra["pod"], []string{"api-1"}) {
		t.Fatalf("RBAC was asked %+v about %+v", f.rbac.last, p)
	}
}
