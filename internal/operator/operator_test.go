package operator

import (
	"context"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// A root of trust kubekms does not have is refused with a message that
// names it and the ones there are, before anything connects anywhere.
func TestUnknownRootOfTrustIsRefused(t *testing.T) {
	_, err := New(context.Background(), &rest.Config{Host: "https://127.0.0.1:1"}, Options{Namespace: "kubekms-system", RootOfTrust: "vault"})
	if err == nil || !strings.Contains(err.Error(), `root of trust "vault"`) || !strings.Contains(err.Error(), `["local" "file" "awskms" "pkcs11"]`) {
		t.Fatalf("err = %v, want a refusal naming vault and every provider", err)
	}
}
