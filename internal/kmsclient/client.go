// Package kmsclient is the Go client of the kubekms data plane, used by the
// CLI and the sidecar agent. It dials with TLS (the operator's CA), sends a
// bearer token on every call, and retries throttled or unavailable calls with
// exponential backoff and full jitter, honouring the server's RetryInfo. It
// never retries a call the server refused for cause (InvalidArgument,
// PermissionDenied, Unauthenticated, FailedPrecondition, ...).
package kmsclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	"github.com/kubekms/kubekms/internal/kmscrypto"
)

// TokenSource returns the bearer token for a call.
type TokenSource func(ctx context.Context) (string, error)

// StaticToken is a TokenSource that always returns token.
func StaticToken(token string) TokenSource {
	return func(context.Context) (string, error) { return token, nil }
}

// TokenFile reads the token from a file before every call, so a projected
// token the kubelet rotates is always current.
func TokenFile(path string) TokenSource {
	return func(context.Context) (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("read token: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("token file %s is empty", path)
		}
		return t, nil
	}
}

// Retry is the backoff policy for ResourceExhausted and Unavailable.
type Retry struct {
	// Initial and Max bound one wait (defaults 100ms, 5s); each wait is a
	// random duration up to Initial*2^attempt, capped at Max (full jitter),
	// and never shorter than the server's RetryInfo delay.
	Initial, Max time.Duration
	// Budget bounds the whole call, retries included (default 60s).
	Budget time.Duration
}

// Config says how to reach the data plane.
type Config struct {
	// Address is host:port.
	Address string
	// CAFile or RootCAs name the CA to trust (the operator's CA, published
	// as ConfigMap kubekms-ca.crt). ServerName overrides the name checked.
	CAFile     string
	RootCAs    *x509.CertPool
	ServerName string
	// Insecure dials without TLS: local development only.
	Insecure bool
	Token    TokenSource
	// Dialer, if set, opens the connection (e.g. through a port-forward).
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
	Retry  Retry
}

// Client is a KeyManagementService client with retries.
type Client struct {
	kmsv1.KeyManagementServiceClient
	conn *grpc.ClientConn
}

// New returns a client; the connection is made on first use.
func New(cfg Config) (*Client, error) {
	if cfg.Address == "" {
		return nil, errors.New("no data plane address: set --address or KUBEKMS_ADDRESS")
	}
	if cfg.Token == nil {
		return nil, errors.New("no token source")
	}
	creds, err := transportCredentials(cfg)
	if err != nil {
		return nil, err
	}
	r := cfg.Retry
	if r.Initial == 0 {
		r.Initial = 100 * time.Millisecond
	}
	if r.Max == 0 {
		r.Max = 5 * time.Second
	}
	if r.Budget == 0 {
		r.Budget = time.Minute
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(bearer{source: cfg.Token, secure: !cfg.Insecure}),
		grpc.WithUnaryInterceptor(r.intercept),
	}
	if cfg.Dialer != nil {
		opts = append(opts, grpc.WithContextDialer(cfg.Dialer))
	}
	conn, err := grpc.NewClient(cfg.Address, opts...)
	if err != nil {
		return nil, fmt.Errorf("data plane at %s: %w", cfg.Address, err)
	}
	return &Client{KeyManagementServiceClient: kmsv1.NewKeyManagementServiceClient(conn), conn: conn}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func transportCredentials(cfg Config) (credentials.TransportCredentials, error) {
	if cfg.Insecure {
		return insecure.NewCredentials(), nil
	}
	pool := cfg.RootCAs
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", cfg.CAFile)
		}
	}
	if pool == nil {
		return nil, errors.New("no CA to trust: set --ca-file or KUBEKMS_CA_FILE (the operator's CA, ConfigMap kubekms-ca.crt)")
	}
	return credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: cfg.ServerName, MinVersion: tls.VersionTLS12}), nil
}

type bearer struct {
	source TokenSource
	secure bool
}

func (b bearer) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, err := b.source(ctx)
	if err != nil {
		return nil, fmt.Errorf("get token: %w", err)
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

// Retryable says whether a call that failed with err may be tried again.
func Retryable(err error) bool {
	switch status.Code(err) {
	case codes.ResourceExhausted, codes.Unavailable:
		return true
	}
	return false
}

func (r Retry) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	deadline := time.Now().Add(r.Budget)
	for attempt := 0; ; attempt++ {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if err == nil || !Retryable(err) {
			return err
		}
		wait := r.backoff(attempt, err)
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("gave up after %d attempts over %s: %w", attempt+1, r.Budget, err)
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(wait):
		}
	}
}

func (r Retry) backoff(attempt int, err error) time.Duration {
	ceiling := r.Max
	if attempt < 30 {
		ceiling = min(r.Initial<<attempt, r.Max)
	}
	wait := rand.N(ceiling) + 1
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.RetryInfo); ok && info.RetryDelay != nil {
			wait = max(wait, info.RetryDelay.AsDuration())
		}
	}
	return wait
}

// DecryptAny decrypts a kubekms ciphertext in any of its forms: kms:v1
// (text or binary) through Decrypt, or a kms:env1 envelope by decrypting its
// data key and opening it locally. keyID, when set, is the key the
// ciphertext must belong to. Input found bad here is InvalidArgument, as the
// service would say.
func (c *Client) DecryptAny(ctx context.Context, data []byte, encryptionContext map[string]string, keyID string) ([]byte, error) {
	decrypt := func(blob []byte) ([]byte, error) {
		dec, err := c.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: blob, EncryptionContext: encryptionContext, KeyId: keyID})
		if err != nil {
			return nil, err
		}
		return dec.Plaintext, nil
	}
	if !kmscrypto.IsEnvelope(data) {
		blob, err := kmscrypto.DecodeCiphertext(data)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, "the input is not a valid kubekms ciphertext")
		}
		return decrypt(blob)
	}
	env, err := kmscrypto.DecodeEnvelope(data)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "the input is not a valid kubekms envelope")
	}
	wrapped, err := kmscrypto.ParseEnvelope(env)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "the input is not a valid kubekms envelope")
	}
	dataKey, err := decrypt(wrapped)
	if err != nil {
		return nil, err
	}
	defer clear(dataKey)
	pt, err := kmscrypto.OpenEnvelope(dataKey, env)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "the envelope does not decrypt with its data key: it was altered")
	}
	return pt, nil
}

// Backup is the BackupService on the same connection (kubectl kms backup
// and restore).
func (c *Client) Backup() kmsv1.BackupServiceClient { return kmsv1.NewBackupServiceClient(c.conn) }

// ReceiveBundle reads the whole bundle of a Backup call.
func ReceiveBundle(ctx context.Context, c kmsv1.BackupServiceClient) ([]byte, error) {
	stream, err := c.Backup(ctx, &kmsv1.BackupRequest{})
	if err != nil {
		return nil, err
	}
	var bundle []byte
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return bundle, nil
		}
		if err != nil {
			return nil, err
		}
		bundle = append(bundle, chunk.Data...)
	}
}

// SendContents restores decrypted backup contents, in chunks the service
// takes (32 KiB).
func SendContents(ctx context.Context, c kmsv1.BackupServiceClient, contents []byte) (*kmsv1.RestoreResponse, error) {
	stream, err := c.Restore(ctx)
	if err != nil {
		return nil, err
	}
	for len(contents) > 0 {
		n := min(len(contents), 32<<10)
		if err := stream.Send(&kmsv1.RestoreChunk{Data: contents[:n]}); err != nil {
			break // the stream's status says why: CloseAndRecv returns it
		}
		contents = contents[n:]
	}
	return stream.CloseAndRecv()
}
