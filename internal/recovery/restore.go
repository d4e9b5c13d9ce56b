package recovery

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/keyspec"
	"github.com/kubekms/kubekms/internal/keystore"
)

// defaultDeletionWindow is spec.deletionWindow's default.
const defaultDeletionWindow = 720 * time.Hour

// ErrInvalid wraps every reason Restore refuses Contents that are wrong in
// themselves; ErrConflict every reason it refuses Contents that collide
// with what this cluster holds. Either way it wrote nothing.
var (
	ErrInvalid  = errors.New("invalid backup contents")
	ErrConflict = errors.New("backup contents conflict with this cluster")
)

// A restore creates Keys and KeyGrants (the admin webhook lets only the
// manager's own restore through without a policy check) and reads
// namespaces, to refuse a restore into ones that do not exist.
// +kubebuilder:rbac:groups=kms.kubekms.io,resources=keys;keygrants,verbs=create
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get

// Restorer recreates what a backup holds.
type Restorer struct {
	// Client writes Keys and KeyGrants; Reader reads and must not be a
	// cache: every check before the first write is on fresh data.
	Client client.Client
	Reader client.Reader
	Store  *keystore.Store
	// KeyWait bounds how long Restore waits for the Key controller to take
	// the restored keys back before it recreates their grants (default 2m).
	KeyWait time.Duration
}

// Summary is what a restore did.
type Summary struct {
	Keys, Versions, Tombstones, Policies, Grants int
	// Skipped says what was not restored, and why.
	Skipped []string
}

// Restore recreates c in this cluster at now. See the package comment.
func (r *Restorer) Restore(ctx context.Context, c *Contents, now time.Time) (Summary, error) {
	plan, err := r.plan(ctx, c, now)
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{Skipped: plan.skipped}
	for _, m := range plan.material {
		created, err := r.Store.CreateTombstone(ctx, m.version, m.material)
		if err != nil {
			return sum, fmt.Errorf("restore: %w", err)
		}
		if !created {
			// Made by a concurrent restore since plan read it: check it is
			// this material, as plan does.
			if err := r.sameMaterial(ctx, m.version, m.material); err != nil {
				return sum, err
			}
		}
		sum.Versions++
		if m.tombstone {
			sum.Tombstones++
		}
	}
	for _, k := range plan.keys {
		if err := r.Client.Create(ctx, k); err != nil && !apierrors.IsAlreadyExists(err) {
			return sum, fmt.Errorf("restore: create Key %s/%s: %w", k.Namespace, k.Name, err)
		}
	}
	sum.Keys = len(plan.keys) + plan.keysDone
	for _, k := range c.Keys {
		if k.KeyID != "" && plan.restores[k.KeyID] && access.ParseDeletedPolicy(k.Policy).Spec != nil {
			sum.Policies++
		}
	}
	granted, skipped, err := r.restoreGrants(ctx, c, plan)
	sum.Grants, sum.Skipped = granted, append(sum.Skipped, skipped...)
	return sum, err
}

// restorePlan is what Restore writes, decided before the first write.
type restorePlan struct {
	material []plannedVersion
	keys     []*kmsv1alpha1.Key
	// keysDone counts Keys an earlier run already recreated.
	keysDone int
	// restores are the keyIDs whose Key comes back with spec.restoreFrom.
	restores map[string]bool
	skipped  []string
}

type plannedVersion struct {
	version   keystore.Version
	material  []byte
	tombstone bool
}

