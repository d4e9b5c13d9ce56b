package access

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
)

// world is the API server's objects in a property test: what a fresh
// evaluation reads.
type world struct {
	keys     map[types.NamespacedName]*kmsv1alpha1.Key
	policies map[types.NamespacedName]*kmsv1alpha1.KeyPolicy
	grants   map[types.NamespacedName]*kmsv1alpha1.KeyGrant
	// every key UID ever made, live or deleted, to ask about
	uids  []types.UID
	ns    map[types.UID]string
	clock time.Time
	seq   int
}

// event is what an informer delivers.
type event struct {
	kind   string // policy, grant
	delete bool
	obj    any
}

// replica is an index fed the events from the point it started, after
// a list of what existed then (as an informer does).
type replica struct {
	ix      *Index
	started int
}

func (r *replica) apply(e event) {
	h := r.ix.PolicyHandler()
	if e.kind == "grant" {
		h = r.ix.GrantHandler()
	}
	switch {
	case e.delete:
		h.OnDelete(e.obj)
	default:
		h.OnUpdate(nil, e.obj)
	}
}

// fresh evaluates what governs the key uid in namespace ns from the
// objects alone: the governing policy's name and the names of active grants.
func (w *world) fresh(ns string, uid types.UID, now time.Time) (string, []string) {
	var ps []kmsv1alpha1.KeyPolicy
	for _, p := range w.policies {
		ps = append(ps, *p)
	}
	name := ""
	if p := Governing(ps, ns, uid); p != nil {
		name = p.Name
	}
	var grants []string
	for _, g := range w.grants {
		if GrantActive(g, ns, uid, now) {
			grants = append(grants, g.Name)
		}
	}
	slices.Sort(grants)
	return name, grants
}

func fromIndex(ix *Index, ns string, uid types.UID, now time.Time) (string, []string) {
	pol, gs := ix.For(ns, uid, now)
	name := ""
	if pol != nil {
		name = pol.Name
	}
	var grants []string
	for _, g := range gs {
		grants = append(grants, g.Name)
	}
	slices.Sort(grants)
	return name, grants
}

