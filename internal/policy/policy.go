// Package policy decides data-plane access to a key from its KeyPolicy, its
// KeyGrants and RBAC, as AWS KMS decides from key policies, grants and IAM.
// It is pure: RBAC is asked through a function, only when a rule needs it.
//
// The rules, in order:
//  1. An explicit Deny statement that matches always wins.
//  2. Otherwise an Allow statement that matches allows; a statement whose
//     principals are {rbac: true} matches whom RBAC allows (AWS's "Enable
//     IAM policies").
//  3. Otherwise an active grant whose grantee, operation and constraints
//     match allows.
//  4. Otherwise, only when the key has no KeyPolicy (the default policy),
//     RBAC decides.
//  5. Otherwise access is denied.
package policy

import (
	"fmt"
	"maps"
	"strings"
)

// Effect of a statement.
type Effect string

const (
	Allow Effect = "Allow"
	Deny  Effect = "Deny"
)

// Principals a statement is about.
type Principals struct {
	// ServiceAccounts as "namespace/name" or "namespace/*".
	ServiceAccounts []string
	Users           []string
	Groups          []string
	// RBAC delegates to Kubernetes RBAC: whom RBAC allows the action.
	RBAC bool
}

// Conditions on the encryption context, as AWS defines them: Equals needs
// exactly these pairs and no others, Subset needs at least these pairs. A
// request without an encryption context never satisfies a condition that
// names pairs.
type Conditions struct {
	EncryptionContextEquals map[string]string
	EncryptionContextSubset map[string]string
}

// Statement of a KeyPolicy.
type Statement struct {
	Sid        string
	Effect     Effect
	Principals Principals
	// Actions: operation names, "*", or a prefix ending in "*".
	Actions    []string
	Conditions Conditions
}

// Policy is an accepted KeyPolicy.
type Policy struct {
	Name       string
	Statements []Statement
}

// Grantee of a grant: exactly one of ServiceAccount ("namespace/name"),
// User and Group. ServiceAccountUID, when set, must be the caller's: a
// deleted and re-created account does not inherit the grant.
type Grantee struct {
	ServiceAccount    string
	ServiceAccountUID string
	User              string
	Group             string
}

// Grant is an active KeyGrant (expired and invalid ones are left out by
// the caller).
type Grant struct {
	Name        string
	Grantee     Grantee
	Operations  []string
	Constraints Conditions
}

// Principal is the authenticated caller.
type Principal struct {
	Username string
	// UID is the user's UID; for a ServiceAccount, the account's UID.
	UID    string
	Groups []string
	// Namespace and ServiceAccount are set for ServiceAccount callers.
	Namespace, ServiceAccount string
}

// Request is one access question.
type Request struct {
	Principal         Principal
	Action            string
	EncryptionContext map[string]string
}

// RBACFunc asks RBAC whether the principal may perform the action on the
// key; it returns what decided (for explanations).
type RBACFunc func() (allowed bool, reason string, err error)

// Decision is the answer and what decided it.
type Decision struct {
	Allowed bool
	// DecidedBy names the statement, grant or RBAC rule that decided, or
	// "" when nothing allowed it.
	DecidedBy string
	// Explanation says it in a sentence.
	Explanation string
}

