package kmscrypto

import (
	"bytes"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubekms/kubekms/internal/kmscrypto/openssltest"
)

// RFC 5649 section 6 vectors (AES-192 key encryption key).
func TestKWPKnownAnswers(t *testing.T) {
	kek := unhex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	tests := []struct{ key, wrapped string }{
		{"c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
	}
	for _, tc := range tests {
		got, err := WrapKWP(kek, unhex(tc.key))
		if err != nil || hex.EncodeToString(got) != tc.wrapped {
			t.Fatalf("WrapKWP(%s) = %x, %v; want %s", tc.key, got, err, tc.wrapped)
		}
		back, err := UnwrapKWP(kek, got)
		if err != nil || hex.EncodeToString(back) != tc.key {
			t.Fatalf("UnwrapKWP = %x, %v; want %s", back, err, tc.key)
		}
	}
}

// openssl's id-aes256-wrap-pad is an implementation of RFC 5649 nobody here wrote.
func TestKWPAgreesWithOpenSSL(t *testing.T) {
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	for _, n := range []int{1, 7, 8, 9, 16, 20, 32, 64, 1217} {
		msg := make([]byte, n)
		_, _ = rand.Read(msg)
		want := openssltest.Run(t, msg, "enc", "-id-aes256-wrap-pad", "-K", hex.EncodeToString(kek), "-iv", "A65959A6")
		got, err := WrapKWP(kek, msg)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: WrapKWP = %x, %v; openssl %x", n, got, err, want)
		}
		back, err := UnwrapKWP(kek, want)
		if err != nil || !bytes.Equal(back, msg) {
			t.Fatalf("%d bytes: UnwrapKWP(openssl) = %x, %v", n, back, err)
		}
	}
}

func TestKWPRefusesTampering(t *testing.T) {
	kek := bytes.Repeat([]byte{7}, 32)
	wrapped, err := WrapKWP(kek, []byte("material of 21 bytes."))
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(wrapped) * 8 {
		bad := bytes.Clone(wrapped)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := UnwrapKWP(kek, bad); !errors.Is(err, ErrKeyUnwrap) {
			t.Fatalf("bit %d flipped: err = %v", i, err)
		}
	}
	for _, bad := range [][]byte{nil, wrapped[:8], wrapped[:len(wrapped)-1]} {
		if _, err := UnwrapKWP(kek, bad); !errors.Is(err, ErrKeyUnwrap) {
			t.Fatalf("%d bytes: err = %v", len(bad), err)
		}
	}
	other := bytes.Repeat([]byte{8}, 32)
	if _, err := UnwrapKWP(other, wrapped); !errors.Is(err, ErrKeyUnwrap) {
		t.Fatalf("other key: err = %v", err)
	}
}

func TestImportToken(t *testing.T) {
	id, _ := ParseKeyID("8d5c4e8a-1111-4222-8333-944455556666")
	other, _ := ParseKeyID("8d5c4e8a-1111-4222-8333-944455556667")
	now := time.Unix(1_800_000_000, 0)
	token, err := NewImportToken(id, now.Add(24*time.Hour), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	renewed, _ := NewImportToken(id, now.Add(24*time.Hour), rand.Reader)
	if err := CheckImportToken(token+"\n", id, token, now); err != nil {
		t.Fatalf("valid token: %v", err)
	}
	for name, tc := range map[string]struct {
		token  string
		id     KeyID
		issued string
		now    time.Time
		want   string
	}{
		"garbage":     {"hello", id, token, now, "not a kubekms import token"},
		"truncated":   {token[:len(token)-4], id, token, now, "not a kubekms import token"},
		"other key":   {token, other, token, now, "another key"},
		"expired":     {token, id, token, now.Add(24 * time.Hour), "expired at 2027-01-16T08:00:00Z"},
		"not current": {token, id, renewed, now, "parameters were renewed"},
	} {
		err := CheckImportToken(tc.token, tc.id, tc.issued, tc.now)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to say %q", name, err, tc.want)
		}
	}
}

