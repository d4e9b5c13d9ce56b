package kmscrypto

import (
	"bytes"
	"encoding/hex"
	"testing"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Known answers for RFC 4231's test-case-1 data ("Hi There") under keys of
// 0x0b bytes of each spec's size, computed independently with openssl:
//
//	echo -n "Hi There" | openssl mac -digest SHA256 -macopt hexkey:0b0b...0b HMAC
func TestMACKnownAnswers(t *testing.T) {
	data := []byte("Hi There")
	tests := map[MACAlgorithm]struct {
		key  []byte
		want string
	}{
		HMACSHA224: {bytes.Repeat([]byte{0x0b}, 28), "1abbc7c42cf4ca9f9d7b624564cb72d7b0945ea0a615095904a0fd34"},
		HMACSHA256: {bytes.Repeat([]byte{0x0b}, 32), "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7"},
		HMACSHA384: {bytes.Repeat([]byte{0x0b}, 48), "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee9737a959796489bddbc4c5df61d5b3297b4fb68dab9f1b582c2"},
		HMACSHA512: {bytes.Repeat([]byte{0x0b}, 64), "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8ac2878ebd5803f6f0b61dbce5e251ff8789a4722c1be65aea45fd464e89f8f5b"},
	}
	for alg, tc := range tests {
		t.Run(string(alg), func(t *testing.T) {
			s, ok := HMACFor(alg)
			if !ok || s.Algorithm != alg || s.KeySize != len(tc.key) {
				t.Fatalf("HMACFor(%s) = %+v, %v", alg, s, ok)
			}
			got, err := s.MAC(tc.key, data)
			if err != nil || hex.EncodeToString(got) != tc.want {
				t.Fatalf("MAC = %x, %v; want %s", got, err, tc.want)
			}
			if !s.VerifyMAC(tc.key, data, unhex(tc.want)) {
				t.Fatal("VerifyMAC refused the right MAC")
			}
			for i := range len(got) * 8 {
				bad := bytes.Clone(got)
				bad[i/8] ^= 1 << (i % 8)
				if s.VerifyMAC(tc.key, data, bad) {
					t.Fatalf("VerifyMAC accepted a MAC with bit %d flipped", i)
				}
			}
			if s.VerifyMAC(tc.key, data, got[:len(got)-1]) {
				t.Fatal("VerifyMAC accepted a truncated MAC")
			}
			if _, err := s.MAC(tc.key[1:], data); err == nil {
				t.Fatal("a key of the wrong size was accepted")
			}
		})
	}
}
