package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RootOfTrustName is the name of the one RootOfTrust the manager keeps, in
// its own namespace. Objects of other names, or in other namespaces, mean
// nothing to kubekms.
const RootOfTrustName = "default"

// RootOfTrustConditionReady is the condition type that says whether the
// root of trust unseals the namespace's sealed material.
const RootOfTrustConditionReady = "Ready"

// Reasons of a RootOfTrust's Ready condition.
const (
	// RootOfTrustReasonReady: the root of trust unseals the material of
	// the namespace (its root check Secret).
	RootOfTrustReasonReady = "Ready"
	// RootOfTrustReasonUnavailable: the root is missing or unreachable (a
	// root key Secret deleted, the HSM or AWS KMS down, a wrong PIN); the
	// message says what to restore.
	RootOfTrustReasonUnavailable = "Unavailable"
	// RootOfTrustReasonWrongRoot: a root answers, but it is not the one
	// the sealed material was sealed under.
	RootOfTrustReasonWrongRoot = "WrongRoot"
)

// RootOfTrustConditionResealed is the condition type that says whether
// every sealed Secret is sealed under the current root key version.
const RootOfTrustConditionResealed = "Resealed"

// Reasons of a RootOfTrust's Resealed condition.
const (
	// RootOfTrustReasonResealed: every sealed Secret is sealed under the
	// current root key version.
	RootOfTrustReasonResealed = "Resealed"
	// RootOfTrustReasonResealing: a reseal under a new root key version is
	// under way; the message counts what is left.
	RootOfTrustReasonResealing = "Resealing"
	// RootOfTrustReasonResealFailed: some sealed Secrets could not be
	// resealed; the message names them. The old root key is kept.
	RootOfTrustReasonResealFailed = "ResealFailed"
	// RootOfTrustReasonRotationUnsupported: a rotation was asked of a root
	// of trust that kubekms does not rotate (see docs/root-of-trust.md).
	RootOfTrustReasonRotationUnsupported = "RotationUnsupported"
)

// RootOfTrustConditionBackedUp is the condition type that says whether
// scheduled backups are current; absent when the manager writes none.
const RootOfTrustConditionBackedUp = "BackedUp"

// Reasons of a RootOfTrust's BackedUp condition.
const (
	// RootOfTrustReasonBackupCurrent: the last scheduled backup is recent
	// and the last attempt succeeded.
	RootOfTrustReasonBackupCurrent = "BackupCurrent"
	// RootOfTrustReasonBackupFailed: the last attempt failed; the message
	// says why.
	RootOfTrustReasonBackupFailed = "BackupFailed"
	// RootOfTrustReasonBackupStale: no backup was written for longer than
	// the manager's --backup-stale-after (or none yet).
	RootOfTrustReasonBackupStale = "BackupStale"
)

// RootOfTrustSpec asks for root key rotations. The root of trust itself is
// chosen by the manager's flags (--root-of-trust and the provider's
// settings), which only those who deploy the manager can change. See
// docs/root-of-trust.md.
type RootOfTrustSpec struct {
	// rotationRequest asks for a new root key version: every new value
	// (a date, a ticket number) makes one, once. The manager then reseals
	// every sealed Secret under it in the background, and retires the old
	// versions when nothing is sealed under them. Only the local root of
	// trust rotates this way.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	RotationRequest string `json:"rotationRequest,omitempty"`
}

// RootOfTrustStatus is the root of trust as the leading manager replica
// sees it.
type RootOfTrustStatus struct {
	// provider is the root of trust the manager is configured with:
	// local, file, awskms or pkcs11.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	Provider string `json:"provider,omitempty"`

	// reportedBy is the manager replica (its host name, the Pod's name)
	// whose view this status is. Every replica checks the root on its own
	// and is not ready while its check fails; each records an Event here
	// when its root goes away or comes back.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ReportedBy string `json:"reportedBy,omitempty"`

	// rootKeyVersion is the root key version new seals use (local).
	// +optional
	RootKeyVersion int32 `json:"rootKeyVersion,omitempty"`

	// rootKeyVersions counts the root key versions held (local): more than
	// one while old versions wait to be retired.
	// +optional
	RootKeyVersions int32 `json:"rootKeyVersions,omitempty"`

	// observedRotationRequest is the last spec.rotationRequest answered.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ObservedRotationRequest string `json:"observedRotationRequest,omitempty"`

	// sealedSecrets counts the Secrets sealed under the root of trust, and
	// resealPending those of them not sealed under the current root key
	// version yet.
	// +optional
	SealedSecrets int32 `json:"sealedSecrets,omitempty"`
	// +optional
	ResealPending int32 `json:"resealPending,omitempty"`

	// lastBackupTime is when the last scheduled backup bundle was written,
	// lastBackupFile its name in the manager's backup directory.
	// +optional
	LastBackupTime *metav1.Time `json:"lastBackupTime,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=253
	LastBackupFile string `json:"lastBackupFile,omitempty"`
	// lastBackupSHA256 is that bundle's SHA-256 (hex): keep it apart from
	// the bundle and give it to kubectl kms restore --sha256, so that a
	// bundle swapped on its volume is refused.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	LastBackupSHA256 string `json:"lastBackupSHA256,omitempty"`

	// conditions: Ready, with the reason and, when False, what to restore;
	// Resealed, with the progress of a reseal; BackedUp, whether
	// scheduled backups are current.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// RootOfTrust reports the root of trust that seals key material: kept by
// the manager in its own namespace as RootOfTrustName, recreated if
// deleted; its Ready condition and Events say when the root is gone and
// what to restore.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=kms
// +kubebuilder:printcolumn:name="Provider",type=string,JSONPath=`.status.provider`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Root Key",type=integer,JSONPath=`.status.rootKeyVersion`
// +kubebuilder:printcolumn:name="Reseal Pending",type=integer,JSONPath=`.status.resealPending`
// +kubebuilder:printcolumn:name="Last Backup",type=date,JSONPath=`.status.lastBackupTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RootOfTrust struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec asks for root key rotations (see RootOfTrustSpec).
	// +optional
	Spec RootOfTrustSpec `json:"spec,omitempty"`

	// status is the root of trust as the manager sees it.
	// +optional
	Status RootOfTrustStatus `json:"status,omitempty"`
}

// RootOfTrustList is a list of RootOfTrusts.
// +kubebuilder:object:root=true
type RootOfTrustList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RootOfTrust `json:"items"`
}
