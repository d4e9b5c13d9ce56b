package seal

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Guarded is the root of trust as the manager holds it: loaded and checked
// again every interval, so a root that goes away (the root key Secret
// deleted, the HSM or AWS KMS down, a PIN changed) makes the manager not
// ready with the reason, and one that comes back makes it ready again,
// without a restart. While there is no usable root, Seal and Unseal fail
// with ErrRootUnavailable and that reason: nothing new is sealed, and no new
// root key is ever made over sealed material (the loaders refuse it).
type Guarded struct {
	provider string
	// Load builds the sealer (LoadOrCreateLocal, NewAWSKMS, ...); Verify
	// checks it against the material (VerifyRoot).
	load   func(context.Context) (Sealer, error)
	verify func(context.Context, Sealer) error
	// Reload: load again on every check (cheap for local, whose Secret is
	// the thing that can vanish); otherwise only verify the sealer held.
	reload bool

	mu  sync.RWMutex
	cur Sealer
	err error
	// notify are called, outside mu and in order, with each new outcome.
	notifyMu sync.Mutex
	notify   []func(error)
	notified time.Time // under mu
	// checks numbers each Check; kept is the number of the one whose root
	// is held (under mu).
	checks atomic.Uint64
	kept   uint64

	// refreshMu serializes the reloads an unseal asks for (refresh), at
	// most one per refreshEvery.
	refreshMu sync.Mutex
	refreshed time.Time
}

// refreshEvery bounds how often unseals of blobs under a root key version
// this replica has not loaded yet make it reload the root.
const refreshEvery = time.Second

// notifyQuiet is how long a new message of the same class waits to be heard.
const notifyQuiet = 5 * time.Minute

// rootClass is what a check's outcome means for the manager: 0 ready,
// 1 unavailable, 2 the wrong root.
func rootClass(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrWrongRoot):
		return 2
	}
	return 1
}

// Notify registers f to be called with the outcome of a check whenever it
// differs from the one before (nil when the root is back), and by Run when
// it starts with the root not ready: the manager's Events and RootOfTrust
// status. f must not block for long.
func (g *Guarded) Notify(f func(err error)) {
	g.notifyMu.Lock()
	defer g.notifyMu.Unlock()
	g.notify = append(g.notify, f)
}

func (g *Guarded) changed(err error) {
	g.notifyMu.Lock()
	defer g.notifyMu.Unlock()
	for _, f := range g.notify {
		f(err)
	}
}

// Err is the last check's error: nil when the root of trust is ready.
// ErrWrongRoot in it means a root that answers but is not the one the
// material needs; anything else, a root that is gone or unreachable.
func (g *Guarded) Err() error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.err
}

// NewGuarded loads and verifies once; the error is returned, and the
// manager may start anyway and wait for Run to succeed.
func NewGuarded(ctx context.Context, provider string, reload bool, load func(context.Context) (Sealer, error), verify func(context.Context, Sealer) error) (*Guarded, error) {
	g := &Guarded{provider: provider, load: load, verify: verify, reload: reload}
	return g, g.Check(ctx)
}

// Check loads (when needed) and verifies the root now, and records the
// outcome for Ready, Seal and Unseal.
func (g *Guarded) Check(ctx context.Context) error {
	g.mu.RLock()
	s := g.cur
	g.mu.RUnlock()
	// Checks may overlap (the ticker, an unseal's refresh, a rotation): the
	// root loaded by the one that began last is the one kept.
	seq := g.checks.Add(1)
	var err error
	if s == nil || g.reload {
		var fresh Sealer
		if fresh, err = g.load(ctx); err == nil {
			s = fresh
		}
	}
	if err == nil {
		err = g.verify(ctx, s)
	}
	g.mu.Lock()
	logger := log.Log.WithName("root-of-trust").WithValues("provider", g.provider)
	switch {
	case err != nil && g.err == nil:
		logger.Error(err, "Root of trust unavailable: not ready, nothing new is sealed until it is back")
	case err == nil && (g.err != nil || g.cur == nil):
		logger.Info("Root of trust ready")
	}
	// Heard at once: a change of class (ready, unavailable, wrong root).
	// A new message of the same class (another AWS request ID, another
	// count of sealed Secrets) at most every notifyQuiet, lest every check
	// be an Event.
	now := time.Now()
	news := rootClass(err) != rootClass(g.err) ||
		(err != nil && err.Error() != g.err.Error() && now.Sub(g.notified) >= notifyQuiet)
	if news {
		g.notified = now
	}
	if err != nil {
		g.err = err
		if g.reload && !errors.Is(err, ErrRootUnavailable) {
			// The root key is gone (or wrong): forget it. One that could
			// not be read for a moment (the API server) is kept and tried.
			g.cur = nil
		}
	} else if seq > g.kept {
		g.cur, g.err, g.kept = s, nil, seq
	} else {
		g.err = nil // a later check has stored a newer root
	}
	g.mu.Unlock()
	if news {
		g.changed(err)
	}
	return err
}

