// Package packaging checks what a platform admin installs: the chart and the
// kustomize tree, validated by a real API server, the RBAC they grant
// (the real manager binary runs with exactly those rights), and the
// Dockerfile against the Makefile.
package packaging

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/testenv"
)

const releaseNS = testenv.OperatorNamespace

var (
	repoRoot   string
	assets     string
	helm       string
	testEnv    *envtest.Environment
	admin      client.Client
	clientset  *kubernetes.Clientset
	kubeconfig string
	adminKC    []byte
)

func TestPackaging(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Packaging Suite")
}

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(60 * time.Second)
	SetDefaultEventuallyPollingInterval(200 * time.Millisecond)
	var err error
	repoRoot, err = filepath.Abs(filepath.Join("..", ".."))
	Expect(err).NotTo(HaveOccurred())
	assets = os.Getenv("KUBEBUILDER_ASSETS")
	helm = os.Getenv("HELM")
	Expect(assets).NotTo(BeEmpty(), "run through `make test`")
	Expect(helm).NotTo(BeEmpty(), "HELM must name the helm binary: run through `make test`")

	env, err := testenv.Start(testenv.Options{CRDs: true})
	Expect(err).NotTo(HaveOccurred())
	testEnv = env.Environment
	DeferCleanup(testEnv.Stop)
	user, err := testEnv.AddUser(envtest.User{Name: "packaging-admin", Groups: []string{"system:masters"}}, env.Config)
	Expect(err).NotTo(HaveOccurred())
	admin, err = client.New(user.Config(), client.Options{Scheme: env.Scheme})
	Expect(err).NotTo(HaveOccurred())
	clientset = kubernetes.NewForConfigOrDie(user.Config())
	adminKC, err = user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	kubeconfig = filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(os.WriteFile(kubeconfig, adminKC, 0o600)).To(Succeed())
})

