package controllers

import (
	"errors"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/rotation"
)

// Table tests of the Key reconciler's pure decisions; the envtest suite
// (suite_test.go) runs the phases against an API server.

var unitNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const (
	unitKeyUID  = "11111111-1111-1111-1111-111111111111"
	deletedID   = "22222222-2222-2222-2222-222222222222"
	otherLiveID = "33333333-3333-3333-3333-333333333333"
)

// unitKey builds a Key of namespace "shop" with the Key UID unitKeyUID.
func unitKey(opts ...func(*kmsv1alpha1.Key)) *kmsv1alpha1.Key {
	k := &kmsv1alpha1.Key{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "payments", UID: unitKeyUID, Generation: 3},
		Spec:       kmsv1alpha1.KeySpec{KeySpec: kmsv1alpha1.KeySpecSymmetricDefault, Origin: kmsv1alpha1.KeyOriginGenerated, State: kmsv1alpha1.KeyDesiredEnabled},
	}
	for _, o := range opts {
		o(k)
	}
	return k
}

func restoringFrom(id string) func(*kmsv1alpha1.Key) {
	return func(k *kmsv1alpha1.Key) { k.Spec.RestoreFrom = id }
}

func externalOrigin(k *kmsv1alpha1.Key) { k.Spec.Origin = kmsv1alpha1.KeyOriginExternal }

func importing(secret string) func(*kmsv1alpha1.Key) {
	return func(k *kmsv1alpha1.Key) {
		k.Spec.Import = &kmsv1alpha1.KeyImport{SecretRef: &kmsv1alpha1.LocalSecretReference{Name: secret}}
	}
}

func statusCounted(keyID string, current int32) func(*kmsv1alpha1.Key) {
	return func(k *kmsv1alpha1.Key) {
		k.Status.KeyID, k.Status.CurrentVersion, k.Status.State = keyID, current, kmsv1alpha1.KeyStateEnabled
		k.Status.Versions = []kmsv1alpha1.KeyVersion{{Version: current, CreatedAt: metav1.NewTime(unitNow.Add(-time.Hour))}}
	}
}

// unitVersion builds a stored version of keyID.
func unitVersion(keyID string, n int32, opts ...func(*keystore.Version)) keystore.Version {
	v := keystore.Version{KeyID: keyID, Version: n, KeyNamespace: "shop", KeyName: "payments",
		KeySpec: string(kmsv1alpha1.KeySpecSymmetricDefault), CreatedAt: unitNow.Add(-time.Duration(10-n) * time.Hour)}
	for _, o := range opts {
		o(&v)
	}
	return v
}

func tombstone(destroyAfter time.Time) func(*keystore.Version) {
	return func(v *keystore.Version) { v.Tombstone, v.DestroyAfter = true, destroyAfter }
}

func inNamespace(ns string) func(*keystore.Version) {
	return func(v *keystore.Version) { v.KeyNamespace = ns }
}

func withSpec(spec string) func(*keystore.Version) {
	return func(v *keystore.Version) { v.KeySpec = spec }
}

func answering(importRequest string) func(*keystore.Version) {
	return func(v *keystore.Version) { v.ImportRequest = importRequest }
}

