package dataplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/controller-runtime/pkg/log"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	"github.com/kubekms/kubekms/internal/audit"
	"github.com/kubekms/kubekms/internal/authn"
	"github.com/kubekms/kubekms/internal/keyring"
	"github.com/kubekms/kubekms/internal/quota"
)

const servicePrefix = "/" + "kubekms.v1.KeyManagementService" + "/"

// Metrics of the data plane.
type Metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	throttled *prometheus.CounterVec
}

// NewMetrics creates the data-plane metrics and registers them.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubekms_dataplane_requests_total",
			Help: "Data-plane requests by operation and gRPC code.",
		}, []string{"operation", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kubekms_dataplane_request_duration_seconds",
			Help:    "Data-plane request latency by operation.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16), // 50µs .. ~1.6s
		}, []string{"operation"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubekms_quota_throttled_requests_total",
			Help: "Requests refused for quota, by caller namespace and operation class.",
		}, []string{"namespace", "class"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.throttled} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Options configure the gRPC server.
type Options struct {
	// TLS is the server's TLS configuration; nil serves plaintext, for local
	// development only.
	TLS           *tls.Config
	Authenticator *authn.Authenticator
	Metrics       *Metrics
	// Quota throttles callers; nil turns quotas off.
	Quota *quota.Limiter
	// Audit receives one record per call; nil writes none. With
	// AuditFailClosed a call whose record cannot be written is refused.
	Audit           audit.Sink
	AuditFailClosed bool
	// Usage summarises calls as Events on the Keys; nil turns it off.
	Usage *audit.Usage
	// Keys attributes calls refused before the handler ran (throttled) to
	// the key they named.
	Keys *keyring.Keyring
}

// NewGRPCServer returns a gRPC server with the KeyManagementService, gRPC
// health and server reflection (so grpcurl works).
func NewGRPCServer(kms *Server, o Options) *grpc.Server {
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(o.observe, o.record, o.authenticate, o.throttle),
		grpc.MaxRecvMsgSize(64 << 10),
	}
	if o.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(o.TLS)))
	}
	srv := grpc.NewServer(opts...)
	kmsv1.RegisterKeyManagementServiceServer(srv, kms)
	hs := health.NewServer()
	hs.SetServingStatus(kmsv1.KeyManagementService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv
}

// authenticate turns the bearer token of a KeyManagementService call into a
// principal in the context. Health and reflection need no token.
func (o Options) authenticate(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !strings.HasPrefix(info.FullMethod, servicePrefix) {
		return handler(ctx, req)
	}
	c := callOf(ctx)
	p, err := o.Authenticator.Authenticate(ctx, bearer(ctx), c.from)
	if err != nil {
		var throttled *authn.ThrottledError
		switch {
		case errors.Is(err, authn.ErrUnauthenticated):
			log.FromContext(ctx).V(1).Info("Refused a call", "method", info.FullMethod, "reason", err.Error())
			return nil, errUnauthenticated()
		case errors.As(err, &throttled):
			log.FromContext(ctx).V(1).Info("Throttled a call before authentication", "method", info.FullMethod, "reason", err.Error())
			return nil, errReviewThrottled(throttled)
		}
		log.FromContext(ctx).Error(err, "Could not authenticate")
		return nil, errInternal()
	}
	c.principal = p
	c.record.Principal = audit.Principal{Username: p.Username, UID: p.UID, Groups: p.Groups, ServiceAccount: p.ServiceAccount, PodName: p.PodName, PodUID: p.PodUID}
	c.record.SourceNamespace = p.Namespace
	return handler(ctx, req)
}

// throttle applies the caller namespace's quota.
func (o Options) throttle(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if o.Quota == nil || !strings.HasPrefix(info.FullMethod, servicePrefix) {
		return handler(ctx, req)
	}
	op := info.FullMethod[len(servicePrefix):]
	ns := principal(ctx).Namespace
	c := callOf(ctx)
	c.class = o.classOf(ctx, op, req)
	d := o.Quota.Allow(ns, c.class, op)
	if !d.Allowed {
		if o.Metrics != nil {
			o.Metrics.throttled.WithLabelValues(ns, string(d.Class)).Inc()
		}
		return nil, errThrottled(ns, string(d.Class), d.RetryAfter)
	}
	return handler(ctx, req)
}

// classOf is an operation's quota class: an operation that names a key
// counts in its key's class (rsa, ecc or symmetric, by key spec), whatever
// the operation, so an RSA Encrypt or Decrypt is not a cheap symmetric call;
// an operation that names none (GenerateRandom, a Decrypt with only a
// ciphertext, whose header names a symmetric key) counts as symmetric. The
// key is resolved here once for the call; the handler uses it.
func (o Options) classOf(ctx context.Context, op string, req any) quota.Class {
	ref := requestedKey(req)
	if ref == "" || o.Keys == nil {
		return quota.Symmetric
	}
	c := callOf(ctx)
	k, err := o.Keys.Resolve(c.principal.Namespace, ref)
	if err != nil {
		return quota.Symmetric
	}
	c.resolved, c.resolvedRef = k, ref
	return quota.Class(keyClass(string(k.KeySpec)))
}

