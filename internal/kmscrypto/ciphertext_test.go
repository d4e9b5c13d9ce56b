package kmscrypto

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"
)

var (
	testKey   = bytes.Repeat([]byte{0x42}, VersionKeySize)
	otherKey  = bytes.Repeat([]byte{0x43}, VersionKeySize)
	testKeyID = mustKeyID("8d5c4e8a-1b2c-4d3e-8f40-5a6b7c8d9e0f")
)

func mustKeyID(s string) KeyID {
	id, err := ParseKeyID(s)
	if err != nil {
		panic(err)
	}
	return id
}

func encrypt(t testing.TB, pt []byte, ctx map[string]string) []byte {
	t.Helper()
	blob, err := Encrypt(testKey, testKeyID, 3, pt, ctx, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

func TestRoundTrip(t *testing.T) {
	tests := map[string]struct {
		plaintext []byte
		context   map[string]string
	}{
		"one byte, no context": {[]byte{0}, nil},
		"4 KiB with context":   {bytes.Repeat([]byte("p"), 4096), map[string]string{"tenant": "shop", "purpose": "cards"}},
		"empty context is nil": {[]byte("x"), map[string]string{}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			blob := encrypt(t, tc.plaintext, tc.context)
			if len(blob) != len(tc.plaintext)+Overhead {
				t.Errorf("len = %d, want plaintext + %d", len(blob), Overhead)
			}
			if bytes.Contains(blob, tc.plaintext) && len(tc.plaintext) > 4 {
				t.Error("ciphertext contains the plaintext")
			}
			h, err := ParseHeader(blob)
			if err != nil || h.KeyID != testKeyID || h.Version != 3 {
				t.Fatalf("ParseHeader = %+v, %v", h, err)
			}
			got, err := Decrypt(testKey, blob, tc.context)
			if err != nil || !bytes.Equal(got, tc.plaintext) {
				t.Fatalf("Decrypt = %q, %v", got, err)
			}
		})
	}
}

func TestDecryptRefuses(t *testing.T) {
	ctx := map[string]string{"tenant": "shop"}
	blob := encrypt(t, []byte("card number"), ctx)
	otherKeyID := mustKeyID("00000000-0000-4000-8000-000000000000")
	other, _ := Encrypt(testKey, otherKeyID, 3, []byte("card number"), ctx, rand.Reader)
	tests := map[string]struct {
		key     []byte
		blob    []byte
		context map[string]string
	}{
		"wrong context value":                              {testKey, blob, map[string]string{"tenant": "web"}},
		"missing context":                                  {testKey, blob, nil},
		"extra context pair":                               {testKey, blob, map[string]string{"tenant": "shop", "x": "y"}},
		"context key and value swapped":                    {testKey, blob, map[string]string{"shop": "tenant"}},
		"other version key":                                {otherKey, blob, ctx},
		"key ID swapped in header":                         {testKey, append(append(bytes.Clone(blob[:3]), otherKeyID[:]...), blob[3+KeyIDSize:]...), ctx},
		"another key's ciphertext under this key's header": {testKey, append(bytes.Clone(blob[:HeaderSize]), other[HeaderSize:]...), ctx},
		"empty":             {testKey, nil, ctx},
		"header only":       {testKey, blob[:HeaderSize], ctx},
		"version zero":      {testKey, withByte(blob, 3+KeyIDSize+3, 0), ctx},
		"unknown algorithm": {testKey, withByte(blob, 3+KeyIDSize+4, 9), ctx},
		"unknown format":    {testKey, withByte(blob, 2, 2), ctx},
		"bad magic":         {testKey, withByte(blob, 0, 'x'), ctx},
		"appended byte":     {testKey, append(bytes.Clone(blob), 0), ctx},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Decrypt(tc.key, tc.blob, tc.context); !errors.Is(err, ErrInvalidCiphertext) {
				t.Fatalf("err = %v, want ErrInvalidCiphertext", err)
			}
		})
	}
}

func withByte(b []byte, i int, v byte) []byte {
	c := bytes.Clone(b)
	c[i] = v
	return c
}

// Every single-bit flip anywhere (header, key ID, version, salt, nonce,
// body, tag) of reference ciphertexts is refused, as is every truncation.
func TestEveryBitFlipAndTruncationIsRefused(t *testing.T) {
	for _, ctx := range []map[string]string{nil, {"tenant": "shop"}} {
		blob := encrypt(t, []byte("reference plaintext"), ctx)
		for i := range len(blob) * 8 {
			flipped := bytes.Clone(blob)
			flipped[i/8] ^= 1 << (i % 8)
			if _, err := Decrypt(testKey, flipped, ctx); !errors.Is(err, ErrInvalidCiphertext) {
				t.Fatalf("flip of bit %d accepted (err %v)", i, err)
			}
		}
		for n := range len(blob) {
			if _, err := Decrypt(testKey, blob[:n], ctx); !errors.Is(err, ErrInvalidCiphertext) {
				t.Fatalf("truncation to %d bytes accepted", n)
			}
		}
	}
}