// Run checks the root every interval until ctx ends (a manager Runnable on
// every replica).
func (g *Guarded) Run(ctx context.Context, interval time.Duration) {
	if err := g.Err(); err != nil {
		g.changed(err) // found before the manager could record it
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = g.Check(ctx)
		}
	}
}

// Ready is a readiness check: the root of trust's last check failed, and why.
func (g *Guarded) Ready(*http.Request) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.err != nil {
		return fmt.Errorf("root of trust %s: %w", g.provider, g.err)
	}
	return nil
}

// Provider implements Sealer.
func (g *Guarded) Provider() string { return g.provider }

func (g *Guarded) sealer() (Sealer, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.err != nil && (g.cur == nil || !errors.Is(g.err, ErrRootUnavailable) || errors.Is(g.err, ErrWrongRoot)) {
		// A root that is gone or wrong seals nothing; one that answered
		// badly once (ErrRootUnavailable) is still tried.
		return nil, fmt.Errorf("%w: %w", ErrRootUnavailable, g.err)
	}
	return g.cur, nil
}

// Seal implements Sealer. A reloaded root (local) whose last reload
// failed seals nothing, even while what it holds still unseals: the root
// key Secret may have been rotated, and its old versions retired, since
// this replica last read it.
func (g *Guarded) Seal(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	s, err := g.sealer()
	if err != nil {
		return nil, err
	}
	if g.reload {
		if err := g.Err(); err != nil {
			return nil, fmt.Errorf("%w: the root was not read again: %w", ErrRootUnavailable, err)
		}
	}
	return s.Seal(ctx, plaintext, aad)
}

// Unseal implements Sealer. A blob sealed under a root key version newer
// than the one held (the root was rotated and another replica resealed it
// before this one reloaded) makes the root reload at once, so that no
// unseal waits for the next check.
func (g *Guarded) Unseal(ctx context.Context, blob, aad []byte) ([]byte, error) {
	s, err := g.sealer()
	if err != nil {
		return nil, err
	}
	pt, err := s.Unseal(ctx, blob, aad)
	if errors.Is(err, errVersionNotGiven) && g.reload {
		g.refresh(ctx)
		if s, err = g.sealer(); err != nil {
			return nil, err
		}
		pt, err = s.Unseal(ctx, blob, aad)
	}
	return pt, err
}

func (g *Guarded) refresh(ctx context.Context) {
	g.refreshMu.Lock()
	defer g.refreshMu.Unlock()
	if time.Since(g.refreshed) < refreshEvery {
		return // another unseal reloaded a moment ago
	}
	g.refreshed = time.Now()
	_ = g.Check(ctx)
}

// SealedUnderCurrent implements the optional method SealedUnderCurrent reads,
// for the root held now; with none, nothing is current.
func (g *Guarded) SealedUnderCurrent(blob []byte) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.cur != nil && SealedUnderCurrent(g.cur, blob)
}

// CurrentRootVersion implements the optional method CurrentRootVersion
// reads, for the root held now.
func (g *Guarded) CurrentRootVersion() (uint32, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.cur == nil {
		return 0, false
	}
	return CurrentRootVersion(g.cur)
}
