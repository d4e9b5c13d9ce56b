// Package keyspec is the one table of key specs: for each spec a Key may
// name (SYMMETRIC_DEFAULT, RSA_*, ECC_*, HMAC_*), its family, the key usages
// it allows and the one it defaults to, the quota class its operations count
// in, how its material is made and how imported material is checked, the
// algorithms DescribeKey reports, and whether GenerateDataKeyPair makes it.
//
// Rules every row keeps (and keyspec_test.go checks):
//   - the table names exactly the CRD's keySpec enum, and the usages its
//     CEL rule allows per spec;
//   - the default usage is one of the allowed usages;
//   - material a row generates passes that row's import check, and no
//     other row's.
//
// The package is pure: no client, no clock, randomness only as passed in.
// The primitives (AES, RSA, ECDSA, Ed25519, HMAC) live in internal/kmscrypto;
// this package only says which spec uses which.
package keyspec

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io"
	"slices"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/kmscrypto"
)

// Family groups key specs that share their primitive.
type Family string

const (
	// FamilySymmetric is SYMMETRIC_DEFAULT: a 256-bit AES-GCM key.
	FamilySymmetric Family = "Symmetric"
	// FamilyRSA are RSA key pairs (RSA_2048, RSA_3072, RSA_4096).
	FamilyRSA Family = "RSA"
	// FamilyECC are elliptic-curve key pairs: ECDSA on NIST curves and Ed25519.
	FamilyECC Family = "ECC"
	// FamilyHMAC are HMAC keys (HMAC_224 .. HMAC_512).
	FamilyHMAC Family = "HMAC"
)

// Quota classes, as internal/quota names its buckets: an operation that
// names a key counts in its spec's class, whatever the operation.
const (
	// ClassSymmetric: symmetric and HMAC keys, and operations naming no key.
	ClassSymmetric = "symmetric"
	// ClassRSA: RSA keys, for signing and for encryption alike.
	ClassRSA = "rsa"
	// ClassECC: elliptic-curve keys.
	ClassECC = "ecc"
)

// SymmetricEncryptionAlgorithm is the one encryption algorithm of
// SYMMETRIC_DEFAULT keys; AWS names it after the key spec.
const SymmetricEncryptionAlgorithm = string(kmsv1alpha1.KeySpecSymmetricDefault)

// Spec is one row of the table. Values are copies: changing one changes
// nothing in the table.
type Spec struct {
	// Name is the key spec as the Key's spec.keySpec and the API spell it.
	Name kmsv1alpha1.KeySpecType
	// Family is the kind of primitive.
	Family Family
	// DefaultUsage is the key usage a Key gets when spec.keyUsage is omitted.
	DefaultUsage kmsv1alpha1.KeyUsage
	// QuotaClass is the quota bucket operations on such keys count in
	// (ClassSymmetric, ClassRSA or ClassECC).
	QuotaClass string
	// DataKeyPair says whether GenerateDataKeyPair makes key pairs of this
	// spec (AWS's list: RSA and NIST ECC, not Ed25519).
	DataKeyPair bool

	usages []kmsv1alpha1.KeyUsage
	// size is the material size in bytes of symmetric and HMAC keys.
	size int
	asym kmscrypto.AsymmetricSpec
	hmac kmscrypto.HMACKeySpec
}

// Algorithms are the algorithms a key of some spec and usage allows, as
// DescribeKey reports them; fields that do not apply are nil.
type Algorithms struct {
	Encryption []string
	Signing    []string
	MAC        []string
}

var (
	encryptDecrypt = kmsv1alpha1.KeyUsageEncryptDecrypt
	signVerify     = kmsv1alpha1.KeyUsageSignVerify
	generateMAC    = kmsv1alpha1.KeyUsageGenerateVerifyMAC
)

func rsaRow(name kmsv1alpha1.KeySpecType, bits int) Spec {
	return Spec{Name: name, Family: FamilyRSA, DefaultUsage: encryptDecrypt, QuotaClass: ClassRSA, DataKeyPair: true,
		usages: []kmsv1alpha1.KeyUsage{encryptDecrypt, signVerify}, asym: kmscrypto.RSAKeyPair(bits)}
}

func ecdsaRow(name kmsv1alpha1.KeySpecType, c elliptic.Curve, alg string) Spec {
	return Spec{Name: name, Family: FamilyECC, DefaultUsage: signVerify, QuotaClass: ClassECC, DataKeyPair: true,
		usages: []kmsv1alpha1.KeyUsage{signVerify}, asym: kmscrypto.ECDSAKeyPair(c, alg)}
}

