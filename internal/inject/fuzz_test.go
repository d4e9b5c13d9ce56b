package inject

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/kubekms/kubekms/internal/agent"
)

// Pod annotations are untrusted input to the webhook and the agent. Whatever
// they hold: no panic; an accepted configuration names files that stay in
// the directory; injecting is idempotent.
func FuzzInject(f *testing.F) {
	f.Add("secret-db", "secret/db/password", "context-db", "a=b", "mode", "init")
	f.Add("env-API_KEY", "configmap/app/key", "reload-signal", "SIGHUP", "mount-path", "/etc/secrets")
	f.Add("secret-../x", "kms:v1:AA", "file-mode", "0644", "agent-memory-limit", "1Mi")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3 string) {
		a := map[string]string{agent.AnnotationInject: "true"}
		for _, kv := range [][2]string{{k1, v1}, {k2, v2}, {k3, v3}} {
			a["kms.kubekms.io/"+kv[0]] = kv[1]
		}
		cfg, err := agent.ParseAnnotations(a)
		if err == nil {
			for _, file := range cfg.Files {
				if file.Name == "" || strings.ContainsAny(file.Name, "/\x00") || strings.HasPrefix(file.Name, ".") {
					t.Fatalf("accepted file name %q", file.Name)
				}
			}
		} else if !strings.Contains(err.Error(), "annotation ") {
			t.Fatalf("error does not name the annotation: %v", err)
		}
		pod := appPod(a)
		pod.Spec.Containers[0].Command = []string{"/app"}
		if err := Inject(pod, "shop", testOptions); err != nil {
			return
		}
		again := pod.DeepCopy()
		if err := Inject(again, "shop", testOptions); err != nil {
			t.Fatalf("injecting an injected pod failed: %v", err)
		}
		if !equality.Semantic.DeepEqual(pod, again) {
			t.Fatal("injecting twice changed the pod")
		}
	})
}
