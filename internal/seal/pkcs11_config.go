package seal

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// PKCS11Provider is the provider name of the pkcs11 root of trust: an AES
// key in an HSM token encrypts every piece of material; the key never
// leaves the HSM. Only builds with the pkcs11 tag have it (the -pkcs11
// image, which needs cgo and the HSM's shared library).
const PKCS11Provider = "pkcs11"

// PKCS11Config names the HSM's module, the token, the key and the PIN.
type PKCS11Config struct {
	// Module is the path of the vendor's PKCS#11 shared library.
	Module string
	// TokenLabel and KeyLabel find the token and, on it, the AES key.
	TokenLabel, KeyLabel string
	// PINFile holds the user PIN (a mounted Secret); a trailing newline
	// is ignored.
	PINFile string
}

// Validate says which required setting is missing.
func (c PKCS11Config) Validate() error {
	var missing []string
	for flag, v := range map[string]string{"--pkcs11-module": c.Module, "--pkcs11-token-label": c.TokenLabel, "--pkcs11-key-label": c.KeyLabel, "--pkcs11-pin-file": c.PINFile} {
		if v == "" {
			missing = append(missing, flag)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the pkcs11 root of trust needs %s", strings.Join(slices.Sorted(slices.Values(missing)), ", "))
	}
	return nil
}

func (c PKCS11Config) pin() (string, error) {
	b, err := os.ReadFile(c.PINFile)
	if err != nil {
		return "", fmt.Errorf("read the PKCS#11 PIN: %w", err)
	}
	pin := strings.TrimRight(string(b), "\r\n")
	if pin == "" {
		return "", errors.New("the PKCS#11 PIN file " + c.PINFile + " is empty")
	}
	return pin, nil
}
