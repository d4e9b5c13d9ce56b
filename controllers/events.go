package controllers

// Event reasons (events.k8s.io/v1) for key lifecycle transitions a human
// should see. Actions say what the controller did.
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

	ActionCreateMaterial  = "CreateMaterial"
	ActionRotate          = "Rotate"
	ActionChangeState     = "ChangeState"
	ActionScheduleDelete  = "ScheduleDeletion"
	ActionRestore         = "Restore"
	ActionDestroyMaterial = "DestroyMaterial"
	ActionValidate        = "Validate"
	ActionImport          = "ImportMaterial"
)
