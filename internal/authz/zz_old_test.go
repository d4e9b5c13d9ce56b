package authz

import (
	"crypto/sha256"
	"slices"
	"testing"

	"github.com/kubekms/kubekms/internal/authn"
)

func oldCacheKey(r Request) [32]byte {
	groups := r.Principal.Groups
	if !slices.IsSorted(groups) {
		groups = slices.Sorted(slices.Values(groups))
	}
	var stack [512]byte
	b := stack[:0]
	for _, f := range [...]string{r.Principal.Username, r.Principal.UID, r.Namespace, r.Name, r.Action} {
		b = appendField(b, f)
	}
	for _, g := range groups {
		b = appendField(b, g)
	}
	return sha256.Sum256(b)
}

func BenchmarkOldVsNew(b *testing.B) {
	for _, sorted := range []bool{false, true} {
		g := []string{"system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"}
		if sorted {
			slices.Sort(g)
		}
		name := map[bool]string{true: "sorted", false: "unsorted"}[sorted]
		p := &authn.Principal{Username: "system:serviceaccount:shop:api", UID: "0b5c8f5e-5a0e-4f43-a5a3-1c2d3e4f5a6b", Groups: g,
			Extra: map[string][]string{
				"authentication.kubernetes.io/credential-id": {"JTI=7f2c1b9e-3d4a-4b5c-8d6e-9f0a1b2c3d4e"},
				"authentication.kubernetes.io/node-name":     {"worker-1"},
				"authentication.kubernetes.io/node-uid":      {"0b5c8f5e-5a0e-4f43-a5a3-1c2d3e4f5a6c"},
				"authentication.kubernetes.io/pod-name":      {"api-7d9c5b6f4-x2x9z"},
				"authentication.kubernetes.io/pod-uid":       {"0b5c8f5e-5a0e-4f43-a5a3-1c2d3e4f5a6d"},
			}}
		r := Request{Principal: p, Action: "Encrypt", Namespace: "shop", Name: "payments"}
		b.Run("old-"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = oldCacheKey(r)
			}
		})
		b.Run("new-"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = cacheKey(r)
			}
		})
	}
}
