package controllers_test

import (
	"context"
	"fmt"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keystore"
)

func newNamespace(ctx context.Context) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

type keyOption func(*kmsv1alpha1.Key)

func withRotation(period string) keyOption {
	return func(k *kmsv1alpha1.Key) {
		k.Spec.Rotation.Enabled = true
		d := mustDuration(period)
		k.Spec.Rotation.Period = &d
	}
}
func withKeySpec(s kmsv1alpha1.KeySpecType) keyOption {
	return func(k *kmsv1alpha1.Key) { k.Spec.KeySpec = s }
}
func withRestoreFrom(id string) keyOption {
	return func(k *kmsv1alpha1.Key) { k.Spec.RestoreFrom = id }
}

func newKey(namespace, name string, opts ...keyOption) *kmsv1alpha1.Key {
	k := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	for _, o := range opts {
		o(k)
	}
	return k
}

func mustDuration(s string) metav1.Duration {
	d := metav1.Duration{}
	Expect(d.UnmarshalJSON([]byte(fmt.Sprintf("%q", s)))).To(Succeed())
	return d
}

func getKey(ctx context.Context, k *kmsv1alpha1.Key) func() *kmsv1alpha1.Key {
	return func() *kmsv1alpha1.Key {
		out := &kmsv1alpha1.Key{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(k), out); err != nil {
			return nil
		}
		return out
	}
}

// waitReady waits until the Key is Ready at the given version and returns it.
func waitReady(ctx context.Context, k *kmsv1alpha1.Key, version int32) *kmsv1alpha1.Key {
	var got *kmsv1alpha1.Key
	Eventually(func(g Gomega) {
		got = getKey(ctx, k)()
		g.Expect(got).NotTo(BeNil())
		g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, kmsv1alpha1.KeyConditionReady)).To(BeTrue(), "Ready: %+v", got.Status.Conditions)
		g.Expect(got.Status.CurrentVersion).To(Equal(version))
		g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
	}).Should(Succeed())
	return got
}

func annotate(ctx context.Context, k *kmsv1alpha1.Key, name, value string) {
	cur := getKey(ctx, k)()
	Expect(cur).NotTo(BeNil())
	orig := cur.DeepCopy()
	if cur.Annotations == nil {
		cur.Annotations = map[string]string{}
	}
	cur.Annotations[name] = value
	Expect(k8sClient.Patch(ctx, cur, client.MergeFrom(orig))).To(Succeed())
}

// materialSecrets lists the material Secrets of a key ID, through the API server.
func materialSecrets(ctx context.Context, keyID string) []corev1.Secret {
	list := &corev1.SecretList{}
	Expect(k8sClient.List(ctx, list, client.InNamespace(operatorNamespace), client.MatchingLabels{keystore.LabelKeyID: keyID})).To(Succeed())
	return list.Items
}

func countMaterial(ctx context.Context, keyID string) func() int {
	return func() int { return len(materialSecrets(ctx, keyID)) }
}

// eventReasons lists the reasons of the events.k8s.io/v1 Events about an object.
func eventReasons(ctx context.Context, namespace, name string) func() []string {
	return func() []string {
		list := &eventsv1.EventList{}
		Expect(k8sClient.List(ctx, list, client.InNamespace(namespace))).To(Succeed())
		var out []string
		for _, e := range list.Items {
			if e.Regarding.Name == name {
				out = append(out, e.Reason)
			}
		}
		return out
	}
}

func eventNotes(ctx context.Context, namespace, name, reason string) func() []string {
	return func() []string {
		list := &eventsv1.EventList{}
		Expect(k8sClient.List(ctx, list, client.InNamespace(namespace))).To(Succeed())
		var out []string
		for _, e := range list.Items {
			if e.Regarding.Name == name && e.Reason == reason {
				out = append(out, e.Note)
			}
		}
		return out
	}
}