// Every single-bit flip of the encryption context's keys and values is
// refused too: the context is authenticated, though not carried.
func TestEveryContextBitFlipIsRefused(t *testing.T) {
	ctx := map[string]string{"tenant": "shop", "purpose": "cards"}
	blob := encrypt(t, []byte("reference plaintext"), ctx)
	for k, v := range ctx {
		for i := range len(k) * 8 {
			kb := []byte(k)
			kb[i/8] ^= 1 << (i % 8)
			bad := map[string]string{string(kb): v}
			for k2, v2 := range ctx {
				if k2 != k {
					bad[k2] = v2
				}
			}
			if _, err := Decrypt(testKey, blob, bad); !errors.Is(err, ErrInvalidCiphertext) {
				t.Fatalf("flip of bit %d of key %q accepted", i, k)
			}
		}
		for i := range len(v) * 8 {
			vb := []byte(v)
			vb[i/8] ^= 1 << (i % 8)
			bad := map[string]string{}
			for k2, v2 := range ctx {
				bad[k2] = v2
			}
			bad[k] = string(vb)
			if _, err := Decrypt(testKey, blob, bad); !errors.Is(err, ErrInvalidCiphertext) {
				t.Fatalf("flip of bit %d of value %q accepted", i, v)
			}
		}
	}
}

func TestContextEncodingIsUnambiguous(t *testing.T) {
	pairs := [][2]map[string]string{
		{{"a": "bc"}, {"ab": "c"}},
		{{"a": "b", "c": "d"}, {"a": "b\x00\x00\x00\x01c\x00\x00\x00\x01d"}},
		{nil, {"": ""}},
	}
	for _, p := range pairs {
		if bytes.Equal(AssociatedData(nil, p[0]), AssociatedData(nil, p[1])) {
			t.Errorf("%v and %v encode alike", p[0], p[1])
		}
	}
}

func TestTextForm(t *testing.T) {
	blob := encrypt(t, []byte("x"), nil)
	text := EncodeText(blob)
	if !IsText([]byte(text)) || text[:len(TextPrefix)] != "kms:v1:" {
		t.Fatalf("text = %q", text)
	}
	for _, in := range []string{text, text + "\n", "  " + text} {
		got, err := DecodeCiphertext([]byte(in))
		if err != nil || !bytes.Equal(got, blob) {
			t.Fatalf("DecodeCiphertext(%q) = %x, %v", in, got, err)
		}
	}
	if _, err := DecodeCiphertext([]byte("kms:v1:not*base64")); !errors.Is(err, ErrInvalidCiphertext) {
		t.Fatalf("bad base64: %v", err)
	}
	if got, _ := DecodeCiphertext(blob); !bytes.Equal(got, blob) {
		t.Fatal("binary form must pass through")
	}
}

func TestKeyID(t *testing.T) {
	if got := testKeyID.String(); got != "8d5c4e8a-1b2c-4d3e-8f40-5a6b7c8d9e0f" {
		t.Fatalf("String = %s", got)
	}
	for _, bad := range []string{"", "payments", "8d5c4e8a1b2c4d3e8f405a6b7c8d9e0f", "8d5c4e8a-1b2c-4d3e-8f40-5a6b7c8d9e0g"} {
		if _, err := ParseKeyID(bad); err == nil {
			t.Errorf("ParseKeyID(%q) accepted", bad)
		}
	}
}

// vector is a frozen ciphertext of format v1. Files under testdata are
// never regenerated: a later release must still decrypt them.
type vector struct {
	Name       string            `json:"name"`
	VersionKey string            `json:"versionKey"`
	KeyID      string            `json:"keyID"`
	Version    uint32            `json:"version"`
	Context    map[string]string `json:"context"`
	Plaintext  string            `json:"plaintext"`
	Ciphertext string            `json:"ciphertext"`
}

func TestFrozenVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/vectors-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors []vector
	if err := json.Unmarshal(raw, &vectors); err != nil {
		t.Fatal(err)
	}
	if len(vectors) < 3 {
		t.Fatalf("only %d vectors", len(vectors))
	}
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			key, _ := hex.DecodeString(v.VersionKey)
			want, _ := hex.DecodeString(v.Plaintext)
			blob, err := DecodeCiphertext([]byte(v.Ciphertext))
			if err != nil {
				t.Fatal(err)
			}
			h, err := ParseHeader(blob)
			if err != nil || h.KeyID.String() != v.KeyID || h.Version != v.Version {
				t.Fatalf("header = %+v, %v", h, err)
			}
			got, err := Decrypt(key, blob, v.Context)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("Decrypt = %x, %v; want %x", got, err, want)
			}
		})
	}
}

func FuzzDecrypt(f *testing.F) {
	f.Add(encrypt(f, []byte("seed"), nil), "")
	f.Add(encrypt(f, []byte("seed"), map[string]string{"k": "v"}), "v")
	f.Add([]byte("kK\x01"), "")
	f.Fuzz(func(t *testing.T, blob []byte, ctxValue string) {
		ctx := map[string]string{"k": ctxValue}
		if ctxValue == "" {
			ctx = nil
		}
		h, herr := ParseHeader(blob)
		pt, err := Decrypt(testKey, blob, ctx)
		if err != nil {
			if !errors.Is(err, ErrInvalidCiphertext) {
				t.Fatalf("error %v is not ErrInvalidCiphertext", err)
			}
			return
		}
		// Only a genuine ciphertext decrypts; re-encrypting it must round trip.
		if herr != nil || h.KeyID != testKeyID {
			t.Fatalf("decrypted with a bad header: %+v %v", h, herr)
		}
		if len(pt) != len(blob)-Overhead {
			t.Fatalf("plaintext length %d for blob length %d", len(pt), len(blob))
		}
	})
}

func BenchmarkEncrypt4KiB(b *testing.B) {
	pt := make([]byte, 4096)
	b.SetBytes(4096)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encrypt(testKey, testKeyID, 1, pt, nil, rand.Reader); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecrypt4KiB(b *testing.B) {
	blob := encrypt(b, make([]byte, 4096), map[string]string{"tenant": "shop"})
	b.SetBytes(4096)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decrypt(testKey, blob, map[string]string{"tenant": "shop"}); err != nil {
			b.Fatal(err)
		}
	}
}
