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

// RootOfTrustSpec is empty: the root of trust is chosen by the manager's
// flags (--root-of-trust and the provider's settings), which only those
// who deploy the manager can change. See docs/root-of-trust.md.
type RootOfTrustSpec struct{}

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

	// conditions: Ready, with the reason and, when False, what to restore.
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
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RootOfTrust struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is empty (see RootOfTrustSpec).
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
