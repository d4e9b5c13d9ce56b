// Package access keeps, for each key, its accepted KeyPolicy and active
// KeyGrants as the policy evaluator wants them, fed by informers: deleting a
// policy or grant revokes what it allowed as soon as the watch delivers it.
package access

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/policy"
)

type policyEntry struct {
	name   string
	policy *policy.Policy
}

type grantEntry struct {
	grant     policy.Grant
	expiresAt time.Time
}

// Index is safe for concurrent use.
type Index struct {
	mu       sync.RWMutex
	policies map[types.NamespacedName]policyEntry
	grants   map[types.NamespacedName]map[string]grantEntry
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{policies: map[types.NamespacedName]policyEntry{}, grants: map[types.NamespacedName]map[string]grantEntry{}}
}

// For returns the key's accepted policy (nil: the default policy) and its
// grants active at now.
func (ix *Index) For(namespace, key string, now time.Time) (*policy.Policy, []policy.Grant) {
	k := types.NamespacedName{Namespace: namespace, Name: key}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var grants []policy.Grant
	for _, g := range ix.grants[k] {
		if g.expiresAt.IsZero() || now.Before(g.expiresAt) {
			grants = append(grants, g.grant)
		}
	}
	return ix.policies[k].policy, grants
}

func (ix *Index) setPolicy(p *kmsv1alpha1.KeyPolicy) {
	k := types.NamespacedName{Namespace: p.Namespace, Name: p.Spec.KeyRef.Name}
	accepted := meta.IsStatusConditionTrue(p.Status.Conditions, kmsv1alpha1.KeyPolicyConditionAccepted) && p.DeletionTimestamp.IsZero()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if accepted {
		ix.policies[k] = policyEntry{name: p.Name, policy: PolicyFrom(p)}
	} else if ix.policies[k].name == p.Name {
		delete(ix.policies, k)
	}
}

func (ix *Index) dropPolicy(p *kmsv1alpha1.KeyPolicy) {
	k := types.NamespacedName{Namespace: p.Namespace, Name: p.Spec.KeyRef.Name}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.policies[k].name == p.Name {
		delete(ix.policies, k)
	}
}

func (ix *Index) setGrant(g *kmsv1alpha1.KeyGrant) {
	k := types.NamespacedName{Namespace: g.Namespace, Name: g.Spec.KeyRef.Name}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.dropGrantLocked(g)
	if g.Status.State != kmsv1alpha1.KeyGrantActive || !g.DeletionTimestamp.IsZero() {
		return
	}
	if ix.grants[k] == nil {
		ix.grants[k] = map[string]grantEntry{}
	}
	e := grantEntry{grant: GrantFrom(g)}
	if g.Spec.ExpiresAt != nil {
		e.expiresAt = g.Spec.ExpiresAt.Time
	}
	ix.grants[k][g.Name] = e
}

// dropGrantLocked removes a grant wherever it was (its keyRef may change).
func (ix *Index) dropGrantLocked(g *kmsv1alpha1.KeyGrant) {
	for k, m := range ix.grants {
		if k.Namespace == g.Namespace {
			delete(m, g.Name)
		}
	}
}

// PolicyFrom converts a KeyPolicy for the evaluator.
func PolicyFrom(p *kmsv1alpha1.KeyPolicy) *policy.Policy {
	out := &policy.Policy{Name: p.Name}
	for _, st := range p.Spec.Statements {
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
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { withPolicy(o, ix.setPolicy) },
		UpdateFunc: func(_, o any) { withPolicy(o, ix.setPolicy) },
		DeleteFunc: func(o any) { withPolicy(o, ix.dropPolicy) },
	}
}

// GrantHandler keeps the index in step with a KeyGrant informer.
func (ix *Index) GrantHandler() toolscache.ResourceEventHandler {
	drop := func(g *kmsv1alpha1.KeyGrant) {
		ix.mu.Lock()
		defer ix.mu.Unlock()
		ix.dropGrantLocked(g)
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { withGrant(o, ix.setGrant) },
		UpdateFunc: func(_, o any) { withGrant(o, ix.setGrant) },
		DeleteFunc: func(o any) { withGrant(o, drop) },
	}
}

func withPolicy(o any, f func(*kmsv1alpha1.KeyPolicy)) {
	if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if p, ok := o.(*kmsv1alpha1.KeyPolicy); ok {
		f(p)
	}
}

func withGrant(o any, f func(*kmsv1alpha1.KeyGrant)) {
	if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if g, ok := o.(*kmsv1alpha1.KeyGrant); ok {
		f(g)
	}
}
