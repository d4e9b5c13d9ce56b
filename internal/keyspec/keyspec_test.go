package keyspec_test

import (
	"bytes"
	"crypto/rand"
	"slices"
	"strings"
	"testing"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keyspec"
	"github.com/kubekms/kubekms/internal/kmscrypto"
	"github.com/kubekms/kubekms/internal/kmscrypto/openssltest"
)

// Every row keeps the table's rules: a known family and quota class, a
// default usage it allows, primitives that match its family.
func TestRowsAreConsistent(t *testing.T) {
	classes := []string{keyspec.ClassSymmetric, keyspec.ClassRSA, keyspec.ClassECC}
	for _, s := range keyspec.All() {
		t.Run(string(s.Name), func(t *testing.T) {
			got, ok := keyspec.Lookup(string(s.Name))
			if !ok || got.Name != s.Name {
				t.Fatalf("Lookup(%s) = %v, %v", s.Name, got.Name, ok)
			}
			if !s.Allows(s.DefaultUsage) || !slices.Contains(s.Usages(), s.DefaultUsage) {
				t.Errorf("default usage %s is not among %v", s.DefaultUsage, s.Usages())
			}
			if !slices.Contains(classes, s.QuotaClass) {
				t.Errorf("quota class %q is none of %v", s.QuotaClass, classes)
			}
			_, asym := s.Asymmetric()
			_, mac := s.HMAC()
			wantAsym := s.Family == keyspec.FamilyRSA || s.Family == keyspec.FamilyECC
			if asym != wantAsym || mac != (s.Family == keyspec.FamilyHMAC) || s.Family == "" {
				t.Errorf("family %q, Asymmetric %v, HMAC %v", s.Family, asym, mac)
			}
			if s.DataKeyPair && !asym {
				t.Error("a data key pair spec must be asymmetric")
			}
			for _, u := range s.Usages() {
				a := s.Algorithms(u)
				if len(a.Encryption)+len(a.Signing)+len(a.MAC) == 0 {
					t.Errorf("usage %s has no algorithm", u)
				}
			}
		})
	}
	if _, ok := keyspec.Lookup("AES_128"); ok {
		t.Error("Lookup found a spec that is not in the table")
	}
}

