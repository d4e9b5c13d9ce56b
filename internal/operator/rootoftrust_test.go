package operator_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/dataplane"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/operator"
	"github.com/kubekms/kubekms/internal/seal"
	"github.com/kubekms/kubekms/internal/testenv"
)

// Each root of trust other than local, with the whole manager on a real
// API server: a key is created, used through the data plane, rotated and
// used again; then the operator namespace is scanned. No Secret holds a
// byte of any material (raw or base64), no local root key was created, and
// the sealed material unseals only under the configured root: another root
// key of the same provider gets "does not unseal", and the provider gone
// gets "unavailable".
func TestRootsOfTrustThroughTheDataPlane(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		dir := t.TempDir()
		writeKey := func(name string) string {
			path := filepath.Join(dir, name)
			k := make([]byte, seal.RootKeySize)
			if _, err := rand.Read(k); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, k, 0o400); err != nil {
				t.Fatal(err)
			}
			return path
		}
		path, otherPath := writeKey("root.key"), writeKey("other.key")
		opts := operator.Options{RootOfTrust: operator.RootOfTrustFile, RootKeyPath: path}
		roots := func() (same, other seal.Sealer, gone func()) {
			s, err := seal.LoadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			o, err := seal.LoadFile(otherPath)
			if err != nil {
				t.Fatal(err)
			}
			return s, o, nil
		}
		exerciseRoot(t, opts, operator.Options{RootOfTrust: operator.RootOfTrustFile, RootKeyPath: otherPath}, roots)
	})
	t.Run("awskms", func(t *testing.T) {
		newKey, stopKMS := localKMS(t)
		keyID, otherID := newKey(), newKey()
		opts := operator.Options{RootOfTrust: operator.RootOfTrustAWSKMS, AWSKMSKeyID: keyID}
		roots := func() (same, other seal.Sealer, gone func()) {
			s, err := seal.NewAWSKMS(context.Background(), keyID)
			if err != nil {
				t.Fatal(err)
			}
			o, err := seal.NewAWSKMS(context.Background(), otherID)
			if err != nil {
				t.Fatal(err)
			}
			return s, o, stopKMS
		}
		exerciseRoot(t, opts, operator.Options{RootOfTrust: operator.RootOfTrustAWSKMS, AWSKMSKeyID: otherID}, roots)
	})
}

// exerciseRoot runs the manager with opts' root of trust. roots gives a
// sealer of that root, one of another root key of the same provider, and
// (when it can) a function that takes the provider away. A manager started
// with wrong (another root key of the same provider) or with local must be
// refused: it would seal new material under a root the rest does not know.
// localKMS starts local-kms for t and points the AWS SDK's environment at
// it; it returns a function that creates a key there and returns its ID,
// and one that stops local-kms (the endpoint gone).
func localKMS(t *testing.T) (newKey func() string, stop func()) {
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
	cfg, err := awsconfig.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return func() string {
		out, err := kms.NewFromConfig(cfg).CreateKey(context.Background(), &kms.CreateKeyInput{})
		if err != nil {
			t.Fatal(err)
		}
		return *out.KeyMetadata.KeyId
	}, lk.Stop
}

