// Package e2e drives kubekms as a user does: `make run`'s real processes
// (kube-apiserver, etcd, the manager) and the real kubectl.
package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"

	"github.com/kubekms/kubekms/internal/testenv"
)

// secretsSeen are tokens and plaintexts the specs used: none may reach a log.
var secretsSeen []string

var (
	assets     string
	repoRoot   string
	devDir     string
	kubeconfig string
	devenv     *gexec.Session
	dataplane  string
	pluginDir  string
	// managerBin and devenvBin are the built binaries, for specs that start
	// control planes of their own.
	managerBin, devenvBin string
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "End-to-end Suite")
}

var _ = BeforeSuite(func() {
	assets = os.Getenv("KUBEBUILDER_ASSETS")
	Expect(assets).NotTo(BeEmpty(), "KUBEBUILDER_ASSETS must point at kube-apiserver, etcd and kubectl: run `make test`")
	var err error
	repoRoot, err = filepath.Abs(filepath.Join("..", ".."))
	Expect(err).NotTo(HaveOccurred())

	managerBin, err = gexec.Build("github.com/kubekms/kubekms/cmd/manager")
	Expect(err).NotTo(HaveOccurred())
	devenvBin, err = gexec.Build("github.com/kubekms/kubekms/hack/devenv")
	Expect(err).NotTo(HaveOccurred())
	cli, err := gexec.Build("github.com/kubekms/kubekms/cmd/kubectl-kms")
	Expect(err).NotTo(HaveOccurred())
	// kubectl finds plugins on PATH by name.
	pluginDir = GinkgoT().TempDir()
	Expect(os.Symlink(cli, filepath.Join(pluginDir, "kubectl-kms"))).To(Succeed())

	devDir = GinkgoT().TempDir()
	addrs := testenv.FreeAddrs(2)
	dataplane = addrs[0]
	quotaFile := filepath.Join(devDir, "quota.yaml")
	Expect(os.WriteFile(quotaFile, []byte("namespaces:\n  kms-throttled: {symmetric: 2}\n"), 0o600)).To(Succeed())
	kubeconfig = filepath.Join(devDir, "kubeconfig")
	cmd := exec.Command(devenvBin,
		"--dir", devDir,
		"--manager", managerBin,
		"--crds", filepath.Join(repoRoot, "config", "crd", "bases"),
		"--webhooks", filepath.Join(repoRoot, "config", "webhook"),
		"--samples", filepath.Join(repoRoot, "config", "samples"),
		"--metrics-bind-address", "0",
		"--dataplane-address", dataplane,
		"--quota-config", quotaFile,
		"--health-probe-bind-address", addrs[1],
	)
	devenv, err = gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	Eventually(devenv, "90s").Should(gbytes.Say("Press Ctrl-C to stop everything"))
})

var _ = AfterSuite(func() {
	if devenv != nil && devenv.ExitCode() == -1 {
		// A failed spec skips the Ctrl-C spec: stop it the same way, so its
		// kube-apiserver and etcd do not outlive the suite.
		_ = devenv.Command.Process.Signal(syscall.SIGINT)
		if devenv.Wait("40s").ExitCode() == -1 {
			devenv.Kill()
		}
	}
	gexec.CleanupBuildArtifacts()
})