// The values the data plane and the controllers read, pinned row by row.
func TestTableValues(t *testing.T) {
	ed, sv, mac := kmsv1alpha1.KeyUsageEncryptDecrypt, kmsv1alpha1.KeyUsageSignVerify, kmsv1alpha1.KeyUsageGenerateVerifyMAC
	tests := map[string]struct {
		wantFamily  keyspec.Family
		wantUsages  []kmsv1alpha1.KeyUsage
		wantDefault kmsv1alpha1.KeyUsage
		wantClass   string
		wantPair    bool
	}{
		"SYMMETRIC_DEFAULT":     {keyspec.FamilySymmetric, []kmsv1alpha1.KeyUsage{ed}, ed, "symmetric", false},
		"RSA_2048":              {keyspec.FamilyRSA, []kmsv1alpha1.KeyUsage{ed, sv}, ed, "rsa", true},
		"RSA_3072":              {keyspec.FamilyRSA, []kmsv1alpha1.KeyUsage{ed, sv}, ed, "rsa", true},
		"RSA_4096":              {keyspec.FamilyRSA, []kmsv1alpha1.KeyUsage{ed, sv}, ed, "rsa", true},
		"ECC_NIST_P256":         {keyspec.FamilyECC, []kmsv1alpha1.KeyUsage{sv}, sv, "ecc", true},
		"ECC_NIST_P384":         {keyspec.FamilyECC, []kmsv1alpha1.KeyUsage{sv}, sv, "ecc", true},
		"ECC_NIST_P521":         {keyspec.FamilyECC, []kmsv1alpha1.KeyUsage{sv}, sv, "ecc", true},
		"ECC_NIST_EDWARDS25519": {keyspec.FamilyECC, []kmsv1alpha1.KeyUsage{sv}, sv, "ecc", false},
		"HMAC_224":              {keyspec.FamilyHMAC, []kmsv1alpha1.KeyUsage{mac}, mac, "symmetric", false},
		"HMAC_256":              {keyspec.FamilyHMAC, []kmsv1alpha1.KeyUsage{mac}, mac, "symmetric", false},
		"HMAC_384":              {keyspec.FamilyHMAC, []kmsv1alpha1.KeyUsage{mac}, mac, "symmetric", false},
		"HMAC_512":              {keyspec.FamilyHMAC, []kmsv1alpha1.KeyUsage{mac}, mac, "symmetric", false},
	}
	if len(keyspec.All()) != len(tests) {
		t.Fatalf("the table has %d rows, this test knows %d", len(keyspec.All()), len(tests))
	}
	for name, tc := range tests {
		s, ok := keyspec.Lookup(name)
		if !ok {
			t.Errorf("%s: not in the table", name)
			continue
		}
		if s.Family != tc.wantFamily || !slices.Equal(s.Usages(), tc.wantUsages) || s.DefaultUsage != tc.wantDefault ||
			s.QuotaClass != tc.wantClass || s.DataKeyPair != tc.wantPair {
			t.Errorf("%s = {%s %v %s %s %v}, want %+v", name, s.Family, s.Usages(), s.DefaultUsage, s.QuotaClass, s.DataKeyPair, tc)
		}
		if got := keyspec.QuotaClassOf(name); got != tc.wantClass {
			t.Errorf("QuotaClassOf(%s) = %s, want %s", name, got, tc.wantClass)
		}
	}
	if got := keyspec.QuotaClassOf("AES_128"); got != keyspec.ClassSymmetric {
		t.Errorf("QuotaClassOf(unknown) = %s, want symmetric", got)
	}
	want := []string{"RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521"}
	if got := keyspec.DataKeyPairSpecs(); !slices.Equal(got, want) {
		t.Errorf("DataKeyPairSpecs = %v, want %v", got, want)
	}
}

// DescribeKey's algorithms: per spec and usage, and only what the
// primitives in internal/kmscrypto serve.
func TestAlgorithms(t *testing.T) {
	ed, sv, mac := kmsv1alpha1.KeyUsageEncryptDecrypt, kmsv1alpha1.KeyUsageSignVerify, kmsv1alpha1.KeyUsageGenerateVerifyMAC
	rsaSigning := []string{"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
		"RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512"}
	tests := map[string]struct {
		spec  string
		usage kmsv1alpha1.KeyUsage
		want  keyspec.Algorithms
	}{
		"symmetric":              {"SYMMETRIC_DEFAULT", ed, keyspec.Algorithms{Encryption: []string{"SYMMETRIC_DEFAULT"}}},
		"symmetric, no usage":    {"SYMMETRIC_DEFAULT", "", keyspec.Algorithms{Encryption: []string{"SYMMETRIC_DEFAULT"}}},
		"rsa encryption":         {"RSA_3072", ed, keyspec.Algorithms{Encryption: []string{"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"}}},
		"rsa signing":            {"RSA_2048", sv, keyspec.Algorithms{Signing: rsaSigning}},
		"p256":                   {"ECC_NIST_P256", sv, keyspec.Algorithms{Signing: []string{"ECDSA_SHA_256"}}},
		"p384":                   {"ECC_NIST_P384", sv, keyspec.Algorithms{Signing: []string{"ECDSA_SHA_384"}}},
		"p521":                   {"ECC_NIST_P521", sv, keyspec.Algorithms{Signing: []string{"ECDSA_SHA_512"}}},
		"ed25519, no usage":      {"ECC_NIST_EDWARDS25519", "", keyspec.Algorithms{Signing: []string{"ED25519_SHA_512"}}},
		"hmac 224":               {"HMAC_224", mac, keyspec.Algorithms{MAC: []string{"HMAC_SHA_224"}}},
		"hmac 512":               {"HMAC_512", mac, keyspec.Algorithms{MAC: []string{"HMAC_SHA_512"}}},
		"usage the spec refuses": {"ECC_NIST_P256", ed, keyspec.Algorithms{}},
	}
	for name, tc := range tests {
		s, _ := keyspec.Lookup(tc.spec)
		got := s.Algorithms(tc.usage)
		if !slices.Equal(got.Encryption, tc.want.Encryption) || !slices.Equal(got.Signing, tc.want.Signing) || !slices.Equal(got.MAC, tc.want.MAC) {
			t.Errorf("%s: Algorithms = %+v, want %+v", name, got, tc.want)
		}
	}
	for _, s := range keyspec.All() {
		for _, u := range s.Usages() {
			a := s.Algorithms(u)
			for _, alg := range a.Encryption {
				if alg != keyspec.SymmetricEncryptionAlgorithm && !kmscrypto.IsRSAEncryption(alg) {
					t.Errorf("%s/%s: encryption algorithm %s is served by nothing", s.Name, u, alg)
				}
			}
			asym, _ := s.Asymmetric()
			for _, alg := range a.Signing {
				if err := asym.CheckSigning(alg, "RAW", []byte("m")); err != nil {
					t.Errorf("%s/%s: %v", s.Name, u, err)
				}
			}
			h, _ := s.HMAC()
			for _, alg := range a.MAC {
				if alg != string(h.Algorithm) {
					t.Errorf("%s/%s: MAC algorithm %s, the key's HMAC is %s", s.Name, u, alg, h.Algorithm)
				}
			}
		}
	}
}