func run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func kubectl(args ...string) (string, error) {
	return run(filepath.Join(assets, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
}

func helmTemplate(args ...string) (string, error) {
	return run(helm, append([]string{"template", "kubekms", "charts/kubekms", "--namespace", releaseNS}, args...)...)
}

// serverDryRun has the API server validate manifests without storing them.
func serverDryRun(manifests string) {
	GinkgoHelper()
	f := filepath.Join(GinkgoT().TempDir(), "manifests.yaml")
	Expect(os.WriteFile(f, []byte(manifests), 0o600)).To(Succeed())
	out, err := kubectl("apply", "--server-side", "--dry-run=server", "--force-conflicts", "-f", f)
	Expect(err).NotTo(HaveOccurred(), out)
	Expect(out).To(ContainSubstring("(server dry run)"))
}

const nontrivialValues = `
image: {repository: registry.example.com/kubekms, tag: "1.2.3", pullPolicy: Always}
replicas: 3
antiAffinity: required
podDisruptionBudget: {enabled: true, minAvailable: 2}
resources: {requests: {cpu: 200m, memory: 128Mi}, limits: {memory: 512Mi}}
quota:
  defaults: {symmetric: 5000, operations: {GenerateDataKeyPair: 20}}
  namespaces: {batch: {symmetric: 100}}
audit: {log: /var/log/kubekms/audit.log, failClosed: true}
usageInterval: 30s
networkPolicy: {enabled: false}
crds: {install: true, keep: false}
logLevel: debug
`

var _ = Describe("The Helm chart", func() {
	It("lints", func() {
		out, err := run(helm, "lint", "charts/kubekms")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("0 chart(s) failed"))
	})

	It("renders with default values into manifests the API server accepts", func() {
		out, err := helmTemplate()
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("helm.sh/resource-policy: keep"), "CRDs are kept on uninstall by default")
		Expect(out).To(ContainSubstring("kind: PodDisruptionBudget"))
		Expect(out).To(ContainSubstring("kind: NetworkPolicy"))
		serverDryRun(out)
	})

	It("injects pods only when they ask, never in kube-system or its own namespace, with a timeout of at most 5s", func() {
		out, err := run(helm, "template", "kubekms", "charts/kubekms", "--namespace", "kms-other",
			"--show-only", "templates/generated/webhook.yaml", "--show-only", "templates/deployment.yaml")
		Expect(err).NotTo(HaveOccurred(), out)
		var found bool
		for _, doc := range strings.Split(out, "\n---\n") {
			mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
			Expect(yaml.Unmarshal([]byte(doc), mwc)).To(Succeed())
			if mwc.Kind != "MutatingWebhookConfiguration" {
				continue
			}
			found = true
			Expect(mwc.Name).To(Equal("kubekms-mutating-webhook-configuration"))
			Expect(mwc.Webhooks).To(HaveLen(2), "the pod injector and the binder of KeyPolicies and KeyGrants")
			i := slices.IndexFunc(mwc.Webhooks, func(w admissionregistrationv1.MutatingWebhook) bool { return w.Name == "inject.kms.kubekms.io" })
			Expect(i).To(BeNumerically(">=", 0))
			w := mwc.Webhooks[i]
			Expect(*w.TimeoutSeconds).To(BeNumerically("<=", 5))
			Expect(*w.FailurePolicy).To(Equal(admissionregistrationv1.Fail))
			Expect(w.NamespaceSelector.MatchExpressions).To(ContainElement(HaveField("Values", ConsistOf("kms-other", "kube-system"))))
			Expect(w.MatchConditions).To(HaveLen(1))
			Expect(w.MatchConditions[0].Expression).To(ContainSubstring("'kms.kubekms.io/inject'"))
			Expect(w.ClientConfig.Service.Namespace).To(Equal("kms-other"))
		}
		Expect(found).To(BeTrue(), "the chart has the pod injector")
		Expect(out).To(ContainSubstring("--agent-image=kubekms:"), "the agent image defaults to the manager's")
		Expect(out).To(ContainSubstring("--agent-memory-limit=32Mi"))
		Expect(out).To(ContainSubstring("--root-of-trust=local"), "the chart passes rootOfTrust.provider to the manager")
	})

	It("keeps the key webhooks failing closed when the pod injector's failure policy is Ignore (issue 12, finding 6)", func() {
		out, err := run(helm, "template", "kubekms", "charts/kubekms", "--set", "webhook.failurePolicy=Ignore",
			"--show-only", "templates/generated/webhook.yaml")
		Expect(err).NotTo(HaveOccurred(), out)
		policies := map[string]admissionregistrationv1.FailurePolicyType{}
		for _, doc := range strings.Split(out, "\n---\n") {
			mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
			Expect(yaml.Unmarshal([]byte(doc), mwc)).To(Succeed())
			switch mwc.Kind {
			case "MutatingWebhookConfiguration":
				for _, w := range mwc.Webhooks {
					policies[w.Name] = *w.FailurePolicy
				}
			case "ValidatingWebhookConfiguration":
				vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
				Expect(yaml.Unmarshal([]byte(doc), vwc)).To(Succeed())
				for _, w := range vwc.Webhooks {
					policies[w.Name] = *w.FailurePolicy
				}
			}
		}
		Expect(policies).To(Equal(map[string]admissionregistrationv1.FailurePolicyType{
			"inject.kms.kubekms.io":     admissionregistrationv1.Ignore,
			"mbind.kms.kubekms.io":      admissionregistrationv1.Fail,
			"vkey.kms.kubekms.io":       admissionregistrationv1.Fail,
			"vkeypolicy.kms.kubekms.io": admissionregistrationv1.Fail,
			"vkeygrant.kms.kubekms.io":  admissionregistrationv1.Fail,
		}))
	})

	It("renders a non-trivial values file into manifests the API server accepts", func() {
		values := filepath.Join(GinkgoT().TempDir(), "values.yaml")
		Expect(os.WriteFile(values, []byte(nontrivialValues), 0o600)).To(Succeed())
		out, err := helmTemplate("-f", values)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("image: registry.example.com/kubekms:1.2.3"))
		Expect(out).To(ContainSubstring("replicas: 3"))
		Expect(out).To(ContainSubstring("requiredDuringSchedulingIgnoredDuringExecution"))
		Expect(out).To(ContainSubstring("--audit-fail-closed"))
		Expect(out).To(ContainSubstring("batch:"))
		Expect(out).NotTo(ContainSubstring("kind: NetworkPolicy"))
		Expect(out).NotTo(ContainSubstring("helm.sh/resource-policy"))
		serverDryRun(out)
	})

	DescribeTable("refuses values of the wrong type with a message naming the field",
		func(set, want string) {
			out, err := helmTemplate("--set", set)
			Expect(err).To(HaveOccurred())
			Expect(out).To(ContainSubstring(want))
		},
		Entry("replicas as a word", "replicas=two", "at '/replicas': got string, want integer"),
		Entry("an unknown failure policy", "webhook.failurePolicy=Maybe", "/webhook/failurePolicy"),
		Entry("a negative quota", "quota.defaults.symmetric=-5", "/quota/defaults/symmetric"),
		Entry("an unknown key", "replica=2", "additional properties 'replica' not allowed"),
		Entry("an unknown root of trust", "rootOfTrust.provider=vault", "/rootOfTrust/provider"),
		Entry("the file root of trust without a Secret or host path", "rootOfTrust.provider=file", "/rootOfTrust/file/secretName"),
		Entry("the awskms root of trust without a key", "rootOfTrust.provider=awskms", "/rootOfTrust/awskms/keyID"),
		Entry("the pkcs11 root of trust without its module, token, key and PIN", "rootOfTrust.provider=pkcs11", "/rootOfTrust/pkcs11/module"),
		Entry("the file root of trust from a Secret and a host path at once", "rootOfTrust.provider=file,rootOfTrust.file.secretName=a,rootOfTrust.file.hostPath=/b", "/rootOfTrust/file"),
	)

	It("gives the manager the file, awskms and pkcs11 roots of trust it is configured with", func() {
		out, err := helmTemplate("--set", "rootOfTrust.provider=file", "--set", "rootOfTrust.file.hostPath=/etc/kubekms-root",
			"--set", "nodeSelector.node-role\\.kubernetes\\.io/control-plane=", "--set", "tolerations[0].key=node-role.kubernetes.io/control-plane",
			"--set", "tolerations[0].effect=NoSchedule")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("node-role.kubernetes.io/control-plane: \"\""))
		Expect(out).To(ContainSubstring("effect: NoSchedule"))
		Expect(out).To(ContainSubstring("--root-of-trust=file"))
		Expect(out).To(ContainSubstring("--root-key-path=/etc/kubekms/root-key"))
		Expect(out).To(MatchRegexp(`hostPath: \{path: "/etc/kubekms-root", type: Directory\}`))
		serverDryRun(out)

		out, err = helmTemplate("--set", "rootOfTrust.provider=file", "--set", "rootOfTrust.file.secretName=my-root")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(MatchRegexp(`secret: \{secretName: "my-root"`))
		serverDryRun(out)

		out, err = helmTemplate("--set", "rootOfTrust.provider=awskms", "--set", "rootOfTrust.awskms.keyID=alias/kubekms",
			"--set", "rootOfTrust.awskms.region=eu-west-2", "--set", "rootOfTrust.awskms.endpoint=https://kms.example.com",
			"--set", "rootOfTrust.awskms.credentialsSecret=aws-creds")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`- "--aws-kms-key-id=alias/kubekms"`))
		Expect(out).To(ContainSubstring(`{name: AWS_REGION, value: "eu-west-2"}`))
		Expect(out).To(ContainSubstring(`{name: AWS_ENDPOINT_URL_KMS, value: "https://kms.example.com"}`))
		Expect(out).To(ContainSubstring(`secretKeyRef: {name: "aws-creds", key: AWS_SECRET_ACCESS_KEY}`))
		Expect(out).NotTo(ContainSubstring("--root-key-path"))
		serverDryRun(out)

		out, err = helmTemplate("--set", "rootOfTrust.provider=pkcs11", "--set", "rootOfTrust.pkcs11.module=/opt/pkcs11/libvendor.so",
			"--set", "rootOfTrust.pkcs11.tokenLabel=prod", "--set", "rootOfTrust.pkcs11.keyLabel=kubekms-root",
			"--set", "rootOfTrust.pkcs11.pinSecret=hsm-pin", "--set", "rootOfTrust.pkcs11.libraryHostPath=/opt/vendor")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(MatchRegexp(`image: kubekms:\S+-pkcs11\n`), "the manager runs the -pkcs11 image")
		Expect(out).To(MatchRegexp(`--agent-image=kubekms:[^\s-]+\n`), "the injected agent stays the static image")
		Expect(out).To(ContainSubstring(`- "--pkcs11-module=/opt/pkcs11/libvendor.so"`))
		Expect(out).To(ContainSubstring(`- "--pkcs11-key-label=kubekms-root"`))
		Expect(out).To(ContainSubstring("--pkcs11-pin-file=/etc/kubekms/pkcs11-pin/pin"))
		Expect(out).To(ContainSubstring(`secret: {secretName: "hsm-pin"`))
		Expect(out).To(ContainSubstring(`hostPath: {path: "/opt/vendor", type: Directory}`))
		serverDryRun(out)

		out, err = helmTemplate("--set", "rootOfTrust.provider=awskms", "--set", "rootOfTrust.awskms.keyID=alias/new",
			"--set", "rootOfTrust.previousProvider=file", "--set", "rootOfTrust.previous.file.secretName=old-root")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`- "--previous-root-of-trust=file"`))
		Expect(out).To(ContainSubstring("- --previous-root-key-path=/etc/kubekms/previous-root-key"))
		Expect(out).To(MatchRegexp(`secret: \{secretName: "old-root"`))
		serverDryRun(out)
		out, err = helmTemplate("--set", "rootOfTrust.provider=pkcs11", "--set", "rootOfTrust.pkcs11.module=/m", "--set", "rootOfTrust.pkcs11.tokenLabel=t",
			"--set", "rootOfTrust.pkcs11.keyLabel=k", "--set", "rootOfTrust.pkcs11.pinSecret=p",
			"--set", "rootOfTrust.previousProvider=awskms", "--set", "rootOfTrust.previous.awskms.keyID=alias/old")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`- "--previous-aws-kms-key-id=alias/old"`))
		out, err = helmTemplate("--set", "rootOfTrust.provider=file", "--set", "rootOfTrust.file.secretName=new-root",
			"--set", "rootOfTrust.previousProvider=awskms", "--set", "rootOfTrust.previous.awskms.keyID=alias/old", "--set", "rootOfTrust.awskms.region=eu-west-2")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`{name: AWS_REGION, value: "eu-west-2"}`), "a previous awskms root gets the SDK's settings too")

		out, err = helmTemplate("--set", "rootOfTrust.provider=awskms", "--set", "rootOfTrust.awskms.keyID=k #c")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`- "--aws-kms-key-id=k #c"`), "the key ID is one quoted argument")
	})

	It("gives the manager its backup recipients and, when scheduled, a kept volume to write bundles to", func() {
		recipient := "kmsbackup1:" + strings.Repeat("Ab_-", 300)
		out, err := helmTemplate("--set", "backup.recipients[0]="+recipient)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`- "--backup-recipient=` + recipient + `"`))
		Expect(out).NotTo(ContainSubstring("--backup-dir"))

		out, err = helmTemplate("--set", "backup.recipients[0]="+recipient, "--set", "backup.schedule.enabled=true",
			"--set", "backup.schedule.interval=6h", "--set", "backup.schedule.keep=3")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("- --backup-dir=/var/lib/kubekms/backups"))
		Expect(out).To(ContainSubstring("- --backup-interval=6h"))
		Expect(out).To(ContainSubstring("- --backup-keep=3"))
		Expect(out).To(ContainSubstring("kind: PersistentVolumeClaim"))
		Expect(out).To(ContainSubstring("helm.sh/resource-policy: keep"))
		Expect(out).To(ContainSubstring(`persistentVolumeClaim: {claimName: "kubekms-backups"}`))
		serverDryRun(out)

		out, err = helmTemplate("--set", "backup.schedule.enabled=true")
		Expect(err).To(HaveOccurred(), "scheduled backups without a recipient are refused")
		Expect(out).To(ContainSubstring("needs at least one backup.recipients entry"))
		out, err = helmTemplate("--set", "backup.recipients[0]=not-a-recipient")
		Expect(err).To(HaveOccurred(), "the schema checks a recipient's form")
		Expect(out).To(ContainSubstring("/backup/recipients/0"))
	})

	It("keeps its generated CRDs and RBAC in step with config/ (make verify regenerates them)", func() {
		dir := GinkgoT().TempDir()
		out, err := run(filepath.Join(repoRoot, "hack", "chartgen.sh"), dir)
		Expect(err).NotTo(HaveOccurred(), out)
		for _, f := range []string{"crds.yaml", "rbac.yaml"} {
			fresh, err := os.ReadFile(filepath.Join(dir, f))
			Expect(err).NotTo(HaveOccurred())
			committed, err := os.ReadFile(filepath.Join(repoRoot, "charts", "kubekms", "templates", "generated", f))
			Expect(err).NotTo(HaveOccurred())
			Expect(string(committed)).To(Equal(string(fresh)), "%s is stale: run make chart", f)
		}
	})

	It("grants no wildcard and Secrets only in its own namespace", func() {
		out, err := helmTemplate()
		Expect(err).NotTo(HaveOccurred(), out)
		type object struct {
			Kind     string              `json:"kind"`
			Metadata metav1.ObjectMeta   `json:"metadata"`
			Rules    []rbacv1.PolicyRule `json:"rules"`
			RoleRef  rbacv1.RoleRef      `json:"roleRef"`
		}
		var objects []object
		clusterBound := map[string]bool{}
		for _, doc := range strings.Split(out, "\n---\n") {
			var obj object
			Expect(yaml.Unmarshal([]byte(doc), &obj)).To(Succeed())
			objects = append(objects, obj)
			if obj.Kind == "ClusterRoleBinding" {
				clusterBound[obj.RoleRef.Name] = true
			}
		}
		for _, obj := range objects {
			if obj.Kind != "ClusterRole" && obj.Kind != "Role" {
				continue
			}
			for _, r := range obj.Rules {
				Expect(r.Verbs).NotTo(ContainElement("*"), "%s %s", obj.Kind, obj.Metadata.Name)
				Expect(r.Resources).NotTo(ContainElement("*"), "%s %s", obj.Kind, obj.Metadata.Name)
				Expect(r.APIGroups).NotTo(ContainElement("*"), "%s %s", obj.Kind, obj.Metadata.Name)
				if obj.Kind == "ClusterRole" && slices.Contains(r.Resources, "secrets") {
					// Only the import role, for RoleBindings a namespace admin makes.
					Expect(obj.Metadata.Name).To(Equal("kubekms-key-import"), "ClusterRole %s grants Secrets", obj.Metadata.Name)
					Expect(clusterBound).NotTo(HaveKey(obj.Metadata.Name), "the chart binds %s cluster-wide", obj.Metadata.Name)
					Expect(r.Verbs).To(ConsistOf("get", "delete"), "no list or watch of Secrets")
				}
			}
		}
	})
})

