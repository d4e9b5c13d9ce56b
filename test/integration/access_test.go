package integration

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/dataplane"
)

// decryptCode is the answer a caller gets for Decrypt of blob with ctx.
func decryptCode(ctx context.Context, blob []byte, ec map[string]string) codes.Code {
	_, err := kms.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: blob, EncryptionContext: ec})
	return status.Code(err)
}

func newGrant(ctx context.Context, ns, name, key string, grantee kmsv1alpha1.GrantPrincipal, ops []string, constraints *kmsv1alpha1.EncryptionContextConditions) *kmsv1alpha1.KeyGrant {
	g := &kmsv1alpha1.KeyGrant{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       kmsv1alpha1.KeyGrantSpec{KeyRef: kmsv1alpha1.KeyReference{Name: key}, Grantee: grantee, Operations: ops, Constraints: constraints},
	}
	Expect(k8sClient.Create(ctx, g)).To(Succeed())
	return g
}

func newPolicy(ctx context.Context, ns, name, key string, statements ...kmsv1alpha1.PolicyStatement) *kmsv1alpha1.KeyPolicy {
	p := &kmsv1alpha1.KeyPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       kmsv1alpha1.KeyPolicySpec{KeyRef: kmsv1alpha1.KeyReference{Name: key}, Statements: statements},
	}
	Expect(k8sClient.Create(ctx, p)).To(Succeed())
	return p
}

func grantState(ctx context.Context, g *kmsv1alpha1.KeyGrant) func() kmsv1alpha1.KeyGrantState {
	return func() kmsv1alpha1.KeyGrantState {
		cur := &kmsv1alpha1.KeyGrant{}
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(g), cur); err != nil {
			return ""
		}
		return cur.Status.State
	}
}

