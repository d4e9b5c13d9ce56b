package inject

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubekms/kubekms/internal/agent"
)

var testOptions = Options{
	Image:   "kubekms:test",
	Address: "kubekms.kubekms-system.svc:50051",
	Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")},
	},
	SkipNamespaces: []string{"kubekms-system", "kube-system"},
}

func appPod(annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: annotations},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "migrate", Image: "migrate"}},
			Containers: []corev1.Container{
				{Name: "app", Image: "app", SecurityContext: &corev1.SecurityContext{RunAsUser: new(int64(1000))}},
				{Name: "proxy", Image: "proxy"},
			},
		},
	}
}

func TestInjectSidecar(t *testing.T) {
	pod := appPod(map[string]string{agent.AnnotationInject: "true", agent.AnnotationSecretPrefix + "db": "secret/db/password",
		agent.AnnotationMemoryLimit: "48Mi"})
	if err := Inject(pod, "shop", testOptions); err != nil {
		t.Fatal(err)
	}
	if len(pod.Spec.InitContainers) != 2 || pod.Spec.InitContainers[0].Name != ContainerName {
		t.Fatalf("init containers: %v", names(pod.Spec.InitContainers))
	}
	a := pod.Spec.InitContainers[0]
	if a.RestartPolicy == nil || *a.RestartPolicy != corev1.ContainerRestartPolicyAlways || a.StartupProbe == nil {
		t.Fatal("the agent is not a native sidecar with a startup probe")
	}
	if got := a.StartupProbe.Exec.Command; strings.Join(got, " ") != "/kubekms-agent ready" {
		t.Fatalf("startup probe %v", got)
	}
	if *a.SecurityContext.RunAsUser != 1000 || !*a.SecurityContext.ReadOnlyRootFilesystem || *a.SecurityContext.AllowPrivilegeEscalation {
		t.Fatalf("security context %+v", a.SecurityContext)
	}
	if a.Resources.Limits.Memory().String() != "48Mi" || a.Resources.Requests.Cpu().String() != "10m" {
		t.Fatalf("resources %+v", a.Resources)
	}
	for _, c := range append(pod.Spec.Containers, pod.Spec.InitContainers[1]) {
		m := c.VolumeMounts[len(c.VolumeMounts)-1]
		if m.Name != SecretsVolume || m.MountPath != agent.DefaultMountPath || !m.ReadOnly {
			t.Fatalf("%s mounts %+v", c.Name, c.VolumeMounts)
		}
	}
	var emptyDir, projected bool
	for _, v := range pod.Spec.Volumes {
		if v.Name == SecretsVolume && v.EmptyDir != nil && v.EmptyDir.Medium == corev1.StorageMediumMemory {
			emptyDir = true
		}
		if v.Name == PodVolume && v.Projected != nil && v.Projected.Sources[0].ServiceAccountToken.Audience == "kubekms" {
			projected = true
		}
	}
	if !emptyDir || !projected || len(pod.Spec.Volumes) != 2 {
		t.Fatalf("volumes %+v", pod.Spec.Volumes)
	}

	// Injecting again changes nothing.
	again := pod.DeepCopy()
	if err := Inject(again, "shop", testOptions); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(pod, again) {
		t.Fatal("injecting twice changed the pod")
	}
}

func TestInjectInitModeAndMountPath(t *testing.T) {
	pod := appPod(map[string]string{agent.AnnotationInject: "true", agent.AnnotationMode: "init",
		agent.AnnotationMountPath: "/etc/app/secrets", agent.AnnotationSecretPrefix + "key": "kms:v1:AAAA"})
	if err := Inject(pod, "batch", testOptions); err != nil {
		t.Fatal(err)
	}
	a := pod.Spec.InitContainers[0]
	if a.RestartPolicy != nil || a.StartupProbe != nil {
		t.Fatal("init mode must be a plain init container so Jobs finish")
	}
	if m := pod.Spec.Containers[0].VolumeMounts[0]; m.MountPath != "/etc/app/secrets" {
		t.Fatalf("mount %+v", m)
	}
}

func TestInjectLeavesOthersAlone(t *testing.T) {
	for name, tc := range map[string]struct {
		annotations map[string]string
		namespace   string
	}{
		"not asked":             {map[string]string{agent.AnnotationSecretPrefix + "db": "secret/db/password"}, "shop"},
		"inject false":          {map[string]string{agent.AnnotationInject: "false", agent.AnnotationSecretPrefix + "db": "secret/db/password"}, "shop"},
		"operator namespace":    {map[string]string{agent.AnnotationInject: "true", agent.AnnotationSecretPrefix + "db": "secret/db/password"}, "kubekms-system"},
		"kube-system":           {map[string]string{agent.AnnotationInject: "true", agent.AnnotationSecretPrefix + "db": "secret/db/password"}, "kube-system"},
		"bad annotation, other": {map[string]string{agent.AnnotationInject: "true", agent.AnnotationMode: "bogus"}, "kube-system"},
	} {
		pod := appPod(tc.annotations)
		orig := pod.DeepCopy()
		if err := Inject(pod, tc.namespace, testOptions); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !equality.Semantic.DeepEqual(pod, orig) {
			t.Fatalf("%s: pod changed", name)
		}
	}
}

