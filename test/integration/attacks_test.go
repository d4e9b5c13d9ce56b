package integration

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/kmscrypto"
	"github.com/kubekms/kubekms/internal/testenv"
)

// Issue 12: each spec plays an attacker with only the rights named, through
// the real API server (impersonation) and the real admin webhook, and shows
// the attack refused with the message a user would read.

// as is a client of the API server acting as user, who holds only rules in
// namespace ns (a Role and RoleBinding made by the cluster admin).
func as(ctx context.Context, ns, user string, rules ...rbacv1.PolicyRule) client.Client {
	GinkgoHelper()
	if len(rules) > 0 {
		name := "as-" + user
		Expect(k8sClient.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: rules})).To(Succeed())
		Expect(k8sClient.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
			Subjects:   []rbacv1.Subject{{Kind: "User", Name: user}},
		})).To(Succeed())
	}
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	cl, err := client.New(c, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	return cl
}

var (
	viewKeys   = rbacv1.PolicyRule{APIGroups: []string{"kms.kubekms.io"}, Resources: []string{"keys", "keypolicies", "keygrants"}, Verbs: []string{"get", "list", "watch"}}
	editKMS    = rbacv1.PolicyRule{APIGroups: []string{"kms.kubekms.io"}, Resources: []string{"keys", "keypolicies", "keygrants"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}
	makeSecret = rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}}
)

// onlyAdmin is a policy statement that lets the cluster admin (the suite's
// own identity, a system:masters member) do everything.
func onlyAdmin() kmsv1alpha1.PolicyStatement {
	return kmsv1alpha1.PolicyStatement{Sid: "Admins", Effect: kmsv1alpha1.PolicyAllow,
		Principals: kmsv1alpha1.PolicyPrincipals{Groups: []string{"system:masters"}}, Actions: []string{"*"}}
}

func waitAccepted(ctx context.Context, p *kmsv1alpha1.KeyPolicy) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		cur := &kmsv1alpha1.KeyPolicy{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), cur)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(cur.Status.Conditions, kmsv1alpha1.KeyPolicyConditionAccepted)).To(BeTrue())
	}).Should(Succeed())
}

func getKey(ctx context.Context, ns, name string) *kmsv1alpha1.Key {
	GinkgoHelper()
	k := &kmsv1alpha1.Key{}
	Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, k)).To(Succeed())
	return k
}

// importParams waits for the current import parameters of an External key,
// read where the manager keeps them (the token as GetParametersForImport
// would hand it out, or as a leak would).
func importParams(ctx context.Context, ns, name string) *keystore.ImportParameters {
	GinkgoHelper()
	store := &keystore.Store{Reader: k8sClient, Namespace: operatorNamespace}
	var p *keystore.ImportParameters
	Eventually(func(g Gomega) {
		k := getKey(ctx, ns, name)
		g.Expect(k.Status.KeyID).NotTo(BeEmpty())
		var err error
		p, err = store.ImportParameters(ctx, k.Status.KeyID)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(p).NotTo(BeNil())
	}).Should(Succeed())
	return p
}