// Values from the table are copies: changing one changes nothing.
func TestTableIsNotShared(t *testing.T) {
	s, _ := keyspec.Lookup("RSA_2048")
	s.Usages()[0] = "CHANGED"
	s.Algorithms(kmsv1alpha1.KeyUsageEncryptDecrypt).Encryption[0] = "CHANGED"
	all := keyspec.All()
	all[0].Name = "CHANGED"
	again, _ := keyspec.Lookup("RSA_2048")
	if again.Usages()[0] != kmsv1alpha1.KeyUsageEncryptDecrypt || again.Algorithms(kmsv1alpha1.KeyUsageEncryptDecrypt).Encryption[0] != "RSAES_OAEP_SHA_1" ||
		keyspec.All()[0].Name != kmsv1alpha1.KeySpecSymmetricDefault {
		t.Fatal("a caller changed the table")
	}
}

// Every row accepts the material it generates, in the form it is stored,
// with the public key it derives; it refuses every other row's material
// of another shape (another size, or another asymmetric kind), and sizes
// one byte off.
func TestGenerateThenImport(t *testing.T) {
	made := map[kmsv1alpha1.KeySpecType][]byte{}
	for _, s := range keyspec.All() {
		if testing.Short() && s.Name == kmsv1alpha1.KeySpecRSA4096 {
			continue
		}
		material, err := s.Generate(rand.Reader)
		if err != nil {
			t.Fatalf("%s: Generate: %v", s.Name, err)
		}
		made[s.Name] = material
		if err := s.CheckImport(material); err != nil {
			t.Errorf("%s refuses its own material: %v", s.Name, err)
		}
		stored, public, err := s.Import(material)
		if err != nil || !bytes.Equal(stored, material) {
			t.Errorf("%s: Import changed its own material (%v)", s.Name, err)
		}
		derived, err := s.PublicKey(material)
		if err != nil || !bytes.Equal(derived, public) {
			t.Errorf("%s: PublicKey differs from Import's (%v)", s.Name, err)
		}
		if _, asym := s.Asymmetric(); asym != (len(public) > 0) {
			t.Errorf("%s: public key of %d bytes", s.Name, len(public))
		}
	}
	for _, s := range keyspec.All() {
		for other, material := range made {
			sameShape := other == s.Name
			if _, asym := s.Asymmetric(); !asym {
				// Symmetric and HMAC material is bytes: the size is all there
				// is (48 bytes of Ed25519 PKCS#8 are HMAC_384 material too).
				sameShape = len(material) == len(made[s.Name])
			}
			if err := s.CheckImport(material); (err == nil) != sameShape {
				t.Errorf("%s.CheckImport(%s material) = %v", s.Name, other, err)
			}
		}
		if _, asym := s.Asymmetric(); asym {
			continue
		}
		n := len(made[s.Name])
		for _, size := range []int{n - 1, n + 1} {
			if err := s.CheckImport(make([]byte, size)); err == nil {
				t.Errorf("%s accepts %d bytes", s.Name, size)
			}
		}
	}
}

