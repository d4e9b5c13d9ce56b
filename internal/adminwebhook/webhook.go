// Package adminwebhook holds the validating webhook that makes key
// administration follow the key's policy, on top of RBAC: changing a Key,
// its KeyPolicy or its KeyGrants needs the matching admin action (Rotate,
// Disable, Administer, ScheduleDeletion, PutPolicy, CreateGrant) under the
// key's accepted KeyPolicy. With no policy, RBAC alone decides (the API
// server already did). A policy that would leave its author unable to change
// it again is refused unless it says it means it
// (bypassPolicyLockoutSafetyCheck), as on AWS.
package adminwebhook

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/authn"
	"github.com/kubekms/kubekms/internal/authz"
	"github.com/kubekms/kubekms/internal/policy"
)

// Paths the webhooks are served on.
const (
	KeyPath       = "/validate-kms-kubekms-io-v1alpha1-key"
	KeyPolicyPath = "/validate-kms-kubekms-io-v1alpha1-keypolicy"
	KeyGrantPath  = "/validate-kms-kubekms-io-v1alpha1-keygrant"
)

// +kubebuilder:webhook:path=/validate-kms-kubekms-io-v1alpha1-key,mutating=false,failurePolicy=fail,sideEffects=None,groups=kms.kubekms.io,resources=keys,verbs=update;delete,versions=v1alpha1,name=vkey.kms.kubekms.io,admissionReviewVersions=v1,timeoutSeconds=5
// +kubebuilder:webhook:path=/validate-kms-kubekms-io-v1alpha1-keypolicy,mutating=false,failurePolicy=fail,sideEffects=None,groups=kms.kubekms.io,resources=keypolicies,verbs=create;update;delete,versions=v1alpha1,name=vkeypolicy.kms.kubekms.io,admissionReviewVersions=v1,timeoutSeconds=5
// +kubebuilder:webhook:path=/validate-kms-kubekms-io-v1alpha1-keygrant,mutating=false,failurePolicy=fail,sideEffects=None,groups=kms.kubekms.io,resources=keygrants,verbs=create;update;delete,versions=v1alpha1,name=vkeygrant.kms.kubekms.io,admissionReviewVersions=v1,timeoutSeconds=5

// Validator checks admin actions against key policies.
type Validator struct {
	Access     *access.Index
	Authorizer *authz.Authorizer
	Decoder    admission.Decoder
}

// Handlers returns the three admission handlers by path.
func (v *Validator) Handlers() map[string]http.Handler {
	return map[string]http.Handler{
		KeyPath:       &admission.Webhook{Handler: admission.HandlerFunc(v.key)},
		KeyPolicyPath: &admission.Webhook{Handler: admission.HandlerFunc(v.keyPolicy)},
		KeyGrantPath:  &admission.Webhook{Handler: admission.HandlerFunc(v.keyGrant)},
	}
}

// KeyActions says which admin actions a change of a Key is: none for
// metadata kubekms itself keeps (finalizers, labels).
func KeyActions(old, new *kmsv1alpha1.Key) []string {
	var out []string
	if new.Annotations[kmsv1alpha1.RotateAnnotation] != old.Annotations[kmsv1alpha1.RotateAnnotation] {
		out = append(out, "Rotate")
	}
	if new.Spec.State != old.Spec.State && new.Spec.State == kmsv1alpha1.KeyDesiredDisabled {
		out = append(out, "Disable")
	}
	o, n := old.Spec, new.Spec
	if n.State == kmsv1alpha1.KeyDesiredDisabled {
		o.State, n.State = "", "" // judged as Disable above
	}
	if !reflect.DeepEqual(o, n) {
		out = append(out, "Administer")
	}
	return out
}

func (v *Validator) key(ctx context.Context, req admission.Request) admission.Response {
	old := &kmsv1alpha1.Key{}
	if err := v.Decoder.DecodeRaw(req.OldObject, old); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	actions := []string{"ScheduleDeletion"}
	if req.Operation == admissionv1.Update {
		key := &kmsv1alpha1.Key{}
		if err := v.Decoder.DecodeRaw(req.Object, key); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		actions = KeyActions(old, key)
	}
	return v.check(ctx, req.UserInfo, old.Namespace, old.Name, actions, nil)
}

// decodeSubject decodes the object a request is about: the new one, or the
// old one for a deletion.
func (v *Validator) decodeSubject(req admission.Request, into runtime.Object) error {
	raw := req.Object
	if req.Operation == admissionv1.Delete {
		raw = req.OldObject
	}
	return v.Decoder.DecodeRaw(raw, into)
}

