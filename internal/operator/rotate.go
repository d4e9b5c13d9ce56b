package operator

import (
	"context"
	"fmt"

	"github.com/kubekms/kubekms/controllers"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/seal"
)

// rootRotator rotates the local root key and reseals the operator
// namespace's sealed Secrets under it (controllers.RootRotator). Other
// roots of trust answer controllers.ErrRotationUnsupported.
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

// Versions implements controllers.RootRotator.
func (r rootRotator) Versions(ctx context.Context) (seal.LocalRoot, error) {
	if err := r.supported(); err != nil {
		return seal.LocalRoot{}, err
	}
	return seal.ReadLocalRoot(ctx, r.op.Manager.GetAPIReader(), r.op.opts.Namespace)
}

// Reseal implements controllers.RootRotator: the root check Secret first,
// then up to limit sealed Secrets; the root check counts as one of them.
func (r rootRotator) Reseal(ctx context.Context, limit int) (keystore.ResealProgress, error) {
	op := r.op
	if err := r.supported(); err != nil {
		return keystore.ResealProgress{}, err
	}
	// A replica that became leader since the rotation may hold the root
	// as it was before: load it again first.
	if err := op.RootOfTrust.Check(ctx); err != nil {
		return keystore.ResealProgress{}, err
	}
	if _, err := seal.ResealCheck(ctx, op.Manager.GetClient(), op.Manager.GetAPIReader(), op.opts.Namespace, op.Sealer); err != nil {
		return keystore.ResealProgress{}, err
	}
	return op.Store.ResealBatch(ctx, limit)
}

// Retire implements controllers.RootRotator: it reloads the root, counts
// again (uncached) what is sealed under an old version, and retires them
// only when that is nothing.
func (r rootRotator) Retire(ctx context.Context) ([]uint32, error) {
	op := r.op
	if err := r.supported(); err != nil {
		return nil, err
	}
	if err := op.RootOfTrust.Check(ctx); err != nil {
		return nil, err
	}
	state, err := seal.ReadLocalRoot(ctx, op.Manager.GetAPIReader(), op.opts.Namespace)
	if err != nil {
		return nil, err
	}
	p, err := op.Store.ResealBatch(ctx, 0)
	if err != nil {
		return nil, err
	}
	check, err := seal.CheckSealedUnderCurrent(ctx, op.Manager.GetAPIReader(), op.opts.Namespace, op.Sealer)
	if err != nil {
		return nil, err
	}
	if p.Pending > 0 || !check {
		return nil, fmt.Errorf("not retiring old root key versions: %d sealed Secrets (root check current: %t) are not sealed under version %d", p.Pending, check, state.Current)
	}
	retired, err := seal.RetireLocal(ctx, op.Manager.GetClient(), op.Manager.GetAPIReader(), op.opts.Namespace, state.Current)
	if err != nil {
		return nil, err
	}
	return retired, op.RootOfTrust.Check(ctx)
}
