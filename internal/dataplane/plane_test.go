package dataplane

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/audit"
	"github.com/kubekms/kubekms/internal/authn"
	"github.com/kubekms/kubekms/internal/authz"
	"github.com/kubekms/kubekms/internal/keycache"
	"github.com/kubekms/kubekms/internal/kmscrypto"
	"github.com/kubekms/kubekms/internal/quota"
)

// A plane is the data plane in one test process: the real interceptors and
// handlers behind a gRPC server on an in-memory listener, with a key cache,
// access index and authenticator fed by the test instead of informers and
// the API server, and a fake clock.

// Callers of the test plane: each token authenticates as one ServiceAccount.
const (
	ownerToken   = "token-shop-api"     // system:serviceaccount:shop:api, the keys' owner
	granteeToken = "token-web-frontend" // system:serviceaccount:web:frontend
	strangerTok  = "token-other-nobody" // system:serviceaccount:other:nobody
)

var accounts = map[string][2]string{
	ownerToken:   {"shop", "api"},
	granteeToken: {"web", "frontend"},
	strangerTok:  {"other", "nobody"},
}

// testEpoch is the fake clock's start.
var testEpoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type plane struct {
	clock  *clocktesting.FakeClock
	keys   *keycache.Cache
	access *access.Index
	sink   *memSink
	client kmsv1.KeyManagementServiceClient
}

type planeOptions struct {
	// quota, if set, throttles callers; its buckets refill by the fake clock.
	quota *quota.Config
	// reviewing, if set, runs during each TokenReview (to make one slow by
	// moving the clock, say).
	reviewing func(p *plane, token string)
	// rbac, if set, answers SubjectAccessReviews by verb; without it the
	// plane has no authorizer (keys must have a policy).
	rbac func(verb string) bool
	// material, if set, loads key material instead of testMaterial.
	material keycache.Loader
}

func newPlane(tb testing.TB, po planeOptions) *plane {
	tb.Helper()
	p := &plane{
		clock:  clocktesting.NewFakeClock(testEpoch),
		keys:   keycache.New(testMaterial),
		access: access.NewIndex(),
		sink:   &memSink{},
	}
	if po.material != nil {
		p.keys = keycache.New(po.material)
	}
	o := Options{
		Authenticator: fakeAuthenticator(func(token string) {
			if po.reviewing != nil {
				po.reviewing(p, token)
			}
		}),
		Audit:   p.sink,
		Metrics: must(NewMetrics(prometheus.NewRegistry())),
		Clock:   p.clock,
	}
	if po.quota != nil {
		o.Quota = quota.NewLimiter(*po.quota, p.clock.Now)
	}
	server := &Server{Keys: p.keys, Access: p.access, Random: rand.Reader}
	if po.rbac != nil {
		server.Authorizer = fakeAuthorizer(po.rbac)
	}
	srv := NewGRPCServer(server, o)
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	tb.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///plane", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	p.client = kmsv1.NewKeyManagementServiceClient(conn)
	return p
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// testMaterial is every version's key material: derived from its keyID and
// version, so a test needs no key store.
func testMaterial(_ context.Context, keyID string, version int32, _ string) ([]byte, error) {
	m := sha256.Sum256(fmt.Appendf(nil, "%s/%d", keyID, version))
	return m[:], nil
}

// fakeAuthenticator is the real authenticator, whose TokenReviews a fake
// client answers from accounts, calling reviewing with each token first.
func fakeAuthenticator(reviewing func(token string)) *authn.Authenticator {
	cs := fake.NewClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		reviewing(tr.Spec.Token)
		if sa, ok := accounts[tr.Spec.Token]; ok {
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{authn.DefaultAudience},
				User: authenticationv1.UserInfo{Username: "system:serviceaccount:" + sa[0] + ":" + sa[1], UID: "uid-" + sa[1],
					Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + sa[0], "system:authenticated"}}}
		}
		return true, tr, nil
	})
	return authn.New(cs.AuthenticationV1().TokenReviews(), authn.Options{TTL: time.Hour})
}

// fakeAuthorizer is the real authorizer, whose SubjectAccessReviews a fake
// client answers by verb.
func fakeAuthorizer(allowed func(verb string) bool) *authz.Authorizer {
	cs := fake.NewClientset()
	cs.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview).DeepCopy()
		sar.Status.Allowed = allowed(sar.Spec.ResourceAttributes.Verb)
		return true, sar, nil
	})
	return authz.New(cs.AuthorizationV1().SubjectAccessReviews(), authz.Options{})
}

// as is a context that calls with token.
func as(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

// keyOption changes a Key before the key cache gets it.
type keyOption func(*kmsv1alpha1.Key)

// addKey puts an enabled SYMMETRIC_DEFAULT key shop/name, version 1, into
// the keycache. Its initial policy lets shop/api do everything, so no
// decision asks RBAC.
func (p *plane) addKey(name string, opts ...keyOption) *kmsv1alpha1.Key {
	k := &kmsv1alpha1.Key{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID("uid-key-" + name)},
		Spec: kmsv1alpha1.KeySpec{KeySpec: kmsv1alpha1.KeySpecSymmetricDefault, InitialPolicy: &kmsv1alpha1.KeyInitialPolicy{
			Statements: []kmsv1alpha1.PolicyStatement{{Sid: "Owner", Effect: kmsv1alpha1.PolicyAllow, Actions: []string{"*"},
				Principals: kmsv1alpha1.PolicyPrincipals{ServiceAccounts: []string{"shop/api"}}}}}},
		Status: kmsv1alpha1.KeyStatus{KeyID: keyIDOf(name), State: kmsv1alpha1.KeyStateEnabled, CurrentVersion: 1,
			KeyUsage: kmsv1alpha1.KeyUsageEncryptDecrypt},
	}
	for _, o := range opts {
		o(k)
	}
	p.keys.Upsert(k)
	return k
}

// keyIDOf is a stable keyID for a key name.
func keyIDOf(name string) string {
	h := sha256.Sum256([]byte(name))
	return kmscrypto.KeyID(h[:16]).String()
}

// grant lets grantee ("namespace/name") do ops on key until expires (zero:
// forever), as an Active KeyGrant the informer delivered.
func (p *plane) grant(key *kmsv1alpha1.Key, name, grantee string, expires time.Time, ops ...string) {
	g := &kmsv1alpha1.KeyGrant{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: name, OwnerReferences: []metav1.OwnerReference{access.KeyOwnerReference(key)}},
		Spec: kmsv1alpha1.KeyGrantSpec{KeyRef: kmsv1alpha1.KeyReference{Name: key.Name},
			Grantee: kmsv1alpha1.GrantPrincipal{ServiceAccount: grantee}, Operations: ops},
		Status: kmsv1alpha1.KeyGrantStatus{State: kmsv1alpha1.KeyGrantActive},
	}
	if !expires.IsZero() {
		g.Spec.ExpiresAt = &metav1.Time{Time: expires}
	}
	p.access.GrantHandler().OnAdd(g, false)
}

// memSink keeps the audit records written.
type memSink struct {
	mu      sync.Mutex
	records []audit.Record
}

func (s *memSink) Write(r *audit.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records = append(s.records, *r)
	return nil
}

// last is the newest record.
func (s *memSink) last(tb testing.TB) audit.Record {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.records) == 0 {
		tb.Fatal("no audit record written")
	}
	return s.records[len(s.records)-1]
}
