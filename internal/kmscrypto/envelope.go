package kmscrypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/binary"
	"fmt"
)

// Envelope format v1, for data larger than Encrypt takes: the data is
// encrypted locally with AES-256-GCM under a data key from GenerateDataKey,
// and the data key travels wrapped (a kubekms ciphertext) in front:
//
//	magic "kE" (2) | format 0x01 (1) | wrapped key length (2, big endian) |
//	wrapped key | nonce (12) | ciphertext | tag (16)
//
// Everything before the nonce is the associated data. The encryption
// context binds the wrapped data key. Text form: "kms:env1:" + base64url.
const (
	envMagic0, envMagic1 = 'k', 'E'
	envFormatV1          = 1
	// EnvelopeTextPrefix starts the text form of an envelope.
	EnvelopeTextPrefix = "kms:env1:"
	// DataKeySize is the size of an envelope's data key (AES-256).
	DataKeySize = 32
)

// SealEnvelope encrypts plaintext under dataKey and puts the wrapped data key
// in front.
func SealEnvelope(dataKey, wrappedKey, plaintext []byte) ([]byte, error) {
	if len(dataKey) != DataKeySize {
		return nil, fmt.Errorf("data key is %d bytes, want %d", len(dataKey), DataKeySize)
	}
	if len(wrappedKey) == 0 || len(wrappedKey) > 0xffff {
		return nil, fmt.Errorf("wrapped key of %d bytes", len(wrappedKey))
	}
	aead, err := envelopeAEAD(dataKey)
	if err != nil {
		return nil, err
	}
	header := make([]byte, 0, 5+len(wrappedKey))
	header = append(header, envMagic0, envMagic1, envFormatV1)
	header = binary.BigEndian.AppendUint16(header, uint16(len(wrappedKey)))
	header = append(header, wrappedKey...)
	out := make([]byte, len(header), len(header)+nonceSize+len(plaintext)+tagSize)
	copy(out, header)
	return aead.Seal(out, nil, plaintext, header), nil
}

// ParseEnvelope returns the wrapped data key of an envelope.
func ParseEnvelope(blob []byte) ([]byte, error) {
	if len(blob) < 5 || blob[0] != envMagic0 || blob[1] != envMagic1 || blob[2] != envFormatV1 {
		return nil, ErrInvalidCiphertext
	}
	n := int(binary.BigEndian.Uint16(blob[3:5]))
	if n == 0 || len(blob) < 5+n+nonceSize+tagSize {
		return nil, ErrInvalidCiphertext
	}
	return blob[5 : 5+n], nil
}

// OpenEnvelope decrypts an envelope with its unwrapped data key.
func OpenEnvelope(dataKey, blob []byte) ([]byte, error) {
	wrapped, err := ParseEnvelope(blob)
	if err != nil {
		return nil, err
	}
	aead, err := envelopeAEAD(dataKey)
	if err != nil {
		return nil, ErrInvalidCiphertext
	}
	headerLen := 5 + len(wrapped)
	pt, err := aead.Open(nil, nil, blob[headerLen:], blob[:headerLen])
	if err != nil {
		return nil, ErrInvalidCiphertext
	}
	return pt, nil
}

// IsEnvelope says whether b is an envelope, in binary or text form.
func IsEnvelope(b []byte) bool {
	t := bytes.TrimSpace(b)
	return bytes.HasPrefix(t, []byte(EnvelopeTextPrefix)) || (len(b) > 3 && b[0] == envMagic0 && b[1] == envMagic1 && b[2] == envFormatV1)
}

// EncodeEnvelopeText returns the text form of an envelope.
func EncodeEnvelopeText(blob []byte) string {
	return EnvelopeTextPrefix + base64.RawURLEncoding.EncodeToString(blob)
}

// DecodeEnvelope accepts an envelope in binary or text form.
func DecodeEnvelope(b []byte) ([]byte, error) { return decodeText(b, EnvelopeTextPrefix) }

func envelopeAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}