// kubectl runs the kubectl that matches the local control plane.
func kubectl(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(assets, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// userShell is bash running script as a user does after `source
// bin/dev/env`: kubectl talks to the local control plane and finds the
// kubectl-kms plugin on PATH; the script runs in dir (the current one when
// empty) and stops at the first failing command (set -euo pipefail).
func userShell(dir, script string) *exec.Cmd { return envShell(devDir, dir, script) }

// envShell is userShell against the control plane whose devenv wrote
// devDir.
func envShell(devDir, dir, script string) *exec.Cmd {
	cmd := exec.Command("bash", "-c", fmt.Sprintf("set -euo pipefail\nsource %q\nexport PATH=%q:\"$PATH\"\n%s",
		filepath.Join(devDir, "env"), pluginDir, script))
	cmd.Dir = dir
	return cmd
}

// throttledManifest is a namespace whose quota (the suite's quota file) is
// 2 symmetric calls per second, with a key its ServiceAccount app may use.
const throttledManifest = `apiVersion: v1
kind: Namespace
metadata: {name: kms-throttled}
---
apiVersion: kms.kubekms.io/v1alpha1
kind: Key
metadata: {name: k, namespace: kms-throttled}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: app, namespace: kms-throttled}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: app-uses-keys, namespace: kms-throttled}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubekms-key-user}
subjects: [{kind: ServiceAccount, name: app, namespace: kms-throttled}]
`

// applyYAML applies manifests with kubectl.
func applyYAML(manifests string) {
	GinkgoHelper()
	f := filepath.Join(GinkgoT().TempDir(), "manifests.yaml")
	Expect(os.WriteFile(f, []byte(manifests), 0o600)).To(Succeed())
	out, err := kubectl("apply", "-f", f)
	Expect(err).NotTo(HaveOccurred(), out)
}

// waitKeyEnabled waits until a Key's status says Enabled.
func waitKeyEnabled(namespace, name string) {
	GinkgoHelper()
	Eventually(func() string {
		out, _ := kubectl("get", "key", name, "-n", namespace, "-o", "jsonpath={.status.state}")
		return out
	}, "20s").Should(Equal("Enabled"))
}

var _ = Describe("the local control plane", func() {
	It("is reused on a second run, not rebuilt", func() {
		// KUBEBUILDER_ASSETS is <store>/k8s/<version>-<os>-<arch>.
		store := filepath.Dir(filepath.Dir(assets))
		cmd := exec.Command(filepath.Join(repoRoot, "hack", "controlplane.sh"))
		cmd.Env = append(os.Environ(), "ENVTEST_STORE="+store)
		session, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		Eventually(session, "30s").Should(gexec.Exit(0))
		Expect(strings.TrimSpace(string(session.Out.Contents()))).To(Equal(assets))
		Expect(string(session.Err.Contents())).NotTo(ContainSubstring("building"), "a second run must not build again")
	})
})

var _ = Describe("make run", Ordered, func() {
	It("writes an env file that points kubectl at the local control plane", func() {
		env, err := os.ReadFile(filepath.Join(devDir, "env"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(env)).To(ContainSubstring(fmt.Sprintf("export KUBECONFIG=%q", kubeconfig)))
		out, err := exec.Command("bash", "-c", fmt.Sprintf("source %q && kubectl get keys -A", filepath.Join(devDir, "env"))).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(ContainSubstring("sample"))
	})

	It("shows the sample key Ready with a keyID and version 1 within seconds", func() {
		out, err := kubectl("apply", "-f", filepath.Join(repoRoot, "config", "samples"))
		Expect(err).NotTo(HaveOccurred(), out)
		Eventually(func() string {
			out, _ := kubectl("get", "key", "sample", "-n", "default",
				"-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.currentVersion} {.status.keyID}`)
			return out
		}, "20s").Should(MatchRegexp(`^True 1 [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`))

		out, err = kubectl("get", "keys", "-n", "default")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(MatchRegexp(`NAME\s+SPEC\s+USAGE\s+STATE\s+VERSION\s+LAST ROTATED\s+NEXT ROTATION\s+READY\s+AGE`))
		Expect(out).To(MatchRegexp(`sample\s+SYMMETRIC_DEFAULT\s+ENCRYPT_DECRYPT\s+Enabled\s+1\s+`))
		out, err = kubectl("get", "kms", "-A")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("sample"), "category kms lists keys")
	})

	It("shows lifecycle Events in kubectl describe, and rotates on demand", func() {
		out, err := kubectl("annotate", "kmskey", "sample", "-n", "default", "--overwrite", "kms.kubekms.io/rotate=e2e-1")
		Expect(err).NotTo(HaveOccurred(), out)
		Eventually(func() string {
			out, _ := kubectl("describe", "key", "sample", "-n", "default")
			return out
		}, "20s").Should(SatisfyAll(
			MatchRegexp(`Normal\s+Created\s+.*Created key [0-9a-f-]+ version 1`),
			MatchRegexp(`Normal\s+Rotated\s+.*to version 2 \(OnDemand\)`),
		))
	})

	It("refuses bad specs with a message that says what is wrong", func() {
		bad := filepath.Join(GinkgoT().TempDir(), "bad.yaml")
		Expect(os.WriteFile(bad, []byte(`apiVersion: kms.kubekms.io/v1alpha1
kind: Key
metadata: {name: bad, namespace: default}
spec:
  rotation: {enabled: true, period: 1m}
  deletionWindow: 24h
`), 0o600)).To(Succeed())
		out, err := kubectl("apply", "-f", bad)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("rotation.period must be at least 1h"))
		Expect(out).To(ContainSubstring("deletionWindow must be between 168h (7 days) and 720h (30 days)"))

		out, err = kubectl("patch", "key", "sample", "-n", "default", "--type=merge", "-p", `{"spec":{"keySpec":"HMAC_256"}}`)
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("keySpec is immutable"))
	})

	It("serves the data plane to grpcurl, with reflection and a ServiceAccount token", func() {
		grpcurl := os.Getenv("GRPCURL")
		Expect(grpcurl).NotTo(BeEmpty(), "GRPCURL must name the grpcurl binary: run `make test`")
		token, err := kubectl("create", "token", "sample-app", "-n", "default", "--audience", "kubekms")
		Expect(err).NotTo(HaveOccurred(), token)
		token = strings.TrimSpace(token)
		secretsSeen = append(secretsSeen, token)
		ca := filepath.Join(devDir, "ca.crt")
		Expect(ca).To(BeAnExistingFile())

		out, err := exec.Command(grpcurl, "-cacert", ca, dataplane, "list").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(ContainSubstring("kubekms.v1.KeyManagementService"))

		secretsSeen = append(secretsSeen, "e2e secret value")
		plaintext := base64.StdEncoding.EncodeToString([]byte("e2e secret value"))
		auth := "authorization: Bearer " + token
		out, err = exec.Command(grpcurl, "-cacert", ca, "-H", auth,
			"-d", fmt.Sprintf(`{"key_id":"sample","plaintext":%q,"encryption_context":{"app":"e2e"}}`, plaintext),
			dataplane, "kubekms.v1.KeyManagementService/Encrypt").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		var enc struct {
			CiphertextBlob string `json:"ciphertextBlob"`
			KeyVersion     int    `json:"keyVersion"`
		}
		Expect(json.Unmarshal(out, &enc)).To(Succeed(), string(out))
		Expect(enc.CiphertextBlob).NotTo(BeEmpty())

		out, err = exec.Command(grpcurl, "-cacert", ca, "-H", auth,
			"-d", fmt.Sprintf(`{"ciphertext_blob":%q,"encryption_context":{"app":"e2e"}}`, enc.CiphertextBlob),
			dataplane, "kubekms.v1.KeyManagementService/Decrypt").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(ContainSubstring(fmt.Sprintf("%q", plaintext)))

		out, err = exec.Command(grpcurl, "-cacert", ca, "-H", "authorization: Bearer garbage",
			"-d", `{"number_of_bytes":8}`, dataplane, "kubekms.v1.KeyManagementService/GenerateRandom").CombinedOutput()
		Expect(err).To(HaveOccurred())
		Expect(string(out)).To(ContainSubstring("Unauthenticated"))
	})

	It("lets kubectl kms encrypt and decrypt a value and a large file, after source bin/dev/env", func() {
		dir := GinkgoT().TempDir()
		big := make([]byte, 100_000)
		_, _ = rand.Read(big)
		Expect(os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o600)).To(Succeed())
		secret := "e2e database password"
		secretsSeen = append(secretsSeen, secret)
		script := fmt.Sprintf(`echo -n %q | kubectl kms encrypt --key sample --service-account sample-app > small.kms
grep -q '^kms:v1:' small.kms
kubectl kms decrypt -f small.kms --service-account sample-app > small.out
kubectl kms encrypt --key default/sample --service-account sample-app -f big.bin -e app=e2e > big.kms
grep -q '^kms:env1:' big.kms
kubectl kms decrypt -f big.kms --service-account sample-app -e app=e2e > big.out
if kubectl kms decrypt -f big.kms --service-account sample-app -e app=other 2> wrong.err; then exit 1; fi
`, secret)
		out, err := userShell(dir, script).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(os.ReadFile(filepath.Join(dir, "small.out"))).To(Equal([]byte(secret)))
		Expect(os.ReadFile(filepath.Join(dir, "big.out"))).To(Equal(big))
		Expect(os.ReadFile(filepath.Join(dir, "wrong.err"))).To(ContainSubstring("InvalidArgument: the ciphertext does not decrypt"))
		Expect(os.ReadFile(filepath.Join(dir, "small.kms"))).NotTo(ContainSubstring(secret))
	})

	It("rotates with kubectl kms rotate, and old ciphertexts still decrypt", func() {
		dir := GinkgoT().TempDir()
		script := `echo -n before | kubectl kms encrypt --key sample --service-account sample-app > old.kms
kubectl kms rotate sample
for i in $(seq 50); do
  v=$(kubectl get key sample -o jsonpath='{.status.currentVersion}')
  [ "$v" -ge 3 ] && break; sleep 0.2
done
echo -n after | kubectl kms encrypt --key sample --service-account sample-app -o json > new.json
kubectl kms decrypt -f old.kms --service-account sample-app
`
		out, err := userShell(dir, script).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(HaveSuffix("before"))
		var fresh struct{ KeyVersion int }
		raw, err := os.ReadFile(filepath.Join(dir, "new.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(json.Unmarshal(raw, &fresh)).To(Succeed())
		Expect(fresh.KeyVersion).To(BeNumerically(">=", 3), "new ciphertexts use the new version")
	})

	It("lets kubectl kms finish in a throttled namespace by backing off", func() {
		out, err := kubectl("apply", "-f", filepath.Join(repoRoot, "config", "rbac", "kms_roles.yaml"))
		Expect(err).NotTo(HaveOccurred(), out)
		applyYAML(throttledManifest)
		waitKeyEnabled("kms-throttled", "k")

		// 12 calls at once against a quota of 2/s: most are throttled at
		// first, and every one finishes by backing off.
		// set +e: a job that fails is counted, not the end of the script.
		script := `set +e
token=$(kubectl create token app -n kms-throttled --audience kubekms)
pids=()
for i in $(seq 12); do
  echo -n "job $i" | kubectl kms encrypt --key kms-throttled/k --kms-token "$token" > /dev/null & pids+=($!)
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed+1)); done
echo "failed=$failed"
`
		out2, err := userShell("", script).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out2))
		Expect(string(out2)).To(ContainSubstring("failed=0"))

		auditLog, err := os.ReadFile(filepath.Join(devDir, "audit.log"))
		Expect(err).NotTo(HaveOccurred())
		throttled := 0
		for _, line := range strings.Split(string(auditLog), "\n") {
			if strings.Contains(line, `"sourceNamespace":"kms-throttled"`) && strings.Contains(line, `"errorCode":"ThrottlingException"`) {
				throttled++
			}
		}
		Expect(throttled).To(BeNumerically(">", 0), "the service throttled and the CLI retried")
	})

	It("answers kubectl kms can-i, naming the grant that allows, or saying nothing does", func() {
		applyYAML(`apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: web}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: frontend, namespace: web}
---
apiVersion: kms.kubekms.io/v1alpha1
kind: Key
metadata: {name: payments, namespace: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: keyadmin, namespace: shop}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: payments-admin, namespace: shop}
rules:
- apiGroups: ["kms.kubekms.io"]
  resources: ["keys"]
  resourceNames: ["payments"]
  verbs: ["administer", "describekey"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: keyadmin, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: payments-admin}
subjects: [{kind: ServiceAccount, name: keyadmin, namespace: shop}]
`)
		waitKeyEnabled("shop", "payments")

		canI := func() (string, error) {
			out, err := userShell("", `kubectl kms can-i decrypt --key shop/payments --as system:serviceaccount:web:frontend -n shop --service-account keyadmin`).CombinedOutput()
			return string(out), err
		}
		out, err := canI()
		Expect(err).To(HaveOccurred(), "exit 1 for no, as kubectl auth can-i")
		Expect(out).To(HavePrefix("no\n"))
		Expect(out).To(ContainSubstring("no KeyPolicy, no grant and no RBAC rule allows Decrypt"))

		applyYAML(`apiVersion: kms.kubekms.io/v1alpha1
kind: KeyGrant
metadata: {name: frontend-decrypt, namespace: shop}
spec:
  keyRef: {name: payments}
  grantee: {serviceAccount: web/frontend}
  operations: [Decrypt]
`)
		Eventually(func() string {
			out, _ := canI()
			return out
		}, "20s").Should(SatisfyAll(HavePrefix("yes\n"), ContainSubstring("decided by: KeyGrant frontend-decrypt")))

		out, err = kubectl("get", "kms", "-n", "shop")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("keygrant.kms.kubekms.io/frontend-decrypt"), "category kms lists grants")
		Expect(out).To(MatchRegexp(`frontend-decrypt\s+payments\s+web/frontend\s+\["Decrypt"\]\s+Active`))
	})

	It("signs with kubectl kms; openssl verifies with the key from get-public-key", func() {
		applyYAML(`apiVersion: kms.kubekms.io/v1alpha1
kind: Key
metadata: {name: release-signer, namespace: default}
spec: {keySpec: ECC_NIST_P256}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: release-signer, namespace: default}
rules:
- apiGroups: ["kms.kubekms.io"]
  resources: ["keys"]
  resourceNames: ["release-signer"]
  verbs: ["sign", "verify", "getpublickey"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: release-signer, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: release-signer}
subjects: [{kind: ServiceAccount, name: sample-app, namespace: default}]
`)
		waitKeyEnabled("default", "release-signer")

		dir := GinkgoT().TempDir()
		script := `kubectl kms get-public-key release-signer --service-account sample-app > pub.pem
echo -n 'release v1.2.3' > msg
kubectl kms sign --key release-signer --algorithm ECDSA_SHA_256 -f msg --service-account sample-app > sig.b64
base64 -d sig.b64 > sig
openssl dgst -sha256 -verify pub.pem -signature sig msg
kubectl kms verify --key release-signer --algorithm ECDSA_SHA_256 --signature "$(cat sig.b64)" -f msg --service-account sample-app
echo -n 'tampered' > other
if kubectl kms verify --key release-signer --algorithm ECDSA_SHA_256 --signature "$(cat sig.b64)" -f other --service-account sample-app 2> bad.err; then exit 1; fi
cat bad.err
`
		out, err := userShell(dir, script).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(ContainSubstring("Verified OK"))
		Expect(string(out)).To(ContainSubstring("valid (key version 1)"))
		Expect(string(out)).To(ContainSubstring("the signature does not verify"))
		status, err := kubectl("get", "key", "release-signer", "-o", "jsonpath={.status.publicKey}")
		Expect(err).NotTo(HaveOccurred())
		Expect(os.ReadFile(filepath.Join(dir, "pub.pem"))).To(BeEquivalentTo(status), "the CLI downloads what status publishes")
	})

	byokSpecs()
	agentSpecs()

	It("never writes key material or the root key into its logs", func() {
		out, err := kubectl("get", "secrets", "-n", "kubekms-system", "-o", `jsonpath={range .items[*]}{.data.sealed}{.data.root-key-v1}{"\n"}{end}`)
		Expect(err).NotTo(HaveOccurred(), out)
		secrets := strings.Fields(out)
		Expect(secrets).NotTo(BeEmpty())
		logs := string(devenv.Out.Contents()) + string(devenv.Err.Contents())
		for _, s := range append(secrets, secretsSeen...) {
			Expect(logs).NotTo(ContainSubstring(s))
		}
	})

	It("stops everything it started on Ctrl-C", func() {
		Expect(devenv.Command.Process.Signal(syscall.SIGINT)).To(Succeed())
		Eventually(devenv, "40s").Should(gexec.Exit(0))
		_, err := kubectl("get", "keys", "-A", "--request-timeout=2s")
		Expect(err).To(HaveOccurred(), "the API server is gone")
		Eventually(func() string {
			out, _ := exec.Command("pgrep", "-f", devDir).CombinedOutput()
			return strings.TrimSpace(string(out))
		}, "10s").Should(BeEmpty(), "no process of this run is left")
	})
})
