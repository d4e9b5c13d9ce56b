package audit

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
)

// Event reasons of the usage summary.
const (
	ReasonUsed         = "Used"
	ReasonAccessDenied = "AccessDenied"
	ReasonThrottled    = "Throttled"
	ReasonFailed       = "Failed"
	actionUse          = "Use"
)

// DefaultMaxEventsPerKey bounds the Events one key gets per interval: the
// busiest (principal, operation, outcome) rows, then one line for the rest.
const DefaultMaxEventsPerKey = 10

type usageKey struct {
	key                                      types.NamespacedName
	uid                                      types.UID
	principal, operation, outcome, errorCode string
}

type lastUse struct {
	at        time.Time
	principal string
}

// Usage aggregates calls per key, principal, operation and outcome, and
// every interval turns them into Events on the Key (at most
// MaxEventsPerKey+1 per key) and a status.lastUsed update. It never writes
// one Event per call.
type Usage struct {
	Client          client.Client
	Recorder        events.EventRecorder
	Interval        time.Duration
	MaxEventsPerKey int

	mu     sync.Mutex
	counts map[usageKey]int
	last   map[types.NamespacedName]map[string]lastUse // key -> class -> use
}

// Observe counts one call that named a key. class is the operation class.
func (u *Usage) Observe(r *Record, uid types.UID, class string) {
	if r.Key == nil {
		return // no key resolved: the audit log has it, no Key to event on
	}
	k := usageKey{
		key: types.NamespacedName{Namespace: r.Key.Namespace, Name: r.Key.Name}, uid: uid,
		principal: r.Principal.Username, operation: r.EventName, outcome: r.Outcome, errorCode: r.ErrorCode,
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.counts == nil {
		u.counts = map[usageKey]int{}
		u.last = map[types.NamespacedName]map[string]lastUse{}
	}
	u.counts[k]++
	if r.Outcome == Allowed {
		if u.last[k.key] == nil {
			u.last[k.key] = map[string]lastUse{}
		}
		u.last[k.key][class] = lastUse{at: r.EventTime, principal: r.Principal.Username}
	}
}

// NeedLeaderElection: every replica reports what it served.
func (u *Usage) NeedLeaderElection() bool { return false }

// Start flushes every interval until ctx ends, then once more.
func (u *Usage) Start(ctx context.Context) error {
	t := time.NewTicker(u.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			u.Flush(context.WithoutCancel(ctx))
			return nil
		case <-t.C:
			u.Flush(ctx)
		}
	}
}

// Flush emits the Events and lastUsed updates for what was counted since
// the last flush.
func (u *Usage) Flush(ctx context.Context) {
	u.mu.Lock()
	counts, last := u.counts, u.last
	u.counts, u.last = nil, nil
	u.mu.Unlock()

	perKey := map[usageKey][]usageRow{}
	for k, n := range counts {
		owner := usageKey{key: k.key, uid: k.uid}
		perKey[owner] = append(perKey[owner], usageRow{k, n})
	}
	limit := cmp.Or(u.MaxEventsPerKey, DefaultMaxEventsPerKey)
	for owner, rows := range perKey {
		slices.SortFunc(rows, func(a, b usageRow) int {
			return cmp.Or(cmp.Compare(b.n, a.n), cmp.Compare(a.k.principal+a.k.operation, b.k.principal+b.k.operation))
		})
		obj := &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: owner.key.Namespace, Name: owner.key.Name, UID: owner.uid}}
		for i, row := range rows {
			if i == limit {
				rest := 0
				for _, r := range rows[i:] {
					rest += r.n
				}
				u.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, ReasonUsed, actionUse,
					"%d more calls by other principals or operations in the last %s", rest, u.Interval)
				break
			}
			reason, typ := ReasonUsed, corev1.EventTypeNormal
			switch {
			case row.k.errorCode == "ThrottlingException":
				reason, typ = ReasonThrottled, corev1.EventTypeWarning
			case row.k.outcome == Denied:
				reason, typ = ReasonAccessDenied, corev1.EventTypeWarning
			case row.k.outcome == Error:
				reason, typ = ReasonFailed, corev1.EventTypeWarning
			}
			outcome := row.k.outcome
			if row.k.errorCode != "" {
				outcome += ": " + row.k.errorCode
			}
			u.Recorder.Eventf(obj, nil, typ, reason, actionUse, "%s: %s x%d (%s) in the last %s",
				row.k.principal, row.k.operation, row.n, outcome, u.Interval)
		}
	}
	for key, uses := range last {
		if err := u.patchLastUsed(ctx, key, uses); err != nil {
			log.FromContext(ctx).V(1).Info("Could not update lastUsed", "key", key.String(), "error", err.Error())
		}
	}
}

type usageRow struct {
	k usageKey
	n int
}

func (u *Usage) patchLastUsed(ctx context.Context, name types.NamespacedName, uses map[string]lastUse) error {
	key := &kmsv1alpha1.Key{}
	if err := u.Client.Get(ctx, name, key); err != nil {
		return client.IgnoreNotFound(err)
	}
	orig := key.DeepCopy()
	for class, use := range uses {
		entry := kmsv1alpha1.KeyUse{Class: class, Time: metav1.NewTime(use.at), Principal: use.principal}
		i := slices.IndexFunc(key.Status.LastUsed, func(e kmsv1alpha1.KeyUse) bool { return e.Class == class })
		switch {
		case i < 0:
			key.Status.LastUsed = append(key.Status.LastUsed, entry)
		case key.Status.LastUsed[i].Time.Before(&entry.Time):
			key.Status.LastUsed[i] = entry
		}
	}
	if err := u.Client.Status().Patch(ctx, key, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("patch lastUsed: %w", err)
	}
	return nil
}
