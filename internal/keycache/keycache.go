// Package keycache is the data plane's in-memory view of keys (keystore,
// by contrast, is where sealed material is stored): an index of Keys by name
// and by keyID, fed by the manager's informer, and the unsealed version keys,
// held in memory only and loaded on first use. A version not seen yet (just
// rotated on another replica) is read fresh from the API server, not refused;
// one the API server does not have either is remembered as missing for a
// second (MissTTL) or until the Key's current version changes, and one more
// than MaxVersionsAhead past the current version is not read at all, so
// made-up versions in ciphertext headers cannot each cost a read.
package keycache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
	"github.com/kubekms/kubekms/internal/kmscrypto"
	"github.com/kubekms/kubekms/internal/policy"
)

// ErrNotFound means no Key answers to the reference.
var ErrNotFound = errors.New("key not found")

// Key is an immutable snapshot of what the data plane needs of a Key.
type Key struct {
	Namespace, Name string
	UID             types.UID
	KeyID           kmscrypto.KeyID
	KeyIDString     string
	KeySpec         kmsv1alpha1.KeySpecType
	KeyUsage        kmsv1alpha1.KeyUsage
	Origin          kmsv1alpha1.KeyOrigin
	State           kmsv1alpha1.KeyState
	CurrentVersion  uint32
	Description     string
	Created         time.Time
	RotationEnabled bool
	NextRotation    time.Time
	// ValidTo is when imported material expires (spec.import.validTo); zero
	// when it does not.
	ValidTo time.Time
	// InitialPolicy is spec.initialPolicy: the key's policy while no
	// KeyPolicy is bound to it (nil: the default policy). It rides with the
	// snapshot, so a key is never seen without it.
	InitialPolicy *policy.Policy
}

// Loader unseals one version's material.
type Loader func(ctx context.Context, keyID string, version int32, keySpec string) ([]byte, error)

type versionRef struct {
	id      kmscrypto.KeyID
	version uint32
}

// Cache indexes keys and caches their unsealed version keys.
type Cache struct {
	load Loader

	mu     sync.RWMutex
	byName map[types.NamespacedName]*Key
	byID   map[kmscrypto.KeyID]*Key
	// claims lists the Keys whose status names each keyID; byID holds
	// a keyID only while exactly one does.
	claims map[kmscrypto.KeyID]map[types.NamespacedName]*Key

	matMu     sync.RWMutex
	materials map[versionRef][]byte
	loading   map[versionRef]*loadCall
	// parsed holds what callers derived from a version's material (parsed
	// private keys), dropped with the material.
	parsed map[versionRef]any
	// missing remembers, for MissTTL, the versions the loader did not find,
	// so a ciphertext header naming a version that does not exist does not
	// cost a read from the API server on every call. At most maxMisses.
	missing map[versionRef]miss

	// MissTTL is how long a version not found stays not found (default
	// DefaultMissTTL), unless the Key's current version changes first: a
	// version just made on another replica is read again as soon as this
	// replica's informer has seen it, and at the latest after MissTTL.
	MissTTL time.Duration
	// Clock decides when a miss expires; nil is the real clock.
	Clock clock.PassiveClock
}

// ErrVersionNotFound means a key has no such version: one so far past the
// Key's current version that it cannot be a rotation this replica has not
// seen yet (MaxVersionsAhead). A version the API server does not have is
// the loader's NotFound error.
var ErrVersionNotFound = errors.New("no such key version")

// MaxVersionsAhead is how far past the Key's current version, as this
// replica's informer last saw it, a version may be and still be read from
// the API server: a rotation made on another replica shows in a ciphertext
// before the informer here has seen it, but only the next few versions can
// exist. Anything further is not read at all, so made-up versions in
// ciphertext headers cost nothing.
const MaxVersionsAhead = 8

// DefaultMissTTL is how long a version not found is remembered.
const DefaultMissTTL = time.Second

// maxMisses bounds the versions remembered as not found.
const maxMisses = 4096

// miss is a version the loader did not find.
type miss struct {
	until time.Time
	// current is the Key's current version when it was not found.
	current uint32
	err     error
}

type loadCall struct {
	done chan struct{}
	key  []byte
	err  error
}

// New returns an empty key cache that loads material with load.
func New(load Loader) *Cache {
	return &Cache{
		load:      load,
		byName:    map[types.NamespacedName]*Key{},
		byID:      map[kmscrypto.KeyID]*Key{},
		claims:    map[kmscrypto.KeyID]map[types.NamespacedName]*Key{},
		materials: map[versionRef][]byte{},
		loading:   map[versionRef]*loadCall{},
		parsed:    map[versionRef]any{},
	}
}

