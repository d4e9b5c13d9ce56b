package packaging

import (
	"os/exec"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubekms/kubekms/internal/testenv"
)

// Finding 10 of issue 12: with the root key Secret deleted, the manager used
// to start with a new root key under which no key unseals.
var _ = Describe("The manager binary, when the root key Secret is missing but sealed material exists", func() {
	It("exits non-zero, creates no root key, and says which Secret to restore", func(ctx SpecContext) {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "rootless-"}}
		Expect(admin.Create(ctx, n)).To(Succeed())
		ns := n.Name
		Expect(admin.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kubekms-key-8d5c4e8a-1c2b-4f3e-9a7d-0e6f5b4c3a21-v1",
				Labels: map[string]string{"app.kubernetes.io/managed-by": "kubekms", "app.kubernetes.io/component": "key-material"}},
			Type: "kms.kubekms.io/sealed-key",
			Data: map[string][]byte{"sealed": []byte("sealed under the lost root key"), "sealer": []byte("local")},
		})).To(Succeed())

		bin, err := gexec.Build("github.com/kubekms/kubekms/cmd/manager")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(gexec.CleanupBuildArtifacts)
		addrs := testenv.FreeAddrs(2)
		mgr, err := gexec.Start(exec.Command(bin,
			"--kubeconfig", kubeconfig,
			"--operator-namespace", ns,
			"--leader-elect=false",
			"--metrics-bind-address", "0",
			"--health-probe-bind-address", "0",
			"--dataplane-bind-address", addrs[0],
			"--webhook-host", "127.0.0.1",
			"--webhook-port", strings.Split(addrs[1], ":")[1],
		), GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { mgr.Kill().Wait(20 * time.Second) })

		Eventually(mgr, 30*time.Second).Should(gexec.Exit(), "the manager stops at once")
		Expect(mgr.ExitCode()).NotTo(BeZero())
		Expect(mgr.Err).To(gbytes.Say(`root of trust local: root key Secret %s/kubekms-root-key is missing but 1 sealed Secret \(type`, ns))
		Expect(string(mgr.Err.Contents())).To(ContainSubstring("restore Secret kubekms-root-key in namespace %s from your backup", ns))
		Expect(string(mgr.Err.Contents())).NotTo(ContainSubstring("does namespace"), "no misleading hint")
		err = admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "kubekms-root-key"}, &corev1.Secret{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no new root key was created (get: %v)", err)
	})
})