func TestInjectRefusesBadPods(t *testing.T) {
	pod := appPod(map[string]string{agent.AnnotationInject: "true", agent.AnnotationSecretPrefix + "db": "secret/db/password"})
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "mine", MountPath: agent.DefaultMountPath}}
	if err := Inject(pod, "shop", testOptions); err == nil || !strings.Contains(err.Error(), "container app already mounts mine at /var/run/kubekms/secrets") {
		t.Fatalf("err = %v", err)
	}
	pod = appPod(map[string]string{agent.AnnotationInject: "true", agent.AnnotationSecretPrefix + "db": "secret/db/password",
		agent.AnnotationMemoryRequest: "64Mi"})
	if err := Inject(pod, "shop", testOptions); err == nil || !strings.Contains(err.Error(), "request 64Mi is above the limit 32Mi") {
		t.Fatalf("err = %v", err)
	}
}

func names(cs []corev1.Container) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestInjectExecWrapper(t *testing.T) {
	pod := appPod(map[string]string{agent.AnnotationInject: "true", agent.AnnotationSecretPrefix + "db": "secret/db/password",
		agent.AnnotationEnvPrefix + "API_KEY": "configmap/app/api", agent.AnnotationReloadSignal: "SIGHUP"})
	pod.Spec.Containers[0].Command = []string{"/app", "--serve"}
	pod.Spec.Containers[0].Args = []string{"--port=8080"}
	if err := Inject(pod, "shop", testOptions); err != nil {
		t.Fatal(err)
	}
	want := []string{"/var/run/kubekms/bin/kubekms-agent", "exec", "--dir", "/var/run/kubekms/secrets",
		"--env", "API_KEY=env-API_KEY", "--reload-signal", "SIGHUP", "--", "/app", "--serve"}
	if got := pod.Spec.Containers[0].Command; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("command = %q\nwant %q", got, want)
	}
	if got := pod.Spec.Containers[0].Args; len(got) != 1 || got[0] != "--port=8080" {
		t.Fatalf("args changed: %q", got)
	}
	if len(pod.Spec.Containers[1].Command) != 0 {
		t.Fatal("only the first container is wrapped by default")
	}
	a := pod.Spec.InitContainers[0]
	if strings.Join(a.Args, " ") != "--bin-dir "+agent.BinDir {
		t.Fatalf("agent args %q", a.Args)
	}
	again := pod.DeepCopy()
	if err := Inject(again, "shop", testOptions); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(pod, again) {
		t.Fatal("injecting a wrapped pod again changed it")
	}

	noCommand := appPod(map[string]string{agent.AnnotationInject: "true", agent.AnnotationEnvPrefix + "API_KEY": "configmap/app/api"})
	if err := Inject(noCommand, "shop", testOptions); err == nil || !strings.Contains(err.Error(), "annotation kms.kubekms.io/env-API_KEY: container app has no command in the pod spec") {
		t.Fatalf("err = %v", err)
	}
	unknown := appPod(map[string]string{agent.AnnotationInject: "true", agent.AnnotationEnvPrefix + "API_KEY": "configmap/app/api",
		agent.AnnotationExecContainers: "worker"})
	if err := Inject(unknown, "shop", testOptions); err == nil || !strings.Contains(err.Error(), "the pod has no container worker") {
		t.Fatalf("err = %v", err)
	}
}

func TestInjectNeverRunsTheAgentAsRoot(t *testing.T) {
	pod := appPod(map[string]string{agent.AnnotationInject: "true", agent.AnnotationSecretPrefix + "db": "secret/db/password"})
	pod.Spec.Containers[0].SecurityContext.RunAsUser = new(int64(0))
	if err := Inject(pod, "shop", testOptions); err != nil {
		t.Fatal(err)
	}
	if sc := pod.Spec.InitContainers[0].SecurityContext; sc.RunAsUser != nil || !*sc.RunAsNonRoot {
		t.Fatalf("agent security context %+v", sc)
	}
	pod = appPod(map[string]string{agent.AnnotationInject: "true", agent.AnnotationSecretPrefix + "db": "secret/db/password",
		agent.AnnotationRunAsUser: "2000"})
	if err := Inject(pod, "shop", testOptions); err != nil {
		t.Fatal(err)
	}
	if uid := pod.Spec.InitContainers[0].SecurityContext.RunAsUser; uid == nil || *uid != 2000 {
		t.Fatalf("run-as-user: %v", uid)
	}
}
