package seal

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	"sigs.k8s.io/controller-runtime/pkg/log"
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

// kmsAPI is the part of the AWS KMS client the sealer calls.
type kmsAPI interface {
	Encrypt(ctx context.Context, in *kms.EncryptInput, opts ...func(*kms.Options)) (*kms.EncryptOutput, error)
	Decrypt(ctx context.Context, in *kms.DecryptInput, opts ...func(*kms.Options)) (*kms.DecryptOutput, error)
}

// AWSKMS seals with AWS KMS Encrypt and unseals with Decrypt under one key.
type AWSKMS struct {
	client kmsAPI
	// keyID is the key as configured (perhaps an alias); keyARN is the key
	// it named at start. Every call names keyARN, so re-pointing an alias
	// does not move a running manager to another key, and every answer
	// must come from keyARN.
	keyID, keyARN string
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
	client := kms.NewFromConfig(cfg)
	if err := checkEndpoint(client.Options().BaseEndpoint); err != nil {
		return nil, err
	}
	s := &AWSKMS{client: client, keyID: keyID, keyARN: keyID}
	// A round trip through the key: it also resolves an alias to the key
	// ARN that every later call names.
	out, err := client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: []byte("check"), EncryptionContext: awsContext([]byte(checkAAD))})
	if err != nil {
		// AWS's message (account, role, request ID) goes to the log only:
		// this error reaches Events and the RootOfTrust status.
		err = s.unavailable(ctx, "Encrypt", err)
	} else {
		if out.KeyId == nil || *out.KeyId == "" {
			err = errors.New("AWS KMS Encrypt named no key in its answer")
		} else {
			s.keyARN = *out.KeyId
			_, err = s.Unseal(ctx, append([]byte{awsBlobFormat}, out.CiphertextBlob...), []byte(checkAAD))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("AWS KMS key %s (region %s) does not encrypt and decrypt: %w", keyID, cfg.Region, err)
	}
	return s, nil
}

const checkAAD = "kubekms/root-of-trust-check"

// checkEndpoint refuses a KMS endpoint that is not https, except on a
// loopback address: material crosses it in the clear, and SigV4 signs
// requests, not answers.
func checkEndpoint(endpoint *string) error {
	if endpoint == nil {
		return nil
	}
	u, err := url.Parse(*endpoint)
	if err != nil {
		return fmt.Errorf("AWS KMS endpoint %q: %w", *endpoint, err)
	}
	if u.Scheme == "https" {
		return nil
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); u.Scheme == "http" && (host == "localhost" || (ip != nil && ip.IsLoopback())) {
		return nil
	}
	return fmt.Errorf("AWS KMS endpoint %q must be https (material crosses it): plain http is taken only on a loopback address", *endpoint)
}

// KeyARN is the AWS KMS key every call names.
func (s *AWSKMS) KeyARN() string { return s.keyARN }

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
		KeyId:             aws.String(s.keyARN),
		Plaintext:         plaintext,
		EncryptionContext: awsContext(aad),
	})
	if err != nil {
		return nil, s.unavailable(ctx, "Encrypt", err)
	}
	if out.KeyId == nil || *out.KeyId != s.keyARN {
		return nil, s.unavailable(ctx, "Encrypt", fmt.Errorf("the answer names key %q", aws.ToString(out.KeyId)))
	}
	return append([]byte{awsBlobFormat}, out.CiphertextBlob...), nil
}

// unavailable logs what AWS said (for the operator) and returns an error
// that names only the operation and AWS's error code: it can reach a key's
// status, where the account, ARN and role names are none of a tenant's
// business.
func (s *AWSKMS) unavailable(ctx context.Context, op string, err error) error {
	log.FromContext(ctx).Error(err, "AWS KMS call failed", "operation", op, "awsKMSKeyID", s.keyARN)
	code := "no answer"
	if api, ok := errors.AsType[smithy.APIError](err); ok {
		code = api.ErrorCode()
	}
	return fmt.Errorf("%w: AWS KMS %s failed (%s; the manager's log has the details)", ErrRootUnavailable, op, code)
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
		KeyId:             aws.String(s.keyARN),
		CiphertextBlob:    blob[1:],
		EncryptionContext: awsContext(aad),
	})
	var invalid *kmstypes.InvalidCiphertextException
	var incorrect *kmstypes.IncorrectKeyException
	switch {
	case errors.As(err, &invalid), errors.As(err, &incorrect):
		return nil, ErrUnseal
	case err != nil:
		return nil, s.unavailable(ctx, "Decrypt", err)
	case out.KeyId == nil || *out.KeyId != s.keyARN:
		// An endpoint that answers for another key is not the root of
		// trust: its plaintext is not taken.
		clear(out.Plaintext)
		return nil, s.unavailable(ctx, "Decrypt", fmt.Errorf("the answer names key %q", aws.ToString(out.KeyId)))
	}
	return out.Plaintext, nil
}

func awsContext(aad []byte) map[string]string {
	return map[string]string{awsContextKey: base64.StdEncoding.EncodeToString(aad)}
}