var _ = Describe("Attacks on key administration (issue 12)", func() {
	var ns string
	BeforeEach(func(ctx SpecContext) { ns = newNamespace(ctx) })

	It("1: a Secret that appears under an old import name imports nothing, even with a valid token; a new import needs ImportKeyMaterial", func(ctx SpecContext) {
		key := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "byok"}, Spec: kmsv1alpha1.KeySpec{Origin: kmsv1alpha1.KeyOriginExternal}}
		Expect(k8sClient.Create(ctx, key)).To(Succeed())
		params := func() *keystore.ImportParameters { return importParams(ctx, ns, "byok") }
		var wrapped []byte
		wrappedSecret := func(c client.Client, name string, p *keystore.ImportParameters) error {
			material := make([]byte, 32)
			_, _ = rand.Read(material)
			wrapped = opensslEncrypt(kmscrypto.PublicKeyPEM(p.PublicKey), "sha256", material)
			return c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Data: map[string][]byte{"wrappedKeyMaterial": wrapped, "importToken": []byte(p.Token)}})
		}
		request := func(name string) *kmsv1alpha1.KeyImport {
			sum := sha256.Sum256(wrapped)
			return &kmsv1alpha1.KeyImport{SecretRef: &kmsv1alpha1.LocalSecretReference{Name: name}, WrappedKeyMaterialSHA256: hex.EncodeToString(sum[:])}
		}
		first := params()
		Expect(wrappedSecret(k8sClient, "byok-wrapped", first)).To(Succeed())
		patchKey(ctx, key, func(k *kmsv1alpha1.Key) { k.Spec.Import = request("byok-wrapped") })
		waitVersion(ctx, key, 1)
		Eventually(func() bool {
			i := getKey(ctx, ns, "byok").Spec.Import
			return i == nil || i.SecretRef == nil
		}).Should(BeTrue(), "the import request is closed")
		second := params()
		Expect(second.Token).NotTo(Equal(first.Token), "a token is good for one import")

		By("mallory, who may only create Secrets and view keys, plants a Secret under the old name with the current token")
		mallory := as(ctx, ns, "mallory", makeSecret, viewKeys)
		Expect(wrappedSecret(mallory, "byok-wrapped", second)).To(Succeed())
		Consistently(func() int32 { return getKey(ctx, ns, "byok").Status.CurrentVersion }, "4s", "500ms").Should(Equal(int32(1)))

		By("an editor RBAC allows to update Keys, but whom the policy does not allow ImportKeyMaterial, cannot ask for an import")
		pol := newPolicy(ctx, ns, "byok", "byok", onlyAdmin(),
			kmsv1alpha1.PolicyStatement{Sid: "EditorsRotate", Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{Users: []string{"eve"}}, Actions: []string{"Administer"}})
		waitAccepted(ctx, pol)
		eve := as(ctx, ns, "eve", editKMS)
		var err error
		Eventually(func() error {
			cur := getKey(ctx, ns, "byok")
			orig := cur.DeepCopy()
			cur.Spec.Import = request("byok-wrapped")
			err = eve.Patch(ctx, cur, client.MergeFrom(orig))
			return err
		}).Should(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("kubekms: eve may not ImportKeyMaterial key " + ns + "/byok"))
		Expect(getKey(ctx, ns, "byok").Status.CurrentVersion).To(Equal(int32(1)))
	})

	It("1: an editor who may update Secrets cannot swap the material of an admin's import request", func(ctx SpecContext) {
		key := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "byok"}, Spec: kmsv1alpha1.KeySpec{Origin: kmsv1alpha1.KeyOriginExternal}}
		Expect(k8sClient.Create(ctx, key)).To(Succeed())
		p := importParams(ctx, ns, "byok")
		adminMaterial, eveMaterial := make([]byte, 32), make([]byte, 32)
		_, _ = rand.Read(adminMaterial)
		_, _ = rand.Read(eveMaterial)
		wrapped := opensslEncrypt(kmscrypto.PublicKeyPEM(p.PublicKey), "sha256", adminMaterial)
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "byok-wrapped"},
			Data: map[string][]byte{"wrappedKeyMaterial": wrapped, "importToken": []byte(p.Token)}})).To(Succeed())

		By("eve (edit: Secrets; no kms rights) swaps the wrapped material, keeping the token")
		eve := as(ctx, ns, "eve", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "update"}})
		s := &corev1.Secret{}
		Expect(eve.Get(ctx, client.ObjectKey{Namespace: ns, Name: "byok-wrapped"}, s)).To(Succeed())
		s.Data["wrappedKeyMaterial"] = opensslEncrypt(kmscrypto.PublicKeyPEM(p.PublicKey), "sha256", eveMaterial)
		Expect(eve.Update(ctx, s)).To(Succeed())

		By("the admin asks for the import of the material they wrapped")
		sum := sha256.Sum256(wrapped)
		patchKey(ctx, key, func(k *kmsv1alpha1.Key) {
			k.Spec.Import = &kmsv1alpha1.KeyImport{SecretRef: &kmsv1alpha1.LocalSecretReference{Name: "byok-wrapped"}, WrappedKeyMaterialSHA256: hex.EncodeToString(sum[:])}
		})
		Eventually(func() string {
			c := meta.FindStatusCondition(getKey(ctx, ns, "byok").Status.Conditions, kmsv1alpha1.KeyConditionImported)
			if c == nil {
				return ""
			}
			return c.Message
		}).Should(ContainSubstring("does not match spec.import.wrappedKeyMaterialSHA256"))
		Expect(getKey(ctx, ns, "byok").Status.CurrentVersion).To(BeZero(), "eve's material was not imported")
	})

	It("3: a Key created with spec.initialPolicy is governed from its first moment: a watching admin not in it cannot slip in a grant or policy", func(ctx SpecContext) {
		newServiceAccount(ctx, ns, "api")
		newServiceAccount(ctx, ns, "thief")
		api := withToken(context.Background(), kmsToken(ctx, ns, "api"))
		thief := withToken(context.Background(), kmsToken(ctx, ns, "thief"))
		mallory := as(ctx, ns, "mallory-"+ns, editKMS)
		grant(ctx, ns, "thief", "payments", "encrypt", "decrypt") // RBAC does not count under a policy without rbac statements

		By("a creator not in the initial policy is refused (lockout check)")
		lockedOut := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "lockout"}, Spec: kmsv1alpha1.KeySpec{
			InitialPolicy: &kmsv1alpha1.KeyInitialPolicy{Statements: []kmsv1alpha1.PolicyStatement{
				{Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{Users: []string{"carol"}}, Actions: []string{"*"}}}}}}
		Expect(mallory.Create(ctx, lockedOut)).To(MatchError(ContainSubstring("this spec.initialPolicy would leave mallory-" + ns + " unable to change it again")))

		By("the key admin creates the Key with its policy; mallory tries at once")
		key := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments"}, Spec: kmsv1alpha1.KeySpec{
			InitialPolicy: &kmsv1alpha1.KeyInitialPolicy{Statements: []kmsv1alpha1.PolicyStatement{onlyAdmin(),
				{Sid: "ApiUses", Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{ServiceAccounts: []string{ns + "/api"}}, Actions: []string{"Encrypt", "Decrypt"}}}}}}
		Expect(k8sClient.Create(ctx, key)).To(Succeed())
		err := mallory.Create(ctx, &kmsv1alpha1.KeyGrant{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mine"},
			Spec: kmsv1alpha1.KeyGrantSpec{KeyRef: kmsv1alpha1.KeyReference{Name: "payments"}, Grantee: kmsv1alpha1.GrantPrincipal{ServiceAccount: ns + "/thief"}, Operations: []string{"Decrypt"}}})
		Expect(err).To(MatchError(ContainSubstring("may not CreateGrant key " + ns + "/payments")))
		err = mallory.Create(ctx, &kmsv1alpha1.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mine"},
			Spec: kmsv1alpha1.KeyPolicySpec{KeyRef: kmsv1alpha1.KeyReference{Name: "payments"}, Statements: []kmsv1alpha1.PolicyStatement{
				{Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{Users: []string{"mallory-" + ns}}, Actions: []string{"*"}}}}})
		Expect(err).To(MatchError(ContainSubstring("may not PutPolicy key " + ns + "/payments")))
		Expect(mallory.Delete(ctx, key)).To(MatchError(ContainSubstring("may not ScheduleDeletion")))

		By("the marks the manager puts on what a restore re-creates mean nothing on mallory's objects")
		err = mallory.Create(ctx, &kmsv1alpha1.KeyGrant{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "restored",
			Annotations: map[string]string{kmsv1alpha1.RestoredGrantAnnotation: "whatever"}},
			Spec: kmsv1alpha1.KeyGrantSpec{KeyRef: kmsv1alpha1.KeyReference{Name: "payments"}, Grantee: kmsv1alpha1.GrantPrincipal{ServiceAccount: ns + "/thief"}, Operations: []string{"Decrypt"}}})
		Expect(err).To(MatchError(ContainSubstring("may not CreateGrant key " + ns + "/payments")))
		err = mallory.Create(ctx, &kmsv1alpha1.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "restored",
			Annotations: map[string]string{kmsv1alpha1.RestoredPolicyAnnotation: "whatever"}},
			Spec: kmsv1alpha1.KeyPolicySpec{KeyRef: kmsv1alpha1.KeyReference{Name: "payments"}, Statements: []kmsv1alpha1.PolicyStatement{
				{Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{Users: []string{"mallory-" + ns}}, Actions: []string{"*"}}}}})
		Expect(err).To(MatchError(ContainSubstring("may not PutPolicy key " + ns + "/payments")))

		By("api uses the key; the thief, whom RBAC allows, does not")
		waitVersion(ctx, key, 1)
		var enc *kmsv1.EncryptResponse
		Eventually(func() (err error) {
			enc, err = kms.Encrypt(api, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: []byte("card")})
			return err
		}).Should(Succeed())
		Consistently(func() codes.Code { return decryptCode(thief, enc.CiphertextBlob, nil) }, "2s", "200ms").Should(Equal(codes.PermissionDenied))
	})

	It("2: keyRef of a KeyPolicy or KeyGrant cannot be re-pointed, nor its binding to the key", func(ctx SpecContext) {
		newReadyKey(ctx, ns, "a")
		newReadyKey(ctx, ns, "b")
		pol := newPolicy(ctx, ns, "a", "a", onlyAdmin())
		waitAccepted(ctx, pol)
		g := newGrant(ctx, ns, "g", "a", kmsv1alpha1.GrantPrincipal{User: "someone"}, []string{"Decrypt"}, nil)
		Eventually(grantState(ctx, g)).Should(Equal(kmsv1alpha1.KeyGrantActive))

		cur := &kmsv1alpha1.KeyPolicy{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(pol), cur)).To(Succeed())
		orig := cur.DeepCopy()
		cur.Spec.KeyRef.Name = "b"
		Expect(k8sClient.Patch(ctx, cur, client.MergeFrom(orig))).To(MatchError(ContainSubstring("keyRef is immutable")))

		curG := &kmsv1alpha1.KeyGrant{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(g), curG)).To(Succeed())
		origG := curG.DeepCopy()
		curG.Spec.KeyRef.Name = "b"
		Expect(k8sClient.Patch(ctx, curG, client.MergeFrom(origG))).To(MatchError(ContainSubstring("keyRef is immutable")))

		By("moving the ownerReference to key b instead")
		b := getKey(ctx, ns, "b")
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(pol), cur)).To(Succeed())
		orig = cur.DeepCopy()
		cur.OwnerReferences = []metav1.OwnerReference{{APIVersion: kmsv1alpha1.GroupVersion.String(), Kind: "Key", Name: "a", UID: b.UID}}
		Expect(k8sClient.Patch(ctx, cur, client.MergeFrom(orig))).To(MatchError(ContainSubstring("the ownerReference that binds this KeyPolicy to its Key is immutable")))
	})

	It("3: a KeyPolicy or KeyGrant for a key that does not exist is refused; a grant of a deleted key never applies to a new key of the same name", func(ctx SpecContext) {
		squatter := as(ctx, ns, "squatter", editKMS)
		err := squatter.Create(ctx, &kmsv1alpha1.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "future"},
			Spec: kmsv1alpha1.KeyPolicySpec{KeyRef: kmsv1alpha1.KeyReference{Name: "future"}, Statements: []kmsv1alpha1.PolicyStatement{
				{Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{Users: []string{"squatter"}}, Actions: []string{"*"}}}}})
		Expect(err).To(MatchError(ContainSubstring("Key future does not exist in namespace " + ns + "; create the Key first")))
		err = squatter.Create(ctx, &kmsv1alpha1.KeyGrant{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "future"},
			Spec: kmsv1alpha1.KeyGrantSpec{KeyRef: kmsv1alpha1.KeyReference{Name: "future"}, Grantee: kmsv1alpha1.GrantPrincipal{User: "squatter"}, Operations: []string{"Decrypt"}}})
		Expect(err).To(MatchError(ContainSubstring("Key future does not exist in namespace " + ns)))

		By("a grant on key payments, then payments deleted and created again")
		newServiceAccount(ctx, ns, "app")
		actx := withToken(context.Background(), kmsToken(ctx, ns, "app"))
		newReadyKey(ctx, ns, "payments")
		g := newGrant(ctx, ns, "app-encrypt", "payments", kmsv1alpha1.GrantPrincipal{ServiceAccount: ns + "/app"}, []string{"Encrypt"}, nil)
		Eventually(grantState(ctx, g)).Should(Equal(kmsv1alpha1.KeyGrantActive))
		usable(actx, "payments")
		Expect(k8sClient.Delete(ctx, &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments"}})).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "payments"}, &kmsv1alpha1.Key{}))
		}).Should(BeTrue())
		newReadyKey(ctx, ns, "payments")
		// This suite runs no garbage collector, so the old grant stays: it
		// must govern nothing (the namespace-deletion spec shows it deleted).
		Eventually(grantState(ctx, g)).Should(Equal(kmsv1alpha1.KeyGrantInvalid))
		Consistently(func() codes.Code {
			_, err := kms.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: []byte("x")})
			return status.Code(err)
		}, "3s", "300ms").Should(Equal(codes.PermissionDenied))
	})

	It("4: restoring a deleted key needs CancelKeyDeletion under the policy it had, and the key comes back under it", func(ctx SpecContext) {
		newServiceAccount(ctx, ns, "api")
		api := withToken(context.Background(), kmsToken(ctx, ns, "api"))
		k := newReadyKey(ctx, ns, "payments")
		pol := newPolicy(ctx, ns, "payments", "payments", onlyAdmin(),
			kmsv1alpha1.PolicyStatement{Sid: "ApiUses", Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{ServiceAccounts: []string{ns + "/api"}}, Actions: []string{"Encrypt", "Decrypt"}})
		waitAccepted(ctx, pol)
		usable(api, "payments")
		enc, err := kms.Encrypt(api, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: []byte("card")})
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Delete(ctx, k)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(k), &kmsv1alpha1.Key{}))
		}).Should(BeTrue())

		By("an editor who may create Keys, not in the policy, restores it under a new name")
		mallory := as(ctx, ns, "mallory-"+ns, editKMS, rbacv1.PolicyRule{APIGroups: []string{"kms.kubekms.io"}, Resources: []string{"keys"}, Verbs: []string{"restore", "cancelkeydeletion"}})
		err = mallory.Create(ctx, &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mine"}, Spec: kmsv1alpha1.KeySpec{RestoreFrom: k.Status.KeyID}})
		Expect(err).To(MatchError(ContainSubstring("kubekms: mallory-" + ns + " may not CancelKeyDeletion of deleted key " + ns + "/payments")))

		By("the admin restores it; the policy comes back with it")
		restored := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments-restored"}, Spec: kmsv1alpha1.KeySpec{RestoreFrom: k.Status.KeyID}}
		Expect(k8sClient.Create(ctx, restored)).To(Succeed())
		waitVersion(ctx, restored, 1)
		back := &kmsv1alpha1.KeyPolicy{}
		Eventually(func(g Gomega) {
			list := &kmsv1alpha1.KeyPolicyList{}
			g.Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			found := false
			for _, p := range list.Items {
				if p.Spec.KeyRef.Name == "payments-restored" {
					back, found = &p, true
				}
			}
			g.Expect(found).To(BeTrue())
		}).Should(Succeed())
		Expect(back.Annotations).To(HaveKeyWithValue(kmsv1alpha1.RestoredPolicyAnnotation, k.Status.KeyID))
		Expect(back.Spec.Statements).To(HaveLen(2))
		Eventually(func() error {
			_, err := kms.Decrypt(api, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
			return err
		}).Should(Succeed(), "the restored policy lets api decrypt")
		mal := as(ctx, ns, "mallory-"+ns)
		Expect(mal.Create(ctx, &kmsv1alpha1.KeyGrant{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mine"},
			Spec: kmsv1alpha1.KeyGrantSpec{KeyRef: kmsv1alpha1.KeyReference{Name: "payments-restored"}, Grantee: kmsv1alpha1.GrantPrincipal{User: "mallory"}, Operations: []string{"Decrypt"}}})).
			To(MatchError(ContainSubstring("may not CreateGrant")))
	})

	It("4: restoring a deleted default-policy key needs the RBAC verb restore", func(ctx SpecContext) {
		k := newReadyKey(ctx, ns, "plain")
		Expect(k8sClient.Delete(ctx, k)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(k), &kmsv1alpha1.Key{}))
		}).Should(BeTrue())
		editor := as(ctx, ns, "editor-"+ns, editKMS)
		err := editor.Create(ctx, &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mine"}, Spec: kmsv1alpha1.KeySpec{RestoreFrom: k.Status.KeyID}})
		Expect(err).To(MatchError(ContainSubstring("may not restore deleted key " + ns + "/plain")))
		Expect(err).To(MatchError(ContainSubstring("RBAC verb restore on keys named plain")))
		restorer := as(ctx, ns, "restorer-"+ns, editKMS, rbacv1.PolicyRule{APIGroups: []string{"kms.kubekms.io"}, Resources: []string{"keys"}, ResourceNames: []string{"plain"}, Verbs: []string{"restore"}})
		Eventually(func() error {
			return restorer.Create(ctx, &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plain"}, Spec: kmsv1alpha1.KeySpec{RestoreFrom: k.Status.KeyID}})
		}).Should(Succeed())
	})

	It("5: a Key cannot restore, or publish, the keyID of a live key of another namespace", func(ctx SpecContext) {
		victimNS, victimApp := appNamespace(ctx)
		victim := newReadyKey(ctx, victimNS, "payments")
		grant(ctx, victimNS, "app", "payments", "encrypt", "decrypt")
		usable(victimApp, "payments")
		enc, err := kms.Encrypt(victimApp, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: []byte("card")})
		Expect(err).NotTo(HaveOccurred())

		tenant := as(ctx, ns, "tenant-"+ns, editKMS, rbacv1.PolicyRule{APIGroups: []string{"kms.kubekms.io"}, Resources: []string{"keys"}, Verbs: []string{"restore"}})
		err = tenant.Create(ctx, &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hijack"}, Spec: kmsv1alpha1.KeySpec{RestoreFrom: victim.Status.KeyID}})
		Expect(err).To(MatchError(ContainSubstring("no key with keyID " + victim.Status.KeyID + " was deleted from namespace " + ns)))
		Consistently(func() error {
			_, err := kms.Decrypt(victimApp, &kmsv1.DecryptRequest{CiphertextBlob: enc.CiphertextBlob})
			return err
		}, "2s", "200ms").Should(Succeed())
	})

	It("10: a user removing the retention finalizer is ScheduleDeletion under the key's policy", func(ctx SpecContext) {
		newReadyKey(ctx, ns, "payments")
		pol := newPolicy(ctx, ns, "payments", "payments", onlyAdmin())
		waitAccepted(ctx, pol)
		editor := as(ctx, ns, "editor-"+ns, editKMS)
		var err error
		Eventually(func() error {
			cur := getKey(ctx, ns, "payments")
			orig := cur.DeepCopy()
			cur.Finalizers = nil
			err = editor.Patch(ctx, cur, client.MergeFrom(orig))
			return err
		}).Should(HaveOccurred())
		Expect(err).To(MatchError(ContainSubstring("may not ScheduleDeletion key " + ns + "/payments")))
		Expect(getKey(ctx, ns, "payments").Finalizers).To(ContainElement(kmsv1alpha1.KeyFinalizer))

		By("planting another finalizer is Administer; foreground and orphan deletion are refused")
		Eventually(func() error {
			cur := getKey(ctx, ns, "payments")
			orig := cur.DeepCopy()
			cur.Finalizers = append(cur.Finalizers, "foregroundDeletion")
			err = editor.Patch(ctx, cur, client.MergeFrom(orig))
			return err
		}).Should(HaveOccurred())
		Expect(err).To(MatchError(ContainSubstring("may not Administer key " + ns + "/payments")))
		for _, p := range []metav1.DeletionPropagation{metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan} {
			Expect(k8sClient.Delete(ctx, getKey(ctx, ns, "payments"), client.PropagationPolicy(p))).
				To(MatchError(ContainSubstring("delete Keys with background propagation (the default), not " + string(p))))
		}
		By("so is orphaning through the deprecated orphanDependents option")
		Expect(k8sClient.Delete(ctx, getKey(ctx, ns, "payments"), &client.DeleteOptions{Raw: &metav1.DeleteOptions{OrphanDependents: new(true)}})).
			To(MatchError(ContainSubstring("not Orphan")))
		Expect(getKey(ctx, ns, "payments").DeletionTimestamp).To(BeNil())
	})

	It("10: a grant whose grantee changes binds to the new grantee; a user grantee spelled like a ServiceAccount is refused", func(ctx SpecContext) {
		newReadyKey(ctx, ns, "payments")
		newServiceAccount(ctx, ns, "one")
		newServiceAccount(ctx, ns, "two")
		g := newGrant(ctx, ns, "g", "payments", kmsv1alpha1.GrantPrincipal{ServiceAccount: ns + "/one"}, []string{"Encrypt"}, nil)
		Eventually(grantState(ctx, g)).Should(Equal(kmsv1alpha1.KeyGrantActive))
		cur := &kmsv1alpha1.KeyGrant{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(g), cur)).To(Succeed())
		orig := cur.DeepCopy()
		cur.Spec.Grantee.ServiceAccount = ns + "/two"
		Expect(k8sClient.Patch(ctx, cur, client.MergeFrom(orig))).To(Succeed())
		two := withToken(context.Background(), kmsToken(ctx, ns, "two"))
		Eventually(func() error {
			_, err := kms.Encrypt(two, &kmsv1.EncryptRequest{KeyId: ns + "/payments", Plaintext: []byte("x")})
			return err
		}).Should(Succeed())
		Expect(grantState(ctx, g)()).To(Equal(kmsv1alpha1.KeyGrantActive))

		err := k8sClient.Create(ctx, &kmsv1alpha1.KeyGrant{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "spelled"},
			Spec: kmsv1alpha1.KeyGrantSpec{KeyRef: kmsv1alpha1.KeyReference{Name: "payments"}, Grantee: kmsv1alpha1.GrantPrincipal{User: "system:serviceaccount:" + ns + ":one"}, Operations: []string{"Encrypt"}}})
		Expect(err).To(MatchError(ContainSubstring("user must not be a ServiceAccount username")))
	})
})