// step makes one random change, as a user (through the admin webhook and
// CEL) or a controller would, and returns the events it causes.
func (w *world) step(r *rand.Rand) []event {
	w.seq++
	w.clock = w.clock.Add(time.Duration(r.IntN(3)) * time.Second)
	namespaces := []string{"shop", "web"}
	ns := namespaces[r.IntN(2)]
	keyName := fmt.Sprintf("k%d", r.IntN(3))
	nn := types.NamespacedName{Namespace: ns, Name: keyName}
	key := w.keys[nn]
	objName := fmt.Sprintf("o%d", r.IntN(4))
	on := types.NamespacedName{Namespace: ns, Name: objName}
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: ns, Name: objName, CreationTimestamp: metav1.NewTime(w.clock), UID: types.UID(fmt.Sprintf("obj-%d", w.seq))}
	}
	switch r.IntN(9) {
	case 0: // create or delete a Key (deleting it makes its bound objects orphans)
		if key == nil {
			uid := types.UID(fmt.Sprintf("key-%d", w.seq))
			w.keys[nn] = &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: keyName, UID: uid}}
			w.uids = append(w.uids, uid)
			w.ns[uid] = ns
			return nil
		}
		delete(w.keys, nn)
		return nil
	case 1, 2: // create a policy for an existing key (the webhook binds it)
		if key == nil || w.policies[on] != nil {
			return nil
		}
		p := &kmsv1alpha1.KeyPolicy{ObjectMeta: meta(), Spec: kmsv1alpha1.KeyPolicySpec{KeyRef: kmsv1alpha1.KeyReference{Name: keyName},
			Statements: []kmsv1alpha1.PolicyStatement{{Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{Users: []string{objName}}, Actions: []string{"*"}}}}}
		p.OwnerReferences = []metav1.OwnerReference{KeyOwnerReference(key)}
		w.policies[on] = p
		return []event{{kind: "policy", obj: p.DeepCopy()}}
	case 3: // try to re-point a policy: keyRef changes but the binding cannot (CEL, webhook)
		p := w.policies[on]
		if p == nil {
			return nil
		}
		p = p.DeepCopy()
		p.Spec.KeyRef.Name = keyName
		if r.IntN(2) == 0 && key != nil {
			p.OwnerReferences = []metav1.OwnerReference{KeyOwnerReference(key)} // refused at admission: not applied
			return nil
		}
		if p.Spec.KeyRef.Name != w.policies[on].Spec.KeyRef.Name {
			return nil // refused by CEL (keyRef is immutable)
		}
		w.policies[on] = p
		return []event{{kind: "policy", obj: p.DeepCopy()}}
	case 4: // delete a policy, or mark it deleting
		p := w.policies[on]
		if p == nil {
			return nil
		}
		if r.IntN(2) == 0 {
			p = p.DeepCopy()
			p.DeletionTimestamp = &metav1.Time{Time: w.clock}
			w.policies[on] = p
			return []event{{kind: "policy", obj: p.DeepCopy()}}
		}
		delete(w.policies, on)
		return []event{{kind: "policy", delete: true, obj: p.DeepCopy()}}
	case 5, 6: // create a grant, or change its state, expiry or grantee
		g := w.grants[on]
		if g == nil {
			if key == nil {
				return nil
			}
			g = &kmsv1alpha1.KeyGrant{ObjectMeta: meta(), Spec: kmsv1alpha1.KeyGrantSpec{KeyRef: kmsv1alpha1.KeyReference{Name: keyName},
				Grantee: kmsv1alpha1.GrantPrincipal{User: "u" + objName}, Operations: []string{"Decrypt"}}}
			g.OwnerReferences = []metav1.OwnerReference{KeyOwnerReference(key)}
		} else {
			g = g.DeepCopy()
		}
		states := []kmsv1alpha1.KeyGrantState{kmsv1alpha1.KeyGrantActive, kmsv1alpha1.KeyGrantInvalid, kmsv1alpha1.KeyGrantExpired, ""}
		g.Status.State = states[r.IntN(len(states))]
		if r.IntN(3) == 0 {
			g.Spec.ExpiresAt = &metav1.Time{Time: w.clock.Add(time.Duration(r.IntN(5)) * time.Second)}
		}
		g.Spec.Grantee.User = fmt.Sprintf("u%d", r.IntN(3))
		w.grants[on] = g
		return []event{{kind: "grant", obj: g.DeepCopy()}}
	case 7: // delete a grant (the garbage collector, the retiring principal)
		g := w.grants[on]
		if g == nil {
			return nil
		}
		delete(w.grants, on)
		if r.IntN(2) == 0 {
			return []event{{kind: "grant", delete: true, obj: toolscache.DeletedFinalStateUnknown{Key: on.String(), Obj: g.DeepCopy()}}}
		}
		return []event{{kind: "grant", delete: true, obj: g.DeepCopy()}}
	default: // delete a policy seen only as a tombstone of the informer
		p := w.policies[on]
		if p == nil {
			return nil
		}
		delete(w.policies, on)
		return []event{{kind: "policy", delete: true, obj: toolscache.DeletedFinalStateUnknown{Key: on.String(), Obj: p.DeepCopy()}}}
	}
}

// listEvents is what an informer starting now delivers first.
func (w *world) listEvents() []event {
	var out []event
	for _, p := range w.policies {
		out = append(out, event{kind: "policy", obj: p.DeepCopy()})
	}
	for _, g := range w.grants {
		out = append(out, event{kind: "grant", obj: g.DeepCopy()})
	}
	return out
}

// TestIndexAgreesWithFreshEvaluation drives random sequences of creating,
// updating, re-pointing and deleting Keys, KeyPolicies and KeyGrants across
// two namespaces, with replicas that start at different points, and checks
// after every step that each replica decides as a fresh evaluation of the
// objects does, for every key that ever existed (a deleted key's UID must
// find nothing, and a new key of the same name nothing of the old one's).
func TestIndexAgreesWithFreshEvaluation(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 7))
		w := &world{keys: map[types.NamespacedName]*kmsv1alpha1.Key{}, policies: map[types.NamespacedName]*kmsv1alpha1.KeyPolicy{},
			grants: map[types.NamespacedName]*kmsv1alpha1.KeyGrant{}, ns: map[types.UID]string{}, clock: time.Unix(1_700_000_000, 0)}
		steps := 60
		var replicas []*replica
		starts := []int{0, r.IntN(steps), r.IntN(steps)}
		for i := 0; i < steps; i++ {
			for _, s := range starts {
				if s == i {
					rep := &replica{ix: NewIndex(), started: i}
					for _, e := range w.listEvents() {
						rep.apply(e)
					}
					replicas = append(replicas, rep)
				}
			}
			events := w.step(r)
			for _, rep := range replicas {
				for _, e := range events {
					rep.apply(e)
				}
			}
			for _, uid := range w.uids {
				for _, ns := range []string{"shop", "web"} {
					wantPol, wantGrants := w.fresh(ns, uid, w.clock)
					if ns != w.ns[uid] && (wantPol != "" || len(wantGrants) > 0) {
						t.Fatalf("seed %d step %d: key %s of namespace %s governed from namespace %s", seed, i, uid, w.ns[uid], ns)
					}
					for _, rep := range replicas {
						gotPol, gotGrants := fromIndex(rep.ix, ns, uid, w.clock)
						if gotPol != wantPol || !slices.Equal(gotGrants, wantGrants) {
							t.Fatalf("seed %d step %d, replica started at %d, key %s in %s: index says policy %q grants %v, fresh evaluation says %q %v",
								seed, i, rep.started, uid, ns, gotPol, gotGrants, wantPol, wantGrants)
						}
					}
				}
			}
		}
	}
}

