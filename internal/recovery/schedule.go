package recovery

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/backup"
	"github.com/kubekms/kubekms/internal/keystore"
)

// Bundle files a Scheduler writes are named BundlePrefix + the time (UTC,
// sortable) + BundleSuffix.
const (
	BundlePrefix = "kubekms-backup-"
	BundleSuffix = ".kmsbackup"
)

// Scheduler writes a bundle into Dir on the leader: at start, after any
// change to the keys, their policies, grants or material (a rotation, a
// new key, a deletion), checked every Check, and at least every Interval.
// It keeps the newest Keep bundles. Its state is read by the RootOfTrust
// reconciler (the BackedUp condition) and exported as metrics.
type Scheduler struct {
	Exporter *Exporter
	// Cache is where changes are looked for every Check: the manager's
	// informers (Keys, KeyPolicies, KeyGrants and its own Secrets), so
	// that looking costs the API server nothing. Nil reads the exporter's.
	Cache      client.Reader
	Recipients []backup.Recipient
	Dir        string
	// Interval is the longest time between two bundles (default 24h);
	// a backup older than StaleAfter (default 2 × Interval) is stale.
	Interval, StaleAfter time.Duration
	// Check is how often changes are looked for (default 1m).
	Check time.Duration
	// Keep is how many bundles are kept (default 7).
	Keep  int
	Clock clock.PassiveClock

	mu         sync.Mutex
	last       time.Time
	lastFile   string
	lastDigest string
	lastErr    error
	lastState  string
	notify     []func()
	lastGauge  prometheus.Gauge
	failures   prometheus.Counter
	registered bool
}

// defaults fills the zero settings.
func (s *Scheduler) defaults() {
	s.Interval = cmp.Or(s.Interval, 24*time.Hour)
	s.StaleAfter = cmp.Or(s.StaleAfter, 2*s.Interval)
	s.Check = cmp.Or(s.Check, time.Minute)
	s.Keep = cmp.Or(s.Keep, 7)
	if s.Clock == nil {
		s.Clock = clock.RealClock{}
	}
}

// Register fills the defaults and exports the scheduler's metrics to reg;
// call it before Start.
func (s *Scheduler) Register(reg prometheus.Registerer) error {
	s.defaults()
	s.lastGauge = prometheus.NewGauge(prometheus.GaugeOpts{Name: "kubekms_backup_last_success_timestamp_seconds",
		Help: "When the last scheduled backup bundle was written (Unix time); 0 before the first. Alert when time() minus this exceeds your backup interval."})
	s.failures = prometheus.NewCounter(prometheus.CounterOpts{Name: "kubekms_backup_failures_total",
		Help: "Scheduled backups that failed (the RootOfTrust's BackedUp condition says why)."})
	// Several managers in one process (tests, the bench) share the
	// registry's collectors.
	var are prometheus.AlreadyRegisteredError
	if err := reg.Register(s.lastGauge); errors.As(err, &are) {
		s.lastGauge = are.ExistingCollector.(prometheus.Gauge)
	} else if err != nil {
		return err
	}
	if err := reg.Register(s.failures); errors.As(err, &are) {
		s.failures = are.ExistingCollector.(prometheus.Counter)
	} else if err != nil {
		return err
	}
	s.registered = true
	return nil
}

// NeedLeaderElection: only the leader writes bundles.
func (s *Scheduler) NeedLeaderElection() bool { return true }

// Start runs until ctx ends.
func (s *Scheduler) Start(ctx context.Context) error {
	s.defaults()
	s.findLast()
	for {
		s.tick(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.Check):
		}
	}
}

// tick writes a bundle when one is due.
func (s *Scheduler) tick(ctx context.Context) {
	state, err := s.state(ctx)
	if err == nil {
		s.mu.Lock()
		due := s.last.IsZero() || state != s.lastState || s.Clock.Since(s.last) >= s.Interval
		s.mu.Unlock()
		if !due {
			return
		}
		err = s.write(ctx, state)
	}
	s.mu.Lock()
	s.lastErr = err
	notify := slices.Clone(s.notify)
	s.mu.Unlock()
	if err != nil {
		log.FromContext(ctx).Error(err, "Scheduled backup failed", "dir", s.Dir)
		if s.registered {
			s.failures.Inc()
		}
	}
	for _, f := range notify {
		f()
	}
}