func (v *Validator) keyPolicy(ctx context.Context, req admission.Request) admission.Response {
	p := &kmsv1alpha1.KeyPolicy{}
	if err := v.decodeSubject(req, p); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if resp := v.check(ctx, req.UserInfo, p.Namespace, p.Spec.KeyRef.Name, []string{"PutPolicy"}, nil); !resp.Allowed {
		return resp
	}
	if req.Operation == admissionv1.Delete || p.Spec.BypassPolicyLockoutSafetyCheck {
		return admission.Allowed("")
	}
	// Lockout check: under the new policy, could its author change it again?
	d, err := policy.Evaluate(v.request(req.UserInfo, "PutPolicy"), access.PolicyFrom(p), nil, v.rbac(ctx, req.UserInfo, p.Namespace, p.Spec.KeyRef.Name, "PutPolicy"))
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if !d.Allowed {
		return admission.Denied(fmt.Sprintf("kubekms: this KeyPolicy would leave %s unable to change it again (no statement allows PutPolicy for them); "+
			"set spec.bypassPolicyLockoutSafetyCheck: true if you mean it", req.UserInfo.Username))
	}
	return admission.Allowed("")
}

func (v *Validator) keyGrant(ctx context.Context, req admission.Request) admission.Response {
	g := &kmsv1alpha1.KeyGrant{}
	if err := v.decodeSubject(req, g); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if req.Operation == admissionv1.Delete && retiring(g.Spec.RetiringPrincipal, req.UserInfo) {
		return admission.Allowed("the retiring principal may delete the grant")
	}
	return v.check(ctx, req.UserInfo, g.Namespace, g.Spec.KeyRef.Name, []string{"CreateGrant"}, nil)
}

// check allows the change when the key's accepted policy (if any) allows
// every action to the user.
func (v *Validator) check(ctx context.Context, user authenticationv1.UserInfo, namespace, key string, actions []string, ec map[string]string) admission.Response {
	pol, _ := v.Access.For(namespace, key, time.Now())
	if pol == nil || len(actions) == 0 {
		return admission.Allowed("")
	}
	for _, action := range actions {
		req := v.request(user, action)
		req.EncryptionContext = ec
		d, err := policy.Evaluate(req, pol, nil, v.rbac(ctx, user, namespace, key, action))
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		if !d.Allowed {
			return admission.Denied(fmt.Sprintf("kubekms: %s may not %s key %s/%s: %s", user.Username, action, namespace, key, d.Explanation))
		}
	}
	return admission.Allowed("")
}

func (v *Validator) request(user authenticationv1.UserInfo, action string) policy.Request {
	p := policy.Principal{Username: user.Username, UID: user.UID, Groups: user.Groups}
	if rest, ok := strings.CutPrefix(user.Username, "system:serviceaccount:"); ok {
		p.Namespace, p.ServiceAccount, _ = strings.Cut(rest, ":")
	}
	return policy.Request{Principal: p, Action: action}
}

func (v *Validator) rbac(ctx context.Context, user authenticationv1.UserInfo, namespace, key, action string) policy.RBACFunc {
	return func() (bool, string, error) {
		extra := map[string][]string{}
		for k, val := range user.Extra {
			extra[k] = val
		}
		d, err := v.Authorizer.Authorize(ctx, authz.Request{
			Principal: &authn.Principal{Username: user.Username, UID: user.UID, Groups: user.Groups, Extra: extra},
			Action:    action, Namespace: namespace, Name: key,
		})
		return d.Allowed, d.DecidedBy, err
	}
}

func retiring(p *kmsv1alpha1.GrantPrincipal, user authenticationv1.UserInfo) bool {
	switch {
	case p == nil:
		return false
	case p.ServiceAccount != "":
		return user.Username == "system:serviceaccount:"+strings.Replace(p.ServiceAccount, "/", ":", 1)
	case p.User != "":
		return user.Username == p.User
	case p.Group != "":
		for _, g := range user.Groups {
			if g == p.Group {
				return true
			}
		}
	}
	return false
}

// VWCName is the ValidatingWebhookConfiguration whose caBundle the manager
// keeps set to its CA.
const VWCName = "kubekms-validating-webhook-configuration"

// MWCName is the pod injector's webhook configuration (package inject).
const MWCName = "kubekms-mutating-webhook-configuration"

// Setup registers the webhooks with the manager's webhook server.
func Setup(mgr ctrl.Manager, index *access.Index, authorizer *authz.Authorizer) {
	v := &Validator{Access: index, Authorizer: authorizer, Decoder: admission.NewDecoder(mgr.GetScheme())}
	for path, h := range v.Handlers() {
		mgr.GetWebhookServer().Register(path, h)
	}
}

// validating- and mutatingwebhookconfigurations: keep our own caBundles set to our CA.
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=get;patch,resourceNames=kubekms-validating-webhook-configuration
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;patch,resourceNames=kubekms-mutating-webhook-configuration

// CABundleInjector sets the caBundle of our webhook configuration once the
// manager starts (every replica; the write is idempotent).
type CABundleInjector struct {
	Client client.Client
	// Reader must not be a cache: the manager may only get and patch this
	// one object, not list or watch them all.
	Reader client.Reader
	CAPEM  []byte
}

// NeedLeaderElection: any replica may set it.
func (c *CABundleInjector) NeedLeaderElection() bool { return false }

// Start patches the caBundle, retrying until it succeeds or ctx ends.
func (c *CABundleInjector) Start(ctx context.Context) error {
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

func (c *CABundleInjector) inject(ctx context.Context) error {
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