// plan checks c whole, against itself and against this cluster, and
// decides what to write. Every problem found is reported at once.
func (r *Restorer) plan(ctx context.Context, c *Contents, now time.Time) (*restorePlan, error) {
	var invalid, conflicts []string
	bad := func(format string, args ...any) { invalid = append(invalid, fmt.Sprintf(format, args...)) }
	if c.Format != FormatV1 {
		return nil, fmt.Errorf("%w: format is %q, this manager reads %q", ErrInvalid, c.Format, FormatV1)
	}
	byKeyID := map[string]*KeyRecord{}
	names := map[string]bool{}
	namespaces := map[string]bool{}
	for i := range c.Keys {
		k := &c.Keys[i]
		what := fmt.Sprintf("keys[%d] (%s/%s)", i, k.Namespace, k.Name)
		checkName(bad, what+": namespace", k.Namespace)
		checkName(bad, what+": name", k.Name)
		if _, ok := keyspec.Lookup(string(k.Spec.KeySpec)); !ok {
			bad("%s: keySpec %q is not a key spec", what, k.Spec.KeySpec)
		}
		if names[k.Namespace+"/"+k.Name] {
			bad("%s: a second Key of that name", what)
		}
		names[k.Namespace+"/"+k.Name] = true
		namespaces[k.Namespace] = true
		if k.KeyID == "" {
			continue
		}
		checkKeyID(bad, what, k.KeyID)
		if byKeyID[k.KeyID] != nil {
			bad("%s: keyID %s belongs to another key of the backup too", what, k.KeyID)
		}
		byKeyID[k.KeyID] = k
		if access.ParseDeletedPolicy(k.Policy).TooLarge {
			bad("%s: its policy record does not parse", what)
		}
	}
	plan := &restorePlan{restores: map[string]bool{}}
	seen := map[string]bool{}
	for i := range c.Material {
		m := &c.Material[i]
		what := fmt.Sprintf("material[%d] (key %s version %d)", i, m.KeyID, m.Version)
		checkKeyID(bad, what, m.KeyID)
		checkName(bad, what+": keyNamespace", m.KeyNamespace)
		checkName(bad, what+": keyName", m.KeyName)
		id := fmt.Sprintf("%s/%d", m.KeyID, m.Version)
		switch {
		case m.Version < 1:
			bad("%s: version must be at least 1", what)
		case seen[id]:
			bad("%s: a second copy of that version", what)
		case len(m.Material) == 0:
			bad("%s: no material", what)
		case m.Tombstone && m.DestroyAfter == nil:
			bad("%s: a tombstone without destroyAfter", what)
		}
		seen[id] = true
		spec, ok := keyspec.Lookup(m.KeySpec)
		if !ok {
			bad("%s: keySpec %q is not a key spec", what, m.KeySpec)
			continue
		}
		if err := spec.CheckImport(m.Material); err != nil {
			bad("%s: %v", what, err)
			continue
		}
		// An asymmetric version's public key is derived from its material,
		// never taken from the record.
		public, err := spec.PublicKey(m.Material)
		if err != nil || (len(m.PublicKey) > 0 && subtle.ConstantTimeCompare(public, m.PublicKey) != 1) {
			bad("%s: its public key is not its material's", what)
			continue
		}
		v := keystore.Version{
			KeyID: m.KeyID, Version: m.Version, KeyNamespace: m.KeyNamespace, KeyName: m.KeyName, KeySpec: m.KeySpec,
			CreatedAt: m.CreatedAt, RotateRequest: m.RotateRequest, ImportRequest: m.ImportRequest,
			DeletedPolicy: m.DeletedPolicy, PublicKey: public,
		}
		key := byKeyID[m.KeyID]
		switch {
		case m.Tombstone:
			v.DestroyAfter = *m.DestroyAfter
			if !now.Before(v.DestroyAfter) {
				plan.skipped = append(plan.skipped, fmt.Sprintf("key %s version %d: a tombstone whose deletion window ended at %s",
					m.KeyID, m.Version, v.DestroyAfter.Format(time.RFC3339)))
				continue
			}
		case key != nil:
			if key.Namespace != m.KeyNamespace || key.Name != m.KeyName || string(key.Spec.KeySpec) != m.KeySpec {
				bad("%s: labelled for %s/%s (%s), but keyID %s is Key %s/%s (%s)", what, m.KeyNamespace, m.KeyName, m.KeySpec,
					m.KeyID, key.Namespace, key.Name, key.Spec.KeySpec)
				continue
			}
			// Held as a tombstone that carries the key's policy until the
			// restored Key takes it back.
			v.DestroyAfter = now.Add(durationOr(key.Spec.DeletionWindow, defaultDeletionWindow))
			v.DeletedPolicy = key.Policy
			plan.restores[m.KeyID] = true
		default:
			// Live material of no Key (its Key was going away when the
			// backup was taken): kept as a tombstone for a whole window.
			v.DestroyAfter = now.Add(defaultDeletionWindow)
		}
		namespaces[m.KeyNamespace] = true
		plan.material = append(plan.material, plannedVersion{version: v, material: m.Material, tombstone: key == nil})
	}
	for i, g := range c.Grants {
		what := fmt.Sprintf("grants[%d] (%s/%s)", i, g.Namespace, g.Name)
		checkName(bad, what+": namespace", g.Namespace)
		checkName(bad, what+": name", g.Name)
		if k := byKeyID[g.KeyID]; k == nil || k.Namespace != g.Namespace {
			bad("%s: bound to keyID %q, which is no Key of the backup in namespace %s", what, g.KeyID, g.Namespace)
		}
	}
	if len(invalid) > 0 {
		return nil, fmt.Errorf("%w, nothing was restored: %s", ErrInvalid, summarize(invalid))
	}

	for _, ns := range slices.Sorted(maps.Keys(namespaces)) {
		err := r.Reader.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})
		switch {
		case apierrors.IsNotFound(err):
			conflicts = append(conflicts, fmt.Sprintf("namespace %s does not exist: create it, then restore again", ns))
		case err != nil:
			return nil, fmt.Errorf("restore: read namespace %s: %w", ns, err)
		}
	}
	pending := plan.material[:0:0]
	for _, m := range plan.material {
		existing, err := r.Store.LoadVersion(ctx, m.version.KeyID, m.version.Version)
		if err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		if existing == nil {
			pending = append(pending, m)
			continue
		}
		if err := r.sameMaterial(ctx, m.version, m.material); err != nil {
			conflicts = append(conflicts, err.Error())
		}
	}
	plan.material = pending
	for i := range c.Keys {
		k := &c.Keys[i]
		existing := &kmsv1alpha1.Key{}
		err := r.Reader.Get(ctx, client.ObjectKey{Namespace: k.Namespace, Name: k.Name}, existing)
		switch {
		case err == nil && k.KeyID != "" && (existing.Spec.RestoreFrom == k.KeyID || existing.Status.KeyID == k.KeyID):
			plan.keysDone++
			continue
		case err == nil:
			conflicts = append(conflicts, fmt.Sprintf("Key %s/%s already exists here and is not key %s", k.Namespace, k.Name, orNew(k.KeyID)))
			continue
		case !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("restore: read Key %s/%s: %w", k.Namespace, k.Name, err)
		}
		plan.keys = append(plan.keys, restoredKey(k, plan.restores[k.KeyID]))
	}
	if len(conflicts) > 0 {
		return nil, fmt.Errorf("%w, nothing was restored: %s", ErrConflict, summarize(conflicts))
	}
	return plan, nil
}

