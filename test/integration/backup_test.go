package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/audit"
	"github.com/kubekms/kubekms/internal/backup"
	"github.com/kubekms/kubekms/internal/dataplane"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/kmsclient"
	"github.com/kubekms/kubekms/internal/recovery"
)

// takeBackup calls Backup as the caller of ctx and returns the bundle.
func takeBackup(ctx context.Context) ([]byte, error) {
	return kmsclient.ReceiveBundle(ctx, kmsv1.NewBackupServiceClient(conn))
}

// restore calls Restore as the caller of ctx with raw contents.
func restore(ctx context.Context, contents []byte) (*kmsv1.RestoreResponse, error) {
	return kmsclient.SendContents(ctx, kmsv1.NewBackupServiceClient(conn), contents)
}

// restoreContents encodes c and restores it.
func restoreContents(ctx context.Context, c *recovery.Contents) (*kmsv1.RestoreResponse, error) {
	GinkgoHelper()
	b, err := c.Encode()
	Expect(err).NotTo(HaveOccurred())
	return restore(ctx, b)
}

// backupOperator is a ServiceAccount of ns bound, in the operator's
// namespace, to the shipped role kubekms-backup-operator's rule.
func backupOperator(ctx context.Context, ns, name string) context.Context {
	GinkgoHelper()
	newServiceAccount(ctx, ns, name)
	roleName := "backup-" + ns + "-" + name
	Expect(k8sClient.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: roleName},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"kms.kubekms.io"}, Resources: []string{"rootoftrusts"}, ResourceNames: []string{"default"}, Verbs: []string{"backup", "restore"}}}})).To(Succeed())
	Expect(k8sClient.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: roleName},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: roleName},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: name}}})).To(Succeed())
	return withToken(context.Background(), kmsToken(ctx, ns, name))
}

// onlyNamespace keeps what c holds of namespace ns.
func onlyNamespace(c *recovery.Contents, ns string) {
	c.Keys = slices.DeleteFunc(c.Keys, func(k recovery.KeyRecord) bool { return k.Namespace != ns })
	c.Grants = slices.DeleteFunc(c.Grants, func(g recovery.GrantRecord) bool { return g.Namespace != ns })
	c.Material = slices.DeleteFunc(c.Material, func(m recovery.Material) bool { return m.KeyNamespace != ns })
}

// moveTo rewrites c as if taken in another cluster: namespace to, and new
// keyIDs, so it can be restored next to the original.
func moveTo(c *recovery.Contents, to string) map[string]string {
	ids := map[string]string{}
	newID := func(old string) string {
		if ids[old] == "" {
			b := make([]byte, 16)
			_, _ = rand.Read(b)
			h := hex.EncodeToString(b)
			ids[old] = h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
		}
		return ids[old]
	}
	for i := range c.Keys {
		c.Keys[i].Namespace, c.Keys[i].KeyID = to, newID(c.Keys[i].KeyID)
	}
	for i := range c.Grants {
		c.Grants[i].Namespace, c.Grants[i].KeyID = to, newID(c.Grants[i].KeyID)
	}
	for i := range c.Material {
		c.Material[i].KeyNamespace, c.Material[i].KeyID = to, newID(c.Material[i].KeyID)
	}
	return ids
}

// materialSecrets counts the material Secrets of the operator's namespace.
func materialSecrets(ctx context.Context) int {
	GinkgoHelper()
	vs, err := (&keystore.Store{Reader: k8sClient, Namespace: operatorNamespace}).All(ctx)
	Expect(err).NotTo(HaveOccurred())
	return len(vs)
}

