package operator

import (
	"context"
	"fmt"
	"time"

	"github.com/kubekms/kubekms/controllers"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/seal"
)

// rootRotator rotates the local root key and reseals the operator
// namespace's sealed Secrets under it (controllers.RootRotator), or, in a
// migration (--previous-root-of-trust), reseals what the previous root
// sealed under the configured one. Other roots of trust answer
// controllers.ErrRotationUnsupported.
type rootRotator struct{ op *Operator }

var _ controllers.RootRotator = rootRotator{}

func (r rootRotator) supported() error {
	if p := r.op.opts.RootOfTrust; p != RootOfTrustLocal {
		return fmt.Errorf("%w: the %s root of trust rotates outside kubekms (docs/root-of-trust.md says how); spec.rotationRequest rotates the local root key only",
			controllers.ErrRotationUnsupported, p)
	}
	return nil
}

// Rotate implements controllers.RootRotator. The new version is loaded at
// once here; other replicas load it at their next root check, or at once
// when they meet a blob sealed under it (seal.Guarded).
func (r rootRotator) Rotate(ctx context.Context, request string) (uint32, bool, error) {
	if err := r.supported(); err != nil {
		return 0, false, err
	}
	op := r.op
	version, rotated, err := seal.RotateLocal(ctx, op.Manager.GetClient(), op.Manager.GetAPIReader(), op.opts.Namespace, request, op.opts.Random, op.opts.Clock.Now())
	if err != nil {
		return 0, false, err
	}
	if err := op.RootOfTrust.Check(ctx); err != nil {
		return 0, false, fmt.Errorf("load root key version %d: %w", version, err)
	}
	return version, rotated, nil
}

// Migrating implements controllers.RootRotator.
func (r rootRotator) Migrating() string { return r.op.opts.PreviousRootOfTrust }

// Versions implements controllers.RootRotator; a migration to a root of
// trust without versions has none.
func (r rootRotator) Versions(ctx context.Context) (seal.LocalRoot, error) {
	if err := r.supported(); err != nil {
		if r.op.Previous != nil {
			return seal.LocalRoot{}, nil
		}
		return seal.LocalRoot{}, err
	}
	state, err := seal.ReadLocalRoot(ctx, r.op.Manager.GetAPIReader(), r.op.opts.Namespace)
	if err == nil && len(state.Versions) > 1 && state.RotatedAt.IsZero() {
		// Versions added by hand, or the time edited away: the wait before
		// retiring starts now.
		state.RotatedAt, err = seal.StampRotatedAt(ctx, r.op.Manager.GetClient(), r.op.Manager.GetAPIReader(), r.op.opts.Namespace, r.op.opts.Clock.Now())
	}
	return state, err
}

// Reseal implements controllers.RootRotator: the root check Secret first,
// then up to limit sealed Secrets, which count as current by their headers
// (Retire unseals each before it retires anything).
func (r rootRotator) Reseal(ctx context.Context, limit int) (keystore.ResealProgress, error) {
	op := r.op
	if err := r.supported(); err != nil && op.Previous == nil {
		return keystore.ResealProgress{}, err
	}
	// A replica that became leader since the rotation may hold the root
	// as it was before: load it again first.
	if err := op.RootOfTrust.Check(ctx); err != nil {
		return keystore.ResealProgress{}, err
	}
	if _, err := seal.ResealCheck(ctx, op.Manager.GetClient(), op.Manager.GetAPIReader(), op.opts.Namespace, op.Sealer, op.Store.Previous, false); err != nil {
		return keystore.ResealProgress{}, err
	}
	p, err := op.Store.ResealBatch(ctx, limit, false)
	if err != nil || p.Pending > 0 || op.Previous == nil {
		return p, err
	}
	// A migration that looks done by the blobs' headers is confirmed by
	// unsealing every Secret before the RootOfTrust says the previous root
	// can go (an annotation that does not unseal would otherwise be read
	// from the data, through the previous root, until it is retired), and
	// again every migrationVerifyEvery while the flag stays.
	if last := op.migrationVerified.Load(); last != 0 && time.Since(time.Unix(0, last)) < migrationVerifyEvery {
		return p, nil
	}
	if p, err = op.Store.ResealBatch(ctx, limit, true); err == nil && p.Pending == 0 && len(p.Failed) == 0 {
		op.migrationVerified.Store(time.Now().UnixNano())
	}
	return p, err
}

// migrationVerifyEvery is how often a finished migration is confirmed by
// unsealing every sealed Secret again.
const migrationVerifyEvery = 10 * time.Minute

// Retire implements controllers.RootRotator: it reloads the root, counts
// again (uncached, unsealing each one) what is not sealed under the
// version it holds, and retires every other version only when that is
// nothing and the root key Secret still names the version it holds as
// current (a rotation in between, by another manager that believes it
// leads, is not retired over).
func (r rootRotator) Retire(ctx context.Context) ([]uint32, error) {
	op := r.op
	if err := r.supported(); err != nil {
		return nil, err
	}
	if err := op.RootOfTrust.Check(ctx); err != nil {
		return nil, err
	}
	keep, ok := seal.CurrentRootVersion(op.Sealer)
	if !ok {
		return nil, fmt.Errorf("not retiring old root key versions: the root held has no version")
	}
	p, err := op.Store.ResealBatch(ctx, 0, true)
	if err != nil {
		return nil, err
	}
	check, err := seal.ResealCheck(ctx, op.Manager.GetClient(), op.Manager.GetAPIReader(), op.opts.Namespace, op.Sealer, op.Store.Previous, true)
	if err != nil {
		return nil, err
	}
	if p.Pending > 0 || check {
		return nil, fmt.Errorf("not retiring old root key versions: %d sealed Secrets (and the root check: %t) are not sealed under version %d yet", p.Pending, check, keep)
	}
	if now, _ := seal.CurrentRootVersion(op.Sealer); now != keep {
		return nil, fmt.Errorf("not retiring old root key versions: the root was reloaded at version %d while counting under %d", now, keep)
	}
	retired, err := seal.RetireLocal(ctx, op.Manager.GetClient(), op.Manager.GetAPIReader(), op.opts.Namespace, keep)
	if err != nil {
		return nil, err
	}
	return retired, op.RootOfTrust.Check(ctx)
}
