// Package dataplane serves the gRPC KeyManagementService.
//
// A call is a value: the interceptor (interceptors.go) makes one call per
// request (call.go): it bounds the key references, authenticates the
// caller, resolves the key the request names once, and applies the quota
// of that key's class; the handler gets the call explicitly, authorizes
// (authorize.go), checks the key's state (keystate.go) and does the crypto;
// the interceptor then writes the call's audit record and counts it
// (metrics.go). Nothing is passed to a handler through the context but
// the call itself, and a handler reached without one refuses to serve.
// Each step's rules live in their own package (authn, key cache, quota,
// policy, crypto, audit).
package dataplane

import (
	"context"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/authz"
	"github.com/kubekms/kubekms/internal/keycache"
	"github.com/kubekms/kubekms/internal/keyspec"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/kmscrypto"
	"github.com/kubekms/kubekms/internal/policy"
)

// Server implements kubekms.v1.KeyManagementService. Its gRPC methods are
// adapters: each takes the request's call from the interceptor (handle)
// and runs the operation with it.
type Server struct {
	kmsv1.UnimplementedKeyManagementServiceServer

	Keys       *keycache.Cache
	Authorizer *authz.Authorizer
	// Access holds the keys' policies and grants; nil means every key has
	// the default policy (RBAC).
	Access *access.Index
	// ServiceAccountUID looks up an account's UID, for ExplainAccess about
	// another principal.
	ServiceAccountUID func(ctx context.Context, namespace, name string) (string, error)
	// ImportParameters reads an External key's current import parameters
	// (keystore.Store.ImportParameters; nil when there are none yet).
	ImportParameters func(ctx context.Context, keyID string) (*keystore.ImportParameters, error)

	// Random supplies data keys, random bytes and salts: crypto/rand.Reader.
	Random io.Reader
}

// Encrypt implements KeyManagementService.
func (s *Server) Encrypt(ctx context.Context, req *kmsv1.EncryptRequest) (*kmsv1.EncryptResponse, error) {
	return handle(ctx, req, s.encrypt)
}

