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
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/keyspec"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/kmscrypto"
)

// defaultDeletionWindow is spec.deletionWindow's default, and
// maxDeletionWindow its largest value: no tombstone a restore writes is
// kept longer.
const (
	defaultDeletionWindow = 720 * time.Hour
	minDeletionWindow     = 168 * time.Hour
	maxDeletionWindow     = 720 * time.Hour
)

// closedPolicyRecord is the policy record of live material that kept none:
// a restore of it is refused to all but a cluster admin (RBAC verb
// cancelkeydeletion), as for a policy too large to keep.
var closedPolicyRecord = `{"tooLarge":true}`

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

// Restore recreates c in this cluster at now; digest identifies c (the
// SHA-256 of its encoding) so that running the same restore again finishes
// it. See the package comment.
func (r *Restorer) Restore(ctx context.Context, c *Contents, digest string, now time.Time) (Summary, error) {
	if len(digest) != 64 {
		return Summary{}, fmt.Errorf("%w: no digest of the contents", ErrInvalid)
	}
	// One restore at a time: plan reads the cluster, and what it read must
	// still hold when the writes come (two restores racing could each see
	// a keyID free and write versions of it).
	unlock, err := r.lock(ctx, digest, now)
	if err != nil {
		return Summary{}, err
	}
	defer unlock()
	plan, err := r.plan(ctx, c, digest, now)
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{Skipped: plan.skipped}
	for _, m := range plan.material {
		created, err := r.Store.CreateTombstone(ctx, m.version, m.material, false)
		if err != nil {
			return sum, fmt.Errorf("restore: %w", err)
		}
		if !created {
			// Made since plan read it (the lock keeps restores apart, so
			// by the Key controller, or by hand): it must be this
			// restore's own, with this material.
			held, err := r.Store.LoadVersion(ctx, m.version.KeyID, m.version.Version)
			if err != nil {
				return sum, fmt.Errorf("restore: %w", err)
			}
			if held == nil || held.RestoredFrom != digest {
				return sum, fmt.Errorf("%w: key %s version %d was made here while the restore ran", ErrConflict, m.version.KeyID, m.version.Version)
			}
			if err := r.sameMaterial(ctx, m.version, m.material); err != nil {
				return sum, fmt.Errorf("%w: %v", ErrConflict, err)
			}
		}
		sum.Versions++
		if m.tombstone {
			sum.Tombstones++
		}
	}
	for _, k := range plan.keys {
		err := r.Client.Create(ctx, k)
		if apierrors.IsAlreadyExists(err) {
			// Made since plan looked: only this very Key will do.
			held := &kmsv1alpha1.Key{}
			if err := r.Reader.Get(ctx, client.ObjectKeyFromObject(k), held); err != nil {
				return sum, fmt.Errorf("restore: read Key %s/%s: %w", k.Namespace, k.Name, err)
			}
			if k.Spec.RestoreFrom == "" || held.Spec.RestoreFrom != k.Spec.RestoreFrom {
				return sum, fmt.Errorf("%w: Key %s/%s was created here while the restore ran, and is not key %s; its versions wait as tombstones: delete that Key and restore again",
					ErrConflict, k.Namespace, k.Name, orNew(k.Spec.RestoreFrom))
			}
			continue
		}
		if err != nil {
			return sum, fmt.Errorf("restore: create Key %s/%s: %w", k.Namespace, k.Name, err)
		}
	}
	sum.Keys = len(plan.keys) + plan.keysDone
	sum.Policies = plan.policies
	granted, skipped := r.restoreGrants(ctx, c, plan)
	sum.Grants, sum.Skipped = granted, append(sum.Skipped, skipped...)
	return sum, nil
}

// restorePlan is what Restore writes, decided before the first write.
type restorePlan struct {
	material []plannedVersion
	keys     []*kmsv1alpha1.Key
	// keysDone counts Keys already here (an earlier run made them, or the
	// cluster holds them as the backup does).
	keysDone int
	// policies counts the keys that come back under a KeyPolicy.
	policies int
	// grantable are the keyIDs whose grants are restored.
	grantable map[string]bool
	skipped   []string
}

type plannedVersion struct {
	version   keystore.Version
	material  []byte
	tombstone bool
}

// keyOf is what the contents hold of one keyID.
type keyOf struct {
	record   *KeyRecord
	material []*Material
}

