// Package dataplane serves the gRPC KeyManagementService. Handlers are thin:
// authenticate (interceptor) → resolve the key → authorize → check the key's
// state → crypto. Each step lives in its own package.
package dataplane

import (
	"context"
	"errors"
	"io"
	"net"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/audit"
	"github.com/kubekms/kubekms/internal/authn"
	"github.com/kubekms/kubekms/internal/authz"
	"github.com/kubekms/kubekms/internal/crypto"
	"github.com/kubekms/kubekms/internal/keyring"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/policy"
	"github.com/kubekms/kubekms/internal/quota"
)

// Limits, as AWS KMS.
const (
	MaxPlaintext        = 4096
	MaxCiphertext       = 6144
	MaxRandomBytes      = 1024
	MaxContextPairs     = 64
	MaxContextBytes     = 8192
	SymmetricDefault    = "SYMMETRIC_DEFAULT"
	dataKeySpecAES256   = "AES_256"
	dataKeySpecAES128   = "AES_128"
	maxCiphertextAsText = 8192 + len(crypto.TextPrefix)
)

// Server implements kubekms.v1.KeyManagementService.
type Server struct {
	kmsv1.UnimplementedKeyManagementServiceServer

	Keys       *keyring.Keyring
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
	if crypto.IsRSAEncryption(req.EncryptionAlgorithm) {
		return s.rsaEncrypt(ctx, req)
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
	key, err := s.authorizedKey(ctx, "Encrypt", req.KeyId, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	blob, err := s.encrypt(ctx, key, req.Plaintext, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return &kmsv1.EncryptResponse{CiphertextBlob: blob, KeyId: key.KeyIDString, KeyVersion: key.CurrentVersion, EncryptionAlgorithm: SymmetricDefault}, nil
}

// Decrypt implements KeyManagementService.
func (s *Server) Decrypt(ctx context.Context, req *kmsv1.DecryptRequest) (*kmsv1.DecryptResponse, error) {
	if crypto.IsRSAEncryption(req.EncryptionAlgorithm) {
		return s.rsaDecrypt(ctx, req)
	}
	if err := checkAlgorithm("encryption_algorithm", req.EncryptionAlgorithm); err != nil {
		return nil, err
	}
	pt, key, version, err := s.decrypt(ctx, "Decrypt", req.CiphertextBlob, req.EncryptionContext, req.KeyId)
	if err != nil {
		return nil, err
	}
	return &kmsv1.DecryptResponse{Plaintext: pt, KeyId: key.KeyIDString, KeyVersion: version, EncryptionAlgorithm: SymmetricDefault}, nil
}

// ReEncrypt implements KeyManagementService: the plaintext never leaves.
func (s *Server) ReEncrypt(ctx context.Context, req *kmsv1.ReEncryptRequest) (*kmsv1.ReEncryptResponse, error) {
	if err := checkAlgorithm("source_encryption_algorithm", req.SourceEncryptionAlgorithm); err != nil {
		return nil, err
	}
	if err := checkAlgorithm("destination_encryption_algorithm", req.DestinationEncryptionAlgorithm); err != nil {
		return nil, err
	}
	if err := checkContext("destination_encryption_context", req.DestinationEncryptionContext); err != nil {
		return nil, err
	}
	pt, src, srcVersion, err := s.decrypt(ctx, "ReEncryptFrom", req.CiphertextBlob, req.SourceEncryptionContext, req.SourceKeyId)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	dst := src
	if req.DestinationKeyId != "" {
		srcRecord := *callOf(ctx).record.Key
		dst, err = s.authorizedKey(ctx, "ReEncryptTo", req.DestinationKeyId, req.DestinationEncryptionContext)
		callOf(ctx).record.Key = &srcRecord // the source stays the record's key
		if err != nil {
			return nil, err
		}
	} else if err := s.authorize(ctx, "ReEncryptTo", src.KeyIDString, src, req.DestinationEncryptionContext); err != nil {
		return nil, err
	}
	noteDestination(ctx, dst)
	blob, err := s.encrypt(ctx, dst, pt, req.DestinationEncryptionContext)
	if err != nil {
		return nil, err
	}
	return &kmsv1.ReEncryptResponse{CiphertextBlob: blob, SourceKeyId: src.KeyIDString, SourceKeyVersion: srcVersion, KeyId: dst.KeyIDString, KeyVersion: dst.CurrentVersion}, nil
}

// GenerateDataKey implements KeyManagementService.
func (s *Server) GenerateDataKey(ctx context.Context, req *kmsv1.GenerateDataKeyRequest) (*kmsv1.GenerateDataKeyResponse, error) {
	dk, blob, key, err := s.generateDataKey(ctx, "GenerateDataKey", req.KeyId, req.NumberOfBytes, req.KeySpec, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return &kmsv1.GenerateDataKeyResponse{CiphertextBlob: blob, Plaintext: dk, KeyId: key.KeyIDString, KeyVersion: key.CurrentVersion}, nil
}

// GenerateDataKeyWithoutPlaintext implements KeyManagementService.
func (s *Server) GenerateDataKeyWithoutPlaintext(ctx context.Context, req *kmsv1.GenerateDataKeyWithoutPlaintextRequest) (*kmsv1.GenerateDataKeyWithoutPlaintextResponse, error) {
	dk, blob, key, err := s.generateDataKey(ctx, "GenerateDataKeyWithoutPlaintext", req.KeyId, req.NumberOfBytes, req.KeySpec, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	clear(dk)
	return &kmsv1.GenerateDataKeyWithoutPlaintextResponse{CiphertextBlob: blob, KeyId: key.KeyIDString, KeyVersion: key.CurrentVersion}, nil
}

// GenerateRandom implements KeyManagementService. Any authenticated caller
// may use it: it involves no key.
func (s *Server) GenerateRandom(_ context.Context, req *kmsv1.GenerateRandomRequest) (*kmsv1.GenerateRandomResponse, error) {
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
	key, err := s.authorizedKey(ctx, "DescribeKey", req.KeyId, nil)
	if err != nil {
		return nil, err
	}
	md := &kmsv1.KeyMetadata{
		KeyId: key.KeyIDString, Namespace: key.Namespace, Name: key.Name, Description: key.Description,
		KeySpec: string(key.KeySpec), KeyUsage: string(key.KeyUsage), KeyState: string(key.State),
		Origin: string(key.Origin), CurrentVersion: key.CurrentVersion,
		CreationDate: timestamppb.New(key.Created), RotationEnabled: key.RotationEnabled,
	}
	if key.KeySpec == kmsv1alpha1.KeySpecSymmetricDefault {
		md.EncryptionAlgorithms = []string{SymmetricDefault}
	}
	if spec, ok := crypto.HMACSpec(string(key.KeySpec)); ok {
		md.MacAlgorithms = []string{string(spec.Algorithm)}
	}
	if !key.NextRotation.IsZero() {
		md.NextRotationDate = timestamppb.New(key.NextRotation)
	}
	return &kmsv1.DescribeKeyResponse{KeyMetadata: md}, nil
}

func (s *Server) generateDataKey(ctx context.Context, action, ref string, n uint32, spec string, ec map[string]string) ([]byte, []byte, *keyring.Key, error) {
	size, err := dataKeySize(n, spec)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := checkContext("encryption_context", ec); err != nil {
		return nil, nil, nil, err
	}
	key, err := s.authorizedKey(ctx, action, ref, ec)
	if err != nil {
		return nil, nil, nil, err
	}
	dk := make([]byte, size)
	if _, err := io.ReadFull(s.Random, dk); err != nil {
		return nil, nil, nil, errInternal()
	}
	blob, err := s.encrypt(ctx, key, dk, ec)
	if err != nil {
		clear(dk)
		return nil, nil, nil, err
	}
	return dk, blob, key, nil
}

// encrypt encrypts under the key's current version, once the key is usable.
func (s *Server) encrypt(ctx context.Context, key *keyring.Key, pt []byte, ec map[string]string) ([]byte, error) {
	if err := usable(key); err != nil {
		return nil, err
	}
	vk, err := s.Keys.VersionKey(ctx, key, key.CurrentVersion)
	if err != nil {
		log.FromContext(ctx).Error(err, "Could not load key material", "keyID", key.KeyIDString, "version", key.CurrentVersion)
		return nil, errInternal()
	}
	blob, err := crypto.Encrypt(vk, key.KeyID, key.CurrentVersion, pt, ec, s.Random)
	if err != nil {
		return nil, errInternal()
	}
	return blob, nil
}

// decrypt authorizes and decrypts a ciphertext. The ciphertext names its
// key; a key the caller names too must be the same one.
func (s *Server) decrypt(ctx context.Context, action string, raw []byte, ec map[string]string, ref string) ([]byte, *keyring.Key, uint32, error) {
	if len(raw) == 0 {
		return nil, nil, 0, errValidation("ciphertext_blob is required")
	}
	if len(raw) > maxCiphertextAsText || (!crypto.IsText(raw) && len(raw) > MaxCiphertext) {
		return nil, nil, 0, errValidation("ciphertext_blob must be at most %d bytes", MaxCiphertext)
	}
	if err := checkContext("encryption_context", ec); err != nil {
		return nil, nil, 0, err
	}
	blob, err := crypto.DecodeCiphertext(raw)
	if err != nil {
		return nil, nil, 0, errInvalidCiphertext()
	}
	h, err := crypto.ParseHeader(blob)
	if err != nil {
		return nil, nil, 0, errInvalidCiphertext()
	}
	key, err := s.Keys.ByID(h.KeyID)
	if err != nil {
		// The same answer as "not allowed", so key IDs cannot be probed.
		return nil, nil, 0, errAccessDenied(principal(ctx).Username, action, h.KeyID.String())
	}
	noteKey(ctx, key, h.Version)
	if err := s.authorize(ctx, action, h.KeyID.String(), key, ec); err != nil {
		return nil, nil, 0, err
	}
	if ref != "" {
		named, err := s.resolve(ctx, ref)
		if err != nil || named.KeyID != key.KeyID {
			return nil, nil, 0, newError(codes.InvalidArgument, ReasonIncorrectKey, "the ciphertext was not made with key %q", ref)
		}
	}
	if err := usableForDecrypt(key); err != nil {
		return nil, nil, 0, err
	}
	vk, err := s.Keys.VersionKey(ctx, key, h.Version)
	if err != nil {
		if apierrors.IsNotFound(err) || errors.Is(err, keyring.ErrVersionNotFound) {
			return nil, nil, 0, errInvalidCiphertext()
		}
		log.FromContext(ctx).Error(err, "Could not load key material", "keyID", key.KeyIDString, "version", h.Version)
		return nil, nil, 0, errInternal()
	}
	pt, err := crypto.Decrypt(vk, blob, ec)
	if err != nil {
		return nil, nil, 0, errInvalidCiphertext()
	}
	return pt, key, h.Version, nil
}

// authorizedKey resolves a key reference and authorizes the action on it.
// An unknown key and a forbidden key get the same answer (code, reason and
// message), and the audit record says which it was.
//
// An unknown name is answered without asking RBAC. Asking (a
// SubjectAccessReview per distinct name, as this once did to make both
// answers take as long) let a caller turn every made-up name into a write
// to the API server, at the rate of its quota. What the caller can still
// measure is whether a first, uncached question about a name cost a
// SubjectAccessReview; that was never hidden well: RBAC answers are cached
// for seconds, and a key whose KeyPolicy decides without RBAC already
// answered faster than an unknown name did. At most it tells that a name
// exists, never anything about the key; see docs/dataplane.md.
func (s *Server) authorizedKey(ctx context.Context, action, ref string, ec map[string]string) (*keyring.Key, error) {
	if ref == "" {
		return nil, errValidation("key_id is required: a key name, namespace/name or keyID")
	}
	p := principal(ctx)
	key, err := s.resolve(ctx, ref)
	if err != nil {
		return nil, errAccessDenied(p.Username, action, ref)
	}
	noteKey(ctx, key, key.CurrentVersion)
	return key, s.authorize(ctx, action, ref, key, ec)
}

// resolve finds the key a reference names, in the caller's namespace; the
// key the request itself names was resolved once already, for its quota
// class.
func (s *Server) resolve(ctx context.Context, ref string) (*keyring.Key, error) {
	c := callOf(ctx)
	if c.resolved != nil && c.resolvedRef == ref {
		return c.resolved, nil
	}
	return s.Keys.Resolve(c.principal.Namespace, ref)
}

func (s *Server) authorize(ctx context.Context, action, ref string, key *keyring.Key, ec map[string]string) error {
	p := principal(ctx)
	d, err := s.decide(ctx, p, action, key, ec)
	if err != nil {
		log.FromContext(ctx).Error(err, "Could not authorize", "action", action)
		return errInternal()
	}
	callOf(ctx).record.DecidedBy = d.DecidedBy
	if !d.Allowed {
		return errAccessDenied(p.Username, action, ref)
	}
	return nil
}

// decide applies the key's policy and grants, asking RBAC only when a rule
// needs it (internal/policy).
func (s *Server) decide(ctx context.Context, p *authn.Principal, action string, key *keyring.Key, ec map[string]string) (policy.Decision, error) {
	var pol *policy.Policy
	var grants []policy.Grant
	if s.Access != nil {
		pol, grants = s.Access.For(key.Namespace, key.UID, time.Now())
	}
	if pol == nil {
		pol = key.InitialPolicy
	}
	return policy.Evaluate(policy.Request{
		Principal:         policy.Principal{Username: p.Username, UID: p.UID, Groups: p.Groups, Namespace: p.Namespace, ServiceAccount: p.ServiceAccount},
		Action:            action,
		EncryptionContext: ec,
	}, pol, grants, func() (bool, string, error) {
		d, err := s.Authorizer.Authorize(ctx, authz.Request{Principal: p, Action: action, Namespace: key.Namespace, Name: key.Name})
		return d.Allowed, d.DecidedBy, err
	})
}

// checkKey is the one check of a key before use: not disabled, of the
// usage the operation needs ("" for any), enabled, and with material when
// needMaterial. Only callers allowed to use the key get here, so only they
// learn its state.
func checkKey(key *keyring.Key, usage kmsv1alpha1.KeyUsage, needMaterial bool) error {
	switch {
	case key.State == kmsv1alpha1.KeyStateDisabled:
		return newError(codes.FailedPrecondition, ReasonDisabled, "key %s/%s is disabled", key.Namespace, key.Name)
	case !key.ValidTo.IsZero() && !time.Now().Before(key.ValidTo):
		// Checked here too, not only by the controller, so expiry is exact.
		return newError(codes.FailedPrecondition, ReasonKeyUnavailable, "the imported material of key %s/%s expired at %s",
			key.Namespace, key.Name, key.ValidTo.UTC().Format(time.RFC3339))
	case usage != "" && key.KeyUsage != "" && key.KeyUsage != usage:
		return newError(codes.InvalidArgument, ReasonInvalidKeyUsage, "key %s/%s has key usage %s, not %s", key.Namespace, key.Name, key.KeyUsage, usage)
	case key.State != kmsv1alpha1.KeyStateEnabled || (needMaterial && key.CurrentVersion == 0):
		return newError(codes.FailedPrecondition, ReasonKeyUnavailable, "key %s/%s is %s and has no usable material yet", key.Namespace, key.Name, key.State)
	}
	return nil
}

// usable says whether a key can encrypt now (symmetric encryption).
func usable(key *keyring.Key) error { return symmetricKey(key, true) }

// usableForDecrypt is usable without needing a current version.
func usableForDecrypt(key *keyring.Key) error { return symmetricKey(key, false) }

func symmetricKey(key *keyring.Key, needMaterial bool) error {
	if err := checkKey(key, kmsv1alpha1.KeyUsageEncryptDecrypt, needMaterial); err != nil {
		return err
	}
	if key.KeySpec != kmsv1alpha1.KeySpecSymmetricDefault {
		return newError(codes.InvalidArgument, ReasonInvalidKeyUsage,
			"key %s/%s is a %s key: set encryption_algorithm to RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1", key.Namespace, key.Name, key.KeySpec)
	}
	return nil
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
	if alg != "" && alg != SymmetricDefault {
		return errValidation("%s must be %s for symmetric keys (RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256 for RSA keys), got %q", field, SymmetricDefault, alg)
	}
	return nil
}

// call is the state of one request, shared by the interceptors and the
// handler: who called, the audit record being filled, the key used.
type call struct {
	// from is the client's address.
	from      net.Addr
	principal *authn.Principal
	record    *audit.Record
	keyUID    types.UID
	// class is the quota class, decided once by the throttle interceptor.
	class quota.Class
	// resolved is the key the request names (resolvedRef), resolved once
	// by the throttle interceptor for the quota class; nil if it did not.
	resolved    *keyring.Key
	resolvedRef string
}

type callKey struct{}

func withCall(ctx context.Context, c *call) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}

func callOf(ctx context.Context) *call {
	if c, ok := ctx.Value(callKey{}).(*call); ok {
		return c
	}
	return &call{principal: &authn.Principal{}, record: &audit.Record{}}
}

func principal(ctx context.Context) *authn.Principal { return callOf(ctx).principal }

// noteKey records the key (and version) a call used, for the audit record
// and the usage summary.
func noteKey(ctx context.Context, key *keyring.Key, version uint32) {
	c := callOf(ctx)
	c.record.Key = &audit.KeyRef{Namespace: key.Namespace, Name: key.Name, KeyID: key.KeyIDString, Version: version}
	c.keyUID = key.UID
}

func noteDestination(ctx context.Context, key *keyring.Key) {
	callOf(ctx).record.DestinationKey = &audit.KeyRef{Namespace: key.Namespace, Name: key.Name, KeyID: key.KeyIDString, Version: key.CurrentVersion}
}
