package dataplane

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/audit"
	"github.com/kubekms/kubekms/internal/quota"
)

// A handler reached without the call the interceptor makes (or with one
// that was never authenticated) is a programming error: every method of
// the service refuses with codes.Internal instead of serving with an empty
// call whose audit record would be lost. The methods come from the service
// descriptor, so a new operation is checked too.
func TestHandlersRefuseWithoutCall(t *testing.T) {
	s := &Server{}
	contexts := map[string]context.Context{
		"no call":                context.Background(),
		"call not authenticated": withCall(context.Background(), &call{op: "Encrypt"}),
	}
	for _, m := range kmsv1.KeyManagementService_ServiceDesc.Methods {
		for name, ctx := range contexts {
			t.Run(m.MethodName+"/"+name, func(t *testing.T) {
				// A nil interceptor calls the Server's method directly, as
				// a server without the data plane's interceptor would.
				_, err := m.Handler(s, ctx, func(any) error { return nil }, nil)
				if status.Code(err) != codes.Internal || ReasonOf(err) != ReasonInternal {
					t.Fatalf("got %v (reason %q), want codes.Internal with %s", err, ReasonOf(err), ReasonInternal)
				}
			})
		}
	}
}

// The audit record is made from the call value, field for field: the key
// that did the work and its version, the key asked for when the call was
// refused before the handler found one, ReEncrypt's source and destination
// as two fields, and what decided.
func TestAuditRecordOfCall(t *testing.T) {
	p := newPlane(t, planeOptions{quota: &quota.Config{Defaults: quota.Limits{Symmetric: new(1000.0), RSA: new(0.01)}}})
	payments := p.addKey("payments")
	p.addKey("other", func(k *kmsv1alpha1.Key) { k.Status.CurrentVersion = 3 })
	p.addKey("signer", func(k *kmsv1alpha1.Key) {
		k.Spec.KeySpec, k.Status.KeyUsage = kmsv1alpha1.KeySpecRSA2048, kmsv1alpha1.KeyUsageSignVerify
	})
	p.grant(payments, "frontend-decrypt", "web/frontend", time.Time{}, "Decrypt", "ReEncryptFrom")
	owner, frontend := as(ownerToken), as(granteeToken)
	enc, err := p.client.Encrypt(owner, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: []byte("card")})
	if err != nil {
		t.Fatal(err)
	}
	// A rotation: the ciphertext's version is no longer the current one.
	p.addKey("payments", func(k *kmsv1alpha1.Key) { k.Status.CurrentVersion = 2 })
	// The RSA class allows one call per 100s; the second is throttled.
	if _, err := p.client.DescribeKey(owner, &kmsv1.DescribeKeyRequest{KeyId: "signer"}); err != nil {
		t.Fatal(err)
	}

	ref := func(name string, version uint32) *audit.KeyRef {
		return &audit.KeyRef{Namespace: "shop", Name: name, KeyID: keyIDOf(name), Version: version}
	}
	const ownerPolicy = "KeyPolicy payments (initialPolicy) statement \"Owner\""
	tests := map[string]struct {
		call           func() error
		wantCode       codes.Code
		wantOutcome    string
		wantKey        *audit.KeyRef
		wantDest       *audit.KeyRef
		wantDecidedBy  string
		wantPrincipal  string
		wantRequested  string
		wantContextKey []string
	}{
		"encrypt names the key at its current version": {
			call: func() error {
				_, err := p.client.Encrypt(owner, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: []byte("x"), EncryptionContext: map[string]string{"order": "1"}})
				return err
			},
			wantCode: codes.OK, wantOutcome: audit.Allowed, wantKey: ref("payments", 2), wantDecidedBy: ownerPolicy,
			wantPrincipal: "system:serviceaccount:shop:api", wantRequested: "payments", wantContextKey: []string{"order"},
		},
		"decrypt names the ciphertext's version and the grant that allowed it": {
			call: func() error {
				_, err := p.client.Decrypt(frontend, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
				return err
			},
			wantCode: codes.OK, wantOutcome: audit.Allowed, wantKey: ref("payments", 1), wantDecidedBy: "KeyGrant frontend-decrypt",
			wantPrincipal: "system:serviceaccount:web:frontend",
		},
		"a refusal names the key the caller may not use": {
			call: func() error {
				_, err := p.client.Encrypt(frontend, &kmsv1.EncryptRequest{KeyId: "shop/payments", Plaintext: []byte("x")})
				return err
			},
			wantCode: codes.PermissionDenied, wantOutcome: audit.Denied, wantKey: ref("payments", 2),
			wantPrincipal: "system:serviceaccount:web:frontend", wantRequested: "shop/payments",
		},
		"an unknown key is named only as requested": {
			call: func() error {
				_, err := p.client.Encrypt(owner, &kmsv1.EncryptRequest{KeyId: "nope", Plaintext: []byte("x")})
				return err
			},
			wantCode: codes.PermissionDenied, wantOutcome: audit.Denied,
			wantPrincipal: "system:serviceaccount:shop:api", wantRequested: "nope",
		},
		"an invalid request names the key asked for, without a version": {
			call: func() error {
				_, err := p.client.Encrypt(owner, &kmsv1.EncryptRequest{KeyId: "payments"})
				return err
			},
			wantCode: codes.InvalidArgument, wantOutcome: audit.Error, wantKey: ref("payments", 0),
			wantPrincipal: "system:serviceaccount:shop:api", wantRequested: "payments",
		},
		"a throttled call names the key asked for, whose class it counted in": {
			call: func() error {
				_, err := p.client.DescribeKey(owner, &kmsv1.DescribeKeyRequest{KeyId: "signer"})
				if err != nil && !strings.Contains(status.Convert(err).Message(), "rsa request quota") {
					t.Errorf("throttled as %q, want the rsa class", status.Convert(err).Message())
				}
				return err
			},
			wantCode: codes.ResourceExhausted, wantOutcome: audit.Denied, wantKey: ref("signer", 0),
			wantPrincipal: "system:serviceaccount:shop:api", wantRequested: "signer",
		},
		"reencrypt to another key names the source and the destination": {
			call: func() error {
				_, err := p.client.ReEncrypt(owner, &kmsv1.ReEncryptRequest{CiphertextBlob: enc.CiphertextBlob, DestinationKeyId: "other"})
				return err
			},
			wantCode: codes.OK, wantOutcome: audit.Allowed, wantKey: ref("payments", 1), wantDest: ref("other", 3),
			wantDecidedBy: "KeyPolicy other (initialPolicy) statement \"Owner\"", wantPrincipal: "system:serviceaccount:shop:api",
		},
		"reencrypt refused on the destination names only the source": {
			call: func() error {
				_, err := p.client.ReEncrypt(frontend, &kmsv1.ReEncryptRequest{CiphertextBlob: enc.CiphertextBlob, DestinationKeyId: "shop/other"})
				return err
			},
			wantCode: codes.PermissionDenied, wantOutcome: audit.Denied, wantKey: ref("payments", 1),
			wantPrincipal: "system:serviceaccount:web:frontend",
		},
		"an unauthenticated call names nobody and no key": {
			call: func() error {
				_, err := p.client.Encrypt(as("forged"), &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: []byte("x")})
				return err
			},
			wantCode: codes.Unauthenticated, wantOutcome: audit.Denied, wantRequested: "payments",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p.clock.Step(time.Second)
			err := tc.call()
			if status.Code(err) != tc.wantCode {
				t.Fatalf("got %v, want %s", err, tc.wantCode)
			}
			r := p.sink.last(t)
			if r.EventTime != p.clock.Now() {
				t.Errorf("eventTime %s, want the fake clock's %s", r.EventTime, p.clock.Now())
			}
			if r.Outcome != tc.wantOutcome || r.Principal.Username != tc.wantPrincipal || r.DecidedBy != tc.wantDecidedBy ||
				r.RequestedKey != tc.wantRequested || strings.Join(r.EncryptionContextKeys, ",") != strings.Join(tc.wantContextKey, ",") {
				t.Errorf("record %+v: want outcome %q, principal %q, decidedBy %q, requestedKey %q, context keys %v",
					r, tc.wantOutcome, tc.wantPrincipal, tc.wantDecidedBy, tc.wantRequested, tc.wantContextKey)
			}
			if !sameRef(r.Key, tc.wantKey) || !sameRef(r.DestinationKey, tc.wantDest) {
				t.Errorf("key %+v, destination %+v; want %+v, %+v", r.Key, r.DestinationKey, tc.wantKey, tc.wantDest)
			}
		})
	}
}

