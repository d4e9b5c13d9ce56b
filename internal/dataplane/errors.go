package dataplane

import (
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kubekms/kubekms/internal/authn"
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
	ReasonThrottling        = "ThrottlingException"
	// ReasonUnsupportedOperation: the key does not take the operation
	// (GetParametersForImport on a key that is not origin External).
	ReasonUnsupportedOperation = "UnsupportedOperationException"
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
