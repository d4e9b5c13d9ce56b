package packaging

import (
	"context"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/testenv"
)

// Finding 8 of issue 12: kubekms-key-admin was aggregated into the built-in
// edit role, so every app developer could grant themselves a key. The
// built-in admin, edit and view roles are filled by kube-controller-manager's
// clusterrole-aggregation controller, which runs here for real.
var _ = Describe("The shipped ClusterRoles, aggregated into the built-in roles", Ordered, func() {
	var (
		ns                      string
		nsAdmin, editor, viewer client.Client
	)

	// as is a client for user name, authenticated, with no group that grants anything.
	as := func(name string) client.Client {
		GinkgoHelper()
		cfg, err := clientcmd.RESTConfigFromKubeConfig(adminKC)
		Expect(err).NotTo(HaveOccurred())
		cfg.Impersonate = rest.ImpersonationConfig{UserName: name, Groups: []string{"system:authenticated"}}
		c, err := client.New(cfg, client.Options{Scheme: admin.Scheme()})
		Expect(err).NotTo(HaveOccurred())
		return c
	}
	bind := func(ctx context.Context, user, clusterRole string) {
		GinkgoHelper()
		Expect(admin.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
		})).To(Succeed())
	}
	key := func(name string) *kmsv1alpha1.Key {
		return &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	policy := func(name string) *kmsv1alpha1.KeyPolicy {
		return &kmsv1alpha1.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: kmsv1alpha1.KeyPolicySpec{KeyRef: kmsv1alpha1.KeyReference{Name: "payments"}, Statements: []kmsv1alpha1.PolicyStatement{{
				Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{Users: []string{name}}, Actions: []string{"*"},
			}}}}
	}
	grant := func(name string) *kmsv1alpha1.KeyGrant {
		return &kmsv1alpha1.KeyGrant{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: kmsv1alpha1.KeyGrantSpec{KeyRef: kmsv1alpha1.KeyReference{Name: "payments"},
				Grantee: kmsv1alpha1.GrantPrincipal{User: name}, Operations: []string{"Decrypt"}}}
	}
	expectForbidden := func(err error, verb, resource string) {
		GinkgoHelper()
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden from RBAC, got %v", err)
		Expect(err).To(MatchError(ContainSubstring(`cannot %s resource "%s" in API group "kms.kubekms.io"`, verb, resource)))
	}

	BeforeAll(func(ctx SpecContext) {
		By("applying config/rbac/kms_roles.yaml as shipped")
		out, err := kubectl("apply", "-f", filepath.Join(repoRoot, "config", "rbac", "kms_roles.yaml"))
		Expect(err).NotTo(HaveOccurred(), out)

		By("running kube-controller-manager's clusterrole-aggregation controller")
		testenv.StartKCM(testEnv, assets, "kcm-aggregation", "clusterrole-aggregation")

		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "roles-"}}
		Expect(admin.Create(ctx, n)).To(Succeed())
		ns = n.Name
		bind(ctx, "ann-admin", "admin")
		bind(ctx, "ed-edit", "edit")
		bind(ctx, "vic-view", "view")
		nsAdmin, editor, viewer = as("ann-admin"), as("ed-edit"), as("vic-view")

		By("waiting until the aggregated roles carry our rules")
		Eventually(func(g Gomega) {
			g.Expect(editor.List(ctx, &kmsv1alpha1.KeyList{}, client.InNamespace(ns))).To(Succeed(), "edit includes view, which includes kubekms-key-viewer")
			g.Expect(viewer.List(ctx, &kmsv1alpha1.KeyGrantList{}, client.InNamespace(ns))).To(Succeed())
			g.Expect(nsAdmin.Create(ctx, key("payments"))).To(Succeed(), "admin includes kubekms-key-admin")
		}).Should(Succeed())
	})

	It("lets admin manage Keys, KeyPolicies and KeyGrants", func(ctx SpecContext) {
		Expect(nsAdmin.Create(ctx, policy("ann-admin"))).To(Succeed())
		Expect(nsAdmin.Create(ctx, grant("ann-admin"))).To(Succeed())
		Expect(nsAdmin.Delete(ctx, grant("ann-admin"))).To(Succeed())
	})

	It("lets edit read keys but not create a KeyGrant, KeyPolicy or Key: it cannot make itself a key user", func(ctx SpecContext) {
		Expect(editor.Get(ctx, client.ObjectKeyFromObject(key("payments")), &kmsv1alpha1.Key{})).To(Succeed())
		expectForbidden(editor.Create(ctx, grant("ed-edit")), "create", "keygrants")
		expectForbidden(editor.Create(ctx, policy("ed-edit")), "create", "keypolicies")
		expectForbidden(editor.Create(ctx, key("mine")), "create", "keys")
		k := key("payments")
		expectForbidden(editor.Delete(ctx, k), "delete", "keys")
	})

	It("gives no namespace role a RootOfTrust: a namespace admin cannot make a look-alike of the operator's", func(ctx SpecContext) {
		rot := &kmsv1alpha1.RootOfTrust{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: kmsv1alpha1.RootOfTrustName}}
		expectForbidden(nsAdmin.Create(ctx, rot), "create", "rootoftrusts")
		expectForbidden(editor.Create(ctx, rot), "create", "rootoftrusts")
		expectForbidden(nsAdmin.Status().Update(ctx, rot), "update", "rootoftrusts/status")
		// Nor can it ask the operator's RootOfTrust for a root key
		// rotation (a reseal of every sealed Secret).
		theirs := &kmsv1alpha1.RootOfTrust{ObjectMeta: metav1.ObjectMeta{Namespace: releaseNS, Name: kmsv1alpha1.RootOfTrustName}}
		rotate := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"rotationRequest":"now"}}`))
		expectForbidden(nsAdmin.Patch(ctx, theirs, rotate), "patch", "rootoftrusts")
		expectForbidden(editor.Patch(ctx, theirs, rotate), "patch", "rootoftrusts")
		expectForbidden(nsAdmin.Patch(ctx, rot, rotate), "patch", "rootoftrusts")
	})

	It("lets view read keys, and nothing secret", func(ctx SpecContext) {
		Expect(viewer.Get(ctx, client.ObjectKeyFromObject(key("payments")), &kmsv1alpha1.Key{})).To(Succeed())
		expectForbidden(viewer.Create(ctx, grant("vic-view")), "create", "keygrants")
		err := viewer.List(ctx, &corev1.SecretList{}, client.InNamespace(ns))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "view lists no Secrets, got %v", err)
		Expect(viewer.List(ctx, &corev1.SecretList{}, client.InNamespace(releaseNS))).NotTo(Succeed())
	})

	It("ships the key-admin role labelled for admin only, and the viewer role for view only", func(ctx SpecContext) {
		for name, want := range map[string]string{"kubekms-key-admin": "admin", "kubekms-key-viewer": "view"} {
			role := &rbacv1.ClusterRole{}
			Expect(admin.Get(ctx, client.ObjectKey{Name: name}, role)).To(Succeed())
			var aggregatedInto []string
			for l, v := range role.Labels {
				if into, ok := cutAggregateLabel(l); ok && v == "true" {
					aggregatedInto = append(aggregatedInto, into)
				}
			}
			Expect(aggregatedInto).To(ConsistOf(want), "ClusterRole %s", name)
			for _, r := range role.Rules {
				Expect(r.Resources).NotTo(ContainElement("secrets"), "ClusterRole %s", name)
			}
		}
		role := &rbacv1.ClusterRole{}
		Expect(admin.Get(ctx, client.ObjectKey{Name: "kubekms-key-user"}, role)).To(Succeed())
		for l := range role.Labels {
			_, ok := cutAggregateLabel(l)
			Expect(ok).To(BeFalse(), "kubekms-key-user is aggregated into nothing, has %s", l)
		}
	})
})

// cutAggregateLabel returns the built-in role a ClusterRole label aggregates into.
func cutAggregateLabel(label string) (string, bool) {
	return strings.CutPrefix(label, "rbac.authorization.k8s.io/aggregate-to-")
}
