package kmscrypto

import (
	"crypto/aes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// AES key wrap with padding (RFC 5649), which the standard library does not
// have. Only the import path uses it: RSA_AES_KEY_WRAP_SHA_256 wraps key
// material with it, as AWS KMS and openssl's id-aes256-wrap-pad do.

// kwpIVPrefix is RFC 5649's alternative initial value (the 32-bit constant
// followed by the 32-bit plaintext length).
const kwpIVPrefix = 0xA65959A6

// ErrKeyUnwrap is the one error for wrapped material that does not unwrap.
var ErrKeyUnwrap = errors.New("wrapped material does not unwrap: wrong wrapping key, wrong algorithm, or altered data")

// WrapKWP wraps plaintext (1 byte or more) under an AES key (16, 24 or 32
// bytes) with RFC 5649.
func WrapKWP(kek, plaintext []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	if len(plaintext) == 0 || uint64(len(plaintext)) > 1<<32-1 {
		return nil, fmt.Errorf("key wrap: plaintext of %d bytes", len(plaintext))
	}
	padded := make([]byte, (len(plaintext)+7)/8*8)
	copy(padded, plaintext)
	var a [8]byte
	binary.BigEndian.PutUint32(a[:4], kwpIVPrefix)
	binary.BigEndian.PutUint32(a[4:], uint32(len(plaintext)))
	var buf [16]byte
	if len(padded) == 8 {
		copy(buf[:8], a[:])
		copy(buf[8:], padded)
		block.Encrypt(buf[:], buf[:])
		return buf[:], nil
	}
	n := len(padded) / 8
	out := make([]byte, 8+len(padded))
	copy(out[8:], padded)
	for j := range 6 {
		for i := 1; i <= n; i++ {
			copy(buf[:8], a[:])
			copy(buf[8:], out[8*i:8*i+8])
			block.Encrypt(buf[:], buf[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(a[:], binary.BigEndian.Uint64(buf[:8])^t)
			copy(out[8*i:], buf[8:])
		}
	}
	copy(out[:8], a[:])
	return out, nil
}

// UnwrapKWP reverses WrapKWP. Any integrity failure is ErrKeyUnwrap.
func UnwrapKWP(kek, wrapped []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	if len(wrapped) < 16 || len(wrapped)%8 != 0 {
		return nil, ErrKeyUnwrap
	}
	var a [8]byte
	var buf [16]byte
	var r []byte
	if len(wrapped) == 16 {
		block.Decrypt(buf[:], wrapped)
		copy(a[:], buf[:8])
		r = append([]byte(nil), buf[8:]...)
	} else {
		n := len(wrapped)/8 - 1
		copy(a[:], wrapped[:8])
		r = append([]byte(nil), wrapped[8:]...)
		for j := 5; j >= 0; j-- {
			for i := n; i >= 1; i-- {
				t := uint64(n*j + i)
				binary.BigEndian.PutUint64(buf[:8], binary.BigEndian.Uint64(a[:])^t)
				copy(buf[8:], r[8*(i-1):8*i])
				block.Decrypt(buf[:], buf[:])
				copy(a[:], buf[:8])
				copy(r[8*(i-1):], buf[8:])
			}
		}
	}
	// Check the IV, the length and the zero padding without early exits.
	mli := int(binary.BigEndian.Uint32(a[4:]))
	var iv [4]byte
	binary.BigEndian.PutUint32(iv[:], kwpIVPrefix)
	ok := subtle.ConstantTimeCompare(a[:4], iv[:])
	inRange := mli > len(r)-8 && mli <= len(r)
	if !inRange {
		clear(r)
		return nil, ErrKeyUnwrap
	}
	var pad byte
	for _, b := range r[mli:] {
		pad |= b
	}
	ok &= subtle.ConstantTimeByteEq(pad, 0)
	if ok != 1 {
		clear(r)
		return nil, ErrKeyUnwrap
	}
	return r[:mli], nil
}
