package recovery

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/keystore"
)

// Exporter reads what a backup holds.
type Exporter struct {
	// Reader lists Keys, KeyPolicies and KeyGrants; it should not be a
	// cache, so that a backup taken right after a change holds it.
	Reader client.Reader
	Store  *keystore.Store
	// Provider names the root of trust, for Source.
	Provider string
}

// Export reads every Key (but those being deleted: their material is a
// tombstone by then, or about to be), the policy governing each, the
// grants bound to them and every material version, unsealed.
func (e *Exporter) Export(ctx context.Context, now time.Time) (*Contents, error) {
	keys := &kmsv1alpha1.KeyList{}
	policies := &kmsv1alpha1.KeyPolicyList{}
	grants := &kmsv1alpha1.KeyGrantList{}
	for _, l := range []client.ObjectList{keys, policies, grants} {
		if err := e.Reader.List(ctx, l); err != nil {
			return nil, fmt.Errorf("backup: list %T: %w", l, err)
		}
	}
	c := &Contents{Format: FormatV1, CreatedAt: now.UTC(), Source: Source{Namespace: e.Store.Namespace, RootOfTrust: e.Provider}}
	keyIDs := map[string]string{} // Key UID -> keyID
	for i := range keys.Items {
		k := &keys.Items[i]
		if !k.DeletionTimestamp.IsZero() {
			continue
		}
		governing := access.Governing(policies.Items, k.Namespace, k.UID)
		if governing == nil {
			governing = access.InitialKeyPolicy(k)
		}
		rec := KeyRecord{
			Namespace: k.Namespace, Name: k.Name,
			Labels: maps.Clone(k.Labels), Annotations: maps.Clone(k.Annotations),
			Spec: *k.Spec.DeepCopy(), KeyID: k.Status.KeyID, Policy: access.RecordPolicy(governing),
		}
		// What only meant something in this cluster: a restore source,
		// an import request (the material it named is in the backup).
		rec.Spec.RestoreFrom, rec.Spec.Import = "", nil
		delete(rec.Annotations, kmsv1alpha1.RotateAnnotation)
		c.Keys = append(c.Keys, rec)
		if k.Status.KeyID != "" {
			keyIDs[string(k.UID)] = k.Status.KeyID
		}
	}
	for i := range grants.Items {
		g := &grants.Items[i]
		uid, ok := access.BoundKey(g.OwnerReferences, g.Spec.KeyRef.Name)
		if !ok || !g.DeletionTimestamp.IsZero() || keyIDs[string(uid)] == "" {
			continue
		}
		c.Grants = append(c.Grants, GrantRecord{
			Namespace: g.Namespace, Name: g.Name,
			Labels: maps.Clone(g.Labels), Annotations: maps.Clone(g.Annotations),
			Spec: *g.Spec.DeepCopy(), KeyID: keyIDs[string(uid)],
		})
	}
	err := e.Store.EachWithMaterial(ctx, func(v keystore.Version, material []byte) error {
		m := Material{
			KeyID: v.KeyID, Version: v.Version, KeyNamespace: v.KeyNamespace, KeyName: v.KeyName, KeySpec: v.KeySpec,
			CreatedAt: v.CreatedAt.UTC(), RotateRequest: v.RotateRequest, ImportRequest: v.ImportRequest,
			Tombstone: v.Tombstone, DeletedPolicy: v.DeletedPolicy, PublicKey: v.PublicKey, Material: material,
		}
		if v.Tombstone {
			m.DestroyAfter = new(v.DestroyAfter.UTC())
		}
		// A live version carries the record of its key's policy too: the
		// key's own (KeyRecord.Policy) wins on restore, this one counts
		// for material whose Key was going away.
		c.Material = append(c.Material, m)
		return nil
	})
	if err != nil {
		c.Wipe()
		return nil, fmt.Errorf("backup: %w", err)
	}
	slices.SortFunc(c.Material, func(a, b Material) int {
		if a.KeyID != b.KeyID {
			if a.KeyID < b.KeyID {
				return -1
			}
			return 1
		}
		return int(a.Version - b.Version)
	})
	return c, nil
}

// Wipe overwrites the material Contents holds, once it is encrypted or
// restored. Go may have copied it meanwhile; this keeps at least these
// copies from lingering.
func (c *Contents) Wipe() {
	for i := range c.Material {
		clear(c.Material[i].Material)
	}
}
