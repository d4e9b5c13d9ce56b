package dataplane

import (
	"slices"
	"testing"
	"time"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keycache"
)

// DescribeKey reports the algorithms of the key's spec and usage, as AWS
// does: encryption algorithms for ENCRYPT_DECRYPT keys (symmetric and RSA),
// signing algorithms for SIGN_VERIFY keys, MAC algorithms for HMAC keys,
// and nothing else.
func TestKeyMetadataAlgorithms(t *testing.T) {
	ed, sv, mac := kmsv1alpha1.KeyUsageEncryptDecrypt, kmsv1alpha1.KeyUsageSignVerify, kmsv1alpha1.KeyUsageGenerateVerifyMAC
	tests := map[string]struct {
		spec                                 kmsv1alpha1.KeySpecType
		usage                                kmsv1alpha1.KeyUsage
		wantEncryption, wantSigning, wantMAC []string
	}{
		"symmetric":      {kmsv1alpha1.KeySpecSymmetricDefault, ed, []string{"SYMMETRIC_DEFAULT"}, nil, nil},
		"rsa encryption": {kmsv1alpha1.KeySpecRSA2048, ed, []string{"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"}, nil, nil},
		"rsa signing": {kmsv1alpha1.KeySpecRSA4096, sv, nil, []string{"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
			"RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512"}, nil},
		"ecdsa":   {kmsv1alpha1.KeySpecECCNISTP521, sv, nil, []string{"ECDSA_SHA_512"}, nil},
		"ed25519": {kmsv1alpha1.KeySpecECCNISTEdwards25519, sv, nil, []string{"ED25519_SHA_512"}, nil},
		"hmac":    {kmsv1alpha1.KeySpecHMAC256, mac, nil, nil, []string{"HMAC_SHA_256"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			key := &keycache.Key{Namespace: "shop", Name: "k", KeyIDString: "8d5c4e8a-1c2b-4f3e-9a7d-0e6f5b4c3a21",
				KeySpec: tc.spec, KeyUsage: tc.usage, State: kmsv1alpha1.KeyStateEnabled, CurrentVersion: 2, Created: time.Unix(1, 0)}
			md := keyMetadata(key)
			if !slices.Equal(md.EncryptionAlgorithms, tc.wantEncryption) || !slices.Equal(md.SigningAlgorithms, tc.wantSigning) ||
				!slices.Equal(md.MacAlgorithms, tc.wantMAC) {
				t.Fatalf("encryption %v, signing %v, mac %v; want %v, %v, %v", md.EncryptionAlgorithms, md.SigningAlgorithms,
					md.MacAlgorithms, tc.wantEncryption, tc.wantSigning, tc.wantMAC)
			}
			if md.KeySpec != string(tc.spec) || md.KeyUsage != string(tc.usage) || md.KeyId != key.KeyIDString || md.CurrentVersion != 2 {
				t.Fatalf("metadata %v does not describe the key", md)
			}
		})
	}
}
