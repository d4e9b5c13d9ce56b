package controllers_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/kubekms/kubekms/controllers"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/operator"
	"github.com/kubekms/kubekms/internal/seal"
	"github.com/kubekms/kubekms/internal/testenv"
)

const operatorNamespace = testenv.OperatorNamespace

var (
	testEnv   *envtest.Environment
	cfg       *rest.Config
	scheme    *runtime.Scheme
	k8sClient client.Client // direct, never cached: assertions see the API server
	fakeClock *clocktesting.FakeClock
	store     *keystore.Store
	stopMgr   func()
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controllers Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)

	env, err := testenv.Start(testenv.Options{CRDs: true})
	Expect(err).NotTo(HaveOccurred())
	testEnv, cfg, scheme, k8sClient = env.Environment, env.Config, env.Scheme, env.Client

	sealer, err := seal.LoadOrCreateLocal(context.Background(), k8sClient, k8sClient, operatorNamespace, rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	store = &keystore.Store{Client: k8sClient, Reader: k8sClient, Namespace: operatorNamespace, Sealer: sealer}
	// Whole seconds, as status times are.
	fakeClock = clocktesting.NewFakeClock(time.Now().Truncate(time.Second))
	stopMgr = startManager()
})

var _ = AfterSuite(func() {
	if stopMgr != nil {
		stopMgr()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// startManager starts a manager built by internal/operator, as cmd/manager
// builds it, running only the controllers, with the fake clock. It returns a
// function that stops it and waits until it has stopped: a real restart is
// stop, then start.
func startManager() func() {
	op, err := operator.New(context.Background(), cfg, operator.Options{
		Namespace:         operatorNamespace,
		SeveralPerProcess: true,
		Clock:             fakeClock,
		Controllers:       &operator.ControllerOptions{MaxConcurrentKeys: 4, ImportPollInterval: time.Second},
	})
	Expect(err).NotTo(HaveOccurred())

	return testenv.Run(op.Start)
}

// directReconciler is the Key reconciler without a manager: tests call it
// the way the manager's timer would, to drive time with the fake clock.
func directReconciler() *controllers.KeyReconciler {
	return &controllers.KeyReconciler{Client: k8sClient, Reader: k8sClient, Store: store, Recorder: discardRecorder{}, Clock: fakeClock, Random: rand.Reader}
}

type discardRecorder struct{}

func (discardRecorder) Eventf(runtime.Object, runtime.Object, string, string, string, string, ...interface{}) {
}
