package seal

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// The guard's state machine: a root that goes away makes it not ready and
// sealing refused (reloaded providers) or still tried (a held sealer that
// answered badly), and one that comes back makes it ready again.
func TestGuardedRecoversWithoutARestart(t *testing.T) {
	ctx := context.Background()
	root := testSealer(t, 1, 1)
	var loadErr, verifyErr error
	load := func(context.Context) (Sealer, error) { return root, loadErr }
	verify := func(context.Context, Sealer) error { return verifyErr }

	t.Run("reloaded (local): a missing root key refuses everything until restored", func(t *testing.T) {
		loadErr = errors.New("root key Secret ns/kubekms-root-key is missing")
		g, err := NewGuarded(ctx, "local", true, load, verify)
		if err == nil || g.Ready(nil) == nil || !strings.Contains(g.Ready(nil).Error(), "kubekms-root-key is missing") {
			t.Fatalf("NewGuarded = %v, Ready = %v", err, g.Ready(nil))
		}
		if _, err := g.Seal(ctx, []byte("m"), nil); !errors.Is(err, ErrRootUnavailable) || !strings.Contains(err.Error(), "is missing") {
			t.Fatalf("Seal without a root = %v", err)
		}
		loadErr = nil
		if err := g.Check(ctx); err != nil || g.Ready(nil) != nil {
			t.Fatalf("after the root came back: Check %v, Ready %v", err, g.Ready(nil))
		}
		blob, err := g.Seal(ctx, []byte("m"), nil)
		if err != nil {
			t.Fatal(err)
		}
		// The API server away for a moment (review finding 9): not ready,
		// but the root key held is still used.
		loadErr = fmt.Errorf("%w: load root key Secret ns/kubekms-root-key: connection refused", ErrRootUnavailable)
		_ = g.Check(ctx)
		if g.Ready(nil) == nil {
			t.Fatal("ready while the root key cannot be read")
		}
		if got, err := g.Unseal(ctx, blob, nil); err != nil || string(got) != "m" {
			t.Fatalf("Unseal while the API server is away = %q, %v; want the held root key used", got, err)
		}
		// But nothing new is sealed under it: it may have been rotated
		// and retired meanwhile.
		if _, err := g.Seal(ctx, []byte("m"), nil); !errors.Is(err, ErrRootUnavailable) || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("Seal while the root key cannot be read again = %v; want ErrRootUnavailable with the reason", err)
		}
		// Deleted while running: refused again at the next check.
		loadErr = errors.New("gone")
		_ = g.Check(ctx)
		if _, err := g.Unseal(ctx, blob, nil); !errors.Is(err, ErrRootUnavailable) {
			t.Fatalf("Unseal after the root went away = %v", err)
		}
		loadErr = nil
	})

	t.Run("held (HSM, AWS): an outage is retried, a wrong root is refused", func(t *testing.T) {
		g, err := NewGuarded(ctx, "awskms", false, load, verify)
		if err != nil {
			t.Fatal(err)
		}
		blob, _ := g.Seal(ctx, []byte("m"), nil)
		verifyErr = fmt.Errorf("%w: AWS KMS Decrypt failed (no answer)", ErrRootUnavailable)
		_ = g.Check(ctx)
		if g.Ready(nil) == nil {
			t.Fatal("ready while the root does not answer")
		}
		if got, err := g.Unseal(ctx, blob, nil); err != nil || string(got) != "m" {
			t.Fatalf("an outage must not stop the held sealer being tried: %q, %v", got, err)
		}
		verifyErr = errors.New("not the one the 3 sealed Secrets were sealed under")
		_ = g.Check(ctx)
		if _, err := g.Unseal(ctx, blob, nil); !errors.Is(err, ErrRootUnavailable) {
			t.Fatalf("a wrong root must not be used: %v", err)
		}
		verifyErr = nil
		if err := g.Check(ctx); err != nil || g.Ready(nil) != nil {
			t.Fatalf("after recovery: %v, %v", err, g.Ready(nil))
		}
	})
}

// Notify hears each change of outcome once (the Events and the
// RootOfTrust status), not every check, and Run repeats an outcome found
// before anyone could listen.
func TestGuardedNotifiesChanges(t *testing.T) {
	ctx := context.Background()
	root := testSealer(t, 1, 1)
	loadErr := errors.New("root key Secret ns/kubekms-root-key is missing")
	g, _ := NewGuarded(ctx, "local", true, func(context.Context) (Sealer, error) { return root, loadErr },
		func(context.Context, Sealer) error { return nil })
	var heard []string
	g.Notify(func(err error) {
		if err == nil {
			heard = append(heard, "ready")
		} else {
			heard = append(heard, err.Error())
		}
	})
	runCtx, cancel := context.WithCancel(ctx)
	cancel()
	g.Run(runCtx, time.Hour) // ends at once, after telling what NewGuarded found
	_ = g.Check(ctx)         // the same outcome: nothing new
	loadErr = fmt.Errorf("%w: another key", ErrWrongRoot)
	_ = g.Check(ctx) // another class: heard
	loadErr = fmt.Errorf("%w: yet another key (request ID 2)", ErrWrongRoot)
	_ = g.Check(ctx) // the same class, another message, just after: not yet
	loadErr = nil
	_ = g.Check(ctx)
	_ = g.Check(ctx)
	want := []string{"root key Secret ns/kubekms-root-key is missing", "wrong root of trust: another key", "ready"}
	if !slices.Equal(heard, want) {
		t.Fatalf("heard %q, want %q", heard, want)
	}
	if g.Err() != nil {
		t.Fatalf("Err after recovery = %v", g.Err())
	}
}

// A replica that has not reloaded a rotated root meets a blob another
// replica resealed under the new root key version: the unseal reloads the
// root at once (at most once a second) and succeeds, instead of failing
// until the next check. A root that is held, not reloaded, does not.
func TestGuardedReloadsForANewerRootKeyVersion(t *testing.T) {
	ctx := context.Background()
	v1, v12 := testSealer(t, 1, 1), testSealer(t, 2, 1, 2)
	blob, err := v12.Seal(ctx, []byte("m"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if !v12.SealedUnderCurrent(blob) || v1.SealedUnderCurrent(blob) {
		t.Fatal("SealedUnderCurrent does not read the blob's root key version")
	}
	for _, reload := range []bool{true, false} {
		held := Sealer(v1)
		loads := 0
		load := func(context.Context) (Sealer, error) { loads++; return held, nil }
		g, err := NewGuarded(ctx, "test", reload, load, func(context.Context, Sealer) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		held = v12 // rotated in the API server; not loaded yet
		got, err := g.Unseal(ctx, blob, []byte("aad"))
		switch {
		case reload && (err != nil || string(got) != "m" || loads != 2):
			t.Fatalf("reloaded root: Unseal = %q, %v after %d loads; want the root reloaded once and the blob unsealed", got, err, loads)
		case !reload && !errors.Is(err, ErrRootUnavailable):
			t.Fatalf("held root: Unseal = %q, %v; want ErrRootUnavailable", got, err)
		}
		if reload {
			// Another unseal of a version not given, within the second,
			// does not reload again.
			held = testSealer(t, 3, 1, 2, 3)
			newer, _ := held.Seal(ctx, []byte("m"), []byte("aad"))
			if _, err := g.Unseal(ctx, newer, []byte("aad")); !errors.Is(err, ErrRootUnavailable) || loads != 2 {
				t.Fatalf("second reload within a second: %v after %d loads; want ErrRootUnavailable and no load", err, loads)
			}
		}
	}
}
