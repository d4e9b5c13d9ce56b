package controllers_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/controllers"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/seal"
)

var _ = Describe("Key controller", func() {
	var ns string
	BeforeEach(func(ctx SpecContext) { ns = newNamespace(ctx) })

	It("creates sealed material, a keyID, version 1, status and an Event", func(ctx SpecContext) {
		key := newKey(ns, "payments")
		Expect(k8sClient.Create(ctx, key)).To(Succeed())
		got := waitReady(ctx, key, 1)

		Expect(got.Status.KeyID).To(Equal(string(got.UID)), "a new key's ID is its UID, so racing managers agree on it")
		Expect(got.Status.State).To(Equal(kmsv1alpha1.KeyStateEnabled))
		Expect(got.Status.KeyUsage).To(Equal(kmsv1alpha1.KeyUsageEncryptDecrypt))
		Expect(got.Status.Versions).To(HaveLen(1))
		Expect(got.Status.LastRotationTime).To(BeNil())
		Expect(got.Status.NextRotationTime).To(BeNil(), "scheduled rotation is off by default")
		Expect(got.Finalizers).To(ContainElement(kmsv1alpha1.KeyFinalizer))
		Expect(got.Spec.DeletionWindow.Duration).To(Equal(720*time.Hour), "defaulted by the API server")
		Eventually(eventReasons(ctx, ns, "payments")).Should(ContainElement(controllers.ReasonCreated))

		secrets := materialSecrets(ctx, got.Status.KeyID)
		Expect(secrets).To(HaveLen(1))
		s := secrets[0]
		Expect(s.Type).To(Equal(keystore.SecretType))
		Expect(s.Immutable).To(BeNil(), "under the local root, so that a root key rotation reseals it in place")
		Expect(s.Labels).To(HaveKeyWithValue(kmsv1alpha1.ManagedByLabel, kmsv1alpha1.ManagedByValue))
		Expect(s.Labels).To(HaveKeyWithValue(keystore.LabelKeyNamespace, ns))

		material, err := store.Load(ctx, got.Status.KeyID, 1, "SYMMETRIC_DEFAULT")
		Expect(err).NotTo(HaveOccurred())
		Expect(material).To(HaveLen(32))
		for name, value := range s.Data {
			Expect(bytes.Contains(value, material)).To(BeFalse(), "Secret data %q holds the key in the clear", name)
		}
	})

	It("refuses to unseal a tampered blob or one copied into another key's Secret", func(ctx SpecContext) {
		a := waitReady(ctx, createKey(ctx, newKey(ns, "a")), 1)
		b := waitReady(ctx, createKey(ctx, newKey(ns, "b")), 1)
		secretA := materialSecrets(ctx, a.Status.KeyID)[0]
		secretB := materialSecrets(ctx, b.Status.KeyID)[0]

		By("copying a's sealed blob into b's Secret")
		replaceSealed(ctx, &secretB, secretA.Data["sealed"])
		_, err := store.Load(ctx, b.Status.KeyID, 1, "SYMMETRIC_DEFAULT")
		Expect(err).To(MatchError(ContainSubstring("does not unseal")))
		Expect(err).To(MatchError(ContainSubstring(b.Status.KeyID)), "the error names the key")

		By("flipping one bit of a's blob")
		tampered := bytes.Clone(secretA.Data["sealed"])
		tampered[len(tampered)/2] ^= 0x01
		replaceSealed(ctx, &secretA, tampered)
		_, err = store.Load(ctx, a.Status.KeyID, 1, "SYMMETRIC_DEFAULT")
		Expect(err).To(MatchError(ContainSubstring("does not unseal")))
	})

	It("never makes new material under a key ID whose material disappeared", func(ctx SpecContext) {
		key := waitReady(ctx, createKey(ctx, newKey(ns, "lost")), 1)
		secret := materialSecrets(ctx, key.Status.KeyID)[0]
		Expect(k8sClient.Delete(ctx, &secret)).To(Succeed())

		expectReadyReason(ctx, key, kmsv1alpha1.KeyReasonMaterialMissing)
		Consistently(countMaterial(ctx, key.Status.KeyID), "2s").Should(Equal(0))
		Expect(getKey(ctx, key)().Status.CurrentVersion).To(Equal(int32(1)), "the latch keeps what was known")
		Eventually(eventReasons(ctx, ns, "lost")).Should(ContainElement(controllers.ReasonMaterialMissing))

		By("putting the Secret back from a backup")
		secret.ResourceVersion, secret.UID = "", ""
		Expect(k8sClient.Create(ctx, &secret)).To(Succeed())
		waitReady(ctx, key, 1)
	})

	It("rotates on demand: exactly one version per annotation value", func(ctx SpecContext) {
		key := waitReady(ctx, createKey(ctx, newKey(ns, "demand")), 1)
		annotate(ctx, key, kmsv1alpha1.RotateAnnotation, "first")
		got := waitReady(ctx, key, 2)
		Expect(got.Status.LastRotationTime).NotTo(BeNil())
		Eventually(eventReasons(ctx, ns, "demand")).Should(ContainElement(controllers.ReasonRotated))

		By("touching the Key without a new value")
		annotate(ctx, key, "example.com/touch", "1")
		annotate(ctx, key, kmsv1alpha1.RotateAnnotation, "first")
		Consistently(countMaterial(ctx, got.Status.KeyID), "2s").Should(Equal(2))

		annotate(ctx, key, kmsv1alpha1.RotateAnnotation, "second")
		waitReady(ctx, key, 3)
		Consistently(countMaterial(ctx, got.Status.KeyID), "1s").Should(Equal(3))
	})

	It("does not take a rotate value present at creation as a request", func(ctx SpecContext) {
		key := newKey(ns, "preset")
		key.Annotations = map[string]string{kmsv1alpha1.RotateAnnotation: "already-there"}
		got := waitReady(ctx, createKey(ctx, key), 1)
		Consistently(countMaterial(ctx, got.Status.KeyID), "1s").Should(Equal(1))
	})

	It("makes one version per value across a crash between storing material and updating status", func(ctx SpecContext) {
		key := waitReady(ctx, createKey(ctx, newKey(ns, "crash")), 1)
		keyID := key.Status.KeyID

		By("freezing the Key's status in the API server, as if the manager died after storing the version")
		unfreeze := freezeStatus(ctx, ns, "crash")
		annotate(ctx, key, kmsv1alpha1.RotateAnnotation, "r1")
		Eventually(countMaterial(ctx, keyID)).Should(Equal(2))
		Consistently(func() int32 { return getKey(ctx, key)().Status.CurrentVersion }, "2s").Should(Equal(int32(1)))
		Expect(countMaterial(ctx, keyID)()).To(Equal(2), "retries while status is frozen make no more versions")

		By("stopping the manager, thawing status, starting a new manager")
		stopMgr()
		unfreeze()
		stopMgr = startManager()

		got := waitReady(ctx, key, 2)
		Expect(got.Status.KeyID).To(Equal(keyID))
		Consistently(countMaterial(ctx, keyID), "2s").Should(Equal(2))
	})

	It("makes one version per value with two managers racing (no fencing)", func(ctx SpecContext) {
		second := startManager()
		defer second()
		keys := make([]*kmsv1alpha1.Key, 4)
		for i := range keys {
			keys[i] = waitReady(ctx, createKey(ctx, newKey(ns, fmt.Sprintf("race-%d", i))), 1)
		}
		for round := 2; round <= 4; round++ {
			for _, k := range keys {
				annotate(ctx, k, kmsv1alpha1.RotateAnnotation, fmt.Sprintf("round-%d", round))
			}
			for _, k := range keys {
				waitReady(ctx, k, int32(round))
			}
		}
		for _, k := range keys {
			Consistently(countMaterial(ctx, k.Status.KeyID), "1s").Should(Equal(4))
		}
	})

	It("rotates on schedule at nextRotationTime", func(ctx SpecContext) {
		key := waitReady(ctx, createKey(ctx, newKey(ns, "scheduled", withRotation("1h"))), 1)
		created := key.Status.Versions[0].CreatedAt.Time
		Expect(key.Status.NextRotationTime).NotTo(BeNil())
		Expect(key.Status.NextRotationTime.Time).To(BeTemporally("==", created.Add(time.Hour)))

		r := directReconciler()
		req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(key)}
		res, err := r.Reconcile(ctx, req)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.RequeueAfter).To(Equal(key.Status.NextRotationTime.Sub(fakeClock.Now())), "the timer is set for nextRotationTime")
		Expect(countMaterial(ctx, key.Status.KeyID)()).To(Equal(1), "not due yet")

		By("advancing the clock to nextRotationTime, as the timer would fire")
		fakeClock.SetTime(key.Status.NextRotationTime.Time)
		// The running manager shares the clock and may make version 2 (or
		// write the Key's status) first; this reconcile then loses a
		// compare-and-swap and asks to be run again, as controller-runtime
		// would. Any other error fails the spec.
		for attempt := 0; ; attempt++ {
			res, err = r.Reconcile(ctx, req)
			if err == nil || attempt == 3 {
				break
			}
			Expect(apierrors.IsConflict(err) || strings.Contains(err.Error(), "made concurrently")).
				To(BeTrue(), "only a lost race may fail this reconcile: %v", err)
		}
		Expect(err).NotTo(HaveOccurred())
		Expect(res.RequeueAfter).To(Equal(time.Hour), "the next timer is one period after the new version")
		got := waitReady(ctx, key, 2)
		Expect(got.Status.NextRotationTime.Time).To(BeTemporally("==", fakeClock.Now().Add(time.Hour)))
		Expect(got.Status.LastRotationTime.Time).To(BeTemporally("==", fakeClock.Now()))
	})

	It("disables and enables, without rotating while disabled", func(ctx SpecContext) {
		key := waitReady(ctx, createKey(ctx, newKey(ns, "toggle")), 1)
		setState(ctx, key, kmsv1alpha1.KeyDesiredDisabled)
		Eventually(func(g Gomega) {
			got := getKey(ctx, key)()
			g.Expect(got.Status.State).To(Equal(kmsv1alpha1.KeyStateDisabled))
			ready := meta.FindStatusCondition(got.Status.Conditions, kmsv1alpha1.KeyConditionReady)
			g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(ready.Reason).To(Equal(kmsv1alpha1.KeyReasonDisabled))
		}).Should(Succeed())
		Eventually(eventReasons(ctx, ns, "toggle")).Should(ContainElement(controllers.ReasonDisabled))

		annotate(ctx, key, kmsv1alpha1.RotateAnnotation, "while-disabled")
		Consistently(countMaterial(ctx, key.Status.KeyID), "1s").Should(Equal(1))

		setState(ctx, key, kmsv1alpha1.KeyDesiredEnabled)
		waitReady(ctx, key, 2) // the pending request is answered once enabled
		Eventually(eventReasons(ctx, ns, "toggle")).Should(ContainElement(controllers.ReasonEnabled))
	})

	It("rebuilds a wiped status from the sealed material", func(ctx SpecContext) {
		key := waitReady(ctx, createKey(ctx, newKey(ns, "wiped")), 1)
		annotate(ctx, key, kmsv1alpha1.RotateAnnotation, "x")
		before := waitReady(ctx, key, 2)

		wiped := before.DeepCopy()
		wiped.Status = kmsv1alpha1.KeyStatus{}
		Expect(k8sClient.Status().Update(ctx, wiped)).To(Succeed())

		after := waitReady(ctx, key, 2)
		Expect(after.Status.KeyID).To(Equal(before.Status.KeyID))
		Expect(after.Status.Versions).To(HaveLen(2))
		Expect(after.Status.Versions[0].CreatedAt.Time).To(BeTemporally("==", before.Status.Versions[0].CreatedAt.Time))
		Consistently(countMaterial(ctx, before.Status.KeyID), "1s").Should(Equal(2))
	})

	It("makes key pairs for asymmetric specs and publishes the public key", func(ctx SpecContext) {
		key := waitReady(ctx, createKey(ctx, newKey(ns, "signing", withKeySpec(kmsv1alpha1.KeySpecECCNISTP256))), 1)
		Expect(key.Status.KeyUsage).To(Equal(kmsv1alpha1.KeyUsageSignVerify))
		Expect(key.Status.PublicKey).To(HavePrefix("-----BEGIN PUBLIC KEY-----"))
		private, err := store.Load(ctx, key.Status.KeyID, 1, "ECC_NIST_P256")
		Expect(err).NotTo(HaveOccurred())
		for _, s := range materialSecrets(ctx, key.Status.KeyID) {
			for name, value := range s.Data {
				Expect(bytes.Contains(value, private)).To(BeFalse(), "Secret data %q holds the private key in the clear", name)
			}
		}
		first := key.Status.PublicKey
		annotate(ctx, key, kmsv1alpha1.RotateAnnotation, "new-pair")
		rotated := waitReady(ctx, key, 2)
		Expect(rotated.Status.PublicKey).NotTo(Equal(first), "a rotation makes a new key pair")
	})
})