var _ = Describe("Backup and restore", func() {
	It("are refused to a namespace admin, to an account with the verbs in its own namespace, and without a token; a refused restore writes nothing", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		newServiceAccount(ctx, ns, "tenant-admin")
		Expect(k8sClient.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tenant-admin"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "admin"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "tenant-admin"}}})).To(Succeed())
		newServiceAccount(ctx, ns, "own-verbs")
		Expect(k8sClient.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own-verbs"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}}})).To(Succeed())
		Expect(k8sClient.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own-verbs"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "own-verbs"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "own-verbs"}}})).To(Succeed())

		// Valid contents that would plant a key in the attacker's namespace.
		planted := &recovery.Contents{Format: recovery.FormatV1,
			Keys: []recovery.KeyRecord{{Namespace: ns, Name: "planted", KeyID: "7d1b3a52-0000-4000-8000-000000000001", Spec: kmsv1alpha1.KeySpec{KeySpec: kmsv1alpha1.KeySpecSymmetricDefault}}},
			Material: []recovery.Material{{KeyID: "7d1b3a52-0000-4000-8000-000000000001", Version: 1, KeyNamespace: ns, KeyName: "planted",
				KeySpec: string(kmsv1alpha1.KeySpecSymmetricDefault), Material: make([]byte, 32)}}}
		before := materialSecrets(ctx)
		for _, caller := range []struct {
			name   string
			ctx    context.Context
			code   codes.Code
			reason string
		}{
			{"a namespace admin", withToken(context.Background(), kmsToken(ctx, ns, "tenant-admin")), codes.PermissionDenied, dataplane.ReasonAccessDenied},
			{"every verb on everything in its own namespace", withToken(context.Background(), kmsToken(ctx, ns, "own-verbs")), codes.PermissionDenied, dataplane.ReasonAccessDenied},
			{"no token", context.Background(), codes.Unauthenticated, dataplane.ReasonUnauthenticated},
		} {
			By(caller.name)
			_, err := takeBackup(caller.ctx)
			Expect(expectError(err, caller.code, caller.reason)).To(Or(ContainSubstring("verb backup on rootoftrusts"), ContainSubstring("token")))
			_, err = restoreContents(caller.ctx, planted)
			Expect(expectError(err, caller.code, caller.reason)).To(Or(ContainSubstring("verb restore on rootoftrusts"), ContainSubstring("token")))
		}
		Expect(materialSecrets(ctx)).To(Equal(before), "no material was written")
		Expect(apiGet(ctx, &kmsv1alpha1.Key{}, ns, "planted")).To(BeFalse(), "no Key was created")
	})

	It("backs up to the deployed recipients only, for an account bound to the backup role in the operator's namespace, and audits it", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		key := newReadyKey(ctx, ns, "k")
		operatorCtx := backupOperator(ctx, ns, "backup-admin")
		earlier := auditRecords()
		var bundle []byte
		Eventually(func() (err error) { bundle, err = takeBackup(operatorCtx); return err }).Should(Succeed())

		h, err := backup.Inspect(bundle)
		Expect(err).NotTo(HaveOccurred())
		Expect(h.Recipients).To(Equal([]string{backupIdentity.Recipient().Fingerprint()}))
		other, err := backup.GenerateIdentity()
		Expect(err).NotTo(HaveOccurred())
		_, err = recovery.Open(bundle, other)
		Expect(err).To(MatchError(backup.ErrWrongIdentity))

		c, err := recovery.Open(bundle, backupIdentity)
		Expect(err).NotTo(HaveOccurred())
		defer c.Wipe()
		i := slices.IndexFunc(c.Material, func(m recovery.Material) bool { return m.KeyID == key.Status.KeyID })
		Expect(i).To(BeNumerically(">=", 0), "the key's version is in the bundle")
		Expect(c.Material[i].Material).To(Equal(material(ctx, key, 1)))
		Expect(bundle).NotTo(ContainSubstring(string(c.Material[i].Material)), "material is never in the bundle in plaintext")

		Eventually(func(g Gomega) {
			recs := recordsSince(earlier)
			j := slices.IndexFunc(recs, func(r audit.Record) bool { return r.EventName == "Backup" })
			g.Expect(j).To(BeNumerically(">=", 0))
			g.Expect(recs[j].Principal.Username).To(Equal("system:serviceaccount:" + ns + ":backup-admin"))
			g.Expect(recs[j].Outcome).To(Equal(audit.Allowed))
		}).Should(Succeed())
	})

	It("restores keys with their keyIDs, versions, policy, grants and tombstones; refuses bad contents and conflicts writing nothing; a second run changes nothing", func(ctx SpecContext) {
		from, appCtx := appNamespace(ctx)
		newServiceAccount(ctx, from, "other")
		newServiceAccount(ctx, from, "grantee")
		mac := newKeyOfSpec(ctx, from, "mac", kmsv1alpha1.KeySpecHMAC256)
		patchKey(ctx, mac, func(k *kmsv1alpha1.Key) { k.Annotations = map[string]string{kmsv1alpha1.RotateAnnotation: "r2"} })
		mac = waitVersion(ctx, mac, 2)
		app := kmsv1alpha1.PolicyPrincipals{ServiceAccounts: []string{from + "/app"}}
		waitAccepted(ctx, newPolicy(ctx, from, "mac-policy", "mac", onlyAdmin(), allow("App", app, "GenerateMac", "VerifyMac")))
		newGrant(ctx, from, "mac-grant", "mac", kmsv1alpha1.GrantPrincipal{ServiceAccount: from + "/grantee"}, []string{"VerifyMac"}, nil)
		gone := newReadyKey(ctx, from, "gone")
		Expect(k8sClient.Delete(ctx, gone)).To(Succeed())
		Eventually(func() bool { return apiGet(ctx, &kmsv1alpha1.Key{}, from, "gone") }).Should(BeFalse())
		var tag []byte
		Eventually(func() (err error) {
			r, err := kms.GenerateMac(appCtx, &kmsv1.GenerateMacRequest{KeyId: "mac", Message: []byte("m"), MacAlgorithm: "HMAC_SHA_256"})
			if err == nil {
				tag = r.Mac
			}
			return err
		}).Should(Succeed())

		operatorCtx := backupOperator(ctx, from, "backup-admin")
		var bundle []byte
		Eventually(func() (err error) { bundle, err = takeBackup(operatorCtx); return err }).Should(Succeed())
		c, err := recovery.Open(bundle, backupIdentity)
		Expect(err).NotTo(HaveOccurred())
		defer c.Wipe()
		onlyNamespace(c, from)
		Expect(c.Keys).To(HaveLen(1))
		Expect(c.Material).To(HaveLen(3), "2 versions of mac, 1 tombstone of gone")
		Expect(c.Grants).To(HaveLen(1))

		By("restoring into this same cluster: everything is there already, nothing changes; a grant revoked since stays revoked")
		Expect(k8sClient.Delete(ctx, &kmsv1alpha1.KeyGrant{ObjectMeta: metav1.ObjectMeta{Namespace: from, Name: "mac-grant"}})).To(Succeed())
		Eventually(func() bool { return apiGet(ctx, &kmsv1alpha1.KeyGrant{}, from, "mac-grant") }).Should(BeFalse())
		before := materialSecrets(ctx)
		sum, err := restoreContents(operatorCtx, c)
		Expect(err).NotTo(HaveOccurred())
		Expect(sum.Keys).To(Equal(int32(1)))
		Expect(sum.Grants).To(BeZero())
		Expect(materialSecrets(ctx)).To(Equal(before))
		Consistently(func() bool { return apiGet(ctx, &kmsv1alpha1.KeyGrant{}, from, "mac-grant") }, "1s").Should(BeFalse())

		to := newNamespace(ctx)
		ids := moveTo(c, to)
		By("refusing contents that name a missing namespace, a bad keyID, or material that is not its key spec's, writing nothing")
		for _, bad := range []struct {
			what, want string
			code       codes.Code
			reason     string
			edit       func(*recovery.Contents)
		}{
			{"a missing namespace", "namespace nowhere-" + to + " does not exist", codes.FailedPrecondition, dataplane.ReasonConflict, func(c *recovery.Contents) {
				i := slices.IndexFunc(c.Material, func(m recovery.Material) bool { return m.Tombstone })
				c.Material[i].KeyNamespace = "nowhere-" + to
			}},
			{"a keyID that cannot name a Secret", `keyID "Bad_ID"`, codes.InvalidArgument, dataplane.ReasonValidation, func(c *recovery.Contents) { c.Material[0].KeyID = "Bad_ID" }},
			{"short material", "HMAC_256 material must be", codes.InvalidArgument, dataplane.ReasonValidation, func(c *recovery.Contents) {
				for i := range c.Material {
					if c.Material[i].KeySpec == string(kmsv1alpha1.KeySpecHMAC256) {
						c.Material[i].Material = c.Material[i].Material[:8]
					}
				}
			}},
			{"another format", "format is", codes.InvalidArgument, dataplane.ReasonValidation, func(c *recovery.Contents) { c.Format = "v0" }},
		} {
			By(bad.what)
			edited, err := recovery.DecodeContents(mustEncode(c))
			Expect(err).NotTo(HaveOccurred())
			bad.edit(edited)
			_, err = restoreContents(operatorCtx, edited)
			Expect(expectError(err, bad.code, bad.reason)).To(ContainSubstring(bad.want))
			Expect(materialSecrets(ctx)).To(Equal(before), bad.what)
		}
		_, err = restore(operatorCtx, []byte("{not json"))
		expectError(err, codes.InvalidArgument, dataplane.ReasonValidation)
		Expect(apiGet(ctx, &kmsv1alpha1.Key{}, to, "mac")).To(BeFalse())

		By("restoring into another namespace, as into a new cluster")
		sum, err = restoreContents(operatorCtx, c)
		Expect(err).NotTo(HaveOccurred())
		Expect(sum.Keys).To(Equal(int32(1)))
		Expect(sum.Versions).To(Equal(int32(3)))
		Expect(sum.Tombstones).To(Equal(int32(1)))
		Expect(sum.Policies).To(Equal(int32(1)))
		Expect(sum.Grants).To(Equal(int32(1)))
		restored := getKey(ctx, to, "mac")
		Expect(restored.Status.KeyID).To(Equal(ids[mac.Status.KeyID]))
		Expect(restored.Status.CurrentVersion).To(Equal(int32(2)))
		policies := &kmsv1alpha1.KeyPolicyList{}
		Expect(k8sClient.List(ctx, policies, client.InNamespace(to))).To(Succeed())
		Expect(policies.Items).To(HaveLen(1))
		Expect(policies.Items[0].Spec.Statements).To(HaveLen(2))

		By("the restored policy and grant decide as the originals did")
		Eventually(func() error {
			_, err := kms.VerifyMac(appCtx, &kmsv1.VerifyMacRequest{KeyId: to + "/mac", Message: []byte("m"), Mac: tag, MacAlgorithm: "HMAC_SHA_256"})
			return err
		}).Should(Succeed(), "the app the policy names verifies a MAC made before the backup")
		otherCtx := withToken(context.Background(), kmsToken(ctx, from, "other"))
		grantCross(ctx, to, from, "other", "mac", "verifymac")
		Consistently(func() codes.Code {
			_, err := kms.VerifyMac(otherCtx, &kmsv1.VerifyMacRequest{KeyId: to + "/mac", Message: []byte("m"), Mac: tag, MacAlgorithm: "HMAC_SHA_256"})
			return status.Code(err)
		}, "2s").Should(Equal(codes.PermissionDenied), "RBAC alone does not pass a policy that does not delegate to it")
		granteeCtx := withToken(context.Background(), kmsToken(ctx, from, "grantee"))
		Eventually(func() error {
			_, err := kms.VerifyMac(granteeCtx, &kmsv1.VerifyMacRequest{KeyId: to + "/mac", Message: []byte("m"), Mac: tag, MacAlgorithm: "HMAC_SHA_256"})
			return err
		}).Should(Succeed(), "the restored grant works")

		By("a second run changes nothing; contents that differ from what was restored are a conflict")
		moved := mustEncode(c)
		after := materialSecrets(ctx)
		_, err = restoreContents(operatorCtx, c)
		Expect(err).NotTo(HaveOccurred())
		Expect(materialSecrets(ctx)).To(Equal(after))
		c.Material[0].Material[0] ^= 1
		_, err = restoreContents(operatorCtx, c)
		Expect(expectError(err, codes.FailedPrecondition, dataplane.ReasonConflict)).To(ContainSubstring("already exists here with other material"))

		By("the tombstone restores with spec.restoreFrom within its window")
		goneID := ids[gone.Status.KeyID]
		back := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: to, Name: "gone"}, Spec: kmsv1alpha1.KeySpec{RestoreFrom: goneID}}
		Expect(k8sClient.Create(ctx, back)).To(Succeed())
		Expect(waitVersion(ctx, back, 1).Status.KeyID).To(Equal(goneID))

		By("a restored key deleted here does not come back when the same restore runs again")
		Expect(k8sClient.Delete(ctx, restored)).To(Succeed())
		Eventually(func() bool { return apiGet(ctx, &kmsv1alpha1.Key{}, to, "mac") }).Should(BeFalse())
		beforeAgain := materialSecrets(ctx)
		_, err = restore(operatorCtx, moved)
		Expect(expectError(err, codes.FailedPrecondition, dataplane.ReasonConflict)).To(ContainSubstring("was deleted in this cluster"))
		Expect(apiGet(ctx, &kmsv1alpha1.Key{}, to, "mac")).To(BeFalse())
		Expect(materialSecrets(ctx)).To(Equal(beforeAgain))
	})
})