var _ = Describe("The kustomize tree", func() {
	It("builds config/default into manifests the API server accepts", func() {
		out, err := run(filepath.Join(assets, "kubectl"), "kustomize", "config/default")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("kind: Deployment"))
		serverDryRun(out)
	})
})

var _ = Describe("The Dockerfile", func() {
	It("builds the binaries the Makefile builds, the same way, and runs as non-root", func() {
		dockerfile, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
		Expect(err).NotTo(HaveOccurred())
		makefile, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
		Expect(err).NotTo(HaveOccurred())

		release := regexp.MustCompile(`(?m)^RELEASE_BUILD = CGO_ENABLED=0 \$\(GO\) build (.+)$`).FindSubmatch(makefile)
		Expect(release).NotTo(BeNil(), "the Makefile defines RELEASE_BUILD")
		flags := strings.TrimSpace(string(release[1]))
		makeBuilds := regexp.MustCompile(`(?m)^\t\$\(RELEASE_BUILD\) -o \$\(LOCALBIN\)/(\S+) (\S+)$`).FindAllSubmatch(makefile, -1)
		Expect(makeBuilds).To(HaveLen(3))
		Expect(string(dockerfile)).To(MatchRegexp(`(?m)^ENV CGO_ENABLED=0$`))
		for _, b := range makeBuilds {
			want := fmt.Sprintf("RUN go build %s -o /out/%s %s", flags, b[1], b[2])
			Expect(string(dockerfile)).To(ContainSubstring(want), "the Dockerfile builds %s as the Makefile does", b[1])
		}
		users := regexp.MustCompile(`(?m)^USER (\d+):(\d+)$`).FindAllSubmatch(dockerfile, -1)
		Expect(users).NotTo(BeEmpty(), "the final image sets a numeric user")
		last := users[len(users)-1]
		Expect(string(last[1])).NotTo(Equal("0"), "the image runs as non-root")
		Expect(string(dockerfile)).To(ContainSubstring("FROM gcr.io/distroless/static:nonroot"))
	})

	It("has a -pkcs11 variant that builds the manager as make build-pkcs11 does, with cgo, and runs as non-root", func() {
		dockerfile, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile.pkcs11"))
		Expect(err).NotTo(HaveOccurred())
		makefile, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
		Expect(err).NotTo(HaveOccurred())
		build := regexp.MustCompile(`(?m)^PKCS11_BUILD = CGO_ENABLED=1 \$\(GO\) build (.+)$`).FindSubmatch(makefile)
		Expect(build).NotTo(BeNil(), "the Makefile defines PKCS11_BUILD")
		Expect(string(makefile)).To(ContainSubstring("\t$(PKCS11_BUILD) -o $(LOCALBIN)/manager-pkcs11 ./cmd/manager"))
		Expect(string(dockerfile)).To(MatchRegexp(`(?m)^ENV CGO_ENABLED=1$`))
		Expect(string(dockerfile)).To(ContainSubstring(fmt.Sprintf("RUN go build %s -o /out/manager ./cmd/manager", strings.TrimSpace(string(build[1])))))
		Expect(string(dockerfile)).To(MatchRegexp(`(?m)^USER 65532:65532$`))
		// glibc, for the vendor's library, and no newer at build time than
		// at run time: the same Debian release in both stages.
		builder := regexp.MustCompile(`(?m)^FROM golang:[0-9.]+-(\w+) AS build$`).FindSubmatch(dockerfile)
		runtime := regexp.MustCompile(`(?m)^FROM gcr\.io/distroless/base-debian(\d+):nonroot$`).FindSubmatch(dockerfile)
		Expect(builder).NotTo(BeNil(), "the build stage names its Debian release")
		Expect(runtime).NotTo(BeNil(), "the image runs on distroless base (glibc)")
		Expect(map[string]string{"bookworm": "12", "trixie": "13"}).To(HaveKeyWithValue(string(builder[1]), string(runtime[1])),
			"built on Debian %s, run on Debian %s", builder[1], runtime[1])
	})
})