var _ = Describe("Key deletion", func() {
	var ns string
	BeforeEach(func(ctx SpecContext) { ns = newNamespace(ctx) })

	It("keeps material as a tombstone, restores it within the window, destroys it after", func(ctx SpecContext) {
		key := waitReady(ctx, createKey(ctx, newKey(ns, "doomed")), 1)
		annotate(ctx, key, kmsv1alpha1.RotateAnnotation, "v2")
		key = waitReady(ctx, key, 2)
		keyID := key.Status.KeyID
		material1, err := store.Load(ctx, keyID, 1, "SYMMETRIC_DEFAULT")
		Expect(err).NotTo(HaveOccurred())

		By("deleting the Key")
		deletedAt := fakeClock.Now()
		Expect(k8sClient.Delete(ctx, key)).To(Succeed())
		Eventually(getKey(ctx, key)).Should(BeNil())
		secrets := materialSecrets(ctx, keyID)
		Expect(secrets).To(HaveLen(2))
		for _, s := range secrets {
			Expect(s.Labels).To(HaveKeyWithValue(keystore.LabelTombstone, "true"))
			Expect(s.Annotations).To(HaveKeyWithValue(keystore.AnnotationDestroyAfter, deletedAt.Add(720*time.Hour).UTC().Format(time.RFC3339Nano)))
		}
		Eventually(eventReasons(ctx, ns, "doomed")).Should(ContainElement(controllers.ReasonDeletionScheduled))

		By("restoring it under a new name in the same namespace")
		restored := waitReady(ctx, createKey(ctx, newKey(ns, "reborn", withRestoreFrom(keyID))), 2)
		Expect(restored.Status.KeyID).To(Equal(keyID))
		Expect(restored.Status.Versions).To(HaveLen(2))
		for _, s := range materialSecrets(ctx, keyID) {
			Expect(s.Labels).NotTo(HaveKey(keystore.LabelTombstone))
			Expect(s.Labels).To(HaveKeyWithValue(keystore.LabelKeyName, "reborn"))
		}
		again, err := store.Load(ctx, keyID, 1, "SYMMETRIC_DEFAULT")
		Expect(err).NotTo(HaveOccurred())
		Expect(again).To(Equal(material1), "old ciphertexts decrypt again: the same material is back")
		Eventually(eventReasons(ctx, ns, "reborn")).Should(ContainElement(controllers.ReasonRestored))
		restoredCond := meta.FindStatusCondition(restored.Status.Conditions, kmsv1alpha1.KeyConditionRestored)
		Expect(restoredCond).NotTo(BeNil(), "the restore phase sets its own condition")
		Expect(restoredCond.Status).To(Equal(metav1.ConditionTrue))
		Expect(restoredCond.Reason).To(Equal(kmsv1alpha1.KeyReasonRestored))

		By("deleting it again and letting the window pass")
		Expect(k8sClient.Delete(ctx, restored)).To(Succeed())
		Eventually(getKey(ctx, restored)).Should(BeNil())
		retention := &controllers.RetentionReconciler{Client: k8sClient, Store: store, Recorder: discardRecorder{}, Clock: fakeClock}
		for _, s := range materialSecrets(ctx, keyID) {
			res, err := retention.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(&s)})
			Expect(err).NotTo(HaveOccurred())
			Expect(res.RequeueAfter).To(BeNumerically(">", 719*time.Hour), "destruction is timed for the end of the window")
		}
		Expect(countMaterial(ctx, keyID)()).To(Equal(2))

		fakeClock.Step(721 * time.Hour)
		for _, s := range materialSecrets(ctx, keyID) {
			_, err := retention.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(&s)})
			Expect(err).NotTo(HaveOccurred())
		}
		Expect(countMaterial(ctx, keyID)()).To(Equal(0), "material is destroyed after the window")

		By("refusing to restore destroyed material")
		late := createKey(ctx, newKey(ns, "too-late", withRestoreFrom(keyID)))
		expectReadyReason(ctx, late, kmsv1alpha1.KeyReasonRestoreSourceNotFound)
	})

	It("destroys tombstones after the window in the running manager", func(ctx SpecContext) {
		key := waitReady(ctx, createKey(ctx, newKey(ns, "timed")), 1)
		keyID := key.Status.KeyID
		Expect(k8sClient.Delete(ctx, key)).To(Succeed())
		Eventually(getKey(ctx, key)).Should(BeNil())
		Expect(countMaterial(ctx, keyID)()).To(Equal(1))

		By("advancing the clock past the window and waking the retention controller")
		fakeClock.Step(721 * time.Hour)
		s := materialSecrets(ctx, keyID)[0]
		orig := s.DeepCopy()
		s.Annotations["example.com/poke"] = "1"
		Expect(k8sClient.Patch(ctx, &s, client.MergeFrom(orig))).To(Succeed())
		Eventually(countMaterial(ctx, keyID)).Should(Equal(0))
		Eventually(eventReasons(ctx, operatorNamespace, s.Name)).Should(ContainElement(controllers.ReasonDestroyed))
	})

	It("never restores a key deleted from another namespace", func(ctx SpecContext) {
		key := waitReady(ctx, createKey(ctx, newKey(ns, "theirs")), 1)
		Expect(k8sClient.Delete(ctx, key)).To(Succeed())
		Eventually(getKey(ctx, key)).Should(BeNil())

		other := newNamespace(ctx)
		thief := createKey(ctx, newKey(other, "mine", withRestoreFrom(key.Status.KeyID)))
		expectReadyReason(ctx, thief, kmsv1alpha1.KeyReasonRestoreSourceNotFound)
		Expect(getKey(ctx, thief)().Status.KeyID).To(BeEmpty(), "a refused restore publishes no keyID")
		refused := meta.FindStatusCondition(getKey(ctx, thief)().Status.Conditions, kmsv1alpha1.KeyConditionRestored)
		Expect(refused).NotTo(BeNil())
		Expect(refused.Status).To(Equal(metav1.ConditionFalse))
		Expect(refused.Reason).To(Equal(kmsv1alpha1.KeyReasonRestoreSourceNotFound))
		Eventually(eventReasons(ctx, other, "mine")).Should(ContainElement(controllers.ReasonRestoreFailed))
		for _, s := range materialSecrets(ctx, key.Status.KeyID) {
			Expect(s.Labels).To(HaveKeyWithValue(keystore.LabelTombstone, "true"))
			Expect(s.Labels).To(HaveKeyWithValue(keystore.LabelKeyNamespace, ns))
		}
	})

	// Issue 12, finding 5, with no admin webhook in front (this suite runs
	// none): the controller alone never publishes another Key's keyID.
	It("publishes no keyID for a restoreFrom naming a live key of another namespace", func(ctx SpecContext) {
		victim := waitReady(ctx, createKey(ctx, newKey(ns, "victim")), 1)
		other := newNamespace(ctx)
		thief := createKey(ctx, newKey(other, "hijack", withRestoreFrom(victim.Status.KeyID)))
		expectReadyReason(ctx, thief, kmsv1alpha1.KeyReasonRestoreSourceNotFound)
		Consistently(func() string { return getKey(ctx, thief)().Status.KeyID }, "2s", "200ms").Should(BeEmpty())
		for _, s := range materialSecrets(ctx, victim.Status.KeyID) {
			Expect(s.Labels).To(HaveKeyWithValue(keystore.LabelKeyNamespace, ns), "the victim's material stays the victim's")
		}
	})

	// Issue 12 review: the namespace controller deletes a key's KeyPolicy
	// before the key's finalizer runs; the tombstone must keep the policy
	// that governed, not fall back to the key's initial policy or RBAC.
	It("keeps the governing KeyPolicy in the tombstone when the policy went first in a namespace being deleted", func(ctx SpecContext) {
		key := newKey(ns, "governed")
		key.Spec.InitialPolicy = &kmsv1alpha1.KeyInitialPolicy{Statements: []kmsv1alpha1.PolicyStatement{
			{Sid: "Initial", Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{Users: []string{"mallory"}}, Actions: []string{"*"}}}}
		key = waitReady(ctx, createKey(ctx, key), 1)
		pol := &kmsv1alpha1.KeyPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "governed",
			OwnerReferences: []metav1.OwnerReference{access.KeyOwnerReference(key)}},
			Spec: kmsv1alpha1.KeyPolicySpec{KeyRef: kmsv1alpha1.KeyReference{Name: "governed"}, Statements: []kmsv1alpha1.PolicyStatement{
				{Sid: "Carol", Effect: kmsv1alpha1.PolicyAllow, Principals: kmsv1alpha1.PolicyPrincipals{Users: []string{"carol"}}, Actions: []string{"*"}}}}}
		Expect(k8sClient.Create(ctx, pol)).To(Succeed())
		sid := func() string {
			vs := materialSecrets(ctx, key.Status.KeyID)
			if len(vs) == 0 {
				return ""
			}
			rec := access.ParseDeletedPolicy(vs[0].Annotations[keystore.AnnotationDeletedPolicy])
			if rec.Spec == nil {
				return ""
			}
			return rec.Spec.Statements[0].Sid
		}
		Eventually(sid).Should(Equal("Carol"), "the live material carries the governing policy's record")

		By("with the manager down: the namespace terminates, its KeyPolicy goes, then the Key")
		stopMgr()
		Expect(k8sClient.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		Expect(k8sClient.Delete(ctx, pol)).To(Succeed())
		Expect(k8sClient.Delete(ctx, key)).To(Succeed())
		stopMgr = startManager()
		Eventually(getKey(ctx, key)).Should(BeNil())
		Expect(sid()).To(Equal("Carol"), "the tombstone keeps the KeyPolicy that governed")
	})

	It("deletes every key of a namespace at once without hanging", func(ctx SpecContext) {
		var keys []*kmsv1alpha1.Key
		for i := range 8 {
			keys = append(keys, createKey(ctx, newKey(ns, fmt.Sprintf("bulk-%d", i))))
		}
		for _, k := range keys {
			waitReady(ctx, k, 1)
		}
		Expect(k8sClient.DeleteAllOf(ctx, &kmsv1alpha1.Key{}, client.InNamespace(ns))).To(Succeed())
		Eventually(func() []kmsv1alpha1.Key {
			list := &kmsv1alpha1.KeyList{}
			Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			return list.Items
		}, "20s").Should(BeEmpty())
		list := &corev1.SecretList{}
		Expect(k8sClient.List(ctx, list, client.InNamespace(operatorNamespace),
			client.MatchingLabels{keystore.LabelKeyNamespace: ns, keystore.LabelTombstone: "true"})).To(Succeed())
		Expect(list.Items).To(HaveLen(8))
	})
})