// write makes a bundle and writes it whole (a temporary file, synced, then
// renamed), then drops the oldest beyond Keep.
func (s *Scheduler) write(ctx context.Context, state string) error {
	now := s.Clock.Now().UTC()
	bundle, err := Bundle(ctx, s.Exporter, s.Recipients, now)
	if err != nil {
		return err
	}
	name := BundlePrefix + now.Format(bundleTimeLayout) + BundleSuffix
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("backup directory: %w", err)
	}
	tmp, err := os.CreateTemp(s.Dir, ".incomplete-*")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(bundle); err != nil {
		tmp.Close()
		return fmt.Errorf("backup: write %s: %w", name, err)
	}
	if err := errors.Join(tmp.Sync(), tmp.Close()); err != nil {
		return fmt.Errorf("backup: write %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(s.Dir, name)); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	digest := sha256.Sum256(bundle)
	s.mu.Lock()
	s.last, s.lastFile, s.lastState, s.lastDigest = now, name, state, hex.EncodeToString(digest[:])
	s.mu.Unlock()
	if s.registered {
		s.lastGauge.Set(float64(now.Unix()))
	}
	log.FromContext(ctx).Info("Wrote a scheduled backup", "file", filepath.Join(s.Dir, name), "bytes", len(bundle), "sha256", hex.EncodeToString(digest[:]))
	return s.prune()
}

// bundleTimeLayout is the time in a bundle file's name.
const bundleTimeLayout = "20060102T150405.000Z"

// bundles lists the bundle files in Dir that this scheduler could have
// written (the name's form, a time not after now), oldest first. Other
// files, or names dated in the future, are never counted nor removed.
func (s *Scheduler) bundles() ([]string, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, err
	}
	now := s.Clock.Now()
	var names []string
	for _, e := range entries {
		n := e.Name()
		stamp, ok := strings.CutPrefix(n, BundlePrefix)
		if stamp, ok = strings.CutSuffix(stamp, BundleSuffix); !ok || !e.Type().IsRegular() {
			continue
		}
		if t, err := time.Parse(bundleTimeLayout, stamp); err == nil && !t.After(now) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

// prune removes the oldest bundles beyond Keep.
func (s *Scheduler) prune() error {
	names, err := s.bundles()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	for len(names) > s.Keep {
		if err := os.Remove(filepath.Join(s.Dir, names[0])); err != nil {
			return fmt.Errorf("backup: remove old bundle: %w", err)
		}
		names = names[1:]
	}
	return nil
}

// maxHeader bounds what findLast reads of a bundle: its two header lines.
const maxHeader = 1 << 20

// findLast takes the newest bundle in Dir as the last backup (a restarted
// or new leader goes on from it), reading only its header; its state is
// unknown, so the first check writes a new one. Temporary files a crash
// left are removed.
func (s *Scheduler) findLast() {
	if tmps, err := filepath.Glob(filepath.Join(s.Dir, ".incomplete-*")); err == nil {
		for _, t := range tmps {
			_ = os.Remove(t)
		}
	}
	names, err := s.bundles()
	if err != nil || len(names) == 0 {
		return
	}
	newest := names[len(names)-1]
	f, err := os.Open(filepath.Join(s.Dir, newest))
	if err != nil {
		return
	}
	defer f.Close()
	head, err := io.ReadAll(io.LimitReader(f, maxHeader))
	if err != nil {
		return
	}
	h, err := backup.Inspect(head)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.last, s.lastFile = h.CreatedAt, newest
	s.mu.Unlock()
	if s.registered {
		s.lastGauge.Set(float64(h.CreatedAt.Unix()))
	}
}

// state summarizes what a backup would hold, without unsealing anything:
// the names, UIDs and generations of Keys, KeyPolicies and KeyGrants (not
// their status, which use changes), and the resourceVersions of the
// material Secrets. Any change makes a new bundle due.
func (s *Scheduler) state(ctx context.Context) (string, error) {
	reader := s.Cache
	if reader == nil {
		reader = s.Exporter.Reader
	}
	h := sha256.New()
	for _, l := range []client.ObjectList{&kmsv1alpha1.KeyList{}, &kmsv1alpha1.KeyPolicyList{}, &kmsv1alpha1.KeyGrantList{}} {
		if err := reader.List(ctx, l); err != nil {
			return "", fmt.Errorf("backup: %w", err)
		}
		var lines []string
		switch l := l.(type) {
		case *kmsv1alpha1.KeyList:
			for _, o := range l.Items {
				lines = append(lines, fmt.Sprintf("key %s/%s %s %d", o.Namespace, o.Name, o.UID, o.Generation))
			}
		case *kmsv1alpha1.KeyPolicyList:
			for _, o := range l.Items {
				lines = append(lines, fmt.Sprintf("policy %s/%s %s %d", o.Namespace, o.Name, o.UID, o.Generation))
			}
		case *kmsv1alpha1.KeyGrantList:
			for _, o := range l.Items {
				lines = append(lines, fmt.Sprintf("grant %s/%s %s %d", o.Namespace, o.Name, o.UID, o.Generation))
			}
		}
		slices.Sort(lines)
		for _, line := range lines {
			h.Write([]byte(line + "\n"))
		}
	}
	versions, err := (&keystore.Store{Reader: reader, Namespace: s.Exporter.Store.Namespace}).All(ctx)
	if err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	for _, v := range versions {
		fmt.Fprintf(h, "material %s %s\n", keystore.SecretName(v.KeyID, v.Version), v.ResourceVersion())
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Report is the state of scheduled backups at now.
type Report struct {
	// Last is the last bundle's time (zero before the first), File its
	// name and SHA256 its digest (hex; "" for one found at start).
	Last         time.Time
	File, SHA256 string
	// Err is the last attempt's error; Stale says Last is older than
	// StaleAfter.
	Err   error
	Stale bool
}

// Report says how scheduled backups stand at now.
func (s *Scheduler) Report(now time.Time) Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Report{Last: s.last, File: s.lastFile, SHA256: s.lastDigest, Err: s.lastErr, Stale: s.last.IsZero() || now.Sub(s.last) > s.StaleAfter}
}

// StaleAt is when the last backup becomes stale (zero before the first).
func (s *Scheduler) StaleAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last.IsZero() {
		return time.Time{}
	}
	return s.last.Add(s.StaleAfter)
}

// Notify registers f, called after every attempt.
func (s *Scheduler) Notify(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notify = append(s.notify, f)
}