func hmacRow(name kmsv1alpha1.KeySpecType, alg kmscrypto.MACAlgorithm) Spec {
	h, ok := kmscrypto.HMACFor(alg)
	if !ok {
		panic("keyspec: no HMAC " + string(alg))
	}
	return Spec{Name: name, Family: FamilyHMAC, DefaultUsage: generateMAC, QuotaClass: ClassSymmetric,
		usages: []kmsv1alpha1.KeyUsage{generateMAC}, size: h.KeySize, hmac: h}
}

// table is in the order of the CRD's enum.
var table = []Spec{
	{Name: kmsv1alpha1.KeySpecSymmetricDefault, Family: FamilySymmetric, DefaultUsage: encryptDecrypt, QuotaClass: ClassSymmetric,
		usages: []kmsv1alpha1.KeyUsage{encryptDecrypt}, size: kmscrypto.VersionKeySize},
	rsaRow(kmsv1alpha1.KeySpecRSA2048, 2048),
	rsaRow(kmsv1alpha1.KeySpecRSA3072, 3072),
	rsaRow(kmsv1alpha1.KeySpecRSA4096, 4096),
	ecdsaRow(kmsv1alpha1.KeySpecECCNISTP256, elliptic.P256(), "ECDSA_SHA_256"),
	ecdsaRow(kmsv1alpha1.KeySpecECCNISTP384, elliptic.P384(), "ECDSA_SHA_384"),
	ecdsaRow(kmsv1alpha1.KeySpecECCNISTP521, elliptic.P521(), "ECDSA_SHA_512"),
	{Name: kmsv1alpha1.KeySpecECCNISTEdwards25519, Family: FamilyECC, DefaultUsage: signVerify, QuotaClass: ClassECC,
		usages: []kmsv1alpha1.KeyUsage{signVerify}, asym: kmscrypto.Ed25519KeyPair()},
	hmacRow(kmsv1alpha1.KeySpecHMAC224, kmscrypto.HMACSHA224),
	hmacRow(kmsv1alpha1.KeySpecHMAC256, kmscrypto.HMACSHA256),
	hmacRow(kmsv1alpha1.KeySpecHMAC384, kmscrypto.HMACSHA384),
	hmacRow(kmsv1alpha1.KeySpecHMAC512, kmscrypto.HMACSHA512),
}

var byName = func() map[string]Spec {
	m := make(map[string]Spec, len(table))
	for _, s := range table {
		m[string(s.Name)] = s
	}
	return m
}()

// Lookup returns the row of a key spec, and false for a name that is none.
func Lookup(name string) (Spec, bool) {
	s, ok := byName[name]
	return s, ok
}

// All returns every row, in the table's order (the CRD enum's).
func All() []Spec { return slices.Clone(table) }

// DataKeyPairSpecs names the specs GenerateDataKeyPair makes, in table order.
func DataKeyPairSpecs() []string {
	var out []string
	for _, s := range table {
		if s.DataKeyPair {
			out = append(out, string(s.Name))
		}
	}
	return out
}

// QuotaClassOf is the quota class of an operation on a key of keySpec; a
// name that is no spec counts as ClassSymmetric, like a call naming no key.
func QuotaClassOf(keySpec string) string {
	if s, ok := byName[keySpec]; ok {
		return s.QuotaClass
	}
	return ClassSymmetric
}

// Usages are the key usages a key of this spec may have; the first is not
// necessarily the default (see DefaultUsage).
func (s Spec) Usages() []kmsv1alpha1.KeyUsage { return slices.Clone(s.usages) }

// Allows says whether a key of this spec may have usage u.
func (s Spec) Allows(u kmsv1alpha1.KeyUsage) bool { return slices.Contains(s.usages, u) }

// Asymmetric is the key-pair spec of RSA and ECC rows, and false otherwise.
func (s Spec) Asymmetric() (kmscrypto.AsymmetricSpec, bool) {
	return s.asym, s.Family == FamilyRSA || s.Family == FamilyECC
}

// HMAC is the HMAC of HMAC rows, and false otherwise.
func (s Spec) HMAC() (kmscrypto.HMACKeySpec, bool) { return s.hmac, s.Family == FamilyHMAC }

