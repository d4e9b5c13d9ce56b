// Package access keeps, for each key, its governing KeyPolicy and active
// KeyGrants as the policy evaluator wants them, fed by informers: deleting a
// policy or grant revokes what it allowed as soon as the watch delivers it.
//
// Policies and grants bind to a Key's identity, not its name: each carries an
// ownerReference to the Key it was admitted for (set by the admin webhook at
// creation, immutable after), and the index files it under that Key's UID. A
// later Key of the same name has another UID, so it is governed by nothing it
// did not get itself; the garbage collector deletes the bound objects with
// their Key. What the index answers is a function of the current objects
// only (Governing, grantActive), so replicas that started at different times
// agree once their informers have delivered the same objects.
package access

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/policy"
)

// KeyKind and KeyAPIVersion name a Key in an ownerReference.
var (
	KeyKind       = "Key"
	KeyAPIVersion = kmsv1alpha1.GroupVersion.String()
)

// BoundKey is the UID of the Key an object (KeyPolicy or KeyGrant) is bound
// to: its one ownerReference of kind Key named keyName. Objects with none,
// or several, are bound to nothing.
func BoundKey(refs []metav1.OwnerReference, keyName string) (types.UID, bool) {
	var uid types.UID
	n := 0
	for _, r := range refs {
		if r.Kind != KeyKind || !strings.HasPrefix(r.APIVersion, kmsv1alpha1.GroupVersion.Group+"/") {
			continue
		}
		n++
		if r.Name == keyName {
			uid = r.UID
		}
	}
	return uid, n == 1 && uid != ""
}

// KeyOwnerReference is the ownerReference that binds a policy or grant to key.
func KeyOwnerReference(key *kmsv1alpha1.Key) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: KeyAPIVersion, Kind: KeyKind, Name: key.Name, UID: key.UID}
}

// older orders policies for governing: the oldest wins, ties by name.
func older(aTime time.Time, aName string, bTime time.Time, bName string) bool {
	if !aTime.Equal(bTime) {
		return aTime.Before(bTime)
	}
	return aName < bName
}

// Governing returns the KeyPolicy that governs the Key with this namespace
// and UID among policies: the oldest one bound to it that is not being
// deleted. Nil means the default policy (RBAC).
func Governing(policies []kmsv1alpha1.KeyPolicy, namespace string, key types.UID) *kmsv1alpha1.KeyPolicy {
	var best *kmsv1alpha1.KeyPolicy
	for i := range policies {
		p := &policies[i]
		if uid, ok := BoundKey(p.OwnerReferences, p.Spec.KeyRef.Name); !ok || uid != key || p.Namespace != namespace || !p.DeletionTimestamp.IsZero() {
			continue
		}
		if best == nil || older(p.CreationTimestamp.Time, p.Name, best.CreationTimestamp.Time, best.Name) {
			best = p
		}
	}
	return best
}

// GrantActive says whether a KeyGrant allows anything at now for the Key
// with this namespace and UID: bound to it, not being deleted, Active
// (its grantee exists; the controller says so) and not past expiresAt.
func GrantActive(g *kmsv1alpha1.KeyGrant, namespace string, key types.UID, now time.Time) bool {
	uid, ok := BoundKey(g.OwnerReferences, g.Spec.KeyRef.Name)
	return ok && uid == key && g.Namespace == namespace && g.DeletionTimestamp.IsZero() &&
		g.Status.State == kmsv1alpha1.KeyGrantActive &&
		(g.Spec.ExpiresAt == nil || now.Before(g.Spec.ExpiresAt.Time))
}

type policyEntry struct {
	namespace string
	name      string
	created   time.Time
	policy    *policy.Policy
}

type grantEntry struct {
	namespace string
	grant     policy.Grant
	expiresAt time.Time
}

// Index is safe for concurrent use.
type Index struct {
	mu sync.RWMutex
	// policies and grants, filed by the UID of the Key they are bound to.
	policies filed[policyEntry]
	grants   filed[grantEntry]
	// governing caches the winner among policies.byKey[uid].
	governing map[types.UID]policyEntry

	synced atomic.Pointer[func() bool]
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{
		policies:  newFiled[policyEntry](),
		grants:    newFiled[grantEntry](),
		governing: map[types.UID]policyEntry{},
	}
}