// plan checks c whole, against itself and against this cluster, and
// decides what to write; every problem found is reported at once. It ends
// with a dry run of every Secret and Key it would create, so that what the
// API server would refuse is refused before anything is written.
func (r *Restorer) plan(ctx context.Context, c *Contents, digest string, now time.Time) (*restorePlan, error) {
	if c.Format != FormatV1 {
		return nil, fmt.Errorf("%w: format is %q, this manager reads %q", ErrInvalid, c.Format, FormatV1)
	}
	var invalid []string
	bad := func(format string, args ...any) { invalid = append(invalid, fmt.Sprintf(format, args...)) }
	byKeyID := map[string]*keyOf{}
	keyIDOf := func(id string) *keyOf {
		if byKeyID[id] == nil {
			byKeyID[id] = &keyOf{}
		}
		return byKeyID[id]
	}
	names := map[string]bool{}
	namespaces := map[string]bool{}
	var fresh []*KeyRecord // keys recreated as new keys
	var skipped []string
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
		if w := k.Spec.DeletionWindow; w != nil && (w.Duration < minDeletionWindow || w.Duration > maxDeletionWindow) {
			bad("%s: deletionWindow %s is outside %s..%s", what, w.Duration, minDeletionWindow, maxDeletionWindow)
		}
		names[k.Namespace+"/"+k.Name] = true
		namespaces[k.Namespace] = true
		if k.KeyID == "" {
			if access.ParseDeletedPolicy(k.Policy).TooLarge {
				skipped = append(skipped, fmt.Sprintf("Key %s/%s (a key without material): its policy was too large to keep in the backup; recreate it and its policy by hand", k.Namespace, k.Name))
				continue
			}
			fresh = append(fresh, k)
			continue
		}
		checkKeyID(bad, what, k.KeyID)
		if keyIDOf(k.KeyID).record != nil {
			bad("%s: keyID %s belongs to another key of the backup too", what, k.KeyID)
		}
		keyIDOf(k.KeyID).record = k
	}
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
		m.PublicKey = public
		k := keyIDOf(m.KeyID)
		if len(k.material) > 0 {
			if f := k.material[0]; f.KeyNamespace != m.KeyNamespace || f.KeyName != m.KeyName || f.KeySpec != m.KeySpec {
				bad("%s: labelled %s/%s (%s), but version %d of that key is %s/%s (%s)", what, m.KeyNamespace, m.KeyName, m.KeySpec,
					f.Version, f.KeyNamespace, f.KeyName, f.KeySpec)
			}
		}
		k.material = append(k.material, m)
		namespaces[m.KeyNamespace] = true
	}
	for id, k := range byKeyID {
		if k.record == nil || len(k.material) == 0 {
			continue
		}
		if m := k.material[0]; k.record.Namespace != m.KeyNamespace || k.record.Name != m.KeyName || string(k.record.Spec.KeySpec) != m.KeySpec {
			bad("key %s: its versions are labelled %s/%s (%s), but its Key is %s/%s (%s)", id, m.KeyNamespace, m.KeyName, m.KeySpec,
				k.record.Namespace, k.record.Name, k.record.Spec.KeySpec)
		}
	}
	for i, g := range c.Grants {
		what := fmt.Sprintf("grants[%d] (%s/%s)", i, g.Namespace, g.Name)
		checkName(bad, what+": namespace", g.Namespace)
		checkName(bad, what+": name", g.Name)
		if k := byKeyID[g.KeyID]; k == nil || k.record == nil || k.record.Namespace != g.Namespace {
			bad("%s: bound to keyID %q, which is no Key of the backup in namespace %s", what, g.KeyID, g.Namespace)
		}
	}
	if len(invalid) > 0 {
		return nil, fmt.Errorf("%w, nothing was restored: %s", ErrInvalid, summarize(invalid))
	}

	var conflicts []string
	conflict := func(format string, args ...any) { conflicts = append(conflicts, fmt.Sprintf(format, args...)) }
	for _, ns := range slices.Sorted(maps.Keys(namespaces)) {
		n := &corev1.Namespace{}
		err := r.Reader.Get(ctx, client.ObjectKey{Name: ns}, n)
		switch {
		case apierrors.IsNotFound(err):
			conflict("namespace %s does not exist: create it, then restore again", ns)
		case err != nil:
			return nil, fmt.Errorf("restore: read namespace %s: %w", ns, err)
		case !n.DeletionTimestamp.IsZero():
			conflict("namespace %s is being deleted", ns)
		}
	}
	existingKeys := &kmsv1alpha1.KeyList{}
	if err := r.Reader.List(ctx, existingKeys); err != nil {
		return nil, fmt.Errorf("restore: list Keys: %w", err)
	}
	keysByName := map[string]*kmsv1alpha1.Key{}
	claims := map[string][]string{} // keyID -> Keys that carry or restore it
	for i := range existingKeys.Items {
		k := &existingKeys.Items[i]
		keysByName[k.Namespace+"/"+k.Name] = k
		ids := []string{k.Status.KeyID, k.Spec.RestoreFrom}
		if k.Spec.RestoreFrom == "" {
			// A Key not reconciled yet will take its UID as its keyID.
			ids = append(ids, string(k.UID))
		}
		for _, id := range ids {
			if id != "" && !slices.Contains(claims[id], k.Namespace+"/"+k.Name) {
				claims[id] = append(claims[id], k.Namespace+"/"+k.Name)
			}
		}
	}

	plan := &restorePlan{grantable: map[string]bool{}, skipped: skipped}
	for _, id := range slices.Sorted(maps.Keys(byKeyID)) {
		k := byKeyID[id]
		rec := k.record
		closed := false
		if rec != nil && access.ParseDeletedPolicy(rec.Policy).TooLarge {
			// Its versions come back as tombstones only a cluster admin
			// may restore (under the default policy), not the Key.
			plan.skipped = append(plan.skipped, fmt.Sprintf("key %s (%s/%s): its policy was too large to keep in the backup; its versions are kept as tombstones that only a cluster admin may restore (spec.restoreFrom; RBAC verb cancelkeydeletion), then give it its policy",
				id, rec.Namespace, rec.Name))
			rec, closed = nil, true
		}
		if rec != nil && len(k.material) == 0 {
			// A key without material (an import never made): it comes
			// back as a new key under its policy.
			fresh = append(fresh, rec)
			continue
		}
		existing, err := r.Store.ByKeyID(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		ours := len(existing) > 0 && !slices.ContainsFunc(existing, func(v keystore.Version) bool { return v.RestoredFrom != digest })
		var key *kmsv1alpha1.Key
		if rec != nil {
			key = keysByName[rec.Namespace+"/"+rec.Name]
		}
		// Another Key carrying or restoring the keyID stops a restore that
		// would write anything for it; a deleted key of the backup that
		// was brought back here (its versions all here, as the backup has
		// them) is left as it is, below.
		others := slices.DeleteFunc(slices.Clone(claims[id]), func(n string) bool { return rec != nil && n == rec.Namespace+"/"+rec.Name })
		if len(others) > 0 && rec != nil {
			conflict("key %s is claimed here by Key %s already", id, strings.Join(others, ", "))
			continue
		}
		if len(existing) > 0 && !ours {
			// The key is in this cluster already, made here or by another
			// restore. A restore adds no version to it, and does not bring
			// it back if it was deleted here: only what is here already,
			// as the backup has it, passes.
			if rec != nil && (key == nil || key.Status.KeyID != id) {
				where := existing[0].KeyNamespace + "/" + existing[0].KeyName
				if existing[0].Tombstone {
					conflict("key %s (%s) was deleted in this cluster: a restore does not bring it back; create a Key with spec.restoreFrom: %s if you mean to", id, where, id)
				} else {
					conflict("key %s is in this cluster already, as %s", id, where)
				}
				continue
			}
			for _, m := range k.material {
				if !slices.ContainsFunc(existing, func(v keystore.Version) bool { return v.Version == m.Version }) {
					conflict("key %s: version %d is in the backup but not in this cluster, which holds the key already: a restore never adds a version to a key that exists", id, m.Version)
				} else if err := r.sameMaterial(ctx, versionOf(m), m.Material); err != nil {
					conflict("%v", err)
				}
			}
			if rec != nil {
				// Held here already: its grants are as this cluster has
				// them (one revoked since the backup stays revoked).
				plan.keysDone++
				plan.skipped = append(plan.skipped, fmt.Sprintf("Key %s/%s (key %s) is here already, as the backup has it: left as it is, grants included", rec.Namespace, rec.Name, id))
			}
			continue
		}
		planned := len(plan.material)
		for _, m := range k.material {
			v := versionOf(m)
			v.RestoredFrom = digest
			switch {
			case rec != nil:
				// Held as a tombstone that carries the key's policy until
				// the restored Key takes it back.
				v.DestroyAfter = now.Add(min(max(durationOr(rec.Spec.DeletionWindow, defaultDeletionWindow), minDeletionWindow), maxDeletionWindow))
				v.DeletedPolicy = rec.Policy
			case m.Tombstone:
				v.DestroyAfter = *m.DestroyAfter
				if latest := now.Add(maxDeletionWindow); v.DestroyAfter.After(latest) {
					v.DestroyAfter = latest
				}
				if !now.Before(v.DestroyAfter) {
					plan.skipped = append(plan.skipped, fmt.Sprintf("key %s version %d: a tombstone whose deletion window ended at %s",
						id, m.Version, v.DestroyAfter.Format(time.RFC3339)))
					continue
				}
			default:
				// Live material of no Key (its Key was being deleted when
				// the backup was taken, or its policy was too large): kept
				// as a tombstone for a whole window, under the policy it
				// recorded, closed without one.
				v.DestroyAfter = now.Add(defaultDeletionWindow)
				if v.DeletedPolicy == "" || closed {
					v.DeletedPolicy = closedPolicyRecord
				}
			}
			if slices.ContainsFunc(existing, func(e keystore.Version) bool { return e.Version == m.Version }) {
				if err := r.sameMaterial(ctx, v, m.Material); err != nil {
					conflict("%v", err)
				}
				continue
			}
			plan.material = append(plan.material, plannedVersion{version: v, material: m.Material, tombstone: rec == nil})
		}
		if rec == nil {
			if len(others) > 0 && len(plan.material) > planned {
				conflict("key %s is claimed here by Key %s already", id, strings.Join(others, ", "))
			}
			continue
		}
		plan.grantable[id] = true
		if access.ParseDeletedPolicy(rec.Policy).Spec != nil {
			plan.policies++
		}
		switch {
		case key == nil:
			plan.keys = append(plan.keys, restoredKey(rec, true))
		case key.Spec.RestoreFrom == id || key.Status.KeyID == id:
			plan.keysDone++ // an earlier run of this restore made it
		default:
			conflict("Key %s/%s already exists here and is not key %s", rec.Namespace, rec.Name, id)
		}
	}
	for _, rec := range fresh {
		if keysByName[rec.Namespace+"/"+rec.Name] != nil {
			// Made by an earlier run, or another key of that name: either
			// way it is not replaced.
			plan.skipped = append(plan.skipped, fmt.Sprintf("Key %s/%s (a key without material) exists here already", rec.Namespace, rec.Name))
			continue
		}
		plan.keys = append(plan.keys, restoredKey(rec, false))
	}
	if len(conflicts) > 0 {
		return nil, fmt.Errorf("%w, nothing was restored: %s", ErrConflict, summarize(conflicts))
	}
	if err := r.dryRun(ctx, plan); err != nil {
		return nil, err
	}
	return plan, nil
}