var _ = Describe("Access control with KeyPolicies and KeyGrants", func() {
	var (
		shop, web    string
		owner, fe    context.Context
		ciphertext   []byte
		shopContext  = map[string]string{"tenant": "shop"}
		tenantCipher []byte
	)

	BeforeEach(func(ctx SpecContext) {
		shop, web = newNamespace(ctx), newNamespace(ctx)
		newReadyKey(ctx, shop, "payments")
		newServiceAccount(ctx, shop, "api")
		grant(ctx, shop, "api", "payments", "encrypt", "decrypt", "describekey")
		newServiceAccount(ctx, web, "frontend")
		owner = withToken(context.Background(), kmsToken(ctx, shop, "api"))
		fe = withToken(context.Background(), kmsToken(ctx, web, "frontend"))
		usable(owner, "payments")
		enc, err := kms.Encrypt(owner, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: []byte("card")})
		Expect(err).NotTo(HaveOccurred())
		ciphertext = enc.CiphertextBlob
		enc, err = kms.Encrypt(owner, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: []byte("card"), EncryptionContext: shopContext})
		Expect(err).NotTo(HaveOccurred())
		tenantCipher = enc.CiphertextBlob
	})

	It("denies another namespace's ServiceAccount until a KeyGrant in the key's namespace names it, and again once it is deleted", func(ctx SpecContext) {
		Expect(decryptCode(fe, ciphertext, nil)).To(Equal(codes.PermissionDenied))

		By("a grant in the grantee's own namespace is refused: it names a key that does not exist there")
		err := k8sClient.Create(ctx, &kmsv1alpha1.KeyGrant{ObjectMeta: metav1.ObjectMeta{Namespace: web, Name: "wrong-namespace"},
			Spec: kmsv1alpha1.KeyGrantSpec{KeyRef: kmsv1alpha1.KeyReference{Name: "payments"}, Grantee: kmsv1alpha1.GrantPrincipal{ServiceAccount: web + "/frontend"}, Operations: []string{"Decrypt"}}})
		Expect(err).To(MatchError(ContainSubstring("Key payments does not exist in namespace " + web)))
		Consistently(func() codes.Code { return decryptCode(fe, ciphertext, nil) }, "1s").Should(Equal(codes.PermissionDenied))

		By("a grant in shop")
		g := newGrant(ctx, shop, "frontend-decrypt", "payments", kmsv1alpha1.GrantPrincipal{ServiceAccount: web + "/frontend"}, []string{"Decrypt"}, nil)
		Eventually(grantState(ctx, g)).Should(Equal(kmsv1alpha1.KeyGrantActive))
		Eventually(func() codes.Code { return decryptCode(fe, ciphertext, nil) }).Should(Equal(codes.OK))
		_, err = kms.Encrypt(fe, &kmsv1.EncryptRequest{KeyId: shop + "/payments", Plaintext: []byte("x")})
		Expect(status.Code(err)).To(Equal(codes.PermissionDenied), "only the granted operations")

		By("deleting the grant")
		deleted := time.Now()
		Expect(k8sClient.Delete(ctx, g)).To(Succeed())
		Eventually(func() codes.Code { return decryptCode(fe, ciphertext, nil) }, "5s").Should(Equal(codes.PermissionDenied))
		GinkgoWriter.Printf("grant revoked after %s\n", time.Since(deleted))
	})

	It("lets a grant constrained to tenant=shop decrypt only ciphertexts made with that context", func(ctx SpecContext) {
		g := newGrant(ctx, shop, "tenant-only", "payments", kmsv1alpha1.GrantPrincipal{ServiceAccount: web + "/frontend"}, []string{"Decrypt"},
			&kmsv1alpha1.EncryptionContextConditions{EncryptionContextEquals: shopContext})
		Eventually(grantState(ctx, g)).Should(Equal(kmsv1alpha1.KeyGrantActive))
		Eventually(func() codes.Code { return decryptCode(fe, tenantCipher, shopContext) }).Should(Equal(codes.OK))
		Expect(decryptCode(fe, ciphertext, nil)).To(Equal(codes.PermissionDenied), "no context")
		other, err := kms.Encrypt(owner, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: []byte("x"), EncryptionContext: map[string]string{"tenant": "web"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(decryptCode(fe, other.CiphertextBlob, map[string]string{"tenant": "web"})).To(Equal(codes.PermissionDenied), "another context")
	})

	It("expires a grant at expiresAt", func(ctx SpecContext) {
		g := newGrant(ctx, shop, "short", "payments", kmsv1alpha1.GrantPrincipal{ServiceAccount: web + "/frontend"}, []string{"Decrypt"}, nil)
		Eventually(grantState(ctx, g)).Should(Equal(kmsv1alpha1.KeyGrantActive))
		Eventually(func() codes.Code { return decryptCode(fe, ciphertext, nil) }).Should(Equal(codes.OK))
		cur := &kmsv1alpha1.KeyGrant{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(g), cur)).To(Succeed())
		orig := cur.DeepCopy()
		cur.Spec.ExpiresAt = &metav1.Time{Time: time.Now().Add(2 * time.Second)}
		Expect(k8sClient.Patch(ctx, cur, client.MergeFrom(orig))).To(Succeed())
		Eventually(func() codes.Code { return decryptCode(fe, ciphertext, nil) }, "10s").Should(Equal(codes.PermissionDenied))
		Eventually(grantState(ctx, g), "10s").Should(Equal(kmsv1alpha1.KeyGrantExpired))
	})

	It("applies a KeyPolicy instead of RBAC: statements, deny over allow, RBAC delegation", func(ctx SpecContext) {
		pol := newPolicy(ctx, shop, "payments", "payments",
			kmsv1alpha1.PolicyStatement{Sid: "AppsDecrypt", Effect: kmsv1alpha1.PolicyAllow,
				Principals: kmsv1alpha1.PolicyPrincipals{ServiceAccounts: []string{web + "/*"}}, Actions: []string{"Decrypt", "GenerateDataKey*"}},
			kmsv1alpha1.PolicyStatement{Sid: "OwnerViaRBAC", Effect: kmsv1alpha1.PolicyAllow,
				Principals: kmsv1alpha1.PolicyPrincipals{RBAC: true}, Actions: []string{"*"}},
			kmsv1alpha1.PolicyStatement{Sid: "NoOwnerDecrypt", Effect: kmsv1alpha1.PolicyDeny,
				Principals: kmsv1alpha1.PolicyPrincipals{ServiceAccounts: []string{shop + "/api"}}, Actions: []string{"Decrypt"}},
		)
		Eventually(func() bool {
			cur := &kmsv1alpha1.KeyPolicy{}
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(pol), cur)).To(Succeed())
			return meta.IsStatusConditionTrue(cur.Status.Conditions, kmsv1alpha1.KeyPolicyConditionAccepted)
		}).Should(BeTrue())

		Eventually(func() codes.Code { return decryptCode(fe, ciphertext, nil) }).Should(Equal(codes.OK), "statement AppsDecrypt")
		Expect(decryptCode(owner, ciphertext, nil)).To(Equal(codes.PermissionDenied), "explicit Deny over RBAC delegation")
		_, err := kms.Encrypt(owner, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: []byte("x")})
		Expect(err).NotTo(HaveOccurred(), "RBAC delegation still allows Encrypt")
		_, err = kms.Encrypt(fe, &kmsv1.EncryptRequest{KeyId: shop + "/payments", Plaintext: []byte("x")})
		Expect(status.Code(err)).To(Equal(codes.PermissionDenied))

		By("a second policy for the same key is not accepted and says why")
		dup := newPolicy(ctx, shop, "second", "payments",
			kmsv1alpha1.PolicyStatement{Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{Users: []string{"anyone"}}, Actions: []string{"*"}},
			kmsv1alpha1.PolicyStatement{Sid: "AdminsKeepControl", Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{RBAC: true}, Actions: []string{"PutPolicy"}})
		Eventually(func() string {
			cur := &kmsv1alpha1.KeyPolicy{}
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(dup), cur)).To(Succeed())
			c := meta.FindStatusCondition(cur.Status.Conditions, kmsv1alpha1.KeyPolicyConditionAccepted)
			if c == nil {
				return ""
			}
			return c.Reason + ": " + c.Message
		}).Should(ContainSubstring("DuplicatePolicy: KeyPolicy payments already governs key payments"))

		By("deleting the governing policy: the remaining one takes over")
		Expect(k8sClient.Delete(ctx, pol)).To(Succeed())
		Eventually(func() bool {
			cur := &kmsv1alpha1.KeyPolicy{}
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(dup), cur)).To(Succeed())
			return meta.IsStatusConditionTrue(cur.Status.Conditions, kmsv1alpha1.KeyPolicyConditionAccepted)
		}).Should(BeTrue())
		Eventually(func() codes.Code { return decryptCode(fe, ciphertext, nil) }, "5s").Should(Equal(codes.PermissionDenied), "AppsDecrypt went with its policy")

		By("deleting the last policy restores the default policy (RBAC) at once")
		Expect(k8sClient.Delete(ctx, dup)).To(Succeed())
		Eventually(func() codes.Code { return decryptCode(owner, ciphertext, nil) }, "5s").Should(Equal(codes.OK))
	})

	It("explains access, naming the grant or statement that decides", func(ctx SpecContext) {
		g := newGrant(ctx, shop, "frontend-decrypt", "payments", kmsv1alpha1.GrantPrincipal{ServiceAccount: web + "/frontend"}, []string{"Decrypt"}, nil)
		Eventually(grantState(ctx, g)).Should(Equal(kmsv1alpha1.KeyGrantActive))
		Eventually(func() string {
			r, err := kms.ExplainAccess(fe, &kmsv1.ExplainAccessRequest{KeyId: shop + "/payments", Action: "Decrypt"})
			Expect(err).NotTo(HaveOccurred())
			return r.DecidedBy
		}).Should(Equal("KeyGrant frontend-decrypt"))

		By("asking about another principal needs the right to administer the key")
		_, err := kms.ExplainAccess(owner, &kmsv1.ExplainAccessRequest{KeyId: "payments", Action: "Decrypt", Principal: "system:serviceaccount:" + web + ":frontend"})
		Expect(dataplane.ReasonOf(err)).To(Equal(dataplane.ReasonAccessDenied))
		grant(ctx, shop, "api", "payments", "administer")
		Eventually(func() string {
			r, err := kms.ExplainAccess(owner, &kmsv1.ExplainAccessRequest{KeyId: "payments", Action: "Decrypt", Principal: "system:serviceaccount:" + web + ":frontend"})
			if err != nil {
				return err.Error()
			}
			return r.DecidedBy
		}).Should(Equal("KeyGrant frontend-decrypt"))

		By("a stranger learns only no, also for keys that do not exist")
		r1, err := kms.ExplainAccess(fe, &kmsv1.ExplainAccessRequest{KeyId: shop + "/payments", Action: "Encrypt"})
		Expect(err).NotTo(HaveOccurred())
		r2, err := kms.ExplainAccess(fe, &kmsv1.ExplainAccessRequest{KeyId: shop + "/nothing", Action: "Encrypt"})
		Expect(err).NotTo(HaveOccurred())
		Expect(r1.Allowed || r2.Allowed).To(BeFalse())
		Expect(r1.DecidedBy + r2.DecidedBy).To(BeEmpty())
	})
})

