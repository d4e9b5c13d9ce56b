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

// A migration only moves away from the local root key, to another
// provider: anything else is refused at start, naming what to do instead.
func TestPreviousRootOfTrustIsChecked(t *testing.T) {
	for _, tc := range []struct{ current, previous, want string }{
		{RootOfTrustAWSKMS, RootOfTrustFile, "only local can be migrated from"},
		{RootOfTrustLocal, RootOfTrustLocal, "rotate it (RootOfTrust spec.rotationRequest)"},
	} {
		_, err := New(context.Background(), &rest.Config{Host: "https://127.0.0.1:1"}, Options{Namespace: "kubekms-system",
			RootOfTrust: tc.current, PreviousRootOfTrust: tc.previous, AWSKMSKeyID: "alias/x"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--root-of-trust %s --previous-root-of-trust %s: err = %v, want %q", tc.current, tc.previous, err, tc.want)
		}
	}
}