func TestBoundKey(t *testing.T) {
	key := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Name: "payments", UID: "uid-1"}}
	other := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "payments", UID: "uid-9"}
	for name, tc := range map[string]struct {
		refs    []metav1.OwnerReference
		keyName string
		wantUID types.UID
		wantOK  bool
	}{
		"bound":                    {refs: []metav1.OwnerReference{KeyOwnerReference(key)}, keyName: "payments", wantUID: "uid-1", wantOK: true},
		"bound among other kinds":  {refs: []metav1.OwnerReference{other, KeyOwnerReference(key)}, keyName: "payments", wantUID: "uid-1", wantOK: true},
		"no reference":             {keyName: "payments"},
		"another kind only":        {refs: []metav1.OwnerReference{other}, keyName: "payments"},
		"keyRef names another key": {refs: []metav1.OwnerReference{KeyOwnerReference(key)}, keyName: "orders"},
		"two keys": {refs: []metav1.OwnerReference{KeyOwnerReference(key),
			{APIVersion: KeyAPIVersion, Kind: KeyKind, Name: "orders", UID: "uid-2"}}, keyName: "payments"},
	} {
		t.Run(name, func(t *testing.T) {
			uid, ok := BoundKey(tc.refs, tc.keyName)
			if ok != tc.wantOK || (ok && uid != tc.wantUID) {
				t.Fatalf("BoundKey = %q, %v; want %q, %v", uid, ok, tc.wantUID, tc.wantOK)
			}
		})
	}
}

func TestDeletedPolicyRecord(t *testing.T) {
	p := &kmsv1alpha1.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Name: "payments"}, Spec: kmsv1alpha1.KeyPolicySpec{
		KeyRef:     kmsv1alpha1.KeyReference{Name: "payments"},
		Statements: []kmsv1alpha1.PolicyStatement{{Sid: "Admins", Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{Users: []string{"alice"}}, Actions: []string{"*"}}},
	}}
	got := ParseDeletedPolicy(RecordPolicy(p))
	if got.Name != "payments" || got.Spec == nil || got.Spec.Statements[0].Sid != "Admins" {
		t.Fatalf("round trip lost the policy: %+v", got)
	}
	if d := ParseDeletedPolicy(RecordPolicy(nil)); d.Spec != nil {
		t.Fatalf("the default policy came back as %+v", d)
	}
	huge := p.DeepCopy()
	for i := range 32 {
		huge.Spec.Statements = append(huge.Spec.Statements, kmsv1alpha1.PolicyStatement{Effect: kmsv1alpha1.PolicyAllow,
			Principals: kmsv1alpha1.PolicyPrincipals{Users: slices.Repeat([]string{fmt.Sprintf("%0512d", i)}, 32)}, Actions: []string{"*"}})
	}
	if d := ParseDeletedPolicy(RecordPolicy(huge)); d.Spec != nil || !d.TooLarge {
		t.Fatalf("a record over the bound: %+v, want TooLarge", d)
	}
	if d := ParseDeletedPolicy("not json"); d.Spec != nil || !d.TooLarge {
		t.Fatalf("a broken record: %+v, want TooLarge (closed)", d)
	}
	if d := ParseDeletedPolicy(""); d.Spec != nil || d.TooLarge {
		t.Fatalf("no record: %+v, want the default policy", d)
	}
}
