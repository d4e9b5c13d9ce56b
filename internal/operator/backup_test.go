package operator_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/backup"
	"github.com/kubekms/kubekms/internal/operator"
	"github.com/kubekms/kubekms/internal/recovery"
	"github.com/kubekms/kubekms/internal/testenv"
)

// waitFor polls cond until it holds, or fails the test with what it last
// said after timeout.
func waitFor(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s: %s", timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// foreignBundle is a file named like a bundle, dated in the future: not
// one the scheduler wrote.
const foreignBundle = recovery.BundlePrefix + "99991231T000000.000Z" + recovery.BundleSuffix

// bundles lists the bundle files of dir but foreignBundle, oldest first.
func bundles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), recovery.BundlePrefix) && e.Name() != foreignBundle {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out
}

// backedUp is the RootOfTrust's BackedUp condition ("" when absent) and
// its status.
func backedUp(c client.Client) (*metav1.Condition, kmsv1alpha1.RootOfTrustStatus) {
	rot := &kmsv1alpha1.RootOfTrust{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: testenv.OperatorNamespace, Name: kmsv1alpha1.RootOfTrustName}, rot); err != nil {
		return nil, rot.Status
	}
	return meta.FindStatusCondition(rot.Status.Conditions, kmsv1alpha1.RootOfTrustConditionBackedUp), rot.Status
}

// gauge reads a gauge of the manager's registry.
func gauge(t *testing.T, name string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			m := f.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestScheduledBackups: the leader writes a bundle at start and after every
// change, keeps Keep of them, reports them on the RootOfTrust and as
// metrics, says when they are stale and when one failed, and recovers.
func TestScheduledBackups(t *testing.T) {
	env := startEnv(t)
	id, err := backup.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "backups")
	// What someone else left in the directory: a file named like a newer
	// bundle, and the temporary file of a crashed write.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{foreignBundle, ".incomplete-123"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("not a bundle"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	startReplicaWith(t, env, operator.Options{Backup: operator.BackupOptions{
		Recipients: []backup.Recipient{id.Recipient()}, Dir: dir,
		Interval: time.Hour, StaleAfter: 4 * time.Second, Check: 200 * time.Millisecond, Keep: 2,
	}}, true, false, time.Second)
	ctx := context.Background()

	waitFor(t, 20*time.Second, func() (bool, string) {
		cond, st := backedUp(env.Client)
		files := bundles(t, dir)
		return cond != nil && cond.Status == metav1.ConditionTrue && len(files) == 1 && st.LastBackupFile == files[0] && st.LastBackupTime != nil,
			"a first bundle at start, reported: " + strings.Join(files, ",") + " " + condString(cond)
	})
	_, st := backedUp(env.Client)
	first, err := os.ReadFile(filepath.Join(dir, st.LastBackupFile))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(first); st.LastBackupSHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("status.lastBackupSHA256 %q is not the bundle's", st.LastBackupSHA256)
	}
	if _, err := os.Stat(filepath.Join(dir, ".incomplete-123")); !os.IsNotExist(err) {
		t.Fatalf("a crashed write's temporary file is left: %v", err)
	}
	if g := gauge(t, "kubekms_backup_last_success_timestamp_seconds"); g < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Fatalf("kubekms_backup_last_success_timestamp_seconds = %v, want about now", g)
	}

	// A change (a new key, then its rotation) makes a new bundle holding it.
	key := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "scheduled"}}
	if err := env.Client.Create(ctx, key); err != nil {
		t.Fatal(err)
	}
	var keyID string
	waitFor(t, 30*time.Second, func() (bool, string) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(key), key); err != nil {
			return false, err.Error()
		}
		keyID = key.Status.KeyID
		if keyID == "" {
			return false, "key not ready"
		}
		files := bundles(t, dir)
		c := openNewest(t, dir, id)
		return c != nil && slices.ContainsFunc(c.Material, func(m recovery.Material) bool { return m.KeyID == keyID }),
			"the newest bundle holds the new key: " + strings.Join(files, ",")
	})
	if files := bundles(t, dir); len(files) != 2 {
		t.Fatalf("Keep 2: %v", files)
	}
	if _, err := os.Stat(filepath.Join(dir, foreignBundle)); err != nil {
		t.Fatalf("a file the scheduler did not write was removed: %v", err)
	}

	// Stale: no change for StaleAfter turns the condition False.
	waitFor(t, 15*time.Second, func() (bool, string) {
		cond, _ := backedUp(env.Client)
		return cond != nil && cond.Status == metav1.ConditionFalse && cond.Reason == kmsv1alpha1.RootOfTrustReasonBackupStale, condString(cond)
	})

	// A failed backup says why; the next one recovers.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	failures := gauge(t, "kubekms_backup_failures_total")
	patch := client.MergeFrom(key.DeepCopy())
	key.Annotations = map[string]string{kmsv1alpha1.RotateAnnotation: "r2"}
	if err := env.Client.Patch(ctx, key, patch); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() (bool, string) {
		cond, _ := backedUp(env.Client)
		return cond != nil && cond.Reason == kmsv1alpha1.RootOfTrustReasonBackupFailed && strings.Contains(cond.Message, "backup directory"), condString(cond)
	})
	if gauge(t, "kubekms_backup_failures_total") <= failures {
		t.Fatal("kubekms_backup_failures_total did not grow")
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() (bool, string) {
		cond, _ := backedUp(env.Client)
		c := openNewest(t, dir, id)
		return cond != nil && cond.Status == metav1.ConditionTrue && c != nil &&
			slices.ContainsFunc(c.Material, func(m recovery.Material) bool { return m.KeyID == keyID && m.Version == 2 }), condString(cond)
	})
}

// openNewest opens the newest bundle of dir; nil when there is none.
func openNewest(t *testing.T, dir string, id *backup.Identity) *recovery.Contents {
	t.Helper()
	files := bundles(t, dir)
	if len(files) == 0 {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, files[len(files)-1]))
	if err != nil {
		t.Fatal(err)
	}
	c, err := recovery.Open(b, id)
	if err != nil {
		t.Fatalf("open %s: %v", files[len(files)-1], err)
	}
	return c
}

func condString(c *metav1.Condition) string {
	if c == nil {
		return "no BackedUp condition"
	}
	return string(c.Status) + " " + c.Reason + ": " + c.Message
}
