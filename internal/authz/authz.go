// Package authz decides whether a caller may perform a data-plane action on
// a key. Without a KeyPolicy (the default policy) RBAC decides, as IAM does on
// AWS: action A on key K is allowed iff the caller may use verb lower(A) on
// resource keys.kms.kubekms.io named K in K's namespace. Answers are cached
// briefly and the cache is bounded.
package authz

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/cache"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/utils/clock"

	"github.com/kubekms/kubekms/internal/authn"
	"github.com/kubekms/kubekms/internal/policy"
)

// Group and Resource are what the default policy asks RBAC about.
const (
	Group    = "kms.kubekms.io"
	Resource = "keys"
)

// Request is one authorization question.
type Request struct {
	Principal *authn.Principal
	// Action is an action of the table (policy.Actions), e.g. "Decrypt", or
	// an RBAC verb given as is (restore); Verb says which verb is asked.
	Action          string
	Namespace, Name string
}

// Decision is the answer, with what decided it.
type Decision struct {
	Allowed bool
	// DecidedBy names the rule that decided, for audit and ExplainAccess.
	DecidedBy string
}

// Authorizer asks SubjectAccessReview.
type Authorizer struct {
	reviews           authorizationv1client.SubjectAccessReviewInterface
	cache             *cache.LRUExpireCache
	allowTTL, denyTTL time.Duration
}

// Options tune an Authorizer.
type Options struct {
	// AllowTTL and DenyTTL bound how long answers are cached (defaults 10s, 5s):
	// a revoked RoleBinding takes effect within AllowTTL.
	AllowTTL, DenyTTL time.Duration
	MaxEntries        int
	Clock             clock.Clock
}

// New returns an Authorizer.
func New(reviews authorizationv1client.SubjectAccessReviewInterface, o Options) *Authorizer {
	o.AllowTTL = cmp.Or(o.AllowTTL, 10*time.Second)
	o.DenyTTL = cmp.Or(o.DenyTTL, 5*time.Second)
	o.MaxEntries = cmp.Or(o.MaxEntries, 10000)
	o.Clock = cmp.Or[clock.Clock](o.Clock, clock.RealClock{})
	return &Authorizer{reviews: reviews, cache: cache.NewLRUExpireCacheWithClock(o.MaxEntries, o.Clock), allowTTL: o.AllowTTL, denyTTL: o.DenyTTL}
}

// Verb is the RBAC verb of an action: its row's in the action table
// (policy.Actions, the name in lower case). A string that is no action is
// taken to be a verb already (restore) and only lower-cased.
func Verb(action string) string {
	if a, ok := policy.LookupAction(action); ok {
		return a.Verb
	}
	return strings.ToLower(action)
}

// Authorize answers a request through RBAC.
func (a *Authorizer) Authorize(ctx context.Context, r Request) (Decision, error) {
	key := cacheKey(r)
	if v, ok := a.cache.Get(key); ok {
		return v.(Decision), nil
	}
	d, err := a.Review(ctx, r.Principal, authorizationv1.ResourceAttributes{
		Group: Group, Resource: Resource, Verb: Verb(r.Action),
		Namespace: r.Namespace, Name: r.Name,
	})
	if err != nil {
		return Decision{}, err
	}
	ttl := a.denyTTL
	if d.Allowed {
		ttl = a.allowTTL
	}
	a.cache.Add(key, d, ttl)
	return d, nil
}

// Review asks RBAC whether p may do what attrs say, uncached: for the rare
// questions about other resources than keys (a backup, a restore).
func (a *Authorizer) Review(ctx context.Context, p *authn.Principal, attrs authorizationv1.ResourceAttributes) (Decision, error) {
	extra := make(map[string]authorizationv1.ExtraValue, len(p.Extra))
	for k, v := range p.Extra {
		extra[k] = v
	}
	sar, err := a.reviews.Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User: p.Username, UID: p.UID, Groups: p.Groups, Extra: extra,
			ResourceAttributes: &attrs,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return Decision{}, fmt.Errorf("subject access review: %w", err)
	}
	d := Decision{Allowed: sar.Status.Allowed, DecidedBy: "rbac"}
	if sar.Status.Reason != "" {
		d.DecidedBy = "rbac: " + sar.Status.Reason
	}
	return d, nil
}

// cacheKey identifies a question: it runs on every call, so it hashes one
// length-prefixed buffer instead of formatting. Groups, Extra's keys and
// each Extra value list are sorted only when they are not already (the API
// server sends them in a stable order), on copies: a principal is shared by
// the calls of its token. Extra is part of the question (a SAR passes it on,
// and authorizers and webhooks may decide on it), so two principals that
// differ only in Extra never share an answer.
func cacheKey(r Request) [32]byte {
	p := r.Principal
	var stack [1024]byte
	b := stack[:0]
	for _, f := range [...]string{p.Username, p.UID, r.Namespace, r.Name, r.Action} {
		b = appendField(b, f)
	}
	b = appendList(b, p.Groups)
	var keyStack [8]string
	keys := keyStack[:0]
	for k := range p.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)))
	for _, k := range keys {
		b = appendField(b, k)
		b = appendList(b, p.Extra[k])
	}
	return sha256.Sum256(b)
}

// appendList appends a count and the sorted values.
func appendList(b []byte, values []string) []byte {
	if !slices.IsSorted(values) {
		var stack [16]string
		values = append(stack[:0], values...)
		slices.Sort(values)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(values)))
	for _, v := range values {
		b = appendField(b, v)
	}
	return b
}

func appendField(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
