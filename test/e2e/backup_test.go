package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keyspec"
	"github.com/kubekms/kubekms/internal/kmsclient"
	"github.com/kubekms/kubekms/internal/testenv"
)

// cluster is a control plane of its own: `make run`'s devenv, started and
// stopped by the spec.
type cluster struct {
	dir, dataplane string
	session        *gexec.Session
	cs             *kubernetes.Clientset
}

// startCluster starts a fresh control plane, an empty etcd and a manager
// with its own new root key, with extra manager arguments.
func startCluster(managerArgs ...string) *cluster {
	GinkgoHelper()
	c := &cluster{dir: GinkgoT().TempDir()}
	addrs := testenv.FreeAddrs(2)
	c.dataplane = addrs[0]
	args := []string{"--dir", c.dir, "--manager", managerBin,
		"--crds", filepath.Join(repoRoot, "config", "crd", "bases"),
		"--webhooks", filepath.Join(repoRoot, "config", "webhook"),
		"--samples", "", "--metrics-bind-address", "0",
		"--dataplane-address", c.dataplane, "--health-probe-bind-address", addrs[1],
		"--deletion-window", "1h"}
	for _, a := range managerArgs {
		args = append(args, "--manager-arg="+a)
	}
	var err error
	c.session, err = gexec.Start(exec.Command(devenvBin, args...), GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	Eventually(c.session, "120s").Should(gbytes.Say("Press Ctrl-C to stop everything"))
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(c.dir, "kubeconfig"))
	Expect(err).NotTo(HaveOccurred())
	c.cs, err = kubernetes.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(c.stop)
	return c
}

// stop stops the control plane as Ctrl-C does.
func (c *cluster) stop() {
	if c.session.ExitCode() != -1 {
		return
	}
	_ = c.session.Command.Process.Signal(syscall.SIGINT)
	if c.session.Wait("60s").ExitCode() == -1 {
		c.session.Kill()
	}
}

// shell runs a user's script against this control plane (its env file).
func (c *cluster) shell(dir, script string) (string, error) {
	out, err := envShell(c.dir, dir, script).CombinedOutput()
	return string(out), err
}

// apply applies manifests with kubectl.
func (c *cluster) apply(manifests string) {
	GinkgoHelper()
	f := filepath.Join(GinkgoT().TempDir(), "m.yaml")
	Expect(os.WriteFile(f, []byte(manifests), 0o600)).To(Succeed())
	out, err := c.shell("", "kubectl apply -f "+f)
	Expect(err).NotTo(HaveOccurred(), out)
}

// kms is a data-plane client acting as ServiceAccount ns/sa.
func (c *cluster) kms(ctx context.Context, ns, sa string) *kmsclient.Client {
	GinkgoHelper()
	tr, err := c.cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"kubekms"}, ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	secretsSeen = append(secretsSeen, tr.Status.Token)
	k, err := kmsclient.New(kmsclient.Config{Address: c.dataplane, CAFile: filepath.Join(c.dir, "ca.crt"), Token: kmsclient.StaticToken(tr.Status.Token)})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(k.Close)
	return k
}

// rootKey is a digest of the local root key Secret's data.
func (c *cluster) rootKey(ctx context.Context) [32]byte {
	GinkgoHelper()
	s, err := c.cs.CoreV1().Secrets("kubekms-system").Get(ctx, "kubekms-root-key", metav1.GetOptions{})
	Expect(err).NotTo(HaveOccurred())
	h := sha256.New()
	for _, k := range []string{"key", "keys"} {
		h.Write(s.Data[k])
	}
	for k, v := range s.Data {
		h.Write([]byte(k))
		h.Write(v)
	}
	return [32]byte(h.Sum(nil))
}

