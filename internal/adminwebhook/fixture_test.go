package adminwebhook

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/authz"
	"github.com/kubekms/kubekms/internal/keystore"
)

// The scaffolding of the Validator's tests: a Validator over fake clients,
// a real access index fed by hand, a fake RBAC and a fake clock, and
// builders for the objects and admission requests the API server would send.

const (
	ns       = "shop"
	keyUID   = types.UID("key-uid-1")
	selfUser = "system:serviceaccount:kubekms-system:kubekms-manager"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := kmsv1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// fakeRBAC allows the "user verb" pairs in allow and records every question.
type fakeRBAC struct {
	allow map[string]bool
	err   error
	asked []string
	last  authz.Request
}

func (f *fakeRBAC) Authorize(_ context.Context, r authz.Request) (authz.Decision, error) {
	f.asked = append(f.asked, r.Principal.Username+" "+r.Action+" "+r.Namespace+"/"+r.Name)
	f.last = r
	if f.err != nil {
		return authz.Decision{}, f.err
	}
	return authz.Decision{Allowed: f.allow[r.Principal.Username+" "+r.Action], DecidedBy: "fake rbac"}, nil
}

type fixture struct {
	v          *Validator
	rbac       *fakeRBAC
	clock      *clocktesting.FakePassiveClock
	tombstones []keystore.Version
}

type fixtureOption func(*fixtureConfig)

type fixtureConfig struct {
	// cached are in the cache and the API server; uncached only in the API
	// server (the cache lags).
	cached, uncached []client.Object
	policies         []*kmsv1alpha1.KeyPolicy
	// stale are only in the cache: the API server has since deleted or
	// replaced them.
	stale     []client.Object
	namespace *corev1.Namespace
}

// withObjects puts objects in the cache and the API server.
func withObjects(objs ...client.Object) fixtureOption {
	return func(c *fixtureConfig) { c.cached = append(c.cached, objs...) }
}

// withUncached puts objects only in the API server: the cache has not seen them yet.
func withUncached(objs ...client.Object) fixtureOption {
	return func(c *fixtureConfig) { c.uncached = append(c.uncached, objs...) }
}

// withStale puts objects only in the cache: the API server no longer has them.
func withStale(objs ...client.Object) fixtureOption {
	return func(c *fixtureConfig) { c.stale = append(c.stale, objs...) }
}

// withPolicies puts KeyPolicies in the API server and delivers them to the index.
func withPolicies(ps ...*kmsv1alpha1.KeyPolicy) fixtureOption {
	return func(c *fixtureConfig) { c.policies = append(c.policies, ps...) }
}

// namespaceGone makes namespace shop one that no longer exists.
func namespaceGone() fixtureOption {
	return func(c *fixtureConfig) { c.namespace = nil }
}

// terminating makes namespace shop one being deleted.
func terminating() fixtureOption {
	return func(c *fixtureConfig) {
		c.namespace.DeletionTimestamp = &metav1.Time{Time: t0}
		c.namespace.Finalizers = []string{"kubernetes"}
		c.namespace.Status.Phase = corev1.NamespaceTerminating
	}
}

// newFixture is a synced Validator; namespace shop exists.
func newFixture(t *testing.T, opts ...fixtureOption) *fixture {
	t.Helper()
	cfg := &fixtureConfig{namespace: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}}
	for _, o := range opts {
		o(cfg)
	}
	if cfg.namespace != nil {
		cfg.cached = append(cfg.cached, cfg.namespace)
	}
	ix := access.NewIndex()
	for _, p := range cfg.policies {
		ix.PolicyHandler().OnAdd(p, true)
		cfg.cached = append(cfg.cached, p)
	}
	s := testScheme(t)
	f := &fixture{rbac: &fakeRBAC{allow: map[string]bool{}}, clock: clocktesting.NewFakePassiveClock(t0)}
	f.v = &Validator{
		Access:     ix,
		Authorizer: f.rbac,
		Decoder:    admission.NewDecoder(s),
		Reader:     fake.NewClientBuilder().WithScheme(s).WithObjects(append(cfg.cached, cfg.stale...)...).Build(),
		APIReader:  fake.NewClientBuilder().WithScheme(s).WithObjects(append(cfg.cached, cfg.uncached...)...).Build(),
		Tombstones: func(_ context.Context, keyID string) ([]keystore.Version, error) {
			var out []keystore.Version
			for _, v := range f.tombstones {
				if v.KeyID == keyID {
					out = append(out, v)
				}
			}
			return out, nil
		},
		Self:   selfUser,
		Synced: func() bool { return true },
		Clock:  f.clock,
	}
	return f
}

// handle sends req to the webhook served on path, as the server would.
func (f *fixture) handle(t *testing.T, path string, req admission.Request) admission.Response {
	t.Helper()
	h, ok := f.v.Handlers()[path]
	if !ok {
		t.Fatalf("no webhook on %s", path)
	}
	return h.(*admission.Webhook).Handle(context.Background(), req)
}

