package inject

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Path is where the webhook server serves the pod injector.
const Path = "/mutate-v1-pod"

// The API server calls the webhook only for pods that ask for injection
// (matchConditions), never in kube-system or the operator's namespace
// (namespaceSelector; the chart sets the release namespace), so failurePolicy
// Fail stops only pods that need the agent while the managers are down.
// +kubebuilder:webhook:path=/mutate-v1-pod,mutating=true,failurePolicy=fail,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=inject.kms.kubekms.io,admissionReviewVersions=v1,timeoutSeconds=5,reinvocationPolicy=IfNeeded,patch=`{"namespaceSelector":{"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kubekms-system","kube-system"]}]},"matchConditions":[{"name":"asks-for-injection","expression":"has(object.metadata.annotations) && 'kms.kubekms.io/inject' in object.metadata.annotations && object.metadata.annotations['kms.kubekms.io/inject'] == 'true'"}]}`

// Injector is the admission defaulter over pods.
type Injector struct {
	Options Options
}

// Default implements admission.Defaulter.
func (i *Injector) Default(ctx context.Context, pod *corev1.Pod) error {
	namespace := pod.Namespace
	if req, err := admission.RequestFromContext(ctx); err == nil && req.Namespace != "" {
		namespace = req.Namespace
	}
	if err := Inject(pod, namespace, i.Options); err != nil {
		return fmt.Errorf("kubekms: %w", err)
	}
	return nil
}

// Setup registers the injector with the manager's webhook server.
func Setup(mgr ctrl.Manager, o Options) {
	mgr.GetWebhookServer().Register(Path, admission.WithDefaulter[*corev1.Pod](mgr.GetScheme(), &Injector{Options: o}))
}
