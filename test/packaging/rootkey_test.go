package packaging

import (
	"io"
	"net/http"
	"os/exec"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/testenv"
)

// rootOfTrust is the namespace's RootOfTrust Ready condition as
// "Status/Reason: message" and its provider ("" while it is missing).
func rootOfTrust(ctx SpecContext, ns string) func() string {
	return func() string {
		rot := &kmsv1alpha1.RootOfTrust{}
		if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: kmsv1alpha1.RootOfTrustName}, rot); err != nil {
			return err.Error()
		}
		c := meta.FindStatusCondition(rot.Status.Conditions, kmsv1alpha1.RootOfTrustConditionReady)
		if c == nil {
			return "no Ready condition"
		}
		return rot.Status.Provider + " " + string(c.Status) + "/" + c.Reason + ": " + c.Message
	}
}

// rootEvents lists "type reason: note" of the Events about the namespace's
// RootOfTrust.
func rootEvents(ctx SpecContext, ns string) func() []string {
	return func() []string {
		list := &eventsv1.EventList{}
		Expect(admin.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		var out []string
		for _, e := range list.Items {
			if e.Regarding.Kind == "RootOfTrust" && e.Regarding.Name == kmsv1alpha1.RootOfTrustName {
				out = append(out, e.Type+" "+e.Reason+": "+e.Note)
			}
		}
		return out
	}
}

// Finding 10 of issue 12: with the root key Secret deleted, the manager used
// to start with a new root key under which no key unseals. Issue 15: it
// must then stay up but not ready, say which Secret to restore, and
// recover without a restart once it is restored.
var _ = Describe("The manager binary, when the root key Secret is missing but sealed material exists", func() {
	It("creates no root key, is not ready with the Secret to restore named, and recovers without a restart when it is restored", func(ctx SpecContext) {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "rootless-"}}
		Expect(admin.Create(ctx, n)).To(Succeed())
		ns := n.Name
		bin, err := gexec.Build("github.com/kubekms/kubekms/cmd/manager")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(gexec.CleanupBuildArtifacts)
		addrs := testenv.FreeAddrs(3)
		start := func() *gexec.Session {
			mgr, err := gexec.Start(exec.Command(bin,
				"--kubeconfig", kubeconfig,
				"--operator-namespace", ns,
				"--leader-elect=false",
				"--metrics-bind-address", "0",
				"--health-probe-bind-address", addrs[2],
				"--root-check-interval", "500ms",
				"--dataplane-bind-address", addrs[0],
				"--webhook-host", "127.0.0.1",
				"--webhook-port", strings.Split(addrs[1], ":")[1],
			), GinkgoWriter, GinkgoWriter)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func() { mgr.Kill().Wait(20 * time.Second) })
			return mgr
		}
		ready := func() string {
			resp, err := http.Get("http://" + addrs[2] + "/readyz?verbose")
			if err != nil {
				return err.Error()
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.Status + "\n" + string(body)
		}
		rootKey := client.ObjectKey{Namespace: ns, Name: "kubekms-root-key"}

		// A first start makes the root key; keep it as a backup would.
		mgr := start()
		saved := &corev1.Secret{}
		Eventually(func() error { return admin.Get(ctx, rootKey, saved) }, 30*time.Second).Should(Succeed())
		Eventually(mgr.Err, 30*time.Second).Should(gbytes.Say("Root of trust ready"))
		Eventually(rootOfTrust(ctx, ns), 30*time.Second).Should(HavePrefix("local True/Ready: "))
		mgr.Interrupt().Wait(20 * time.Second)

		// Material sealed under it, then the root key deleted.
		Expect(admin.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kubekms-key-8d5c4e8a-1c2b-4f3e-9a7d-0e6f5b4c3a21-v1",
				Labels: map[string]string{"app.kubernetes.io/managed-by": "kubekms", "app.kubernetes.io/component": "key-material"}},
			Type: "kms.kubekms.io/sealed-key",
			Data: map[string][]byte{"sealed": []byte("sealed under the root key"), "sealer": []byte("local")},
		})).To(Succeed())
		Expect(admin.Delete(ctx, saved)).To(Succeed())

		sealed := &corev1.SecretList{}
		Expect(admin.List(ctx, sealed, client.InNamespace(ns), client.MatchingFields{"type": "kms.kubekms.io/sealed-key"})).To(Succeed())
		for _, s := range sealed.Items {
			// Keys left by other specs (the suite shares one cluster) may
			// have material made here too: a manager reconciles every Key.
			GinkgoWriter.Printf("sealed Secret before the restart: %s labels %v annotations %v\n", s.Name, s.Labels, s.Annotations)
		}
		mgr = start()
		// The probe withholds reasons (controller-runtime); the log has it.
		Eventually(ready, 30*time.Second).Should(SatisfyAll(HavePrefix("500"), ContainSubstring("[-]root-of-trust failed")))
		Eventually(mgr.Err, 10*time.Second).Should(gbytes.Say(`Root of trust unavailable.*root key Secret %s/kubekms-root-key is missing but \d+ sealed Secrets? \(type`, ns))
		Expect(string(mgr.Err.Contents())).To(ContainSubstring("restore Secret kubekms-root-key in namespace %s from your backup", ns))
		Expect(mgr.ExitCode()).To(Equal(-1), "the manager stays up")
		Expect(string(mgr.Err.Contents())).NotTo(ContainSubstring("does namespace"), "no misleading hint")
		Consistently(func() bool {
			return apierrors.IsNotFound(admin.Get(ctx, rootKey, &corev1.Secret{}))
		}, 2*time.Second, 200*time.Millisecond).Should(BeTrue(), "no new root key is created")

		// What to restore is on the RootOfTrust too, for kubectl users.
		Eventually(rootOfTrust(ctx, ns), 30*time.Second).Should(SatisfyAll(
			HavePrefix("local False/Unavailable: "), ContainSubstring("restore Secret kubekms-root-key in namespace %s", ns)))
		Eventually(rootEvents(ctx, ns), 30*time.Second).Should(ContainElement(SatisfyAll(
			HavePrefix("Warning RootOfTrustUnavailable: "), ContainSubstring("restore Secret kubekms-root-key"))))
		Expect(rootEvents(ctx, ns)()).NotTo(ContainElement(HavePrefix("Normal RootOfTrustReady")))
		// One of the same name elsewhere (made by someone with wildcard
		// RBAC) is neither read nor written.
		decoyNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "decoy-"}}
		Expect(admin.Create(ctx, decoyNS)).To(Succeed())
		decoy := &kmsv1alpha1.RootOfTrust{ObjectMeta: metav1.ObjectMeta{Namespace: decoyNS.Name, Name: kmsv1alpha1.RootOfTrustName}}
		Expect(admin.Create(ctx, decoy)).To(Succeed())
		// Deleting it changes nothing: it comes back with the same answer.
		Expect(admin.Delete(ctx, &kmsv1alpha1.RootOfTrust{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: kmsv1alpha1.RootOfTrustName}})).To(Succeed())
		Eventually(rootOfTrust(ctx, ns), 30*time.Second).Should(HavePrefix("local False/Unavailable: "))

		// Restored from the backup: ready again, same process.
		restored := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: saved.Name, Labels: saved.Labels, Annotations: saved.Annotations},
			Type: saved.Type, Data: saved.Data}
		Expect(admin.Create(ctx, restored)).To(Succeed())
		Eventually(ready, 30*time.Second).Should(HavePrefix("200"))
		Expect(mgr.ExitCode()).To(Equal(-1), "recovered without a restart")
		Eventually(rootOfTrust(ctx, ns), 30*time.Second).Should(HavePrefix("local True/Ready: "))
		Eventually(rootEvents(ctx, ns), 30*time.Second).Should(ContainElement(HavePrefix("Normal RootOfTrustReady: ")))
		Expect(rootOfTrust(ctx, decoyNS.Name)()).To(Equal("no Ready condition"), "the look-alike was not written")
	})
})
