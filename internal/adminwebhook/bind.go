package adminwebhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
)

// bind sets the ownerReference that binds a new KeyPolicy or KeyGrant to
// the Key it names, now: its UID, so that it never governs a later Key of
// the same name, and the garbage collector deletes it with its Key.
func (v *Validator) bind(ctx context.Context, req admission.Request) admission.Response {
	var obj client.Object
	var keyName string
	switch req.Kind.Kind {
	case "KeyPolicy":
		p := &kmsv1alpha1.KeyPolicy{}
		if err := v.Decoder.DecodeRaw(req.Object, p); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		obj, keyName = p, p.Spec.KeyRef.Name
	case "KeyGrant":
		g := &kmsv1alpha1.KeyGrant{}
		if err := v.Decoder.DecodeRaw(req.Object, g); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		obj, keyName = g, g.Spec.KeyRef.Name
	default:
		return admission.Allowed("")
	}
	key, resp := v.existingKey(ctx, req.Namespace, keyName, req.Kind.Kind)
	if key == nil {
		return resp
	}
	refs := slices.DeleteFunc(slices.Clone(obj.GetOwnerReferences()), func(r metav1.OwnerReference) bool { return r.Kind == access.KeyKind })
	obj.SetOwnerReferences(append(refs, access.KeyOwnerReference(key)))
	raw, err := json.Marshal(obj)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, raw)
}

// existingKey reads the Key a policy or grant names, from the cache or,
// when the cache has not seen it yet, from the API server.
func (v *Validator) existingKey(ctx context.Context, namespace, name, kind string) (*kmsv1alpha1.Key, admission.Response) {
	key := &kmsv1alpha1.Key{}
	nn := client.ObjectKey{Namespace: namespace, Name: name}
	err := v.Reader.Get(ctx, nn, key)
	if apierrors.IsNotFound(err) {
		err = v.APIReader.Get(ctx, nn, key)
	}
	switch {
	case apierrors.IsNotFound(err) || (err == nil && !key.DeletionTimestamp.IsZero()):
		return nil, admission.Denied(fmt.Sprintf("kubekms: spec.keyRef: Key %s does not exist in namespace %s; create the Key first: a %s binds to an existing key", name, namespace, kind))
	case err != nil:
		return nil, admission.Errored(http.StatusInternalServerError, err)
	}
	return key, admission.Response{}
}
