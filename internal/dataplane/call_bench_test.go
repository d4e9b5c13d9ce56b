package dataplane

import (
	"testing"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	"github.com/kubekms/kubekms/internal/quota"
)

// BenchmarkCall measures one call through the whole server side as
// production runs it (interceptors, cached authentication, key resolution,
// quota, policy, crypto, audit), over an in-memory connection, so that
// allocations added on the hot path show in allocs/op. The client side is
// included and constant.
func BenchmarkCall(b *testing.B) {
	p := newPlane(b, planeOptions{quota: &quota.Config{Defaults: quota.Limits{Symmetric: new(1e9)}}})
	p.addKey("payments")
	ctx := as(ownerToken)
	plaintext := make([]byte, 4096)
	enc, err := p.client.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: plaintext})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Encrypt4KiB", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.client.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: plaintext}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Decrypt4KiB", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.client.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