// sameMaterial says whether the version this cluster holds is m's
// material, compared in constant time; an error says why not.
func (r *Restorer) sameMaterial(ctx context.Context, v keystore.Version, material []byte) error {
	held, err := r.Store.Load(ctx, v.KeyID, v.Version, v.KeySpec)
	if err != nil {
		return fmt.Errorf("key %s version %d already exists here and does not unseal as a %s version: %v", v.KeyID, v.Version, v.KeySpec, err)
	}
	defer clear(held)
	if subtle.ConstantTimeCompare(held, material) != 1 {
		return fmt.Errorf("key %s version %d already exists here with other material", v.KeyID, v.Version)
	}
	return nil
}

// restoredKey is the Key a record becomes: with spec.restoreFrom when its
// versions were restored (it comes back under its policy record, so not
// with initialPolicy), else as a new key.
func restoredKey(k *KeyRecord, restore bool) *kmsv1alpha1.Key {
	key := &kmsv1alpha1.Key{
		ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name, Labels: maps.Clone(k.Labels), Annotations: maps.Clone(k.Annotations)},
		Spec:       *k.Spec.DeepCopy(),
	}
	key.Spec.Import, key.Spec.RestoreFrom = nil, ""
	if restore {
		key.Spec.RestoreFrom, key.Spec.InitialPolicy = k.KeyID, nil
	}
	return key
}

