package dataplane

import (
	"context"
	"crypto/rsa"

	"google.golang.org/grpc/codes"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keycache"
	"github.com/kubekms/kubekms/internal/kmscrypto"
	"github.com/kubekms/kubekms/internal/policy"
)

// rsaEncrypt is Encrypt with an RSA key: RSAES-OAEP, AWS's format (the raw
// OAEP ciphertext, no header), so data encrypted elsewhere with the public
// key decrypts here. No encryption context, as on AWS.
func (s *Server) rsaEncrypt(ctx context.Context, c *call, req *kmsv1.EncryptRequest) (*kmsv1.EncryptResponse, error) {
	if len(req.EncryptionContext) > 0 {
		return nil, errValidation("encryption_context is not valid with %s (asymmetric keys take none)", req.EncryptionAlgorithm)
	}
	key, err := s.authorizedKey(ctx, c, policy.ActionEncrypt, nil)
	if err != nil {
		return nil, err
	}
	priv, err := s.rsaKey(ctx, c, key, key.CurrentVersion)
	if err != nil {
		return nil, err
	}
	if max := kmscrypto.MaxOAEPPlaintext(&priv.PublicKey, req.EncryptionAlgorithm); len(req.Plaintext) < 1 || len(req.Plaintext) > max {
		return nil, errValidation("plaintext must be 1 to %d bytes for %s with %s, got %d", max, key.KeySpec, req.EncryptionAlgorithm, len(req.Plaintext))
	}
	ct, err := kmscrypto.EncryptOAEP(&priv.PublicKey, req.EncryptionAlgorithm, req.Plaintext, s.Random)
	if err != nil {
		return nil, errInternal()
	}
	return &kmsv1.EncryptResponse{CiphertextBlob: ct, KeyId: key.KeyIDString, KeyVersion: key.CurrentVersion, EncryptionAlgorithm: req.EncryptionAlgorithm}, nil
}

// maxRSADecryptVersions bounds how many versions an RSA Decrypt tries,
// newest first: an OAEP ciphertext does not say which version made it, and
// each try is a private-key operation (about 1 ms for RSA_2048, several for
// RSA_4096), so a garbage ciphertext must not cost many. AWS does not rotate
// RSA keys at all; see docs/dataplane.md for what this means for rotation.
const maxRSADecryptVersions = 4

// rsaDecrypt is Decrypt with an RSA key, which the caller must name (the
// ciphertext does not); the newest maxRSADecryptVersions versions are
// tried, and the one that decrypts is the call's.
func (s *Server) rsaDecrypt(ctx context.Context, c *call, req *kmsv1.DecryptRequest) (*kmsv1.DecryptResponse, error) {
	if req.KeyId == "" {
		return nil, errValidation("key_id is required to decrypt with %s", req.EncryptionAlgorithm)
	}
	if len(req.EncryptionContext) > 0 {
		return nil, errValidation("encryption_context is not valid with %s (asymmetric keys take none)", req.EncryptionAlgorithm)
	}
	if err := checkBytes("ciphertext_blob", req.CiphertextBlob, 1, 512); err != nil {
		return nil, err
	}
	key, err := s.authorizedKey(ctx, c, policy.ActionDecrypt, nil)
	if err != nil {
		return nil, err
	}
	if _, err := asymmetricKey(key, kmsv1alpha1.KeyUsageEncryptDecrypt, c.at); err != nil {
		return nil, err
	}
	var trial versionTrial
	for v := key.CurrentVersion; v >= 1 && v+maxRSADecryptVersions > key.CurrentVersion; v-- {
		parsed, err := s.privateKey(ctx, key, v)
		if !trial.loaded(ctx, key, v, err) {
			continue
		}
		priv, ok := parsed.(*rsa.PrivateKey)
		if !ok {
			return nil, newError(codes.InvalidArgument, ReasonInvalidKeyUsage, "key %s/%s is not an RSA key", key.Namespace, key.Name)
		}
		if pt, err := kmscrypto.DecryptOAEP(priv, req.EncryptionAlgorithm, req.CiphertextBlob); err == nil {
			c.use(key, v)
			return &kmsv1.DecryptResponse{Plaintext: pt, KeyId: key.KeyIDString, KeyVersion: v, EncryptionAlgorithm: req.EncryptionAlgorithm}, nil
		}
	}
	return nil, trial.none(errInvalidCiphertext())
}

// rsaKey returns a version's RSA private key, once the key is an enabled
// RSA key for ENCRYPT_DECRYPT at the call's time.
func (s *Server) rsaKey(ctx context.Context, c *call, key *keycache.Key, version uint32) (*rsa.PrivateKey, error) {
	if _, err := asymmetricKey(key, kmsv1alpha1.KeyUsageEncryptDecrypt, c.at); err != nil {
		return nil, err
	}
	parsed, err := s.privateKey(ctx, key, version)
	if err != nil {
		return nil, errMaterial(ctx, key, version, err)
	}
	priv, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, newError(codes.InvalidArgument, ReasonInvalidKeyUsage, "key %s/%s is not an RSA key", key.Namespace, key.Name)
	}
	return priv, nil
}
