package crypto

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

func runOpenSSL(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is needed (Debian package openssl)")
	}
	cmd := exec.Command(openssl, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// openssl's id-aes256-wrap-pad is an implementation of RFC 5649 nobody here wrote.
// genPKCS8 makes a private key with openssl, as PKCS#8 DER.
func genPKCS8(t *testing.T, args ...string) []byte {
	pem := runOpenSSL(t, nil, append([]string{"genpkey"}, args...)...)
	return runOpenSSL(t, pem, "pkcs8", "-topk8", "-nocrypt", "-outform", "DER")
}

func TestKWPAgreesWithOpenSSL(t *testing.T) {
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	for _, n := range []int{1, 7, 8, 9, 16, 20, 32, 64, 1217} {
		msg := make([]byte, n)
		_, _ = rand.Read(msg)
		want := runOpenSSL(t, msg, "enc", "-id-aes256-wrap-pad", "-K", hex.EncodeToString(kek), "-iv", "A65959A6")
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
		return runOpenSSL(t, msg, "pkeyutl", "-encrypt", "-pubin", "-inkey", pubFile,
			"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256")
	}

	material := make([]byte, 32)
	_, _ = rand.Read(material)
	got, err := UnwrapImport(priv, "RSAES_OAEP_SHA_256", oaep(material))
	if err != nil || !bytes.Equal(got, material) {
		t.Fatalf("RSAES_OAEP_SHA_256: %x, %v", got, err)
	}

	ecKey := genPKCS8(t, "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384")
	aesKey := make([]byte, 32)
	_, _ = rand.Read(aesKey)
	wrapped := append(oaep(aesKey), runOpenSSL(t, ecKey, "enc", "-id-aes256-wrap-pad", "-K", hex.EncodeToString(aesKey), "-iv", "A65959A6")...)
	got, err = UnwrapImport(priv, "RSA_AES_KEY_WRAP_SHA_256", wrapped)
	if err != nil || !bytes.Equal(got, ecKey) {
		t.Fatalf("RSA_AES_KEY_WRAP_SHA_256: %v", err)
	}
	stored, public, err := CheckImportedMaterial("ECC_NIST_P384", got)
	if err != nil {
		t.Fatal(err)
	}
	wantPub := runOpenSSL(t, ecKey, "pkey", "-inform", "DER", "-pubout", "-outform", "DER")
	if !bytes.Equal(public, wantPub) {
		t.Fatal("public key of imported material differs from openssl's")
	}
	if _, err := x509.ParsePKCS8PrivateKey(stored); err != nil {
		t.Fatal(err)
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

func TestCheckImportedMaterial(t *testing.T) {
	rsa2048 := genPKCS8(t, "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")
	ed := genPKCS8(t, "-algorithm", "ED25519")
	for name, tc := range map[string]struct {
		spec     string
		material []byte
		want     string
	}{
		"symmetric ok":    {"SYMMETRIC_DEFAULT", make([]byte, 32), ""},
		"symmetric short": {"SYMMETRIC_DEFAULT", make([]byte, 16), "must be 32 bytes (AES-256), got 16"},
		"hmac ok":         {"HMAC_384", make([]byte, 48), ""},
		"hmac long":       {"HMAC_256", make([]byte, 33), "HMAC_256 material must be 32 bytes, got 33"},
		"rsa ok":          {"RSA_2048", rsa2048, ""},
		"rsa wrong size":  {"RSA_3072", rsa2048, "RSA_2048 private key, the Key is RSA_3072"},
		"ed25519 ok":      {"ECC_NIST_EDWARDS25519", ed, ""},
		"ed as ecdsa":     {"ECC_NIST_P256", ed, "ECC_NIST_EDWARDS25519 private key, the Key is ECC_NIST_P256"},
		"not pkcs8":       {"ECC_NIST_P256", make([]byte, 32), "must be a PKCS#8 DER private key"},
	} {
		_, _, err := CheckImportedMaterial(tc.spec, tc.material)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}
