package dataplane

import (
	"time"

	"google.golang.org/grpc/codes"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keycache"
	"github.com/kubekms/kubekms/internal/keyspec"
)

// checkKey is the one check of a key before use at now (the call's time):
// not disabled, of the usage the operation needs ("" for any), enabled,
// and with material when needMaterial. Only callers allowed to use the key
// get here, so only they learn its state.
func checkKey(key *keycache.Key, usage kmsv1alpha1.KeyUsage, needMaterial bool, now time.Time) error {
	switch {
	case key.State == kmsv1alpha1.KeyStateDisabled:
		return newError(codes.FailedPrecondition, ReasonDisabled, "key %s/%s is disabled", key.Namespace, key.Name)
	case !key.ValidTo.IsZero() && !now.Before(key.ValidTo):
		// Checked here too, not only by the controller, so expiry is exact.
		return newError(codes.FailedPrecondition, ReasonKeyUnavailable, "the imported material of key %s/%s expired at %s",
			key.Namespace, key.Name, key.ValidTo.UTC().Format(time.RFC3339))
	case usage != "" && key.KeyUsage != "" && key.KeyUsage != usage:
		return newError(codes.InvalidArgument, ReasonInvalidKeyUsage, "key %s/%s has key usage %s, not %s", key.Namespace, key.Name, key.KeyUsage, usage)
	case key.State != kmsv1alpha1.KeyStateEnabled || (needMaterial && key.CurrentVersion == 0):
		return newError(codes.FailedPrecondition, ReasonKeyUnavailable, "key %s/%s is %s and has no usable material yet", key.Namespace, key.Name, key.State)
	}
	return nil
}

// usable says whether a key can encrypt at now (symmetric encryption).
func usable(key *keycache.Key, now time.Time) error { return symmetricKey(key, true, now) }

// usableForDecrypt is usable without needing a current version.
func usableForDecrypt(key *keycache.Key, now time.Time) error { return symmetricKey(key, false, now) }

func symmetricKey(key *keycache.Key, needMaterial bool, now time.Time) error {
	if err := checkKey(key, kmsv1alpha1.KeyUsageEncryptDecrypt, needMaterial, now); err != nil {
		return err
	}
	if spec, _ := keyspec.Lookup(string(key.KeySpec)); spec.Family != keyspec.FamilySymmetric {
		return newError(codes.InvalidArgument, ReasonInvalidKeyUsage,
			"key %s/%s is a %s key: set encryption_algorithm to RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1", key.Namespace, key.Name, key.KeySpec)
	}
	return nil
}
