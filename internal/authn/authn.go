// Package authn authenticates data-plane callers with TokenReview.
//
// A token passes only if the API server authenticates it for our audience
// and names that audience in status.audiences (an empty list means "the API
// server's own audience" and is refused). Results are cached by the token's
// SHA-256 for a short, bounded time that never runs past the token's expiry.
// Failures are cached briefly in a cache of their own, so a flood of garbage
// tokens cannot evict the good ones. A token in neither cache costs a
// TokenReview; those are rate limited per client address and in total, so
// garbage tokens cannot flood the API server either. The token itself is
// never stored or logged.
package authn

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/cache"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	"k8s.io/utils/clock"
	"k8s.io/utils/lru"
)

// DefaultAudience is the audience a kubekms token must carry.
const DefaultAudience = "kubekms"

// Extra keys the API server puts in a bound ServiceAccount token's user info.
const (
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
)

// Principal is an authenticated caller.
type Principal struct {
	Username string
	UID      string
	Groups   []string
	Extra    map[string][]string
	// Namespace and ServiceAccount are set for ServiceAccount tokens; the
	// caller's namespace comes only from here.
	Namespace      string
	ServiceAccount string
	PodName        string
	PodUID         string
}

// ErrUnauthenticated is returned for every token that does not pass; the
// wrapped message says why, for the audit record, never the token.
var ErrUnauthenticated = errors.New("unauthenticated")

// ErrThrottled is wrapped by a *ThrottledError: the token was in no cache
// and no TokenReview could be spent on it now.
var ErrThrottled = errors.New("too many token reviews")

// ThrottledError says which limit refused a TokenReview and when to retry.
type ThrottledError struct {
	// Peer is the client address whose limit was reached; "" when it was
	// the limit of all clients together.
	Peer       string
	RetryAfter time.Duration
}

func (e *ThrottledError) Error() string {
	if e.Peer == "" {
		return fmt.Sprintf("%v: the limit for all clients is reached; retry after %s", ErrThrottled, e.RetryAfter)
	}
	return fmt.Sprintf("%v: the limit for client %s is reached; retry after %s", ErrThrottled, e.Peer, e.RetryAfter)
}

func (e *ThrottledError) Unwrap() error { return ErrThrottled }

// Authenticator validates bearer tokens.
type Authenticator struct {
	reviews  authenticationv1client.TokenReviewInterface
	audience string
	clock    clock.PassiveClock
	// cache holds successes, denied failures: separate, so failures
	// cannot evict successes.
	cache, denied *cache.LRUExpireCache
	ttl           time.Duration
	denyTTL       time.Duration

	// global and peers limit TokenReviews (cache misses only).
	global    *rate.Limiter
	peerRate  rate.Limit
	peerBurst int
	peersMu   sync.Mutex
	peers     *lru.Cache // peer IP -> *rate.Limiter

	// flights are the TokenReviews in progress, by token hash: a call whose
	// token is being reviewed waits for that review instead of starting
	// (and paying the limiter for) its own.
	flightsMu sync.Mutex
	flights   map[[sha256.Size]byte]*flight
}

// flight is one TokenReview in progress and, once done is closed, its
// answer.
type flight struct {
	done chan struct{}
	p    *Principal
	err  error
}

// Options tune an Authenticator.
type Options struct {
	// Audience required in status.audiences. Default "kubekms".
	Audience string
	// TTL bounds how long a success is cached (default 30s), so a revoked
	// token (its pod or ServiceAccount deleted) is refused within TTL; never
	// past the token's expiry. DenyTTL is how long a failure is cached (default 5s).
	TTL, DenyTTL time.Duration
	// MaxEntries bounds the cache of successes and MaxDeniedEntries the
	// separate cache of failures (defaults 10000 each).
	MaxEntries, MaxDeniedEntries int

	// ReviewRate and ReviewBurst bound the TokenReviews of all clients
	// together, per second (defaults 200 and 400); PeerReviewRate and
	// PeerReviewBurst those of one client IP address (defaults 20 and 40).
	// A burst left zero is two seconds' worth.
	// Only tokens in neither cache cost a review, so a client that reuses
	// its token is never limited here. A negative rate means no limit.
	// MaxPeers bounds the client addresses remembered (default 10000,
	// least recently seen forgotten first).
	ReviewRate, PeerReviewRate   float64
	ReviewBurst, PeerReviewBurst int
	MaxPeers                     int

	Clock clock.Clock
}