// drillIdentities are the namespaces, accounts and roles of the drill, as
// GitOps would apply them to both clusters: app and other may use every
// key by RBAC, grantee none; backup-admin may back up and restore.
const drillIdentities = `apiVersion: v1
kind: Namespace
metadata: {name: dr-shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: dr-billing}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: app, namespace: dr-shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: other, namespace: dr-shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: grantee, namespace: dr-shop}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: users, namespace: dr-shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubekms-key-user}
subjects: [{kind: ServiceAccount, name: app, namespace: dr-shop}, {kind: ServiceAccount, name: other, namespace: dr-shop}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: users, namespace: dr-billing}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubekms-key-user}
subjects: [{kind: ServiceAccount, name: app, namespace: dr-shop}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: backup-admin, namespace: kubekms-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: backup-admin, namespace: kubekms-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubekms-backup-operator}
subjects: [{kind: ServiceAccount, name: backup-admin, namespace: kubekms-system}]
`

// drillKey is one of the drill's keys.
type drillKey struct {
	ns, name string
	spec     kmsv1alpha1.KeySpecType
	usage    kmsv1alpha1.KeyUsage
	deleted  bool
	keyID    string
}

func (k drillKey) ref() string { return k.ns + "/" + k.name }

// drillKeys are 50 keys covering every key spec and usage; a few are
// rotated, three deleted.
func drillKeys() []drillKey {
	kinds := []struct {
		spec  kmsv1alpha1.KeySpecType
		usage kmsv1alpha1.KeyUsage
	}{}
	for _, s := range keyspec.All() {
		for _, u := range s.Usages() {
			kinds = append(kinds, struct {
				spec  kmsv1alpha1.KeySpecType
				usage kmsv1alpha1.KeyUsage
			}{s.Name, u})
		}
	}
	var keys []drillKey
	for i := range 50 {
		k := kinds[i%len(kinds)]
		if i >= 2*len(kinds) {
			k = kinds[0] // the rest symmetric: most values are encrypted under these
		}
		ns := "dr-shop"
		if i%3 == 2 {
			ns = "dr-billing"
		}
		keys = append(keys, drillKey{ns: ns, name: fmt.Sprintf("k%02d", i), spec: k.spec, usage: k.usage})
	}
	return keys
}

// drillValue is a value encrypted, signed or MACed before the backup.
type drillValue struct {
	key              *drillKey
	plaintext, proof []byte
	algorithm        string
	ec               map[string]string
}