// restoreGrants recreates the grants of the keys restored, once the Key
// controller has taken each key back; a key that is not back within
// KeyWait leaves its grants for the next run, said in skipped.
func (r *Restorer) restoreGrants(ctx context.Context, c *Contents, plan *restorePlan) (int, []string, error) {
	if len(c.Grants) == 0 {
		return 0, nil, nil
	}
	wait := r.KeyWait
	if wait == 0 {
		wait = 2 * time.Minute
	}
	deadline := time.Now().Add(wait)
	byKeyID := map[string]*KeyRecord{}
	for i := range c.Keys {
		byKeyID[c.Keys[i].KeyID] = &c.Keys[i]
	}
	granted := 0
	var skipped []string
	for _, g := range c.Grants {
		k := byKeyID[g.KeyID]
		key, err := r.waitRestored(ctx, k, deadline)
		if err != nil {
			return granted, skipped, err
		}
		if key == nil {
			skipped = append(skipped, fmt.Sprintf("KeyGrant %s/%s: Key %s is not restored yet; run the restore again", g.Namespace, g.Name, k.Name))
			continue
		}
		grant := &kmsv1alpha1.KeyGrant{
			ObjectMeta: metav1.ObjectMeta{Namespace: g.Namespace, Name: g.Name, Labels: maps.Clone(g.Labels), Annotations: maps.Clone(g.Annotations),
				OwnerReferences: []metav1.OwnerReference{access.KeyOwnerReference(key)}},
			Spec: *g.Spec.DeepCopy(),
		}
		if grant.Annotations == nil {
			grant.Annotations = map[string]string{}
		}
		grant.Annotations[kmsv1alpha1.RestoredGrantAnnotation] = g.KeyID
		grant.Spec.KeyRef.Name = key.Name
		switch err := r.Client.Create(ctx, grant); {
		case err == nil:
			granted++
		case apierrors.IsAlreadyExists(err):
			existing := &kmsv1alpha1.KeyGrant{}
			if err := r.Reader.Get(ctx, client.ObjectKeyFromObject(grant), existing); err != nil {
				return granted, skipped, fmt.Errorf("restore: read KeyGrant %s/%s: %w", g.Namespace, g.Name, err)
			}
			if existing.Annotations[kmsv1alpha1.RestoredGrantAnnotation] == g.KeyID {
				granted++
			} else {
				skipped = append(skipped, fmt.Sprintf("KeyGrant %s/%s: a KeyGrant of that name exists here already", g.Namespace, g.Name))
			}
		default:
			return granted, skipped, fmt.Errorf("restore: create KeyGrant %s/%s: %w", g.Namespace, g.Name, err)
		}
	}
	return granted, skipped, nil
}

// waitRestored waits until the Key of record k carries its keyID in
// status, or deadline; nil when it does not by then.
func (r *Restorer) waitRestored(ctx context.Context, k *KeyRecord, deadline time.Time) (*kmsv1alpha1.Key, error) {
	for {
		key := &kmsv1alpha1.Key{}
		err := r.Reader.Get(ctx, client.ObjectKey{Namespace: k.Namespace, Name: k.Name}, key)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("restore: read Key %s/%s: %w", k.Namespace, k.Name, err)
		}
		if err == nil && key.Status.KeyID == k.KeyID {
			return key, nil
		}
		if time.Now().After(deadline) {
			return nil, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// checkName reports a value that is not a DNS-1123 subdomain (the names of
// namespaces, Keys and KeyGrants).
func checkName(bad func(string, ...any), what, value string) {
	if errs := validation.IsDNS1123Subdomain(value); len(errs) > 0 {
		bad("%s %q: %s", what, value, strings.Join(errs, "; "))
	}
}

// checkKeyID reports a keyID that cannot name a material Secret and label
// it (a key's UID always can).
func checkKeyID(bad func(string, ...any), what, keyID string) {
	if errs := validation.IsDNS1123Label(keyID); len(errs) > 0 {
		bad("%s: keyID %q: %s", what, keyID, strings.Join(errs, "; "))
	}
}

// summarize joins problems, at most ten of them named.
func summarize(problems []string) string {
	if len(problems) <= 10 {
		return strings.Join(problems, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(problems[:10], "; "), len(problems)-10)
}

// orNew names a keyID, or a key that had none.
func orNew(keyID string) string {
	if keyID == "" {
		return "(a key without material)"
	}
	return keyID
}

// durationOr is d, or def when unset.
func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil || d.Duration == 0 {
		return def
	}
	return d.Duration
}
