package kmscrypto

import (
	"bytes"
	"errors"
	"testing"
)

func TestEnvelopeRoundTripAndTampering(t *testing.T) {
	dk := bytes.Repeat([]byte{7}, DataKeySize)
	wrapped := encrypt(t, dk, map[string]string{"file": "big"})
	data := bytes.Repeat([]byte("large file content "), 1000)

	env, err := SealEnvelope(dk, wrapped, data)
	if err != nil {
		t.Fatal(err)
	}
	if !IsEnvelope(env) || !IsEnvelope([]byte(EncodeEnvelopeText(env))) || IsEnvelope(wrapped) {
		t.Fatal("IsEnvelope is wrong")
	}
	decoded, err := DecodeEnvelope([]byte(EncodeEnvelopeText(env) + "\n"))
	if err != nil || !bytes.Equal(decoded, env) {
		t.Fatalf("text round trip: %v", err)
	}
	got, err := ParseEnvelope(env)
	if err != nil || !bytes.Equal(got, wrapped) {
		t.Fatalf("ParseEnvelope = %v", err)
	}
	pt, err := OpenEnvelope(dk, env)
	if err != nil || !bytes.Equal(pt, data) {
		t.Fatalf("OpenEnvelope: %v", err)
	}
	for _, i := range []int{0, 3, 5, 5 + len(wrapped) - 1, 5 + len(wrapped) + 2, len(env) - 1} {
		bad := bytes.Clone(env)
		bad[i] ^= 1
		if _, err := OpenEnvelope(dk, bad); !errors.Is(err, ErrInvalidCiphertext) {
			t.Errorf("flip at %d accepted", i)
		}
	}
	if _, err := OpenEnvelope(bytes.Repeat([]byte{8}, DataKeySize), env); !errors.Is(err, ErrInvalidCiphertext) {
		t.Error("another data key opened the envelope")
	}
	if _, err := OpenEnvelope(dk, env[:len(env)-1]); !errors.Is(err, ErrInvalidCiphertext) {
		t.Error("truncated envelope accepted")
	}
}