// filed holds objects of one kind (policies or grants) by the UID of the
// Key each is bound to, then by name, and remembers under which UID each
// object is filed, so that a change or delete finds it without a scan.
type filed[E any] struct {
	byKey map[types.UID]map[string]E
	at    map[types.NamespacedName]types.UID
}

func newFiled[E any]() filed[E] {
	return filed[E]{byKey: map[types.UID]map[string]E{}, at: map[types.NamespacedName]types.UID{}}
}

// put files e, the entry of object nn, under the Key uid.
func (f filed[E]) put(nn types.NamespacedName, uid types.UID, e E) {
	if f.byKey[uid] == nil {
		f.byKey[uid] = map[string]E{}
	}
	f.byKey[uid][nn.Name] = e
	f.at[nn] = uid
}

// drop removes object nn, and says under which Key it was filed (false:
// it was not).
func (f filed[E]) drop(nn types.NamespacedName) (types.UID, bool) {
	uid, ok := f.at[nn]
	if !ok {
		return "", false
	}
	delete(f.at, nn)
	delete(f.byKey[uid], nn.Name)
	if len(f.byKey[uid]) == 0 {
		delete(f.byKey, uid)
	}
	return uid, true
}

// SetSynced tells the index how to know its informers have delivered
// every object they had at start.
func (ix *Index) SetSynced(f func() bool) { ix.synced.Store(&f) }

// Synced says whether the index has seen every policy and grant: until
// then nothing may be decided from it.
func (ix *Index) Synced() bool {
	f := ix.synced.Load()
	return f != nil && (*f)()
}

// For returns the policy governing the Key (namespace, uid) (nil: the
// default policy) and its grants active at now.
func (ix *Index) For(namespace string, key types.UID, now time.Time) (*policy.Policy, []policy.Grant) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var grants []policy.Grant
	for _, g := range ix.grants.byKey[key] {
		if g.namespace == namespace && (g.expiresAt.IsZero() || now.Before(g.expiresAt)) {
			grants = append(grants, g.grant)
		}
	}
	var pol *policy.Policy
	if e, ok := ix.governing[key]; ok && e.namespace == namespace {
		pol = e.policy
	}
	return pol, grants
}

// setPolicy files a policy under its Key, replacing what the index had for
// it; a policy bound to no Key, or being deleted, governs nothing.
func (ix *Index) setPolicy(p *kmsv1alpha1.KeyPolicy) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.dropPolicyLocked(p)
	uid, ok := BoundKey(p.OwnerReferences, p.Spec.KeyRef.Name)
	if !ok || !p.DeletionTimestamp.IsZero() {
		return
	}
	ix.policies.put(nameOf(p), uid, policyEntry{namespace: p.Namespace, name: p.Name, created: p.CreationTimestamp.Time, policy: PolicyFrom(p)})
	ix.elect(uid)
}

func (ix *Index) dropPolicy(p *kmsv1alpha1.KeyPolicy) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.dropPolicyLocked(p)
}

func (ix *Index) dropPolicyLocked(p *kmsv1alpha1.KeyPolicy) {
	if uid, ok := ix.policies.drop(nameOf(p)); ok {
		ix.elect(uid)
	}
}

// elect recomputes the governing policy of one key, as Governing does.
func (ix *Index) elect(uid types.UID) {
	var best *policyEntry
	for _, e := range ix.policies.byKey[uid] {
		if best == nil || older(e.created, e.name, best.created, best.name) {
			best = &e
		}
	}
	if best == nil {
		delete(ix.governing, uid)
		return
	}
	ix.governing[uid] = *best
}

// setGrant files a grant under its Key, replacing what the index had for
// it; only an Active grant bound to a Key, not being deleted, is filed.
func (ix *Index) setGrant(g *kmsv1alpha1.KeyGrant) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.grants.drop(nameOf(g))
	uid, ok := BoundKey(g.OwnerReferences, g.Spec.KeyRef.Name)
	if !ok || g.Status.State != kmsv1alpha1.KeyGrantActive || !g.DeletionTimestamp.IsZero() {
		return
	}
	e := grantEntry{namespace: g.Namespace, grant: GrantFrom(g)}
	if g.Spec.ExpiresAt != nil {
		e.expiresAt = g.Spec.ExpiresAt.Time
	}
	ix.grants.put(nameOf(g), uid, e)
}