func sameRef(a, b *audit.KeyRef) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// A KeyGrant stops allowing at its expiresAt, decided at the call's time
// from the injected clock, so the boundary is exact and the test waits for
// nothing (test/integration's "expires a grant at expiresAt" shows the same
// against a real API server and controller).
func TestGrantExpiresAtCallTime(t *testing.T) {
	p := newPlane(t, planeOptions{})
	key := p.addKey("payments")
	expires := testEpoch.Add(time.Minute)
	p.grant(key, "short", "web/frontend", expires, "Decrypt")
	enc, err := p.client.Encrypt(as(ownerToken), &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: []byte("card")})
	if err != nil {
		t.Fatal(err)
	}
	decrypt := func() error {
		_, err := p.client.Decrypt(as(granteeToken), &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
		return err
	}

	p.clock.SetTime(expires.Add(-time.Nanosecond))
	if err := decrypt(); err != nil {
		t.Fatalf("a nanosecond before expiresAt: %v", err)
	}
	if r := p.sink.last(t); r.DecidedBy != "KeyGrant short" {
		t.Fatalf("decided by %q, want the grant", r.DecidedBy)
	}

	p.clock.SetTime(expires)
	err = decrypt()
	if status.Code(err) != codes.PermissionDenied || ReasonOf(err) != ReasonAccessDenied {
		t.Fatalf("at expiresAt: got %v, want PermissionDenied (%s)", err, ReasonAccessDenied)
	}
	if r := p.sink.last(t); r.Outcome != audit.Denied || !r.EventTime.Equal(expires) {
		t.Fatalf("record %+v: want Denied at %s", r, expires)
	}
}

