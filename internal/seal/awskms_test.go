package seal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/kubekms/kubekms/internal/testenv"
)

// awsEnv starts local-kms and points the AWS SDK's standard chain at it,
// as a user does with AWS_ENDPOINT_URL_KMS; it returns a key's ID.
func awsEnv(t testing.TB) (*testenv.LocalKMS, func() string) {
	t.Helper()
	lk, err := testenv.StartLocalKMS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lk.Stop)
	t.Setenv("AWS_ENDPOINT_URL_KMS", lk.Endpoint)
	t.Setenv("AWS_REGION", "eu-west-2")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	newKey := func() string {
		cfg, err := config.LoadDefaultConfig(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out, err := kms.NewFromConfig(cfg).CreateKey(context.Background(), &kms.CreateKeyInput{})
		if err != nil {
			t.Fatal(err)
		}
		return *out.KeyMetadata.KeyId
	}
	return lk, newKey
}

func TestAWSKMSSealsThroughTheService(t *testing.T) {
	ctx := context.Background()
	lk, newKey := awsEnv(t)
	keyID := newKey()
	s, err := NewAWSKMS(ctx, keyID)
	if err != nil {
		t.Fatal(err)
	}
	if s.Provider() != AWSKMSProvider {
		t.Fatalf("provider %q", s.Provider())
	}
	material := bytes.Repeat([]byte{0x5a}, 32)
	aad := MaterialAAD("8d5c4e8a-0000-4000-8000-000000000001", 3, "SYMMETRIC_DEFAULT")
	blob, err := s.Seal(ctx, material, aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, material) || blob[0] != awsBlobFormat {
		t.Fatalf("blob %x: want format %d and no material", blob, awsBlobFormat)
	}
	got, err := s.Unseal(ctx, blob, aad)
	if err != nil || !bytes.Equal(got, material) {
		t.Fatalf("Unseal = %x, %v", got, err)
	}

	// Bound to its associated data: another version's does not unseal it.
	if _, err := s.Unseal(ctx, blob, MaterialAAD("8d5c4e8a-0000-4000-8000-000000000001", 4, "SYMMETRIC_DEFAULT")); !errors.Is(err, ErrUnseal) {
		t.Fatalf("Unseal with other associated data: %v, want ErrUnseal", err)
	}
	// Tampered.
	bad := bytes.Clone(blob)
	bad[len(bad)-1] ^= 1
	if _, err := s.Unseal(ctx, bad, aad); !errors.Is(err, ErrUnseal) {
		t.Fatalf("Unseal of a tampered blob: %v, want ErrUnseal", err)
	}
	// A sealer for another AWS KMS key refuses it.
	other, err := NewAWSKMS(ctx, newKey())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Unseal(ctx, blob, aad); !errors.Is(err, ErrUnseal) {
		t.Fatalf("Unseal with another AWS key: %v, want ErrUnseal", err)
	}
	// Over AWS's limit: a clear error, nothing sent.
	if _, err := s.Seal(ctx, make([]byte, 4097), aad); err == nil || !strings.Contains(err.Error(), "4096-byte limit") {
		t.Fatalf("Seal of 4097 bytes: %v", err)
	}

	// The service gone: unavailable, not "corrupt", so nothing treats the
	// material as lost.
	lk.Stop()
	_, err = s.Unseal(ctx, blob, aad)
	if !errors.Is(err, ErrRootUnavailable) || errors.Is(err, ErrUnseal) {
		t.Fatalf("Unseal with AWS KMS down: %v, want ErrRootUnavailable", err)
	}
	if _, err := s.Seal(ctx, material, aad); !errors.Is(err, ErrRootUnavailable) {
		t.Fatalf("Seal with AWS KMS down: %v, want ErrRootUnavailable", err)
	}
}

func TestNewAWSKMSFailsFastWithAWSsError(t *testing.T) {
	ctx := context.Background()
	_, _ = awsEnv(t)
	_, err := NewAWSKMS(ctx, "arn:aws:kms:eu-west-2:111122223333:key/00000000-0000-4000-8000-000000000000")
	if err == nil || !strings.Contains(err.Error(), "does not encrypt and decrypt") || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("NewAWSKMS with a key that does not exist = %v, want AWS's NotFound", err)
	}
	if _, err := NewAWSKMS(ctx, ""); err == nil || !strings.Contains(err.Error(), "--aws-kms-key-id") {
		t.Fatalf("NewAWSKMS without a key = %v", err)
	}
	t.Setenv("AWS_REGION", "")
	if _, err := NewAWSKMS(ctx, "alias/x"); err == nil || !strings.Contains(err.Error(), "AWS_REGION") {
		t.Fatalf("NewAWSKMS without a region = %v", err)
	}
}

// BenchmarkUnseal is the cost of unsealing one key version (done once per
// version per replica, then cached): file (AES-GCM in memory) and awskms
// (an AWS KMS Decrypt, here against local-kms on loopback).
func BenchmarkUnseal(b *testing.B) {
	ctx := context.Background()
	aad := MaterialAAD("8d5c4e8a-0000-4000-8000-000000000001", 1, "SYMMETRIC_DEFAULT")
	path := filepath.Join(b.TempDir(), "root.key")
	if err := os.WriteFile(path, bytes.Repeat([]byte{1}, RootKeySize), 0o400); err != nil {
		b.Fatal(err)
	}
	file, err := LoadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	_, newKey := awsEnv(b)
	aws, err := NewAWSKMS(ctx, newKey())
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range []Sealer{file, aws} {
		blob, err := s.Seal(ctx, make([]byte, 32), aad)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(s.Provider(), func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Unseal(ctx, blob, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
