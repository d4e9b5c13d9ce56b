// Package authn authenticates data-plane callers with TokenReview.
//
// A token passes only if the API server authenticates it for our audience
// and names that audience in status.audiences (an empty list means "the API
// server's own audience" and is refused). Results are cached by the token's
// SHA-256 for a short, bounded time that never runs past the token's expiry;
// failures are cached briefly too, so garbage tokens cannot flood the API
// server. The token itself is never stored or logged.
package authn

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/cache"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	"k8s.io/utils/clock"
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

// Authenticator validates bearer tokens.
type Authenticator struct {
	reviews  authenticationv1client.TokenReviewInterface
	audience string
	clock    clock.PassiveClock
	cache    *cache.LRUExpireCache
	ttl      time.Duration
	denyTTL  time.Duration
}

// Options tune an Authenticator.
type Options struct {
	// Audience required in status.audiences. Default "kubekms".
	Audience string
	// TTL bounds how long a success is cached (default 30s), so a revoked
	// token (its pod or ServiceAccount deleted) is refused within TTL; never
	// past the token's expiry. DenyTTL is how long a failure is cached (default 5s).
	TTL, DenyTTL time.Duration
	// MaxEntries bounds the cache (default 10000).
	MaxEntries int
	Clock      clock.Clock
}

// New returns an Authenticator that asks the API server through reviews.
func New(reviews authenticationv1client.TokenReviewInterface, o Options) *Authenticator {
	if o.Audience == "" {
		o.Audience = DefaultAudience
	}
	if o.TTL == 0 {
		o.TTL = 30 * time.Second
	}
	if o.DenyTTL == 0 {
		o.DenyTTL = 5 * time.Second
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = 10000
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return &Authenticator{
		reviews:  reviews,
		audience: o.Audience,
		clock:    o.Clock,
		cache:    cache.NewLRUExpireCacheWithClock(o.MaxEntries, o.Clock),
		ttl:      o.TTL,
		denyTTL:  o.DenyTTL,
	}
}

type cached struct {
	principal *Principal
	err       error
}

// Authenticate returns the caller a bearer token belongs to.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (*Principal, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	key := sha256.Sum256([]byte(token))
	if v, ok := a.cache.Get(key); ok {
		c := v.(cached)
		return c.principal, c.err
	}
	p, err := a.review(ctx, token)
	switch {
	case err == nil:
		ttl := a.ttl
		if exp, ok := expiry(token); ok {
			ttl = min(ttl, exp.Sub(a.clock.Now()))
		}
		if ttl > 0 {
			a.cache.Add(key, cached{principal: p}, ttl)
		}
	case errors.Is(err, ErrUnauthenticated):
		a.cache.Add(key, cached{err: err}, a.denyTTL)
	}
	return p, err
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
