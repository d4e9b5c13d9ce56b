// Package inject adds the kubekms agent to pods that ask for it with
// kms.kubekms.io/inject: "true". Inject is a pure function of the pod and
// the cluster-wide options, so the webhook is only the admission plumbing.
package inject

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/kubekms/kubekms/internal/agent"
	"github.com/kubekms/kubekms/internal/certs"
)

// Names of what Inject adds; a pod's own containers and volumes must not use them.
const (
	ContainerName = "kubekms-agent"
	SecretsVolume = "kubekms-secrets"
	PodVolume     = "kubekms-agent-pod"
	// BinVolume carries the agent binary to containers the exec wrapper runs.
	BinVolume = "kubekms-bin"
	// AgentBinary is the agent's path in the image.
	AgentBinary = "/kubekms-agent"

	// tokenSeconds is the lifetime of the projected tokens; the kubelet
	// renews them at 80%.
	tokenSeconds = 3600
)

// Options are the cluster-wide settings (Helm values agent.*).
type Options struct {
	Image           string
	ImagePullPolicy corev1.PullPolicy
	// Address of the data plane, host:port.
	Address string
	// Resources of the agent unless a pod's annotations say otherwise.
	Resources corev1.ResourceRequirements
	// SkipNamespaces are never injected (the operator's, kube-system).
	SkipNamespaces []string
}

// Inject adds the agent to pod (in namespace) if it asks for it. Injecting
// an injected pod gives the same pod. An error names the annotation that is
// wrong.
func Inject(pod *corev1.Pod, namespace string, o Options) error {
	if pod.Annotations[agent.AnnotationInject] != "true" || slices.Contains(o.SkipNamespaces, namespace) {
		return nil
	}
	cfg, err := agent.ParseAnnotations(pod.Annotations)
	if err != nil {
		return err
	}
	removeInjected(pod)

	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		for _, m := range c.VolumeMounts {
			if m.MountPath == cfg.MountPath {
				return fmt.Errorf("annotation %s: container %s already mounts %s at %s; choose another path",
					agent.AnnotationMountPath, c.Name, m.Name, cfg.MountPath)
			}
		}
	}

	resources, err := agentResources(o.Resources, cfg)
	if err != nil {
		return err
	}
	if pod.Spec.ServiceAccountName == "" {
		// What the ServiceAccount admission plugin does; projected tokens need a name.
		pod.Spec.ServiceAccountName = "default"
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes,
		corev1.Volume{Name: SecretsVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: new(resource.MustParse("16Mi"))}}},
		corev1.Volume{Name: PodVolume, VolumeSource: corev1.VolumeSource{Projected: podProjection()}},
	)
	mount := corev1.VolumeMount{Name: SecretsVolume, MountPath: cfg.MountPath, ReadOnly: true}
	for i := range pod.Spec.InitContainers {
		pod.Spec.InitContainers[i].VolumeMounts = append(pod.Spec.InitContainers[i].VolumeMounts, mount)
	}
	for i := range pod.Spec.Containers {
		pod.Spec.Containers[i].VolumeMounts = append(pod.Spec.Containers[i].VolumeMounts, mount)
	}
	a := agentContainer(pod, cfg, o, resources)
	if cfg.Wraps() {
		if err := wrap(pod, cfg); err != nil {
			return err
		}
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: BinVolume, VolumeSource: corev1.VolumeSource{
			EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: new(resource.MustParse("64Mi"))}}})
		a.Args = append(a.Args, "--bin-dir", agent.BinDir)
		a.VolumeMounts = append(a.VolumeMounts, corev1.VolumeMount{Name: BinVolume, MountPath: agent.BinDir})
	}
	pod.Spec.InitContainers = slices.Insert(pod.Spec.InitContainers, 0, a)
	return nil
}

// wrapperPath is the agent binary as app containers see it.
const wrapperPath = agent.WrapperDir + "/kubekms-agent"

// wrap makes the exec wrapper the command of the containers that get
// environment values or a reload signal. The command must be in the pod
// spec: the webhook cannot see an image's entrypoint.
func wrap(pod *corev1.Pod, cfg agent.Config) error {
	targets := cfg.ExecContainers
	if len(targets) == 0 {
		targets = []string{pod.Spec.Containers[0].Name}
	}
	why := agent.AnnotationReloadSignal
	if len(cfg.Env) > 0 {
		why = agent.AnnotationEnvPrefix + cfg.Env[0].Name
	}
	for _, name := range targets {
		i := slices.IndexFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == name })
		if i < 0 {
			return fmt.Errorf("annotation %s: the pod has no container %s", agent.AnnotationExecContainers, name)
		}
		c := &pod.Spec.Containers[i]
		if len(c.Command) == 0 {
			return fmt.Errorf("annotation %s: container %s has no command in the pod spec; the exec wrapper runs it and the webhook cannot read the image's entrypoint, so set command", why, name)
		}
		argv := []string{wrapperPath, "exec", "--dir", cfg.MountPath}
		for _, e := range cfg.Env {
			argv = append(argv, "--env", e.Name+"="+e.File)
		}
		if cfg.ReloadSignal != "" {
			argv = append(argv, "--reload-signal", cfg.ReloadSignal)
		}
		c.Command = append(append(argv, "--"), c.Command...)
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: BinVolume, MountPath: agent.WrapperDir, ReadOnly: true})
	}
	return nil
}

