package dataplane

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/seal"
)

// With the root of trust gone, a call that needs material not in memory is
// UNAVAILABLE (KMSInvalidStateException), never "invalid ciphertext" or
// "does not verify"; material already in memory keeps serving (issue 15
// and its review, findings 3 to 5).
func TestRootUnavailableIsNotABadValue(t *testing.T) {
	var mu sync.Mutex
	gone := map[int32]error{}
	p := newPlane(t, planeOptions{material: func(ctx context.Context, keyID string, version int32, spec string) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		if err := gone[version]; err != nil {
			return nil, err
		}
		return testMaterial(ctx, keyID, version, spec)
	}})
	unavailable := func(t *testing.T, what string, err error) {
		t.Helper()
		if status.Code(err) != codes.Unavailable || ReasonOf(err) != ReasonInvalidState {
			t.Fatalf("%s = %v; want UNAVAILABLE, %s", what, err, ReasonInvalidState)
		}
		// What to restore is for kubekms's operators, not every caller.
		for _, detail := range []string{"kubekms-root-key", "CKR_", `"file"`} {
			if strings.Contains(status.Convert(err).Message(), detail) {
				t.Fatalf("%s tells the caller %q: %v", what, detail, err)
			}
		}
	}
	for name, cause := range map[string]error{
		"gone":  fmt.Errorf("%w: root key Secret ns/kubekms-root-key is missing", seal.ErrRootUnavailable),
		"wrong": fmt.Errorf("%w: sealed by root of trust %q, this manager uses %q", seal.ErrWrongRoot, "file", "local"),
		"down":  fmt.Errorf("%w: HSM decrypt: CKR_DEVICE_ERROR", seal.ErrRootUnavailable),
	} {
		t.Run(name, func(t *testing.T) {
			mu.Lock()
			clear(gone)
			mu.Unlock()
			mac := p.addKey("mac-"+name, func(k *kmsv1alpha1.Key) {
				k.Spec.KeySpec, k.Status.KeyUsage = kmsv1alpha1.KeySpecHMAC256, kmsv1alpha1.KeyUsageGenerateVerifyMAC
			})
			sym := p.addKey("sym-" + name)
			ctx := as(ownerToken)
			// Version 1 in memory.
			m1, err := p.client.GenerateMac(ctx, &kmsv1.GenerateMacRequest{KeyId: mac.Name, Message: []byte("m")})
			if err != nil {
				t.Fatal(err)
			}
			c1, err := p.client.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: sym.Name, Plaintext: []byte("p")})
			if err != nil {
				t.Fatal(err)
			}
			// Rotated while the root is away: version 2 cannot be unsealed.
			mu.Lock()
			gone[2] = cause
			mu.Unlock()
			for _, k := range []*kmsv1alpha1.Key{mac, sym} {
				k.Status.CurrentVersion = 2
				p.keys.Upsert(k)
			}

			if out, err := p.client.VerifyMac(ctx, &kmsv1.VerifyMacRequest{KeyId: mac.Name, Message: []byte("m"), Mac: m1.Mac}); err != nil || !out.MacValid || out.KeyVersion != 1 {
				t.Fatalf("VerifyMac of a version-1 MAC = %v, %v; want valid by version 1, in memory", out, err)
			}
			_, err = p.client.VerifyMac(ctx, &kmsv1.VerifyMacRequest{KeyId: mac.Name, Message: []byte("m"), Mac: make([]byte, 32)})
			unavailable(t, "VerifyMac of a MAC version 2 might have made", err)
			_, err = p.client.GenerateMac(ctx, &kmsv1.GenerateMacRequest{KeyId: mac.Name, Message: []byte("m")})
			unavailable(t, "GenerateMac with version 2", err)
			_, err = p.client.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: sym.Name, Plaintext: []byte("p")})
			unavailable(t, "Encrypt with version 2", err)
			if out, err := p.client.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: c1.CiphertextBlob}); err != nil || string(out.Plaintext) != "p" {
				t.Fatalf("Decrypt of a version-1 ciphertext = %v, %v; want it served from memory", out, err)
			}
		})
	}
}
