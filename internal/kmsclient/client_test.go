package kmsclient

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
)

// flaky fails the first `failures` calls with `code`, then succeeds. It is a
// real gRPC server on loopback; the client under test is the real client.
type flaky struct {
	kmsv1.UnimplementedKeyManagementServiceServer
	code       codes.Code
	failures   int32
	retryAfter time.Duration
	calls      atomic.Int32
	lastAuth   atomic.Value
}

func (f *flaky) GenerateRandom(ctx context.Context, req *kmsv1.GenerateRandomRequest) (*kmsv1.GenerateRandomResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.lastAuth.Store(strings.Join(md.Get("authorization"), ","))
	if n := f.calls.Add(1); n <= f.failures {
		st := status.New(f.code, "try again")
		if f.retryAfter > 0 {
			st, _ = st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(f.retryAfter)})
		}
		return nil, st.Err()
	}
	return &kmsv1.GenerateRandomResponse{Plaintext: make([]byte, req.NumberOfBytes)}, nil
}

func serve(t *testing.T, f *flaky) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	kmsv1.RegisterKeyManagementServiceServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestRetries(t *testing.T) {
	tests := map[string]struct {
		server      *flaky
		budget      time.Duration
		wantCalls   int32
		wantErr     string
		minDuration time.Duration
	}{
		"retries ResourceExhausted until it passes": {
			server: &flaky{code: codes.ResourceExhausted, failures: 3}, wantCalls: 4,
		},
		"retries Unavailable": {
			server: &flaky{code: codes.Unavailable, failures: 2}, wantCalls: 3,
		},
		"never retries InvalidArgument": {
			server: &flaky{code: codes.InvalidArgument, failures: 5}, wantCalls: 1, wantErr: "InvalidArgument",
		},
		"never retries PermissionDenied": {
			server: &flaky{code: codes.PermissionDenied, failures: 5}, wantCalls: 1, wantErr: "PermissionDenied",
		},
		"gives up after the budget with a clear message": {
			server: &flaky{code: codes.ResourceExhausted, failures: 1 << 20}, budget: 300 * time.Millisecond,
			wantErr: "gave up after",
		},
		"waits at least the server's RetryInfo": {
			server: &flaky{code: codes.ResourceExhausted, failures: 1, retryAfter: 300 * time.Millisecond}, wantCalls: 2,
			minDuration: 300 * time.Millisecond,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			addr := serve(t, tc.server)
			c, err := New(Config{Address: addr, Insecure: true, Token: StaticToken("tok"),
				Retry: Retry{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, Budget: tc.budget}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			_, err = c.GenerateRandom(context.Background(), &kmsv1.GenerateRandomRequest{NumberOfBytes: 4})
			elapsed := time.Since(start)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("err = %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want it to say %q", err, tc.wantErr)
			}
			if tc.wantCalls != 0 && tc.server.calls.Load() != tc.wantCalls {
				t.Fatalf("calls = %d, want %d", tc.server.calls.Load(), tc.wantCalls)
			}
			if elapsed < tc.minDuration {
				t.Fatalf("retried after %s, before the server's RetryInfo of %s", elapsed, tc.minDuration)
			}
			if got := tc.server.lastAuth.Load(); got != "Bearer tok" {
				t.Fatalf("authorization = %v", got)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg  Config
		want string
	}{
		"no address": {Config{Token: StaticToken("t")}, "no data plane address"},
		"no CA":      {Config{Address: "127.0.0.1:1", Token: StaticToken("t")}, "no CA to trust"},
		"bad CA":     {Config{Address: "127.0.0.1:1", Token: StaticToken("t"), CAFile: "client.go"}, "no PEM certificate"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// Input that is bad before any call is InvalidArgument, like the service's
// own answer, so callers (the agent) do not retry it as if it might pass.
func TestDecryptAnyRefusesBadInputLocally(t *testing.T) {
	c, err := New(Config{Address: "127.0.0.1:1", Insecure: true, Token: StaticToken("t")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, in := range []string{"kms:v1:not base64!", "kms:env1:AAAA"} {
		_, err := c.DecryptAny(context.Background(), []byte(in), nil, "")
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "is not a valid kubekms") {
			t.Errorf("%q: err = %v, want InvalidArgument", in, err)
		}
	}
}