// The wrapping the issue names, done by openssl: RSAES_OAEP_SHA_256 with
// pkeyutl, and RSA_AES_KEY_WRAP_SHA_256 with pkeyutl plus id-aes256-wrap-pad.
func TestUnwrapImportFromOpenSSL(t *testing.T) {
	priv, pub, err := NewWrappingKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pubFile := filepath.Join(dir, "wrapping.pem")
	if err := os.WriteFile(pubFile, []byte(PublicKeyPEM(pub)), 0o600); err != nil {
		t.Fatal(err)
	}
	oaep := func(msg []byte) []byte {
		return openssltest.Run(t, msg, "pkeyutl", "-encrypt", "-pubin", "-inkey", pubFile,
			"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256")
	}

	material := make([]byte, 32)
	_, _ = rand.Read(material)
	got, err := UnwrapImport(priv, "RSAES_OAEP_SHA_256", oaep(material))
	if err != nil || !bytes.Equal(got, material) {
		t.Fatalf("RSAES_OAEP_SHA_256: %x, %v", got, err)
	}

	ecKey := openssltest.PKCS8(t, "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384")
	aesKey := make([]byte, 32)
	_, _ = rand.Read(aesKey)
	wrapped := append(oaep(aesKey), openssltest.Run(t, ecKey, "enc", "-id-aes256-wrap-pad", "-K", hex.EncodeToString(aesKey), "-iv", "A65959A6")...)
	got, err = UnwrapImport(priv, "RSA_AES_KEY_WRAP_SHA_256", wrapped)
	if err != nil || !bytes.Equal(got, ecKey) {
		t.Fatalf("RSA_AES_KEY_WRAP_SHA_256: %v", err)
	}
	public, err := PublicKeyOf(got)
	if err != nil {
		t.Fatal(err)
	}
	wantPub := openssltest.Run(t, ecKey, "pkey", "-inform", "DER", "-pubout", "-outform", "DER")
	if !bytes.Equal(public, wantPub) {
		t.Fatal("public key of imported material differs from openssl's")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(got)
	if err != nil || !ECDSAKeyPair(elliptic.P384(), "ECDSA_SHA_384").Holds(parsed) {
		t.Fatalf("imported material is not a P-384 key: %v", err)
	}

	// Wrapped for another wrapping key; the wrong algorithm; truncated.
	otherPriv, _, _ := NewWrappingKey(rand.Reader)
	for name, tc := range map[string]struct {
		key     []byte
		alg     string
		wrapped []byte
		want    string
	}{
		"other wrapping key": {otherPriv, "RSAES_OAEP_SHA_256", oaep(material), "does not unwrap"},
		"wrong algorithm":    {priv, "RSA_AES_KEY_WRAP_SHA_256", oaep(material), "RSA_AES_KEY_WRAP_SHA_256 makes"},
		"truncated":          {priv, "RSAES_OAEP_SHA_256", oaep(material)[1:], "makes exactly 512"},
		"unknown algorithm":  {priv, "RSAES_PKCS1_V1_5", oaep(material), "is not RSAES_OAEP_SHA_256"},
	} {
		if _, err := UnwrapImport(tc.key, tc.alg, tc.wrapped); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

// openssl's keys (made by an implementation nobody here wrote) are held by
// exactly their own kind: the check keyspec's import rests on.
func TestHoldsOpenSSLKeys(t *testing.T) {
	rsa2048 := openssltest.PKCS8(t, "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")
	p256 := openssltest.PKCS8(t, "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
	ed := openssltest.PKCS8(t, "-algorithm", "ED25519")
	for name, tc := range map[string]struct {
		material []byte
		kind     string
		want     bool
	}{
		"rsa 2048 as rsa 2048":  {rsa2048, "RSA 2048", true},
		"rsa 2048 as rsa 3072":  {rsa2048, "RSA 3072", false},
		"p256 as p256":          {p256, "ECDSA P256", true},
		"p256 as p384":          {p256, "ECDSA P384", false},
		"ed25519 as ed25519":    {ed, "Ed25519", true},
		"ed25519 as ecdsa p256": {ed, "ECDSA P256", false},
	} {
		k, err := x509.ParsePKCS8PrivateKey(tc.material)
		if err != nil {
			t.Fatal(err)
		}
		if got := keyPairs[tc.kind].Holds(k); got != tc.want {
			t.Errorf("%s: Holds = %v, want %v", name, got, tc.want)
		}
	}
}