var _ = Describe("disaster recovery drill", Ordered, func() {
	It("backs up control plane A, restores into a fresh B with another root, and everything decrypts, verifies and is enforced as before", func(ctx SpecContext) {
		tmp := GinkgoT().TempDir()
		out, err := userShell(tmp, "kubectl kms backup-identity -o id.pem > recipient && kubectl kms backup-identity -o wrong.pem > /dev/null").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		recipient, err := os.ReadFile(filepath.Join(tmp, "recipient"))
		Expect(err).NotTo(HaveOccurred())
		roles, err := os.ReadFile(filepath.Join(repoRoot, "config", "rbac", "kms_roles.yaml"))
		Expect(err).NotTo(HaveOccurred())

		By("control plane A: 50 keys of every spec, 3,000 values, signatures and MACs, rotations, deletions, a policy and a grant")
		a := startCluster("--backup-recipient=" + strings.TrimSpace(string(recipient)))
		a.apply(string(roles))
		a.apply(drillIdentities)
		keys := drillKeys()
		var manifests strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&manifests, "---\napiVersion: kms.kubekms.io/v1alpha1\nkind: Key\nmetadata: {name: %s, namespace: %s}\nspec: {keySpec: %s, keyUsage: %s}\n", k.name, k.ns, k.spec, k.usage)
		}
		// k00 (symmetric) is guarded: only app may use it, by policy, not
		// other (whom RBAC allows), and grantee by a grant.
		manifests.WriteString(`---
apiVersion: kms.kubekms.io/v1alpha1
kind: KeyPolicy
metadata: {name: guarded, namespace: dr-shop}
spec:
  keyRef: {name: k00}
  statements:
  - {sid: Admins, effect: Allow, principals: {groups: ["system:masters"]}, actions: ["*"]}
  - {sid: App, effect: Allow, principals: {serviceAccounts: ["dr-shop/app"]}, actions: [Encrypt, Decrypt]}
---
apiVersion: kms.kubekms.io/v1alpha1
kind: KeyGrant
metadata: {name: grantee-decrypts, namespace: dr-shop}
spec:
  keyRef: {name: k00}
  grantee: {serviceAccount: dr-shop/grantee}
  operations: [Decrypt]
`)
		a.apply(manifests.String())
		outs, err := a.shell("", "kubectl wait --for=jsonpath='{.status.state}'=Enabled keys --all -n dr-shop --timeout=180s && "+
			"kubectl wait --for=jsonpath='{.status.state}'=Enabled keys --all -n dr-billing --timeout=180s")
		Expect(err).NotTo(HaveOccurred(), outs)
		for i := range keys {
			id, err := a.shell("", fmt.Sprintf("kubectl get key %s -n %s -o jsonpath='{.status.keyID}'", keys[i].name, keys[i].ns))
			Expect(err).NotTo(HaveOccurred(), id)
			keys[i].keyID = id
		}
		app := a.kms(ctx, "dr-shop", "app")
		var values []drillValue
		encrypt := func(k *drillKey, n int) {
			GinkgoHelper()
			for j := range n {
				v := drillValue{key: k, plaintext: fmt.Appendf(nil, "%s value %d", k.ref(), j), ec: map[string]string{"n": fmt.Sprint(j)}}
				req := &kmsv1.EncryptRequest{KeyId: k.ref(), Plaintext: v.plaintext, EncryptionContext: v.ec}
				if k.spec != kmsv1alpha1.KeySpecSymmetricDefault {
					spec, _ := keyspec.Lookup(string(k.spec))
					v.algorithm, v.ec = spec.Algorithms(k.usage).Encryption[0], nil
					req.EncryptionAlgorithm, req.EncryptionContext = v.algorithm, nil
				}
				r, err := app.Encrypt(ctx, req)
				Expect(err).NotTo(HaveOccurred(), k.ref())
				v.proof = r.CiphertextBlob
				values = append(values, v)
			}
		}
		var symmetric []*drillKey
		for i := range keys {
			k := &keys[i]
			spec, _ := keyspec.Lookup(string(k.spec))
			algs := spec.Algorithms(k.usage)
			switch {
			case k.spec == kmsv1alpha1.KeySpecSymmetricDefault:
				symmetric = append(symmetric, k)
			case k.usage == kmsv1alpha1.KeyUsageEncryptDecrypt:
				encrypt(k, 5)
			case k.usage == kmsv1alpha1.KeyUsageSignVerify:
				msg := []byte("signed by " + k.ref())
				r, err := app.Sign(ctx, &kmsv1.SignRequest{KeyId: k.ref(), Message: msg, SigningAlgorithm: algs.Signing[0]})
				Expect(err).NotTo(HaveOccurred(), k.ref())
				values = append(values, drillValue{key: k, plaintext: msg, proof: r.Signature, algorithm: algs.Signing[0]})
			case k.usage == kmsv1alpha1.KeyUsageGenerateVerifyMAC:
				msg := []byte("MACed by " + k.ref())
				r, err := app.GenerateMac(ctx, &kmsv1.GenerateMacRequest{KeyId: k.ref(), Message: msg, MacAlgorithm: algs.MAC[0]})
				Expect(err).NotTo(HaveOccurred(), k.ref())
				values = append(values, drillValue{key: k, plaintext: msg, proof: r.Mac, algorithm: algs.MAC[0]})
			}
		}
		// Values under the first version of every symmetric key, then five
		// rotated and more values under their second version.
		perKey := (3000 - len(values)) / len(symmetric)
		for _, k := range symmetric {
			encrypt(k, perKey/2)
		}
		for _, k := range symmetric[1:6] {
			out, err := a.shell("", fmt.Sprintf("kubectl kms rotate %s -n %s", k.name, k.ns))
			Expect(err).NotTo(HaveOccurred(), out)
			out, err = a.shell("", fmt.Sprintf("kubectl wait --for=jsonpath='{.status.currentVersion}'=2 key/%s -n %s --timeout=60s", k.name, k.ns))
			Expect(err).NotTo(HaveOccurred(), out)
		}
		for _, k := range symmetric {
			encrypt(k, perKey-perKey/2)
		}
		encrypt(symmetric[0], 3000-len(values))
		Expect(values).To(HaveLen(3000))
		for _, k := range symmetric[len(symmetric)-3:] {
			out, err := a.shell("", fmt.Sprintf("kubectl delete key %s -n %s --wait", k.name, k.ns))
			Expect(err).NotTo(HaveOccurred(), out)
			k.deleted = true
		}
		rootA := a.rootKey(ctx)

		By("backing up A with the CLI, as the backup operator")
		outs, err = a.shell(tmp, "kubectl kms backup -o bundle --service-account backup-admin -n kubekms-system")
		Expect(err).NotTo(HaveOccurred(), outs)
		Expect(outs).To(ContainSubstring("wrote bundle"))
		digest := regexp.MustCompile(`sha256:([0-9a-f]{64})`).FindStringSubmatch(outs)
		Expect(digest).To(HaveLen(2), "kubectl kms backup prints the bundle's SHA-256: %s", outs)
		bundle, err := os.ReadFile(filepath.Join(tmp, "bundle"))
		Expect(err).NotTo(HaveOccurred())

		By("stopping A and deleting its data")
		a.stop()
		Expect(a.session.ExitCode()).To(Equal(0))
		Expect(os.RemoveAll(a.dir)).To(Succeed())

		By("control plane B: empty, with a root key of its own")
		b := startCluster()
		b.apply(string(roles))
		b.apply(drillIdentities)
		Expect(b.rootKey(ctx)).NotTo(Equal(rootA))

		By("refusing a wrong identity, a truncated bundle and a flipped bit, writing nothing")
		Expect(os.WriteFile(filepath.Join(tmp, "truncated"), bundle[:len(bundle)/2], 0o600)).To(Succeed())
		flipped := append([]byte(nil), bundle...)
		flipped[len(flipped)*2/3] ^= 0x10
		Expect(os.WriteFile(filepath.Join(tmp, "flipped"), flipped, 0o600)).To(Succeed())
		for _, bad := range []struct{ file, identity, want string }{
			{"bundle", "wrong.pem", "wrong backup identity"},
			{"truncated", "id.pem", "truncated"},
			{"flipped", "id.pem", "corrupted"},
			{"flipped", "id.pem --sha256 " + digest[1], "not the bundle that was recorded"},
		} {
			out, err := b.shell(tmp, fmt.Sprintf("kubectl kms restore -f %s --identity %s --service-account backup-admin -n kubekms-system", bad.file, bad.identity))
			Expect(err).To(HaveOccurred(), out)
			Expect(out).To(ContainSubstring(bad.want))
			Expect(out).To(ContainSubstring("nothing was restored"))
		}
		outs, err = b.shell("", "kubectl get keys -A -o name; kubectl get secrets -n kubekms-system -l app.kubernetes.io/component=key-material -o name")
		Expect(err).NotTo(HaveOccurred(), outs)
		Expect(strings.TrimSpace(outs)).To(BeEmpty(), "a refused restore writes nothing")

		By("restoring into B")
		outs, err = b.shell(tmp, "kubectl kms restore -f bundle --identity id.pem --sha256 "+digest[1]+" --service-account backup-admin -n kubekms-system")
		Expect(err).NotTo(HaveOccurred(), outs)
		Expect(outs).To(ContainSubstring("restored 47 keys"))
		Expect(outs).To(ContainSubstring("1 policies, 1 grants"))
		outs, err = b.shell("", "kubectl wait --for=jsonpath='{.status.state}'=Enabled keys --all -n dr-shop --timeout=120s && "+
			"kubectl wait --for=jsonpath='{.status.state}'=Enabled keys --all -n dr-billing --timeout=120s")
		Expect(err).NotTo(HaveOccurred(), outs)

		By("the deleted keys' tombstones restore with spec.restoreFrom, within their window")
		var restoreDeleted strings.Builder
		for _, k := range keys {
			if k.deleted {
				fmt.Fprintf(&restoreDeleted, "---\napiVersion: kms.kubekms.io/v1alpha1\nkind: Key\nmetadata: {name: %s, namespace: %s}\nspec: {restoreFrom: %s}\n", k.name, k.ns, k.keyID)
			}
		}
		b.apply(restoreDeleted.String())
		for _, k := range keys {
			out, err := b.shell("", fmt.Sprintf("kubectl wait --for=jsonpath='{.status.keyID}'=%s key/%s -n %s --timeout=60s", k.keyID, k.name, k.ns))
			Expect(err).NotTo(HaveOccurred(), "%s: %s", k.ref(), out)
		}

		By("all 3,000 values decrypt, signatures and MACs verify")
		app = b.kms(ctx, "dr-shop", "app")
		for _, v := range values {
			switch v.key.usage {
			case kmsv1alpha1.KeyUsageEncryptDecrypt:
				r, err := app.Decrypt(ctx, &kmsv1.DecryptRequest{KeyId: v.key.ref(), CiphertextBlob: v.proof, EncryptionContext: v.ec, EncryptionAlgorithm: v.algorithm})
				Expect(err).NotTo(HaveOccurred(), v.key.ref())
				Expect(r.Plaintext).To(Equal(v.plaintext))
			case kmsv1alpha1.KeyUsageSignVerify:
				r, err := app.Verify(ctx, &kmsv1.VerifyRequest{KeyId: v.key.ref(), Message: v.plaintext, Signature: v.proof, SigningAlgorithm: v.algorithm})
				Expect(err).NotTo(HaveOccurred(), v.key.ref())
				Expect(r.SignatureValid).To(BeTrue(), v.key.ref())
			default:
				r, err := app.VerifyMac(ctx, &kmsv1.VerifyMacRequest{KeyId: v.key.ref(), Message: v.plaintext, Mac: v.proof, MacAlgorithm: v.algorithm})
				Expect(err).NotTo(HaveOccurred(), v.key.ref())
				Expect(r.MacValid).To(BeTrue(), v.key.ref())
			}
		}

		By("the policy and the grant decide as before")
		i := slices.IndexFunc(values, func(v drillValue) bool { return v.key.name == "k00" })
		Expect(i).To(BeNumerically(">=", 0))
		guarded := values[i]
		other := b.kms(ctx, "dr-shop", "other")
		_, err = other.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: guarded.proof, EncryptionContext: guarded.ec})
		Expect(status.Code(err)).To(Equal(codes.PermissionDenied), "RBAC alone does not pass the restored policy")
		grantee := b.kms(ctx, "dr-shop", "grantee")
		r, err := grantee.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: guarded.proof, EncryptionContext: guarded.ec})
		Expect(err).NotTo(HaveOccurred(), "the restored grant lets grantee decrypt")
		Expect(r.Plaintext).To(Equal(guarded.plaintext))
		_, err = grantee.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: "k00", Plaintext: []byte("x")})
		Expect(status.Code(err)).To(Equal(codes.PermissionDenied), "the grant gives Decrypt only")

		By("restoring the same bundle again changes nothing")
		outs, err = b.shell(tmp, "kubectl kms restore -f bundle --identity id.pem --service-account backup-admin -n kubekms-system")
		Expect(err).NotTo(HaveOccurred(), outs)
		Expect(outs).To(ContainSubstring("restored 47 keys, 0 versions"))
	})
})
