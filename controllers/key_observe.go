package controllers

import (
	"context"
	"fmt"
	"slices"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keystore"
)

// observation is what the key store held for a Key when its reconcile
// began: facts only, no decisions. observe fills it; no phase changes it.
type observation struct {
	// active are the live versions labelled for this Key, oldest first.
	active []keystore.Version
	// liveKeyID is the key ID the active versions carry ("" without any).
	liveKeyID string
	// restoreSource are the versions, live or tombstoned, of the key ID
	// spec.restoreFrom names, with the policy record each tombstone keeps
	// (nil without spec.restoreFrom).
	restoreSource []keystore.Version
}

// observe reads the Key's material and, for a Key with spec.restoreFrom,
// the tombstones it may restore. It writes nothing and emits nothing. Reads
// go to the API server (the store's Reader is not a cache), so no phase
// decides to make material on stale data.
func (r *KeyReconciler) observe(ctx context.Context, key *kmsv1alpha1.Key) (observation, error) {
	active, err := r.Store.ActiveByKeyName(ctx, key.Namespace, key.Name)
	if err != nil {
		return observation{}, err
	}
	seen := observation{active: active}
	if len(active) > 0 {
		seen.liveKeyID = active[0].KeyID
		if i := slices.IndexFunc(active, func(v keystore.Version) bool { return v.KeyID != seen.liveKeyID }); i >= 0 {
			return observation{}, fmt.Errorf("material of two key IDs (%s, %s) is labelled for this Key", seen.liveKeyID, active[i].KeyID)
		}
	}
	if key.Spec.RestoreFrom != "" {
		if seen.restoreSource, err = r.Store.ByKeyID(ctx, key.Spec.RestoreFrom); err != nil {
			return observation{}, err
		}
	}
	return seen, nil
}

// keyIDFor is the key's identity. It is never taken from status: it is the
// ID of the live material labelled for this Key, else the ID restoreFrom
// names, else the Key's UID (so two managers creating the same Key agree).
func keyIDFor(key *kmsv1alpha1.Key, seen observation) string {
	switch {
	case seen.liveKeyID != "":
		return seen.liveKeyID
	case key.Spec.RestoreFrom != "":
		return key.Spec.RestoreFrom
	default:
		return string(key.UID)
	}
}
