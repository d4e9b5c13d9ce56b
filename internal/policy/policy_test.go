package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

var (
	api      = Principal{Username: "system:serviceaccount:shop:api", UID: "uid-api", Namespace: "shop", ServiceAccount: "api", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:shop"}}
	frontend = Principal{Username: "system:serviceaccount:web:frontend", UID: "uid-fe", Namespace: "web", ServiceAccount: "frontend", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:web"}}
	alice    = Principal{Username: "alice", UID: "uid-alice", Groups: []string{"devs", "system:authenticated"}}
	shop     = map[string]string{"tenant": "shop"}
)

type stmtOption func(*Statement)

func stmt(sid string, effect Effect, opts ...stmtOption) Statement {
	s := Statement{Sid: sid, Effect: effect, Actions: []string{"*"}}
	for _, o := range opts {
		o(&s)
	}
	return s
}
func sas(v ...string) stmtOption     { return func(s *Statement) { s.Principals.ServiceAccounts = v } }
func users(v ...string) stmtOption   { return func(s *Statement) { s.Principals.Users = v } }
func groups(v ...string) stmtOption  { return func(s *Statement) { s.Principals.Groups = v } }
func viaRBAC() stmtOption            { return func(s *Statement) { s.Principals.RBAC = true } }
func actions(v ...string) stmtOption { return func(s *Statement) { s.Actions = v } }
func equals(c map[string]string) stmtOption {
	return func(s *Statement) { s.Conditions.EncryptionContextEquals = c }
}
func subset(c map[string]string) stmtOption {
	return func(s *Statement) { s.Conditions.EncryptionContextSubset = c }
}
func policy(st ...Statement) *Policy { return &Policy{Name: "payments", Statements: st} }

func grantTo(name string, g Grantee, ops []string, c Conditions) Grant {
	return Grant{Name: name, Grantee: g, Operations: ops, Constraints: c}
}

func rbacSays(allowed bool) RBACFunc {
	return func() (bool, string, error) { return allowed, "RoleBinding x", nil }
}

func TestEvaluateMatrix(t *testing.T) {
	frontendGrant := grantTo("fe-decrypt", Grantee{ServiceAccount: "web/frontend"}, []string{"Decrypt", "GenerateDataKey"}, Conditions{})
	tests := map[string]struct {
		principal   Principal
		action      string
		ctx         map[string]string
		policy      *Policy
		grants      []Grant
		rbac        bool
		wantAllowed bool
		wantBy      string
	}{
		// No policy: RBAC decides, grants add.
		"no policy, RBAC allows":        {principal: api, action: "Encrypt", rbac: true, wantAllowed: true, wantBy: "RBAC (no KeyPolicy)"},
		"no policy, RBAC denies":        {principal: api, action: "Encrypt"},
		"no policy, grant allows":       {principal: frontend, action: "Decrypt", grants: []Grant{frontendGrant}, wantAllowed: true, wantBy: "KeyGrant fe-decrypt"},
		"no policy, grant for other op": {principal: frontend, action: "Encrypt", grants: []Grant{frontendGrant}},
		"no policy, grant and RBAC":     {principal: frontend, action: "Decrypt", grants: []Grant{frontendGrant}, rbac: true, wantAllowed: true, wantBy: "KeyGrant"},
		// Statements.
		"allow exact SA":                   {principal: api, action: "Encrypt", policy: policy(stmt("A", Allow, sas("shop/api"))), wantAllowed: true, wantBy: `statement "A"`},
		"allow SA wildcard in namespace":   {principal: api, action: "Encrypt", policy: policy(stmt("A", Allow, sas("shop/*"))), wantAllowed: true},
		"SA wildcard of another namespace": {principal: frontend, action: "Encrypt", policy: policy(stmt("A", Allow, sas("shop/*")))},
		"other SA in same namespace":       {principal: api, action: "Encrypt", policy: policy(stmt("A", Allow, sas("shop/worker")))},
		"SA pattern without namespace":     {principal: api, action: "Encrypt", policy: policy(stmt("A", Allow, sas("api")))},
		"allow by user":                    {principal: alice, action: "Decrypt", policy: policy(stmt("A", Allow, users("alice"))), wantAllowed: true},
		"user entry does not match an SA":  {principal: api, action: "Decrypt", policy: policy(stmt("A", Allow, users("api")))},
		"allow by group":                   {principal: alice, action: "Decrypt", policy: policy(stmt("A", Allow, groups("devs"))), wantAllowed: true},
		"allow by SA group":                {principal: api, action: "Decrypt", policy: policy(stmt("A", Allow, groups("system:serviceaccounts:shop"))), wantAllowed: true},
		"no matching principal":            {principal: alice, action: "Decrypt", policy: policy(stmt("A", Allow, groups("ops")))},
		"policy ignores RBAC by default":   {principal: api, action: "Encrypt", policy: policy(stmt("A", Allow, users("bob"))), rbac: true},
		// Actions.
		"action wildcard":              {principal: api, action: "ReEncryptFrom", policy: policy(stmt("A", Allow, sas("shop/api"), actions("*"))), wantAllowed: true},
		"action suffix wildcard":       {principal: api, action: "GenerateDataKeyWithoutPlaintext", policy: policy(stmt("A", Allow, sas("shop/api"), actions("GenerateDataKey*"))), wantAllowed: true},
		"suffix wildcard exact prefix": {principal: api, action: "GenerateDataKey", policy: policy(stmt("A", Allow, sas("shop/api"), actions("GenerateDataKey*"))), wantAllowed: true},
		"suffix wildcard no match":     {principal: api, action: "Encrypt", policy: policy(stmt("A", Allow, sas("shop/api"), actions("GenerateDataKey*")))},
		"action case-insensitive":      {principal: api, action: "Decrypt", policy: policy(stmt("A", Allow, sas("shop/api"), actions("decrypt"))), wantAllowed: true},
		"action not listed":            {principal: api, action: "Decrypt", policy: policy(stmt("A", Allow, sas("shop/api"), actions("Encrypt")))},
		// Deny wins.
		"deny over allow":                 {principal: api, action: "Decrypt", policy: policy(stmt("A", Allow, sas("shop/api")), stmt("D", Deny, sas("shop/api"), actions("Decrypt"))), wantBy: `statement "D"`},
		"deny over allow, order reversed": {principal: api, action: "Decrypt", policy: policy(stmt("D", Deny, sas("shop/api"), actions("Decrypt")), stmt("A", Allow, sas("shop/api")))},
		"deny of another action":          {principal: api, action: "Encrypt", policy: policy(stmt("A", Allow, sas("shop/api")), stmt("D", Deny, sas("shop/api"), actions("Decrypt"))), wantAllowed: true},
		"deny over grant":                 {principal: frontend, action: "Decrypt", policy: policy(stmt("D", Deny, sas("web/*"))), grants: []Grant{frontendGrant}, wantBy: `statement "D"`},
		"deny over RBAC delegation":       {principal: api, action: "Decrypt", policy: policy(stmt("R", Allow, viaRBAC()), stmt("D", Deny, groups("system:serviceaccounts"))), rbac: true},
		"deny by group over user allow":   {principal: alice, action: "Encrypt", policy: policy(stmt("A", Allow, users("alice")), stmt("D", Deny, groups("devs")))},
		// RBAC delegation.
		"rbac delegation allows":             {principal: api, action: "Encrypt", policy: policy(stmt("R", Allow, viaRBAC())), rbac: true, wantAllowed: true, wantBy: "delegating to RBAC"},
		"rbac delegation, RBAC denies":       {principal: api, action: "Encrypt", policy: policy(stmt("R", Allow, viaRBAC()))},
		"rbac delegation for listed actions": {principal: api, action: "Decrypt", policy: policy(stmt("R", Allow, viaRBAC(), actions("Encrypt"))), rbac: true},
		// Conditions on statements.
		"equals holds":                           {principal: api, action: "Decrypt", ctx: shop, policy: policy(stmt("A", Allow, sas("shop/api"), equals(shop))), wantAllowed: true},
		"equals with extra pair fails":           {principal: api, action: "Decrypt", ctx: map[string]string{"tenant": "shop", "x": "y"}, policy: policy(stmt("A", Allow, sas("shop/api"), equals(shop)))},
		"equals other value fails":               {principal: api, action: "Decrypt", ctx: map[string]string{"tenant": "web"}, policy: policy(stmt("A", Allow, sas("shop/api"), equals(shop)))},
		"equals without context fails":           {principal: api, action: "Decrypt", policy: policy(stmt("A", Allow, sas("shop/api"), equals(shop)))},
		"subset holds with extra pair":           {principal: api, action: "Decrypt", ctx: map[string]string{"tenant": "shop", "x": "y"}, policy: policy(stmt("A", Allow, sas("shop/api"), subset(shop))), wantAllowed: true},
		"subset missing pair fails":              {principal: api, action: "Decrypt", ctx: map[string]string{"x": "y"}, policy: policy(stmt("A", Allow, sas("shop/api"), subset(shop)))},
		"subset without context fails":           {principal: api, action: "DescribeKey", policy: policy(stmt("A", Allow, sas("shop/api"), subset(shop)))},
		"values are case-sensitive":              {principal: api, action: "Decrypt", ctx: map[string]string{"tenant": "Shop"}, policy: policy(stmt("A", Allow, sas("shop/api"), equals(shop)))},
		"deny with condition only when it holds": {principal: api, action: "Decrypt", ctx: map[string]string{"tenant": "web"}, policy: policy(stmt("A", Allow, sas("shop/api")), stmt("D", Deny, sas("shop/api"), equals(shop))), wantAllowed: true},
		// Grants.
		"grant to SA in another namespace": {principal: frontend, action: "Decrypt", policy: policy(stmt("A", Allow, sas("shop/api"))), grants: []Grant{frontendGrant}, wantAllowed: true, wantBy: "KeyGrant fe-decrypt"},
		"grant to another SA":              {principal: api, action: "Decrypt", policy: policy(), grants: []Grant{frontendGrant}},
		"grant bound to the SA's UID":      {principal: frontend, action: "Decrypt", policy: policy(), grants: []Grant{grantTo("g", Grantee{ServiceAccount: "web/frontend", ServiceAccountUID: "uid-fe"}, []string{"Decrypt"}, Conditions{})}, wantAllowed: true},
		"re-created SA does not inherit":   {principal: frontend, action: "Decrypt", policy: policy(), grants: []Grant{grantTo("g", Grantee{ServiceAccount: "web/frontend", ServiceAccountUID: "uid-old"}, []string{"Decrypt"}, Conditions{})}},
		"grant to a user":                  {principal: alice, action: "Encrypt", policy: policy(), grants: []Grant{grantTo("g", Grantee{User: "alice"}, []string{"Encrypt"}, Conditions{})}, wantAllowed: true},
		"grant to a group":                 {principal: alice, action: "Encrypt", policy: policy(), grants: []Grant{grantTo("g", Grantee{Group: "devs"}, []string{"Encrypt"}, Conditions{})}, wantAllowed: true},
		"grant with context constraint":    {principal: frontend, action: "Decrypt", ctx: shop, policy: policy(), grants: []Grant{grantTo("g", Grantee{ServiceAccount: "web/frontend"}, []string{"Decrypt"}, Conditions{EncryptionContextEquals: shop})}, wantAllowed: true},
		"grant constraint, other context":  {principal: frontend, action: "Decrypt", ctx: map[string]string{"tenant": "web"}, policy: policy(), grants: []Grant{grantTo("g", Grantee{ServiceAccount: "web/frontend"}, []string{"Decrypt"}, Conditions{EncryptionContextEquals: shop})}},
		"grant constraint, no context":     {principal: frontend, action: "Decrypt", policy: policy(), grants: []Grant{grantTo("g", Grantee{ServiceAccount: "web/frontend"}, []string{"Decrypt"}, Conditions{EncryptionContextSubset: shop})}},
		"grant operation wildcard":         {principal: frontend, action: "GenerateDataKeyWithoutPlaintext", policy: policy(), grants: []Grant{grantTo("g", Grantee{ServiceAccount: "web/frontend"}, []string{"GenerateDataKey*"}, Conditions{})}, wantAllowed: true},
		// A policy turns the RBAC default off.
		"empty policy denies RBAC-allowed": {principal: api, action: "Encrypt", policy: policy(), rbac: true},
	}
	if len(tests) < 40 {
		t.Fatalf("the matrix has %d cases, want at least 40", len(tests))
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d, err := Evaluate(Request{Principal: tc.principal, Action: tc.action, EncryptionContext: tc.ctx}, tc.policy, tc.grants, rbacSays(tc.rbac))
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != tc.wantAllowed {
				t.Fatalf("Allowed = %v, want %v (%s)", d.Allowed, tc.wantAllowed, d.Explanation)
			}
			if tc.wantBy != "" && !strings.Contains(d.DecidedBy, tc.wantBy) {
				t.Fatalf("DecidedBy = %q, want it to name %q", d.DecidedBy, tc.wantBy)
			}
			if d.Explanation == "" {
				t.Fatal("no explanation")
			}
			if want := reference(tc.principal, tc.action, tc.ctx, tc.policy, tc.grants, tc.rbac); want != d.Allowed {
				t.Fatalf("the reference model says %v", want)
			}
		})
	}
}

