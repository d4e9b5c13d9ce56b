package inject_test

import (
	"context"
	"slices"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubekms/kubekms/internal/inject"
)

func newNamespace(ctx context.Context) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "inject-"}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

var annotations = map[string]string{
	"kms.kubekms.io/inject":     "true",
	"kms.kubekms.io/secret-db":  "secret/db-creds/password",
	"kms.kubekms.io/context-db": "app=shop",
}

func podTemplate(a map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "shop"}, Annotations: a},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyOnFailure,
			Containers:    []corev1.Container{{Name: "app", Image: "shop:1"}},
		},
	}
}

// podsOf waits for the pods a controller made in namespace and returns them.
func podsOf(ctx context.Context, namespace string) []corev1.Pod {
	GinkgoHelper()
	list := &corev1.PodList{}
	Eventually(func() []corev1.Pod {
		Expect(k8sClient.List(ctx, list, client.InNamespace(namespace))).To(Succeed())
		return list.Items
	}).ShouldNot(BeEmpty())
	return list.Items
}

func containerNames(cs []corev1.Container) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func volumeNames(pod *corev1.Pod) []string {
	out := []string{}
	for _, v := range pod.Spec.Volumes {
		out = append(out, v.Name)
	}
	return out
}

// expectInjected checks a stored pod has exactly one agent, our two volumes
// once each, and the read-only mount in every app container.
func expectInjected(pod *corev1.Pod, sidecar bool) {
	GinkgoHelper()
	Expect(containerNames(pod.Spec.InitContainers)).To(Equal([]string{inject.ContainerName}))
	Expect(containerNames(pod.Spec.Containers)).To(Equal([]string{"app"}))
	agent := pod.Spec.InitContainers[0]
	if sidecar {
		Expect(agent.RestartPolicy).To(HaveValue(Equal(corev1.ContainerRestartPolicyAlways)))
		Expect(agent.StartupProbe).NotTo(BeNil())
	} else {
		Expect(agent.RestartPolicy).To(BeNil())
		Expect(agent.StartupProbe).To(BeNil())
	}
	vols := volumeNames(pod)
	Expect(slices.DeleteFunc(vols, func(v string) bool { return v != inject.SecretsVolume && v != inject.PodVolume })).
		To(ConsistOf(inject.SecretsVolume, inject.PodVolume), "each of our volumes exactly once")
	Expect(pod.Spec.Containers[0].VolumeMounts).To(ContainElement(corev1.VolumeMount{
		Name: inject.SecretsVolume, MountPath: "/var/run/kubekms/secrets", ReadOnly: true}))
	Expect(agent.VolumeMounts).To(HaveLen(2))
}