// Algorithms are what a key of this spec and usage allows: the encryption
// algorithms of ENCRYPT_DECRYPT keys (SYMMETRIC_DEFAULT, or RSA-OAEP for RSA
// keys), the signing algorithms of SIGN_VERIFY keys, the MAC algorithm of
// HMAC keys. An empty usage is the spec's default usage; a usage the spec
// does not allow has none.
func (s Spec) Algorithms(u kmsv1alpha1.KeyUsage) Algorithms {
	if u == "" {
		u = s.DefaultUsage
	}
	if !s.Allows(u) {
		return Algorithms{}
	}
	switch {
	case s.Family == FamilySymmetric:
		return Algorithms{Encryption: []string{SymmetricEncryptionAlgorithm}}
	case s.Family == FamilyHMAC:
		return Algorithms{MAC: []string{string(s.hmac.Algorithm)}}
	case u == signVerify:
		return Algorithms{Signing: slices.Clone(s.asym.SigningAlgorithms)}
	case s.Family == FamilyRSA:
		return Algorithms{Encryption: slices.Clone(kmscrypto.RSAEncryptionAlgorithms)}
	}
	return Algorithms{}
}

// Generate makes the material of a new version: random bytes of the key
// size for symmetric and HMAC specs, a PKCS#8 DER private key for RSA and
// ECC specs (PublicKey derives its public key).
func (s Spec) Generate(random io.Reader) ([]byte, error) {
	if a, ok := s.Asymmetric(); ok {
		private, _, err := a.GenerateKeyPair(random)
		return private, err
	}
	if s.size == 0 {
		return nil, fmt.Errorf("no material for keySpec %s", s.Name)
	}
	material := make([]byte, s.size)
	if _, err := io.ReadFull(random, material); err != nil {
		return nil, err
	}
	return material, nil
}

// PublicKey is the SubjectPublicKeyInfo DER of an asymmetric spec's
// material, and nil for symmetric and HMAC specs, which have none.
func (s Spec) PublicKey(material []byte) ([]byte, error) {
	if _, ok := s.Asymmetric(); !ok {
		return nil, nil
	}
	return kmscrypto.PublicKeyOf(material)
}

// CheckImport says whether imported material fits this spec: 32 bytes for
// SYMMETRIC_DEFAULT, exactly the HMAC key size for HMAC specs, a PKCS#8 DER
// private key of exactly this spec's RSA size, curve or Ed25519 otherwise.
func (s Spec) CheckImport(material []byte) error {
	_, err := s.check(material)
	return err
}

// Import checks imported material (as CheckImport) and returns it in the
// form kubekms stores, PKCS#8 DER re-encoded for asymmetric specs, with its
// public key (nil for symmetric and HMAC specs).
func (s Spec) Import(material []byte) (stored, public []byte, err error) {
	k, err := s.check(material)
	if err != nil {
		return nil, nil, err
	}
	if k == nil {
		return material, nil, nil
	}
	if stored, err = x509.MarshalPKCS8PrivateKey(k); err != nil {
		return nil, nil, err
	}
	public, err = kmscrypto.PublicKeyOf(stored)
	return stored, public, err
}

// check returns the parsed private key of asymmetric material.
func (s Spec) check(material []byte) (any, error) {
	switch s.Family {
	case FamilySymmetric:
		if len(material) != s.size {
			return nil, fmt.Errorf("%s material must be %d bytes (AES-256), got %d", s.Name, s.size, len(material))
		}
		return nil, nil
	case FamilyHMAC:
		if len(material) != s.size {
			return nil, fmt.Errorf("%s material must be %d bytes, got %d", s.Name, s.size, len(material))
		}
		return nil, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(material)
	if err != nil {
		return nil, fmt.Errorf("%s material must be a PKCS#8 DER private key: %w", s.Name, err)
	}
	if !s.asym.Holds(k) {
		return nil, fmt.Errorf("material is a %s private key, the Key is %s", specOfKey(k), s.Name)
	}
	return k, nil
}

// specOfKey names the spec of a parsed private key, for error messages.
func specOfKey(k any) string {
	for _, s := range table {
		if a, ok := s.Asymmetric(); ok && a.Holds(k) {
			return string(s.Name)
		}
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return fmt.Sprintf("%d-bit RSA", k.N.BitLen())
	case *ecdsa.PrivateKey:
		return "ECDSA " + k.Curve.Params().Name
	}
	return fmt.Sprintf("%T", k)
}

// Import checks imported material against the named key spec; see
// Spec.Import. A name that is no spec cannot be imported.
func Import(keySpec string, material []byte) (stored, public []byte, err error) {
	s, ok := Lookup(keySpec)
	if !ok {
		return nil, nil, fmt.Errorf("keySpec %s cannot be imported", keySpec)
	}
	return s.Import(material)
}
