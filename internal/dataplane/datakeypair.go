package dataplane

import (
	"context"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	"github.com/kubekms/kubekms/internal/keycache"
	"github.com/kubekms/kubekms/internal/keyspec"
	"github.com/kubekms/kubekms/internal/policy"
)

// dataKeyPairSpecs are the key pair specs GenerateDataKeyPair makes, as AWS
// (the key-spec table's DataKeyPair rows).
var dataKeyPairSpecs = keyspec.DataKeyPairSpecs()

// GenerateDataKeyPair implements KeyManagementService: a key pair made
// here, the private key (PKCS#8 DER) returned in plaintext and encrypted
// under a symmetric key, the public key as SubjectPublicKeyInfo DER.
func (s *Server) GenerateDataKeyPair(ctx context.Context, req *kmsv1.GenerateDataKeyPairRequest) (*kmsv1.GenerateDataKeyPairResponse, error) {
	return handle(ctx, req, s.generateDataKeyPair)
}

func (s *Server) generateDataKeyPair(ctx context.Context, c *call, req *kmsv1.GenerateDataKeyPairRequest) (*kmsv1.GenerateDataKeyPairResponse, error) {
	priv, pub, blob, key, err := s.dataKeyPair(ctx, c, policy.ActionGenerateDataKeyPair, req.KeyPairSpec, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return &kmsv1.GenerateDataKeyPairResponse{PrivateKeyCiphertextBlob: blob, PrivateKeyPlaintext: priv, PublicKey: pub,
		KeyId: key.KeyIDString, KeyVersion: key.CurrentVersion, KeyPairSpec: req.KeyPairSpec}, nil
}

// GenerateDataKeyPairWithoutPlaintext implements KeyManagementService.
func (s *Server) GenerateDataKeyPairWithoutPlaintext(ctx context.Context, req *kmsv1.GenerateDataKeyPairWithoutPlaintextRequest) (*kmsv1.GenerateDataKeyPairWithoutPlaintextResponse, error) {
	return handle(ctx, req, s.generateDataKeyPairWithoutPlaintext)
}

func (s *Server) generateDataKeyPairWithoutPlaintext(ctx context.Context, c *call, req *kmsv1.GenerateDataKeyPairWithoutPlaintextRequest) (*kmsv1.GenerateDataKeyPairWithoutPlaintextResponse, error) {
	priv, pub, blob, key, err := s.dataKeyPair(ctx, c, policy.ActionGenerateDataKeyPairWithoutPlaintext, req.KeyPairSpec, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	clear(priv)
	return &kmsv1.GenerateDataKeyPairWithoutPlaintextResponse{PrivateKeyCiphertextBlob: blob, PublicKey: pub,
		KeyId: key.KeyIDString, KeyVersion: key.CurrentVersion, KeyPairSpec: req.KeyPairSpec}, nil
}

// dataKeyPair makes a key pair of pairSpec and encrypts its private key
// under the call's key, once action on it is authorized.
func (s *Server) dataKeyPair(ctx context.Context, c *call, action, pairSpec string, ec map[string]string) (priv, pub, blob []byte, key *keycache.Key, err error) {
	row, ok := keyspec.Lookup(pairSpec)
	spec, _ := row.Asymmetric()
	if !ok || !row.DataKeyPair {
		return nil, nil, nil, nil, errValidation("key_pair_spec must be one of %v, got %q", dataKeyPairSpecs, pairSpec)
	}
	if err := checkContext("encryption_context", ec); err != nil {
		return nil, nil, nil, nil, err
	}
	if key, err = s.authorizedKey(ctx, c, action, ec); err != nil {
		return nil, nil, nil, nil, err
	}
	if err := usable(key, c.at); err != nil { // before the costly key pair, not only in encryptWith
		return nil, nil, nil, nil, err
	}
	if priv, pub, err = spec.GenerateKeyPair(s.Random); err != nil {
		return nil, nil, nil, nil, errInternal()
	}
	if blob, err = s.encryptWith(ctx, c, key, priv, ec); err != nil {
		clear(priv)
		return nil, nil, nil, nil, err
	}
	return priv, pub, blob, key, nil
}