// removeInjected undoes a previous Inject, so injecting again is idempotent
// and follows changed annotations.
func removeInjected(pod *corev1.Pod) {
	ours := func(name string) bool { return name == SecretsVolume || name == PodVolume || name == BinVolume }
	pod.Spec.InitContainers = slices.DeleteFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == ContainerName })
	pod.Spec.Volumes = slices.DeleteFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return ours(v.Name) })
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			cs[i].VolumeMounts = slices.DeleteFunc(cs[i].VolumeMounts, func(m corev1.VolumeMount) bool { return ours(m.Name) })
			if cmd := cs[i].Command; len(cmd) > 0 && cmd[0] == wrapperPath {
				if end := slices.Index(cmd, "--"); end >= 0 {
					cs[i].Command = cmd[end+1:]
				}
			}
		}
	}
}

func agentContainer(pod *corev1.Pod, cfg agent.Config, o Options, resources corev1.ResourceRequirements) corev1.Container {
	c := corev1.Container{
		Name:            ContainerName,
		Image:           o.Image,
		ImagePullPolicy: o.ImagePullPolicy,
		Command:         []string{AgentBinary},
		Env: []corev1.EnvVar{
			{Name: "KUBEKMS_ADDRESS", Value: o.Address},
			{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		},
		Resources: resources,
		VolumeMounts: []corev1.VolumeMount{
			{Name: SecretsVolume, MountPath: agent.AgentDir},
			{Name: PodVolume, MountPath: agent.PodDir, ReadOnly: true},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                runAsUser(pod, cfg),
			RunAsNonRoot:             new(true),
			AllowPrivilegeEscalation: new(false),
			ReadOnlyRootFilesystem:   new(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	if cfg.Mode == agent.ModeSidecar {
		c.RestartPolicy = new(corev1.ContainerRestartPolicyAlways)
		// The app containers start only once every file is written.
		c.StartupProbe = &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{AgentBinary, "ready"}}},
			PeriodSeconds:    1,
			FailureThreshold: 300,
		}
	}
	return c
}

// runAsUser is the agent's UID, which owns the files: the annotation, else
// the first app container's, else nil (the pod's, or the image's). The agent
// never runs as root: an app running as root reads the files anyway.
func runAsUser(pod *corev1.Pod, cfg agent.Config) *int64 {
	uid := cfg.RunAsUser
	for _, c := range pod.Spec.Containers {
		if uid == nil && c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
			uid = c.SecurityContext.RunAsUser
			break
		}
	}
	if uid != nil && *uid == 0 {
		return nil
	}
	return uid
}

func podProjection() *corev1.ProjectedVolumeSource {
	return &corev1.ProjectedVolumeSource{
		DefaultMode: new(int32(0o444)),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "kubekms", ExpirationSeconds: new(int64(tokenSeconds)), Path: "token"}},
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: new(int64(tokenSeconds)), Path: "api-token"}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "api-ca.crt"}}}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: certs.CAConfigMapName},
				Items: []corev1.KeyToPath{{Key: certs.CAConfigMapKey, Path: "kms-ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}}}}},
		},
	}
}

// agentResources is the cluster default with the pod's overrides; a request
// above its limit is refused here rather than by the API server later.
func agentResources(def corev1.ResourceRequirements, cfg agent.Config) (corev1.ResourceRequirements, error) {
	r := *def.DeepCopy()
	set := func(list *corev1.ResourceList, name corev1.ResourceName, v string) {
		if v == "" {
			return
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[name] = resource.MustParse(v) // ParseAnnotations checked it
	}
	set(&r.Requests, corev1.ResourceCPU, cfg.CPURequest)
	set(&r.Requests, corev1.ResourceMemory, cfg.MemoryRequest)
	set(&r.Limits, corev1.ResourceCPU, cfg.CPULimit)
	set(&r.Limits, corev1.ResourceMemory, cfg.MemoryLimit)
	for name, req := range r.Requests {
		if lim, ok := r.Limits[name]; ok && req.Cmp(lim) > 0 {
			return r, fmt.Errorf("annotations kms.kubekms.io/agent-%s-request and -limit: the request %s is above the limit %s", name, req.String(), lim.String())
		}
	}
	return r, nil
}
