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
	// material as lost; and the error (which can reach a key's status)
	// names no AWS account or key.
	lk.Stop()
	_, err = s.Unseal(ctx, blob, aad)
	if !errors.Is(err, ErrRootUnavailable) || errors.Is(err, ErrUnseal) {
		t.Fatalf("Unseal with AWS KMS down: %v, want ErrRootUnavailable", err)
	}
	if strings.Contains(err.Error(), keyID) || strings.Contains(err.Error(), "arn:") || strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("the error shows AWS details: %v", err)
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

// An alias is resolved once, at start: re-pointing it (AWS's manual
// rotation) does not move a running manager to another key; a manager
// started after it is given the new key (the operator's root check then
// refuses it while material sealed under the old one exists).
func TestAWSKMSPinsTheKeyAnAliasNamedAtStart(t *testing.T) {
	ctx := context.Background()
	_, newKey := awsEnv(t)
	a, b := newKey(), newKey()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := kms.NewFromConfig(cfg)
	if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: new("alias/kubekms"), TargetKeyId: &a}); err != nil {
		t.Fatal(err)
	}
	s, err := NewAWSKMS(ctx, "alias/kubekms")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(s.KeyARN(), ":key/"+a) {
		t.Fatalf("KeyARN = %q, want the ARN of %s", s.KeyARN(), a)
	}
	aad := MaterialAAD("k", 1, "SYMMETRIC_DEFAULT")
	blob, err := s.Seal(ctx, []byte("material"), aad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: new("alias/kubekms"), TargetKeyId: &b}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Unseal(ctx, blob, aad); err != nil || string(got) != "material" {
		t.Fatalf("Unseal after the alias moved = %q, %v", got, err)
	}
	again, err := s.Seal(ctx, []byte("again"), aad)
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := NewAWSKMS(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pinned.Unseal(ctx, again, aad); err != nil || string(got) != "again" {
		t.Fatalf("a seal after the alias moved is not under the first key: %q, %v", got, err)
	}
	later, err := NewAWSKMS(ctx, "alias/kubekms")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := later.Unseal(ctx, blob, aad); !errors.Is(err, ErrUnseal) {
		t.Fatalf("a manager started after the move unsealed the old key's blob: %v", err)
	}
}

// An endpoint that answers for another key (a man in the middle, a
// misrouted proxy) is not believed.
func TestAWSKMSRefusesAnAnswerForAnotherKey(t *testing.T) {
	ctx := context.Background()
	s := &AWSKMS{client: lyingKMS{}, keyID: "alias/x", keyARN: "arn:aws:kms:eu-west-2:111122223333:key/good"}
	if got, err := s.Unseal(ctx, []byte{awsBlobFormat, 1, 2, 3}, nil); !errors.Is(err, ErrRootUnavailable) || got != nil {
		t.Fatalf("Unseal = %q, %v; want nothing and ErrRootUnavailable", got, err)
	}
	if got, err := s.Seal(ctx, []byte("material"), nil); !errors.Is(err, ErrRootUnavailable) || got != nil {
		t.Fatalf("Seal = %x, %v; want nothing and ErrRootUnavailable", got, err)
	}
}

type lyingKMS struct{}

func (lyingKMS) Encrypt(context.Context, *kms.EncryptInput, ...func(*kms.Options)) (*kms.EncryptOutput, error) {
	return &kms.EncryptOutput{KeyId: new("arn:aws:kms:eu-west-2:999999999999:key/evil"), CiphertextBlob: []byte{9}}, nil
}

func (lyingKMS) Decrypt(context.Context, *kms.DecryptInput, ...func(*kms.Options)) (*kms.DecryptOutput, error) {
	return &kms.DecryptOutput{KeyId: new("arn:aws:kms:eu-west-2:999999999999:key/evil"), Plaintext: []byte("attacker")}, nil
}

// Material crosses the endpoint in the clear unless it is https.
func TestAWSKMSRefusesPlainHTTPOffLoopback(t *testing.T) {
	_, _ = awsEnv(t)
	for endpoint, ok := range map[string]bool{
		"http://kms.example.com":  false,
		"http://10.0.0.1:4566":    false,
		"ftp://kms.example.com":   false,
		"https://kms.example.com": true,
		"http://127.0.0.1:4566":   true,
		"http://localhost:4566":   true,
		"http://[::1]:4566":       true,
	} {
		err := checkEndpoint(&endpoint)
		if (err == nil) != ok {
			t.Errorf("checkEndpoint(%s) = %v, want ok=%v", endpoint, err, ok)
		}
	}
	t.Setenv("AWS_ENDPOINT_URL_KMS", "http://kms.example.com")
	if _, err := NewAWSKMS(context.Background(), "alias/x"); err == nil || !strings.Contains(err.Error(), "must be https") {
		t.Fatalf("NewAWSKMS over http = %v", err)
	}
}
