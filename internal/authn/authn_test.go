package authn

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
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
			p, err := a.Authenticate(context.Background(), tc.token)
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
		if _, err := a.Authenticate(context.Background(), token); err != nil {
			t.Fatal(err)
		}
	}
	if *calls != 1 {
		t.Fatalf("TokenReviews = %d, want 1 (cached)", *calls)
	}
	clk.Step(11 * time.Second)
	_, _ = a.Authenticate(context.Background(), token)
	if *calls != 2 {
		t.Fatalf("TokenReviews = %d, want 2: the cache must not outlive the token", *calls)
	}
}

func TestFailuresAreCachedBriefly(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	a, calls := fakeAuthenticator(t, reviewAnswer{status: authenticationv1.TokenReviewStatus{Error: "invalid"}}, clk)
	for range 5 {
		_, _ = a.Authenticate(context.Background(), "garbage")
	}
	if *calls != 1 {
		t.Fatalf("TokenReviews = %d, want 1", *calls)
	}
	clk.Step(6 * time.Second)
	_, _ = a.Authenticate(context.Background(), "garbage")
	if *calls != 2 {
		t.Fatalf("TokenReviews = %d, want 2 after the deny TTL", *calls)
	}
}