func TestRBACIsAskedOnlyWhenARuleNeedsIt(t *testing.T) {
	calls := 0
	counting := func() (bool, string, error) { calls++; return true, "", nil }
	_, _ = Evaluate(Request{Principal: api, Action: "Encrypt"}, policy(stmt("A", Allow, sas("shop/api"))), nil, counting)
	if calls != 0 {
		t.Fatalf("RBAC asked %d times for a policy that does not delegate", calls)
	}
	_, _ = Evaluate(Request{Principal: api, Action: "Encrypt"}, policy(stmt("R1", Deny, viaRBAC(), actions("Decrypt")), stmt("R2", Allow, viaRBAC()), stmt("R3", Allow, viaRBAC())), nil, counting)
	if calls != 1 {
		t.Fatalf("RBAC asked %d times, want once per evaluation", calls)
	}
}

func TestRBACErrorsAreReturned(t *testing.T) {
	failing := func() (bool, string, error) { return false, "", errors.New("API server unavailable") }
	if _, err := Evaluate(Request{Principal: api, Action: "Encrypt"}, nil, nil, failing); err == nil {
		t.Fatal("an RBAC failure must be an error, not a denial")
	}
}

// reference is a second, deliberately different formulation of the rules,
// for the fuzz test and the matrix: sets of matching effects, regular
// expressions for actions.
func reference(p Principal, action string, ctx map[string]string, pol *Policy, grants []Grant, rbac bool) bool {
	ids := map[string]bool{"user:" + p.Username: true}
	if p.ServiceAccount != "" {
		ids["sa:"+p.Namespace+"/"+p.ServiceAccount] = true
		ids["sa:"+p.Namespace+"/*"] = true
	}
	for _, g := range p.Groups {
		ids["group:"+g] = true
	}
	actionRE := func(pats []string) bool {
		for _, pat := range pats {
			re := "(?i)^" + regexp.QuoteMeta(strings.TrimSuffix(pat, "*"))
			if strings.HasSuffix(pat, "*") {
				re += ".*"
			}
			if regexp.MustCompile(re + "$").MatchString(action) {
				return true
			}
		}
		return false
	}
	cond := func(c Conditions) bool {
		if len(c.EncryptionContextEquals) > 0 {
			if len(ctx) != len(c.EncryptionContextEquals) {
				return false
			}
			for k, v := range c.EncryptionContextEquals {
				if w, ok := ctx[k]; !ok || w != v {
					return false
				}
			}
		}
		for k, v := range c.EncryptionContextSubset {
			if w, ok := ctx[k]; !ok || w != v {
				return false
			}
		}
		return true
	}
	effects := map[Effect]bool{}
	if pol != nil {
		for _, st := range pol.Statements {
			who := st.Principals.RBAC && rbac
			for _, sa := range st.Principals.ServiceAccounts {
				who = who || ids["sa:"+sa]
			}
			for _, u := range st.Principals.Users {
				who = who || ids["user:"+u]
			}
			for _, g := range st.Principals.Groups {
				who = who || ids["group:"+g]
			}
			if who && actionRE(st.Actions) && cond(st.Conditions) {
				effects[st.Effect] = true
			}
		}
	}
	granted := false
	for _, g := range grants {
		who := false
		switch {
		case g.Grantee.ServiceAccount != "":
			who = ids["sa:"+g.Grantee.ServiceAccount] && !strings.HasSuffix(g.Grantee.ServiceAccount, "/*") && (g.Grantee.ServiceAccountUID == "" || g.Grantee.ServiceAccountUID == p.UID)
		case g.Grantee.User != "":
			who = ids["user:"+g.Grantee.User]
		case g.Grantee.Group != "":
			who = ids["group:"+g.Grantee.Group]
		}
		granted = granted || (who && actionRE(g.Operations) && cond(g.Constraints))
	}
	if effects[Deny] {
		return false
	}
	return effects[Allow] || granted || (pol == nil && rbac)
}