// dryRun has the API server check every Secret and Key plan would create.
func (r *Restorer) dryRun(ctx context.Context, plan *restorePlan) error {
	var refused []string
	for _, m := range plan.material {
		if _, err := r.Store.CreateTombstone(ctx, m.version, m.material, true); err != nil {
			refused = append(refused, err.Error())
		}
	}
	for _, k := range plan.keys {
		err := r.Client.Create(ctx, k.DeepCopy(), client.DryRunAll)
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("%w, nothing was restored: Key %s/%s was created here meanwhile", ErrConflict, k.Namespace, k.Name)
		}
		if err != nil {
			refused = append(refused, fmt.Sprintf("Key %s/%s: %v", k.Namespace, k.Name, err))
		}
	}
	if len(refused) > 0 {
		return fmt.Errorf("%w, nothing was restored: the API server refuses: %s", ErrInvalid, summarize(refused))
	}
	return nil
}

// versionOf describes a version of the contents.
func versionOf(m *Material) keystore.Version {
	return keystore.Version{
		KeyID: m.KeyID, Version: m.Version, KeyNamespace: m.KeyNamespace, KeyName: m.KeyName, KeySpec: m.KeySpec,
		CreatedAt: m.CreatedAt, RotateRequest: m.RotateRequest, ImportRequest: m.ImportRequest,
		DeletedPolicy: m.DeletedPolicy, PublicKey: m.PublicKey,
	}
}