var _ = Describe("Key validation by the API server", func() {
	var ns string
	BeforeEach(func(ctx SpecContext) { ns = newNamespace(ctx) })

	DescribeTable("refuses a bad new Key with a message that says what is wrong",
		func(ctx SpecContext, mutate func(*kmsv1alpha1.Key), want string) {
			key := newKey(ns, "bad")
			mutate(key)
			err := k8sClient.Create(ctx, key)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "err = %v", err)
			Expect(err.Error()).To(ContainSubstring(want))
		},
		Entry("unknown keySpec", func(k *kmsv1alpha1.Key) { k.Spec.KeySpec = "AES_128" },
			`spec.keySpec: Unsupported value: "AES_128"`),
		Entry("rotation period of 1m", func(k *kmsv1alpha1.Key) { withRotation("1m")(k) },
			"rotation.period must be at least 1h"),
		Entry("rotation period that is no duration", func(k *kmsv1alpha1.Key) {
			k.Spec.Rotation.Period = &metav1.Duration{Duration: -time.Hour}
		}, "spec.rotation.period"),
		Entry("deletionWindow of 24h", func(k *kmsv1alpha1.Key) { d := mustDuration("24h"); k.Spec.DeletionWindow = &d },
			"deletionWindow must be between 168h (7 days) and 720h (30 days)"),
		Entry("deletionWindow of 1000h", func(k *kmsv1alpha1.Key) { d := mustDuration("1000h"); k.Spec.DeletionWindow = &d },
			"deletionWindow must be between 168h (7 days) and 720h (30 days)"),
		Entry("keyUsage that does not fit keySpec", func(k *kmsv1alpha1.Key) { k.Spec.KeyUsage = kmsv1alpha1.KeyUsageSignVerify },
			"keyUsage does not fit keySpec"),
		Entry("unknown state", func(k *kmsv1alpha1.Key) { k.Spec.State = "Paused" },
			`spec.state: Unsupported value: "Paused"`),
		Entry("restoreFrom that is no keyID", func(k *kmsv1alpha1.Key) { k.Spec.RestoreFrom = "payments" },
			"spec.restoreFrom"),
		Entry("import on a generated key", func(k *kmsv1alpha1.Key) {
			k.Spec.Import = &kmsv1alpha1.KeyImport{SecretRef: &kmsv1alpha1.LocalSecretReference{Name: "wrapped"}, WrappedKeyMaterialSHA256: strings.Repeat("0", 64)}
		}, "import applies only to keys with origin: External"),
		Entry("an import request without the material's hash", func(k *kmsv1alpha1.Key) {
			k.Spec.Origin = kmsv1alpha1.KeyOriginExternal
			k.Spec.Import = &kmsv1alpha1.KeyImport{SecretRef: &kmsv1alpha1.LocalSecretReference{Name: "wrapped"}}
		}, "an import request (secretRef) needs wrappedKeyMaterialSHA256"),
		Entry("scheduled rotation of an imported key", func(k *kmsv1alpha1.Key) {
			k.Spec.Origin = kmsv1alpha1.KeyOriginExternal
			withRotation("24h")(k)
		}, "scheduled rotation cannot make material for origin: External"),
		Entry("unknown wrapping algorithm", func(k *kmsv1alpha1.Key) {
			k.Spec.Origin = kmsv1alpha1.KeyOriginExternal
			k.Spec.Import = &kmsv1alpha1.KeyImport{WrappingAlgorithm: "RSAES_PKCS1_V1_5"}
		}, `spec.import.wrappingAlgorithm: Unsupported value: "RSAES_PKCS1_V1_5"`),
		Entry("name longer than 63 characters", func(k *kmsv1alpha1.Key) { k.Name = strings.Repeat("k", 64) },
			"Key names are at most 63 characters"),
	)

	DescribeTable("refuses changes to immutable fields",
		func(ctx SpecContext, mutate func(*kmsv1alpha1.Key), want string) {
			key := createKey(ctx, newKey(ns, "fixed"))
			Eventually(getKey(ctx, key)).ShouldNot(BeNil())
			cur := getKey(ctx, key)()
			orig := cur.DeepCopy()
			mutate(cur)
			err := k8sClient.Patch(ctx, cur, client.MergeFrom(orig))
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "err = %v", err)
			Expect(err.Error()).To(ContainSubstring(want))
		},
		Entry("keySpec", func(k *kmsv1alpha1.Key) { k.Spec.KeySpec = kmsv1alpha1.KeySpecHMAC256 }, "keySpec is immutable"),
		Entry("origin", func(k *kmsv1alpha1.Key) { k.Spec.Origin = kmsv1alpha1.KeyOriginExternal }, "origin is immutable"),
		Entry("restoreFrom", func(k *kmsv1alpha1.Key) { k.Spec.RestoreFrom = "8d5c4e8a-0000-4000-8000-000000000001" }, "restoreFrom is immutable"),
	)

	It("accepts a Key with no spec at all, with every default", func(ctx SpecContext) {
		key := &unstructured.Unstructured{}
		key.SetAPIVersion("kms.kubekms.io/v1alpha1")
		key.SetKind("Key")
		key.SetNamespace(ns)
		key.SetName("bare")
		Expect(k8sClient.Create(ctx, key)).To(Succeed())
		got := waitReady(ctx, newKey(ns, "bare"), 1)
		Expect(got.Spec.KeySpec).To(Equal(kmsv1alpha1.KeySpecSymmetricDefault))
	})

	It("accepts a full valid Key and applies the defaults", func(ctx SpecContext) {
		key := createKey(ctx, newKey(ns, "good", withRotation("2160h")))
		got := getKey(ctx, key)()
		Expect(got.Spec.KeySpec).To(Equal(kmsv1alpha1.KeySpecSymmetricDefault))
		Expect(got.Spec.Origin).To(Equal(kmsv1alpha1.KeyOriginGenerated))
		Expect(got.Spec.State).To(Equal(kmsv1alpha1.KeyDesiredEnabled))
		Expect(got.Spec.DeletionWindow.Duration).To(Equal(720 * time.Hour))
	})
})

