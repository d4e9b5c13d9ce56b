package controllers

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/seal"
)

const operatorNamespace = "kubekms-system"

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

	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	var err error
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())

	scheme = runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(kmsv1alpha1.AddToScheme(scheme)).To(Succeed())
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8sClient.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}})).To(Succeed())

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

// startManager starts a manager running the real controllers, as
// cmd/manager does, with the fake clock. It returns a function that stops it
// and waits until it has stopped: a real restart is stop, then start.
func startManager() func() {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  CacheOptions(operatorNamespace),
		Controller:             config.Controller{SkipNameValidation: new(true)}, // several managers in one process
	})
	Expect(err).NotTo(HaveOccurred())
	sealer, err := seal.LoadOrCreateLocal(context.Background(), mgr.GetClient(), mgr.GetAPIReader(), operatorNamespace, rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	Expect(Setup(mgr, Config{
		Store:               &keystore.Store{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: operatorNamespace, Sealer: sealer},
		Clock:               fakeClock,
		Random:              rand.Reader,
		KeyController:       controller.Options{MaxConcurrentReconciles: 4},
		ImportPollInterval:  time.Second,
		RetentionController: controller.Options{},
	})).To(Succeed())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	return func() {
		cancel()
		Eventually(done).Should(BeClosed())
	}
}

// directReconciler is the Key reconciler without a manager: tests call it
// the way the manager's timer would, to drive time with the fake clock.
func directReconciler() *KeyReconciler {
	return &KeyReconciler{Client: k8sClient, Reader: k8sClient, Store: store, Recorder: discardRecorder{}, Clock: fakeClock, Random: rand.Reader}
}

type discardRecorder struct{}

func (discardRecorder) Eventf(runtime.Object, runtime.Object, string, string, string, string, ...interface{}) {
}