func exerciseRoot(t *testing.T, opts, wrong operator.Options, roots func() (same, other seal.Sealer, gone func())) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err := testenv.Start(testenv.Options{CRDs: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	c := env.Client

	listening := make(chan net.Addr, 1)
	opts.Namespace = testenv.OperatorNamespace
	opts.SeveralPerProcess = true
	opts.Controllers = &operator.ControllerOptions{}
	opts.Serving = operator.Serving{IPs: []net.IP{net.ParseIP("127.0.0.1")}}
	opts.DataPlane = &dataplane.Config{Addr: "127.0.0.1:0", Registry: prometheus.NewRegistry(), UsageInterval: -1, Listening: listening}
	op, err := operator.New(ctx, env.Config, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- op.Start(ctx) }()
	defer func() { cancel(); <-done }()
	addr := (<-listening).String()

	const ns, name = "default", "rooted"
	for _, o := range []client.Object{
		&kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "app-keys"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "app"}}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "app-keys"}, Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"kms.kubekms.io"}, Resources: []string{"keys"}, Verbs: []string{"encrypt", "decrypt"}}}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	waitVersion := func(v int32) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			key := &kmsv1alpha1.Key{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, key); err == nil &&
				key.Status.State == kmsv1alpha1.KeyStateEnabled && key.Status.CurrentVersion == v {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("key %s/%s did not reach version %d: %+v", ns, name, v, key.Status)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitVersion(1)
	tr, err := env.Clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "app", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"kubekms"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(op.CA.Cert)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	kmsc := kmsv1.NewKeyManagementServiceClient(cc)
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tr.Status.Token)
	encrypt := func(pt string) []byte {
		t.Helper()
		var out *kmsv1.EncryptResponse
		deadline := time.Now().Add(30 * time.Second)
		for out == nil {
			// RBAC and the key cache may lag the setup by a moment.
			if out, err = kmsc.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: name, Plaintext: []byte(pt)}); err != nil && time.Now().After(deadline) {
				t.Fatalf("Encrypt: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		return out.CiphertextBlob
	}
	ct1 := encrypt("before rotation")

	key := &kmsv1alpha1.Key{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, key); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(key.DeepCopy())
	key.Annotations = map[string]string{kmsv1alpha1.RotateAnnotation: "now"}
	if err := c.Patch(ctx, key, patch); err != nil {
		t.Fatal(err)
	}
	waitVersion(2)
	ct2 := encrypt("after rotation")
	for ct, want := range map[*[]byte]string{&ct1: "before rotation", &ct2: "after rotation"} {
		out, err := kmsc.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: *ct})
		if err != nil || string(out.Plaintext) != want {
			t.Fatalf("Decrypt = %v, %v; want %q", out, err, want)
		}
	}

	// The operator namespace: the material of both versions, unsealed
	// here with the same root, appears in no Secret.
	same, other, gone := roots()
	secrets := &corev1.SecretList{}
	if err := c.List(ctx, secrets, client.InNamespace(testenv.OperatorNamespace)); err != nil {
		t.Fatal(err)
	}
	type sealedBlob struct{ blob, aad []byte }
	var blobs []sealedBlob
	var materials [][]byte
	for _, s := range secrets.Items {
		if s.Type == "kms.kubekms.io/root-key" {
			t.Fatalf("Secret %s is a local root key: the %s root of trust must not create one", s.Name, opts.RootOfTrust)
		}
		if s.Type != keystore.SecretType || s.Labels[keystore.LabelKeyID] == "" {
			continue
		}
		if p := string(s.Data["sealer"]); p != opts.RootOfTrust {
			t.Fatalf("Secret %s records root of trust %q, want %q", s.Name, p, opts.RootOfTrust)
		}
		version, err := strconv.Atoi(s.Labels[keystore.LabelKeyVersion])
		if err != nil {
			t.Fatalf("Secret %s: version label: %v", s.Name, err)
		}
		aad := seal.MaterialAAD(s.Labels[keystore.LabelKeyID], int32(version), string(kmsv1alpha1.KeySpecSymmetricDefault))
		m, err := same.Unseal(ctx, s.Data["sealed"], aad)
		if err != nil {
			t.Fatalf("Secret %s does not unseal under the configured root: %v", s.Name, err)
		}
		blobs = append(blobs, sealedBlob{s.Data["sealed"], aad})
		materials = append(materials, m)
	}
	if len(materials) != 2 {
		t.Fatalf("found %d sealed versions, want 2", len(materials))
	}
	for _, s := range secrets.Items {
		for k, v := range s.Data {
			for _, m := range materials {
				if bytes.Contains(v, m) || bytes.Contains(v, []byte(base64.StdEncoding.EncodeToString(m))) {
					t.Fatalf("Secret %s data %s holds key material", s.Name, k)
				}
			}
		}
	}
	for _, b := range blobs {
		if _, err := other.Unseal(ctx, b.blob, b.aad); !errors.Is(err, seal.ErrUnseal) {
			t.Fatalf("another %s root key unsealed material (or failed otherwise): %v", opts.RootOfTrust, err)
		}
	}
	for i, w := range []operator.Options{wrong, {RootOfTrust: operator.RootOfTrustLocal}} {
		w.Namespace, w.SeveralPerProcess = testenv.OperatorNamespace, true
		wrongListening := make(chan net.Addr, 1)
		wrongStarted := time.Now().Add(-time.Second) // Event times are in microseconds
		if i == 0 {
			w.DataPlane = &dataplane.Config{Addr: "127.0.0.1:0", Registry: prometheus.NewRegistry(), UsageInterval: -1, Listening: wrongListening}
			w.Serving = opts.Serving
		}
		wop, err := operator.New(ctx, env.Config, w)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// Its data plane answers UNAVAILABLE with a reason a client
			// can act on (retry), not a panic or "invalid ciphertext".
			wctx, wcancel := context.WithCancel(ctx)
			wdone := make(chan error, 1)
			go func() { wdone <- wop.Start(wctx) }()
			wpool := x509.NewCertPool()
			wpool.AddCert(wop.CA.Cert)
			wcc, err := grpc.NewClient((<-wrongListening).String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: wpool})))
			if err != nil {
				t.Fatal(err)
			}
			wkms := kmsv1.NewKeyManagementServiceClient(wcc)
			var derr error
			deadline := time.Now().Add(30 * time.Second)
			for {
				_, derr = wkms.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: ct1})
				if status.Code(derr) == codes.Unavailable || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond) // its key cache and RBAC may lag
			}
			if status.Code(derr) != codes.Unavailable || dataplane.ReasonOf(derr) != dataplane.ReasonInvalidState ||
				!strings.Contains(derr.Error(), "root of trust is unavailable") {
				t.Fatalf("Decrypt through a manager with the wrong root = %v; want UNAVAILABLE, %s, naming the root of trust", derr, dataplane.ReasonInvalidState)
			}
			// Its replica says so too, in an Event on the RootOfTrust
			// (whose status is the leader's view: the other manager here).
			var said []string
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				said = nil
				list := &eventsv1.EventList{}
				if err := c.List(ctx, list, client.InNamespace(testenv.OperatorNamespace)); err != nil {
					t.Fatal(err)
				}
				for _, e := range list.Items {
					if e.Regarding.Kind == "RootOfTrust" && e.Regarding.Name == kmsv1alpha1.RootOfTrustName && e.EventTime.After(wrongStarted) {
						said = append(said, e.Type+" "+e.Reason+": "+e.Note)
					}
				}
				if slices.ContainsFunc(said, func(e string) bool { return strings.HasPrefix(e, "Warning WrongRootOfTrust: ") }) {
					break
				}
			}
			if !slices.ContainsFunc(said, func(e string) bool {
				return strings.HasPrefix(e, "Warning WrongRootOfTrust: ") && strings.Contains(e, "were sealed under")
			}) {
				t.Fatalf("Events on the RootOfTrust with the wrong root = %q; want Warning WrongRootOfTrust naming the sealed Secrets", said)
			}
			_ = wcc.Close()
			wcancel()
			<-wdone
		}
		// Up, but not ready, saying why, and sealing nothing.
		err = wop.RootOfTrust.Ready(nil)
		if err == nil || !strings.Contains(err.Error(), "is not the one the 2 sealed Secrets of namespace "+testenv.OperatorNamespace+" were sealed under") {
			t.Fatalf("a manager with root of trust %s and another root key is ready, or says the wrong thing: %v", w.RootOfTrust, err)
		}
		if _, err := wop.Sealer.Seal(ctx, []byte("x"), []byte("y")); !errors.Is(err, seal.ErrRootUnavailable) {
			t.Fatalf("a manager with the wrong root of trust seals: %v", err)
		}
		if _, err := wop.Sealer.Unseal(ctx, blobs[0].blob, blobs[0].aad); !errors.Is(err, seal.ErrRootUnavailable) {
			t.Fatalf("a manager with the wrong root of trust unseals: %v", err)
		}
	}
	if gone != nil {
		gone()
		for _, b := range blobs {
			if _, err := same.Unseal(ctx, b.blob, b.aad); !errors.Is(err, seal.ErrRootUnavailable) {
				t.Fatalf("with the %s root of trust gone, Unseal = %v; want unavailable", opts.RootOfTrust, err)
			}
		}
	}
}