// record gives every KeyManagementService call its state and writes its
// audit record before the response (and any plaintext) leaves. With
// AuditFailClosed, a call whose record cannot be written is refused.
func (o Options) record(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !strings.HasPrefix(info.FullMethod, servicePrefix) {
		return handler(ctx, req)
	}
	op := info.FullMethod[len(servicePrefix):]
	rec := &audit.Record{
		AuditVersion: audit.Version, EventTime: time.Now().UTC(), RequestID: audit.NewRequestID(), EventName: op,
		RequestedKey: truncate(requestedKey(req), MaxKeyIDLength), EncryptionContextKeys: contextKeys(req),
	}
	c := &call{principal: &authn.Principal{}, record: rec}
	if p, ok := peer.FromContext(ctx); ok {
		rec.SourceAddress = p.Addr.String()
		c.from = p.Addr
	}
	// Key references are bounded before any authentication work.
	err := checkKeyIDs(req)
	var resp any
	if err == nil {
		resp, err = handler(withCall(ctx, c), req)
	}
	rec.Outcome, rec.ErrorCode = outcome(err)
	if rec.Key == nil && rec.RequestedKey != "" && c.principal.Username != "" && o.Keys != nil {
		// Refused before the handler resolved it (throttled): name the key
		// the caller asked for, so the audit record and the Key's Events show it.
		key := c.resolved
		if key == nil {
			key, _ = o.Keys.Resolve(c.principal.Namespace, rec.RequestedKey)
		}
		if key != nil {
			rec.Key = &audit.KeyRef{Namespace: key.Namespace, Name: key.Name, KeyID: key.KeyIDString}
			c.keyUID = key.UID
		}
	}
	if o.Audit != nil {
		if werr := o.Audit.Write(rec); werr != nil {
			log.FromContext(ctx).Error(werr, "Could not write an audit record", "requestID", rec.RequestID, "failClosed", o.AuditFailClosed)
			if o.AuditFailClosed {
				return nil, errAuditUnavailable()
			}
		}
	}
	if o.Usage != nil {
		class := c.class
		if class == "" { // not throttled (quotas off, or refused before)
			class = o.classOf(withCall(ctx, c), op, req)
		}
		o.Usage.Observe(rec, c.keyUID, string(class))
	}
	return resp, err
}

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

// MaxKeyIDLength bounds key_id, source_key_id and destination_key_id, as
// AWS bounds KeyId.
const MaxKeyIDLength = 2048

// checkKeyIDs refuses a key reference longer than MaxKeyIDLength, naming
// the field. It is cheap, so it runs before authentication.
func checkKeyIDs(req any) error {
	check := func(field, v string) error {
		if len(v) > MaxKeyIDLength {
			return errValidation("%s must be at most %d bytes, got %d", field, MaxKeyIDLength, len(v))
		}
		return nil
	}
	if r, ok := req.(interface{ GetKeyId() string }); ok {
		return check("key_id", r.GetKeyId())
	}
	if r, ok := req.(*kmsv1.ReEncryptRequest); ok {
		if err := check("source_key_id", r.GetSourceKeyId()); err != nil {
			return err
		}
		return check("destination_key_id", r.GetDestinationKeyId())
	}
	return nil
}

// truncate cuts s to at most n bytes, on a UTF-8 boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

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

// observe counts requests and measures latency.
func (o Options) observe(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if o.Metrics == nil || !strings.HasPrefix(info.FullMethod, servicePrefix) {
		return handler(ctx, req)
	}
	start := time.Now()
	resp, err := handler(ctx, req)
	op := info.FullMethod[len(servicePrefix):]
	o.Metrics.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	o.Metrics.requests.WithLabelValues(op, status.Code(err).String()).Inc()
	return resp, err
}

func bearer(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
			return strings.TrimSpace(v[7:])
		}
	}
	return ""
}

// Runnable serves the data plane as a manager runnable on every replica,
// not only the leader.
type Runnable struct {
	Addr   string
	Server *grpc.Server
	// Listening, if set, receives the bound address once serving.
	Listening chan<- net.Addr
	// Synced, if set, must say true before the server listens: a replica
	// that has not read every key, policy and grant serves nothing.
	Synced func() bool
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every
// replica serves.
func (r *Runnable) NeedLeaderElection() bool { return false }

// Start serves until ctx ends, then stops gracefully (bounded).
func (r *Runnable) Start(ctx context.Context) error {
	for r.Synced != nil && !r.Synced() {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
	lis, err := net.Listen("tcp", r.Addr)
	if err != nil {
		return fmt.Errorf("data plane listen on %s: %w", r.Addr, err)
	}
	log.FromContext(ctx).Info("Serving the data plane", "address", lis.Addr().String())
	if r.Listening != nil {
		r.Listening <- lis.Addr()
	}
	errc := make(chan error, 1)
	go func() { errc <- r.Server.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { r.Server.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		r.Server.Stop()
	}
	return nil
}
