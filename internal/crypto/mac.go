package crypto

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
)

// MACAlgorithm names an HMAC as AWS does: HMAC_SHA_224 .. HMAC_SHA_512.
type MACAlgorithm string

// The HMAC algorithms, one per HMAC key spec.
const (
	HMACSHA224 MACAlgorithm = "HMAC_SHA_224"
	HMACSHA256 MACAlgorithm = "HMAC_SHA_256"
	HMACSHA384 MACAlgorithm = "HMAC_SHA_384"
	HMACSHA512 MACAlgorithm = "HMAC_SHA_512"
)

// HMACKeySpec describes an HMAC key spec: its algorithm, hash and key size
// (AWS's: 224, 256, 384 and 512 bits).
type HMACKeySpec struct {
	Algorithm MACAlgorithm
	KeySize   int
	hash      func() hash.Hash
}

var hmacSpecs = map[string]HMACKeySpec{
	"HMAC_224": {HMACSHA224, 28, sha256.New224},
	"HMAC_256": {HMACSHA256, 32, sha256.New},
	"HMAC_384": {HMACSHA384, 48, sha512.New384},
	"HMAC_512": {HMACSHA512, 64, sha512.New},
}

// HMACSpec returns the HMAC parameters of a key spec.
func HMACSpec(keySpec string) (HMACKeySpec, bool) {
	s, ok := hmacSpecs[keySpec]
	return s, ok
}

// MAC computes the HMAC of message under key.
func (s HMACKeySpec) MAC(key, message []byte) ([]byte, error) {
	if len(key) != s.KeySize {
		return nil, fmt.Errorf("%s key is %d bytes, want %d", s.Algorithm, len(key), s.KeySize)
	}
	m := hmac.New(s.hash, key)
	m.Write(message)
	return m.Sum(nil), nil
}

// VerifyMAC says, in constant time, whether mac is the HMAC of message.
func (s HMACKeySpec) VerifyMAC(key, message, mac []byte) bool {
	want, err := s.MAC(key, message)
	return err == nil && hmac.Equal(want, mac)
}
