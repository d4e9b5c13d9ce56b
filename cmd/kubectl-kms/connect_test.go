package main

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// The port-forward itself needs a kubelet, which this machine has not; the
// choice of pod is tested here.
func TestReadyManagerPod(t *testing.T) {
	labels := map[string]string{"app.kubernetes.io/name": "kubekms", "app.kubernetes.io/component": "manager"}
	pod := func(name string, ready bool, deleting bool, l map[string]string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kubekms-system", Name: name, Labels: l}}
		status := corev1.ConditionFalse
		if ready {
			status = corev1.ConditionTrue
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
		if deleting {
			p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
		}
		return p
	}
	tests := map[string]struct {
		pods    []*corev1.Pod
		want    string
		wantErr string
	}{
		"the ready one":         {pods: []*corev1.Pod{pod("a", false, false, labels), pod("b", true, false, labels)}, want: "b"},
		"not a terminating one": {pods: []*corev1.Pod{pod("a", true, true, labels)}, wantErr: "no ready kubekms manager pod"},
		"not another app's pod": {pods: []*corev1.Pod{pod("a", true, false, map[string]string{"app.kubernetes.io/name": "other"})}, wantErr: "no ready"},
		"none":                  {wantErr: "no ready kubekms manager pod"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cs := fake.NewClientset()
			for _, p := range tc.pods {
				if _, err := cs.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			got, err := readyManagerPod(context.Background(), cs, "kubekms-system")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