// FuzzEvaluate compares the evaluator with the reference model on random
// small policies, grants and requests.
func FuzzEvaluate(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte("a policy with several statements and grants"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &byteReader{data: data}
		principals := []Principal{api, frontend, alice, {Username: "system:serviceaccount:web:frontend", UID: "uid-new", Namespace: "web", ServiceAccount: "frontend"}}
		actionNames := []string{"Encrypt", "Decrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "DescribeKey", "ReEncryptFrom"}
		patterns := []string{"*", "Encrypt", "decrypt", "GenerateDataKey*", "Gen*", "DescribeKey", "Re*"}
		saPats := []string{"shop/api", "shop/*", "web/frontend", "web/*", "api", "*"}
		contexts := []map[string]string{nil, shop, {"tenant": "web"}, {"tenant": "shop", "x": "y"}, {"x": "y"}}
		conds := func() Conditions {
			switch r.n(4) {
			case 1:
				return Conditions{EncryptionContextEquals: contexts[1+r.n(len(contexts)-1)]}
			case 2:
				return Conditions{EncryptionContextSubset: contexts[1+r.n(len(contexts)-1)]}
			}
			return Conditions{}
		}
		pick := func(vocab []string) []string {
			var out []string
			for range r.n(3) {
				out = append(out, vocab[r.n(len(vocab))])
			}
			return out
		}
		var pol *Policy
		if r.n(3) > 0 {
			pol = &Policy{Name: "p"}
			for i := range r.n(4) {
				st := Statement{Sid: fmt.Sprint(i), Effect: []Effect{Allow, Deny}[r.n(2)], Actions: pick(patterns), Conditions: conds()}
				st.Principals = Principals{ServiceAccounts: pick(saPats), Users: pick([]string{"alice", "bob"}), Groups: pick([]string{"devs", "system:serviceaccounts:web"}), RBAC: r.n(4) == 0}
				pol.Statements = append(pol.Statements, st)
			}
		}
		var grants []Grant
		for i := range r.n(3) {
			g := Grantee{}
			switch r.n(3) {
			case 0:
				g.ServiceAccount = saPats[r.n(len(saPats))]
				if r.n(2) == 0 {
					g.ServiceAccountUID = []string{"uid-fe", "uid-api", "uid-old"}[r.n(3)]
				}
			case 1:
				g.User = []string{"alice", "bob"}[r.n(2)]
			default:
				g.Group = []string{"devs", "system:serviceaccounts:shop"}[r.n(2)]
			}
			grants = append(grants, Grant{Name: fmt.Sprint(i), Grantee: g, Operations: pick(patterns), Constraints: conds()})
		}
		p := principals[r.n(len(principals))]
		action := actionNames[r.n(len(actionNames))]
		ctx := contexts[r.n(len(contexts))]
		rbac := r.n(2) == 0
		d, err := Evaluate(Request{Principal: p, Action: action, EncryptionContext: ctx}, pol, grants, rbacSays(rbac))
		if err != nil {
			t.Fatal(err)
		}
		if want := reference(p, action, ctx, pol, grants, rbac); d.Allowed != want {
			t.Fatalf("Evaluate = %v (%s), reference = %v\npolicy %+v\ngrants %+v\nprincipal %+v action %s ctx %v rbac %v",
				d.Allowed, d.Explanation, want, pol, grants, p, action, ctx, rbac)
		}
	})
}

type byteReader struct {
	data []byte
	i    int
}

func (r *byteReader) n(k int) int {
	if k <= 1 || len(r.data) == 0 {
		return 0
	}
	b := r.data[r.i%len(r.data)]
	r.i++
	return int(b) % k
}
