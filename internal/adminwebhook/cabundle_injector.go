package adminwebhook

import (
	"context"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// VWCName is the ValidatingWebhookConfiguration whose caBundle the manager
// keeps set to its CA.
const VWCName = "kubekms-validating-webhook-configuration"

// MWCName is the pod injector's webhook configuration (package inject).
const MWCName = "kubekms-mutating-webhook-configuration"

// validating- and mutatingwebhookconfigurations: keep our own caBundles set to our CA.
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=get;patch,resourceNames=kubekms-validating-webhook-configuration
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;patch,resourceNames=kubekms-mutating-webhook-configuration

// WebhookCABundleInjector sets the caBundle of kubekms's webhook
// configurations to the manager's CA once the manager starts: the
// validating one of this package (VWCName) and, when it exists, the pod
// injector's mutating one (MWCName). Every replica runs it; the write is
// idempotent. (controllers.CABundlePublisher is another job: it publishes
// the CA to workloads, as a ConfigMap in every namespace.)
type WebhookCABundleInjector struct {
	Client client.Client
	// Reader must not be a cache: the manager may only get and patch these
	// two objects, not list or watch them all.
	Reader client.Reader
	CAPEM  []byte
}

// NeedLeaderElection: any replica may set it.
func (c *WebhookCABundleInjector) NeedLeaderElection() bool { return false }

// Start patches the caBundles, retrying until it succeeds or ctx ends.
func (c *WebhookCABundleInjector) Start(ctx context.Context) error {
	for {
		err := c.inject(ctx)
		if err == nil || apierrors.IsNotFound(err) {
			if apierrors.IsNotFound(err) {
				log.FromContext(ctx).Info("No webhook configuration to inject the CA into", "name", VWCName)
			}
			return nil
		}
		log.FromContext(ctx).Error(err, "Could not set the webhook caBundle; retrying")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}

func (c *WebhookCABundleInjector) inject(ctx context.Context) error {
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := c.Reader.Get(ctx, client.ObjectKey{Name: VWCName}, vwc); err != nil {
		return err
	}
	orig := vwc.DeepCopy()
	for i := range vwc.Webhooks {
		vwc.Webhooks[i].ClientConfig.CABundle = c.CAPEM
	}
	if err := c.Client.Patch(ctx, vwc, client.MergeFrom(orig)); err != nil {
		return err
	}
	// The pod injector's configuration is optional (absent where injection is off).
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Reader.Get(ctx, client.ObjectKey{Name: MWCName}, mwc); err != nil {
		return client.IgnoreNotFound(err)
	}
	orig2 := mwc.DeepCopy()
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig.CABundle = c.CAPEM
	}
	return c.Client.Patch(ctx, mwc, client.MergeFrom(orig2))
}