// Default TokenReview limits, per second (bursts are two seconds' worth).
const (
	DefaultReviewRate     = 200
	DefaultPeerReviewRate = 20
)

// New returns an Authenticator that asks the API server through reviews.
func New(reviews authenticationv1client.TokenReviewInterface, o Options) *Authenticator {
	o.Audience = cmp.Or(o.Audience, DefaultAudience)
	o.TTL = cmp.Or(o.TTL, 30*time.Second)
	o.DenyTTL = cmp.Or(o.DenyTTL, 5*time.Second)
	o.MaxEntries = cmp.Or(o.MaxEntries, 10000)
	o.MaxDeniedEntries = cmp.Or(o.MaxDeniedEntries, 10000)
	o.ReviewRate = cmp.Or(o.ReviewRate, DefaultReviewRate)
	o.ReviewBurst = cmp.Or(o.ReviewBurst, int(2*o.ReviewRate), 1)
	o.PeerReviewRate = cmp.Or(o.PeerReviewRate, DefaultPeerReviewRate)
	o.PeerReviewBurst = cmp.Or(o.PeerReviewBurst, int(2*o.PeerReviewRate), 1)
	o.MaxPeers = cmp.Or(o.MaxPeers, 10000)
	o.Clock = cmp.Or[clock.Clock](o.Clock, clock.RealClock{})
	return &Authenticator{
		reviews:   reviews,
		audience:  o.Audience,
		clock:     o.Clock,
		cache:     cache.NewLRUExpireCacheWithClock(o.MaxEntries, o.Clock),
		denied:    cache.NewLRUExpireCacheWithClock(o.MaxDeniedEntries, o.Clock),
		ttl:       o.TTL,
		denyTTL:   o.DenyTTL,
		global:    rate.NewLimiter(limit(o.ReviewRate), max(o.ReviewBurst, 1)),
		peerRate:  limit(o.PeerReviewRate),
		peerBurst: max(o.PeerReviewBurst, 1),
		peers:     lru.New(o.MaxPeers),
	}
}

// limit is a rate in requests per second; negative means none.
func limit(perSecond float64) rate.Limit {
	if perSecond < 0 {
		return rate.Inf
	}
	return rate.Limit(perSecond)
}

// Authenticate returns the caller a bearer token belongs to. from is the
// client's address (nil when unknown): a token in no cache costs a
// TokenReview, which counts against the limit of from's IP address and of
// all clients, and is refused with a *ThrottledError beyond them.
func (a *Authenticator) Authenticate(ctx context.Context, token string, from net.Addr) (*Principal, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	key := tokenHash(token)
	if v, ok := a.cache.Get(key); ok {
		return v.(*Principal), nil
	}
	if v, ok := a.denied.Get(key); ok {
		return nil, v.(error)
	}
	a.flightsMu.Lock()
	if f, ok := a.flights[key]; ok {
		a.flightsMu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		var throttled *ThrottledError
		if f.err == nil || errors.Is(f.err, ErrUnauthenticated) || errors.As(f.err, &throttled) {
			return f.p, f.err
		}
		// The first caller's review failed for its own reasons (its
		// context ended, the API server erred): review again rather than
		// inherit that.
		return a.Authenticate(ctx, token, from)
	}
	f := &flight{done: make(chan struct{})}
	if a.flights == nil {
		a.flights = map[[sha256.Size]byte]*flight{}
	}
	a.flights[key] = f
	a.flightsMu.Unlock()
	defer func() {
		a.flightsMu.Lock()
		delete(a.flights, key)
		a.flightsMu.Unlock()
		close(f.done)
	}()
	f.p, f.err = a.reviewAndCache(ctx, key, token, from)
	return f.p, f.err
}

// reviewAndCache spends the caller's review budget, asks TokenReview, and
// caches the answer.
func (a *Authenticator) reviewAndCache(ctx context.Context, key [sha256.Size]byte, token string, from net.Addr) (*Principal, error) {
	if err := a.allowReview(from); err != nil {
		return nil, err
	}
	p, err := a.review(ctx, token)
	switch {
	case err == nil:
		ttl := a.ttl
		if exp, ok := expiry(token); ok {
			ttl = min(ttl, exp.Sub(a.clock.Now()))
		}
		if ttl > 0 {
			a.cache.Add(key, p, ttl)
		}
	case errors.Is(err, ErrUnauthenticated):
		a.denied.Add(key, err, a.denyTTL)
	}
	return p, err
}

