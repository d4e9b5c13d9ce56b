package keycache

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clocktesting "k8s.io/utils/clock/testing"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/kmscrypto"
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

// A Key in another namespace that publishes a victim's keyID (finding 5 of
// issue 12: a refused restore used to publish restoreFrom) takes over
// nothing: while two Keys claim a keyID it resolves to neither, and
// deleting the claimant leaves the victim's entry and cached material.
func TestNoKeyDisplacesAnotherKeysID(t *testing.T) {
	loads := 0
	k := New(func(_ context.Context, _ string, _ int32, _ string) ([]byte, error) {
		loads++
		return []byte("victim material"), nil
	})
	const id = "8d5c4e8a-1111-4222-8333-944455556666"
	victim := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "payments", UID: "victim"},
		Status: kmsv1alpha1.KeyStatus{KeyID: id, State: kmsv1alpha1.KeyStateEnabled, CurrentVersion: 1}}
	k.Upsert(victim)
	parsed, _ := kmscrypto.ParseKeyID(id)
	key, err := k.ByID(parsed)
	if err != nil || key.Namespace != "shop" {
		t.Fatalf("ByID = %v, %v; want the victim", key, err)
	}
	if _, err := k.VersionKey(context.Background(), key, 1); err != nil {
		t.Fatal(err)
	}

	attacker := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: "evil", Name: "mine", UID: "attacker"},
		Status: kmsv1alpha1.KeyStatus{KeyID: id, State: kmsv1alpha1.KeyStateEnabled, CurrentVersion: 1}}
	k.Upsert(attacker)
	if got, err := k.ByID(parsed); err == nil {
		t.Fatalf("with two claimants ByID resolved to %s/%s; want neither", got.Namespace, got.Name)
	}

	k.Remove("evil", "mine")
	got, err := k.ByID(parsed)
	if err != nil || got.Namespace != "shop" || got.UID != "victim" {
		t.Fatalf("after the attacker's Key went, ByID = %v, %v; want the victim", got, err)
	}
	if _, err := k.VersionKey(context.Background(), got, 1); err != nil || loads != 1 {
		t.Fatalf("the victim's material was flushed by the attacker's removal (loads %d, err %v)", loads, err)
	}

	// A Key that changes its keyID withdraws its claim to the old one.
	renamed := victim.DeepCopy()
	renamed.Status.KeyID = "9d5c4e8a-1111-4222-8333-944455556666"
	k.Upsert(renamed)
	if _, err := k.ByID(parsed); err == nil {
		t.Fatalf("the old keyID still resolves after the Key moved off it")
	}
}

// A version the API server does not have costs one read per MissTTL, not
// one per call; a version just made elsewhere is read again as soon as the
// Key's current version moves, or after MissTTL at the latest.
func TestMissingVersionsAreRememberedBriefly(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	loads := map[int32]int{}
	exists := map[int32]bool{1: true}
	k := New(func(_ context.Context, _ string, version int32, _ string) ([]byte, error) {
		loads[version]++
		if !exists[version] {
			return nil, fmt.Errorf("load: %w", apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, "v"))
		}
		return []byte("material"), nil
	})
	k.Clock = clk
	obj := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "payments"},
		Status: kmsv1alpha1.KeyStatus{KeyID: "8d5c4e8a-1111-4222-8333-944455556666", State: kmsv1alpha1.KeyStateEnabled, CurrentVersion: 1}}
	k.Upsert(obj)
	key, _ := k.Resolve("shop", "payments")

	for range 50 {
		if _, err := k.VersionKey(context.Background(), key, 7); !apierrors.IsNotFound(err) {
			t.Fatalf("err = %v, want not found", err)
		}
	}
	if loads[7] != 1 {
		t.Fatalf("a missing version was read %d times, want once", loads[7])
	}
	clk.Step(DefaultMissTTL)
	_, _ = k.VersionKey(context.Background(), key, 7)
	if loads[7] != 2 {
		t.Fatalf("reads after MissTTL = %d, want 2", loads[7])
	}

	// An attacker asks for the next version before it exists. asks for the next version before it exists")
	_, _ = k.VersionKey(context.Background(), key, 2)
	exists[2] = true
	obj.Status.CurrentVersion = 2
	k.Upsert(obj)
	key, _ = k.Resolve("shop", "payments")
	if _, err := k.VersionKey(context.Background(), key, 2); err != nil {
		t.Fatalf("after the rotation reached the informer, version 2: %v", err)
	}

	// Other errors are not remembered.
	k2 := New(func(context.Context, string, int32, string) ([]byte, error) {
		loads[99]++
		return nil, errors.New("connection refused")
	})
	k2.Upsert(obj)
	key2, _ := k2.Resolve("shop", "payments")
	_, _ = k2.VersionKey(context.Background(), key2, 1)
	_, _ = k2.VersionKey(context.Background(), key2, 1)
	if loads[99] != 2 {
		t.Fatalf("an outage was remembered as a missing version")
	}

	// The memory is bounded.
	k.MissTTL = time.Hour
	for v := range uint32(3 * maxMisses) {
		key := *key
		key.CurrentVersion = v // as if it rotated: every miss is new
		_, _ = k.VersionKey(context.Background(), &key, v+1)
	}
	if n := len(k.missing); n > maxMisses {
		t.Fatalf("%d missing versions remembered, want at most %d", n, maxMisses)
	}
}

// Versions far past the current one cannot be a rotation not seen yet:
// they are not read at all.
func TestVersionsFarAheadAreNotRead(t *testing.T) {
	loads := 0
	k := New(func(context.Context, string, int32, string) ([]byte, error) {
		loads++
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, "v")
	})
	k.Upsert(&kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "payments"},
		Status: kmsv1alpha1.KeyStatus{KeyID: "8d5c4e8a-1111-4222-8333-944455556666", State: kmsv1alpha1.KeyStateEnabled, CurrentVersion: 3}})
	key, _ := k.Resolve("shop", "payments")
	for v := uint32(3 + MaxVersionsAhead + 1); v < 3+MaxVersionsAhead+1000; v++ {
		if _, err := k.VersionKey(context.Background(), key, v); !errors.Is(err, ErrVersionNotFound) {
			t.Fatalf("version %d: err = %v, want ErrVersionNotFound", v, err)
		}
	}
	_, _ = k.VersionKey(context.Background(), key, ^uint32(0))
	if loads != 0 {
		t.Fatalf("%d reads for versions that cannot exist, want none", loads)
	}
	if _, err := k.VersionKey(context.Background(), key, 3+MaxVersionsAhead); !apierrors.IsNotFound(err) || loads != 1 {
		t.Fatalf("the last version that may exist was not read: err %v, loads %d", err, loads)
	}
}
