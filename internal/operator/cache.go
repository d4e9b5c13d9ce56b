package operator

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/certs"
)

// CacheOptions limits what the manager caches, for every part it runs: the
// Secrets kubekms writes in its own namespace (it never caches the cluster's
// Secrets), the published CA bundle ConfigMaps, and the EndpointSlices of
// its own namespace (the data plane counts its replicas from them), and its
// own RootOfTrust.
func CacheOptions(namespace string) cache.Options {
	own := labels.SelectorFromSet(labels.Set{kmsv1alpha1.ManagedByLabel: kmsv1alpha1.ManagedByValue})
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Secret{}:             {Namespaces: map[string]cache.Config{namespace: {}}, Label: own},
		&corev1.ConfigMap{}:          {Field: fields.OneTermEqualSelector("metadata.name", certs.CAConfigMapName)},
		&discoveryv1.EndpointSlice{}: {Namespaces: map[string]cache.Config{namespace: {}}},
		&kmsv1alpha1.RootOfTrust{}:   {Namespaces: map[string]cache.Config{namespace: {}}},
	}}
}
