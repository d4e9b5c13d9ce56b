package dataplane

import (
	"context"
	gocrypto "crypto"
	"crypto/x509"
	"time"

	"google.golang.org/grpc/codes"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keycache"
	"github.com/kubekms/kubekms/internal/keyspec"
	"github.com/kubekms/kubekms/internal/kmscrypto"
	"github.com/kubekms/kubekms/internal/policy"
)

// ReasonInvalidSignature is Verify's answer for a signature that does not verify.
const ReasonInvalidSignature = "KMSInvalidSignatureException"

// GetPublicKey implements KeyManagementService.
func (s *Server) GetPublicKey(ctx context.Context, req *kmsv1.GetPublicKeyRequest) (*kmsv1.GetPublicKeyResponse, error) {
	return handle(ctx, req, s.getPublicKey)
}

func (s *Server) getPublicKey(ctx context.Context, c *call, _ *kmsv1.GetPublicKeyRequest) (*kmsv1.GetPublicKeyResponse, error) {
	key, err := s.authorizedKey(ctx, c, policy.ActionGetPublicKey, nil)
	if err != nil {
		return nil, err
	}
	spec, err := asymmetricKey(key, "", c.at)
	if err != nil {
		return nil, err
	}
	priv, err := s.privateKey(ctx, key, key.CurrentVersion)
	if err != nil {
		return nil, errMaterial(ctx, key, key.CurrentVersion, err)
	}
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, errInternal()
	}
	resp := &kmsv1.GetPublicKeyResponse{PublicKey: der, PublicKeyPem: kmscrypto.PublicKeyPEM(der), KeyId: key.KeyIDString,
		KeyVersion: key.CurrentVersion, KeySpec: string(key.KeySpec), KeyUsage: string(key.KeyUsage)}
	algs := spec.Algorithms(key.KeyUsage)
	resp.SigningAlgorithms, resp.EncryptionAlgorithms = algs.Signing, algs.Encryption
	return resp, nil
}

// Sign implements KeyManagementService.
func (s *Server) Sign(ctx context.Context, req *kmsv1.SignRequest) (*kmsv1.SignResponse, error) {
	return handle(ctx, req, s.sign)
}

func (s *Server) sign(ctx context.Context, c *call, req *kmsv1.SignRequest) (*kmsv1.SignResponse, error) {
	key, err := s.signingKey(ctx, c, policy.ActionSign, req.SigningAlgorithm, req.MessageType, req.Message)
	if err != nil {
		return nil, err
	}
	priv, err := s.privateKey(ctx, key, key.CurrentVersion)
	if err != nil {
		return nil, errMaterial(ctx, key, key.CurrentVersion, err)
	}
	sig, err := kmscrypto.SignWith(priv, req.SigningAlgorithm, req.MessageType, req.Message, s.Random)
	if err != nil {
		return nil, errInternal()
	}
	return &kmsv1.SignResponse{Signature: sig, KeyId: key.KeyIDString, KeyVersion: key.CurrentVersion, SigningAlgorithm: req.SigningAlgorithm}, nil
}

// Verify implements KeyManagementService.
func (s *Server) Verify(ctx context.Context, req *kmsv1.VerifyRequest) (*kmsv1.VerifyResponse, error) {
	return handle(ctx, req, s.verify)
}

// verify: a signature does not say which version made it, so the newest
// maxVerifyVersions versions are tried; the one that verifies is the call's.
func (s *Server) verify(ctx context.Context, c *call, req *kmsv1.VerifyRequest) (*kmsv1.VerifyResponse, error) {
	if err := checkBytes("signature", req.Signature, 1, 1024); err != nil {
		return nil, err
	}
	key, err := s.signingKey(ctx, c, policy.ActionVerify, req.SigningAlgorithm, req.MessageType, req.Message)
	if err != nil {
		return nil, err
	}
	var trial versionTrial
	for v := key.CurrentVersion; v >= 1 && v+maxVerifyVersions > key.CurrentVersion; v-- {
		priv, err := s.privateKey(ctx, key, v)
		if !trial.loaded(ctx, key, v, err) {
			continue
		}
		if kmscrypto.VerifyWith(priv.Public(), req.SigningAlgorithm, req.MessageType, req.Message, req.Signature) == nil {
			c.use(key, v)
			return &kmsv1.VerifyResponse{SignatureValid: true, KeyId: key.KeyIDString, KeyVersion: v, SigningAlgorithm: req.SigningAlgorithm}, nil
		}
	}
	return nil, trial.none(newError(codes.InvalidArgument, ReasonInvalidSignature, "the signature does not verify for this message and key"))
}

// signingKey authorizes action on the call's key, a SIGN_VERIFY key, and
// checks the algorithm and message against it.
func (s *Server) signingKey(ctx context.Context, c *call, action, alg, messageType string, message []byte) (*keycache.Key, error) {
	key, err := s.authorizedKey(ctx, c, action, nil)
	if err != nil {
		return nil, err
	}
	spec, err := asymmetricKey(key, kmsv1alpha1.KeyUsageSignVerify, c.at)
	if err != nil {
		return nil, err
	}
	asym, _ := spec.Asymmetric()
	if err := asym.CheckSigning(alg, messageType, message); err != nil {
		return nil, errValidation("%s", err.Error())
	}
	return key, nil
}

// privateKey returns a version's parsed private key (a signing key, or an
// RSA decryption key), parsed once and forgotten with the key. Every
// private key of the standard library is a kmscrypto.Signer.
func (s *Server) privateKey(ctx context.Context, key *keycache.Key, version uint32) (gocrypto.Signer, error) {
	v, err := s.Keys.Parsed(ctx, key, version, func(material []byte) (any, error) { return kmscrypto.ParsePrivate(material) })
	if err != nil {
		return nil, err
	}
	return v.(gocrypto.Signer), nil
}

// asymmetricKey checks that a key is an enabled asymmetric key at now (of
// the given usage, when one is given) and returns its row of the key-spec
// table.
func asymmetricKey(key *keycache.Key, usage kmsv1alpha1.KeyUsage, now time.Time) (keyspec.Spec, error) {
	spec, _ := keyspec.Lookup(string(key.KeySpec))
	_, ok := spec.Asymmetric()
	if err := checkKey(key, usage, true, now); err != nil {
		return spec, err
	}
	if !ok {
		return spec, newError(codes.InvalidArgument, ReasonInvalidKeyUsage, "key %s/%s is not an asymmetric key", key.Namespace, key.Name)
	}
	return spec, nil
}