// Upsert records a Key's current state. Keys without a keyID yet are kept
// by name only.
func (k *Cache) Upsert(obj *kmsv1alpha1.Key) {
	snap := &Key{
		Namespace: obj.Namespace, Name: obj.Name, UID: obj.UID,
		KeyIDString:     obj.Status.KeyID,
		KeySpec:         obj.Spec.KeySpec,
		KeyUsage:        obj.Status.KeyUsage,
		Origin:          obj.Spec.Origin,
		State:           obj.Status.State,
		CurrentVersion:  uint32(max(obj.Status.CurrentVersion, 0)),
		Description:     obj.Spec.Description,
		Created:         obj.CreationTimestamp.Time,
		RotationEnabled: obj.Spec.Rotation.Enabled,
		InitialPolicy:   access.InitialPolicy(obj),
	}
	if obj.Status.NextRotationTime != nil {
		snap.NextRotation = obj.Status.NextRotationTime.Time
	}
	if obj.Spec.Origin == kmsv1alpha1.KeyOriginExternal && obj.Spec.Import != nil && obj.Spec.Import.ValidTo != nil {
		snap.ValidTo = obj.Spec.Import.ValidTo.Time
	}
	id, idErr := kmscrypto.ParseKeyID(obj.Status.KeyID)
	snap.KeyID = id
	name := types.NamespacedName{Namespace: obj.Namespace, Name: obj.Name}

	k.mu.Lock()
	defer k.mu.Unlock()
	if old := k.byName[name]; old != nil && old.KeyIDString != "" {
		k.unclaimLocked(old.KeyID, name)
	}
	k.byName[name] = snap
	if idErr == nil {
		if k.claims[id] == nil {
			k.claims[id] = map[types.NamespacedName]*Key{}
		}
		k.claims[id][name] = snap
		k.electLocked(id)
	}
}

// unclaimLocked withdraws a Key's claim to a keyID.
func (k *Cache) unclaimLocked(id kmscrypto.KeyID, name types.NamespacedName) {
	delete(k.claims[id], name)
	if len(k.claims[id]) == 0 {
		delete(k.claims, id)
	}
	k.electLocked(id)
}

// electLocked maps a keyID to the one Key that claims it. Two Keys never
// share a keyID legitimately (the controller publishes only a keyID whose
// material is labelled for the Key), so while two claim one, the keyID
// resolves to neither: no Key can take over another's ciphertexts, Events
// or cached material by publishing its keyID.
func (k *Cache) electLocked(id kmscrypto.KeyID) {
	if c := k.claims[id]; len(c) == 1 {
		for _, key := range c {
			k.byID[id] = key
		}
		return
	}
	delete(k.byID, id)
}

// Remove forgets a Key and, when no other Key claims its keyID, drops its
// cached material.
func (k *Cache) Remove(namespace, name string) {
	nn := types.NamespacedName{Namespace: namespace, Name: name}
	k.mu.Lock()
	old := k.byName[nn]
	delete(k.byName, nn)
	claimed := false
	if old != nil && old.KeyIDString != "" {
		k.unclaimLocked(old.KeyID, nn)
		claimed = len(k.claims[old.KeyID]) > 0
	}
	k.mu.Unlock()
	if old == nil || claimed {
		return
	}
	k.matMu.Lock()
	for ref := range k.materials {
		if ref.id == old.KeyID {
			// Not cleared in place: a request in flight may still hold it.
			delete(k.materials, ref)
		}
	}
	for ref := range k.parsed {
		if ref.id == old.KeyID {
			delete(k.parsed, ref)
		}
	}
	k.matMu.Unlock()
}

// Parsed returns parse applied to a version's material, computed once per
// version and forgotten with the key (Remove).
func (k *Cache) Parsed(ctx context.Context, key *Key, version uint32, parse func([]byte) (any, error)) (any, error) {
	ref := versionRef{key.KeyID, version}
	if v, ok := readLocked(&k.matMu, k.parsed, ref); ok {
		return v, nil
	}
	material, err := k.VersionKey(ctx, key, version)
	if err != nil {
		return nil, err
	}
	v, err := parse(material)
	if err != nil {
		return nil, err
	}
	k.matMu.Lock()
	k.parsed[ref] = v
	k.matMu.Unlock()
	return v, nil
}

