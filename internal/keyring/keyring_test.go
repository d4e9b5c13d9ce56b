package keyring

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
)

// Material and what is parsed from it are loaded once, and forgotten when
// the Key goes, so a deleted key's private keys do not stay in memory.
func TestParsedIsCachedAndDroppedWithTheKey(t *testing.T) {
	loads := 0
	k := New(func(_ context.Context, _ string, _ int32, _ string) ([]byte, error) {
		loads++
		return []byte("material"), nil
	})
	obj := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "signer"},
		Status: kmsv1alpha1.KeyStatus{KeyID: "8d5c4e8a-1111-4222-8333-944455556666", State: kmsv1alpha1.KeyStateEnabled, CurrentVersion: 1}}
	k.Upsert(obj)
	key, err := k.Resolve("shop", "signer")
	if err != nil {
		t.Fatal(err)
	}
	parses := 0
	parse := func(m []byte) (any, error) { parses++; return string(m), nil }
	for range 3 {
		v, err := k.Parsed(context.Background(), key, 1, parse)
		if err != nil || v != "material" {
			t.Fatalf("Parsed = %v, %v", v, err)
		}
	}
	if loads != 1 || parses != 1 {
		t.Fatalf("loads %d, parses %d; want 1 and 1", loads, parses)
	}
	k.Remove("shop", "signer")
	if len(k.parsed) != 0 || len(k.materials) != 0 {
		t.Fatalf("after Remove: %d parsed, %d materials left", len(k.parsed), len(k.materials))
	}
}
