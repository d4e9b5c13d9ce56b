//go:build !pkcs11

package seal

import (
	"context"
	"errors"
)

// PKCS11Available is false in the default (static, cgo-free) build.
const PKCS11Available = false

// PKCS11 is only in builds with the pkcs11 tag.
type PKCS11 struct{ Sealer }

// NewPKCS11 explains where the pkcs11 root of trust is.
func NewPKCS11(context.Context, PKCS11Config) (*PKCS11, error) {
	return nil, errors.New("this build has no pkcs11 root of trust (it needs cgo to load the HSM's library): use the -pkcs11 image, or build with make build-pkcs11")
}

// Close does nothing.
func (*PKCS11) Close() {}