var _ = Describe("Restore, attacked", func() {
	It("never adds a version to a key that lives here, nor lets another Key claim it, nor brings back a key deleted here; refuses what the API server would refuse; brings material without a Key back closed", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		live := newReadyKey(ctx, ns, "live")
		deleted := newReadyKey(ctx, ns, "deleted")
		Expect(k8sClient.Delete(ctx, deleted)).To(Succeed())
		Eventually(func() bool { return apiGet(ctx, &kmsv1alpha1.Key{}, ns, "deleted") }).Should(BeFalse())
		operatorCtx := backupOperator(ctx, ns, "backup-admin")
		var bundle []byte
		Eventually(func() (err error) { bundle, err = takeBackup(operatorCtx); return err }).Should(Succeed())
		original, err := recovery.Open(bundle, backupIdentity)
		Expect(err).NotTo(HaveOccurred())
		defer original.Wipe()
		onlyNamespace(original, ns)
		edit := func(f func(c *recovery.Contents)) *recovery.Contents {
			c, err := recovery.DecodeContents(mustEncode(original))
			Expect(err).NotTo(HaveOccurred())
			f(c)
			return c
		}
		versionOf := func(c *recovery.Contents, keyID string) int {
			return slices.IndexFunc(c.Material, func(m recovery.Material) bool { return m.KeyID == keyID })
		}
		before := materialSecrets(ctx)
		for _, attack := range []struct {
			what, want string
			code       codes.Code
			reason     string
			contents   *recovery.Contents
		}{
			{"a version 2 of a key that lives here at version 1, with material the attacker knows", "a restore never adds a version to a key that exists",
				codes.FailedPrecondition, dataplane.ReasonConflict, edit(func(c *recovery.Contents) {
					v2 := c.Material[versionOf(c, live.Status.KeyID)]
					v2.Version, v2.Material = 2, make([]byte, 32)
					c.Material = append(c.Material, v2)
				})},
			{"another Key claiming the keyID of a key that lives here", "is claimed here by Key " + ns + "/live",
				codes.FailedPrecondition, dataplane.ReasonConflict, edit(func(c *recovery.Contents) {
					i := slices.IndexFunc(c.Keys, func(k recovery.KeyRecord) bool { return k.Name == "live" })
					c.Keys[i].Name = "evil"
					c.Material[versionOf(c, live.Status.KeyID)].KeyName = "evil"
				})},
			{"a key deleted here, live in the backup", "was deleted in this cluster",
				codes.FailedPrecondition, dataplane.ReasonConflict, edit(func(c *recovery.Contents) {
					m := &c.Material[versionOf(c, deleted.Status.KeyID)]
					m.Tombstone, m.DestroyAfter = false, nil
					c.Keys = append(c.Keys, recovery.KeyRecord{Namespace: ns, Name: "deleted", KeyID: deleted.Status.KeyID,
						Spec: kmsv1alpha1.KeySpec{KeySpec: kmsv1alpha1.KeySpecSymmetricDefault}})
				})},
			{"a deletionWindow a Key may not have (1h)", "deletionWindow 1h0m0s is outside",
				codes.InvalidArgument, dataplane.ReasonValidation, edit(func(c *recovery.Contents) {
					moveTo(c, newNamespace(ctx))
					i := slices.IndexFunc(c.Keys, func(k recovery.KeyRecord) bool { return k.Name == "live" })
					c.Keys[i].Spec.DeletionWindow = &metav1.Duration{Duration: time.Hour}
				})},
		} {
			By(attack.what)
			_, err := restoreContents(operatorCtx, attack.contents)
			Expect(expectError(err, attack.code, attack.reason)).To(ContainSubstring(attack.want), attack.what)
			Expect(materialSecrets(ctx)).To(Equal(before), "%s: nothing was written", attack.what)
		}

		By("one restore at a time")
		lock := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: "kubekms-restore-in-progress"}}
		Expect(k8sClient.Create(ctx, lock)).To(Succeed())
		_, err = restoreContents(operatorCtx, edit(func(c *recovery.Contents) { moveTo(c, newNamespace(ctx)) }))
		Expect(expectError(err, codes.FailedPrecondition, dataplane.ReasonConflict)).To(ContainSubstring("another restore is running"))
		Expect(materialSecrets(ctx)).To(Equal(before))
		Expect(k8sClient.Delete(ctx, lock)).To(Succeed())

		By("material whose Key was going away, with no policy record, comes back closed: a namespace admin may not restore it")
		to := newNamespace(ctx)
		orphan := edit(func(c *recovery.Contents) {
			c.Grants = nil
			c.Keys = slices.DeleteFunc(c.Keys, func(k recovery.KeyRecord) bool { return k.Name == "live" })
			c.Material[versionOf(c, live.Status.KeyID)].DeletedPolicy = ""
		})
		ids := moveTo(orphan, to)
		_, err = restoreContents(operatorCtx, orphan)
		Expect(err).NotTo(HaveOccurred())
		nsAdmin := as(ctx, to, "orphan-admin", editKMS, rbacv1.PolicyRule{APIGroups: []string{"kms.kubekms.io"}, Resources: []string{"keys"}, Verbs: []string{"restore"}})
		err = nsAdmin.Create(ctx, &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: to, Name: "live"}, Spec: kmsv1alpha1.KeySpec{RestoreFrom: ids[live.Status.KeyID]}})
		Expect(err).To(MatchError(ContainSubstring("may not restore deleted key")))
	})
})

func mustEncode(c *recovery.Contents) []byte {
	GinkgoHelper()
	b, err := c.Encode()
	Expect(err).NotTo(HaveOccurred())
	return b
}

// apiGet says whether an object exists.
func apiGet(ctx context.Context, obj client.Object, ns, name string) bool {
	GinkgoHelper()
	err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
	if err != nil {
		Expect(client.IgnoreNotFound(err)).NotTo(HaveOccurred())
	}
	return err == nil
}
