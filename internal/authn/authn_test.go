package authn

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

// These cases need TokenReview answers a real API server does not give on
// demand (an empty audience list, an outage), so they use a fake client.
// The real-server cases are in internal/dataplane's envtest suite.

type reviewAnswer struct {
	status authenticationv1.TokenReviewStatus
	err    error
}

func fakeAuthenticator(t *testing.T, answer reviewAnswer, clk *clocktesting.FakeClock) (*Authenticator, *int) {
	t.Helper()
	calls := 0
	cs := fake.NewClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls++
		if answer.err != nil {
			return true, nil, answer.err
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		tr.Status = answer.status
		return true, tr, nil
	})
	return New(cs.AuthenticationV1().TokenReviews(), Options{Clock: clk, TTL: time.Minute, DenyTTL: 5 * time.Second}), &calls
}

func jwtExpiringAt(t time.Time) string {
	claims := fmt.Sprintf(`{"exp":%d}`, t.Unix())
	return "eyJhbGciOiJFUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + ".sig"
}

var saUser = authenticationv1.UserInfo{
	Username: "system:serviceaccount:shop:api",
	UID:      "uid-1",
	Extra: map[string]authenticationv1.ExtraValue{
		"authentication.kubernetes.io/pod-name": {"api-7d9"},
		"authentication.kubernetes.io/pod-uid":  {"pod-uid-1"},
	},
}

func TestAuthenticate(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		answer     reviewAnswer
		token      string
		wantErr    string
		wantUnauth bool
	}{
		"our audience passes": {
			answer: reviewAnswer{status: authenticationv1.TokenReviewStatus{Authenticated: true, User: saUser, Audiences: []string{"kubekms"}}},
			token:  "t1",
		},
		"empty audiences is the API server's audience and is refused": {
			answer:     reviewAnswer{status: authenticationv1.TokenReviewStatus{Authenticated: true, User: saUser}},
			token:      "t2",
			wantErr:    "names no audience",
			wantUnauth: true,
		},
		"another audience is refused": {
			answer:     reviewAnswer{status: authenticationv1.TokenReviewStatus{Authenticated: true, User: saUser, Audiences: []string{"vault"}}},
			token:      "t3",
			wantErr:    `not for audience "kubekms"`,
			wantUnauth: true,
		},
		"not authenticated": {
			answer:     reviewAnswer{status: authenticationv1.TokenReviewStatus{Error: "token expired"}},
			token:      "t4",
			wantErr:    "token expired",
			wantUnauth: true,
		},
		"no token": {
			wantErr:    "no bearer token",
			wantUnauth: true,
		},
		"API server down is not the caller's fault": {
			answer:  reviewAnswer{err: errors.New("connection refused")},
			token:   "t5",
			wantErr: "connection refused",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a, _ := fakeAuthenticator(t, tc.answer, clocktesting.NewFakeClock(now))
			p, err := a.Authenticate(context.Background(), tc.token, nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if p.Namespace != "shop" || p.ServiceAccount != "api" || p.PodName != "api-7d9" || p.PodUID != "pod-uid-1" {
					t.Fatalf("principal = %+v", p)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to say %q", err, tc.wantErr)
			}
			if errors.Is(err, ErrUnauthenticated) != tc.wantUnauth {
				t.Fatalf("errors.Is(err, ErrUnauthenticated) = %v, want %v", !tc.wantUnauth, tc.wantUnauth)
			}
			if strings.Contains(err.Error(), tc.token) && tc.token != "" {
				t.Fatal("the error contains the token")
			}
		})
	}
}

func TestCacheNeverOutlivesTheToken(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(now)
	a, calls := fakeAuthenticator(t, reviewAnswer{status: authenticationv1.TokenReviewStatus{Authenticated: true, User: saUser, Audiences: []string{"kubekms"}}}, clk)
	token := jwtExpiringAt(now.Add(10 * time.Second)) // expires before the 1m TTL

	for range 3 {
		if _, err := a.Authenticate(context.Background(), token, nil); err != nil {
			t.Fatal(err)
		}
	}
	if *calls != 1 {
		t.Fatalf("TokenReviews = %d, want 1 (cached)", *calls)
	}
	clk.Step(11 * time.Second)
	_, _ = a.Authenticate(context.Background(), token, nil)
	if *calls != 2 {
		t.Fatalf("TokenReviews = %d, want 2: the cache must not outlive the token", *calls)
	}
}

