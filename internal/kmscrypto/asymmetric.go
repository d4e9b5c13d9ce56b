package kmscrypto

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	_ "crypto/sha1" // RSAES_OAEP_SHA_1
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"slices"
)

// AsymmetricSpec describes one kind of asymmetric key (an RSA size, an
// ECDSA curve, or Ed25519): how to make a key, which private keys are of
// this kind, and which signing algorithms it allows. Which key spec names
// which kind is internal/keyspec's table, not this package's.
type AsymmetricSpec struct {
	generate          func(random io.Reader) (crypto.Signer, error)
	holds             func(k any) bool
	SigningAlgorithms []string
}

// rsaSigningAlgorithms are the signing algorithms of every RSA size.
var rsaSigningAlgorithms = []string{"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
	"RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512"}

// RSAKeyPair is the spec of RSA keys of exactly bits bits, signing with
// PSS or PKCS #1 v1.5 over SHA-256, SHA-384 or SHA-512.
func RSAKeyPair(bits int) AsymmetricSpec {
	return AsymmetricSpec{
		generate: func(r io.Reader) (crypto.Signer, error) { return rsa.GenerateKey(r, bits) },
		holds: func(k any) bool {
			rk, ok := k.(*rsa.PrivateKey)
			return ok && rk.N.BitLen() == bits
		},
		SigningAlgorithms: slices.Clone(rsaSigningAlgorithms),
	}
}

// ECDSAKeyPair is the spec of ECDSA keys on curve c, signing with alg only
// (AWS pairs each NIST curve with one hash).
func ECDSAKeyPair(c elliptic.Curve, alg string) AsymmetricSpec {
	return AsymmetricSpec{
		generate: func(r io.Reader) (crypto.Signer, error) { return ecdsa.GenerateKey(c, r) },
		holds: func(k any) bool {
			ek, ok := k.(*ecdsa.PrivateKey)
			return ok && ek.Curve == c
		},
		SigningAlgorithms: []string{alg},
	}
}

// Ed25519KeyPair is the spec of Ed25519 keys, signing with ED25519_SHA_512.
func Ed25519KeyPair() AsymmetricSpec {
	return AsymmetricSpec{
		generate: func(r io.Reader) (crypto.Signer, error) {
			_, priv, err := ed25519.GenerateKey(r)
			return priv, err
		},
		holds: func(k any) bool {
			_, ok := k.(ed25519.PrivateKey)
			return ok
		},
		SigningAlgorithms: []string{"ED25519_SHA_512"},
	}
}

// Holds says whether a parsed private key (as x509.ParsePKCS8PrivateKey
// returns it) is of exactly this kind: same algorithm, size and curve.
func (s AsymmetricSpec) Holds(k any) bool { return s.holds != nil && s.holds(k) }

// GenerateKeyPair makes a key pair and returns the private key as PKCS#8
// DER (the material to seal) and the public key as SubjectPublicKeyInfo DER.
func (s AsymmetricSpec) GenerateKeyPair(random io.Reader) (private, public []byte, err error) {
	k, err := s.generate(random)
	if err != nil {
		return nil, nil, err
	}
	if private, err = x509.MarshalPKCS8PrivateKey(k); err != nil {
		return nil, nil, err
	}
	public, err = x509.MarshalPKIXPublicKey(k.Public())
	return private, public, err
}

// PublicKeyPEM is the PEM form of a SubjectPublicKeyInfo.
func PublicKeyPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// PublicKeyOf derives the SubjectPublicKeyInfo DER of PKCS#8 material.
func PublicKeyOf(private []byte) ([]byte, error) {
	k, err := x509.ParsePKCS8PrivateKey(private)
	if err != nil {
		return nil, err
	}
	return x509.MarshalPKIXPublicKey(k.(crypto.Signer).Public())
}

// ErrSignature is Verify's answer for a signature that does not verify.
var ErrSignature = errors.New("signature does not verify")

type signing struct {
	hash crypto.Hash
	pss  bool
}

var signingAlgorithms = map[string]signing{
	"RSASSA_PSS_SHA_256":        {crypto.SHA256, true},
	"RSASSA_PSS_SHA_384":        {crypto.SHA384, true},
	"RSASSA_PSS_SHA_512":        {crypto.SHA512, true},
	"RSASSA_PKCS1_V1_5_SHA_256": {crypto.SHA256, false},
	"RSASSA_PKCS1_V1_5_SHA_384": {crypto.SHA384, false},
	"RSASSA_PKCS1_V1_5_SHA_512": {crypto.SHA512, false},
	"ECDSA_SHA_256":             {crypto.SHA256, false},
	"ECDSA_SHA_384":             {crypto.SHA384, false},
	"ECDSA_SHA_512":             {crypto.SHA512, false},
	"ED25519_SHA_512":           {0, false},
}

