package dataplane

import (
	"context"
	"slices"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	"github.com/kubekms/kubekms/internal/crypto"
	"github.com/kubekms/kubekms/internal/keyring"
)

// dataKeyPairSpecs are the key pair specs GenerateDataKeyPair makes, as AWS.
var dataKeyPairSpecs = []string{"RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521"}

// GenerateDataKeyPair implements KeyManagementService: a key pair made
// here, the private key (PKCS#8 DER) returned in plaintext and encrypted
// under a symmetric key, the public key as SubjectPublicKeyInfo DER.
func (s *Server) GenerateDataKeyPair(ctx context.Context, req *kmsv1.GenerateDataKeyPairRequest) (*kmsv1.GenerateDataKeyPairResponse, error) {
	priv, pub, blob, key, err := s.dataKeyPair(ctx, "GenerateDataKeyPair", req.KeyId, req.KeyPairSpec, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return &kmsv1.GenerateDataKeyPairResponse{PrivateKeyCiphertextBlob: blob, PrivateKeyPlaintext: priv, PublicKey: pub,
		KeyId: key.KeyIDString, KeyVersion: key.CurrentVersion, KeyPairSpec: req.KeyPairSpec}, nil
}

// GenerateDataKeyPairWithoutPlaintext implements KeyManagementService.
func (s *Server) GenerateDataKeyPairWithoutPlaintext(ctx context.Context, req *kmsv1.GenerateDataKeyPairWithoutPlaintextRequest) (*kmsv1.GenerateDataKeyPairWithoutPlaintextResponse, error) {
	priv, pub, blob, key, err := s.dataKeyPair(ctx, "GenerateDataKeyPairWithoutPlaintext", req.KeyId, req.KeyPairSpec, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	clear(priv)
	return &kmsv1.GenerateDataKeyPairWithoutPlaintextResponse{PrivateKeyCiphertextBlob: blob, PublicKey: pub,
		KeyId: key.KeyIDString, KeyVersion: key.CurrentVersion, KeyPairSpec: req.KeyPairSpec}, nil
}

func (s *Server) dataKeyPair(ctx context.Context, action, ref, pairSpec string, ec map[string]string) (priv, pub, blob []byte, key *keyring.Key, err error) {
	spec, ok := crypto.Asymmetric(pairSpec)
	if !ok || !slices.Contains(dataKeyPairSpecs, pairSpec) {
		return nil, nil, nil, nil, errValidation("key_pair_spec must be one of %v, got %q", dataKeyPairSpecs, pairSpec)
	}
	if err := checkContext("encryption_context", ec); err != nil {
		return nil, nil, nil, nil, err
	}
	if key, err = s.authorizedKey(ctx, action, ref, ec); err != nil {
		return nil, nil, nil, nil, err
	}
	if err := usable(key); err != nil { // before the costly key pair, not only in encrypt
		return nil, nil, nil, nil, err
	}
	if priv, pub, err = spec.GenerateKeyPair(s.Random); err != nil {
		return nil, nil, nil, nil, errInternal()
	}
	if blob, err = s.encrypt(ctx, key, priv, ec); err != nil {
		clear(priv)
		return nil, nil, nil, nil, err
	}
	return priv, pub, blob, key, nil
}
