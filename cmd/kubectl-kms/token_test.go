package main

import (
	"context"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
)

// jwt makes an unsigned token with the given claims: the CLI reads aud
// without verifying, only to decide whether to send the token.
func jwt(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","kid":"k"}`)) + "." + enc([]byte(claims)) + ".c2lnbmF0dXJl"
}

func TestMintedForKubekms(t *testing.T) {
	tests := map[string]struct {
		token   string
		wantWhy string // "" means send it
	}{
		"audience kubekms":              {token: jwt(`{"aud":["kubekms"],"sub":"system:serviceaccount:shop:api"}`)},
		"kubekms among others":          {token: jwt(`{"aud":["vault","kubekms"]}`)},
		"aud as a single string":        {token: jwt(`{"aud":"kubekms"}`)},
		"the API server's audience":     {token: jwt(`{"aud":["https://kubernetes.default.svc.cluster.local"]}`), wantWhy: "its audience is https://kubernetes.default.svc.cluster.local, not kubekms"},
		"an OIDC ID token for kubectl":  {token: jwt(`{"aud":"kubernetes","iss":"https://idp.example"}`), wantWhy: "its audience is kubernetes, not kubekms"},
		"no audience":                   {token: jwt(`{"sub":"admin"}`), wantWhy: "names no audience"},
		"a static token":                {token: "0123456789abcdef0123456789abcdef", wantWhy: "not a JWT"},
		"a bootstrap token":             {token: "abcdef.0123456789abcdef", wantWhy: "not a JWT"},
		"three parts, not base64 JSON":  {token: "a.b!.c", wantWhy: "not a JWT"},
		"audience spelled like kubekms": {token: jwt(`{"aud":["kubekms.evil"]}`), wantWhy: "not kubekms"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			why := mintedForKubekms(tc.token)
			if tc.wantWhy == "" && why != "" {
				t.Fatalf("refused: %s", why)
			}
			if tc.wantWhy != "" && !strings.Contains(why, tc.wantWhy) {
				t.Fatalf("why = %q, want it to say %q", why, tc.wantWhy)
			}
		})
	}
}

// tokenRecorder is a data plane that records the bearer tokens it is sent.
type tokenRecorder struct {
	kmsv1.UnimplementedKeyManagementServiceServer
	mu     sync.Mutex
	tokens []string
}

func (r *tokenRecorder) GenerateRandom(ctx context.Context, req *kmsv1.GenerateRandomRequest) (*kmsv1.GenerateRandomResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.mu.Lock()
	r.tokens = append(r.tokens, md.Get("authorization")...)
	r.mu.Unlock()
	return &kmsv1.GenerateRandomResponse{Plaintext: make([]byte, req.NumberOfBytes)}, nil
}

func (r *tokenRecorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.tokens...)
}

// The CLI as a user runs it, with a kubeconfig whose user has a bearer
// token: it sends that token only if it was minted for kubekms.
func TestCLISendsOnlyTokensForKubekms(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &tokenRecorder{}
	srv := grpc.NewServer()
	kmsv1.RegisterKeyManagementServiceServer(srv, rec)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	run := func(t *testing.T, kubeconfigToken string, extra ...string) error {
		t.Helper()
		t.Setenv("KUBEKMS_TOKEN", "")
		t.Setenv("KUBEKMS_ADDRESS", "")
		kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
		if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: "`+kubeconfigToken+`"}}]
contexts: [{name: c, context: {cluster: c, user: u, namespace: shop}}]
current-context: c
`), 0o600); err != nil {
			t.Fatal(err)
		}
		root := newRoot()
		root.SetArgs(append([]string{"--kubeconfig", kubeconfig, "--address", lis.Addr().String(), "--insecure", "--kms-timeout", "2s", "generate-random", "--bytes", "4"}, extra...))
		return root.ExecuteContext(context.Background())
	}

	apiServerToken := jwt(`{"aud":["https://kubernetes.default.svc.cluster.local"],"sub":"system:serviceaccount:kube-system:admin"}`)
	t.Run("an API server token is refused, with what to do, and never sent", func(t *testing.T) {
		err := run(t, apiServerToken)
		if err == nil {
			t.Fatal("the CLI ran with the kubeconfig's API server token")
		}
		for _, want := range []string{"refusing to send the kubeconfig's bearer token", "https://kubernetes.default.svc.cluster.local", "--service-account", "--kms-token", "--audience kubekms"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the message does not say %q: %v", want, err)
			}
		}
		if strings.Contains(err.Error(), apiServerToken) {
			t.Error("the message contains the token")
		}
		if got := rec.seen(); len(got) != 0 {
			t.Fatalf("the data plane was sent %d tokens", len(got))
		}
	})
	t.Run("a static (non-JWT) token is refused", func(t *testing.T) {
		if err := run(t, "0123456789abcdef0123456789abcdef"); err == nil || !strings.Contains(err.Error(), "not a JWT") {
			t.Fatalf("err = %v, want a refusal", err)
		}
		if got := rec.seen(); len(got) != 0 {
			t.Fatalf("the data plane was sent %d tokens", len(got))
		}
	})
	t.Run("an explicit --kms-token not for kubekms is refused too", func(t *testing.T) {
		if err := run(t, "", "--kms-token", apiServerToken); err == nil || !strings.Contains(err.Error(), "--kms-token") {
			t.Fatalf("err = %v, want a refusal", err)
		}
		if got := rec.seen(); len(got) != 0 {
			t.Fatalf("the data plane was sent %d tokens", len(got))
		}
	})
	t.Run("a kubeconfig token minted for kubekms is sent", func(t *testing.T) {
		kmsToken := jwt(`{"aud":["kubekms"],"sub":"system:serviceaccount:shop:api"}`)
		if err := run(t, kmsToken); err != nil {
			t.Fatal(err)
		}
		if got := rec.seen(); len(got) != 1 || got[0] != "Bearer "+kmsToken {
			t.Fatalf("the data plane was sent %v", got)
		}
	})
}
