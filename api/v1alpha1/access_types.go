package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KeyReference names a Key in the same namespace.
type KeyReference struct {
	// name of the Key.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
}

// PolicyEffect is Allow or Deny; an explicit Deny always wins.
// +kubebuilder:validation:Enum=Allow;Deny
type PolicyEffect string

const (
	// PolicyAllow allows the statement's actions.
	PolicyAllow PolicyEffect = "Allow"
	// PolicyDeny denies them, over any Allow, grant or RBAC rule.
	PolicyDeny PolicyEffect = "Deny"
)

// PolicyPrincipals are whom a statement is about.
// +kubebuilder:validation:XValidation:rule="(has(self.rbac) && self.rbac) || (has(self.serviceAccounts) && size(self.serviceAccounts) > 0) || (has(self.users) && size(self.users) > 0) || (has(self.groups) && size(self.groups) > 0)",message="principals must name a serviceAccount, user or group, or set rbac: true"
type PolicyPrincipals struct {
	// serviceAccounts as "namespace/name" or "namespace/*". At most 32.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?/([a-z0-9]([-a-z0-9.]*[a-z0-9])?|\*)$`
	// +kubebuilder:validation:items:MaxLength=317
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
	// users by username. At most 32.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=512
	Users []string `json:"users,omitempty"`
	// groups by name. At most 32.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=512
	Groups []string `json:"groups,omitempty"`
	// rbac also matches whom Kubernetes RBAC allows the action (verb
	// lower(action) on this key), like AWS's "Enable IAM policies".
	// +optional
	RBAC bool `json:"rbac,omitempty"`
}

// EncryptionContextConditions restrict by encryption context, as AWS does:
// equals needs exactly these pairs, subset at least these. An operation
// without an encryption context never satisfies either.
// +kubebuilder:validation:XValidation:rule="!(has(self.encryptionContextEquals) && has(self.encryptionContextSubset))",message="give encryptionContextEquals or encryptionContextSubset, not both"
type EncryptionContextConditions struct {
	// encryptionContextEquals: at most 8 pairs.
	// +optional
	// +kubebuilder:validation:MaxProperties=8
	EncryptionContextEquals map[string]string `json:"encryptionContextEquals,omitempty"`
	// encryptionContextSubset: at most 8 pairs.
	// +optional
	// +kubebuilder:validation:MaxProperties=8
	EncryptionContextSubset map[string]string `json:"encryptionContextSubset,omitempty"`
}

// PolicyStatement is one rule of a KeyPolicy.
// +kubebuilder:validation:XValidation:rule="self.actions.all(a, a == '*' || a.endsWith('*') || a in ['Encrypt', 'Decrypt', 'ReEncryptFrom', 'ReEncryptTo', 'GenerateDataKey', 'GenerateDataKeyWithoutPlaintext', 'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext', 'Sign', 'Verify', 'GetPublicKey', 'GenerateMac', 'VerifyMac', 'DescribeKey', 'GenerateRandom', 'ExplainAccess', 'GetParametersForImport', 'Administer', 'Rotate', 'Disable', 'ScheduleDeletion', 'CancelKeyDeletion', 'ImportKeyMaterial', 'PutPolicy', 'CreateGrant'])",message="actions must be operation names (Encrypt, Decrypt, ...), admin actions (Administer, Rotate, Disable, ScheduleDeletion, CancelKeyDeletion, ImportKeyMaterial, GetParametersForImport, PutPolicy, CreateGrant), '*' or a prefix ending in '*'"
type PolicyStatement struct {
	// sid names the statement in explanations and audit. At most 128 of
	// letters, digits, - and _.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-]*$`
	Sid string `json:"sid,omitempty"`
	// effect: Allow or Deny.
	// +required
	Effect PolicyEffect `json:"effect"`
	// principals the statement is about; at least one entry or rbac.
	// +required
	Principals PolicyPrincipals `json:"principals"`
	// actions: data-plane operations (Encrypt, Decrypt, ...), admin actions
	// (Administer, Rotate, Disable, ScheduleDeletion, CancelKeyDeletion,
	// ImportKeyMaterial, GetParametersForImport, PutPolicy, CreateGrant),
	// "*", or a prefix ending in "*". 1 to 32.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Pattern=`^(\*|[A-Za-z]+\*?)$`
	// +kubebuilder:validation:items:MaxLength=64
	Actions []string `json:"actions"`
	// conditions on the encryption context.
	// +optional
	Conditions *EncryptionContextConditions `json:"conditions,omitempty"`
}

// KeyPolicySpec replaces the default policy of one Key.
type KeyPolicySpec struct {
	// keyRef names the Key in this namespace; the Key must exist. At most
	// one KeyPolicy per Key is accepted: the oldest. Immutable: the policy is
	// bound to the Key it was created for (its UID, in an ownerReference set
	// at admission) and is deleted with it.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="keyRef is immutable: a policy stays with the key it was created for; create a new KeyPolicy instead"
	KeyRef KeyReference `json:"keyRef"`
	// statements: 1 to 32.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	Statements []PolicyStatement `json:"statements"`
	// bypassPolicyLockoutSafetyCheck accepts a policy that would leave the
	// author unable to change it again (AWS's flag of the same name).
	// +optional
	BypassPolicyLockoutSafetyCheck bool `json:"bypassPolicyLockoutSafetyCheck,omitempty"`
}

