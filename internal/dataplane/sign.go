package dataplane

import (
	"context"
	gocrypto "crypto"
	"crypto/x509"
	"strings"

	"google.golang.org/grpc/codes"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/crypto"
	"github.com/kubekms/kubekms/internal/keyring"
)

// ReasonInvalidSignature is Verify's answer for a signature that does not verify.
const ReasonInvalidSignature = "KMSInvalidSignatureException"

// GetPublicKey implements KeyManagementService.
func (s *Server) GetPublicKey(ctx context.Context, req *kmsv1.GetPublicKeyRequest) (*kmsv1.GetPublicKeyResponse, error) {
	key, err := s.authorizedKey(ctx, "GetPublicKey", req.KeyId, nil)
	if err != nil {
		return nil, err
	}
	spec, err := asymmetricKey(key, "")
	if err != nil {
		return nil, err
	}
	signer, err := s.signer(ctx, key, key.CurrentVersion)
	if err != nil {
		return nil, errInternal()
	}
	der, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, errInternal()
	}
	resp := &kmsv1.GetPublicKeyResponse{PublicKey: der, PublicKeyPem: crypto.PublicKeyPEM(der), KeyId: key.KeyIDString,
		KeyVersion: key.CurrentVersion, KeySpec: string(key.KeySpec), KeyUsage: string(key.KeyUsage)}
	if key.KeyUsage == kmsv1alpha1.KeyUsageSignVerify {
		resp.SigningAlgorithms = spec.SigningAlgorithms
	} else {
		resp.EncryptionAlgorithms = crypto.RSAEncryptionAlgorithms
	}
	return resp, nil
}

// Sign implements KeyManagementService.
func (s *Server) Sign(ctx context.Context, req *kmsv1.SignRequest) (*kmsv1.SignResponse, error) {
	key, err := s.signingKey(ctx, "Sign", req.KeyId, req.SigningAlgorithm, req.MessageType, req.Message)
	if err != nil {
		return nil, err
	}
	signer, err := s.signer(ctx, key, key.CurrentVersion)
	if err != nil {
		return nil, errInternal()
	}
	sig, err := crypto.SignWith(signer, req.SigningAlgorithm, req.MessageType, req.Message, s.Random)
	if err != nil {
		return nil, errInternal()
	}
	return &kmsv1.SignResponse{Signature: sig, KeyId: key.KeyIDString, KeyVersion: key.CurrentVersion, SigningAlgorithm: req.SigningAlgorithm}, nil
}

// Verify implements KeyManagementService: a signature does not say which
// version made it, so the newest maxVerifyVersions versions are tried.
func (s *Server) Verify(ctx context.Context, req *kmsv1.VerifyRequest) (*kmsv1.VerifyResponse, error) {
	if err := checkBytes("signature", req.Signature, 1, 1024); err != nil {
		return nil, err
	}
	key, err := s.signingKey(ctx, "Verify", req.KeyId, req.SigningAlgorithm, req.MessageType, req.Message)
	if err != nil {
		return nil, err
	}
	for v := key.CurrentVersion; v >= 1 && v+maxVerifyVersions > key.CurrentVersion; v-- {
		signer, err := s.signer(ctx, key, v)
		if err != nil {
			continue
		}
		if crypto.VerifyWith(signer.Public(), req.SigningAlgorithm, req.MessageType, req.Message, req.Signature) == nil {
			noteKey(ctx, key, v)
			return &kmsv1.VerifyResponse{SignatureValid: true, KeyId: key.KeyIDString, KeyVersion: v, SigningAlgorithm: req.SigningAlgorithm}, nil
		}
	}
	return nil, newError(codes.InvalidArgument, ReasonInvalidSignature, "the signature does not verify for this message and key")
}

// signingKey authorizes action on a SIGN_VERIFY key and checks the
// algorithm and message against it.
func (s *Server) signingKey(ctx context.Context, action, ref, alg, messageType string, message []byte) (*keyring.Key, error) {
	key, err := s.authorizedKey(ctx, action, ref, nil)
	if err != nil {
		return nil, err
	}
	spec, err := asymmetricKey(key, kmsv1alpha1.KeyUsageSignVerify)
	if err != nil {
		return nil, err
	}
	if err := spec.CheckSigning(alg, messageType, message); err != nil {
		return nil, errValidation("%s", err.Error())
	}
	return key, nil
}

// signer returns a version's parsed private key, parsed once and forgotten
// with the key.
func (s *Server) signer(ctx context.Context, key *keyring.Key, version uint32) (gocrypto.Signer, error) {
	v, err := s.Keys.Parsed(ctx, key, version, func(material []byte) (any, error) { return crypto.ParsePrivate(material) })
	if err != nil {
		return nil, err
	}
	return v.(gocrypto.Signer), nil
}

// asymmetricKey checks that a key is an enabled asymmetric key (of the
// given usage, when one is given).
func asymmetricKey(key *keyring.Key, usage kmsv1alpha1.KeyUsage) (crypto.AsymmetricSpec, error) {
	spec, ok := crypto.Asymmetric(string(key.KeySpec))
	if err := checkKey(key, usage, true); err != nil {
		return spec, err
	}
	if !ok {
		return spec, newError(codes.InvalidArgument, ReasonInvalidKeyUsage, "key %s/%s is not an asymmetric key", key.Namespace, key.Name)
	}
	return spec, nil
}

// keyClass is the quota class of an operation on a key spec.
func keyClass(keySpec string) string {
	switch {
	case strings.HasPrefix(keySpec, "RSA_"):
		return "rsa"
	case strings.HasPrefix(keySpec, "ECC_"):
		return "ecc"
	}
	return "symmetric"
}
