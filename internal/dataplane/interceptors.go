package dataplane

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/log"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	"github.com/kubekms/kubekms/internal/audit"
	"github.com/kubekms/kubekms/internal/authn"
	"github.com/kubekms/kubekms/internal/keycache"
	"github.com/kubekms/kubekms/internal/keyspec"
	"github.com/kubekms/kubekms/internal/quota"
)

const servicePrefix = "/" + "kubekms.v1.KeyManagementService" + "/"

// interceptor takes every KeyManagementService call through the steps
// before and after its handler. It is one interceptor rather than a chain,
// so the order of the steps reads in one place (intercept) and costs no
// closures per call. Health and reflection pass through untouched.
type interceptor struct {
	o     Options
	keys  *keycache.Cache
	clock clock.PassiveClock
}

// intercept serves one call: make the call value, run the steps up to the
// handler (serve), write the audit record, count the call.
func (i *interceptor) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	op, ok := strings.CutPrefix(info.FullMethod, servicePrefix)
	if !ok {
		return handler(ctx, req)
	}
	start := time.Now()
	c := newCall(ctx, op, req, i.clock.Now())
	resp, err := i.serve(ctx, c, info.FullMethod, req, handler)
	resp, err = i.audit(ctx, c, resp, err)
	i.o.Metrics.observe(op, start, err)
	return resp, err
}

// serve bounds the key references, authenticates the caller, resolves the
// key the request names, applies the quota, and runs the handler with the
// call. Each step refuses the call with the error its caller sees.
func (i *interceptor) serve(ctx context.Context, c *call, method string, req any, handler grpc.UnaryHandler) (any, error) {
	// Key references are bounded before any authentication work.
	if err := checkKeyIDs(req); err != nil {
		return nil, err
	}
	if err := i.authenticate(ctx, c, method); err != nil {
		return nil, err
	}
	// The call's time is taken again once the caller is known: a
	// TokenReview can take a while, and what expires (grants, imported
	// material, import tokens) is judged when the decision is taken, not
	// when the request arrived.
	c.at = i.clock.Now()
	i.resolve(c)
	if err := i.throttle(c); err != nil {
		return nil, err
	}
	return handler(withCall(ctx, c), req)
}

// authenticate turns the call's bearer token into its principal.
func (i *interceptor) authenticate(ctx context.Context, c *call, method string) error {
	p, err := authenticate(ctx, i.o.Authenticator, c.from, method)
	if err != nil {
		return err
	}
	c.principal = p
	return nil
}

// authenticate turns the bearer token of a call of method into its
// principal, or the error its caller sees: every service of the data plane
// authenticates this way.
func authenticate(ctx context.Context, a *authn.Authenticator, from net.Addr, method string) (*authn.Principal, error) {
	p, err := a.Authenticate(ctx, bearer(ctx), from)
	if err != nil {
		var throttled *authn.ThrottledError
		switch {
		case errors.Is(err, authn.ErrUnauthenticated):
			log.FromContext(ctx).V(1).Info("Refused a call", "method", method, "reason", err.Error())
			return nil, errUnauthenticated()
		case errors.As(err, &throttled):
			log.FromContext(ctx).V(1).Info("Throttled a call before authentication", "method", method, "reason", err.Error())
			return nil, errReviewThrottled(throttled)
		}
		log.FromContext(ctx).Error(err, "Could not authenticate")
		return nil, errInternal()
	}
	return p, nil
}

// resolve finds the key the request names, once for the whole call, and
// the call's quota class: an operation that names a key counts in its
// key's class (rsa, ecc or symmetric, by key spec), whatever the
// operation, so an RSA Encrypt or Decrypt is not a cheap symmetric call; an
// operation that names none (GenerateRandom, a Decrypt with only a
// ciphertext, whose header names a symmetric key) or names no key that
// exists counts as symmetric.
func (i *interceptor) resolve(c *call) {
	c.class = quota.Symmetric
	if c.ref == "" {
		return
	}
	if k, err := i.keys.Resolve(c.principal.Namespace, c.ref); err == nil {
		c.named = k
		c.class = quota.Class(keyspec.QuotaClassOf(string(k.KeySpec)))
	}
}

// throttle applies the caller namespace's quota to the call's class.
func (i *interceptor) throttle(c *call) error {
	if i.o.Quota == nil {
		return nil
	}
	ns := c.principal.Namespace
	d := i.o.Quota.Allow(ns, c.class, c.op)
	if !d.Allowed {
		i.o.Metrics.refused(ns, d.Class)
		return errThrottled(ns, string(d.Class), d.RetryAfter)
	}
	return nil
}

// audit writes the call's audit record before the response (and any
// plaintext) leaves, and counts the call in the usage summary. With
// AuditFailClosed, a call whose record cannot be written is refused.
func (i *interceptor) audit(ctx context.Context, c *call, resp any, err error) (any, error) {
	rec := c.auditRecord(err)
	if i.o.Audit != nil {
		if werr := i.o.Audit.Write(rec); werr != nil {
			log.FromContext(ctx).Error(werr, "Could not write an audit record", "requestID", rec.RequestID, "failClosed", i.o.AuditFailClosed)
			if i.o.AuditFailClosed {
				return nil, errAuditUnavailable()
			}
		}
	}
	if i.o.Usage != nil {
		var uid types.UID
		if k := c.recordedKey(); k != nil {
			uid = k.UID
		}
		i.o.Usage.Observe(rec, uid, string(c.class))
	}
	return resp, err
}

// outcome is the audit outcome and error code of a call that ended with err.
func outcome(err error) (string, string) {
	if err == nil {
		return audit.Allowed, ""
	}
	reason := ReasonOf(err)
	switch reason {
	case ReasonAccessDenied, ReasonUnauthenticated, ReasonThrottling:
		return audit.Denied, reason
	case "":
		return audit.Error, status.Code(err).String()
	}
	return audit.Error, reason
}

// bearer is the call's bearer token. It reads only the authorization
// header (metadata.FromIncomingContext would copy every header).
func bearer(ctx context.Context) string {
	for _, v := range metadata.ValueFromIncomingContext(ctx, "authorization") {
		if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
			return strings.TrimSpace(v[7:])
		}
	}
	return ""
}

// requestedKey is the key a request names: key_id, or ReEncrypt's
// source_key_id.
func requestedKey(req any) string {
	if r, ok := req.(interface{ GetKeyId() string }); ok {
		return r.GetKeyId()
	}
	if r, ok := req.(*kmsv1.ReEncryptRequest); ok {
		return r.GetSourceKeyId()
	}
	return ""
}

// contextKeys lists the encryption context's keys, never its values.
func contextKeys(req any) []string {
	var maps []map[string]string
	switch r := req.(type) {
	case interface{ GetEncryptionContext() map[string]string }:
		maps = append(maps, r.GetEncryptionContext())
	case *kmsv1.ReEncryptRequest:
		maps = append(maps, r.GetSourceEncryptionContext(), r.GetDestinationEncryptionContext())
	}
	var keys []string
	for _, m := range maps {
		for k := range m {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}
