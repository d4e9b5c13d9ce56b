//go:build pkcs11

package operator_test

import (
	"context"
	"testing"

	"github.com/kubekms/kubekms/internal/operator"
	"github.com/kubekms/kubekms/internal/seal"
	"github.com/kubekms/kubekms/internal/testenv"
)

// The pkcs11 root of trust (SoftHSM2) through the whole manager, as the
// other providers in TestRootsOfTrustThroughTheDataPlane.
func TestPKCS11RootOfTrustThroughTheDataPlane(t *testing.T) {
	h, err := testenv.StartSoftHSM("operator-root", "operator-other")
	if err != nil {
		t.Fatal(err)
	}
	cfg := func(label string) seal.PKCS11Config {
		return seal.PKCS11Config{Module: h.Module, TokenLabel: h.TokenLabel, KeyLabel: label, PINFile: h.PINFile}
	}
	opts := operator.Options{RootOfTrust: operator.RootOfTrustPKCS11, PKCS11: cfg("operator-root")}
	wrong := operator.Options{RootOfTrust: operator.RootOfTrustPKCS11, PKCS11: cfg("operator-other")}
	exerciseRoot(t, opts, wrong, func() (same, other seal.Sealer, gone func()) {
		s, err := seal.NewPKCS11(context.Background(), cfg("operator-root"))
		if err != nil {
			t.Fatal(err)
		}
		o, err := seal.NewPKCS11(context.Background(), cfg("operator-other"))
		if err != nil {
			t.Fatal(err)
		}
		return s, o, nil
	})
}

// Migration local → pkcs11 (SoftHSM2) while a load generator decrypts old
// ciphertexts, as TestRootOfTrustMigrationUnderLoad does for file.
func TestPKCS11MigrationUnderLoad(t *testing.T) {
	h, err := testenv.StartSoftHSM("migration-root")
	if err != nil {
		t.Fatal(err)
	}
	migrateUnderLoad(t, operator.Options{RootOfTrust: operator.RootOfTrustPKCS11,
		PKCS11: seal.PKCS11Config{Module: h.Module, TokenLabel: h.TokenLabel, KeyLabel: "migration-root", PINFile: h.PINFile}})
}