var _ = Describe("Key administration follows the key's policy (admin webhook)", func() {
	var (
		ns  string
		bob client.Client
	)
	BeforeEach(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		newReadyKey(ctx, ns, "payments")
		user, err := testEnv.AddUser(envtest.User{Name: "bob-" + ns, Groups: []string{"key-editors"}}, cfg)
		Expect(err).NotTo(HaveOccurred())
		bob, err = client.New(user.Config(), client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "key-editor"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"kms.kubekms.io"}, Resources: []string{"keys", "keypolicies", "keygrants"}, Verbs: []string{"get", "list", "watch", "update", "patch", "create", "delete"}}},
		})).To(Succeed())
		Expect(k8sClient.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "key-editor"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "key-editor"},
			Subjects:   []rbacv1.Subject{{Kind: "User", Name: "bob-" + ns}},
		})).To(Succeed())
	})

	patchAs := func(ctx context.Context, c client.Client, mutate func(*kmsv1alpha1.Key)) error {
		cur := &kmsv1alpha1.Key{}
		Expect(c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "payments"}, cur)).To(Succeed())
		orig := cur.DeepCopy()
		mutate(cur)
		return c.Patch(ctx, cur, client.MergeFrom(orig))
	}

	It("refuses Disable to a user RBAC lets update Keys but the policy does not allow Disable", func(ctx SpecContext) {
		By("with no policy, RBAC alone decides")
		Expect(patchAs(ctx, bob, func(k *kmsv1alpha1.Key) { k.Spec.Description = "edited by bob" })).To(Succeed())

		pol := newPolicy(ctx, ns, "payments", "payments",
			kmsv1alpha1.PolicyStatement{Sid: "BobRotates", Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{Groups: []string{"key-editors"}}, Actions: []string{"Rotate", "Administer"}},
			kmsv1alpha1.PolicyStatement{Sid: "AdminsViaRBAC", Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{RBAC: true}, Actions: []string{"*"}})
		Eventually(func() bool {
			cur := &kmsv1alpha1.KeyPolicy{}
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(pol), cur)).To(Succeed())
			return meta.IsStatusConditionTrue(cur.Status.Conditions, kmsv1alpha1.KeyPolicyConditionAccepted)
		}).Should(BeTrue())

		var err error
		Eventually(func() error {
			err = patchAs(ctx, bob, func(k *kmsv1alpha1.Key) { k.Spec.State = kmsv1alpha1.KeyDesiredDisabled })
			return err
		}).Should(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("admission webhook"))
		Expect(err.Error()).To(ContainSubstring("kubekms: bob-" + ns + " may not Disable key " + ns + "/payments"))

		By("what the policy allows bob still works")
		Expect(patchAs(ctx, bob, func(k *kmsv1alpha1.Key) {
			k.Annotations = map[string]string{kmsv1alpha1.RotateAnnotation: "bob"}
		})).To(Succeed())
		Expect(patchAs(ctx, bob, func(k *kmsv1alpha1.Key) { k.Spec.Description = "still editable" })).To(Succeed())

		By("bob may not delete the key (ScheduleDeletion)")
		err = bob.Delete(ctx, &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments"}})
		Expect(err).To(MatchError(ContainSubstring("may not ScheduleDeletion")))

		By("the admin, through RBAC delegation, may disable it")
		Expect(patchAs(ctx, k8sClient, func(k *kmsv1alpha1.Key) { k.Spec.State = kmsv1alpha1.KeyDesiredDisabled })).To(Succeed())
	})

	It("refuses a policy that would lock its author out, unless it says it means it", func(ctx SpecContext) {
		lockout := &kmsv1alpha1.KeyPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments"},
			Spec: kmsv1alpha1.KeyPolicySpec{KeyRef: kmsv1alpha1.KeyReference{Name: "payments"}, Statements: []kmsv1alpha1.PolicyStatement{
				{Sid: "OnlyCarol", Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{Users: []string{"carol"}}, Actions: []string{"*"}},
			}},
		}
		err := k8sClient.Create(ctx, lockout.DeepCopy())
		Expect(err).To(MatchError(ContainSubstring("would leave")))
		Expect(err).To(MatchError(ContainSubstring("bypassPolicyLockoutSafetyCheck")))

		lockout.Spec.BypassPolicyLockoutSafetyCheck = true
		Expect(k8sClient.Create(ctx, lockout)).To(Succeed())
		Eventually(func() bool {
			cur := &kmsv1alpha1.KeyPolicy{}
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(lockout), cur)).To(Succeed())
			return meta.IsStatusConditionTrue(cur.Status.Conditions, kmsv1alpha1.KeyPolicyConditionAccepted)
		}).Should(BeTrue())

		By("as promised, its author can no longer change it")
		Eventually(func() error {
			return k8sClient.Delete(ctx, &kmsv1alpha1.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments"}})
		}).Should(MatchError(ContainSubstring("may not PutPolicy")))
	})
})
