// Package crypto implements kubekms's symmetric ciphertext format. It is
// pure: keys, plaintext and a source of randomness for salts come in.
//
// Format v1 (binary):
//
//	magic "kK" (2) | format 0x01 (1) | key ID (16) | key version (4, big endian) |
//	algorithm (1) | salt (16) | nonce (12) | ciphertext | tag (16)
//
// Text form: "kms:v1:" + base64url without padding.
//
// Each message is encrypted under its own key, derived with HKDF-SHA256 from
// the version key, the random 128-bit salt and an info string naming the
// format, key ID and version; AES-256-GCM with a random nonce
// (cipher.NewGCMWithRandomNonce) encrypts. The associated data is the header
// (everything before the nonce) followed by the canonical encoding of the
// encryption context, so nothing in the header can be changed and the
// context must match exactly (order-free).
package kmscrypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
)

const (
	// KeyIDSize is the size of a binary key ID (a UUID).
	KeyIDSize = 16
	// VersionKeySize is the size of a SYMMETRIC_DEFAULT version key.
	VersionKeySize = 32

	magic0, magic1 = 'k', 'K'
	formatV1       = 1
	// AlgorithmHKDFAES256GCM: HKDF-SHA256 per-message key, AES-256-GCM.
	AlgorithmHKDFAES256GCM byte = 1

	saltSize   = 16
	nonceSize  = 12
	tagSize    = 16
	HeaderSize = 2 + 1 + KeyIDSize + 4 + 1 + saltSize
	// Overhead is the size a ciphertext adds to its plaintext.
	Overhead = HeaderSize + nonceSize + tagSize

	// TextPrefix starts the text form of a ciphertext.
	TextPrefix = "kms:v1:"
)

// ErrInvalidCiphertext is the one error for every ciphertext that does not
// decrypt: malformed, altered, another key, another context.
var ErrInvalidCiphertext = errors.New("invalid ciphertext")

// KeyID is a binary key ID.
type KeyID [KeyIDSize]byte

// ParseKeyID parses a UUID in its canonical text form.
func ParseKeyID(s string) (KeyID, error) {
	var id KeyID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, fmt.Errorf("key ID %q is not a UUID", s)
	}
	hexDigits := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(id[:], []byte(hexDigits)); err != nil {
		return id, fmt.Errorf("key ID %q is not a UUID", s)
	}
	return id, nil
}

// String formats the key ID as a UUID.
func (id KeyID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:], id[10:])
	return string(b[:])
}

// Header is the parsed, not yet authenticated, header of a ciphertext.
type Header struct {
	KeyID     KeyID
	Version   uint32
	Algorithm byte
	salt      [saltSize]byte
}

// ParseHeader reads a ciphertext's header strictly. It authenticates
// nothing: it only says which key and version to try.
func ParseHeader(blob []byte) (Header, error) {
	var h Header
	if len(blob) < Overhead || blob[0] != magic0 || blob[1] != magic1 || blob[2] != formatV1 {
		return h, ErrInvalidCiphertext
	}
	copy(h.KeyID[:], blob[3:3+KeyIDSize])
	h.Version = binary.BigEndian.Uint32(blob[3+KeyIDSize:])
	h.Algorithm = blob[3+KeyIDSize+4]
	copy(h.salt[:], blob[3+KeyIDSize+4+1:HeaderSize])
	if h.Algorithm != AlgorithmHKDFAES256GCM || h.Version == 0 {
		return h, ErrInvalidCiphertext
	}
	return h, nil
}

