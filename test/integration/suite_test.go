package integration

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/audit"
	"github.com/kubekms/kubekms/internal/authn"
	"github.com/kubekms/kubekms/internal/authz"
	"github.com/kubekms/kubekms/internal/backup"
	"github.com/kubekms/kubekms/internal/certs"
	"github.com/kubekms/kubekms/internal/dataplane"
	"github.com/kubekms/kubekms/internal/operator"
	"github.com/kubekms/kubekms/internal/quota"
	"github.com/kubekms/kubekms/internal/testenv"
)

const operatorNamespace = testenv.OperatorNamespace

var (
	testEnv *envtest.Environment
	cfg     *rest.Config
	// managerCfg is the managers' own identity.
	managerCfg *rest.Config
	scheme     *runtime.Scheme
	k8sClient  client.Client
	clientset  *kubernetes.Clientset
	// kms is a client of the first replica, kms2 of the second.
	kms, kms2 kmsv1.KeyManagementServiceClient
	conn      *grpc.ClientConn
	logs      *syncBuffer
	stops     []context.CancelFunc
	// The replicas' quota limiters, the quota file both watch, and their
	// audit logs.
	limiters  []*quota.Limiter
	quotaFile string
	auditDir  string
	// backupIdentity is the backup recipient every replica encrypts
	// bundles to.
	backupIdentity *backup.Identity
)

func TestIntegration(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Integration Suite")
}

// The whole manager, as internal/operator assembles it for cmd/manager,
// against a real API server: two replicas (the first also runs the
// controllers and the admin webhooks), quotas from a watched file, audit
// logs, real TokenReview and SubjectAccessReview.
var _ = BeforeSuite(func() {
	logs = &syncBuffer{}
	logf.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)

	env, err := testenv.Start(testenv.Options{CRDs: true, Webhooks: true})
	Expect(err).NotTo(HaveOccurred())
	testEnv, cfg, scheme, k8sClient, clientset = env.Environment, env.Config, env.Scheme, env.Client, env.Clientset
	// The managers run as their own user, as in a cluster (their
	// ServiceAccount), not as the admin the specs act as: the admin webhook
	// exempts the manager's own identity from some checks.
	managerCfg, err = env.User("kubekms-manager", "system:masters")
	Expect(err).NotTo(HaveOccurred())

	// Two ready endpoints of the data-plane Service: each replica enforces
	// half of every quota.
	Expect(k8sClient.Create(context.Background(), &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: operatorNamespace, Name: "kubekms-abc12", Labels: map[string]string{discoveryv1.LabelServiceName: "kubekms"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: new(true)}},
			{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: new(true)}},
			{Addresses: []string{"10.0.0.3"}, Conditions: discoveryv1.EndpointConditions{Ready: new(false)}},
		},
	})).To(Succeed())
	dir, err := os.MkdirTemp("", "kubekms-integration-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	quotaFile, auditDir = filepath.Join(dir, "quota.yaml"), dir
	writeQuota("defaults: {symmetric: 4000}")

	backupIdentity, err = backup.GenerateIdentity()
	Expect(err).NotTo(HaveOccurred())
	var l *quota.Limiter
	kms, conn, l = startReplica(replicaOptions{controllers: true, auditPath: filepath.Join(dir, "audit-0.log")})
	limiters = append(limiters, l)
	kms2, _, l = startReplica(replicaOptions{auditPath: filepath.Join(dir, "audit-1.log")})
	limiters = append(limiters, l)
})

