package agent

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KubeObjects reads Secrets and ConfigMaps of one namespace with the pod's
// own ServiceAccount: get on each named object, and a watch narrowed to its
// name (RBAC with resourceNames allows both). It speaks plain JSON over the
// client-go transport rather than through typed clients, which keeps the
// agent small: the typed clientset registers every API group at start.
type KubeObjects struct {
	// Host is the API server's base URL; Client carries its credentials
	// (rest.HTTPClientFor).
	Host      string
	Client    *http.Client
	Namespace string
	// Log, if set, hears about watches the API server refuses.
	Log *slog.Logger
}

func (k KubeObjects) url(kind SourceKind, name string, watch bool) string {
	resource := "secrets"
	if kind == SourceConfigMap {
		resource = "configmaps"
	}
	base := strings.TrimSuffix(k.Host, "/") + "/api/v1/namespaces/" + url.PathEscape(k.Namespace) + "/" + resource
	if !watch {
		return base + "/" + url.PathEscape(name)
	}
	q := url.Values{"watch": {"true"}, "fieldSelector": {"metadata.name=" + name}, "allowWatchBookmarks": {"false"}}
	return base + "?" + q.Encode()
}

// Get implements Objects. Errors are Kubernetes status errors, so callers
// can tell NotFound and Forbidden apart.
func (k KubeObjects) Get(ctx context.Context, kind SourceKind, name string) (map[string][]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url(kind, name, false), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		st := &metav1.Status{}
		if json.Unmarshal(body, st) != nil || st.Kind != "Status" {
			return nil, fmt.Errorf("get %s %s: HTTP %d", kind, name, resp.StatusCode)
		}
		return nil, &apierrors.StatusError{ErrStatus: *st}
	}
	var obj struct {
		Data       map[string]string `json:"data"`
		BinaryData map[string][]byte `json:"binaryData"`
	}
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, fmt.Errorf("get %s %s: %w", kind, name, err)
	}
	out := make(map[string][]byte, len(obj.Data)+len(obj.BinaryData))
	for key, v := range obj.Data {
		if kind == SourceSecret {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return nil, fmt.Errorf("secret %s key %s is not base64", name, key)
			}
			out[key] = b
		} else {
			out[key] = []byte(v)
		}
	}
	maps.Copy(out, obj.BinaryData)
	return out, nil
}

// Watch implements Objects: every event of the watch stream, and every time
// the stream ends (it may have missed one), is a possible change. It waits
// a little after a stream fails before opening another.
func (k KubeObjects) Watch(ctx context.Context, kind SourceKind, name string, changed func()) {
	for ctx.Err() == nil {
		if req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url(kind, name, true), nil); err == nil {
			req.Header.Set("Accept", "application/json")
			if resp, err := k.Client.Do(req); err == nil {
				if resp.StatusCode != http.StatusOK && k.Log != nil {
					k.Log.Warn("Could not watch a source; reading it again every 5s instead", "kind", string(kind), "name", name, "status", resp.StatusCode)
				}
				if resp.StatusCode == http.StatusOK {
					lines := bufio.NewScanner(resp.Body)
					lines.Buffer(make([]byte, 64<<10), 16<<20)
					for lines.Scan() {
						changed()
					}
				}
				resp.Body.Close()
			}
		}
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
