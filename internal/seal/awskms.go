package seal

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// AWSKMSProvider is the provider name of the awskms root of trust: a
// symmetric key in AWS KMS (or anything that speaks its API) encrypts every
// piece of material; the root key never leaves that service.
const AWSKMSProvider = "awskms"

const (
	// awsBlobFormat marks a blob sealed by AWS KMS: format (1 B) | the
	// CiphertextBlob AWS KMS returned.
	awsBlobFormat = 2
	// awsMaxPlaintext is AWS KMS Encrypt's limit.
	awsMaxPlaintext = 4096
	// awsContextKey carries the associated data as the encryption context,
	// which AWS KMS binds to the ciphertext (and records in CloudTrail: the
	// associated data names a key ID, version and key spec, nothing secret).
	awsContextKey = "kubekms:aad"
	// awsCallTimeout bounds each call, so a root of trust that stopped
	// answering fails a load instead of holding it.
	awsCallTimeout = 10 * time.Second
)

// ErrRootUnavailable is wrapped by errors that say the root of trust could
// not be reached or refused to work (network, credentials, a disabled
// key): the material is fine and unseals once the root of trust is back,
// unlike ErrUnseal.
var ErrRootUnavailable = errors.New("root of trust unavailable")

// kmsAPI is the part of the AWS KMS client the sealer calls.
type kmsAPI interface {
	Encrypt(ctx context.Context, in *kms.EncryptInput, opts ...func(*kms.Options)) (*kms.EncryptOutput, error)
	Decrypt(ctx context.Context, in *kms.DecryptInput, opts ...func(*kms.Options)) (*kms.DecryptOutput, error)
}

// AWSKMS seals with AWS KMS Encrypt and unseals with Decrypt under one key.
type AWSKMS struct {
	client kmsAPI
	keyID  string
}

// NewAWSKMS returns the awskms sealer for keyID (a key ID, key ARN, alias
// name or alias ARN). Region, endpoint (AWS_ENDPOINT_URL_KMS or
// AWS_ENDPOINT_URL for an API-compatible service) and credentials come from
// the SDK's usual chain: environment, shared config, web identity (IRSA),
// the instance role. A round trip is made before it is returned, so a wrong
// key, region or credential fails the start with AWS's own error.
func NewAWSKMS(ctx context.Context, keyID string) (*AWSKMS, error) {
	if keyID == "" {
		return nil, errors.New("the awskms root of trust needs a key: set --aws-kms-key-id (a key ID, key ARN or alias/NAME)")
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS SDK configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("the awskms root of trust needs a region: set AWS_REGION (or a region in the shared AWS config)")
	}
	s := &AWSKMS{client: kms.NewFromConfig(cfg), keyID: keyID}
	aad := []byte("kubekms/root-of-trust-check")
	blob, err := s.Seal(ctx, []byte("check"), aad)
	if err == nil {
		_, err = s.Unseal(ctx, blob, aad)
	}
	if err != nil {
		return nil, fmt.Errorf("AWS KMS key %s (region %s) does not encrypt and decrypt: %w", keyID, cfg.Region, err)
	}
	return s, nil
}

// Provider implements Sealer.
func (s *AWSKMS) Provider() string { return AWSKMSProvider }

// Seal implements Sealer.
func (s *AWSKMS) Seal(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	if len(plaintext) > awsMaxPlaintext {
		return nil, fmt.Errorf("material of %d bytes is over AWS KMS Encrypt's %d-byte limit", len(plaintext), awsMaxPlaintext)
	}
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	out, err := s.client.Encrypt(ctx, &kms.EncryptInput{
		KeyId:             aws.String(s.keyID),
		Plaintext:         plaintext,
		EncryptionContext: awsContext(aad),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: AWS KMS Encrypt with key %s: %w", ErrRootUnavailable, s.keyID, err)
	}
	return append([]byte{awsBlobFormat}, out.CiphertextBlob...), nil
}

// Unseal implements Sealer. The key is named on every Decrypt, so a blob
// of another AWS KMS key is refused even where the caller may use that key.
func (s *AWSKMS) Unseal(ctx context.Context, blob, aad []byte) ([]byte, error) {
	if len(blob) < 2 || blob[0] != awsBlobFormat {
		return nil, ErrUnseal
	}
	ctx, cancel := context.WithTimeout(ctx, awsCallTimeout)
	defer cancel()
	out, err := s.client.Decrypt(ctx, &kms.DecryptInput{
		KeyId:             aws.String(s.keyID),
		CiphertextBlob:    blob[1:],
		EncryptionContext: awsContext(aad),
	})
	var invalid *kmstypes.InvalidCiphertextException
	var incorrect *kmstypes.IncorrectKeyException
	switch {
	case errors.As(err, &invalid), errors.As(err, &incorrect):
		return nil, ErrUnseal
	case err != nil:
		return nil, fmt.Errorf("%w: AWS KMS Decrypt with key %s: %w", ErrRootUnavailable, s.keyID, err)
	}
	return out.Plaintext, nil
}

func awsContext(aad []byte) map[string]string {
	return map[string]string{awsContextKey: base64.StdEncoding.EncodeToString(aad)}
}
