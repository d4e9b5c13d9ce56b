package kmscrypto

import (
	"bytes"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubekms/kubekms/internal/kmscrypto/openssltest"
)

// keyPairs are the kinds of key pair kubekms makes (internal/keyspec says
// which key spec is which).
var keyPairs = map[string]AsymmetricSpec{
	"RSA 2048":   RSAKeyPair(2048),
	"RSA 3072":   RSAKeyPair(3072),
	"RSA 4096":   RSAKeyPair(4096),
	"ECDSA P256": ECDSAKeyPair(elliptic.P256(), "ECDSA_SHA_256"),
	"ECDSA P384": ECDSAKeyPair(elliptic.P384(), "ECDSA_SHA_384"),
	"ECDSA P521": ECDSAKeyPair(elliptic.P521(), "ECDSA_SHA_512"),
	"Ed25519":    Ed25519KeyPair(),
}

// Every kind of key pair holds the keys it makes and no other kind's.
func TestHolds(t *testing.T) {
	made := map[string]any{}
	eachKeyPair(t, func(name string, _ AsymmetricSpec, priv, _ []byte) {
		var err error
		if made[name], err = x509.ParsePKCS8PrivateKey(priv); err != nil {
			t.Fatal(err)
		}
	})
	for name, s := range keyPairs {
		for other, k := range made {
			if got := s.Holds(k); got != (name == other) {
				t.Errorf("%s.Holds(%s key) = %v", name, other, got)
			}
		}
	}
	if (AsymmetricSpec{}).Holds(made["Ed25519"]) {
		t.Error("the zero AsymmetricSpec holds a key")
	}
}

// Every spec and algorithm signs what it verifies, refuses a flipped bit,
// and is verified by openssl (an implementation nobody here wrote).
func TestSignVerifyAndOpenSSL(t *testing.T) {
	eachKeyPair(t, func(spec string, s AsymmetricSpec, priv, pub []byte) {
		derived, err := PublicKeyOf(priv)
		if err != nil || !bytes.Equal(derived, pub) {
			t.Fatalf("%s: PublicKeyOf differs", spec)
		}
		dir := t.TempDir()
		pubPath := filepath.Join(dir, "pub.pem")
		if err := os.WriteFile(pubPath, []byte(PublicKeyPEM(pub)), 0o600); err != nil {
			t.Fatal(err)
		}
		msg := []byte("pay 100 EUR to shop")
		msgPath := filepath.Join(dir, "msg")
		_ = os.WriteFile(msgPath, msg, 0o600)
		for _, alg := range s.SigningAlgorithms {
			t.Run(spec+"/"+alg, func(t *testing.T) {
				if err := s.CheckSigning(alg, "RAW", msg); err != nil {
					t.Fatal(err)
				}
				sig, err := Sign(priv, alg, "RAW", msg, rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				if err := Verify(pub, alg, "RAW", msg, sig); err != nil {
					t.Fatalf("own signature: %v", err)
				}
				bad := bytes.Clone(sig)
				bad[len(bad)/2] ^= 1
				if err := Verify(pub, alg, "RAW", msg, bad); !errors.Is(err, ErrSignature) {
					t.Fatalf("flipped signature: %v", err)
				}
				sigPath := filepath.Join(t.TempDir(), "sig")
				_ = os.WriteFile(sigPath, sig, 0o600)
				var args []string
				switch {
				case strings.HasPrefix(alg, "ED25519"):
					args = []string{"pkeyutl", "-verify", "-pubin", "-inkey", pubPath, "-rawin", "-in", msgPath, "-sigfile", sigPath}
				default:
					digest := "-sha" + alg[len(alg)-3:]
					args = []string{"dgst", digest, "-verify", pubPath, "-signature", sigPath}
					if strings.Contains(alg, "PSS") {
						args = append(args, "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest")
					}
					args = append(args, msgPath)
				}
				out := string(openssltest.Run(t, nil, args...))
				if !strings.Contains(out, "Verified OK") && !strings.Contains(out, "Signature Verified Successfully") {
					t.Fatalf("openssl %v: %s", args, out)
				}
			})
		}
	})
}

// eachKeyPair calls f with a new key pair (PKCS#8 private key, PKIX public
// key) of every kind in keyPairs; -short leaves out RSA 4096, which takes
// seconds to make.
func eachKeyPair(t *testing.T, f func(name string, s AsymmetricSpec, priv, pub []byte)) {
	t.Helper()
	for name, s := range keyPairs {
		if testing.Short() && name == "RSA 4096" {
			continue
		}
		priv, pub, err := s.GenerateKeyPair(rand.Reader)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		f(name, s, priv, pub)
	}
}

func TestSigningChecks(t *testing.T) {
	rsaSpec, ed := RSAKeyPair(2048), Ed25519KeyPair()
	d := sha256.Sum256([]byte("m"))
	tests := map[string]struct {
		spec    AsymmetricSpec
		alg, mt string
		msg     []byte
		want    string
	}{
		"algorithm of another key type": {rsaSpec, "ECDSA_SHA_256", "RAW", []byte("m"), "signing_algorithm must be one of"},
		"digest of the wrong size":      {rsaSpec, "RSASSA_PSS_SHA_384", "DIGEST", d[:], "must be 48 bytes, got 32"},
		"message too long":              {rsaSpec, "RSASSA_PSS_SHA_256", "RAW", make([]byte, 4097), "1 to 4096 bytes"},
		"ed25519 digest":                {ed, "ED25519_SHA_512", "DIGEST", make([]byte, 64), "RAW messages only"},
		"unknown message type":          {rsaSpec, "RSASSA_PSS_SHA_256", "HASHED", []byte("m"), "RAW or DIGEST"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if err := tc.spec.CheckSigning(tc.alg, tc.mt, tc.msg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	ok := rsaSpec.CheckSigning("RSASSA_PSS_SHA_256", "DIGEST", d[:])
	if ok != nil {
		t.Fatalf("a SHA-256 digest is valid: %v", ok)
	}
}