func TestFailuresAreCachedBriefly(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	a, calls := fakeAuthenticator(t, reviewAnswer{status: authenticationv1.TokenReviewStatus{Error: "invalid"}}, clk)
	for range 5 {
		_, _ = a.Authenticate(context.Background(), "garbage", nil)
	}
	if *calls != 1 {
		t.Fatalf("TokenReviews = %d, want 1", *calls)
	}
	clk.Step(6 * time.Second)
	_, _ = a.Authenticate(context.Background(), "garbage", nil)
	if *calls != 2 {
		t.Fatalf("TokenReviews = %d, want 2 after the deny TTL", *calls)
	}
}

// limitedAuthenticator answers every review with a, counts reviews, and
// applies the given limits.
func limitedAuthenticator(t *testing.T, answer reviewAnswer, clk *clocktesting.FakeClock, o Options) (*Authenticator, *int) {
	t.Helper()
	calls := 0
	cs := fake.NewClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls++
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		tr.Status = answer.status
		return true, tr, nil
	})
	o.Clock = clk
	return New(cs.AuthenticationV1().TokenReviews(), o), &calls
}

func tcp(ip string, port int) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: port} }

func TestReviewsAreLimitedPerClientAddress(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	a, calls := limitedAuthenticator(t, reviewAnswer{status: authenticationv1.TokenReviewStatus{Error: "invalid"}}, clk,
		Options{PeerReviewRate: 2, PeerReviewBurst: 3, ReviewRate: 1000})
	attacker := "10.0.0.9"
	for i := range 10 {
		// Another port on every call: the limit is the IP address's.
		_, err := a.Authenticate(context.Background(), fmt.Sprintf("garbage-%d", i), tcp(attacker, 40000+i))
		var throttled *ThrottledError
		if i < 3 {
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("call %d: err = %v, want unauthenticated (within the burst)", i, err)
			}
			continue
		}
		if !errors.As(err, &throttled) || throttled.Peer != attacker || throttled.RetryAfter <= 0 || throttled.RetryAfter > time.Second {
			t.Fatalf("call %d: err = %v, want throttled for %s with a retry delay", i, err, attacker)
		}
	}
	if *calls != 3 {
		t.Fatalf("TokenReviews = %d, want 3 (the burst)", *calls)
	}
	if _, err := a.Authenticate(context.Background(), "garbage-other", tcp("10.0.0.10", 1)); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("another client: err = %v, want its own limit", err)
	}
	if _, err := a.Authenticate(context.Background(), "garbage-0", tcp(attacker, 1)); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("a cached failure costs no review and is not throttled: err = %v", err)
	}
	clk.Step(500 * time.Millisecond) // one token at 2/s
	if _, err := a.Authenticate(context.Background(), "garbage-new", tcp(attacker, 1)); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("after the refill: err = %v", err)
	}
}

func TestReviewsAreLimitedForAllClients(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	a, calls := limitedAuthenticator(t, reviewAnswer{status: authenticationv1.TokenReviewStatus{Error: "invalid"}}, clk,
		Options{ReviewRate: 5, ReviewBurst: 5, PeerReviewRate: 100})
	var throttled int
	for i := range 20 {
		_, err := a.Authenticate(context.Background(), fmt.Sprintf("garbage-%d", i), tcp(fmt.Sprintf("10.0.1.%d", i), 1))
		var te *ThrottledError
		if errors.As(err, &te) {
			if te.Peer != "" {
				t.Fatalf("throttled by the limit of %s, want the global one", te.Peer)
			}
			throttled++
		}
	}
	if *calls != 5 || throttled != 15 {
		t.Fatalf("TokenReviews = %d, throttled = %d; want 5 and 15", *calls, throttled)
	}
}

func TestClientAddressesAreBounded(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	a, _ := limitedAuthenticator(t, reviewAnswer{status: authenticationv1.TokenReviewStatus{Error: "invalid"}}, clk,
		Options{MaxPeers: 8, ReviewRate: -1})
	for i := range 100 {
		_, _ = a.Authenticate(context.Background(), fmt.Sprintf("garbage-%d", i), tcp(fmt.Sprintf("fd00::%x", i), 1))
	}
	if n := a.Peers(); n != 8 {
		t.Fatalf("remembered %d client addresses, want at most 8", n)
	}
}

