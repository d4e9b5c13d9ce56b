package authz

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kubekms/kubekms/internal/authn"
)

// fakeRBAC answers SubjectAccessReviews: allowed says the answer (or err
// fails the review), and every review is kept.
type fakeRBAC struct {
	allowed bool
	reason  string
	err     error
	reviews []authorizationv1.SubjectAccessReviewSpec
}

func (f *fakeRBAC) authorizer(t *testing.T, o Options) *Authorizer {
	t.Helper()
	cs := fake.NewClientset()
	cs.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview).DeepCopy()
		f.reviews = append(f.reviews, sar.Spec)
		if f.err != nil {
			return true, nil, f.err
		}
		sar.Status.Allowed, sar.Status.Reason = f.allowed, f.reason
		return true, sar, nil
	})
	return New(cs.AuthorizationV1().SubjectAccessReviews(), o)
}

func decryptBy(user string) Request {
	return Request{Principal: &authn.Principal{Username: user, UID: user + "-uid", Groups: []string{"system:authenticated"}},
		Action: "Decrypt", Namespace: "shop", Name: "payments"}
}

func mustAuthorize(t *testing.T, a *Authorizer, r Request) Decision {
	t.Helper()
	d, err := a.Authorize(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// An allowed answer is kept for AllowTTL and a denied one for DenyTTL: a
// revoked RoleBinding takes effect within AllowTTL, a new one within DenyTTL.
func TestAnswersAreCachedForTheirTTL(t *testing.T) {
	for name, tc := range map[string]struct {
		first bool
		ttl   time.Duration
	}{
		"allowed": {first: true, ttl: 10 * time.Second},
		"denied":  {first: false, ttl: 5 * time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			clock := clocktesting.NewFakeClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
			rbac := &fakeRBAC{allowed: tc.first}
			a := rbac.authorizer(t, Options{AllowTTL: 10 * time.Second, DenyTTL: 5 * time.Second, Clock: clock})
			if d := mustAuthorize(t, a, decryptBy("alice")); d.Allowed != tc.first {
				t.Fatalf("first answer %v, want %v", d.Allowed, tc.first)
			}
			rbac.allowed = !tc.first // RBAC changes its mind
			clock.Step(tc.ttl)
			if d := mustAuthorize(t, a, decryptBy("alice")); d.Allowed != tc.first || len(rbac.reviews) != 1 {
				t.Fatalf("at the end of the TTL: answer %v after %d reviews, want the cached %v after 1", d.Allowed, len(rbac.reviews), tc.first)
			}
			clock.Step(time.Nanosecond)
			if d := mustAuthorize(t, a, decryptBy("alice")); d.Allowed == tc.first || len(rbac.reviews) != 2 {
				t.Fatalf("past the TTL: answer %v after %d reviews, want RBAC's new answer after 2", d.Allowed, len(rbac.reviews))
			}
		})
	}
}

func TestDefaultTTLs(t *testing.T) {
	a := (&fakeRBAC{}).authorizer(t, Options{})
	if a.allowTTL != 10*time.Second || a.denyTTL != 5*time.Second {
		t.Fatalf("default TTLs %v, %v; want 10s, 5s", a.allowTTL, a.denyTTL)
	}
}

// A failed review is an error, never an answer, and is not remembered.
func TestErrorsAreNotCached(t *testing.T) {
	rbac := &fakeRBAC{err: errors.New("connection refused")}
	a := rbac.authorizer(t, Options{Clock: clocktesting.NewFakeClock(time.Now())})
	if d, err := a.Authorize(context.Background(), decryptBy("alice")); err == nil || d.Allowed {
		t.Fatalf("Authorize = %+v, %v; want an error and no permission", d, err)
	}
	rbac.err, rbac.allowed = nil, true
	if d := mustAuthorize(t, a, decryptBy("alice")); !d.Allowed || len(rbac.reviews) != 2 {
		t.Fatalf("after a failure: %+v after %d reviews, want allowed after 2", d, len(rbac.reviews))
	}
}

// The review asks about the caller and the key; the verb is the action's.
func TestReviewAsksAboutCallerAndKey(t *testing.T) {
	rbac := &fakeRBAC{allowed: true, reason: `RBAC: allowed by RoleBinding "decrypters/shop"`}
	a := rbac.authorizer(t, Options{Clock: clocktesting.NewFakeClock(time.Now())})
	r := decryptBy("system:serviceaccount:shop:api")
	r.Principal.Extra = map[string][]string{"authentication.kubernetes.io/pod-name": {"api-1"}}
	d := mustAuthorize(t, a, r)
	if !d.Allowed || d.DecidedBy != `rbac: RBAC: allowed by RoleBinding "decrypters/shop"` {
		t.Fatalf("decision %+v", d)
	}
	spec := rbac.reviews[0]
	ra := spec.ResourceAttributes
	if spec.User != r.Principal.Username || spec.UID != r.Principal.UID || !slices.Equal(spec.Groups, r.Principal.Groups) ||
		!slices.Equal(spec.Extra["authentication.kubernetes.io/pod-name"], []string{"api-1"}) {
		t.Fatalf("review of %+v, want the caller %+v", spec, r.Principal)
	}
	if ra == nil || ra.Group != Group || ra.Resource != Resource || ra.Verb != "decrypt" || ra.Namespace != "shop" || ra.Name != "payments" {
		t.Fatalf("review about %+v, want verb decrypt on keys.kms.kubekms.io shop/payments", ra)
	}
	rbac.reason = ""
	if d := mustAuthorize(t, a, decryptBy("bob")); d.DecidedBy != "rbac" {
		t.Fatalf("without a reason DecidedBy = %q, want rbac", d.DecidedBy)
	}
}

// The cache holds at most MaxEntries answers: the least recently used goes.
func TestCacheIsBounded(t *testing.T) {
	rbac := &fakeRBAC{allowed: true}
	a := rbac.authorizer(t, Options{MaxEntries: 1, Clock: clocktesting.NewFakeClock(time.Now())})
	for _, user := range []string{"alice", "bob", "alice"} {
		mustAuthorize(t, a, decryptBy(user))
	}
	if len(rbac.reviews) != 3 {
		t.Fatalf("%d reviews, want 3 (alice's answer was evicted by bob's)", len(rbac.reviews))
	}
	mustAuthorize(t, a, decryptBy("alice"))
	if len(rbac.reviews) != 3 {
		t.Fatalf("%d reviews, want 3 (alice's answer is cached again)", len(rbac.reviews))
	}
}
