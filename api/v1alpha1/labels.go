package v1alpha1

// Labels on the objects kubekms itself writes (the Secrets holding the root
// key and sealed key material, the published CA bundles). They are part of
// the contract: the manager's cache selects its own Secrets by them, and an
// operator may select them too.
const (
	// ManagedByLabel and ManagedByValue mark every object kubekms writes.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "kubekms"
	// ComponentLabel tells root keys from key material.
	ComponentLabel = "app.kubernetes.io/component"
)