// Imported material, made by openssl (an implementation nobody here
// wrote): the checks and the messages an importer reads.
func TestImport(t *testing.T) {
	rsa2048 := openssltest.PKCS8(t, "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")
	p384 := openssltest.PKCS8(t, "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384")
	ed := openssltest.PKCS8(t, "-algorithm", "ED25519")
	for name, tc := range map[string]struct {
		spec     string
		material []byte
		want     string
	}{
		"symmetric ok":    {"SYMMETRIC_DEFAULT", make([]byte, 32), ""},
		"symmetric short": {"SYMMETRIC_DEFAULT", make([]byte, 16), "SYMMETRIC_DEFAULT material must be 32 bytes (AES-256), got 16"},
		"hmac ok":         {"HMAC_384", make([]byte, 48), ""},
		"hmac long":       {"HMAC_256", make([]byte, 33), "HMAC_256 material must be 32 bytes, got 33"},
		"rsa ok":          {"RSA_2048", rsa2048, ""},
		"rsa wrong size":  {"RSA_3072", rsa2048, "material is a RSA_2048 private key, the Key is RSA_3072"},
		"p384 ok":         {"ECC_NIST_P384", p384, ""},
		"p384 as p256":    {"ECC_NIST_P256", p384, "ECC_NIST_P384 private key, the Key is ECC_NIST_P256"},
		"ed25519 ok":      {"ECC_NIST_EDWARDS25519", ed, ""},
		"ed as ecdsa":     {"ECC_NIST_P256", ed, "ECC_NIST_EDWARDS25519 private key, the Key is ECC_NIST_P256"},
		"rsa as ecc":      {"ECC_NIST_P521", rsa2048, "RSA_2048 private key, the Key is ECC_NIST_P521"},
		"not pkcs8":       {"ECC_NIST_P256", make([]byte, 32), "ECC_NIST_P256 material must be a PKCS#8 DER private key"},
		"unknown spec":    {"AES_128", make([]byte, 16), "keySpec AES_128 cannot be imported"},
	} {
		stored, public, err := keyspec.Import(tc.spec, tc.material)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
		if err != nil {
			if stored != nil || public != nil {
				t.Errorf("%s: refused material returned", name)
			}
			continue
		}
		if s, _ := keyspec.Lookup(tc.spec); s.Family == keyspec.FamilyRSA || s.Family == keyspec.FamilyECC {
			want := openssltest.Run(t, tc.material, "pkey", "-inform", "DER", "-pubout", "-outform", "DER")
			if !bytes.Equal(public, want) {
				t.Errorf("%s: public key differs from openssl's", name)
			}
		}
	}
	// A key of a size no spec has is named by what it is.
	rsa1024 := openssltest.PKCS8(t, "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024")
	s, _ := keyspec.Lookup("RSA_2048")
	if err := s.CheckImport(rsa1024); err == nil || !strings.Contains(err.Error(), "material is a 1024-bit RSA private key, the Key is RSA_2048") {
		t.Errorf("RSA 1024: err = %v", err)
	}
}