// restoreLock names the Secret that keeps restores apart, and lockTTL the
// age after which one left by a crashed manager is taken over.
const (
	restoreLock = "kubekms-restore-in-progress"
	lockTTL     = 15 * time.Minute
)

// lock takes the restore lock: a Secret of the operator's namespace,
// created, never updated, deleted when the restore ends. One older than
// lockTTL (its manager gone mid-restore) is taken over.
func (r *Restorer) lock(ctx context.Context, digest string, now time.Time) (func(), error) {
	secret := func() *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.Store.Namespace, Name: restoreLock,
			Labels:      map[string]string{kmsv1alpha1.ManagedByLabel: kmsv1alpha1.ManagedByValue},
			Annotations: map[string]string{keystore.AnnotationRestoredFrom: digest}}}
	}
	for range 2 {
		s := secret()
		err := r.Client.Create(ctx, s)
		if err == nil {
			return func() {
				uid := s.UID
				_ = r.Client.Delete(context.WithoutCancel(ctx), s, client.Preconditions{UID: &uid})
			}, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("restore: take the restore lock: %w", err)
		}
		held := &corev1.Secret{}
		if err := r.Reader.Get(ctx, client.ObjectKeyFromObject(s), held); err != nil {
			return nil, fmt.Errorf("restore: read the restore lock: %w", err)
		}
		if now.Sub(held.CreationTimestamp.Time) < lockTTL {
			return nil, fmt.Errorf("%w: another restore is running (since %s); try again when it has finished",
				ErrConflict, held.CreationTimestamp.UTC().Format(time.RFC3339))
		}
		uid := held.UID
		if err := r.Client.Delete(ctx, held, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
			return nil, fmt.Errorf("restore: take over a stale restore lock: %w", err)
		}
	}
	return nil, fmt.Errorf("%w: another restore is running; try again when it has finished", ErrConflict)
}