var _ = Describe("Local root of trust", func() {
	It("ends with one root key when replicas start at once", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		const replicas = 8
		sealers := make([]*seal.AESGCM, replicas)
		var wg sync.WaitGroup
		for i := range replicas {
			wg.Go(func() {
				defer GinkgoRecover()
				s, err := seal.LoadOrCreateLocal(ctx, k8sClient, k8sClient, ns, rand.Reader)
				Expect(err).NotTo(HaveOccurred())
				sealers[i] = s
			})
		}
		wg.Wait()
		list := &corev1.SecretList{}
		Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		Expect(list.Items).To(HaveLen(1))
		blob, err := sealers[0].Seal(ctx, []byte("material"), []byte("aad"))
		Expect(err).NotTo(HaveOccurred())
		for i, s := range sealers {
			pt, err := s.Unseal(ctx, blob, []byte("aad"))
			Expect(err).NotTo(HaveOccurred(), "replica %d has another root key", i)
			Expect(pt).To(Equal([]byte("material")))
		}
	})

	It("says clearly when the root key Secret is malformed", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		Expect(k8sClient.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: seal.RootKeySecretName,
				Annotations: map[string]string{seal.CurrentRootKeyAnnotation: "2"}},
			Type: seal.RootKeySecretType,
			Data: map[string][]byte{"root-key-v1": make([]byte, 32)},
		})).To(Succeed())
		_, err := seal.LoadOrCreateLocal(ctx, k8sClient, k8sClient, ns, rand.Reader)
		Expect(err).To(MatchError(ContainSubstring("root key version 2 does not exist")))
	})
})

