package authz

import (
	"context"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kubekms/kubekms/internal/authn"
)

// An authorizer (or webhook) may decide on Extra, e.g. on the pod a bound
// token was issued for; the fake one here allows only pod "api-1".
func TestExtraIsPartOfTheQuestion(t *testing.T) {
	cs := fake.NewClientset()
	reviews := 0
	cs.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		reviews++
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview).DeepCopy()
		pod := sar.Spec.Extra["authentication.kubernetes.io/pod-name"]
		sar.Status.Allowed = len(pod) == 1 && pod[0] == "api-1"
		return true, sar, nil
	})
	a := New(cs.AuthorizationV1().SubjectAccessReviews(), Options{Clock: clocktesting.NewFakeClock(time.Now())})
	principal := func(pod string) *authn.Principal {
		return &authn.Principal{
			Username: "system:serviceaccount:shop:api", UID: "sa-uid", Groups: []string{"system:authenticated", "system:serviceaccounts"},
			Extra: map[string][]string{"authentication.kubernetes.io/pod-name": {pod}, "authentication.kubernetes.io/pod-uid": {"uid-" + pod}},
		}
	}
	ask := func(p *authn.Principal) bool {
		t.Helper()
		d, err := a.Authorize(context.Background(), Request{Principal: p, Action: "Decrypt", Namespace: "shop", Name: "payments"})
		if err != nil {
			t.Fatal(err)
		}
		return d.Allowed
	}
	if !ask(principal("api-1")) {
		t.Fatal("api-1 is refused, want allowed")
	}
	if ask(principal("api-2")) {
		t.Fatal("api-2 got api-1's cached answer: Extra is not part of the cache key")
	}
	if !ask(principal("api-1")) || reviews != 2 {
		t.Fatalf("reviews = %d, want 2 (each principal's answer cached)", reviews)
	}
}

func TestCacheKey(t *testing.T) {
	base := func() Request {
		return Request{
			Principal: &authn.Principal{Username: "u", UID: "1", Groups: []string{"a", "b"},
				Extra: map[string][]string{"k1": {"v1", "v2"}, "k2": {"w"}}},
			Action: "Decrypt", Namespace: "ns", Name: "key",
		}
	}
	tests := map[string]struct {
		change   func(r *Request)
		wantSame bool
	}{
		"same question":                 {change: func(*Request) {}, wantSame: true},
		"groups in another order":       {change: func(r *Request) { r.Principal.Groups = []string{"b", "a"} }, wantSame: true},
		"extra values in another order": {change: func(r *Request) { r.Principal.Extra["k1"] = []string{"v2", "v1"} }, wantSame: true},
		"another extra value":           {change: func(r *Request) { r.Principal.Extra["k2"] = []string{"x"} }},
		"an extra key more":             {change: func(r *Request) { r.Principal.Extra["k3"] = nil }},
		"no extra":                      {change: func(r *Request) { r.Principal.Extra = nil }},
		"value moved to another key": {change: func(r *Request) {
			r.Principal.Extra = map[string][]string{"k1": {"v1"}, "k2": {"v2", "w"}}
		}},
		"a group more":   {change: func(r *Request) { r.Principal.Groups = append(r.Principal.Groups, "c") }},
		"another action": {change: func(r *Request) { r.Action = "Encrypt" }},
		"another key":    {change: func(r *Request) { r.Name = "other" }},
		"group as extra": {change: func(r *Request) { r.Principal.Groups = []string{"a"}; r.Principal.Extra["b"] = nil }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := base()
			tc.change(&r)
			if same := cacheKey(r) == cacheKey(base()); same != tc.wantSame {
				t.Fatalf("same key = %v, want %v", same, tc.wantSame)
			}
		})
	}
}

// The key is computed on every call: a ServiceAccount principal's must not
// allocate, and sorting must not change the shared principal.
func TestCacheKeyDoesNotAllocate(t *testing.T) {
	r := podTokenRequest()
	if n := testing.AllocsPerRun(100, func() { _ = cacheKey(r) }); n != 0 {
		t.Fatalf("cacheKey allocates %v times per call, want 0", n)
	}
	if r.Principal.Groups[0] != "system:serviceaccounts" {
		t.Fatal("cacheKey sorted the principal's own groups")
	}
}

func BenchmarkCacheKey(b *testing.B) {
	r := podTokenRequest()
	b.ReportAllocs()
	for b.Loop() {
		_ = cacheKey(r)
	}
}

// podTokenRequest is the question the data plane asks most: a
// ServiceAccount's pod-bound token, with the groups (unsorted) and extra
// the API server's TokenReview gives it.
func podTokenRequest() Request {
	return Request{
		Principal: &authn.Principal{
			Username: "system:serviceaccount:shop:api", UID: "0b5c8f5e-5a0e-4f43-a5a3-1c2d3e4f5a6b",
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"},
			Extra: map[string][]string{
				"authentication.kubernetes.io/credential-id": {"JTI=7f2c1b9e-3d4a-4b5c-8d6e-9f0a1b2c3d4e"},
				"authentication.kubernetes.io/node-name":     {"worker-1"},
				"authentication.kubernetes.io/node-uid":      {"0b5c8f5e-5a0e-4f43-a5a3-1c2d3e4f5a6c"},
				"authentication.kubernetes.io/pod-name":      {"api-7d9c5b6f4-x2x9z"},
				"authentication.kubernetes.io/pod-uid":       {"0b5c8f5e-5a0e-4f43-a5a3-1c2d3e4f5a6d"},
			},
		},
		Action: "Encrypt", Namespace: "shop", Name: "payments",
	}
}
