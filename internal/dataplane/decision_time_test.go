package dataplane

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/policy"
)

// A grant that expires while the caller's TokenReview is in flight is not
// honoured: what expires is judged when the decision is taken, after
// authentication, not when the request arrived (found in the review of
// issue 13: the first version of the call value read the clock only on
// arrival). The grantee's TokenReview here moves the clock a minute past
// expiresAt.
func TestGrantExpiredDuringAuthenticationIsNotHonoured(t *testing.T) {
	expires := testEpoch.Add(time.Second)
	p := newPlane(t, planeOptions{reviewing: func(p *plane, token string) {
		if token == granteeToken {
			p.clock.SetTime(expires.Add(time.Minute))
		}
	}})
	key := p.addKey("payments")
	p.grant(key, "short", "web/frontend", expires, "Decrypt")
	enc, err := p.client.Encrypt(as(ownerToken), &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: []byte("card")})
	if err != nil {
		t.Fatal(err)
	}

	p.clock.SetTime(expires.Add(-time.Millisecond)) // the call arrives 1ms before expiresAt
	_, err = p.client.Decrypt(as(granteeToken), &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
	if status.Code(err) != codes.PermissionDenied {
		r := p.sink.last(t)
		t.Fatalf("decided at %s, a minute after the grant expired (%s): got %v (decided by %q, eventTime %s), want PermissionDenied",
			p.clock.Now(), expires, err, r.DecidedBy, r.EventTime)
	}
	if r := p.sink.last(t); !r.EventTime.After(expires) {
		t.Fatalf("the record's eventTime %s is before expiresAt %s: it must be when the decision was taken", r.EventTime, expires)
	}
}

// Under the default policy ExplainAccess asks RBAC the verb the action
// table names for it, as the admin webhook does: restore for
// CancelKeyDeletion (found in the same review: it asked cancelkeydeletion,
// which no shipped role holds, and so told a key admin who may restore a
// key that they may not).
func TestExplainAccessAsksTheDefaultPolicyVerb(t *testing.T) {
	want := policy.DefaultPolicyVerb(policy.ActionCancelKeyDeletion)
	var asked []string
	p := newPlane(t, planeOptions{rbac: func(verb string) bool {
		asked = append(asked, verb)
		return verb == want
	}})
	p.addKey("payments", func(k *kmsv1alpha1.Key) { k.Spec.InitialPolicy = nil }) // the default policy: RBAC decides
	resp, err := p.client.ExplainAccess(as(ownerToken), &kmsv1.ExplainAccessRequest{KeyId: "payments", Action: policy.ActionCancelKeyDeletion})
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) == 0 || asked[0] != want || !resp.Allowed {
		t.Fatalf("ExplainAccess asked RBAC for %v and answered allowed=%v; the table's default-policy verb is %q", asked, resp.Allowed, want)
	}
}
