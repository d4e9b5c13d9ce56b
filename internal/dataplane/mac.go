package dataplane

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keycache"
	"github.com/kubekms/kubekms/internal/keyspec"
	"github.com/kubekms/kubekms/internal/kmscrypto"
	"github.com/kubekms/kubekms/internal/policy"
)

// maxVerifyVersions bounds how many versions VerifyMac tries, newest
// first: a MAC does not say which version made it.
const maxVerifyVersions = 16

// ReasonInvalidMac is VerifyMac's answer for a MAC that does not verify.
const ReasonInvalidMac = "KMSInvalidMacException"

// GenerateMac implements KeyManagementService.
func (s *Server) GenerateMac(ctx context.Context, req *kmsv1.GenerateMacRequest) (*kmsv1.GenerateMacResponse, error) {
	return handle(ctx, req, s.generateMac)
}

func (s *Server) generateMac(ctx context.Context, c *call, req *kmsv1.GenerateMacRequest) (*kmsv1.GenerateMacResponse, error) {
	if err := checkBytes("message", req.Message, 1, MaxPlaintext); err != nil {
		return nil, err
	}
	key, err := s.authorizedKey(ctx, c, policy.ActionGenerateMac, nil)
	if err != nil {
		return nil, err
	}
	spec, err := macKey(key, req.MacAlgorithm, c.at)
	if err != nil {
		return nil, err
	}
	vk, err := s.Keys.VersionKey(ctx, key, key.CurrentVersion)
	if err != nil {
		return nil, errMaterial(ctx, key, key.CurrentVersion, err)
	}
	mac, err := spec.MAC(vk, req.Message)
	if err != nil {
		return nil, errInternal()
	}
	return &kmsv1.GenerateMacResponse{Mac: mac, KeyId: key.KeyIDString, KeyVersion: key.CurrentVersion, MacAlgorithm: string(spec.Algorithm)}, nil
}

// VerifyMac implements KeyManagementService.
func (s *Server) VerifyMac(ctx context.Context, req *kmsv1.VerifyMacRequest) (*kmsv1.VerifyMacResponse, error) {
	return handle(ctx, req, s.verifyMac)
}

// verifyMac verifies in constant time per version, against the newest
// maxVerifyVersions versions; the one that verifies is the call's.
func (s *Server) verifyMac(ctx context.Context, c *call, req *kmsv1.VerifyMacRequest) (*kmsv1.VerifyMacResponse, error) {
	if err := checkBytes("message", req.Message, 1, MaxPlaintext); err != nil {
		return nil, err
	}
	if err := checkBytes("mac", req.Mac, 1, 64); err != nil {
		return nil, err
	}
	key, err := s.authorizedKey(ctx, c, policy.ActionVerifyMac, nil)
	if err != nil {
		return nil, err
	}
	spec, err := macKey(key, req.MacAlgorithm, c.at)
	if err != nil {
		return nil, err
	}
	var trial versionTrial
	for v := key.CurrentVersion; v >= 1 && v+maxVerifyVersions > key.CurrentVersion; v-- {
		vk, err := s.Keys.VersionKey(ctx, key, v)
		if !trial.loaded(ctx, key, v, err) {
			continue
		}
		if spec.VerifyMAC(vk, req.Message, req.Mac) {
			c.use(key, v)
			return &kmsv1.VerifyMacResponse{MacValid: true, KeyId: key.KeyIDString, KeyVersion: v, MacAlgorithm: string(spec.Algorithm)}, nil
		}
	}
	return nil, trial.none(newError(codes.InvalidArgument, ReasonInvalidMac, "the MAC does not verify for this message and key"))
}

// macKey checks that a key can make and verify MACs with alg (default:
// the key spec's algorithm) at now.
func macKey(key *keycache.Key, alg string, now time.Time) (kmscrypto.HMACKeySpec, error) {
	row, _ := keyspec.Lookup(string(key.KeySpec))
	spec, ok := row.HMAC()
	if err := checkKey(key, kmsv1alpha1.KeyUsageGenerateVerifyMAC, true, now); err != nil {
		return spec, err
	}
	switch {
	case !ok:
		return spec, newError(codes.InvalidArgument, ReasonInvalidKeyUsage, "key %s/%s is not an HMAC key", key.Namespace, key.Name)
	case alg != "" && alg != string(spec.Algorithm):
		return spec, errValidation("mac_algorithm must be %s for a %s key, got %q", spec.Algorithm, key.KeySpec, alg)
	}
	return spec, nil
}