// Imported material stops working at validTo, at the call's time from the
// injected clock (test/integration's import spec shows it end to end).
func TestImportedMaterialExpiresAtCallTime(t *testing.T) {
	p := newPlane(t, planeOptions{})
	validTo := testEpoch.Add(time.Hour)
	p.addKey("byok", func(k *kmsv1alpha1.Key) {
		k.Spec.Origin = kmsv1alpha1.KeyOriginExternal
		k.Spec.Import = &kmsv1alpha1.KeyImport{ValidTo: &metav1.Time{Time: validTo}}
	})
	encrypt := func() error {
		_, err := p.client.Encrypt(as(ownerToken), &kmsv1.EncryptRequest{KeyId: "byok", Plaintext: []byte("x")})
		return err
	}
	p.clock.SetTime(validTo.Add(-time.Nanosecond))
	if err := encrypt(); err != nil {
		t.Fatalf("before validTo: %v", err)
	}
	p.clock.SetTime(validTo)
	err := encrypt()
	if status.Code(err) != codes.FailedPrecondition || ReasonOf(err) != ReasonKeyUnavailable ||
		!strings.Contains(status.Convert(err).Message(), "imported material of key shop/byok expired at") {
		t.Fatalf("at validTo: got %v, want FailedPrecondition (%s) naming the expiry", err, ReasonKeyUnavailable)
	}
}
