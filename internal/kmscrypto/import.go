package kmscrypto

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Bring-your-own-key import: an RSA 4096 wrapping key per External key, an
// import token that names the key and when the parameters expire, the two
// unwrapping algorithms AWS KMS offers. The checks imported material must
// pass before it is sealed depend on the key spec: internal/keyspec.

// WrappingKeyBits is the size of import wrapping keys.
const WrappingKeyBits = 4096

const (
	importTokenPrefix = "kubekms-import-v1."
	importNonceSize   = 16
	importTokenRaw    = KeyIDSize + 8 + importNonceSize
)

// NewWrappingKey makes an RSA 4096 import wrapping key: PKCS#8 private key
// and SubjectPublicKeyInfo public key, both DER.
func NewWrappingKey(random io.Reader) (private, public []byte, err error) {
	k, err := rsa.GenerateKey(random, WrappingKeyBits)
	if err != nil {
		return nil, nil, err
	}
	if private, err = x509.MarshalPKCS8PrivateKey(k); err != nil {
		return nil, nil, err
	}
	public, err = x509.MarshalPKIXPublicKey(&k.PublicKey)
	return private, public, err
}

// NewImportToken makes the token that goes with one set of import
// parameters: it names the key and the expiry, and a random part makes it
// unique to the wrapping key it was issued with.
func NewImportToken(keyID KeyID, expires time.Time, random io.Reader) (string, error) {
	raw := make([]byte, 0, importTokenRaw)
	raw = append(raw, keyID[:]...)
	raw = binary.BigEndian.AppendUint64(raw, uint64(expires.Unix()))
	nonce := make([]byte, importNonceSize)
	if _, err := io.ReadFull(random, nonce); err != nil {
		return "", err
	}
	return importTokenPrefix + base64.RawURLEncoding.EncodeToString(append(raw, nonce...)), nil
}

// CheckImportToken checks a token from an import Secret against the key and
// the token currently issued for it. The errors say what is wrong without
// echoing the token.
func CheckImportToken(token string, keyID KeyID, issued string, now time.Time) error {
	token = strings.TrimSpace(token)
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, importTokenPrefix))
	if !strings.HasPrefix(token, importTokenPrefix) || err != nil || len(raw) != importTokenRaw {
		return errors.New("importToken is not a kubekms import token: copy the import token GetParametersForImport returns (kubectl kms get-parameters-for-import)")
	}
	if subtle.ConstantTimeCompare(raw[:KeyIDSize], keyID[:]) != 1 {
		return errors.New("importToken was issued for another key")
	}
	expires := time.Unix(int64(binary.BigEndian.Uint64(raw[KeyIDSize:])), 0).UTC()
	if !now.Before(expires) {
		return fmt.Errorf("importToken expired at %s: wrap the material again with the current import parameters (GetParametersForImport)", expires.Format(time.RFC3339))
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(issued)) != 1 {
		return errors.New("importToken is not the current one (the parameters were renewed): wrap the material again with the current import parameters (GetParametersForImport)")
	}
	return nil
}

// UnwrapImport unwraps imported material with the wrapping private key
// (PKCS#8) by one of the two wrapping algorithms.
func UnwrapImport(wrappingKey []byte, algorithm string, wrapped []byte) ([]byte, error) {
	k, err := x509.ParsePKCS8PrivateKey(wrappingKey)
	if err != nil {
		return nil, fmt.Errorf("wrapping key: %w", err)
	}
	priv, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("wrapping key is %T, not RSA", k)
	}
	size := priv.Size()
	switch algorithm {
	case "", "RSAES_OAEP_SHA_256":
		if len(wrapped) != size {
			return nil, fmt.Errorf("wrappedKeyMaterial is %d bytes; RSAES_OAEP_SHA_256 under an RSA %d wrapping key makes exactly %d", len(wrapped), WrappingKeyBits, size)
		}
		pt, err := rsa.DecryptOAEP(sha256.New(), nil, priv, wrapped, nil)
		if err != nil {
			return nil, fmt.Errorf("%w (RSAES_OAEP_SHA_256)", ErrKeyUnwrap)
		}
		return pt, nil
	case "RSA_AES_KEY_WRAP_SHA_256":
		if len(wrapped) < size+16 {
			return nil, fmt.Errorf("wrappedKeyMaterial is %d bytes; RSA_AES_KEY_WRAP_SHA_256 makes %d bytes of wrapped AES key followed by at least 16 of wrapped material", len(wrapped), size)
		}
		aesKey, err := rsa.DecryptOAEP(sha256.New(), nil, priv, wrapped[:size], nil)
		if err != nil || len(aesKey) != 32 {
			clear(aesKey)
			return nil, fmt.Errorf("%w (RSA_AES_KEY_WRAP_SHA_256: the AES key does not unwrap, or is not 32 bytes)", ErrKeyUnwrap)
		}
		defer clear(aesKey)
		pt, err := UnwrapKWP(aesKey, wrapped[size:])
		if err != nil {
			return nil, fmt.Errorf("%w (RSA_AES_KEY_WRAP_SHA_256: the material does not unwrap with the AES key)", err)
		}
		return pt, nil
	}
	return nil, fmt.Errorf("wrapping algorithm %q is not RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256", algorithm)
}
