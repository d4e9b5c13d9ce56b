//go:build !pkcs11

package seal

import (
	"context"
	"strings"
	"testing"
)

// The default (static) build says where the pkcs11 root of trust is.
func TestPKCS11IsInThePKCS11ImageOnly(t *testing.T) {
	_, err := NewPKCS11(context.Background(), PKCS11Config{Module: "/x.so", TokenLabel: "t", KeyLabel: "k", PINFile: "/p"})
	if err == nil || !strings.Contains(err.Error(), "use the -pkcs11 image") || PKCS11Available {
		t.Fatalf("NewPKCS11 in the default build = %v", err)
	}
}
