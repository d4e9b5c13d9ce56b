package adminwebhook

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
)

// Until its caches have synced a starting replica has seen no policy, so
// every webhook refuses (finding 6 of issue 12), and says why.
func TestRefusesUntilSynced(t *testing.T) {
	synced := false
	v := &Validator{Synced: func() bool { return synced }}
	key, _ := json.Marshal(&kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "payments"}})
	for path, h := range v.Handlers() {
		resp := h.(*admission.Webhook).Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			Operation: admissionv1.Delete, OldObject: runtime.RawExtension{Raw: key}, Namespace: "shop",
		}})
		if resp.Allowed || !strings.Contains(resp.Result.Message, "has not read the key policies yet") {
			t.Errorf("%s while not synced: allowed=%v %q; want a refusal that says the manager is starting", path, resp.Allowed, resp.Result.Message)
		}
	}
	synced = true
	if resp := v.whenSynced(func(context.Context, admission.Request) admission.Response { return admission.Allowed("") })(context.Background(), admission.Request{}); !resp.Allowed {
		t.Errorf("once synced the handler was not reached: %q", resp.Result.Message)
	}
}

func TestKeyActions(t *testing.T) {
	base := func() *kmsv1alpha1.Key {
		return &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Name: "k", Finalizers: []string{kmsv1alpha1.KeyFinalizer}},
			Spec: kmsv1alpha1.KeySpec{KeySpec: kmsv1alpha1.KeySpecSymmetricDefault, State: kmsv1alpha1.KeyDesiredEnabled, Origin: kmsv1alpha1.KeyOriginExternal}}
	}
	for name, tc := range map[string]struct {
		mutate      func(*kmsv1alpha1.Key)
		bySelf      bool
		wantActions []string
	}{
		"no change":                       {mutate: func(*kmsv1alpha1.Key) {}},
		"labels are not an admin act":     {mutate: func(k *kmsv1alpha1.Key) { k.Labels = map[string]string{"team": "a"} }},
		"rotate":                          {mutate: func(k *kmsv1alpha1.Key) { k.Annotations = map[string]string{kmsv1alpha1.RotateAnnotation: "1"} }, wantActions: []string{"Rotate"}},
		"disable":                         {mutate: func(k *kmsv1alpha1.Key) { k.Spec.State = kmsv1alpha1.KeyDesiredDisabled }, wantActions: []string{"Disable"}},
		"description":                     {mutate: func(k *kmsv1alpha1.Key) { k.Spec.Description = "x" }, wantActions: []string{"Administer"}},
		"a user removes the finalizer":    {mutate: func(k *kmsv1alpha1.Key) { k.Finalizers = nil }, wantActions: []string{"ScheduleDeletion"}},
		"the manager removes it":          {mutate: func(k *kmsv1alpha1.Key) { k.Finalizers = nil }, bySelf: true},
		"a user adds foregroundDeletion":  {mutate: func(k *kmsv1alpha1.Key) { k.Finalizers = append(k.Finalizers, "foregroundDeletion") }, wantActions: []string{"Administer"}},
		"a user adds their own finalizer": {mutate: func(k *kmsv1alpha1.Key) { k.Finalizers = append(k.Finalizers, "example.com/hold") }, wantActions: []string{"Administer"}},
		"an import request": {mutate: func(k *kmsv1alpha1.Key) {
			k.Spec.Import = &kmsv1alpha1.KeyImport{SecretRef: &kmsv1alpha1.LocalSecretReference{Name: "s"}}
		}, wantActions: []string{"ImportKeyMaterial"}},
		"an import request and validTo": {mutate: func(k *kmsv1alpha1.Key) {
			k.Spec.Import = &kmsv1alpha1.KeyImport{SecretRef: &kmsv1alpha1.LocalSecretReference{Name: "s"}, ValidTo: &metav1.Time{}}
		}, wantActions: []string{"ImportKeyMaterial", "Administer"}},
	} {
		t.Run(name, func(t *testing.T) {
			old, new := base(), base()
			tc.mutate(new)
			if got := KeyActions(old, new, tc.bySelf); !slices.Equal(got, tc.wantActions) {
				t.Fatalf("KeyActions = %v, want %v", got, tc.wantActions)
			}
		})
	}
	t.Run("a pending import request is not asked for again", func(t *testing.T) {
		old := base()
		old.Spec.Import = &kmsv1alpha1.KeyImport{SecretRef: &kmsv1alpha1.LocalSecretReference{Name: "s"}}
		new := old.DeepCopy()
		new.Spec.Description = "x"
		if got := KeyActions(old, new, false); !slices.Equal(got, []string{"Administer"}) {
			t.Fatalf("KeyActions = %v, want [Administer]", got)
		}
	})
	t.Run("closing an import request is no admin act", func(t *testing.T) {
		old := base()
		old.Spec.Import = &kmsv1alpha1.KeyImport{SecretRef: &kmsv1alpha1.LocalSecretReference{Name: "s"}, WrappingAlgorithm: kmsv1alpha1.WrappingRSAESOAEPSHA256}
		new := old.DeepCopy()
		new.Spec.Import.SecretRef = nil
		if got := KeyActions(old, new, false); len(got) != 0 {
			t.Fatalf("KeyActions = %v, want none", got)
		}
	})
}
