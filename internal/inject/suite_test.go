package inject_test

import (
	"context"
	"os"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/kubekms/kubekms/internal/inject"
	"github.com/kubekms/kubekms/internal/operator"
	"github.com/kubekms/kubekms/internal/testenv"
)

const operatorNamespace = testenv.OperatorNamespace

var (
	testEnv   *envtest.Environment
	cfg       *rest.Config
	k8sClient client.Client
)

func TestInject(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	RunSpecs(t, "Pod injection Suite")
}

// The real API server with the generated webhook configuration, the real
// injector behind it, and a real kube-controller-manager so Deployments and
// Jobs make their Pods the way a cluster does (there is no kubelet: the Pods
// are stored, not run).
var _ = BeforeSuite(func() {
	env, err := testenv.Start(testenv.Options{CRDs: true, Webhooks: true})
	Expect(err).NotTo(HaveOccurred())
	testEnv, cfg, k8sClient = env.Environment, env.Config, env.Client
	DeferCleanup(func() { Expect(testEnv.Stop()).To(Succeed()) })

	// The manager as cmd/manager builds it, serving the webhooks (the pod
	// injector among them) where envtest points them.
	w := testEnv.WebhookInstallOptions
	op, err := operator.New(context.Background(), cfg, operator.Options{
		Namespace:         testenv.OperatorNamespace,
		SeveralPerProcess: true,
		Webhooks: &operator.WebhookOptions{Host: w.LocalServingHost, Port: w.LocalServingPort, CertDir: w.LocalServingCertDir, Injector: &inject.Options{
			Image:   "kubekms:test",
			Address: "kubekms.kubekms-system.svc:50051",
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")},
			},
		}},
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(testenv.Run(op.Start))

	By("starting kube-controller-manager for Deployments, ReplicaSets, Jobs and ServiceAccounts")
	testenv.StartKCM(testEnv, os.Getenv("KUBEBUILDER_ASSETS"), "kcm", "deployment", "replicaset", "job", "serviceaccount")

	By("waiting for the webhook to answer")
	Eventually(func() error {
		return k8sClient.Create(context.Background(), &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Namespace: metav1.NamespaceDefault, Annotations: map[string]string{
				"kms.kubekms.io/inject": "true", "kms.kubekms.io/secret-x": "kms:v1:AAAA"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		}, client.DryRunAll)
	}).Should(Succeed())
})