func (s *Server) encrypt(ctx context.Context, c *call, req *kmsv1.EncryptRequest) (*kmsv1.EncryptResponse, error) {
	if kmscrypto.IsRSAEncryption(req.EncryptionAlgorithm) {
		return s.rsaEncrypt(ctx, c, req)
	}
	if err := checkBytes("plaintext", req.Plaintext, 1, MaxPlaintext); err != nil {
		return nil, err
	}
	if err := checkContext("encryption_context", req.EncryptionContext); err != nil {
		return nil, err
	}
	if err := checkAlgorithm("encryption_algorithm", req.EncryptionAlgorithm); err != nil {
		return nil, err
	}
	key, err := s.authorizedKey(ctx, c, policy.ActionEncrypt, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	blob, err := s.encryptWith(ctx, c, key, req.Plaintext, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return &kmsv1.EncryptResponse{CiphertextBlob: blob, KeyId: key.KeyIDString, KeyVersion: key.CurrentVersion, EncryptionAlgorithm: keyspec.SymmetricEncryptionAlgorithm}, nil
}

// Decrypt implements KeyManagementService.
func (s *Server) Decrypt(ctx context.Context, req *kmsv1.DecryptRequest) (*kmsv1.DecryptResponse, error) {
	return handle(ctx, req, s.decrypt)
}

func (s *Server) decrypt(ctx context.Context, c *call, req *kmsv1.DecryptRequest) (*kmsv1.DecryptResponse, error) {
	if kmscrypto.IsRSAEncryption(req.EncryptionAlgorithm) {
		return s.rsaDecrypt(ctx, c, req)
	}
	if err := checkAlgorithm("encryption_algorithm", req.EncryptionAlgorithm); err != nil {
		return nil, err
	}
	pt, key, version, err := s.decryptCiphertext(ctx, c, policy.ActionDecrypt, req.CiphertextBlob, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return &kmsv1.DecryptResponse{Plaintext: pt, KeyId: key.KeyIDString, KeyVersion: version, EncryptionAlgorithm: keyspec.SymmetricEncryptionAlgorithm}, nil
}

// ReEncrypt implements KeyManagementService: the plaintext never leaves.
func (s *Server) ReEncrypt(ctx context.Context, req *kmsv1.ReEncryptRequest) (*kmsv1.ReEncryptResponse, error) {
	return handle(ctx, req, s.reEncrypt)
}

// reEncrypt decrypts with the source key (the call's key) and encrypts
// with the destination (the call's destination, the source when the
// request names none).
func (s *Server) reEncrypt(ctx context.Context, c *call, req *kmsv1.ReEncryptRequest) (*kmsv1.ReEncryptResponse, error) {
	if err := checkAlgorithm("source_encryption_algorithm", req.SourceEncryptionAlgorithm); err != nil {
		return nil, err
	}
	if err := checkAlgorithm("destination_encryption_algorithm", req.DestinationEncryptionAlgorithm); err != nil {
		return nil, err
	}
	if err := checkContext("destination_encryption_context", req.DestinationEncryptionContext); err != nil {
		return nil, err
	}
	pt, src, srcVersion, err := s.decryptCiphertext(ctx, c, policy.ActionReEncryptFrom, req.CiphertextBlob, req.SourceEncryptionContext)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	dst, err := s.destinationKey(ctx, c, req.DestinationKeyId, req.DestinationEncryptionContext)
	if err != nil {
		return nil, err
	}
	blob, err := s.encryptWith(ctx, c, dst, pt, req.DestinationEncryptionContext)
	if err != nil {
		return nil, err
	}
	return &kmsv1.ReEncryptResponse{CiphertextBlob: blob, SourceKeyId: src.KeyIDString, SourceKeyVersion: srcVersion, KeyId: dst.KeyIDString, KeyVersion: dst.CurrentVersion}, nil
}

// GenerateDataKey implements KeyManagementService.
func (s *Server) GenerateDataKey(ctx context.Context, req *kmsv1.GenerateDataKeyRequest) (*kmsv1.GenerateDataKeyResponse, error) {
	return handle(ctx, req, s.generateDataKey)
}

func (s *Server) generateDataKey(ctx context.Context, c *call, req *kmsv1.GenerateDataKeyRequest) (*kmsv1.GenerateDataKeyResponse, error) {
	dk, blob, key, err := s.dataKey(ctx, c, policy.ActionGenerateDataKey, req.NumberOfBytes, req.KeySpec, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return &kmsv1.GenerateDataKeyResponse{CiphertextBlob: blob, Plaintext: dk, KeyId: key.KeyIDString, KeyVersion: key.CurrentVersion}, nil
}

// GenerateDataKeyWithoutPlaintext implements KeyManagementService.
func (s *Server) GenerateDataKeyWithoutPlaintext(ctx context.Context, req *kmsv1.GenerateDataKeyWithoutPlaintextRequest) (*kmsv1.GenerateDataKeyWithoutPlaintextResponse, error) {
	return handle(ctx, req, s.generateDataKeyWithoutPlaintext)
}

func (s *Server) generateDataKeyWithoutPlaintext(ctx context.Context, c *call, req *kmsv1.GenerateDataKeyWithoutPlaintextRequest) (*kmsv1.GenerateDataKeyWithoutPlaintextResponse, error) {
	dk, blob, key, err := s.dataKey(ctx, c, policy.ActionGenerateDataKeyWithoutPlaintext, req.NumberOfBytes, req.KeySpec, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	clear(dk)
	return &kmsv1.GenerateDataKeyWithoutPlaintextResponse{CiphertextBlob: blob, KeyId: key.KeyIDString, KeyVersion: key.CurrentVersion}, nil
}

// GenerateRandom implements KeyManagementService.
func (s *Server) GenerateRandom(ctx context.Context, req *kmsv1.GenerateRandomRequest) (*kmsv1.GenerateRandomResponse, error) {
	return handle(ctx, req, s.generateRandom)
}

// generateRandom: any authenticated caller may use it, it involves no key.
func (s *Server) generateRandom(_ context.Context, _ *call, req *kmsv1.GenerateRandomRequest) (*kmsv1.GenerateRandomResponse, error) {
	if req.NumberOfBytes < 1 || req.NumberOfBytes > MaxRandomBytes {
		return nil, errValidation("number_of_bytes must be between 1 and %d, got %d", MaxRandomBytes, req.NumberOfBytes)
	}
	out := make([]byte, req.NumberOfBytes)
	if _, err := io.ReadFull(s.Random, out); err != nil {
		return nil, errInternal()
	}
	return &kmsv1.GenerateRandomResponse{Plaintext: out}, nil
}

// DescribeKey implements KeyManagementService.
func (s *Server) DescribeKey(ctx context.Context, req *kmsv1.DescribeKeyRequest) (*kmsv1.DescribeKeyResponse, error) {
	return handle(ctx, req, s.describeKey)
}

func (s *Server) describeKey(ctx context.Context, c *call, _ *kmsv1.DescribeKeyRequest) (*kmsv1.DescribeKeyResponse, error) {
	key, err := s.authorizedKey(ctx, c, policy.ActionDescribeKey, nil)
	if err != nil {
		return nil, err
	}
	return &kmsv1.DescribeKeyResponse{KeyMetadata: keyMetadata(key)}, nil
}

// keyMetadata is what DescribeKey says of a key: never its material; the
// algorithms its spec and usage allow, from the key-spec table.
func keyMetadata(key *keycache.Key) *kmsv1.KeyMetadata {
	md := &kmsv1.KeyMetadata{
		KeyId: key.KeyIDString, Namespace: key.Namespace, Name: key.Name, Description: key.Description,
		KeySpec: string(key.KeySpec), KeyUsage: string(key.KeyUsage), KeyState: string(key.State),
		Origin: string(key.Origin), CurrentVersion: key.CurrentVersion,
		CreationDate: timestamppb.New(key.Created), RotationEnabled: key.RotationEnabled,
	}
	if spec, ok := keyspec.Lookup(string(key.KeySpec)); ok {
		algs := spec.Algorithms(key.KeyUsage)
		md.EncryptionAlgorithms, md.SigningAlgorithms, md.MacAlgorithms = algs.Encryption, algs.Signing, algs.MAC
	}
	if !key.NextRotation.IsZero() {
		md.NextRotationDate = timestamppb.New(key.NextRotation)
	}
	return md
}

// dataKey makes a data key of n bytes or of spec (AES_256, AES_128) and
// encrypts it under the call's key, once action on it is authorized.
func (s *Server) dataKey(ctx context.Context, c *call, action string, n uint32, spec string, ec map[string]string) ([]byte, []byte, *keycache.Key, error) {
	size, err := dataKeySize(n, spec)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := checkContext("encryption_context", ec); err != nil {
		return nil, nil, nil, err
	}
	key, err := s.authorizedKey(ctx, c, action, ec)
	if err != nil {
		return nil, nil, nil, err
	}
	dk := make([]byte, size)
	if _, err := io.ReadFull(s.Random, dk); err != nil {
		return nil, nil, nil, errInternal()
	}
	blob, err := s.encryptWith(ctx, c, key, dk, ec)
	if err != nil {
		clear(dk)
		return nil, nil, nil, err
	}
	return dk, blob, key, nil
}

// encryptWith encrypts under the key's current version, once the key is
// usable at the call's time.
func (s *Server) encryptWith(ctx context.Context, c *call, key *keycache.Key, pt []byte, ec map[string]string) ([]byte, error) {
	if err := usable(key, c.at); err != nil {
		return nil, err
	}
	vk, err := s.Keys.VersionKey(ctx, key, key.CurrentVersion)
	if err != nil {
		return nil, errMaterial(ctx, key, key.CurrentVersion, err)
	}
	blob, err := kmscrypto.Encrypt(vk, key.KeyID, key.CurrentVersion, pt, ec, s.Random)
	if err != nil {
		return nil, errInternal()
	}
	return blob, nil
}

// decryptCiphertext authorizes action and decrypts a symmetric
// ciphertext. The ciphertext names its key, which becomes the call's key
// (at the ciphertext's version); a key the request names too must be the
// same one.
func (s *Server) decryptCiphertext(ctx context.Context, c *call, action string, raw []byte, ec map[string]string) ([]byte, *keycache.Key, uint32, error) {
	if len(raw) == 0 {
		return nil, nil, 0, errValidation("ciphertext_blob is required")
	}
	if len(raw) > maxCiphertextAsText || (!kmscrypto.IsText(raw) && len(raw) > MaxCiphertext) {
		return nil, nil, 0, errValidation("ciphertext_blob must be at most %d bytes", MaxCiphertext)
	}
	if err := checkContext("encryption_context", ec); err != nil {
		return nil, nil, 0, err
	}
	blob, err := kmscrypto.DecodeCiphertext(raw)
	if err != nil {
		return nil, nil, 0, errInvalidCiphertext()
	}
	h, err := kmscrypto.ParseHeader(blob)
	if err != nil {
		return nil, nil, 0, errInvalidCiphertext()
	}
	key, err := s.Keys.ByID(h.KeyID)
	if err != nil {
		// The same answer as "not allowed", so key IDs cannot be probed.
		return nil, nil, 0, errAccessDenied(c.principal.Username, action, h.KeyID.String())
	}
	c.use(key, h.Version)
	if err := s.authorize(ctx, c, action, h.KeyID.String(), key, ec); err != nil {
		return nil, nil, 0, err
	}
	if c.ref != "" && (c.named == nil || c.named.KeyID != key.KeyID) {
		return nil, nil, 0, newError(codes.InvalidArgument, ReasonIncorrectKey, "the ciphertext was not made with key %q", c.ref)
	}
	if err := usableForDecrypt(key, c.at); err != nil {
		return nil, nil, 0, err
	}
	vk, err := s.Keys.VersionKey(ctx, key, h.Version)
	if err != nil {
		if missingVersion(err) {
			return nil, nil, 0, errInvalidCiphertext()
		}
		return nil, nil, 0, errMaterial(ctx, key, h.Version, err)
	}
	pt, err := kmscrypto.Decrypt(vk, blob, ec)
	if err != nil {
		return nil, nil, 0, errInvalidCiphertext()
	}
	return pt, key, h.Version, nil
}
