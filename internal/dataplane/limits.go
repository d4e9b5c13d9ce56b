package dataplane

import (
	"unicode/utf8"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	"github.com/kubekms/kubekms/internal/keyspec"
	"github.com/kubekms/kubekms/internal/kmscrypto"
)

// Limits, as AWS KMS.
const (
	MaxPlaintext        = 4096
	MaxCiphertext       = 6144
	MaxRandomBytes      = 1024
	MaxContextPairs     = 64
	MaxContextBytes     = 8192
	dataKeySpecAES256   = "AES_256"
	dataKeySpecAES128   = "AES_128"
	maxCiphertextAsText = 8192 + len(kmscrypto.TextPrefix)
)

// MaxKeyIDLength bounds key_id, source_key_id and destination_key_id, as
// AWS bounds KeyId.
const MaxKeyIDLength = 2048

// checkKeyIDs refuses a key reference longer than MaxKeyIDLength, naming
// the field. It is cheap, so it runs before authentication.
func checkKeyIDs(req any) error {
	check := func(field, v string) error {
		if len(v) > MaxKeyIDLength {
			return errValidation("%s must be at most %d bytes, got %d", field, MaxKeyIDLength, len(v))
		}
		return nil
	}
	if r, ok := req.(interface{ GetKeyId() string }); ok {
		return check("key_id", r.GetKeyId())
	}
	if r, ok := req.(*kmsv1.ReEncryptRequest); ok {
		if err := check("source_key_id", r.GetSourceKeyId()); err != nil {
			return err
		}
		return check("destination_key_id", r.GetDestinationKeyId())
	}
	return nil
}

// truncate cuts s to at most n bytes, on a UTF-8 boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func dataKeySize(n uint32, spec string) (int, error) {
	switch {
	case n != 0 && spec != "":
		return 0, errValidation("give either number_of_bytes or key_spec, not both")
	case spec == dataKeySpecAES256:
		return 32, nil
	case spec == dataKeySpecAES128:
		return 16, nil
	case spec != "":
		return 0, errValidation("key_spec must be %s or %s, got %q", dataKeySpecAES256, dataKeySpecAES128, spec)
	case n == 0:
		return 0, errValidation("give number_of_bytes (1..%d) or key_spec (%s or %s)", MaxRandomBytes, dataKeySpecAES256, dataKeySpecAES128)
	case n > MaxRandomBytes:
		return 0, errValidation("number_of_bytes must be between 1 and %d, got %d", MaxRandomBytes, n)
	}
	return int(n), nil
}

func checkBytes(field string, b []byte, minLen, maxLen int) error {
	if len(b) < minLen || len(b) > maxLen {
		return errValidation("%s must be %d to %d bytes, got %d", field, minLen, maxLen, len(b))
	}
	return nil
}

func checkContext(field string, ec map[string]string) error {
	if len(ec) > MaxContextPairs {
		return errValidation("%s has %d pairs; at most %d", field, len(ec), MaxContextPairs)
	}
	size := 0
	for k, v := range ec {
		if k == "" {
			return errValidation("%s has an empty key", field)
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return errValidation("%s must be UTF-8", field)
		}
		size += len(k) + len(v)
	}
	if size > MaxContextBytes {
		return errValidation("%s is %d bytes; at most %d", field, size, MaxContextBytes)
	}
	return nil
}

func checkAlgorithm(field, alg string) error {
	if alg != "" && alg != keyspec.SymmetricEncryptionAlgorithm {
		return errValidation("%s must be %s for symmetric keys (RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256 for RSA keys), got %q", field, keyspec.SymmetricEncryptionAlgorithm, alg)
	}
	return nil
}
