package agent

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// KubeObjects reads Secrets and ConfigMaps of one namespace with the pod's
// own ServiceAccount: get on each named object, and a watch narrowed to its
// name (RBAC with resourceNames allows both).
type KubeObjects struct {
	Client    corev1client.CoreV1Interface
	Namespace string
}

// Get implements Objects.
func (k KubeObjects) Get(ctx context.Context, kind SourceKind, name string) (map[string][]byte, error) {
	if kind == SourceConfigMap {
		cm, err := k.Client.ConfigMaps(k.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		out := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
		for key, v := range cm.Data {
			out[key] = []byte(v)
		}
		for key, v := range cm.BinaryData {
			out[key] = v
		}
		return out, nil
	}
	s, err := k.Client.Secrets(k.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return s.Data, nil
}

// Watch implements Objects: it re-opens the watch when the API server ends
// it, with a pause after errors, and reports a possible change each time.
func (k KubeObjects) Watch(ctx context.Context, kind SourceKind, name string, changed func()) {
	opts := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()}
	for ctx.Err() == nil {
		var w watch.Interface
		var err error
		if kind == SourceConfigMap {
			w, err = k.Client.ConfigMaps(k.Namespace).Watch(ctx, opts)
		} else {
			w, err = k.Client.Secrets(k.Namespace).Watch(ctx, opts)
		}
		if err == nil {
			for range w.ResultChan() {
				changed()
			}
			w.Stop()
		}
		// A watch that ended may have missed an event; the caller re-reads.
		changed()
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
	}
}

// KMSDecrypter decrypts through the data plane client.
type KMSDecrypter struct {
	Client interface {
		DecryptAny(ctx context.Context, data []byte, encryptionContext map[string]string, keyID string) ([]byte, error)
	}
}

// Decrypt implements Decrypter.
func (k KMSDecrypter) Decrypt(ctx context.Context, ciphertext []byte, ec map[string]string) ([]byte, error) {
	return k.Client.DecryptAny(ctx, ciphertext, ec, "")
}