// CheckSigning validates a signing request against a spec: the algorithm
// must be one the key allows; a DIGEST must have the hash's size; Ed25519
// signs only RAW messages of at most 4096 bytes.
func (s AsymmetricSpec) CheckSigning(alg, messageType string, message []byte) error {
	if !slices.Contains(s.SigningAlgorithms, alg) {
		return fmt.Errorf("signing_algorithm must be one of %v for this key, got %q", s.SigningAlgorithms, alg)
	}
	sa := signingAlgorithms[alg]
	switch messageType {
	case "", "RAW":
		if len(message) < 1 || len(message) > 4096 {
			return fmt.Errorf("message must be 1 to 4096 bytes, got %d", len(message))
		}
	case "DIGEST":
		if sa.hash == 0 {
			return fmt.Errorf("%s signs RAW messages only", alg)
		}
		if len(message) != sa.hash.Size() {
			return fmt.Errorf("a DIGEST for %s must be %d bytes, got %d", alg, sa.hash.Size(), len(message))
		}
	default:
		return fmt.Errorf("message_type must be RAW or DIGEST, got %q", messageType)
	}
	return nil
}

func digest(alg string, messageType string, message []byte) []byte {
	sa := signingAlgorithms[alg]
	if sa.hash == 0 || messageType == "DIGEST" {
		return message
	}
	switch sa.hash {
	case crypto.SHA256:
		d := sha256.Sum256(message)
		return d[:]
	case crypto.SHA384:
		d := sha512.Sum384(message)
		return d[:]
	default:
		d := sha512.Sum512(message)
		return d[:]
	}
}

// ParsePrivate parses PKCS#8 material into a signer.
func ParsePrivate(private []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(private)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key %T", k)
	}
	return s, nil
}

// Sign signs with PKCS#8 material. Check the request with CheckSigning first.
func Sign(private []byte, alg, messageType string, message []byte, random io.Reader) ([]byte, error) {
	k, err := ParsePrivate(private)
	if err != nil {
		return nil, err
	}
	return SignWith(k, alg, messageType, message, random)
}

// SignWith signs with a parsed key.
func SignWith(k crypto.Signer, alg, messageType string, message []byte, random io.Reader) ([]byte, error) {
	sa := signingAlgorithms[alg]
	d := digest(alg, messageType, message)
	switch key := k.(type) {
	case *rsa.PrivateKey:
		if sa.pss {
			return rsa.SignPSS(random, key, sa.hash, d, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return rsa.SignPKCS1v15(random, key, sa.hash, d)
	case *ecdsa.PrivateKey:
		return ecdsa.SignASN1(random, key, d)
	case ed25519.PrivateKey:
		return ed25519.Sign(key, d), nil
	}
	return nil, fmt.Errorf("unsupported private key %T", k)
}

// Verify checks a signature with a SubjectPublicKeyInfo.
func Verify(public []byte, alg, messageType string, message, signature []byte) error {
	k, err := x509.ParsePKIXPublicKey(public)
	if err != nil {
		return err
	}
	return VerifyWith(k, alg, messageType, message, signature)
}

// VerifyWith checks a signature with a parsed public key.
func VerifyWith(k crypto.PublicKey, alg, messageType string, message, signature []byte) error {
	sa := signingAlgorithms[alg]
	d := digest(alg, messageType, message)
	ok := false
	switch key := k.(type) {
	case *rsa.PublicKey:
		if sa.pss {
			ok = rsa.VerifyPSS(key, sa.hash, d, signature, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		} else {
			ok = rsa.VerifyPKCS1v15(key, sa.hash, d, signature) == nil
		}
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(key, d, signature)
	case ed25519.PublicKey:
		ok = ed25519.Verify(key, d, signature)
	}
	if !ok {
		return ErrSignature
	}
	return nil
}

// OAEP hashes by encryption algorithm, as AWS names them.
var oaepHashes = map[string]crypto.Hash{
	"RSAES_OAEP_SHA_1":   crypto.SHA1,
	"RSAES_OAEP_SHA_256": crypto.SHA256,
}

// RSAEncryptionAlgorithms are the encryption algorithms of RSA keys.
var RSAEncryptionAlgorithms = []string{"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"}

// IsRSAEncryption says whether alg is an RSA encryption algorithm.
func IsRSAEncryption(alg string) bool { _, ok := oaepHashes[alg]; return ok }

// MaxOAEPPlaintext is the largest plaintext RSA-OAEP takes with this key
// and algorithm (for RSA_2048 and SHA-256: 190 bytes).
func MaxOAEPPlaintext(pub *rsa.PublicKey, alg string) int {
	return pub.Size() - 2*oaepHashes[alg].Size() - 2
}

// EncryptOAEP encrypts with RSA-OAEP (MGF1 with the same hash, no label).
func EncryptOAEP(pub *rsa.PublicKey, alg string, plaintext []byte, random io.Reader) ([]byte, error) {
	return rsa.EncryptOAEP(oaepHashes[alg].New(), random, pub, plaintext, nil)
}

// DecryptOAEP decrypts RSA-OAEP; every failure is ErrInvalidCiphertext.
func DecryptOAEP(priv *rsa.PrivateKey, alg string, ciphertext []byte) ([]byte, error) {
	pt, err := rsa.DecryptOAEP(oaepHashes[alg].New(), nil, priv, ciphertext, nil)
	if err != nil {
		return nil, ErrInvalidCiphertext
	}
	return pt, nil
}
