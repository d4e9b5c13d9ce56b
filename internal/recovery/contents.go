// Package recovery backs up and restores everything kubekms holds: every
// Key, the policy that governs it, its KeyGrants and every material
// version, tombstones included (docs/backup.md).
//
// Export reads it all into Contents, with the material unsealed; the
// caller encrypts that at once to the backup recipients (internal/backup)
// and drops it. Restore takes Contents a platform admin decrypted with
// their identity and recreates every key with the same keyID in this
// cluster: it seals each version under this cluster's root of trust as a
// tombstone that carries the key's policy record, then creates the Key with
// spec.restoreFrom, so the Key controller takes the versions back under
// that policy exactly as it restores a deleted key (it re-creates the
// policy before it takes back the first version, and the admin webhook
// governs the key by the record until then), and finally recreates the
// key's grants. Restore checks everything before it writes anything, never
// overwrites, and finishes a partial restore when run again.
package recovery

import (
	"time"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
)

// FormatV1 is the one format of Contents.
const FormatV1 = "kms.kubekms.io/backup-contents/v1"

// Contents is what a backup holds, before it is encrypted. It holds key
// material in plaintext: it exists only in memory, on its way into or out
// of an encrypted bundle.
type Contents struct {
	Format    string    `json:"format"`
	CreatedAt time.Time `json:"createdAt"`
	// Source describes the cluster the backup was taken in, for people.
	Source Source `json:"source"`
	// Keys are the Keys that existed, without fields that only mean
	// something in their cluster (UID, resourceVersion, status...).
	Keys []KeyRecord `json:"keys"`
	// Grants are the KeyGrants bound to those Keys.
	Grants []GrantRecord `json:"grants"`
	// Material is every material version, live or tombstoned.
	Material []Material `json:"material"`
}

// Source describes where a backup was taken.
type Source struct {
	// Namespace is the operator's namespace.
	Namespace string `json:"namespace"`
	// RootOfTrust is the provider that sealed the material there.
	RootOfTrust string `json:"rootOfTrust"`
}

// KeyRecord is a Key.
type KeyRecord struct {
	Namespace   string              `json:"namespace"`
	Name        string              `json:"name"`
	Labels      map[string]string   `json:"labels,omitempty"`
	Annotations map[string]string   `json:"annotations,omitempty"`
	Spec        kmsv1alpha1.KeySpec `json:"spec"`
	// KeyID is the key's identity, written into every ciphertext; "" for
	// a key that had no material yet (it is recreated as a new key).
	KeyID string `json:"keyID,omitempty"`
	// Policy is the record (access.RecordPolicy) of the policy that
	// governed the key: its KeyPolicy, its spec.initialPolicy as one, or
	// the default policy (RBAC).
	Policy string `json:"policy,omitempty"`
}

// GrantRecord is a KeyGrant, bound to the key KeyID.
type GrantRecord struct {
	Namespace   string                   `json:"namespace"`
	Name        string                   `json:"name"`
	Labels      map[string]string        `json:"labels,omitempty"`
	Annotations map[string]string        `json:"annotations,omitempty"`
	Spec        kmsv1alpha1.KeyGrantSpec `json:"spec"`
	KeyID       string                   `json:"keyID"`
}

// Material is one version of a key with its material.
type Material struct {
	KeyID         string     `json:"keyID"`
	Version       int32      `json:"version"`
	KeyNamespace  string     `json:"keyNamespace"`
	KeyName       string     `json:"keyName"`
	KeySpec       string     `json:"keySpec"`
	CreatedAt     time.Time  `json:"createdAt"`
	RotateRequest string     `json:"rotateRequest,omitempty"`
	ImportRequest string     `json:"importRequest,omitempty"`
	Tombstone     bool       `json:"tombstone,omitempty"`
	DestroyAfter  *time.Time `json:"destroyAfter,omitempty"`
	// DeletedPolicy is a tombstone's policy record.
	DeletedPolicy string `json:"deletedPolicy,omitempty"`
	PublicKey     []byte `json:"publicKey,omitempty"`
	Material      []byte `json:"material"`
}