var _ = AfterSuite(func() {
	expectNoSecretsInLogs()
	for _, stop := range stops {
		stop()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

func writeQuota(yaml string) {
	Expect(os.WriteFile(quotaFile, []byte(yaml), 0o600)).To(Succeed())
}

type replicaOptions struct {
	// controllers: run the controllers and serve the admin webhooks too
	// (the leader, where envtest points the webhooks).
	controllers bool
	// auditPath is the audit log; failClosed refuses what cannot be audited.
	auditPath  string
	failClosed bool
	// authn tunes the authenticator (the token cache TTL is 2s unless set).
	authn authn.Options
}

// startReplica runs a manager built by internal/operator, as cmd/manager
// builds it, with the data plane on a loopback port, quotas from the suite's
// quota file and its own audit log. It returns a client of its data plane
// and its quota limiter.
func startReplica(o replicaOptions) (kmsv1.KeyManagementServiceClient, *grpc.ClientConn, *quota.Limiter) {
	sink, closer, err := audit.Open(o.auditPath)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(closer.Close)
	limiter := quota.NewLimiter(quota.DefaultConfig(), nil)
	listening := make(chan net.Addr, 1)
	opts := operator.Options{
		Namespace:         operatorNamespace,
		SeveralPerProcess: true,
		Authz:             authz.Options{AllowTTL: time.Second, DenyTTL: 500 * time.Millisecond},
		DataPlane: &dataplane.Config{
			Addr:            "127.0.0.1:0",
			Registry:        prometheus.NewRegistry(),
			Authn:           authnOptions(o.authn),
			Listening:       listening,
			Quota:           limiter,
			QuotaFile:       quotaFile,
			QuotaReload:     200 * time.Millisecond,
			Service:         "kubekms",
			Audit:           sink,
			AuditFailClosed: o.failClosed,
			UsageInterval:   time.Second,
		},
		Serving: operator.Serving{DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}},
		Backup:  operator.BackupOptions{Recipients: []backup.Recipient{backupIdentity.Recipient()}},
	}
	if o.controllers {
		w := testEnv.WebhookInstallOptions
		opts.Webhooks = &operator.WebhookOptions{Host: w.LocalServingHost, Port: w.LocalServingPort, CertDir: w.LocalServingCertDir}
		opts.Controllers = &operator.ControllerOptions{ImportPollInterval: time.Second}
	}
	op, err := operator.New(context.Background(), managerCfg, opts)
	Expect(err).NotTo(HaveOccurred())

	stops = append(stops, testenv.Run(op.Start))
	var addr net.Addr
	Eventually(listening).Should(Receive(&addr))
	c, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: publishedCA()})))
	Expect(err).NotTo(HaveOccurred())
	return kmsv1.NewKeyManagementServiceClient(c), c, limiter
}

func authnOptions(o authn.Options) authn.Options {
	if o.TTL == 0 {
		o.TTL = 2 * time.Second
	}
	return o
}

// publishedCA reads the CA bundle as a client in any namespace would: from
// the kubekms-ca.crt ConfigMap the operator publishes.
func publishedCA() *x509.CertPool {
	cm := &corev1.ConfigMap{}
	Eventually(func() error {
		return k8sClient.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: certs.CAConfigMapName}, cm)
	}).Should(Succeed())
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM([]byte(cm.Data[certs.CAConfigMapKey]))).To(BeTrue())
	return pool
}

// --- identities and permissions ---

func newNamespace(ctx context.Context) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "dp-"}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

// appNamespace is a fresh namespace with a ServiceAccount app, and a
// context that calls the data plane as app.
func appNamespace(ctx context.Context) (string, context.Context) {
	GinkgoHelper()
	ns := newNamespace(ctx)
	newServiceAccount(ctx, ns, "app")
	return ns, withToken(context.Background(), kmsToken(ctx, ns, "app"))
}

func newServiceAccount(ctx context.Context, ns, name string) {
	Expect(k8sClient.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})).To(Succeed())
}

// tokenFor requests a ServiceAccount token; audiences nil means the API
// server's default audience.
func tokenFor(ctx context.Context, ns, sa string, audiences []string, bound *authenticationv1.BoundObjectReference) string {
	tr, err := clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: new(int64(600)), BoundObjectRef: bound},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	return tr.Status.Token
}

func kmsToken(ctx context.Context, ns, sa string) string {
	return tokenFor(ctx, ns, sa, []string{authn.DefaultAudience}, nil)
}