// allowReview spends one TokenReview of from's IP address and one of all
// clients, or says when to retry.
func (a *Authenticator) allowReview(from net.Addr) error {
	now := a.clock.Now()
	ip := peerIP(from)
	if a.peerRate != rate.Inf {
		a.peersMu.Lock()
		var l *rate.Limiter
		if v, ok := a.peers.Get(ip); ok {
			l = v.(*rate.Limiter)
		} else {
			l = rate.NewLimiter(a.peerRate, a.peerBurst)
			a.peers.Add(ip, l)
		}
		a.peersMu.Unlock()
		if wait := take(l, now); wait > 0 {
			return &ThrottledError{Peer: ip, RetryAfter: wait}
		}
	}
	if wait := take(a.global, now); wait > 0 {
		return &ThrottledError{RetryAfter: wait}
	}
	return nil
}

// take spends a token of l now, or returns how long until one is there.
func take(l *rate.Limiter, now time.Time) time.Duration {
	r := l.ReserveN(now, 1)
	if !r.OK() {
		return time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// peerIP is the IP address of a client address, without the port: a client
// cannot get a fresh limit by opening another connection.
func peerIP(from net.Addr) string {
	if from == nil {
		return ""
	}
	if t, ok := from.(*net.TCPAddr); ok && t != nil {
		if ip, ok := netip.AddrFromSlice(t.IP); ok {
			return ip.Unmap().String()
		}
	}
	s := from.String()
	if host, _, err := net.SplitHostPort(s); err == nil {
		return host
	}
	return s
}

// Peers is how many client addresses the limiter remembers.
func (a *Authenticator) Peers() int {
	a.peersMu.Lock()
	defer a.peersMu.Unlock()
	return a.peers.Len()
}

func (a *Authenticator) review(ctx context.Context, token string) (*Principal, error) {
	tr, err := a.reviews.Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{a.audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		// Not the caller's fault: not cached, answered as unavailable.
		return nil, fmt.Errorf("token review: %w", err)
	}
	st := tr.Status
	switch {
	case !st.Authenticated:
		reason := st.Error
		if reason == "" {
			reason = "token not authenticated"
		}
		return nil, fmt.Errorf("%w: %s", ErrUnauthenticated, reason)
	case len(st.Audiences) == 0:
		return nil, fmt.Errorf("%w: token review names no audience (an API server token, not one for %q)", ErrUnauthenticated, a.audience)
	case !slices.Contains(st.Audiences, a.audience):
		return nil, fmt.Errorf("%w: token is not for audience %q", ErrUnauthenticated, a.audience)
	}
	u := st.User
	p := &Principal{Username: u.Username, UID: u.UID, Groups: u.Groups, Extra: map[string][]string{}}
	for k, v := range u.Extra {
		p.Extra[k] = v
	}
	if rest, ok := strings.CutPrefix(u.Username, "system:serviceaccount:"); ok {
		p.Namespace, p.ServiceAccount, _ = strings.Cut(rest, ":")
	}
	if v := u.Extra[extraPodName]; len(v) == 1 {
		p.PodName = v[0]
	}
	if v := u.Extra[extraPodUID]; len(v) == 1 {
		p.PodUID = v[0]
	}
	return p, nil
}

// expiry reads the exp claim of a JWT without verifying it: the API server
// has verified the token; this only bounds how long the answer is cached.
func expiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == 0 {
		return time.Time{}, false
	}
	return time.Unix(claims.Exp, 0), true
}

// hashers reuse SHA-256 states and their output buffers: hashing a token
// (about a kilobyte) through sha256.Sum256([]byte(token)) would copy it to
// the heap on every call.
var hashers = sync.Pool{New: func() any {
	return &hasher{h: sha256.New(), sum: make([]byte, 0, sha256.Size), chunk: make([]byte, 512)}
}}

// hasher is a SHA-256 state with room for its sum and a chunk of input
// (the hash takes bytes, the token is a string).
type hasher struct {
	h          hash.Hash
	sum, chunk []byte
}

// tokenHash is the SHA-256 of token, the caches' key: the caches never hold
// a token itself.
func tokenHash(token string) (key [sha256.Size]byte) {
	x := hashers.Get().(*hasher)
	x.h.Reset()
	for len(token) > 0 {
		n := copy(x.chunk, token)
		x.h.Write(x.chunk[:n])
		token = token[n:]
	}
	copy(key[:], x.h.Sum(x.sum[:0]))
	hashers.Put(x)
	return key
}