// Resolve finds a key by reference: "name" in the caller's namespace,
// "namespace/name", or a keyID.
func (k *Cache) Resolve(callerNamespace, ref string) (*Key, error) {
	if id, err := kmscrypto.ParseKeyID(ref); err == nil {
		return k.ByID(id)
	}
	ns, name, ok := strings.Cut(ref, "/")
	if !ok {
		ns, name = callerNamespace, ref
	}
	if key, _ := readLocked(&k.mu, k.byName, types.NamespacedName{Namespace: ns, Name: name}); key != nil {
		return key, nil
	}
	return nil, ErrNotFound
}

// ByID finds a key by binary keyID.
func (k *Cache) ByID(id kmscrypto.KeyID) (*Key, error) {
	if key, _ := readLocked(&k.mu, k.byID, id); key != nil {
		return key, nil
	}
	return nil, ErrNotFound
}

// VersionKey returns the unsealed key of one version, loading it once.
// The returned slice is shared and must not be changed.
func (k *Cache) VersionKey(ctx context.Context, key *Key, version uint32) ([]byte, error) {
	ref := versionRef{key.KeyID, version}
	if m, ok := readLocked(&k.matMu, k.materials, ref); ok {
		return m, nil
	}
	if uint64(version) > uint64(key.CurrentVersion)+MaxVersionsAhead {
		return nil, fmt.Errorf("key %s version %d: %w (current version %d)", key.KeyIDString, version, ErrVersionNotFound, key.CurrentVersion)
	}

	k.matMu.Lock()
	if m, ok := k.materials[ref]; ok {
		k.matMu.Unlock()
		return m, nil
	}
	if m, ok := k.missing[ref]; ok {
		if m.current == key.CurrentVersion && k.now().Before(m.until) {
			k.matMu.Unlock()
			return nil, fmt.Errorf("key %s version %d: %w", key.KeyIDString, version, m.err)
		}
		delete(k.missing, ref)
	}
	call, running := k.loading[ref]
	if !running {
		call = &loadCall{done: make(chan struct{})}
		k.loading[ref] = call
	}
	k.matMu.Unlock()

	if !running {
		call.key, call.err = k.load(context.WithoutCancel(ctx), key.KeyIDString, int32(version), string(key.KeySpec))
		k.matMu.Lock()
		delete(k.loading, ref)
		switch {
		case call.err == nil:
			k.materials[ref] = call.key
		case apierrors.IsNotFound(call.err):
			k.rememberMissLocked(ref, miss{until: k.now().Add(cmp.Or(k.MissTTL, DefaultMissTTL)), current: key.CurrentVersion, err: call.err})
		}
		k.matMu.Unlock()
		close(call.done)
	}
	select {
	case <-call.done:
		if call.err != nil {
			return nil, fmt.Errorf("key %s version %d: %w", key.KeyIDString, version, call.err)
		}
		return call.key, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// readLocked reads one entry of a map guarded by mu, under its read lock.
func readLocked[K comparable, V any](mu *sync.RWMutex, m map[K]V, k K) (V, bool) {
	mu.RLock()
	v, ok := m[k]
	mu.RUnlock()
	return v, ok
}

// rememberMissLocked records a version not found, dropping expired ones
// (and, if still full, any one) to stay within maxMisses.
func (k *Cache) rememberMissLocked(ref versionRef, m miss) {
	if k.missing == nil {
		k.missing = map[versionRef]miss{}
	}
	if len(k.missing) >= maxMisses {
		now := k.now()
		for r, old := range k.missing {
			if !now.Before(old.until) {
				delete(k.missing, r)
			}
		}
		for r := range k.missing {
			if len(k.missing) < maxMisses {
				break
			}
			delete(k.missing, r)
		}
	}
	k.missing[ref] = m
}

func (k *Cache) now() time.Time {
	if k.Clock == nil {
		return time.Now()
	}
	return k.Clock.Now()
}

// EventHandler keeps the key cache in step with an informer of Keys.
func (k *Cache) EventHandler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if key, ok := obj.(*kmsv1alpha1.Key); ok {
				k.Upsert(key)
			}
		},
		UpdateFunc: func(_, obj any) {
			if key, ok := obj.(*kmsv1alpha1.Key); ok {
				k.Upsert(key)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if key, ok := obj.(*kmsv1alpha1.Key); ok {
				k.Remove(key.Namespace, key.Name)
			}
		},
	}
}
