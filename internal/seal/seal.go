// Package seal protects key material under a root of trust.
//
// A Sealer encrypts material and binds it to associated data that names what
// the material is (key ID, version, key spec), so a sealed blob copied into
// another key's place no longer unseals. Providers: local (root keys kept in
// a Secret of the operator's namespace), file (root keys read from files)
// and awskms (a key in AWS KMS or an API-compatible service).
package seal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Sealer seals and unseals key material under a root of trust.
type Sealer interface {
	// Provider names the root of trust, e.g. "local". It is recorded next to
	// every sealed blob.
	Provider() string
	// Seal encrypts plaintext bound to aad.
	Seal(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	// Unseal decrypts a blob made by Seal with the same aad. Any mismatch
	// yields ErrUnseal.
	Unseal(ctx context.Context, blob, aad []byte) ([]byte, error)
}

// ErrUnseal is the one error for a blob that does not unseal: corrupt,
// altered, sealed under another root key, or bound to other associated data.
var ErrUnseal = errors.New("sealed material does not unseal: it is corrupt, was altered, or belongs to another key or version")

// ErrRootUnavailable is wrapped by errors that say the root of trust could
// not do the work (unreachable, refused, or a root key version it was not
// given): the material may be fine and unseal once the root is back, unlike
// ErrUnseal.
var ErrRootUnavailable = errors.New("root of trust unavailable")

// ErrWrongRoot is wrapped by errors that say a root of trust answers but
// is not the one the sealed material was sealed under (another root key,
// AWS key or provider).
var ErrWrongRoot = errors.New("wrong root of trust")

// errVersionNotGiven is wrapped (with ErrRootUnavailable) by an unseal of a
// blob sealed under a root key version newer than the sealer holds: the
// root was rotated and this replica has not reloaded it yet.
var errVersionNotGiven = errors.New("root key version not given yet")

const (
	blobFormat = 1
	headerLen  = 1 + 4 // format, root key version
	// RootKeySize is the size of a root key: AES-256.
	RootKeySize = 32
	// maxVersionsAhead bounds how far past its current root key version a
	// manager takes a blob's version to be one it has not been given yet
	// (a rollout) rather than a corrupt header.
	maxVersionsAhead = 16
)

// AESGCM seals with AES-256-GCM under versioned root keys. Each seal uses a
// fresh random nonce (cipher.NewGCMWithRandomNonce, allowed in FIPS 140-3
// strict mode). The blob is format (1 B) | root key version (4 B) | nonce |
// ciphertext | tag, and the header is part of the authenticated data.
type AESGCM struct {
	provider string
	current  uint32
	aeads    map[uint32]cipher.AEAD
}

// NewAESGCM builds a sealer from root keys by version; current is the version
// new seals use. Older versions still unseal, which leaves room for root key
// rotation.
func NewAESGCM(provider string, rootKeys map[uint32][]byte, current uint32) (*AESGCM, error) {
	if _, ok := rootKeys[current]; !ok {
		return nil, fmt.Errorf("root key version %d does not exist (have %v)", current, slices.Sorted(maps.Keys(rootKeys)))
	}
	s := &AESGCM{provider: provider, current: current, aeads: make(map[uint32]cipher.AEAD, len(rootKeys))}
	for v, k := range rootKeys {
		if len(k) != RootKeySize {
			return nil, fmt.Errorf("root key version %d is %d bytes, want %d", v, len(k), RootKeySize)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("root key version %d: %w", v, err)
		}
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("root key version %d: %w", v, err)
		}
		s.aeads[v] = aead
	}
	return s, nil
}

// Provider implements Sealer.
func (s *AESGCM) Provider() string { return s.provider }

// CurrentVersion is the root key version new seals use.
func (s *AESGCM) CurrentVersion() uint32 { return s.current }

// CurrentRootVersion implements the optional method CurrentRootVersion reads.
func (s *AESGCM) CurrentRootVersion() (uint32, bool) { return s.current, true }

// Seal implements Sealer.
func (s *AESGCM) Seal(_ context.Context, plaintext, aad []byte) ([]byte, error) {
	aead := s.aeads[s.current]
	out := make([]byte, headerLen, headerLen+aead.NonceSize()+len(plaintext)+aead.Overhead())
	out[0] = blobFormat
	binary.BigEndian.PutUint32(out[1:headerLen], s.current)
	return aead.Seal(out, nil, plaintext, fullAAD(out[:headerLen], aad)), nil
}

// Unseal implements Sealer.
func (s *AESGCM) Unseal(_ context.Context, blob, aad []byte) ([]byte, error) {
	if len(blob) < headerLen || blob[0] != blobFormat {
		return nil, ErrUnseal
	}
	v := binary.BigEndian.Uint32(blob[1:headerLen])
	aead, ok := s.aeads[v]
	if !ok && v > s.current && v <= s.current+maxVersionsAhead {
		// Not "corrupt": while a new root key version is rolled out, a
		// replica that has not been given it yet sees blobs sealed under it.
		return nil, fmt.Errorf("%w: %w: sealed under root key version %d, which this manager was not given (it has %v)",
			ErrRootUnavailable, errVersionNotGiven, v, slices.Sorted(maps.Keys(s.aeads)))
	}
	if !ok {
		return nil, ErrUnseal
	}
	pt, err := aead.Open(nil, nil, blob[headerLen:], fullAAD(blob[:headerLen], aad))
	if err != nil {
		return nil, ErrUnseal
	}
	return pt, nil
}

// SealedUnderCurrent reports whether blob was sealed under the root key
// version new seals use: a root key rotation reseals every blob for which
// it is false.
func (s *AESGCM) SealedUnderCurrent(blob []byte) bool {
	return len(blob) >= headerLen && blob[0] == blobFormat && binary.BigEndian.Uint32(blob[1:headerLen]) == s.current
}

// SealedUnderCurrent reports whether blob, sealed by s, was sealed under the
// root key version s seals with now. Providers whose root has no versions
// kubekms can see (AWS KMS and HSM keys rotate inside the HSM or AWS) take
// every blob as current.
func SealedUnderCurrent(s Sealer, blob []byte) bool {
	if v, ok := s.(interface{ SealedUnderCurrent([]byte) bool }); ok {
		return v.SealedUnderCurrent(blob)
	}
	return true
}

func fullAAD(header, aad []byte) []byte {
	full := make([]byte, 0, len(header)+len(aad))
	return append(append(full, header...), aad...)
}
