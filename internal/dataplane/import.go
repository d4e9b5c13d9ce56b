package dataplane

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
	"sigs.k8s.io/controller-runtime/pkg/log"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/policy"
)

// wrappingKeySpecRSA4096 is the only wrapping key spec: the controller
// makes RSA 4096 wrapping keys.
const wrappingKeySpecRSA4096 = "RSA_4096"

// GetParametersForImport implements KeyManagementService.
func (s *Server) GetParametersForImport(ctx context.Context, req *kmsv1.GetParametersForImportRequest) (*kmsv1.GetParametersForImportResponse, error) {
	return handle(ctx, req, s.getParametersForImport)
}

// getParametersForImport returns the current wrapping public key and
// import token of an External key. The controller makes and renews them;
// this only reads them. The token is the credential for an import, so it is
// handed out only to callers allowed GetParametersForImport on the key,
// never published in the Key's status. Parameters past their expiry at the
// call's time are not handed out.
func (s *Server) getParametersForImport(ctx context.Context, c *call, req *kmsv1.GetParametersForImportRequest) (*kmsv1.GetParametersForImportResponse, error) {
	switch req.WrappingAlgorithm {
	case "", kmsv1alpha1.WrappingRSAESOAEPSHA256, kmsv1alpha1.WrappingRSAAESKeyWrapSHA256:
	default:
		return nil, errValidation("wrapping_algorithm must be %s or %s, got %q",
			kmsv1alpha1.WrappingRSAESOAEPSHA256, kmsv1alpha1.WrappingRSAAESKeyWrapSHA256, req.WrappingAlgorithm)
	}
	if req.WrappingKeySpec != "" && req.WrappingKeySpec != wrappingKeySpecRSA4096 {
		return nil, errValidation("wrapping_key_spec must be %s, got %q", wrappingKeySpecRSA4096, req.WrappingKeySpec)
	}
	key, err := s.authorizedKey(ctx, c, policy.ActionGetParametersForImport, nil)
	if err != nil {
		return nil, err
	}
	if key.Origin != kmsv1alpha1.KeyOriginExternal {
		return nil, newError(codes.FailedPrecondition, ReasonUnsupportedOperation,
			"key %s/%s has origin %s: only origin External keys take imported material", key.Namespace, key.Name, originOf(key.Origin))
	}
	if s.ImportParameters == nil {
		return nil, errInternal()
	}
	p, err := s.ImportParameters(ctx, key.KeyIDString)
	if err != nil {
		log.FromContext(ctx).Error(err, "Could not read import parameters", "keyID", key.KeyIDString)
		return nil, errInternal()
	}
	if p == nil || !c.at.Before(p.ExpiresAt) {
		return nil, newError(codes.Unavailable, ReasonKeyUnavailable,
			"key %s/%s has no current import parameters yet (the manager makes them); retry with backoff", key.Namespace, key.Name)
	}
	return &kmsv1.GetParametersForImportResponse{
		KeyId:             key.KeyIDString,
		ImportToken:       []byte(p.Token),
		PublicKey:         p.PublicKey,
		ParametersValidTo: timestamppb.New(p.ExpiresAt),
	}, nil
}

// originOf names an origin, the default when unset.
func originOf(o kmsv1alpha1.KeyOrigin) kmsv1alpha1.KeyOrigin {
	if o == "" {
		return kmsv1alpha1.KeyOriginGenerated
	}
	return o
}
