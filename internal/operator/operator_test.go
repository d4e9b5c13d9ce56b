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

// A migration moves from one provider to another, never to local, and
// needs the previous root's own settings: anything else is refused at
// start, naming what to do instead.
func TestPreviousRootOfTrustIsChecked(t *testing.T) {
	for _, tc := range []struct {
		current, previous, want string
		opts                    Options
	}{
		{RootOfTrustLocal, RootOfTrustLocal, "rotate it: RootOfTrust spec.rotationRequest", Options{}},
		{RootOfTrustLocal, RootOfTrustFile, "never to local", Options{PreviousRootKeyPath: "/x"}},
		{RootOfTrustAWSKMS, RootOfTrustAWSKMS, "a new root key of the same provider is a rotation", Options{PreviousAWSKMSKeyID: "alias/y"}},
		{RootOfTrustAWSKMS, "vault", `--previous-root-of-trust "vault"`, Options{}},
		{RootOfTrustAWSKMS, RootOfTrustFile, "previous root of trust file: set --root-key-path", Options{}},
		{RootOfTrustFile, RootOfTrustAWSKMS, "previous root of trust awskms: the awskms root of trust needs a key", Options{}},
	} {
		o := tc.opts
		o.Namespace, o.RootOfTrust, o.PreviousRootOfTrust, o.AWSKMSKeyID, o.RootKeyPath = "kubekms-system", tc.current, tc.previous, "alias/x", "/r"
		_, err := New(context.Background(), &rest.Config{Host: "https://127.0.0.1:1"}, o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--root-of-trust %s --previous-root-of-trust %s: err = %v, want %q", tc.current, tc.previous, err, tc.want)
		}
	}
}
