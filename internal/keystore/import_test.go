package keystore

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/seal"
)

// An External key has at most one set of import parameters at a time: made
// once (AlreadyExists: read them again), read back without the private
// key, renewed by delete and create.
func TestImportParameters(t *testing.T) {
	ctx := context.Background()
	s, c := newStore(t)
	if p, err := s.ImportParameters(ctx, keyID); p != nil || err != nil {
		t.Fatalf("ImportParameters before any = %+v, %v; want nil, nil", p, err)
	}
	private, public := []byte("pkcs8 private key"), []byte("spki public key")
	expires := t0.Add(24 * time.Hour)
	if created, err := s.CreateImportParameters(ctx, keyID, private, public, "token-1", expires); !created || err != nil {
		t.Fatalf("CreateImportParameters = %v, %v", created, err)
	}
	if created, err := s.CreateImportParameters(ctx, keyID, []byte("other"), public, "token-2", expires); created || err != nil {
		t.Fatalf("second CreateImportParameters = %v, %v; want false, nil", created, err)
	}
	p, err := s.ImportParameters(ctx, keyID)
	if err != nil || p == nil {
		t.Fatalf("ImportParameters = %+v, %v", p, err)
	}
	if p.KeyID != keyID || p.Token != "token-1" || !p.ExpiresAt.Equal(expires) || !bytes.Equal(p.PublicKey, public) {
		t.Fatalf("ImportParameters = %+v", p)
	}
	secret := secretOf(t, c, ImportSecretName(keyID))
	if secret.Labels[kmsv1alpha1.ComponentLabel] != ComponentImportWrappingKey || secret.Type != SecretType || bytes.Contains(secret.Data[dataSealed], private) {
		t.Fatalf("wrapping key Secret: labels %v type %q; want the import component, the sealed type and no private key in the clear", secret.Labels, secret.Type)
	}
	if got, err := s.LoadImportKey(ctx, p); err != nil || !bytes.Equal(got, private) {
		t.Fatalf("LoadImportKey = %q, %v", got, err)
	}
	// The wrapping key is not a version of the key: its Secret is never
	// listed as one, and its blob does not unseal as material.
	if vs, err := s.ByKeyID(ctx, keyID); err != nil || len(vs) != 0 {
		t.Fatalf("ByKeyID lists the wrapping key: %v, %v", vs, err)
	}
	if _, err := s.unsealSecret(ctx, secret, seal.MaterialAAD(keyID, 0, keySpec)); !errors.Is(err, seal.ErrUnseal) {
		t.Fatalf("the wrapping key unsealed as material: %v", err)
	}

	// Renewal: delete what was read, create anew.
	if err := s.DeleteImportParameters(ctx, p); err != nil {
		t.Fatal(err)
	}
	if created, err := s.CreateImportParameters(ctx, keyID, []byte("new private"), public, "token-3", expires); !created || err != nil {
		t.Fatalf("CreateImportParameters after renewal = %v, %v", created, err)
	}
	if _, err := s.LoadImportKey(ctx, p); err == nil || !strings.Contains(err.Error(), "renewed meanwhile") {
		t.Fatalf("LoadImportKey of the old parameters = %v, want 'renewed meanwhile'", err)
	}
	// Deleting the old parameters again leaves the new ones alone.
	if err := s.DeleteImportParameters(ctx, p); err != nil {
		t.Fatalf("DeleteImportParameters of old parameters = %v, want nil (someone renewed them)", err)
	}
	renewed, err := s.ImportParameters(ctx, keyID)
	if err != nil || renewed == nil || renewed.Token != "token-3" {
		t.Fatalf("the renewed parameters = %+v, %v; want token-3 kept", renewed, err)
	}
	if err := s.DeleteImportParameters(ctx, renewed); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteImportParameters(ctx, renewed); err != nil {
		t.Fatalf("DeleteImportParameters of parameters already gone = %v, want nil", err)
	}
}

func TestMalformedImportParameters(t *testing.T) {
	good := func() *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: ImportSecretName(keyID), UID: types.UID("u"),
				Labels:      map[string]string{LabelKeyID: keyID},
				Annotations: map[string]string{AnnotationExpiresAt: t0.Format(time.RFC3339Nano), AnnotationPublicKey: "cHVibGlj", AnnotationImportToken: "t"}},
			Type: SecretType,
		}
	}
	for name, tc := range map[string]struct {
		change      func(*corev1.Secret)
		wantMessage string
	}{
		"well formed":                 {change: func(*corev1.Secret) {}},
		"another type":                {change: func(s *corev1.Secret) { s.Type = corev1.SecretTypeOpaque }, wantMessage: "not a kubekms import wrapping key of this key"},
		"another key's":               {change: func(s *corev1.Secret) { s.Labels[LabelKeyID] = "other" }, wantMessage: "not a kubekms import wrapping key of this key"},
		"an expiry that is no time":   {change: func(s *corev1.Secret) { s.Annotations[AnnotationExpiresAt] = "soon" }, wantMessage: "is not an RFC 3339 time"},
		"no public key":               {change: func(s *corev1.Secret) { delete(s.Annotations, AnnotationPublicKey) }, wantMessage: "is not base64"},
		"a public key that is no b64": {change: func(s *corev1.Secret) { s.Annotations[AnnotationPublicKey] = "!!" }, wantMessage: "is not base64"},
	} {
		t.Run(name, func(t *testing.T) {
			secret := good()
			tc.change(secret)
			s, _ := newStore(t, secret)
			p, err := s.ImportParameters(context.Background(), keyID)
			if (err == nil) != (tc.wantMessage == "") || (err != nil && !strings.Contains(err.Error(), tc.wantMessage)) {
				t.Fatalf("ImportParameters = %+v, %v; want an error containing %q", p, err, tc.wantMessage)
			}
		})
	}
}
