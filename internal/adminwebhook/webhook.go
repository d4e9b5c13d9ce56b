// Package adminwebhook holds the webhooks that make key administration
// follow the key's policy, on top of RBAC: changing a Key, its KeyPolicy or
// its KeyGrants needs the matching admin action (Rotate, Disable,
// Administer, ScheduleDeletion, ImportKeyMaterial, PutPolicy, CreateGrant)
// under the KeyPolicy governing the key; restoring a deleted key needs
// CancelKeyDeletion under the policy it had when deleted. With no policy,
// RBAC alone decides (the API server already did; a restore asks for the
// verb restore). A policy that would leave its author unable to change it
// again is refused unless it says it means it
// (bypassPolicyLockoutSafetyCheck), as on AWS.
//
// A mutating webhook binds each new KeyPolicy and KeyGrant to the Key it
// names by an ownerReference (its UID); the validating webhooks refuse a
// policy or grant for a Key that does not exist and any change of that
// binding. Every webhook refuses until the caches it reads have synced.
//
// Files by job: key.go validates Keys, policygrant.go KeyPolicies and
// KeyGrants, bind.go is the mutating bind webhook, decide.go holds what
// they share (the governing policy, RBAC questions), and
// cabundle_injector.go keeps the caBundle of the webhook configurations set.
package adminwebhook

import (
	"context"
	"fmt"
	"net/http"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/authz"
	"github.com/kubekms/kubekms/internal/keystore"
)

// Paths the webhooks are served on.
const (
	KeyPath       = "/validate-kms-kubekms-io-v1alpha1-key"
	KeyPolicyPath = "/validate-kms-kubekms-io-v1alpha1-keypolicy"
	KeyGrantPath  = "/validate-kms-kubekms-io-v1alpha1-keygrant"
	BindPath      = "/mutate-kms-kubekms-io-v1alpha1-bind"
)

// The key webhooks always fail closed (failurePolicy Fail): while no replica
// answers, nobody changes a key, its policy or its grants.
// +kubebuilder:webhook:path=/validate-kms-kubekms-io-v1alpha1-key,mutating=false,failurePolicy=fail,sideEffects=None,groups=kms.kubekms.io,resources=keys,verbs=create;update;delete,versions=v1alpha1,name=vkey.kms.kubekms.io,admissionReviewVersions=v1,timeoutSeconds=5
// +kubebuilder:webhook:path=/validate-kms-kubekms-io-v1alpha1-keypolicy,mutating=false,failurePolicy=fail,sideEffects=None,groups=kms.kubekms.io,resources=keypolicies,verbs=create;update;delete,versions=v1alpha1,name=vkeypolicy.kms.kubekms.io,admissionReviewVersions=v1,timeoutSeconds=5
// +kubebuilder:webhook:path=/validate-kms-kubekms-io-v1alpha1-keygrant,mutating=false,failurePolicy=fail,sideEffects=None,groups=kms.kubekms.io,resources=keygrants,verbs=create;update;delete,versions=v1alpha1,name=vkeygrant.kms.kubekms.io,admissionReviewVersions=v1,timeoutSeconds=5
// +kubebuilder:webhook:path=/mutate-kms-kubekms-io-v1alpha1-bind,mutating=true,failurePolicy=fail,sideEffects=None,groups=kms.kubekms.io,resources=keypolicies;keygrants,verbs=create,versions=v1alpha1,name=mbind.kms.kubekms.io,admissionReviewVersions=v1,timeoutSeconds=5

// Authorizer answers RBAC questions (an *authz.Authorizer; a fake in tests).
type Authorizer interface {
	Authorize(ctx context.Context, r authz.Request) (authz.Decision, error)
}

// Validator checks admin actions against key policies.
type Validator struct {
	Access     *access.Index
	Authorizer Authorizer
	Decoder    admission.Decoder
	// Reader reads Keys and Namespaces (the manager's cache); APIReader
	// reads uncached, for a Key the cache has not seen yet.
	Reader, APIReader client.Reader
	// Tombstones lists the versions of a key ID, tombstoned or not (keystore.Store.ByKeyID).
	Tombstones func(ctx context.Context, keyID string) ([]keystore.Version, error)
	// Self is the manager's own username: what it does to the objects it
	// keeps (finalizer, a finished import request, a restored policy) is
	// not an admin act of a user.
	Self string
	// Synced says whether the caches the decisions read have synced; until
	// then every request is refused.
	Synced func() bool
	// Clock is the time every decision is taken at (active grants, a
	// deleted key's deletion window); nil means the real clock.
	Clock clock.PassiveClock
}

// Handlers returns the admission handlers by path.
func (v *Validator) Handlers() map[string]http.Handler {
	return map[string]http.Handler{
		KeyPath:       &admission.Webhook{Handler: v.whenSynced(v.key)},
		KeyPolicyPath: &admission.Webhook{Handler: v.whenSynced(v.keyPolicy)},
		KeyGrantPath:  &admission.Webhook{Handler: v.whenSynced(v.keyGrant)},
		BindPath:      &admission.Webhook{Handler: v.whenSynced(v.bind)},
	}
}

// whenSynced refuses every request until the caches have synced: a
// starting replica that has not seen the policies would allow everything.
func (v *Validator) whenSynced(h admission.HandlerFunc) admission.HandlerFunc {
	return func(ctx context.Context, req admission.Request) admission.Response {
		if v.Synced == nil || !v.Synced() {
			return admission.Denied("kubekms: the manager is starting and has not read the key policies yet; try again in a few seconds")
		}
		return h(ctx, req)
	}
}

// now is the time a decision is taken at: the injected clock's.
func (v *Validator) now() time.Time {
	if v.Clock == nil {
		return time.Now()
	}
	return v.Clock.Now()
}

// Setup registers the webhooks with the manager's webhook server. v needs
// Access, Authorizer, Tombstones, Self and Synced; the rest comes from mgr.
func Setup(mgr ctrl.Manager, v *Validator) {
	v.Decoder = admission.NewDecoder(mgr.GetScheme())
	v.Reader, v.APIReader = mgr.GetClient(), mgr.GetAPIReader()
	for path, h := range v.Handlers() {
		mgr.GetWebhookServer().Register(path, h)
	}
}

// WhoAmI is the username the manager's own requests carry (SelfSubjectReview),
// for Validator.Self.
func WhoAmI(ctx context.Context, cs kubernetes.Interface) (string, error) {
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("who am I (SelfSubjectReview): %w", err)
	}
	return r.Status.UserInfo.Username, nil
}
