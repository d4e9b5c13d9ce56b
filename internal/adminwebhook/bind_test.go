package adminwebhook

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
)

// The bind webhook sets the one Key ownerReference of a new policy or
// grant to the Key its keyRef names now, replacing any the author wrote,
// and keeps the others.
func TestBind(t *testing.T) {
	key := newKey("payments", keyUID)
	deleting := key.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: t0}
	deployment := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "api", UID: "deploy-uid"}
	forged := access.KeyOwnerReference(newKey("payments", "forged-uid"))
	policy := func(refs ...metav1.OwnerReference) *kmsv1alpha1.KeyPolicy {
		p := newPolicy("payments", key, allow([]string{"*"}, alice))
		p.OwnerReferences = refs
		return p
	}
	grant := func(refs ...metav1.OwnerReference) *kmsv1alpha1.KeyGrant {
		g := newGrant("web", key)
		g.OwnerReferences = refs
		return g
	}
	for name, tc := range map[string]struct {
		opts        []fixtureOption
		obj         client.Object
		wantRefs    []metav1.OwnerReference // nil: no patch
		wantAllowed bool
		wantMessage string
	}{
		"a policy":                     {opts: []fixtureOption{withObjects(key)}, obj: policy(), wantAllowed: true, wantRefs: []metav1.OwnerReference{access.KeyOwnerReference(key)}},
		"a grant":                      {opts: []fixtureOption{withObjects(key)}, obj: grant(), wantAllowed: true, wantRefs: []metav1.OwnerReference{access.KeyOwnerReference(key)}},
		"a forged Key reference":       {opts: []fixtureOption{withObjects(key)}, obj: policy(forged), wantAllowed: true, wantRefs: []metav1.OwnerReference{access.KeyOwnerReference(key)}},
		"other owners are kept":        {opts: []fixtureOption{withObjects(key)}, obj: grant(deployment, forged), wantAllowed: true, wantRefs: []metav1.OwnerReference{deployment, access.KeyOwnerReference(key)}},
		"a key the cache has not seen": {opts: []fixtureOption{withUncached(key)}, obj: policy(), wantAllowed: true, wantRefs: []metav1.OwnerReference{access.KeyOwnerReference(key)}},
		"a key that does not exist":    {obj: grant(), wantMessage: "spec.keyRef: Key payments does not exist in namespace shop"},
		"a key being deleted":          {opts: []fixtureOption{withObjects(deleting)}, obj: policy(), wantMessage: "does not exist"},
		"another kind is none of ours": {opts: []fixtureOption{withObjects(key)}, obj: key, wantAllowed: true},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, tc.opts...)
			req := request(t, admissionv1.Create, alice, tc.obj, nil)
			resp := f.handle(t, BindPath, req)
			wantResponse(t, resp, tc.wantAllowed, tc.wantMessage)
			if tc.wantRefs == nil {
				if len(resp.Patch) != 0 {
					t.Fatalf("patched %s, want no patch", resp.Patch)
				}
				return
			}
			if got := ownerReferencesAfter(t, req.Object.Raw, resp.Patch); !equalRefs(got, tc.wantRefs) {
				t.Fatalf("ownerReferences after the patch = %+v, want %+v", got, tc.wantRefs)
			}
		})
	}
}

// ownerReferencesAfter applies a response's JSON patch (RFC 6902: the
// add, replace and remove operations the webhook may emit) to raw and
// returns the ownerReferences of the result.
func ownerReferencesAfter(t *testing.T, raw, patch []byte) []metav1.OwnerReference {
	t.Helper()
	var ops []struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		doc = applyOp(t, doc, strings.Split(strings.TrimPrefix(op.Path, "/"), "/"), op.Op, op.Value)
	}
	b, err := json.Marshal(doc.(map[string]any)["metadata"].(map[string]any)["ownerReferences"])
	if err != nil {
		t.Fatal(err)
	}
	var refs []metav1.OwnerReference
	if err := json.Unmarshal(b, &refs); err != nil {
		t.Fatal(err)
	}
	return refs
}

// applyOp applies one patch operation at path below node and returns the new node.
func applyOp(t *testing.T, node any, path []string, op string, value any) any {
	t.Helper()
	name := strings.NewReplacer("~1", "/", "~0", "~").Replace(path[0])
	switch n := node.(type) {
	case map[string]any:
		if len(path) > 1 {
			n[name] = applyOp(t, n[name], path[1:], op, value)
		} else if op == "remove" {
			delete(n, name)
		} else {
			n[name] = value
		}
		return n
	case []any:
		i, err := strconv.Atoi(name)
		if name == "-" {
			i, err = len(n), nil
		}
		if err != nil || i > len(n) {
			t.Fatalf("bad array index %q in patch", name)
		}
		switch {
		case len(path) > 1:
			n[i] = applyOp(t, n[i], path[1:], op, value)
		case op == "add":
			n = append(n[:i], append([]any{value}, n[i:]...)...)
		case op == "remove":
			n = append(n[:i], n[i+1:]...)
		default:
			n[i] = value
		}
		return n
	}
	t.Fatalf("patch path %v does not exist", path)
	return nil
}

func equalRefs(a, b []metav1.OwnerReference) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].APIVersion != b[i].APIVersion || a[i].Kind != b[i].Kind || a[i].Name != b[i].Name || a[i].UID != b[i].UID {
			return false
		}
	}
	return true
}