// orNew names a keyID, or a key that had none.
func orNew(keyID string) string {
	if keyID == "" {
		return "(a new key)"
	}
	return keyID
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
// versions are restored (it comes back under its policy record, so not
// with initialPolicy), else as a new key whose initialPolicy is the
// policy it had.
func restoredKey(k *KeyRecord, restore bool) *kmsv1alpha1.Key {
	key := &kmsv1alpha1.Key{
		ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name, Labels: maps.Clone(k.Labels), Annotations: maps.Clone(k.Annotations)},
		Spec:       *k.Spec.DeepCopy(),
	}
	key.Spec.Import, key.Spec.RestoreFrom = nil, ""
	if restore {
		key.Spec.RestoreFrom, key.Spec.InitialPolicy = k.KeyID, nil
	} else if rec := access.ParseDeletedPolicy(k.Policy); rec.Spec != nil {
		key.Spec.InitialPolicy = &kmsv1alpha1.KeyInitialPolicy{Statements: rec.Spec.Statements, BypassPolicyLockoutSafetyCheck: rec.Spec.BypassPolicyLockoutSafetyCheck}
	}
	return key
}

// restoreGrants recreates the grants of the keys restored, once the Key
// controller has taken each key back. A grant that cannot be made (its key
// is not back within KeyWait, a grant of that name exists, the API server
// refuses it) is left out and said in skipped: the keys are restored by
// then, and running the restore again makes what is missing.
func (r *Restorer) restoreGrants(ctx context.Context, c *Contents, plan *restorePlan) (int, []string) {
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
		if !plan.grantable[g.KeyID] {
			continue
		}
		k := byKeyID[g.KeyID]
		key, err := r.waitRestored(ctx, k, deadline)
		if err != nil || key == nil {
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
			if err := r.Reader.Get(ctx, client.ObjectKeyFromObject(grant), existing); err == nil &&
				existing.Annotations[kmsv1alpha1.RestoredGrantAnnotation] == g.KeyID && equality.Semantic.DeepEqual(existing.Spec, grant.Spec) {
				granted++
			} else {
				skipped = append(skipped, fmt.Sprintf("KeyGrant %s/%s: a KeyGrant of that name exists here already", g.Namespace, g.Name))
			}
		default:
			skipped = append(skipped, fmt.Sprintf("KeyGrant %s/%s: %v", g.Namespace, g.Name, err))
		}
	}
	return granted, skipped
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

// checkKeyID reports a keyID that is not a UUID in the lowercase form
// kubekms writes (a Key's UID; spec.restoreFrom takes no other).
func checkKeyID(bad func(string, ...any), what, keyID string) {
	if id, err := kmscrypto.ParseKeyID(keyID); err != nil || id.String() != keyID {
		bad("%s: keyID %q is not a lowercase UUID", what, keyID)
	}
}

// summarize joins problems, at most ten of them named.
func summarize(problems []string) string {
	if len(problems) <= 10 {
		return strings.Join(problems, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(problems[:10], "; "), len(problems)-10)
}

// durationOr is d, or def when unset.
func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil || d.Duration == 0 {
		return def
	}
	return d.Duration
}
