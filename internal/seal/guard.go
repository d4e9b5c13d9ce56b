package seal

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
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
	defer g.mu.Unlock()
	logger := log.Log.WithName("root-of-trust").WithValues("provider", g.provider)
	switch {
	case err != nil && g.err == nil:
		logger.Error(err, "Root of trust unavailable: not ready, nothing new is sealed until it is back")
	case err == nil && (g.err != nil || g.cur == nil):
		logger.Info("Root of trust ready")
	}
	if err != nil {
		g.err = err
		if g.reload {
			g.cur = nil
		}
		return err
	}
	g.cur, g.err = s, nil
	return nil
}

// Run checks the root every interval until ctx ends (a manager Runnable on
// every replica).
func (g *Guarded) Run(ctx context.Context, interval time.Duration) {
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
	if g.err != nil && (g.cur == nil || !errors.Is(g.err, ErrRootUnavailable)) {
		// A root that is gone or wrong seals nothing; one that answered
		// badly once (ErrRootUnavailable) is still tried.
		return nil, fmt.Errorf("%w: %w", ErrRootUnavailable, g.err)
	}
	return g.cur, nil
}

// Seal implements Sealer.
func (g *Guarded) Seal(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	s, err := g.sealer()
	if err != nil {
		return nil, err
	}
	return s.Seal(ctx, plaintext, aad)
}

// Unseal implements Sealer.
func (g *Guarded) Unseal(ctx context.Context, blob, aad []byte) ([]byte, error) {
	s, err := g.sealer()
	if err != nil {
		return nil, err
	}
	return s.Unseal(ctx, blob, aad)
}