func TestKeyIDFor(t *testing.T) {
	for name, tc := range map[string]struct {
		key  *kmsv1alpha1.Key
		seen observation
		want string
	}{
		"a new key is named by its UID, so racing managers agree": {
			key: unitKey(), want: unitKeyUID,
		},
		"live material names the key, whatever restoreFrom says": {
			key:  unitKey(restoringFrom(deletedID)),
			seen: observation{liveKeyID: otherLiveID}, want: otherLiveID,
		},
		"a restoring key without live material takes restoreFrom": {
			key: unitKey(restoringFrom(deletedID)), want: deletedID,
		},
		"status is never the source": {
			key: unitKey(statusCounted(otherLiveID, 2)), want: unitKeyUID,
		},
	} {
		t.Run(name, func(t *testing.T) {
			if got := keyIDFor(tc.key, tc.seen); got != tc.want {
				t.Errorf("keyIDFor = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPlanRestore(t *testing.T) {
	inWindow, past := unitNow.Add(time.Hour), unitNow
	for name, tc := range map[string]struct {
		key         *kmsv1alpha1.Key
		active      []keystore.Version
		source      []keystore.Version
		wantPending []int32
		wantRefused string
	}{
		"takes back the tombstones of this namespace inside their window": {
			key:         unitKey(restoringFrom(deletedID)),
			source:      []keystore.Version{unitVersion(deletedID, 1, tombstone(inWindow)), unitVersion(deletedID, 2, tombstone(inWindow))},
			wantPending: []int32{1, 2},
		},
		"nothing deleted under that key ID": {
			key:         unitKey(restoringFrom(deletedID)),
			wantRefused: kmsv1alpha1.KeyReasonRestoreSourceNotFound,
		},
		"a key deleted from another namespace is never restored": {
			key:         unitKey(restoringFrom(deletedID)),
			source:      []keystore.Version{unitVersion(deletedID, 1, tombstone(inWindow), inNamespace("other"))},
			wantRefused: kmsv1alpha1.KeyReasonRestoreSourceNotFound,
		},
		"a live key of that ID is no restore source": {
			key:         unitKey(restoringFrom(deletedID)),
			source:      []keystore.Version{unitVersion(deletedID, 1, inNamespace("other"))},
			wantRefused: kmsv1alpha1.KeyReasonRestoreSourceNotFound,
		},
		"a tombstone at the end of its window is gone": {
			key:         unitKey(restoringFrom(deletedID)),
			source:      []keystore.Version{unitVersion(deletedID, 1, tombstone(past))},
			wantRefused: kmsv1alpha1.KeyReasonRestoreSourceNotFound,
		},
		"another keySpec is refused": {
			key:         unitKey(restoringFrom(deletedID)),
			source:      []keystore.Version{unitVersion(deletedID, 1, tombstone(inWindow), withSpec("HMAC_256"))},
			wantRefused: kmsv1alpha1.KeyReasonRestoreKeySpecMismatch,
		},
		"already restored: nothing to do, nothing refused": {
			key:    unitKey(restoringFrom(deletedID)),
			active: []keystore.Version{unitVersion(deletedID, 1)},
			source: []keystore.Version{unitVersion(deletedID, 1)},
		},
		"a partial restore is finished": {
			key:         unitKey(restoringFrom(deletedID)),
			active:      []keystore.Version{unitVersion(deletedID, 1)},
			source:      []keystore.Version{unitVersion(deletedID, 1), unitVersion(deletedID, 2, tombstone(inWindow))},
			wantPending: []int32{2},
		},
	} {
		t.Run(name, func(t *testing.T) {
			plan := planRestore(tc.key, tc.active, tc.source, unitNow)
			var pending []int32
			for _, v := range plan.pending {
				pending = append(pending, v.Version)
			}
			if !slices.Equal(pending, tc.wantPending) {
				t.Errorf("pending = %v, want %v", pending, tc.wantPending)
			}
			switch {
			case tc.wantRefused == "" && plan.refused != nil:
				t.Errorf("refused %s: %s, want no refusal", plan.refused.reason, plan.refused.message)
			case tc.wantRefused != "" && (plan.refused == nil || plan.refused.reason != tc.wantRefused):
				t.Errorf("refused = %+v, want reason %s", plan.refused, tc.wantRefused)
			}
		})
	}
}

func TestLostMaterial(t *testing.T) {
	for name, tc := range map[string]struct {
		key      *kmsv1alpha1.Key
		versions []keystore.Version
		wantLost bool
	}{
		"a new key has lost nothing":                {key: unitKey()},
		"live versions are not lost":                {key: unitKey(statusCounted(unitKeyUID, 1)), versions: []keystore.Version{unitVersion(unitKeyUID, 1)}},
		"status counted versions that are now gone": {key: unitKey(statusCounted(unitKeyUID, 2)), wantLost: true},
	} {
		t.Run(name, func(t *testing.T) {
			p := lostMaterial(tc.key, tc.versions, "kubekms-system")
			if (p != nil) != tc.wantLost {
				t.Fatalf("lostMaterial = %+v, want lost %v", p, tc.wantLost)
			}
			if p != nil && p.reason != kmsv1alpha1.KeyReasonMaterialMissing {
				t.Errorf("reason = %s, want %s", p.reason, kmsv1alpha1.KeyReasonMaterialMissing)
			}
		})
	}
}

func TestRotationInput(t *testing.T) {
	period := metav1.Duration{Duration: 2 * time.Hour}
	for name, tc := range map[string]struct {
		key  *kmsv1alpha1.Key
		want rotation.Input
	}{
		"defaults: schedule off, one year, enabled": {
			key:  unitKey(),
			want: rotation.Input{KeyEnabled: true, Period: defaultRotationPeriod},
		},
		"a disabled key with a schedule and a request": {
			key: unitKey(func(k *kmsv1alpha1.Key) {
				k.Spec.State = kmsv1alpha1.KeyDesiredDisabled
				k.Spec.Rotation = kmsv1alpha1.KeyRotation{Enabled: true, Period: &period}
				k.Annotations = map[string]string{kmsv1alpha1.RotateAnnotation: "r1"}
			}),
			want: rotation.Input{RotateRequest: "r1", ScheduleEnabled: true, Period: 2 * time.Hour},
		},
	} {
		t.Run(name, func(t *testing.T) {
			versions := []keystore.Version{unitVersion(unitKeyUID, 1, func(v *keystore.Version) { v.RotateRequest = "r0" })}
			got := rotationInput(tc.key, versions, unitNow)
			if got.RotateRequest != tc.want.RotateRequest || got.KeyEnabled != tc.want.KeyEnabled ||
				got.ScheduleEnabled != tc.want.ScheduleEnabled || got.Period != tc.want.Period || !got.Now.Equal(unitNow) {
				t.Errorf("rotationInput = %+v, want %+v", got, tc.want)
			}
			if len(got.Versions) != 1 || got.Versions[0].RotateRequest != "r0" || !got.Versions[0].CreatedAt.Equal(versions[0].CreatedAt) {
				t.Errorf("versions = %+v, want version 1 answering r0", got.Versions)
			}
		})
	}
}

func TestAnsweredImport(t *testing.T) {
	key := unitKey(externalOrigin, importing("wrapped"))
	current := importRequest("secret-uid", key)
	for name, tc := range map[string]struct {
		key         *kmsv1alpha1.Key
		versions    []keystore.Version
		wantVersion int32
	}{
		"the current request answered by version 2": {
			key:         key,
			versions:    []keystore.Version{unitVersion(unitKeyUID, 1, answering("old-uid@"+unitKeyUID+"/1")), unitVersion(unitKeyUID, 2, answering(current))},
			wantVersion: 2,
		},
		"an earlier generation's request is not this one": {
			key:      key,
			versions: []keystore.Version{unitVersion(unitKeyUID, 1, answering("secret-uid@"+unitKeyUID+"/2"))},
		},
		"another Key's request (a restored key keeps its marks) is not this one": {
			key:      key,
			versions: []keystore.Version{unitVersion(unitKeyUID, 1, answering("secret-uid@"+deletedID+"/3"))},
		},
		"a rotate request is no import request": {
			key:      key,
			versions: []keystore.Version{unitVersion(unitKeyUID, 1, func(v *keystore.Version) { v.RotateRequest = current })},
		},
		"no open request, nothing answered": {
			key:      unitKey(externalOrigin),
			versions: []keystore.Version{unitVersion(unitKeyUID, 1, answering(current))},
		},
	} {
		t.Run(name, func(t *testing.T) {
			got := answeredImport(tc.key, tc.versions)
			switch {
			case tc.wantVersion == 0 && got != nil:
				t.Errorf("answeredImport = version %d, want none", got.Version)
			case tc.wantVersion != 0 && (got == nil || got.Version != tc.wantVersion):
				t.Errorf("answeredImport = %+v, want version %d", got, tc.wantVersion)
			}
		})
	}
	if want := "secret-uid@" + unitKeyUID + "/3"; current != want {
		t.Errorf("importRequest = %q, want %q", current, want)
	}
}

func TestComputeStatusOfPhases(t *testing.T) {
	refused := &terminalProblem{kmsv1alpha1.KeyReasonRestoreSourceNotFound, "nothing to restore"}
	for name, tc := range map[string]struct {
		key            *kmsv1alpha1.Key
		scope          keyScope
		wantKeyID      string
		wantState      kmsv1alpha1.KeyState
		wantReady      string
		wantRestored   string // reason of the Restored condition; "" for none
		wantImported   string // reason of the Imported condition; "" for none
		wantCurrentVer int32
	}{
		"a generated key with material is enabled": {
			key:       unitKey(),
			scope:     keyScope{keyID: unitKeyUID, versions: []keystore.Version{unitVersion(unitKeyUID, 1)}},
			wantKeyID: unitKeyUID, wantState: kmsv1alpha1.KeyStateEnabled, wantReady: kmsv1alpha1.KeyReasonEnabled, wantCurrentVer: 1,
		},
		"a refused restore publishes no keyID and says why in Restored and Ready": {
			key:       unitKey(restoringFrom(deletedID)),
			scope:     keyScope{keyID: deletedID, terminal: refused, restore: &restoreOutcome{refused: refused}},
			wantKeyID: "", wantState: kmsv1alpha1.KeyStateCreating, wantReady: kmsv1alpha1.KeyReasonRestoreSourceNotFound,
			wantRestored: kmsv1alpha1.KeyReasonRestoreSourceNotFound,
		},
		"a restored key is Restored and enabled": {
			key:       unitKey(restoringFrom(deletedID)),
			scope:     keyScope{keyID: deletedID, versions: []keystore.Version{unitVersion(deletedID, 1), unitVersion(deletedID, 2)}, restore: &restoreOutcome{restored: 2}},
			wantKeyID: deletedID, wantState: kmsv1alpha1.KeyStateEnabled, wantReady: kmsv1alpha1.KeyReasonEnabled,
			wantRestored: kmsv1alpha1.KeyReasonRestored, wantCurrentVer: 2,
		},
		"lost material keeps what status knew (the latch)": {
			key:       unitKey(statusCounted(unitKeyUID, 2)),
			scope:     keyScope{keyID: unitKeyUID, terminal: &terminalProblem{kmsv1alpha1.KeyReasonMaterialMissing, "gone"}},
			wantKeyID: unitKeyUID, wantState: kmsv1alpha1.KeyStateEnabled, wantReady: kmsv1alpha1.KeyReasonMaterialMissing, wantCurrentVer: 2,
		},
		"an External key waiting for its Secret is PendingImport": {
			key: unitKey(externalOrigin, importing("wrapped")),
			scope: keyScope{keyID: unitKeyUID, imported: &importOutcome{
				params:  &kmsv1alpha1.KeyImportParameters{WrappingPublicKey: "pem"},
				waiting: &retryableProblem{kmsv1alpha1.KeyReasonPendingImport, "Waiting for Secret"}}},
			wantKeyID: unitKeyUID, wantState: kmsv1alpha1.KeyStatePendingImport, wantReady: kmsv1alpha1.KeyReasonPendingImport,
			wantImported: kmsv1alpha1.KeyReasonPendingImport,
		},
		"a failed second import leaves the key usable and says why in Imported": {
			key: unitKey(externalOrigin, importing("wrapped")),
			scope: keyScope{keyID: unitKeyUID, versions: []keystore.Version{unitVersion(unitKeyUID, 1)}, imported: &importOutcome{
				waiting: &retryableProblem{kmsv1alpha1.KeyReasonImportFailed, "Cannot import"}}},
			wantKeyID: unitKeyUID, wantState: kmsv1alpha1.KeyStateEnabled, wantReady: kmsv1alpha1.KeyReasonEnabled,
			wantImported: kmsv1alpha1.KeyReasonImportFailed, wantCurrentVer: 1,
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := tc.scope
			st := computeStatus(tc.key, &s)
			if st.KeyID != tc.wantKeyID || st.State != tc.wantState || st.CurrentVersion != tc.wantCurrentVer {
				t.Errorf("keyID, state, currentVersion = %q, %s, %d; want %q, %s, %d", st.KeyID, st.State, st.CurrentVersion, tc.wantKeyID, tc.wantState, tc.wantCurrentVer)
			}
			for condition, want := range map[string]string{
				kmsv1alpha1.KeyConditionReady: tc.wantReady, kmsv1alpha1.KeyConditionRestored: tc.wantRestored, kmsv1alpha1.KeyConditionImported: tc.wantImported,
			} {
				c := meta.FindStatusCondition(st.Conditions, condition)
				switch {
				case want == "" && c != nil:
					t.Errorf("%s = %s, want no such condition", condition, c.Reason)
				case want != "" && (c == nil || c.Reason != want):
					t.Errorf("%s = %+v, want reason %s", condition, c, want)
				}
			}
		})
	}
}

func TestScopeResult(t *testing.T) {
	for name, tc := range map[string]struct {
		scope        keyScope
		wantTerminal bool
		wantAfter    time.Duration
	}{
		"nothing to wait for":                           {},
		"a terminal problem is not retried":             {scope: keyScope{terminal: &terminalProblem{"R", "m"}, wake: unitNow.Add(time.Hour)}, wantTerminal: true},
		"the earliest wake-up a phase asked for":        {scope: keyScope{wake: unitNow.Add(time.Hour)}, wantAfter: time.Hour},
		"a wake-up already due waits at least a second": {scope: keyScope{wake: unitNow.Add(-time.Minute)}, wantAfter: time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			res, err := tc.scope.result(unitNow)
			if got := errors.Is(err, reconcile.TerminalError(nil)); got != tc.wantTerminal {
				t.Errorf("terminal = %v (err %v), want %v", got, err, tc.wantTerminal)
			}
			if res.RequeueAfter != tc.wantAfter {
				t.Errorf("RequeueAfter = %s, want %s", res.RequeueAfter, tc.wantAfter)
			}
		})
	}
	s := keyScope{}
	s.wakeAt(unitNow.Add(2 * time.Hour))
	s.wakeAt(time.Time{})
	s.wakeAt(unitNow.Add(time.Hour))
	s.wakeAt(unitNow.Add(3 * time.Hour))
	if !s.wake.Equal(unitNow.Add(time.Hour)) {
		t.Errorf("wake = %s, want the earliest request %s", s.wake, unitNow.Add(time.Hour))
	}
}