func createKey(ctx context.Context, k *kmsv1alpha1.Key) *kmsv1alpha1.Key {
	Expect(k8sClient.Create(ctx, k)).To(Succeed())
	return k
}

func setState(ctx context.Context, k *kmsv1alpha1.Key, state kmsv1alpha1.KeyDesiredState) {
	cur := getKey(ctx, k)()
	orig := cur.DeepCopy()
	cur.Spec.State = state
	Expect(k8sClient.Patch(ctx, cur, client.MergeFrom(orig))).To(Succeed())
}

func expectReadyReason(ctx context.Context, k *kmsv1alpha1.Key, reason string) {
	Eventually(func(g Gomega) {
		got := getKey(ctx, k)()
		g.Expect(got).NotTo(BeNil())
		ready := meta.FindStatusCondition(got.Status.Conditions, kmsv1alpha1.KeyConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(reason))
	}).Should(Succeed())
}

// replaceSealed swaps the sealed blob of an (immutable) material Secret by
// deleting and re-creating it, as an attacker with Secret access could.
func replaceSealed(ctx context.Context, s *corev1.Secret, blob []byte) {
	Expect(k8sClient.Delete(ctx, s)).To(Succeed())
	copied := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, Labels: s.Labels, Annotations: s.Annotations},
		Type:       s.Type,
		Immutable:  s.Immutable,
		Data:       map[string][]byte{"sealed": blob, "sealer": s.Data["sealer"]},
	}
	Eventually(func() error { return k8sClient.Create(ctx, copied) }).Should(Succeed())
}

