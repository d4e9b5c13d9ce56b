//go:build pkcs11

package seal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubekms/kubekms/internal/testenv"
)

func softHSM(t testing.TB, labels ...string) *testenv.SoftHSM {
	t.Helper()
	h, err := testenv.StartSoftHSM(labels...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func hsmConfig(h *testenv.SoftHSM, label string) PKCS11Config {
	return PKCS11Config{Module: h.Module, TokenLabel: h.TokenLabel, KeyLabel: label, PINFile: h.PINFile}
}

func TestPKCS11SealsInTheHSM(t *testing.T) {
	ctx := context.Background()
	h := softHSM(t, "root", "other")
	s, err := NewPKCS11(ctx, hsmConfig(h, "root"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Provider() != PKCS11Provider {
		t.Fatalf("provider %q", s.Provider())
	}
	material := bytes.Repeat([]byte{0x5a}, 32)
	aad := MaterialAAD("8d5c4e8a-0000-4000-8000-000000000001", 3, "SYMMETRIC_DEFAULT")
	blob, err := s.Seal(ctx, material, aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, material) || blob[0] != pkcs11BlobFormat {
		t.Fatalf("blob %x: want format %d and no material", blob, pkcs11BlobFormat)
	}
	if again, _ := s.Seal(ctx, material, aad); bytes.Equal(again, blob) {
		t.Fatal("two seals of the same material are equal: the IV is not fresh")
	}
	got, err := s.Unseal(ctx, blob, aad)
	if err != nil || !bytes.Equal(got, material) {
		t.Fatalf("Unseal = %x, %v", got, err)
	}
	if _, err := s.Unseal(ctx, blob, MaterialAAD("8d5c4e8a-0000-4000-8000-000000000001", 4, "SYMMETRIC_DEFAULT")); !errors.Is(err, ErrUnseal) {
		t.Fatalf("Unseal with other associated data: %v, want ErrUnseal", err)
	}
	for i := range len(blob) * 8 {
		flipped := bytes.Clone(blob)
		flipped[i/8] ^= 1 << (i % 8)
		if _, err := s.Unseal(ctx, flipped, aad); !errors.Is(err, ErrUnseal) {
			t.Fatalf("flip of bit %d: %v, want ErrUnseal", i, err)
		}
	}
	other, err := NewPKCS11(ctx, hsmConfig(h, "other"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Unseal(ctx, blob, aad); !errors.Is(err, ErrUnseal) {
		t.Fatalf("Unseal under another HSM key: %v, want ErrUnseal", err)
	}
	// The first sealer still works after the second logged in and closed.
	other.Close()
	if got, err := s.Unseal(ctx, blob, aad); err != nil || !bytes.Equal(got, material) {
		t.Fatalf("Unseal after another sealer closed = %x, %v", got, err)
	}
}

func TestNewPKCS11RefusesWhatIsWrongByName(t *testing.T) {
	ctx := context.Background()
	h := softHSM(t, "refuse-root", "twin", "twin")
	wrongPIN := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(wrongPIN, []byte("0000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		cfg  PKCS11Config
		want string
	}{
		"nothing set":   {PKCS11Config{}, "needs --pkcs11-key-label, --pkcs11-module, --pkcs11-pin-file, --pkcs11-token-label"},
		"no module":     {PKCS11Config{Module: "/nonexistent/lib.so", TokenLabel: "kubekms", KeyLabel: "refuse-root", PINFile: h.PINFile}, "cannot be loaded"},
		"wrong token":   {PKCS11Config{Module: h.Module, TokenLabel: "nope", KeyLabel: "refuse-root", PINFile: h.PINFile}, `no PKCS#11 token labelled "nope"`},
		"wrong PIN":     {PKCS11Config{Module: h.Module, TokenLabel: "kubekms", KeyLabel: "refuse-root", PINFile: wrongPIN}, "CKR_PIN_INCORRECT"},
		"no such key":   {hsmConfig(h, "nope"), `no AES key labelled "nope"`},
		"ambiguous key": {hsmConfig(h, "twin"), `more than one AES key is labelled "twin"`},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := NewPKCS11(ctx, tc.cfg)
			if err == nil {
				s.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewPKCS11 = %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "1234-kubekms") || strings.Contains(err.Error(), "0000") {
				t.Fatalf("the error shows the PIN: %v", err)
			}
		})
	}
}

// BenchmarkUnsealPKCS11 is the cost of unsealing one key version in the
// HSM (SoftHSM2 here), done once per version per replica.
func BenchmarkUnsealPKCS11(b *testing.B) {
	ctx := context.Background()
	s, err := NewPKCS11(ctx, hsmConfig(softHSM(b, "bench-root"), "bench-root"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	aad := MaterialAAD("k", 1, "SYMMETRIC_DEFAULT")
	blob, err := s.Seal(ctx, make([]byte, 32), aad)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Unseal(ctx, blob, aad); err != nil {
			b.Fatal(err)
		}
	}
}

// Review of issue 15, finding 2: after a reopen the key was found again by
// label alone, so a key swapped in under the same label sealed new
// material that the real root could never unseal.
func TestPKCS11RefusesAKeySwappedUnderItsLabel(t *testing.T) {
	ctx := context.Background()
	h := softHSM(t, "swap-root")
	s, err := NewPKCS11(ctx, hsmConfig(h, "swap-root"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	blob, err := s.Seal(ctx, []byte("material"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.DestroyKeys("swap-root"); err != nil {
		t.Fatal(err)
	}
	if err := h.GenerateKey("swap-root", testenv.SoftHSMPIN); err != nil {
		t.Fatal(err)
	}
	s.Close() // as an HSM restart or a token re-inserted would: the next call reopens
	if _, err := s.Seal(ctx, []byte("new material"), nil); !errors.Is(err, ErrWrongRoot) || !strings.Contains(err.Error(), "not the key this manager started with") {
		t.Fatalf("Seal under a swapped key = %v; want ErrWrongRoot", err)
	}
	if _, err := s.Unseal(ctx, blob, nil); !errors.Is(err, ErrWrongRoot) || errors.Is(err, ErrUnseal) {
		t.Fatalf("Unseal under a swapped key = %v; want ErrWrongRoot, not a bad blob", err)
	}
}

// Review of issue 15, finding 4: a wrong PIN was tried again on every
// check and call, which locks a real HSM's user out.
func TestPKCS11DoesNotRetryARefusedPIN(t *testing.T) {
	ctx := context.Background()
	h := softHSM(t, "pin-root")
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte("9999-wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := hsmConfig(h, "pin-root")
	cfg.PINFile = pinFile
	if _, err := NewPKCS11(ctx, cfg); err == nil || !strings.Contains(err.Error(), "CKR_PIN_INCORRECT") || strings.Contains(err.Error(), "not tried again") {
		t.Fatalf("first try with a wrong PIN = %v; want the token's CKR_PIN_INCORRECT", err)
	}
	_, err := NewPKCS11(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "is not tried again until that file changes") || !strings.Contains(err.Error(), "CKR_PIN_INCORRECT") {
		t.Fatalf("second try with the same wrong PIN = %v; want it not tried", err)
	}
	if strings.Contains(err.Error(), "9999-wrong") {
		t.Fatalf("the error shows the PIN: %v", err)
	}
	if err := os.WriteFile(pinFile, []byte(testenv.SoftHSMPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewPKCS11(ctx, cfg)
	if err != nil {
		t.Fatalf("after the PIN file was fixed: %v", err)
	}
	s.Close()
}
