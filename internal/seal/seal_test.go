package seal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func testSealer(t *testing.T, current uint32, versions ...uint32) *AESGCM {
	t.Helper()
	keys := map[uint32][]byte{}
	for _, v := range versions {
		keys[v] = bytes.Repeat([]byte{byte(v)}, RootKeySize)
	}
	s, err := NewAESGCM("test", keys, current)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealRoundTripAndBinding(t *testing.T) {
	ctx := context.Background()
	s := testSealer(t, 1, 1)
	material := bytes.Repeat([]byte("k"), 32)
	aad := MaterialAAD("8d5c4e8a-0000-4000-8000-000000000001", 1, "SYMMETRIC_DEFAULT")

	blob, err := s.Seal(ctx, material, aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, material) {
		t.Fatal("sealed blob contains the material")
	}
	got, err := s.Unseal(ctx, blob, aad)
	if err != nil || !bytes.Equal(got, material) {
		t.Fatalf("Unseal = %x, %v; want the material", got, err)
	}

	tests := map[string]struct {
		blob []byte
		aad  []byte
	}{
		"other key ID":   {blob, MaterialAAD("8d5c4e8a-0000-4000-8000-000000000002", 1, "SYMMETRIC_DEFAULT")},
		"other version":  {blob, MaterialAAD("8d5c4e8a-0000-4000-8000-000000000001", 2, "SYMMETRIC_DEFAULT")},
		"other key spec": {blob, MaterialAAD("8d5c4e8a-0000-4000-8000-000000000001", 1, "HMAC_256")},
		"empty blob":     {nil, aad},
		"header only":    {blob[:headerLen], aad},
		"truncated":      {blob[:len(blob)-1], aad},
		"unknown format": {append([]byte{9}, blob[1:]...), aad},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := s.Unseal(ctx, tc.blob, tc.aad); !errors.Is(err, ErrUnseal) {
				t.Fatalf("Unseal err = %v, want ErrUnseal", err)
			}
		})
	}
	t.Run("every single-bit flip", func(t *testing.T) {
		for i := range len(blob) * 8 {
			flipped := bytes.Clone(blob)
			flipped[i/8] ^= 1 << (i % 8)
			_, err := s.Unseal(ctx, flipped, aad)
			// A flip in the root key version that lands near the current
			// version reads as a version not rolled out here yet; any
			// other flip is corrupt. Neither unseals.
			v := binary.BigEndian.Uint32(flipped[1:headerLen])
			want := ErrUnseal
			if flipped[0] == blobFormat && v > s.current && v <= s.current+maxVersionsAhead {
				want = ErrRootUnavailable
			}
			if !errors.Is(err, want) {
				t.Fatalf("flip of bit %d: err = %v, want %v", i, err, want)
			}
		}
	})
}

func TestSealFreshNonceEachTime(t *testing.T) {
	s := testSealer(t, 1, 1)
	a, _ := s.Seal(context.Background(), []byte("same"), nil)
	b, _ := s.Seal(context.Background(), []byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same material are equal: nonce reused")
	}
}

func TestRootKeyVersions(t *testing.T) {
	ctx := context.Background()
	old := testSealer(t, 1, 1)
	blob, _ := old.Seal(ctx, []byte("material"), nil)

	rotated := testSealer(t, 2, 1, 2)
	if got, err := rotated.Unseal(ctx, blob, nil); err != nil || string(got) != "material" {
		t.Fatalf("a blob sealed under root v1 must unseal after root rotation: %q, %v", got, err)
	}
	fresh, _ := rotated.Seal(ctx, []byte("material"), nil)
	// A manager not yet given root v2 says so, rather than calling the blob
	// corrupt.
	if _, err := old.Unseal(ctx, fresh, nil); !errors.Is(err, ErrRootUnavailable) || !strings.Contains(err.Error(), "root key version 2, which this manager was not given (it has [1])") {
		t.Fatalf("root v1 alone must not unseal a root v2 blob, and say why: %v", err)
	}
	other := testSealer(t, 7, 7)
	if _, err := other.Unseal(ctx, blob, nil); !errors.Is(err, ErrUnseal) {
		t.Fatalf("a blob sealed under an older root key version that is gone must not unseal: %v", err)
	}
	// The same version number under another root key: does not unseal.
	foreign := testSealer(t, 1, 1)
	foreign.aeads[1] = testSealer(t, 9, 9).aeads[9]
	if _, err := foreign.Unseal(ctx, blob, nil); !errors.Is(err, ErrUnseal) {
		t.Fatalf("a blob sealed under another root key must not unseal: %v", err)
	}
}

func TestNewAESGCMRefusesBadRootKeys(t *testing.T) {
	tests := map[string]struct {
		keys    map[uint32][]byte
		current uint32
		wantErr string
	}{
		"short key":       {map[uint32][]byte{1: make([]byte, 16)}, 1, "is 16 bytes, want 32"},
		"missing current": {map[uint32][]byte{1: make([]byte, 32)}, 2, "version 2 does not exist"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := NewAESGCM("test", tc.keys, tc.current)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to say %q", err, tc.wantErr)
			}
		})
	}
}

func TestMaterialAADIsUnambiguous(t *testing.T) {
	if bytes.Equal(MaterialAAD("ab", 1, "c"), MaterialAAD("a", 1, "bc")) {
		t.Fatal("different fields encode alike")
	}
}