// request is an admission request of user about obj (the new object) and
// old (the old one); either may be nil.
func request(t *testing.T, op admissionv1.Operation, user string, obj, old client.Object) admission.Request {
	t.Helper()
	if isNil(obj) {
		obj = nil
	}
	if isNil(old) {
		old = nil
	}
	raw := func(o client.Object) runtime.RawExtension {
		if o == nil {
			return runtime.RawExtension{}
		}
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		return runtime.RawExtension{Raw: b}
	}
	subject := obj
	if subject == nil {
		subject = old
	}
	kind := "Key"
	switch subject.(type) {
	case *kmsv1alpha1.KeyPolicy:
		kind = "KeyPolicy"
	case *kmsv1alpha1.KeyGrant:
		kind = "KeyGrant"
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "req-1",
		Kind:      metav1.GroupVersionKind{Group: kmsv1alpha1.GroupVersion.Group, Version: kmsv1alpha1.GroupVersion.Version, Kind: kind},
		Operation: op, Namespace: subject.GetNamespace(), Name: subject.GetName(),
		UserInfo: authenticationv1.UserInfo{Username: user, Groups: []string{"system:authenticated"}},
		Object:   raw(obj), OldObject: raw(old),
	}}
}

// isNil says whether o is nil or a nil pointer in an interface.
func isNil(o client.Object) bool {
	return o == nil || reflect.ValueOf(o).IsNil()
}

// withDeleteOptions sets the DeleteOptions of a deletion.
func withDeleteOptions(t *testing.T, req admission.Request, o metav1.DeleteOptions) admission.Request {
	t.Helper()
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	req.Options = runtime.RawExtension{Raw: b}
	return req
}

func newKey(name string, uid types.UID, opts ...func(*kmsv1alpha1.Key)) *kmsv1alpha1.Key {
	k := &kmsv1alpha1.Key{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: uid, Finalizers: []string{kmsv1alpha1.KeyFinalizer}},
		Spec:       kmsv1alpha1.KeySpec{KeySpec: kmsv1alpha1.KeySpecSymmetricDefault, State: kmsv1alpha1.KeyDesiredEnabled},
	}
	for _, o := range opts {
		o(k)
	}
	return k
}

// allow is a statement that allows actions to users.
func allow(actions []string, users ...string) kmsv1alpha1.PolicyStatement {
	return kmsv1alpha1.PolicyStatement{Sid: "Allow" + strings.Join(users, ""), Effect: kmsv1alpha1.PolicyAllow,
		Principals: kmsv1alpha1.PolicyPrincipals{Users: users}, Actions: actions}
}

// newPolicy is a KeyPolicy for key, bound to it (as the bind webhook does).
func newPolicy(name string, key *kmsv1alpha1.Key, statements ...kmsv1alpha1.PolicyStatement) *kmsv1alpha1.KeyPolicy {
	return &kmsv1alpha1.KeyPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("policy-" + name),
			CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour)), OwnerReferences: []metav1.OwnerReference{access.KeyOwnerReference(key)}},
		Spec: kmsv1alpha1.KeyPolicySpec{KeyRef: kmsv1alpha1.KeyReference{Name: key.Name}, Statements: statements},
	}
}

// newGrant is a KeyGrant for key, bound to it.
func newGrant(name string, key *kmsv1alpha1.Key, opts ...func(*kmsv1alpha1.KeyGrant)) *kmsv1alpha1.KeyGrant {
	g := &kmsv1alpha1.KeyGrant{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, OwnerReferences: []metav1.OwnerReference{access.KeyOwnerReference(key)}},
		Spec: kmsv1alpha1.KeyGrantSpec{KeyRef: kmsv1alpha1.KeyReference{Name: key.Name},
			Grantee: kmsv1alpha1.GrantPrincipal{ServiceAccount: "web/api"}, Operations: []string{"Decrypt"}},
	}
	for _, o := range opts {
		o(g)
	}
	return g
}

// tombstone is a deleted key's version within its deletion window (an hour
// left), with the record of the policy it had.
func tombstone(keyID, keyName, record string) keystore.Version {
	return keystore.Version{KeyID: keyID, Version: 1, KeyNamespace: ns, KeyName: keyName, Tombstone: true,
		DestroyAfter: t0.Add(time.Hour), DeletedPolicy: record}
}

// wantResponse checks a response: allowed or denied, with a message that
// contains wantMessage.
func wantResponse(t *testing.T, resp admission.Response, wantAllowed bool, wantMessage string) {
	t.Helper()
	msg := ""
	if resp.Result != nil {
		msg = resp.Result.Message
	}
	if resp.Allowed != wantAllowed || !strings.Contains(msg, wantMessage) {
		t.Fatalf("allowed=%v %q; want allowed=%v with a message containing %q", resp.Allowed, msg, wantAllowed, wantMessage)
	}
}

var errRBACDown = errors.New("subject access review: connection refused")
