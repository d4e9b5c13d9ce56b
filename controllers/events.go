package controllers

// Event reasons (events.k8s.io/v1) for key lifecycle transitions a human
// should see, and steps: what the controller did, for the Event's action
// field. Steps are not the actions of a KeyPolicy (internal/policy), which
// say what a caller may do with a key.
const (
	ReasonCreated           = "Created"
	ReasonRotated           = "Rotated"
	ReasonDisabled          = "Disabled"
	ReasonEnabled           = "Enabled"
	ReasonDeletionScheduled = "DeletionScheduled"
	ReasonRestored          = "Restored"
	ReasonRestoreFailed     = "RestoreFailed"
	ReasonDestroyed         = "Destroyed"
	ReasonMaterialMissing   = "MaterialMissing"
	ReasonImported          = "Imported"
	ReasonImportFailed      = "ImportFailed"
	ReasonMaterialExpired   = "MaterialExpired"
	// On the RootOfTrust, from each replica's root check.
	ReasonRootOfTrustUnavailable = "RootOfTrustUnavailable"
	ReasonWrongRootOfTrust       = "WrongRootOfTrust"
	ReasonRootOfTrustReady       = "RootOfTrustReady"
	// On the RootOfTrust, from the leader's root key rotation.
	ReasonRootKeyRotated      = "RootKeyRotated"
	ReasonResealed            = "Resealed"
	ReasonResealFailed        = "ResealFailed"
	ReasonRootKeyRetired      = "RootKeyRetired"
	ReasonRotationUnsupported = "RotationUnsupported"

	StepCreateMaterial   = "CreateMaterial"
	StepRotate           = "Rotate"
	StepChangeState      = "ChangeState"
	StepScheduleDeletion = "ScheduleDeletion"
	StepRestore          = "Restore"
	StepDestroyMaterial  = "DestroyMaterial"
	StepValidate         = "Validate"
	StepImportMaterial   = "ImportMaterial"
	StepCheckRootOfTrust = "CheckRootOfTrust"
	StepRotateRootKey    = "RotateRootKey"
	StepReseal           = "Reseal"
	StepRetireRootKey    = "RetireRootKey"
)
