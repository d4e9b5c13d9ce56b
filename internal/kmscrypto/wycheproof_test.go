package kmscrypto

import (
	"crypto/fips140"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"testing"

	"github.com/c2sp/wycheproof"
)

// Wycheproof known-answer vectors (Apache-2.0), through our verify and
// decrypt paths: every "valid" case must pass and every "invalid" one fail;
// "acceptable" cases may go either way.

type wycheproofFile struct {
	TestGroups []struct {
		PublicKeyDer    string `json:"publicKeyDer"`
		PrivateKeyPkcs8 string `json:"privateKeyPkcs8"`
		Tests           []struct {
			TcID    int    `json:"tcId"`
			Comment string `json:"comment"`
			Msg     string `json:"msg"`
			Sig     string `json:"sig"`
			Ct      string `json:"ct"`
			Label   string `json:"label"`
			Result  string `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

func loadWycheproof(t *testing.T, name string) wycheproofFile {
	t.Helper()
	raw, err := fs.ReadFile(wycheproof.TestVectors, name)
	if err != nil {
		t.Fatal(err)
	}
	var f wycheproofFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fipsRefuses lists valid vectors Go's validated FIPS 140-3 module refuses
// while the default module accepts them (edge cases of PKCS#1 v1.5
// signature size); outside FIPS mode they must verify like all others.
var fipsRefuses = map[string]map[int]bool{
	"RSASSA_PKCS1_V1_5_SHA_256": {258: true, 259: true}, // small signature; signature close to n
}

func TestWycheproofSignatures(t *testing.T) {
	files := map[string]string{
		"ecdsa_secp256r1_sha256_test.json":      "ECDSA_SHA_256",
		"ecdsa_secp384r1_sha384_test.json":      "ECDSA_SHA_384",
		"ecdsa_secp521r1_sha512_test.json":      "ECDSA_SHA_512",
		"rsa_pss_2048_sha256_mgf1_32_test.json": "RSASSA_PSS_SHA_256",
		"rsa_signature_2048_sha256_test.json":   "RSASSA_PKCS1_V1_5_SHA_256",
		"ed25519_test.json":                     "ED25519_SHA_512",
	}
	for name, alg := range files {
		t.Run(alg, func(t *testing.T) {
			f := loadWycheproof(t, name)
			checked := 0
			for _, g := range f.TestGroups {
				pub := mustHex(t, g.PublicKeyDer)
				for _, tc := range g.Tests {
					err := Verify(pub, alg, "RAW", mustHex(t, tc.Msg), mustHex(t, tc.Sig))
					switch tc.Result {
					case "valid":
						if err != nil && fips140.Enabled() && fipsRefuses[alg][tc.TcID] {
							continue
						}
						if err != nil {
							t.Errorf("tcId %d (%s): valid signature refused: %v", tc.TcID, tc.Comment, err)
						}
					case "invalid":
						if err == nil {
							t.Errorf("tcId %d (%s): invalid signature accepted", tc.TcID, tc.Comment)
						}
					default:
						continue
					}
					checked++
				}
			}
			if checked < 50 {
				t.Fatalf("only %d vectors checked", checked)
			}
		})
	}
}

func TestWycheproofOAEP(t *testing.T) {
	f := loadWycheproof(t, "rsa_oaep_2048_sha256_mgf1sha256_test.json")
	checked := 0
	for _, g := range f.TestGroups {
		k, err := ParsePrivate(mustHex(t, g.PrivateKeyPkcs8))
		if err != nil {
			t.Fatal(err)
		}
		priv := k.(*rsa.PrivateKey)
		for _, tc := range g.Tests {
			if tc.Label != "" || tc.Result == "acceptable" {
				continue // kubekms uses no OAEP label
			}
			pt, err := DecryptOAEP(priv, "RSAES_OAEP_SHA_256", mustHex(t, tc.Ct))
			switch tc.Result {
			case "valid":
				if err != nil || hex.EncodeToString(pt) != tc.Msg {
					t.Errorf("tcId %d (%s): %v", tc.TcID, tc.Comment, err)
				}
			case "invalid":
				if !errors.Is(err, ErrInvalidCiphertext) {
					t.Errorf("tcId %d (%s): invalid ciphertext decrypted", tc.TcID, tc.Comment)
				}
			}
			checked++
		}
	}
	if checked < 10 {
		t.Fatalf("only %d vectors checked", checked)
	}
}
