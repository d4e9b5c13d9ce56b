package keyspec_test

import (
	"encoding/json"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keyspec"
)

// crdPath is the Key CRD that controller-gen makes from api/v1alpha1.
const crdPath = "../../config/crd/bases/kms.kubekms.io_keys.yaml"

// keySchema is the part of the CRD this test reads.
type keySchema struct {
	Spec struct {
		Versions []struct {
			Name   string
			Schema struct {
				OpenAPIV3Schema struct {
					Properties struct {
						Spec struct {
							Properties struct {
								KeySpec  enumSchema `json:"keySpec"`
								KeyUsage enumSchema `json:"keyUsage"`
							}
							Validations []struct{ Rule, Message string } `json:"x-kubernetes-validations"`
						}
					}
				} `json:"openAPIV3Schema"`
			}
		}
	}
}

type enumSchema struct {
	Enum    []string
	Default string
}

// The CRD names exactly the table's specs and usages: the keySpec and
// keyUsage enums, and the CEL rules that say which usage fits which spec.
// A row added without a CRD change, or a CRD change without a row, fails.
func TestCRDMatchesTable(t *testing.T) {
	data, err := os.ReadFile(crdPath)
	if err != nil {
		t.Fatal(err)
	}
	var crd keySchema
	if err := yaml.Unmarshal(data, &crd); err != nil {
		t.Fatal(err)
	}
	if len(crd.Spec.Versions) == 0 {
		t.Fatal("the CRD has no version")
	}
	var names []string
	var usages []string
	wantUsages := map[string][]string{}
	wantDefaults := map[string]string{}
	for _, s := range keyspec.All() {
		names = append(names, string(s.Name))
		for _, u := range s.Usages() {
			wantUsages[string(s.Name)] = append(wantUsages[string(s.Name)], string(u))
			if !slices.Contains(usages, string(u)) {
				usages = append(usages, string(u))
			}
		}
		wantDefaults[string(s.Name)] = string(s.DefaultUsage)
	}
	for _, v := range crd.Spec.Versions {
		spec := v.Schema.OpenAPIV3Schema.Properties.Spec
		if got := spec.Properties.KeySpec.Enum; !slices.Equal(got, names) {
			t.Errorf("%s: keySpec enum %v, the table (in its order) %v", v.Name, got, names)
		}
		if _, ok := keyspec.Lookup(spec.Properties.KeySpec.Default); !ok {
			t.Errorf("%s: keySpec default %q is not in the table", v.Name, spec.Properties.KeySpec.Default)
		}
		if got := spec.Properties.KeyUsage.Enum; !sameSet(got, usages) {
			t.Errorf("%s: keyUsage enum %v, the table's usages %v", v.Name, got, usages)
		}
		usageMaps, defaultMaps := 0, 0
		for _, r := range spec.Validations {
			if !strings.Contains(r.Rule, "keySpec") || !strings.Contains(r.Rule, "keyUsage") {
				continue
			}
			// A rule about both spec and usage names specs only through the
			// table's names, never by prefix, and only the table's usages.
			for _, lit := range quoted.FindAllStringSubmatch(r.Rule, -1) {
				if _, ok := keyspec.Lookup(lit[1]); !ok && !slices.Contains(usages, lit[1]) {
					t.Errorf("%s: rule %q names %q, which is no spec or usage of the table", v.Name, r.Message, lit[1])
				}
			}
			for _, m := range mapLiterals(t, r.Rule) {
				var lists map[string][]string
				var strs map[string]string
				switch {
				case json.Unmarshal(m, &lists) == nil:
					usageMaps++
					if !maps.EqualFunc(lists, wantUsages, slices.Equal) {
						t.Errorf("%s: rule %q allows %v, the table %v", v.Name, r.Message, lists, wantUsages)
					}
				case json.Unmarshal(m, &strs) == nil:
					defaultMaps++
					if !maps.Equal(strs, wantDefaults) {
						t.Errorf("%s: rule %q defaults usages to %v, the table to %v", v.Name, r.Message, strs, wantDefaults)
					}
				default:
					t.Errorf("%s: rule %q has a map that is neither spec→usages nor spec→usage: %s", v.Name, r.Message, m)
				}
			}
		}
		// "keyUsage does not fit keySpec" and "keyUsage is immutable" (old
		// and new object).
		if usageMaps != 1 || defaultMaps != 2 {
			t.Errorf("%s: found %d spec→usages and %d spec→default usage maps in the CEL rules, want 1 and 2", v.Name, usageMaps, defaultMaps)
		}
	}
	// The API's typed constants are the table's names too.
	for _, c := range []kmsv1alpha1.KeyUsage{kmsv1alpha1.KeyUsageEncryptDecrypt, kmsv1alpha1.KeyUsageSignVerify, kmsv1alpha1.KeyUsageGenerateVerifyMAC} {
		if !slices.Contains(usages, string(c)) {
			t.Errorf("usage constant %s is in no row", c)
		}
	}
}

// quoted finds CEL string literals ('...').
var quoted = regexp.MustCompile(`'([^']*)'`)

// mapLiterals returns the CEL map literals of a rule ({'a': ..., ...}) as
// JSON: the CEL the markers use is JSON with single quotes.
func mapLiterals(t *testing.T, rule string) [][]byte {
	t.Helper()
	var out [][]byte
	for i := 0; i < len(rule); i++ {
		if rule[i] != '{' {
			continue
		}
		depth := 0
		for j := i; j < len(rule); j++ {
			switch rule[j] {
			case '{':
				depth++
			case '}':
				depth--
			}
			if depth == 0 {
				out = append(out, []byte(strings.ReplaceAll(rule[i:j+1], "'", `"`)))
				i = j
				break
			}
		}
		if depth != 0 {
			t.Fatalf("unbalanced map in rule %q", rule)
		}
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