func (ix *Index) dropGrant(g *kmsv1alpha1.KeyGrant) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.grants.drop(nameOf(g))
}

func nameOf(o metav1.Object) types.NamespacedName {
	return types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
}

// PolicyFrom converts a KeyPolicy for the evaluator.
func PolicyFrom(p *kmsv1alpha1.KeyPolicy) *policy.Policy {
	return policyFrom(p.Name, p.Spec.Statements)
}

// InitialPolicy converts a Key's spec.initialPolicy for the evaluator; nil
// when it has none. It governs the key while no KeyPolicy is bound to it.
func InitialPolicy(key *kmsv1alpha1.Key) *policy.Policy {
	if key.Spec.InitialPolicy == nil {
		return nil
	}
	return policyFrom(key.Name+" (initialPolicy)", key.Spec.InitialPolicy.Statements)
}

// InitialKeyPolicy is a Key's spec.initialPolicy as a KeyPolicy of that key
// (for the record kept with a deleted key); nil when it has none.
func InitialKeyPolicy(key *kmsv1alpha1.Key) *kmsv1alpha1.KeyPolicy {
	if key.Spec.InitialPolicy == nil {
		return nil
	}
	return &kmsv1alpha1.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, Spec: kmsv1alpha1.KeyPolicySpec{
		KeyRef: kmsv1alpha1.KeyReference{Name: key.Name}, Statements: key.Spec.InitialPolicy.Statements,
		BypassPolicyLockoutSafetyCheck: key.Spec.InitialPolicy.BypassPolicyLockoutSafetyCheck,
	}}
}

func policyFrom(name string, statements []kmsv1alpha1.PolicyStatement) *policy.Policy {
	out := &policy.Policy{Name: name}
	for _, st := range statements {
		s := policy.Statement{
			Sid: st.Sid, Effect: policy.Effect(st.Effect), Actions: st.Actions,
			Principals: policy.Principals{ServiceAccounts: st.Principals.ServiceAccounts, Users: st.Principals.Users, Groups: st.Principals.Groups, RBAC: st.Principals.RBAC},
		}
		if st.Conditions != nil {
			s.Conditions = policy.Conditions{EncryptionContextEquals: st.Conditions.EncryptionContextEquals, EncryptionContextSubset: st.Conditions.EncryptionContextSubset}
		}
		out.Statements = append(out.Statements, s)
	}
	return out
}

// GrantFrom converts an active KeyGrant for the evaluator.
func GrantFrom(g *kmsv1alpha1.KeyGrant) policy.Grant {
	out := policy.Grant{
		Name:       g.Name,
		Grantee:    policy.Grantee{ServiceAccount: g.Spec.Grantee.ServiceAccount, ServiceAccountUID: g.Status.GranteeUID, User: g.Spec.Grantee.User, Group: g.Spec.Grantee.Group},
		Operations: g.Spec.Operations,
	}
	if c := g.Spec.Constraints; c != nil {
		out.Constraints = policy.Conditions{EncryptionContextEquals: c.EncryptionContextEquals, EncryptionContextSubset: c.EncryptionContextSubset}
	}
	return out
}

// PolicyHandler keeps the index in step with a KeyPolicy informer.
func (ix *Index) PolicyHandler() toolscache.ResourceEventHandler {
	return informerHandler(ix.setPolicy, ix.dropPolicy)
}

// GrantHandler keeps the index in step with a KeyGrant informer.
func (ix *Index) GrantHandler() toolscache.ResourceEventHandler {
	return informerHandler(ix.setGrant, ix.dropGrant)
}

// informerHandler calls set for each object of type T an informer adds or
// updates, and drop for each it deletes, including one it only learns was
// deleted (DeletedFinalStateUnknown: the last state it saw). Objects of
// other types are ignored.
func informerHandler[T any](set, drop func(T)) toolscache.ResourceEventHandler {
	with := func(o any, f func(T)) {
		if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
			o = d.Obj
		}
		if t, ok := o.(T); ok {
			f(t)
		}
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { with(o, set) },
		UpdateFunc: func(_, o any) { with(o, set) },
		DeleteFunc: func(o any) { with(o, drop) },
	}
}