// grant lets a ServiceAccount use verbs on one key, as a key admin would
// with a Role.
func grant(ctx context.Context, ns, sa, key string, verbs ...string) {
	grantCross(ctx, ns, ns, sa, key, verbs...)
}

// grantCross is grant for a ServiceAccount of another namespace: the Role
// and RoleBinding live in the key's namespace.
func grantCross(ctx context.Context, ns, saNamespace, sa, key string, verbs ...string) {
	name := saNamespace + "-" + sa + "-" + key + "-" + strings.Join(verbs, "-")
	Expect(k8sClient.Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"kms.kubekms.io"}, Resources: []string{"keys"}, ResourceNames: []string{key}, Verbs: verbs}},
	})).To(Succeed())
	Expect(k8sClient.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: saNamespace, Name: sa}},
	})).To(Succeed())
}

// usable waits until a freshly created key and a fresh grant have reached
// the API server's RBAC cache and every replica's key cache.
func usable(ctx context.Context, key string) {
	GinkgoHelper()
	for _, k := range []kmsv1.KeyManagementServiceClient{kms, kms2} {
		Eventually(func() error {
			_, err := k.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: []byte("probe")})
			return err
		}).Should(Succeed())
	}
}

// resignedToken re-signs a real token's claims, moved by shift, with the API
// server's own ServiceAccount signing key. With a shift of an hour into the
// past it is a genuine expired token.
func resignedToken(ctx context.Context, ns, sa string, shift time.Duration) string {
	parts := strings.Split(kmsToken(ctx, ns, sa), ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	Expect(err).NotTo(HaveOccurred())
	claims := map[string]any{}
	Expect(json.Unmarshal(payload, &claims)).To(Succeed())
	now := time.Now().Add(shift).Unix()
	claims["iat"], claims["nbf"], claims["exp"] = now-60, now-60, now+600
	payload, err = json.Marshal(claims)
	Expect(err).NotTo(HaveOccurred())
	signingInput := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload)

	keyPEM, err := os.ReadFile(filepath.Join(testEnv.ControlPlane.APIServer.CertDir, "sa-signer.key"))
	Expect(err).NotTo(HaveOccurred())
	block, _ := pem.Decode(keyPEM)
	Expect(block).NotTo(BeNil())
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		if key, err = x509.ParseECPrivateKey(block.Bytes); err != nil {
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		}
	}
	Expect(err).NotTo(HaveOccurred())
	digest := sha256.Sum256([]byte(signingInput))
	var sig []byte
	switch k := key.(type) {
	case *ecdsa.PrivateKey: // ES256: r || s, 32 bytes each
		r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
		Expect(err).NotTo(HaveOccurred())
		sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	case *rsa.PrivateKey: // RS256
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest[:])
		Expect(err).NotTo(HaveOccurred())
	default:
		Fail(fmt.Sprintf("unexpected signing key type %T", key))
	}
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// --- keys ---

func newReadyKey(ctx context.Context, ns, name string) *kmsv1alpha1.Key {
	key := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	Expect(k8sClient.Create(ctx, key)).To(Succeed())
	return waitVersion(ctx, key, 1)
}

func waitVersion(ctx context.Context, key *kmsv1alpha1.Key, version int32) *kmsv1alpha1.Key {
	got := &kmsv1alpha1.Key{}
	Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(key), got)).To(Succeed())
		g.Expect(got.Status.State).To(Equal(kmsv1alpha1.KeyStateEnabled))
		g.Expect(got.Status.CurrentVersion).To(Equal(version))
	}).Should(Succeed())
	return got
}

func patchKey(ctx context.Context, key *kmsv1alpha1.Key, mutate func(*kmsv1alpha1.Key)) {
	cur := &kmsv1alpha1.Key{}
	Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(key), cur)).To(Succeed())
	orig := cur.DeepCopy()
	mutate(cur)
	Expect(k8sClient.Patch(ctx, cur, client.MergeFrom(orig))).To(Succeed())
}