// freezeStatus makes the API server refuse every status update of one Key
// (a ValidatingAdmissionPolicy), and returns a function that lifts it.
func freezeStatus(ctx context.Context, namespace, name string) func() {
	policyName := "freeze-" + namespace + "-" + name
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: policyName},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: new(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
						Rule: admissionregistrationv1.Rule{
							APIGroups: []string{kmsv1alpha1.GroupVersion.Group}, APIVersions: []string{"*"},
							Resources: []string{"keys/status"},
						},
					},
				}},
			},
			Validations: []admissionregistrationv1.Validation{{
				Expression: fmt.Sprintf("!(object.metadata.namespace == %q && object.metadata.name == %q)", namespace, name),
				Message:    "status frozen by the test",
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: policyName},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policyName,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	Expect(k8sClient.Create(ctx, policy)).To(Succeed())
	Expect(k8sClient.Create(ctx, binding)).To(Succeed())
	probe := func() error {
		cur := &kmsv1alpha1.Key{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, cur); err != nil {
			return err
		}
		orig := cur.DeepCopy()
		cur.Status.ObservedGeneration++
		return k8sClient.Status().Patch(ctx, cur, client.MergeFrom(orig), client.DryRunAll)
	}
	Eventually(probe).Should(MatchError(ContainSubstring("status frozen")))
	return func() {
		Expect(k8sClient.Delete(ctx, binding)).To(Succeed())
		Expect(k8sClient.Delete(ctx, policy)).To(Succeed())
		Eventually(probe).Should(Succeed())
	}
}
