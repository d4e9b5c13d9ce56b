package dataplane

import (
	"context"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kubekms/kubekms/internal/authn"
	"github.com/kubekms/kubekms/internal/authz"
	"github.com/kubekms/kubekms/internal/keycache"
	"github.com/kubekms/kubekms/internal/policy"
)

// authorizedKey is the key the call's request names (resolved once, by the
// interceptor), once action on it is authorized; it becomes the key the
// call uses, so even a refusal names it in the audit record. An unknown key
// and a forbidden key get the same answer (code, reason and message), and
// the audit record says which it was.
//
// An unknown name is answered without asking RBAC. Asking (a
// SubjectAccessReview per distinct name, as this once did to make both
// answers take as long) let a caller turn every made-up name into a write
// to the API server, at the rate of its quota. What the caller can still
// measure is whether a first, uncached question about a name cost a
// SubjectAccessReview; that was never hidden well: RBAC answers are cached
// for seconds, and a key whose KeyPolicy decides without RBAC already
// answered faster than an unknown name did. At most it tells that a name
// exists, never anything about the key; see docs/dataplane.md.
func (s *Server) authorizedKey(ctx context.Context, c *call, action string, ec map[string]string) (*keycache.Key, error) {
	if c.ref == "" {
		return nil, errValidation("key_id is required: a key name, namespace/name or keyID")
	}
	key := c.named
	if key == nil {
		return nil, errAccessDenied(c.principal.Username, action, c.ref)
	}
	c.use(key, key.CurrentVersion)
	return key, s.authorize(ctx, c, action, c.ref, key, ec)
}

// destinationKey is ReEncrypt's destination: the key ref names (the
// source, c.key, when ref is ""), once ReEncryptTo on it is authorized. It
// becomes the call's destination and never replaces the call's key, the
// source: the audit record names both.
func (s *Server) destinationKey(ctx context.Context, c *call, ref string, ec map[string]string) (*keycache.Key, error) {
	key := c.key
	if ref == "" {
		ref = key.KeyIDString
	} else if key = s.resolve(c, ref); key == nil {
		return nil, errAccessDenied(c.principal.Username, policy.ActionReEncryptTo, ref)
	}
	if err := s.authorize(ctx, c, policy.ActionReEncryptTo, ref, key, ec); err != nil {
		return nil, err
	}
	c.destination = key
	return key, nil
}

// resolve finds the key ref names in the caller's namespace (nil: none).
// The key the request itself names was resolved once already.
func (s *Server) resolve(c *call, ref string) *keycache.Key {
	if ref == c.ref {
		return c.named
	}
	key, err := s.Keys.Resolve(c.principal.Namespace, ref)
	if err != nil {
		return nil
	}
	return key
}

// authorize decides whether the caller may do action on key (named ref in
// the answer) and records what decided it.
func (s *Server) authorize(ctx context.Context, c *call, action, ref string, key *keycache.Key, ec map[string]string) error {
	d, err := s.decide(ctx, c.at, c.principal, action, key, ec)
	if err != nil {
		log.FromContext(ctx).Error(err, "Could not authorize", "action", action)
		return errInternal()
	}
	c.decidedBy = d.DecidedBy
	if !d.Allowed {
		return errAccessDenied(c.principal.Username, action, ref)
	}
	return nil
}

// decide applies the key's policy and the grants active at now, asking
// RBAC only when a rule needs it (internal/policy).
func (s *Server) decide(ctx context.Context, now time.Time, p *authn.Principal, action string, key *keycache.Key, ec map[string]string) (policy.Decision, error) {
	var pol *policy.Policy
	var grants []policy.Grant
	if s.Access != nil {
		pol, grants = s.Access.For(key.Namespace, key.UID, now)
	}
	if pol == nil {
		pol = key.InitialPolicy
	}
	// Under the default policy RBAC decides with the table's default-policy
	// verb (restore for CancelKeyDeletion, as the admin webhook asks); a
	// statement with principals {rbac: true} asks the action's own verb.
	rbacAction := action
	if pol == nil {
		if v := policy.DefaultPolicyVerb(action); v != "" {
			rbacAction = v
		}
	}
	return policy.Evaluate(policy.Request{
		Principal:         policy.Principal{Username: p.Username, UID: p.UID, Groups: p.Groups, Namespace: p.Namespace, ServiceAccount: p.ServiceAccount},
		Action:            action,
		EncryptionContext: ec,
	}, pol, grants, func() (bool, string, error) {
		d, err := s.Authorizer.Authorize(ctx, authz.Request{Principal: p, Action: rbacAction, Namespace: key.Namespace, Name: key.Name})
		return d.Allowed, d.DecidedBy, err
	})
}
