package kmscrypto

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

// HMACKeySpec describes an HMAC: its algorithm, hash and key size (AWS's:
// 224, 256, 384 and 512 bits, the hash's output size). Which key spec uses
// which HMAC is internal/keyspec's table.
type HMACKeySpec struct {
	Algorithm MACAlgorithm
	KeySize   int
	hash      func() hash.Hash
}

var hmacs = map[MACAlgorithm]HMACKeySpec{
	HMACSHA224: {HMACSHA224, 28, sha256.New224},
	HMACSHA256: {HMACSHA256, 32, sha256.New},
	HMACSHA384: {HMACSHA384, 48, sha512.New384},
	HMACSHA512: {HMACSHA512, 64, sha512.New},
}

// HMACFor returns the parameters of an HMAC algorithm.
func HMACFor(alg MACAlgorithm) (HMACKeySpec, bool) {
	s, ok := hmacs[alg]
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
