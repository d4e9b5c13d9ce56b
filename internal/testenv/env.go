package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
)

// OperatorNamespace is where every suite runs its managers, as the chart
// installs them.
const OperatorNamespace = "kubekms-system"

// Options choose what an Env installs.
type Options struct {
	// CRDs installs the kubekms CRDs (config/crd/bases).
	CRDs bool
	// Webhooks installs the generated webhook configurations
	// (config/webhook), pointing at a loopback server whose address and
	// certificate the Env's WebhookInstallOptions name.
	Webhooks bool
}

// Env is a real kube-apiserver and etcd (envtest) with the operator's
// namespace created and an admin client.
type Env struct {
	*envtest.Environment
	// Config, Client (uncached) and Clientset act as the cluster admin.
	Config    *rest.Config
	Client    client.Client
	Clientset *kubernetes.Clientset
	Scheme    *runtime.Scheme
	// Root is the repository's root directory.
	Root string
}

// Start starts a control plane from KUBEBUILDER_ASSETS. Paths are found from
// the repository root, so any package (or hack/bench) may call it.
func Start(o Options) (*Env, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS must point at kube-apiserver, etcd and kubectl: run through make (hack/controlplane.sh prints it)")
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	env := &Env{Environment: &envtest.Environment{}, Scheme: runtime.NewScheme(), Root: root}
	if err := clientgoscheme.AddToScheme(env.Scheme); err != nil {
		return nil, err
	}
	if err := kmsv1alpha1.AddToScheme(env.Scheme); err != nil {
		return nil, err
	}
	if o.CRDs {
		env.CRDDirectoryPaths = []string{filepath.Join(root, "config", "crd", "bases")}
		env.ErrorIfCRDPathMissing = true
	}
	if o.Webhooks {
		env.WebhookInstallOptions = envtest.WebhookInstallOptions{
			Paths:            []string{filepath.Join(root, "config", "webhook")},
			LocalServingHost: "127.0.0.1",
		}
	}
	if env.Config, err = env.Environment.Start(); err != nil {
		return nil, fmt.Errorf("start envtest: %w", err)
	}
	if env.Client, err = client.New(env.Config, client.Options{Scheme: env.Scheme}); err == nil {
		env.Clientset, err = kubernetes.NewForConfig(env.Config)
	}
	if err == nil {
		err = env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: OperatorNamespace}})
	}
	if err != nil {
		_ = env.Environment.Stop()
		return nil, err
	}
	return env, nil
}

// User is a client configuration for a new user of the control plane in
// the given groups (system:masters for an admin, none for an attacker whose
// rights the spec grants one by one).
func (e *Env) User(name string, groups ...string) (*rest.Config, error) {
	u, err := e.AddUser(envtest.User{Name: name, Groups: groups}, e.Config)
	if err != nil {
		return nil, err
	}
	return u.Config(), nil
}

// RepoRoot is the directory holding go.mod, found upwards from the working
// directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}