// Encrypt encrypts plaintext under a version key, bound to the key ID,
// version and encryption context. random supplies the salt (crypto/rand in
// production); the nonce comes from the standard library's GCM.
func Encrypt(versionKey []byte, keyID KeyID, version uint32, plaintext []byte, context map[string]string, random io.Reader) ([]byte, error) {
	out := make([]byte, HeaderSize, Overhead+len(plaintext))
	out[0], out[1], out[2] = magic0, magic1, formatV1
	copy(out[3:], keyID[:])
	binary.BigEndian.PutUint32(out[3+KeyIDSize:], version)
	out[3+KeyIDSize+4] = AlgorithmHKDFAES256GCM
	if _, err := io.ReadFull(random, out[HeaderSize-saltSize:HeaderSize]); err != nil {
		return nil, fmt.Errorf("read salt: %w", err)
	}
	aead, err := messageAEAD(versionKey, out[:HeaderSize])
	if err != nil {
		return nil, err
	}
	return aead.Seal(out, nil, plaintext, AssociatedData(out[:HeaderSize], context)), nil
}

// Decrypt decrypts a ciphertext whose header was parsed with ParseHeader,
// under the version key that header names. Every failure is
// ErrInvalidCiphertext.
func Decrypt(versionKey []byte, blob []byte, context map[string]string) ([]byte, error) {
	if _, err := ParseHeader(blob); err != nil {
		return nil, err
	}
	aead, err := messageAEAD(versionKey, blob[:HeaderSize])
	if err != nil {
		return nil, ErrInvalidCiphertext
	}
	pt, err := aead.Open(nil, nil, blob[HeaderSize:], AssociatedData(blob[:HeaderSize], context))
	if err != nil {
		return nil, ErrInvalidCiphertext
	}
	return pt, nil
}

// messageAEAD derives the per-message key from the version key and the
// header (salt, key ID, version) and returns AES-256-GCM under it.
func messageAEAD(versionKey, header []byte) (cipher.AEAD, error) {
	if len(versionKey) != VersionKeySize {
		return nil, fmt.Errorf("version key is %d bytes, want %d", len(versionKey), VersionKeySize)
	}
	salt := header[HeaderSize-saltSize : HeaderSize]
	// info binds the derived key to the format, key ID and version.
	info := string(header[:HeaderSize-saltSize])
	key, err := hkdf.Key(sha256.New, versionKey, salt, info, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	clear(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// AssociatedData is the header followed by the canonical encoding of the
// encryption context: the pairs sorted by key, each key and value prefixed
// with its length, so that no two different contexts encode alike.
func AssociatedData(header []byte, context map[string]string) []byte {
	size := len(header) + 4
	keys := make([]string, 0, len(context))
	for k, v := range context {
		keys = append(keys, k)
		size += 8 + len(k) + len(v)
	}
	slices.Sort(keys)
	ad := make([]byte, 0, size)
	ad = append(ad, header...)
	ad = binary.BigEndian.AppendUint32(ad, uint32(len(keys)))
	for _, k := range keys {
		ad = binary.BigEndian.AppendUint32(ad, uint32(len(k)))
		ad = append(ad, k...)
		ad = binary.BigEndian.AppendUint32(ad, uint32(len(context[k])))
		ad = append(ad, context[k]...)
	}
	return ad
}

// EncodeText returns the text form of a ciphertext.
func EncodeText(blob []byte) string {
	return TextPrefix + base64.RawURLEncoding.EncodeToString(blob)
}

// DecodeCiphertext accepts a ciphertext in binary or text form and returns
// the binary form.
func DecodeCiphertext(b []byte) ([]byte, error) { return decodeText(b, TextPrefix) }

// decodeText returns the binary form of b: b itself, or the base64url after
// prefix when b is in text form.
func decodeText(b []byte, prefix string) ([]byte, error) {
	rest, ok := bytes.CutPrefix(bytes.TrimSpace(b), []byte(prefix))
	if !ok {
		return b, nil
	}
	blob := make([]byte, base64.RawURLEncoding.DecodedLen(len(rest)))
	n, err := base64.RawURLEncoding.Decode(blob, rest)
	if err != nil {
		return nil, ErrInvalidCiphertext
	}
	return blob[:n], nil
}

// IsText says whether b is in text form.
func IsText(b []byte) bool { return bytes.HasPrefix(bytes.TrimSpace(b), []byte(TextPrefix)) }