var _ = Describe("The manager with exactly the chart's RBAC", Ordered, func() {
	var (
		mgr   *gexec.Session
		grpcA string
	)

	BeforeAll(func(ctx SpecContext) {
		By("installing the chart's ServiceAccount and RBAC for real")
		out, err := helmTemplate("--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/generated/rbac.yaml")
		Expect(err).NotTo(HaveOccurred(), out)
		f := filepath.Join(GinkgoT().TempDir(), "rbac.yaml")
		Expect(os.WriteFile(f, []byte(out), 0o600)).To(Succeed())
		out, err = kubectl("apply", "-f", f)
		Expect(err).NotTo(HaveOccurred(), out)

		By("webhook configurations for the manager to inject its CA into (matching nothing)")
		nowhere := admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: releaseNS, Name: "kubekms-webhook-service", Path: new("/none")}}
		nothing := []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Delete},
			Rule: admissionregistrationv1.Rule{APIGroups: []string{"example.com"}, APIVersions: []string{"v1"}, Resources: []string{"nothings"}}}}
		Expect(admin.Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "kubekms-validating-webhook-configuration"},
			Webhooks: []admissionregistrationv1.ValidatingWebhook{{
				Name: "vnothing.kms.kubekms.io", AdmissionReviewVersions: []string{"v1"}, ClientConfig: nowhere, Rules: nothing,
				SideEffects: new(admissionregistrationv1.SideEffectClassNone), FailurePolicy: new(admissionregistrationv1.Ignore),
			}},
		})).To(Succeed())
		Expect(admin.Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "kubekms-mutating-webhook-configuration"},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{
				Name: "mnothing.kms.kubekms.io", AdmissionReviewVersions: []string{"v1"}, ClientConfig: nowhere, Rules: nothing,
				SideEffects: new(admissionregistrationv1.SideEffectClassNone), FailurePolicy: new(admissionregistrationv1.Ignore),
			}},
		})).To(Succeed())

		By("running the real manager binary, impersonating the chart's ServiceAccount")
		kc, err := clientcmd.Load(adminKC)
		Expect(err).NotTo(HaveOccurred())
		for _, ai := range kc.AuthInfos {
			ai.Impersonate = "system:serviceaccount:" + releaseNS + ":kubekms"
			ai.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + releaseNS, "system:authenticated"}
		}
		impersonating := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
		Expect(clientcmd.WriteToFile(*kc, impersonating)).To(Succeed())

		bin, err := gexec.Build("github.com/kubekms/kubekms/cmd/manager")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(gexec.CleanupBuildArtifacts)
		addrs := testenv.FreeAddrs(3)
		grpcA = addrs[0]
		probe := addrs[1]
		cmd := exec.Command(bin,
			"--kubeconfig", impersonating,
			"--operator-namespace", releaseNS,
			"--leader-elect=true",
			"--metrics-bind-address", "0",
			"--health-probe-bind-address", probe,
			"--dataplane-bind-address", grpcA,
			"--dataplane-ip-addresses", "127.0.0.1",
			"--usage-interval", "1s",
			"--webhook-host", "127.0.0.1",
			"--webhook-port", strings.Split(addrs[2], ":")[1],
			"--audit-log", filepath.Join(GinkgoT().TempDir(), "audit.log"),
		)
		mgr, err = gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { mgr.Terminate().Wait(20 * time.Second) })
		Eventually(func() (int, error) {
			resp, err := http.Get("http://" + probe + "/readyz")
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}).Should(Equal(http.StatusOK))
		Eventually(func() error {
			return admin.Get(ctx, client.ObjectKey{Namespace: releaseNS, Name: "kubekms-manager.kms.kubekms.io"}, &coordinationv1.Lease{})
		}).Should(Succeed(), "it won the leader election with the chart's rights")
	})

	It("cannot read Secrets outside its namespace, and the API server says so", func() {
		out, _ := kubectl("auth", "can-i", "get", "secrets", "-n", "default", "--as", "system:serviceaccount:"+releaseNS+":kubekms")
		Expect(strings.TrimSpace(out)).To(Equal("no"))
		out, _ = kubectl("auth", "can-i", "create", "secrets", "-n", releaseNS, "--as", "system:serviceaccount:"+releaseNS+":kubekms")
		Expect(strings.TrimSpace(out)).To(Equal("yes"))
	})

	It("imports material only in a namespace that binds kubekms-key-import, and says so until then", func(ctx SpecContext) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "byok-"}}
		Expect(admin.Create(ctx, ns)).To(Succeed())
		key := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "imported"},
			Spec: kmsv1alpha1.KeySpec{Origin: kmsv1alpha1.KeyOriginExternal}}
		Expect(admin.Create(ctx, key)).To(Succeed())
		// The import token is not in status: a key admin (the chart's
		// kubekms-key-admin role) gets it from the data plane.
		kms, kctx := dataPlane(ctx, grpcA, ns.Name, "keyadmin", "kubekms-key-admin")
		var params *kmsv1.GetParametersForImportResponse
		Eventually(func() (err error) {
			params, err = kms.GetParametersForImport(kctx, &kmsv1.GetParametersForImportRequest{KeyId: "imported"})
			return err
		}, time.Minute).Should(Succeed())
		pub, err := x509.ParsePKIXPublicKey(params.PublicKey)
		Expect(err).NotTo(HaveOccurred())
		wrapped, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub.(*rsa.PublicKey), make([]byte, 32), nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(admin.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "wrapped"},
			Data: map[string][]byte{"wrappedKeyMaterial": wrapped, "importToken": params.ImportToken}})).To(Succeed())
		sum := sha256.Sum256(wrapped)
		Expect(admin.Patch(ctx, key.DeepCopy(), client.RawPatch("application/merge-patch+json",
			[]byte(`{"spec":{"import":{"secretRef":{"name":"wrapped"},"wrappedKeyMaterialSHA256":"`+hex.EncodeToString(sum[:])+`"}}}`)))).To(Succeed())

		Eventually(func(g Gomega) {
			g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(key), key)).To(Succeed())
			c := meta.FindStatusCondition(key.Status.Conditions, kmsv1alpha1.KeyConditionImported)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Message).To(ContainSubstring("bind the ClusterRole kubekms-key-import"))
		}, time.Minute).Should(Succeed())

		By("a namespace admin binding the import role in this namespace only")
		Expect(admin.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "kubekms-key-import"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "kubekms-key-import"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: releaseNS, Name: "kubekms"}},
		})).To(Succeed())
		waitVersion(ctx, key, 1)
		Eventually(func() bool {
			return apierrors.IsNotFound(admin.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "wrapped"}, &corev1.Secret{}))
		}, time.Minute).Should(BeTrue(), "the wrapped copy is deleted")
	})

	It("does its whole job: material, rotation, the data plane, the CA bundle, usage, deletion and restore", func(ctx SpecContext) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "app-"}}
		Expect(admin.Create(ctx, ns)).To(Succeed())
		key := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "k"}}
		Expect(admin.Create(ctx, key)).To(Succeed())
		waitVersion(ctx, key, 1)

		By("rotating")
		patch := client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"annotations":{"kms.kubekms.io/rotate":"1"}}}`))
		Expect(admin.Patch(ctx, key.DeepCopy(), patch)).To(Succeed())
		got := waitVersion(ctx, key, 2)

		By("publishing the CA into the namespace and serving the data plane")
		cm := &corev1.ConfigMap{}
		Eventually(func() error {
			return admin.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "kubekms-ca.crt"}, cm)
		}).Should(Succeed())
		pool := x509.NewCertPool()
		Expect(pool.AppendCertsFromPEM([]byte(cm.Data["ca.crt"]))).To(BeTrue())
		Expect(admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "app"}})).To(Succeed())
		Expect(admin.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "app"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "kubekms-key-user"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns.Name, Name: "app"}},
		})).To(Succeed())
		tr, err := clientset.CoreV1().ServiceAccounts(ns.Name).CreateToken(ctx, "app", &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"kubekms"}},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		conn, err := grpc.NewClient(grpcA, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		kms := kmsv1.NewKeyManagementServiceClient(conn)
		cctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tr.Status.Token)
		var enc *kmsv1.EncryptResponse
		Eventually(func() error {
			enc, err = kms.Encrypt(cctx, &kmsv1.EncryptRequest{KeyId: "k", Plaintext: []byte("with least privilege")})
			return err
		}).Should(Succeed(), "TokenReview and SubjectAccessReview work with the chart's rights")
		dec, err := kms.Decrypt(cctx, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
		Expect(err).NotTo(HaveOccurred())
		Expect(dec.Plaintext).To(Equal([]byte("with least privilege")))

		By("summarising use: Events and status.lastUsed")
		Eventually(func() []kmsv1alpha1.KeyUse {
			k := &kmsv1alpha1.Key{}
			Expect(admin.Get(ctx, client.ObjectKeyFromObject(key), k)).To(Succeed())
			return k.Status.LastUsed
		}).ShouldNot(BeEmpty())

		By("deleting into a tombstone, and restoring")
		Expect(admin.Delete(ctx, key)).To(Succeed())
		Eventually(func() error { return admin.Get(ctx, client.ObjectKeyFromObject(key), &kmsv1alpha1.Key{}) }).ShouldNot(Succeed())
		restored := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "back"}, Spec: kmsv1alpha1.KeySpec{RestoreFrom: got.Status.KeyID, KeySpec: kmsv1alpha1.KeySpecSymmetricDefault}}
		Expect(admin.Create(ctx, restored)).To(Succeed())
		back := waitVersion(ctx, restored, 2)
		Expect(back.Status.KeyID).To(Equal(got.Status.KeyID))

		By("setting its webhook's caBundle to the published CA")
		Eventually(func() string {
			vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			Expect(admin.Get(ctx, client.ObjectKey{Name: "kubekms-validating-webhook-configuration"}, vwc)).To(Succeed())
			return string(vwc.Webhooks[0].ClientConfig.CABundle)
		}).Should(Equal(cm.Data["ca.crt"]))
		Eventually(func() string {
			mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
			Expect(admin.Get(ctx, client.ObjectKey{Name: "kubekms-mutating-webhook-configuration"}, mwc)).To(Succeed())
			return string(mwc.Webhooks[0].ClientConfig.CABundle)
		}).Should(Equal(cm.Data["ca.crt"]), "and the pod injector's")

		Expect(mgr.Err.Contents()).NotTo(ContainSubstring("forbidden"), "the manager was never refused anything")
		Expect(mgr.Out.Contents()).NotTo(ContainSubstring("forbidden"))
	})
})

func waitVersion(ctx context.Context, key *kmsv1alpha1.Key, version int32) *kmsv1alpha1.Key {
	GinkgoHelper()
	got := &kmsv1alpha1.Key{}
	Eventually(func(g Gomega) {
		g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(key), got)).To(Succeed())
		g.Expect(got.Status.State).To(Equal(kmsv1alpha1.KeyStateEnabled))
		g.Expect(got.Status.CurrentVersion).To(Equal(version))
	}, time.Minute).Should(Succeed())
	return got
}

// dataPlane is a client of the data plane at addr, calling as ServiceAccount
// sa of ns bound there to the chart's ClusterRole role, trusting the CA the
// manager publishes into ns.
func dataPlane(ctx context.Context, addr, ns, sa, role string) (kmsv1.KeyManagementServiceClient, context.Context) {
	GinkgoHelper()
	Expect(admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}})).To(Succeed())
	Expect(admin.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: sa}},
	})).To(Succeed())
	tr, err := clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"kubekms"}},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	cm := &corev1.ConfigMap{}
	Eventually(func() error {
		return admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "kubekms-ca.crt"}, cm)
	}).Should(Succeed())
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM([]byte(cm.Data["ca.crt"]))).To(BeTrue())
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(conn.Close)
	return kmsv1.NewKeyManagementServiceClient(conn), metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tr.Status.Token)
}
