package operator

import (
	"context"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// A root of trust this release does not have is refused with a message
// that names it and the one there is, before anything connects anywhere.
func TestUnknownRootOfTrustIsRefused(t *testing.T) {
	_, err := New(context.Background(), &rest.Config{Host: "https://127.0.0.1:1"}, Options{Namespace: "kubekms-system", RootOfTrust: "pkcs11"})
	if err == nil || !strings.Contains(err.Error(), `root of trust "pkcs11"`) || !strings.Contains(err.Error(), `"local"`) {
		t.Fatalf("err = %v, want a refusal naming pkcs11 and local", err)
	}
}
