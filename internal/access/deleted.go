package access

import (
	"encoding/json"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
)

// DeletedPolicy records, with a deleted key's tombstones, the policy the key
// had: a restore is an admin action on the deleted key, checked under it,
// and the restored key comes back under it.
type DeletedPolicy struct {
	// Name and Spec of the KeyPolicy that governed the key; Spec nil means
	// the default policy (RBAC).
	Name string                     `json:"name,omitempty"`
	Spec *kmsv1alpha1.KeyPolicySpec `json:"spec,omitempty"`
	// TooLarge: the policy did not fit in a record. A restore then fails
	// closed: it needs the RBAC verb cancelkeydeletion on the deleted key
	// (in no shipped role), and the key comes back under the default policy.
	TooLarge bool `json:"tooLarge,omitempty"`
}

// maxDeletedPolicy bounds a record: it is an annotation of each tombstone.
const maxDeletedPolicy = 192 << 10

// RecordPolicy is the record of the governing policy p (nil: the default policy).
func RecordPolicy(p *kmsv1alpha1.KeyPolicy) string {
	d := DeletedPolicy{}
	if p != nil {
		d = DeletedPolicy{Name: p.Name, Spec: p.Spec.DeepCopy()}
	}
	b, err := json.Marshal(d)
	if err != nil || len(b) > maxDeletedPolicy {
		b, _ = json.Marshal(DeletedPolicy{TooLarge: true})
	}
	return string(b)
}

// ParseDeletedPolicy reads a record. Tombstones made before records
// existed have none: they are treated as the default policy. A record that
// does not parse is treated as TooLarge: closed.
func ParseDeletedPolicy(s string) DeletedPolicy {
	d := DeletedPolicy{}
	if s == "" {
		return d
	}
	if json.Unmarshal([]byte(s), &d) != nil || d.TooLarge {
		return DeletedPolicy{TooLarge: true}
	}
	return d
}