func TestPeerIP(t *testing.T) {
	tests := map[string]struct {
		from net.Addr
		want string
	}{
		"IPv4":             {from: tcp("10.1.2.3", 5000), want: "10.1.2.3"},
		"IPv4 in IPv6":     {from: &net.TCPAddr{IP: net.ParseIP("::ffff:10.1.2.3"), Port: 1}, want: "10.1.2.3"},
		"IPv6":             {from: tcp("fd00::1", 5000), want: "fd00::1"},
		"another net.Addr": {from: &net.UDPAddr{IP: net.ParseIP("10.1.2.3"), Port: 9}, want: "10.1.2.3"},
		"unix socket":      {from: &net.UnixAddr{Name: "/run/kms.sock", Net: "unix"}, want: "/run/kms.sock"},
		"unknown":          {from: nil, want: ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := peerIP(tc.from); got != tc.want {
				t.Fatalf("peerIP = %q, want %q", got, tc.want)
			}
		})
	}
}

// A flood of bad tokens must not evict a good one: failures live in a
// cache of their own.
func TestFailuresDoNotEvictSuccesses(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	calls := 0
	cs := fake.NewClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls++
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		if tr.Spec.Token == "good" {
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: saUser, Audiences: []string{"kubekms"}}
		} else {
			tr.Status = authenticationv1.TokenReviewStatus{Error: "invalid"}
		}
		return true, tr, nil
	})
	a := New(cs.AuthenticationV1().TokenReviews(), Options{Clock: clk, TTL: time.Minute, MaxEntries: 10, MaxDeniedEntries: 10, ReviewRate: -1, PeerReviewRate: -1})
	if _, err := a.Authenticate(context.Background(), "good", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		_, _ = a.Authenticate(context.Background(), fmt.Sprintf("garbage-%d", i), nil)
	}
	before := calls
	if _, err := a.Authenticate(context.Background(), "good", nil); err != nil {
		t.Fatal(err)
	}
	if calls != before {
		t.Fatalf("the good token was reviewed again after a flood of bad ones: it was evicted")
	}
}

// A client with many calls in flight whose token is not (or no longer)
// cached costs one TokenReview, not one per call: concurrent misses on the
// same token wait for the first one's review. Before, every in-flight call
// reviewed the token itself, so a busy client was throttled by its own
// calls each time its cache entry expired (seen in the external bench: 64
// in flight, ResourceExhausted every TTL).
func TestConcurrentMissesShareOneReview(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	release := make(chan struct{})
	var calls atomic.Int32
	cs := fake.NewClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls.Add(1)
		<-release // the review is slow: every other call arrives meanwhile
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: saUser, Audiences: []string{DefaultAudience}}
		return true, tr, nil
	})
	a := New(cs.AuthenticationV1().TokenReviews(), Options{Clock: clk, PeerReviewRate: 1, PeerReviewBurst: 1, ReviewRate: 1000})
	const inFlight = 64
	errs := make(chan error, inFlight)
	for range inFlight {
		go func() {
			_, err := a.Authenticate(context.Background(), "busy-token", tcp("10.0.0.5", 1))
			errs <- err
		}()
	}
	// Let the calls pile up behind the first review, then answer it.
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	for range inFlight {
		if err := <-errs; err != nil {
			t.Fatalf("a call behind the first review failed: %v", err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("TokenReviews = %d, want 1", n)
	}
}

// BenchmarkTokenHash: the cache key of a token of a real token's size
// (about a kilobyte) costs no allocation.
func BenchmarkTokenHash(b *testing.B) {
	token := strings.Repeat("t", 1000)
	b.ReportAllocs()
	for b.Loop() {
		_ = tokenHash(token)
	}
}

func TestTokenHashIsSHA256(t *testing.T) {
	for _, token := range []string{"", "short", strings.Repeat("x", 5000)} {
		if got, want := tokenHash(token), sha256.Sum256([]byte(token)); got != want {
			t.Fatalf("tokenHash(%d bytes) = %x, want %x", len(token), got, want)
		}
	}
}