var _ = Describe("Namespaces and keys go away with their policies and grants (issue 12, finding 7)", Ordered, func() {
	BeforeAll(func() {
		By("starting kube-controller-manager's namespace controller and garbage collector")
		testenv.StartKCM(testEnv, os.Getenv("KUBEBUILDER_ASSETS"), "kcm", "namespace", "garbagecollector")
	})

	It("deletes a key's policy and grants with the key (garbage collector, ownerReferences)", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		k := newReadyKey(ctx, ns, "payments")
		pol := newPolicy(ctx, ns, "payments", "payments", onlyAdmin())
		waitAccepted(ctx, pol)
		g := newGrant(ctx, ns, "g", "payments", kmsv1alpha1.GrantPrincipal{User: "someone"}, []string{"Decrypt"}, nil)
		Expect(k8sClient.Delete(ctx, k)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(pol), &kmsv1alpha1.KeyPolicy{})) &&
				apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(g), &kmsv1alpha1.KeyGrant{}))
		}, time.Minute).Should(BeTrue())
	})

	It("keeps a deleted key's policy record when its namespace goes, so a re-created namespace cannot restore it under an older or the default policy", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		// mallory was in the key's initial policy; its KeyPolicy later leaves her out.
		k := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments"}, Spec: kmsv1alpha1.KeySpec{
			InitialPolicy: &kmsv1alpha1.KeyInitialPolicy{Statements: []kmsv1alpha1.PolicyStatement{onlyAdmin(),
				{Sid: "Mallory", Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{Users: []string{"mallory"}}, Actions: []string{"*"}}}}}}
		Expect(k8sClient.Create(ctx, k)).To(Succeed())
		k = waitVersion(ctx, k, 1)
		pol := &kmsv1alpha1.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments"}, Spec: kmsv1alpha1.KeyPolicySpec{
			KeyRef: kmsv1alpha1.KeyReference{Name: "payments"}, BypassPolicyLockoutSafetyCheck: true,
			Statements: []kmsv1alpha1.PolicyStatement{{Sid: "Carol", Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{Users: []string{"carol"}}, Actions: []string{"*"}}}}}
		Expect(k8sClient.Create(ctx, pol)).To(Succeed())
		waitAccepted(ctx, pol)

		store := &keystore.Store{Reader: k8sClient, Namespace: operatorNamespace}
		recorded := func() string {
			vs, err := store.ByKeyID(ctx, k.Status.KeyID)
			if err != nil || len(vs) == 0 {
				return ""
			}
			if rec := access.ParseDeletedPolicy(vs[0].DeletedPolicy); rec.Spec != nil {
				return rec.Spec.Statements[0].Sid
			}
			return ""
		}
		Eventually(recorded).Should(Equal("Carol"), "the live material records the KeyPolicy once the controller has seen it")

		By("a tenant of another namespace keeps the key controller busy while the namespace is deleted")
		other := newNamespace(ctx)
		tenant := as(ctx, other, "tenant", editKMS)
		for i := range 4 {
			Expect(tenant.Create(ctx, &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: fmt.Sprintf("busy%d", i)},
				Spec: kmsv1alpha1.KeySpec{KeySpec: kmsv1alpha1.KeySpecRSA4096}})).To(Succeed())
		}
		Expect(k8sClient.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}))
		}, 2*time.Minute, time.Second).Should(BeTrue())
		Expect(recorded()).To(Equal("Carol"), "the tombstone keeps the KeyPolicy that governed, not the initial policy")

		By("the namespace is created again; mallory administers it (kubekms-key-admin, with verb restore)")
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		mallory := as(ctx, ns, "mallory", editKMS, rbacv1.PolicyRule{APIGroups: []string{"kms.kubekms.io"}, Resources: []string{"keys"}, Verbs: []string{"restore", "cancelkeydeletion"}})
		err := mallory.Create(ctx, &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "loot"}, Spec: kmsv1alpha1.KeySpec{RestoreFrom: k.Status.KeyID}})
		Expect(err).To(MatchError(ContainSubstring("may not CancelKeyDeletion of deleted key " + ns + "/payments")))
	})

	It("deletes a namespace whose key has a policy that allows nobody but one user, and grants", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		newReadyKey(ctx, ns, "payments")
		newGrant(ctx, ns, "g", "payments", kmsv1alpha1.GrantPrincipal{User: "someone"}, []string{"Decrypt"}, nil)
		pol := &kmsv1alpha1.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments"}, Spec: kmsv1alpha1.KeyPolicySpec{
			KeyRef: kmsv1alpha1.KeyReference{Name: "payments"}, BypassPolicyLockoutSafetyCheck: true,
			Statements: []kmsv1alpha1.PolicyStatement{{Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{Users: []string{"carol"}}, Actions: []string{"*"}}}}}
		Expect(k8sClient.Create(ctx, pol)).To(Succeed())
		waitAccepted(ctx, pol)
		Expect(k8sClient.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}))
		}, 2*time.Minute, time.Second).Should(BeTrue(), "the namespace is gone")
	})
})
