// Package testenv holds what the test suites (and the bench) share: a real
// kube-apiserver and etcd (envtest) with the operator's namespace and an
// admin client; a real kube-controller-manager next to it, for the suites
// that need its controllers (Deployments and Jobs making Pods, namespace
// deletion, garbage collection, ClusterRole aggregation); free loopback
// addresses. Only tests and the bench import it. It imports no kubekms
// package but the API types, so any package's own tests may use it.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// StartKCM runs kube-controller-manager from assets (KUBEBUILDER_ASSETS) with
// only the named controllers, as a system:masters user called user, and
// stops it when the current Ginkgo node's cleanup runs.
func StartKCM(env *envtest.Environment, assets, user string, controllers ...string) {
	GinkgoHelper()
	u, err := env.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	kubeconfig, err := u.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	kcPath := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(os.WriteFile(kcPath, kubeconfig, 0o600)).To(Succeed())
	kcm, err := gexec.Start(exec.Command(filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig", kcPath,
		"--controllers", strings.Join(controllers, ","),
		"--leader-elect=false",
		"--secure-port=0",
		"--concurrent-gc-syncs=5",
	), GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { kcm.Terminate().Wait(20 * time.Second) })
}