// Evaluate applies the rules. policy is nil when the key has no accepted
// KeyPolicy.
func Evaluate(req Request, policy *Policy, grants []Grant, rbac RBACFunc) (Decision, error) {
	asked := false
	var rbacAllowed bool
	var rbacReason string
	askRBAC := func() (bool, error) {
		if !asked {
			var err error
			if rbacAllowed, rbacReason, err = rbac(); err != nil {
				return false, err
			}
			asked = true
		}
		return rbacAllowed, nil
	}

	if policy != nil {
		for _, effect := range []Effect{Deny, Allow} {
			for _, st := range policy.Statements {
				if st.Effect != effect || !actionMatches(st.Actions, req.Action) || !conditionsHold(st.Conditions, req.EncryptionContext) {
					continue
				}
				matched, viaRBAC := principalMatches(st.Principals, req.Principal), false
				if !matched && st.Principals.RBAC {
					ok, err := askRBAC()
					if err != nil {
						return Decision{}, err
					}
					matched, viaRBAC = ok, ok
				}
				if !matched {
					continue
				}
				by := fmt.Sprintf("KeyPolicy %s statement %q", policy.Name, st.Sid)
				if viaRBAC {
					by += " (delegating to RBAC: " + rbacReason + ")"
				}
				if effect == Deny {
					return Decision{Allowed: false, DecidedBy: by, Explanation: fmt.Sprintf("%s explicitly denies %s", by, req.Action)}, nil
				}
				return Decision{Allowed: true, DecidedBy: by, Explanation: fmt.Sprintf("%s allows %s", by, req.Action)}, nil
			}
		}
	}
	for _, g := range grants {
		if g.Grantee.Matches(req.Principal) && actionMatches(g.Operations, req.Action) && conditionsHold(g.Constraints, req.EncryptionContext) {
			by := "KeyGrant " + g.Name
			return Decision{Allowed: true, DecidedBy: by, Explanation: fmt.Sprintf("%s allows %s", by, req.Action)}, nil
		}
	}
	if policy == nil {
		ok, err := askRBAC()
		if err != nil {
			return Decision{}, err
		}
		by := "RBAC (no KeyPolicy): " + rbacReason
		if ok {
			return Decision{Allowed: true, DecidedBy: by, Explanation: by + " allows " + req.Action}, nil
		}
		return Decision{Explanation: fmt.Sprintf("no KeyPolicy, no grant and no RBAC rule allows %s", req.Action)}, nil
	}
	return Decision{Explanation: fmt.Sprintf("no statement of KeyPolicy %s and no grant allows %s", policy.Name, req.Action)}, nil
}

// actionMatches: "*", an exact name, or a prefix ending in "*"; names
// compare case-insensitively, as AWS's do.
func actionMatches(patterns []string, action string) bool {
	for _, p := range patterns {
		if p == "*" {
			return true
		}
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if len(action) >= len(prefix) && strings.EqualFold(action[:len(prefix)], prefix) {
				return true
			}
			continue
		}
		if strings.EqualFold(p, action) {
			return true
		}
	}
	return false
}

func principalMatches(ps Principals, p Principal) bool {
	if p.ServiceAccount != "" {
		for _, sa := range ps.ServiceAccounts {
			ns, name, ok := strings.Cut(sa, "/")
			if ok && ns == p.Namespace && (name == "*" || name == p.ServiceAccount) {
				return true
			}
		}
	}
	for _, u := range ps.Users {
		if u == p.Username {
			return true
		}
	}
	for _, g := range ps.Groups {
		for _, pg := range p.Groups {
			if g == pg {
				return true
			}
		}
	}
	return false
}

// Matches says whether p is the principal g names: the ServiceAccount
// (and, when set, of that UID), the user, or a member of the group.
func (g Grantee) Matches(p Principal) bool {
	switch {
	case g.ServiceAccount != "":
		ns, name, ok := strings.Cut(g.ServiceAccount, "/")
		return ok && p.ServiceAccount != "" && ns == p.Namespace && name == p.ServiceAccount &&
			(g.ServiceAccountUID == "" || g.ServiceAccountUID == p.UID)
	case g.User != "":
		return g.User == p.Username
	case g.Group != "":
		for _, pg := range p.Groups {
			if pg == g.Group {
				return true
			}
		}
	}
	return false
}

func conditionsHold(c Conditions, ctx map[string]string) bool {
	if len(c.EncryptionContextEquals) > 0 && (len(ctx) == 0 || !maps.Equal(c.EncryptionContextEquals, ctx)) {
		return false
	}
	if len(c.EncryptionContextSubset) > 0 {
		if len(ctx) == 0 {
			return false
		}
		for k, v := range c.EncryptionContextSubset {
			if got, ok := ctx[k]; !ok || got != v {
				return false
			}
		}
	}
	return true
}