// KeyPolicy condition type and reasons.
const (
	// KeyPolicyConditionAccepted is True when the policy governs its key.
	KeyPolicyConditionAccepted = "Accepted"
	// KeyPolicyReasonAccepted: the policy governs its key.
	KeyPolicyReasonAccepted = "Accepted"
	// KeyPolicyReasonKeyNotFound: no such Key in this namespace.
	KeyPolicyReasonKeyNotFound = "KeyNotFound"
	// KeyPolicyReasonDuplicate: an older KeyPolicy already governs the key.
	KeyPolicyReasonDuplicate = "DuplicatePolicy"
)

// KeyPolicyStatus is the observed state of a KeyPolicy.
type KeyPolicyStatus struct {
	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Accepted.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// KeyPolicy replaces a Key's default policy (RBAC) with statements, as an
// AWS key policy does.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=kmspolicy,categories=kms
// +kubebuilder:printcolumn:name="Key",type=string,JSONPath=`.spec.keyRef.name`
// +kubebuilder:printcolumn:name="Statements",type=string,JSONPath=`.spec.statements[*].sid`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type KeyPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec KeyPolicySpec `json:"spec"`
	// +optional
	Status KeyPolicyStatus `json:"status,omitempty"`
}

// KeyPolicyList is a list of KeyPolicies.
// +kubebuilder:object:root=true
type KeyPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []KeyPolicy `json:"items"`
}

// GrantPrincipal is one identity: exactly one of serviceAccount, user and group.
// +kubebuilder:validation:XValidation:rule="(has(self.serviceAccount) ? 1 : 0) + (has(self.user) ? 1 : 0) + (has(self.group) ? 1 : 0) == 1",message="give exactly one of serviceAccount, user and group"
type GrantPrincipal struct {
	// serviceAccount as "namespace/name".
	// +optional
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=317
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// user by username; not a ServiceAccount's username
	// (system:serviceaccount:...): name those with serviceAccount, so the
	// grant binds to the account's UID.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('system:serviceaccount:')",message="user must not be a ServiceAccount username: use serviceAccount: namespace/name, which binds the grant to the account's UID"
	User string `json:"user,omitempty"`
	// group by name.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Group string `json:"group,omitempty"`
}

// KeyGrantSpec delegates operations on one key to one grantee.
type KeyGrantSpec struct {
	// keyRef names the Key in this namespace: a grant lives in its key's
	// namespace, and the Key must exist. Immutable: the grant is bound to
	// the Key it was created for (its UID, in an ownerReference set at
	// admission) and is deleted with it.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="keyRef is immutable: a grant stays with the key it was created for; create a new KeyGrant instead"
	KeyRef KeyReference `json:"keyRef"`
	// grantee gets the operations; another namespace's ServiceAccount is how
	// another tenant gets access.
	// +required
	Grantee GrantPrincipal `json:"grantee"`
	// operations the grantee may perform: data-plane operation names, 1 to 16.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Enum=Encrypt;Decrypt;ReEncryptFrom;ReEncryptTo;GenerateDataKey;GenerateDataKeyWithoutPlaintext;GenerateDataKeyPair;GenerateDataKeyPairWithoutPlaintext;Sign;Verify;GetPublicKey;GenerateMac;VerifyMac;DescribeKey
	Operations []string `json:"operations"`
	// constraints on the encryption context.
	// +optional
	Constraints *EncryptionContextConditions `json:"constraints,omitempty"`
	// retiringPrincipal may delete the grant.
	// +optional
	RetiringPrincipal *GrantPrincipal `json:"retiringPrincipal,omitempty"`
	// expiresAt ends the grant; it becomes Expired then.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
}

// KeyGrantState is the observed state of a grant.
type KeyGrantState string

const (
	// KeyGrantActive: the grant allows its operations.
	KeyGrantActive KeyGrantState = "Active"
	// KeyGrantExpired: expiresAt has passed.
	KeyGrantExpired KeyGrantState = "Expired"
	// KeyGrantInvalid: the key or the grantee does not exist.
	KeyGrantInvalid KeyGrantState = "Invalid"
)

// KeyGrant condition reasons.
const (
	KeyGrantConditionActive       = "Active"
	KeyGrantReasonActive          = "Active"
	KeyGrantReasonExpired         = "Expired"
	KeyGrantReasonKeyNotFound     = "KeyNotFound"
	KeyGrantReasonGranteeNotFound = "GranteeNotFound"
)

// KeyGrantStatus is the observed state of a KeyGrant.
type KeyGrantStatus struct {
	// state is Active, Expired or Invalid.
	// +optional
	// +kubebuilder:validation:Enum=Active;Expired;Invalid
	State KeyGrantState `json:"state,omitempty"`
	// granteeUID is the UID of the grantee ServiceAccount when the grant
	// became active: a deleted and re-created account does not inherit it.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	GranteeUID string `json:"granteeUID,omitempty"`
	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Active.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// KeyGrant delegates operations on a key to one grantee, on top of the
// key's policy; an explicit Deny in the policy still wins.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=kmsgrant,categories=kms
// +kubebuilder:printcolumn:name="Key",type=string,JSONPath=`.spec.keyRef.name`
// +kubebuilder:printcolumn:name="Grantee",type=string,JSONPath=`.spec.grantee.*`
// +kubebuilder:printcolumn:name="Operations",type=string,JSONPath=`.spec.operations`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.spec.expiresAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type KeyGrant struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec KeyGrantSpec `json:"spec"`
	// +optional
	Status KeyGrantStatus `json:"status,omitempty"`
}

// KeyGrantList is a list of KeyGrants.
// +kubebuilder:object:root=true
type KeyGrantList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []KeyGrant `json:"items"`
}
