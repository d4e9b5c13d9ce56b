package policy

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

func TestActionTableRows(t *testing.T) {
	seen := map[string]bool{}
	for _, a := range Actions {
		if seen[a.Name] {
			t.Errorf("%s is in the table twice", a.Name)
		}
		seen[a.Name] = true
		// The data plane and the admin webhook ask RBAC for these verbs, and
		// docs/dataplane.md promises lower(action).
		if a.Verb != strings.ToLower(a.Name) {
			t.Errorf("%s: verb %q, want %q", a.Name, a.Verb, strings.ToLower(a.Name))
		}
		if a.Kind != DataPlane && a.Kind != Admin {
			t.Errorf("%s: kind %q is neither DataPlane nor Admin", a.Name, a.Kind)
		}
		if a.Grantable && a.Kind != DataPlane {
			t.Errorf("%s: a grant gives only data-plane operations", a.Name)
		}
		if got, ok := LookupAction(a.Name); !ok || got.Name != a.Name {
			t.Errorf("LookupAction(%q) = %+v, %v", a.Name, got, ok)
		}
	}
	for action, want := range map[string]string{ActionDecrypt: "decrypt", ActionCancelKeyDeletion: "restore", "restore": ""} {
		if got := DefaultPolicyVerb(action); got != want {
			t.Errorf("DefaultPolicyVerb(%q) = %q, want %q", action, got, want)
		}
	}
	if _, ok := LookupAction("decrypt"); ok {
		t.Error("LookupAction matches only exact names, not decrypt")
	}
}

// The CEL rule on PolicyStatement.actions cannot import Go, so it spells
// the actions out: it must list exactly Actions.
func TestActionsMatchTheCRDRule(t *testing.T) {
	src := readAccessTypes(t)
	m := regexp.MustCompile(`XValidation:rule="self\.actions\.all\([^"]* a in \[([^\]]*)\]\)"`).FindSubmatch(src)
	if m == nil {
		t.Fatal("no CEL rule on actions found in access_types.go")
	}
	var inCRD []string
	for _, a := range strings.Split(string(m[1]), ",") {
		inCRD = append(inCRD, strings.Trim(strings.TrimSpace(a), "'"))
	}
	slices.Sort(inCRD)
	ours := slices.Sorted(slices.Values(ActionNames()))
	if !slices.Equal(inCRD, ours) {
		t.Fatalf("the CRD's CEL rule lists\n  %v\nbut policy.Actions is\n  %v", inCRD, ours)
	}
}

// A KeyGrant's spec.operations enum is exactly the grantable actions.
func TestGrantOperationsAreTheGrantableActions(t *testing.T) {
	src := readAccessTypes(t)
	m := regexp.MustCompile(`(?m)^\s*// \+kubebuilder:validation:items:Enum=(\S+)\n\s*Operations \[\]string`).FindSubmatch(src)
	if m == nil {
		t.Fatal("no enum on KeyGrantSpec.Operations found in access_types.go")
	}
	inCRD := slices.Sorted(slices.Values(strings.Split(string(m[1]), ";")))
	var ours []string
	for _, a := range Actions {
		if a.Grantable {
			ours = append(ours, a.Name)
		}
	}
	slices.Sort(ours)
	if !slices.Equal(inCRD, ours) {
		t.Fatalf("KeyGrant operations enum is\n  %v\nbut the grantable actions are\n  %v", inCRD, ours)
	}
}

func readAccessTypes(t *testing.T) []byte {
	t.Helper()
	src, err := os.ReadFile("../../api/v1alpha1/access_types.go")
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// kubernetesVerbs are the API server's own verbs: kms_roles.yaml grants
// them on keys to manage Key objects; they are not kubekms actions.
var kubernetesVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}

// The shipped ClusterRoles and the table agree: every verb on keys is the
// API server's own or a table verb, and each action's verbs are held by
// exactly the roles its row names.
func TestShippedRolesHoldTheTableVerbs(t *testing.T) {
	holders := keyVerbHolders(t)
	tableVerbs := map[string]bool{}
	for _, a := range Actions {
		tableVerbs[a.Verb] = true
		if a.DefaultPolicyVerb != "" {
			tableVerbs[a.DefaultPolicyVerb] = true
		}
	}
	for verb, roles := range holders {
		if !tableVerbs[verb] && !slices.Contains(kubernetesVerbs, verb) {
			t.Errorf("kms_roles.yaml grants verb %q on keys (%v), which is neither an action's verb nor the API server's", verb, roles)
		}
	}
	for _, a := range Actions {
		var got []string
		for _, verb := range []string{a.Verb, a.DefaultPolicyVerb} {
			if verb != "" {
				got = append(got, holders[verb]...)
			}
		}
		got = slices.Compact(slices.Sorted(slices.Values(got)))
		want := slices.Sorted(slices.Values(a.Roles))
		if !slices.Equal(got, want) {
			t.Errorf("%s (verbs %q %q): held by %v in kms_roles.yaml, the table says %v", a.Name, a.Verb, a.DefaultPolicyVerb, got, want)
		}
	}
}

// keyVerbHolders reads config/rbac/kms_roles.yaml: for each verb on
// keys.kms.kubekms.io, the ClusterRoles that hold it.
func keyVerbHolders(t *testing.T) map[string][]string {
	t.Helper()
	src, err := os.ReadFile("../../config/rbac/kms_roles.yaml")
	if err != nil {
		t.Fatal(err)
	}
	holders := map[string][]string{}
	roles := 0
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(src), -1) {
		var role rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict([]byte(doc), &role); err != nil {
			t.Fatalf("kms_roles.yaml: %v", err)
		}
		if role.Kind != "ClusterRole" {
			continue
		}
		roles++
		for _, r := range role.Rules {
			if !slices.Contains(r.APIGroups, "kms.kubekms.io") || !slices.Contains(r.Resources, "keys") {
				continue
			}
			for _, verb := range r.Verbs {
				if verb == "*" {
					t.Errorf("ClusterRole %s grants every verb on keys, decrypt included", role.Name)
				}
				if !slices.Contains(holders[verb], role.Name) {
					holders[verb] = append(holders[verb], role.Name)
				}
			}
		}
	}
	if roles < 3 || len(holders) == 0 {
		t.Fatalf("kms_roles.yaml: found %d ClusterRoles and %d verbs on keys; is it still the file of shipped roles?", roles, len(holders))
	}
	return holders
}

func TestCanonicalAction(t *testing.T) {
	tests := map[string]struct {
		name, want string
		wantOK     bool
	}{
		"exact":                {name: "Decrypt", want: "Decrypt", wantOK: true},
		"lower case":           {name: "generatedatakey", want: "GenerateDataKey", wantOK: true},
		"dashed":               {name: "generate-data-key-pair", want: "GenerateDataKeyPair", wantOK: true},
		"admin action":         {name: "schedule-deletion", want: "ScheduleDeletion", wantOK: true},
		"an RBAC verb":         {name: "delete"},
		"wildcard":             {name: "*"},
		"prefix":               {name: "Generate*"},
		"operation name":       {name: "ReEncrypt"},
		"empty":                {name: ""},
		"RBAC escalation verb": {name: "escalate"},
		"restore is a verb":    {name: "restore"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := CanonicalAction(tc.name)
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("CanonicalAction(%q) = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}