var _ = Describe("The pod injector", func() {
	It("injects a native sidecar into the pods of a Deployment", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		dep := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop"},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "shop"}},
				Template: podTemplate(annotations),
			},
		}
		dep.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways
		Expect(k8sClient.Create(ctx, dep)).To(Succeed())
		pods := podsOf(ctx, ns)
		Expect(pods).To(HaveLen(1))
		expectInjected(&pods[0], true)
		Expect(pods[0].OwnerReferences[0].Kind).To(Equal("ReplicaSet"))

		By("an update of the pod does not inject again")
		pod := pods[0].DeepCopy()
		pod.Labels["touched"] = "yes"
		Expect(k8sClient.Update(ctx, pod)).To(Succeed())
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
		expectInjected(pod, true)

		By("creating a pod from an already injected spec injects once")
		again := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "again", Annotations: pod.Annotations}, Spec: *pod.Spec.DeepCopy()}
		again.Spec.NodeName = ""
		// The API server's own volume for the ServiceAccount token is added again by admission.
		again.Spec.Volumes = slices.DeleteFunc(again.Spec.Volumes, func(v corev1.Volume) bool { return v.Projected != nil && v.Name != inject.PodVolume })
		for i := range again.Spec.Containers {
			again.Spec.Containers[i].VolumeMounts = slices.DeleteFunc(again.Spec.Containers[i].VolumeMounts,
				func(m corev1.VolumeMount) bool { return m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount" })
		}
		Expect(k8sClient.Create(ctx, again)).To(Succeed())
		expectInjected(again, true)
	})

	It("injects a plain init container into a Job's pods with mode init, so the Job can finish", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		a := map[string]string{"kms.kubekms.io/mode": "init"}
		for k, v := range annotations {
			a[k] = v
		}
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "migrate"},
			Spec:       batchv1.JobSpec{Template: podTemplate(a)},
		}
		Expect(k8sClient.Create(ctx, job)).To(Succeed())
		pods := podsOf(ctx, ns)
		expectInjected(&pods[0], false)
		Expect(pods[0].OwnerReferences[0].Kind).To(Equal("Job"))
	})

	It("refuses a pod with a bad annotation, naming it, and a Deployment's ReplicaSet reports it", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		bad := map[string]string{"kms.kubekms.io/inject": "true", "kms.kubekms.io/secret-db": "vault:secret/db"}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad", Annotations: bad}, Spec: podTemplate(nil).Spec}
		err := k8sClient.Create(ctx, pod)
		Expect(err).To(MatchError(And(
			ContainSubstring(`admission webhook "inject.kms.kubekms.io" denied the request`),
			ContainSubstring(`annotation kms.kubekms.io/secret-db: "vault:secret/db" is not secret/<name>/<key>`))))

		dep := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad"},
			Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "shop"}}, Template: podTemplate(bad)},
		}
		dep.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways
		Expect(k8sClient.Create(ctx, dep)).To(Succeed())
		Eventually(func(g Gomega) {
			list := &appsv1.ReplicaSetList{}
			g.Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			g.Expect(list.Items).NotTo(BeEmpty())
			var messages []string
			for _, c := range list.Items[0].Status.Conditions {
				messages = append(messages, c.Message)
			}
			g.Expect(messages).To(ContainElement(ContainSubstring("annotation kms.kubekms.io/secret-db")))
		}).Should(Succeed())
	})

	It("wraps the command of a pod that wants a value in its environment, and refuses one without a command", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		a := map[string]string{"kms.kubekms.io/inject": "true", "kms.kubekms.io/env-DB_PASSWORD": "secret/db-creds/password",
			"kms.kubekms.io/reload-signal": "SIGHUP"}
		spec := podTemplate(nil).Spec
		spec.Containers[0].Command = []string{"/shop", "serve"}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "env", Annotations: a}, Spec: spec}
		Eventually(func() error { return k8sClient.Create(ctx, pod) }).Should(Succeed())
		Expect(pod.Spec.Containers[0].Command).To(Equal([]string{"/var/run/kubekms/bin/kubekms-agent", "exec",
			"--dir", "/var/run/kubekms/secrets", "--env", "DB_PASSWORD=env-DB_PASSWORD", "--reload-signal", "SIGHUP", "--", "/shop", "serve"}))
		Expect(volumeNames(pod)).To(ContainElement(inject.BinVolume))

		bare := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bare", Annotations: a}, Spec: podTemplate(nil).Spec}
		Expect(k8sClient.Create(ctx, bare)).To(MatchError(ContainSubstring(
			"annotation kms.kubekms.io/env-DB_PASSWORD: container app has no command in the pod spec")))
	})

	It("leaves pods alone in the operator namespace and kube-system, and pods that do not ask", func(ctx SpecContext) {
		plain := newNamespace(ctx)
		for _, ns := range []string{operatorNamespace, metav1.NamespaceSystem, plain} {
			a := annotations
			if ns == plain {
				a = map[string]string{"kms.kubekms.io/secret-db": "secret/db-creds/password"}
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "untouched-", Annotations: a}, Spec: podTemplate(nil).Spec}
			Eventually(func() error { return k8sClient.Create(ctx, pod) }).Should(Succeed(), "the default ServiceAccount of %s exists", ns)
			Expect(pod.Spec.InitContainers).To(BeEmpty(), ns)
			Expect(volumeNames(pod)).NotTo(ContainElement(inject.SecretsVolume), ns)
		}
	})
})
