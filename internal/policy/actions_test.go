package policy

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The CEL rule on PolicyStatement.actions cannot import Go, so it spells
// the actions out: it must list exactly Actions.
func TestActionsMatchTheCRDRule(t *testing.T) {
	src, err := os.ReadFile("../../api/v1alpha1/access_types.go")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`XValidation:rule="self\.actions\.all\([^"]* a in \[([^\]]*)\]\)"`).FindSubmatch(src)
	if m == nil {
		t.Fatal("no CEL rule on actions found in access_types.go")
	}
	var inCRD []string
	for _, a := range strings.Split(string(m[1]), ",") {
		inCRD = append(inCRD, strings.Trim(strings.TrimSpace(a), "'"))
	}
	slices.Sort(inCRD)
	ours := slices.Sorted(slices.Values(Actions))
	if !slices.Equal(inCRD, ours) {
		t.Fatalf("the CRD's CEL rule lists\n  %v\nbut policy.Actions is\n  %v", inCRD, ours)
	}
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
