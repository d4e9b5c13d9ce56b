package adminwebhook

import (
	"bytes"
	"context"
	"errors"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

func TestWebhookCABundleInjector(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n")
	vwc := func() *admissionregistrationv1.ValidatingWebhookConfiguration {
		return &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: VWCName},
			Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "vkey.kms.kubekms.io"}, {Name: "vkeypolicy.kms.kubekms.io",
				ClientConfig: admissionregistrationv1.WebhookClientConfig{CABundle: []byte("old")}}}}
	}
	mwc := func(name string) *admissionregistrationv1.MutatingWebhookConfiguration {
		return &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "mpod.kms.kubekms.io"}}}
	}
	for name, tc := range map[string]struct {
		objs        []client.Object
		wantVWC     bool
		wantMWC     bool
		wantForeign bool // a configuration not ours is never touched
	}{
		"both configurations":                {objs: []client.Object{vwc(), mwc(MWCName), mwc("someone-elses")}, wantVWC: true, wantMWC: true},
		"no pod injector (injection is off)": {objs: []client.Object{vwc()}, wantVWC: true},
		"no validating configuration: done":  {objs: []client.Object{mwc(MWCName)}},
	} {
		t.Run(name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(tc.objs...).Build()
			inj := &WebhookCABundleInjector{Client: c, Reader: c, CAPEM: ca}
			if inj.NeedLeaderElection() {
				t.Error("every replica must set the caBundle, not only the leader")
			}
			if err := inj.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			gotV := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err := c.Get(context.Background(), client.ObjectKey{Name: VWCName}, gotV); err == nil {
				for _, w := range gotV.Webhooks {
					if bytes.Equal(w.ClientConfig.CABundle, ca) != tc.wantVWC {
						t.Errorf("validating webhook %s caBundle %q", w.Name, w.ClientConfig.CABundle)
					}
				}
			}
			for _, n := range []string{MWCName, "someone-elses"} {
				gotM := &admissionregistrationv1.MutatingWebhookConfiguration{}
				if err := c.Get(context.Background(), client.ObjectKey{Name: n}, gotM); err != nil {
					continue
				}
				want := n == MWCName && tc.wantMWC
				if got := bytes.Equal(gotM.Webhooks[0].ClientConfig.CABundle, ca); got != want {
					t.Errorf("mutating configuration %s: caBundle set = %v, want %v", n, got, want)
				}
			}
		})
	}
}

// Start gives up when the manager stops, not before, while the patch fails.
func TestWebhookCABundleInjectorStopsWithTheManager(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(runtime.NewScheme()).Build() // knows no webhook configurations: every Get fails
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (&WebhookCABundleInjector{Client: c, Reader: c}).Start(ctx); err != nil {
		t.Fatalf("Start = %v, want nil once the context ends", err)
	}
}

// Only a missing pod injector configuration is fine: any other failure to
// read it is an error, and Start tries again.
func TestWebhookCABundleInjectorReportsErrors(t *testing.T) {
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: VWCName}}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(vwc).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if key.Name == MWCName {
				return apierrors.NewForbidden(admissionregistrationv1.Resource("mutatingwebhookconfigurations"), MWCName, errors.New("no"))
			}
			return c.Get(ctx, key, obj, opts...)
		},
	}).Build()
	if err := (&WebhookCABundleInjector{Client: c, Reader: c}).inject(context.Background()); !apierrors.IsForbidden(err) {
		t.Fatalf("inject = %v, want the Forbidden error", err)
	}
}

func TestWhoAmI(t *testing.T) {
	cs := kubefake.NewClientset()
	cs.PrependReactor("create", "selfsubjectreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, &authenticationv1.SelfSubjectReview{Status: authenticationv1.SelfSubjectReviewStatus{
			UserInfo: authenticationv1.UserInfo{Username: selfUser}}}, nil
	})
	if got, err := WhoAmI(context.Background(), cs); err != nil || got != selfUser {
		t.Fatalf("WhoAmI = %q, %v; want %q", got, err, selfUser)
	}
}
