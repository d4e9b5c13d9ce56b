package dataplane

import (
	"context"
	"errors"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kubekms/kubekms/internal/audit"
	"github.com/kubekms/kubekms/internal/authn"
	"github.com/kubekms/kubekms/internal/keycache"
	"github.com/kubekms/kubekms/internal/quota"
)

// call is one KeyManagementService request on its way through the data
// plane. The interceptor makes it (what was asked, by whom, when, and the
// key the request names, resolved once before the quota) and the handler
// gets it explicitly; the handler adds what it did (the key and version
// that did the work, ReEncrypt's destination, the decision); the
// interceptor turns it into the audit record. Quota, handler and audit read
// this one value, so they agree on the caller, the key and the time.
//
// Only the interceptor and the handler of the request use a call, one after
// the other, so it needs no lock.
type call struct {
	// Set by the interceptor before the handler runs; the handler only
	// reads them.

	// op is the operation, e.g. "Encrypt".
	op string
	// at is the call's time, read from the injected clock when the call
	// arrives and again once the caller is authenticated (a TokenReview may
	// take a while): every time decision of the call (a grant's expiresAt,
	// imported material's validTo, import parameters' expiry) is made at
	// at, and it is the audit record's eventTime, so a record never shows a
	// decision at a time other than the one it was judged at.
	at time.Time
	// from is the client's address; nil when unknown.
	from net.Addr
	// principal is the authenticated caller; nil until authentication
	// succeeded, never nil in a handler.
	principal *authn.Principal
	// ref is the key the request names (key_id, or ReEncrypt's
	// source_key_id); "" when it names none.
	ref string
	// named is ref resolved in the caller's namespace, once, before the
	// quota; nil when ref is "" or names no key.
	named *keycache.Key
	// class is the quota class of the call: named's, or symmetric.
	class quota.Class

	// Set by the handler.

	// key and version did the work; for ReEncrypt the source. key is nil
	// until the handler found the key the call uses.
	key     *keycache.Key
	version uint32
	// destination is ReEncrypt's destination key, once authorized.
	destination *keycache.Key
	// decidedBy names the policy statement, grant or RBAC rule of the last
	// authorization: the one that refused the call or, for an allowed
	// ReEncrypt, the destination's.
	decidedBy string

	// record is the audit record: its request fields are set with the
	// call, the rest by auditRecord. keyRef and destinationRef are its key
	// references, kept here so the record costs no allocations of its own.
	record                 audit.Record
	keyRef, destinationRef audit.KeyRef
}

// newCall starts the call of operation op with request req, at now.
func newCall(ctx context.Context, op string, req any, now time.Time) *call {
	c := &call{op: op, at: now, ref: requestedKey(req)}
	c.record = audit.Record{
		AuditVersion: audit.Version, RequestID: audit.NewRequestID(), EventName: op,
		RequestedKey: truncate(c.ref, MaxKeyIDLength), EncryptionContextKeys: contextKeys(req),
	}
	if p, ok := peer.FromContext(ctx); ok {
		c.record.SourceAddress = p.Addr.String()
		c.from = p.Addr
	}
	return c
}

// use records that key, at version, did the call's work.
func (c *call) use(key *keycache.Key, version uint32) { c.key, c.version = key, version }

// recordedKey is the key the audit record names: the one that did the
// work or, for a call refused before the handler found it (throttled, or an
// invalid request), the one the request named.
func (c *call) recordedKey() *keycache.Key {
	if c.key != nil {
		return c.key
	}
	return c.named
}

// auditPrincipal is who called, as the audit record names them.
func auditPrincipal(p *authn.Principal) audit.Principal {
	return audit.Principal{Username: p.Username, UID: p.UID, Groups: p.Groups, ServiceAccount: p.ServiceAccount, PodName: p.PodName, PodUID: p.PodUID}
}

// auditRecord completes the call's audit record with the call's outcome
// err.
func (c *call) auditRecord(err error) *audit.Record {
	r := &c.record
	r.EventTime = c.at.UTC()
	r.Outcome, r.ErrorCode = outcome(err)
	if p := c.principal; p != nil {
		r.Principal, r.SourceNamespace = auditPrincipal(p), p.Namespace
	}
	if k := c.recordedKey(); k != nil {
		c.keyRef = audit.KeyRef{Namespace: k.Namespace, Name: k.Name, KeyID: k.KeyIDString}
		if c.key != nil {
			c.keyRef.Version = c.version
		}
		r.Key = &c.keyRef
	}
	if d := c.destination; d != nil {
		c.destinationRef = audit.KeyRef{Namespace: d.Namespace, Name: d.Name, KeyID: d.KeyIDString, Version: d.CurrentVersion}
		r.DestinationKey = &c.destinationRef
	}
	r.DecidedBy = c.decidedBy
	return r
}

type callKey struct{}

// withCall gives ctx the call, for the handler's gRPC adapter (handle).
func withCall(ctx context.Context, c *call) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}

// errNoCallState is logged when a handler runs without its call.
var errNoCallState = errors.New("a KeyManagementService handler ran without the state of its call (not through the data plane's interceptor)")

// callFrom is the call the interceptor made for the request of ctx. A
// handler reached without one (or before authentication) is a programming
// error: it is refused with codes.Internal and logged, never served with
// an empty call whose audit record would be lost.
func callFrom(ctx context.Context) (*call, error) {
	c, _ := ctx.Value(callKey{}).(*call)
	if c == nil || c.principal == nil {
		method, _ := grpc.Method(ctx)
		log.FromContext(ctx).Error(errNoCallState, "Refused a call", "method", method)
		return nil, errNoCall()
	}
	return c, nil
}

// handle is every handler's gRPC adapter: it takes the request's call from
// ctx and passes it to the operation explicitly.
func handle[Req, Resp any](ctx context.Context, req Req, op func(context.Context, *call, Req) (Resp, error)) (Resp, error) {
	c, err := callFrom(ctx)
	if err != nil {
		var none Resp
		return none, err
	}
	return op(ctx, c, req)
}
