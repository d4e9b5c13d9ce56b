package dataplane

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kubekms/kubekms/internal/authn"
	"github.com/kubekms/kubekms/internal/keycache"
	"github.com/kubekms/kubekms/internal/seal"
)

// ErrorDomain is the ErrorInfo domain of every kubekms error.
const ErrorDomain = "kms.kubekms.io"

// Stable reasons (AWS exception names) carried in ErrorInfo.
const (
	ReasonUnauthenticated   = "UnauthenticatedException"
	ReasonAccessDenied      = "AccessDeniedException"
	ReasonDisabled          = "DisabledException"
	ReasonKeyUnavailable    = "KeyUnavailableException"
	ReasonValidation        = "ValidationException"
	ReasonInvalidCiphertext = "InvalidCiphertextException"
	ReasonIncorrectKey      = "IncorrectKeyException"
	ReasonInvalidKeyUsage   = "InvalidKeyUsageException"
	ReasonInternal          = "KMSInternalException"
	// ReasonInvalidState: kubekms cannot use key material now because its
	// root of trust is unavailable (docs/root-of-trust.md); the material
	// itself may be fine.
	ReasonInvalidState = "KMSInvalidStateException"
	ReasonThrottling   = "ThrottlingException"
	// ReasonUnsupportedOperation: the key does not take the operation
	// (GetParametersForImport on a key that is not origin External).
	ReasonUnsupportedOperation = "UnsupportedOperationException"
	// ReasonConflict: a restore collides with what the cluster holds (a
	// key or version of the same identity, a namespace that is missing).
	ReasonConflict = "ConflictException"
)

// invalidCiphertextMessage is the one message of every Decrypt failure.
const invalidCiphertextMessage = "the ciphertext does not decrypt: it is malformed or altered, the encryption context differs, or it belongs to another key"

func newError(code codes.Code, reason, format string, args ...any) error {
	st := status.New(code, fmt.Sprintf(format, args...))
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain}); err == nil {
		st = withInfo
	}
	return st.Err()
}

func errUnauthenticated() error {
	return newError(codes.Unauthenticated, ReasonUnauthenticated,
		"a valid ServiceAccount token with audience %q is required in the authorization header (Bearer)", "kubekms")
}

func errAccessDenied(username, action, ref string) error {
	return newError(codes.PermissionDenied, ReasonAccessDenied,
		"%s is not allowed to %s with key %q, or the key does not exist", username, action, ref)
}

func errInvalidCiphertext() error {
	return newError(codes.InvalidArgument, ReasonInvalidCiphertext, invalidCiphertextMessage)
}

func errValidation(format string, args ...any) error {
	return newError(codes.InvalidArgument, ReasonValidation, format, args...)
}

func errInternal() error {
	return newError(codes.Unavailable, ReasonInternal, "kubekms could not complete the request; retry with backoff")
}

// errRootUnavailable answers a call whose key material cannot be unsealed
// because the root of trust is gone, unreachable or not the right one. The
// reason itself (which Secret, HSM or AWS key) is for the operators of
// kubekms, in the manager's readiness, log, Events and RootOfTrust status,
// not for every caller.
func errRootUnavailable() error {
	return newError(codes.Unavailable, ReasonInvalidState,
		"kubekms cannot unseal key material now: its root of trust is unavailable, and its operators are told what to restore (RootOfTrust status, Events, readiness); retry with backoff")
}

// errMaterial answers a call whose key version's material could not be
// loaded (err from the key cache), after logging why.
func errMaterial(ctx context.Context, key *keycache.Key, version uint32, err error) error {
	log.FromContext(ctx).Error(err, "Could not load key material", "keyID", key.KeyIDString, "version", version)
	if rootUnavailable(err) {
		return errRootUnavailable()
	}
	return errInternal()
}

// rootUnavailable: err says the root of trust could not unseal (gone,
// unreachable or the wrong one), not that the material is missing or bad.
func rootUnavailable(err error) bool {
	return errors.Is(err, seal.ErrRootUnavailable) || errors.Is(err, seal.ErrWrongRoot)
}

// missingVersion: a version that no longer exists (destroyed), which
// decrypts and verifies nothing.
func missingVersion(err error) bool {
	return apierrors.IsNotFound(err) || errors.Is(err, keycache.ErrVersionNotFound)
}

// versionTrial tries the versions a call may need (a signature, a MAC or an
// RSA ciphertext does not say which version made it). A version that no
// longer exists is skipped; one whose material cannot be loaded now is
// remembered and the others still tried, so material already in memory
// keeps serving. When none fits, the answer is that failure (UNAVAILABLE),
// never "does not verify" for a value that might.
type versionTrial struct {
	failed error
}

// loaded reports whether version's material (err from loading it) can be
// tried.
func (t *versionTrial) loaded(ctx context.Context, key *keycache.Key, version uint32, err error) bool {
	if err == nil {
		return true
	}
	if !missingVersion(err) && t.failed == nil {
		t.failed = errMaterial(ctx, key, version, err)
	}
	return false
}

// none is the answer when no version fitted: notFitting, unless some
// version could not be tried.
func (t *versionTrial) none(notFitting error) error {
	if t.failed != nil {
		return t.failed
	}
	return notFitting
}

func errThrottled(namespace string, class string, retryAfter time.Duration) error {
	st := status.New(codes.ResourceExhausted, fmt.Sprintf(
		"namespace %q is over its %s request quota; retry after %s", namespace, class, retryAfter.Round(time.Millisecond)))
	if withInfo, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: ReasonThrottling, Domain: ErrorDomain},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)},
	); err == nil {
		st = withInfo
	}
	return st.Err()
}

// errReviewThrottled refuses a call whose token would need a TokenReview
// beyond the limits before authentication.
func errReviewThrottled(t *authn.ThrottledError) error {
	who := "all clients together"
	if t.Peer != "" {
		who = "client address " + t.Peer
	}
	st := status.New(codes.ResourceExhausted, fmt.Sprintf(
		"too many calls with tokens kubekms has not verified yet from %s (each costs a TokenReview); reuse your token, or retry after %s",
		who, t.RetryAfter.Round(time.Millisecond)))
	if withInfo, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: ReasonThrottling, Domain: ErrorDomain},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(t.RetryAfter)},
	); err == nil {
		st = withInfo
	}
	return st.Err()
}

// errNoCall refuses a call whose handler ran without its call state: a
// bug, not a condition to retry through.
func errNoCall() error {
	return newError(codes.Internal, ReasonInternal, "kubekms could not complete the request: an internal error, logged by the data plane")
}

func errAuditUnavailable() error {
	return newError(codes.Unavailable, ReasonInternal, "the audit log cannot be written, and kubekms is set to refuse requests it cannot audit (fail closed); retry with backoff")
}

// ReasonOf returns the ErrorInfo reason of an error made by this package,
// or "" when it has none.
func ReasonOf(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == ErrorDomain {
			return info.Reason
		}
	}
	return ""
}
