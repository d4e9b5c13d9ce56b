// Package v1alpha1 contains the kubekms API types of group kms.kubekms.io.
// +kubebuilder:object:generate=true
// +groupName=kms.kubekms.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the group and version of the kubekms API.
var GroupVersion = schema.GroupVersion{Group: "kms.kubekms.io", Version: "v1alpha1"}

var schemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

// AddToScheme adds the types of this group version to a scheme.
var AddToScheme = schemeBuilder.AddToScheme

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion,
		&Key{}, &KeyList{},
		&KeyPolicy{}, &KeyPolicyList{},
		&KeyGrant{}, &KeyGrantList{},
		&RootOfTrust{}, &RootOfTrustList{},
	)
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
