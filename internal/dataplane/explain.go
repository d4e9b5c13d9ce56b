package dataplane

import (
	"context"
	"strings"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	"github.com/kubekms/kubekms/internal/authn"
	"github.com/kubekms/kubekms/internal/policy"
)

// ExplainAccess implements KeyManagementService.
func (s *Server) ExplainAccess(ctx context.Context, req *kmsv1.ExplainAccessRequest) (*kmsv1.ExplainAccessResponse, error) {
	return handle(ctx, req, s.explainAccess)
}

// explainAccess answers "may principal P do action A on key K with context
// C, and what decides it", at the call's time. Asking about oneself needs
// nothing more; asking about another principal needs the right to
// administer the key. A caller who may not describe the key learns only
// yes or no, so the answer does not tell which keys exist.
func (s *Server) explainAccess(ctx context.Context, c *call, req *kmsv1.ExplainAccessRequest) (*kmsv1.ExplainAccessResponse, error) {
	if req.Action == "" {
		return nil, errValidation("action is required, e.g. Decrypt")
	}
	// Only kubekms actions: the action becomes an RBAC verb, and any other
	// string would ask RBAC about verbs like delete or escalate on keys.
	action, ok := policy.CanonicalAction(req.Action)
	if !ok {
		return nil, errValidation("action %.64q is not a kubekms action; one of: %s", req.Action, strings.Join(policy.ActionNames(), ", "))
	}
	req.Action = action
	if err := checkContext("encryption_context", req.EncryptionContext); err != nil {
		return nil, err
	}
	caller := c.principal
	subject := caller
	if req.Principal != "" && req.Principal != caller.Username {
		subject = s.principalNamed(ctx, req.Principal)
		key, err := s.authorizedKey(ctx, c, policy.ActionAdminister, nil)
		if err != nil {
			return nil, err
		}
		d, err := s.decide(ctx, c.at, subject, req.Action, key, req.EncryptionContext)
		if err != nil {
			return nil, errInternal()
		}
		return &kmsv1.ExplainAccessResponse{Allowed: d.Allowed, DecidedBy: d.DecidedBy, Explanation: d.Explanation}, nil
	}
	generic := &kmsv1.ExplainAccessResponse{Explanation: caller.Username + " may not " + req.Action + " with key " + req.KeyId + ", or the key does not exist"}
	key := c.named
	if key == nil {
		return generic, nil
	}
	c.use(key, key.CurrentVersion)
	d, err := s.decide(ctx, c.at, subject, req.Action, key, req.EncryptionContext)
	if err != nil {
		return nil, errInternal()
	}
	if !d.Allowed {
		if canDescribe, err := s.decide(ctx, c.at, caller, policy.ActionDescribeKey, key, nil); err != nil || !canDescribe.Allowed {
			return generic, nil
		}
	}
	return &kmsv1.ExplainAccessResponse{Allowed: d.Allowed, DecidedBy: d.DecidedBy, Explanation: d.Explanation}, nil
}

// principalNamed builds the principal of a username, as the API server
// would authenticate it: for a ServiceAccount its groups and (if it exists)
// its UID; for a user, only system:authenticated (other groups are unknown).
func (s *Server) principalNamed(ctx context.Context, username string) *authn.Principal {
	p := &authn.Principal{Username: username, Groups: []string{"system:authenticated"}}
	if rest, ok := strings.CutPrefix(username, "system:serviceaccount:"); ok {
		p.Namespace, p.ServiceAccount, _ = strings.Cut(rest, ":")
		p.Groups = []string{"system:serviceaccounts", "system:serviceaccounts:" + p.Namespace, "system:authenticated"}
		if s.ServiceAccountUID != nil {
			p.UID, _ = s.ServiceAccountUID(ctx, p.Namespace, p.ServiceAccount)
		}
	}
	return p
}
