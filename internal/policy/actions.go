package policy

import "strings"

// Action names: what a KeyPolicy statement, a KeyGrant, RBAC and
// ExplainAccess call the things a caller may do with a key. Code names an
// action by its constant, never by a string literal; Actions says
// everything else about it.
const (
	// Data-plane operations. ReEncrypt is two actions: ReEncryptFrom on the
	// source key and ReEncryptTo on the destination.
	ActionEncrypt                             = "Encrypt"
	ActionDecrypt                             = "Decrypt"
	ActionReEncryptFrom                       = "ReEncryptFrom"
	ActionReEncryptTo                         = "ReEncryptTo"
	ActionGenerateDataKey                     = "GenerateDataKey"
	ActionGenerateDataKeyWithoutPlaintext     = "GenerateDataKeyWithoutPlaintext"
	ActionGenerateDataKeyPair                 = "GenerateDataKeyPair"
	ActionGenerateDataKeyPairWithoutPlaintext = "GenerateDataKeyPairWithoutPlaintext"
	ActionSign                                = "Sign"
	ActionVerify                              = "Verify"
	ActionGetPublicKey                        = "GetPublicKey"
	ActionGenerateMac                         = "GenerateMac"
	ActionVerifyMac                           = "VerifyMac"
	ActionDescribeKey                         = "DescribeKey"
	ActionGenerateRandom                      = "GenerateRandom"
	ActionExplainAccess                       = "ExplainAccess"
	ActionGetParametersForImport              = "GetParametersForImport"

	// Admin actions: changes of a Key, its KeyPolicy or its KeyGrants, which
	// the admin webhook checks.
	ActionAdminister        = "Administer"
	ActionRotate            = "Rotate"
	ActionDisable           = "Disable"
	ActionScheduleDeletion  = "ScheduleDeletion"
	ActionCancelKeyDeletion = "CancelKeyDeletion"
	ActionImportKeyMaterial = "ImportKeyMaterial"
	ActionPutPolicy         = "PutPolicy"
	ActionCreateGrant       = "CreateGrant"
)

// ActionKind says which part of kubekms checks an action.
type ActionKind string

const (
	// DataPlane actions are checked by the data plane on a gRPC call.
	DataPlane ActionKind = "DataPlane"
	// Admin actions are checked by the admin webhook when a Key, KeyPolicy
	// or KeyGrant changes, on top of the API server's own RBAC.
	Admin ActionKind = "Admin"
)

// The ClusterRoles kubekms ships (config/rbac/kms_roles.yaml) that hold
// verbs of the action table.
const (
	// RoleKeyUser holds the verbs of using a key; aggregated into nothing.
	RoleKeyUser = "kubekms-key-user"
	// RoleKeyAdmin manages Keys, KeyPolicies and KeyGrants; aggregated into
	// the built-in admin role.
	RoleKeyAdmin = "kubekms-key-admin"
)

// Action is one row of the action table.
type Action struct {
	// Name is the action's name (one of the Action* constants).
	Name string
	// Kind says who checks it.
	Kind ActionKind
	// Verb is the RBAC verb on keys.kms.kubekms.io, named as the key, that
	// allows the action wherever RBAC decides: under the default policy (a
	// key with no KeyPolicy) for data-plane actions, and for a statement
	// with principals {rbac: true}. It is the name in lower case.
	Verb string
	// DefaultPolicyVerb, when set, is asked instead of Verb for a key with
	// no policy. Only CancelKeyDeletion has one: restoring a deleted key
	// that had the default policy needs restore, which kubekms-key-admin
	// holds; cancelkeydeletion itself (asked when the deleted key's policy
	// was too large to keep) is left to cluster admins.
	DefaultPolicyVerb string
	// Grantable says whether a KeyGrant may give it (spec.operations).
	Grantable bool
	// Roles are the shipped ClusterRoles that hold Verb or
	// DefaultPolicyVerb on keys; a test compares them with kms_roles.yaml.
	// Admin actions other than CancelKeyDeletion are held by none: under
	// the default policy the API server's own verbs (update, delete) decide
	// them, and kubekms-key-admin holds those.
	Roles []string
}

var (
	keyUser  = []string{RoleKeyUser}
	keyAdmin = []string{RoleKeyAdmin}
)

// Actions is the action table: every action a KeyPolicy statement, a
// KeyGrant, RBAC or ExplainAccess can name, data-plane operations first. It
// is the one list. What cannot import Go spells it out and a test keeps each
// equal to it: the CEL rule on PolicyStatement.actions and the enum of
// KeyGrant operations (api/v1alpha1/access_types.go), the verbs on keys in
// config/rbac/kms_roles.yaml, and docs/access-control.md.
//
// GenerateRandom needs only authentication and ExplainAccess about oneself
// nothing more, so no role holds their verbs; they are actions so that
// policies and ExplainAccess can name them.
var Actions = []Action{
	{Name: ActionEncrypt, Kind: DataPlane, Verb: "encrypt", Grantable: true, Roles: keyUser},
	{Name: ActionDecrypt, Kind: DataPlane, Verb: "decrypt", Grantable: true, Roles: keyUser},
	{Name: ActionReEncryptFrom, Kind: DataPlane, Verb: "reencryptfrom", Grantable: true, Roles: keyUser},
	{Name: ActionReEncryptTo, Kind: DataPlane, Verb: "reencryptto", Grantable: true, Roles: keyUser},
	{Name: ActionGenerateDataKey, Kind: DataPlane, Verb: "generatedatakey", Grantable: true, Roles: keyUser},
	{Name: ActionGenerateDataKeyWithoutPlaintext, Kind: DataPlane, Verb: "generatedatakeywithoutplaintext", Grantable: true, Roles: keyUser},
	{Name: ActionGenerateDataKeyPair, Kind: DataPlane, Verb: "generatedatakeypair", Grantable: true, Roles: keyUser},
	{Name: ActionGenerateDataKeyPairWithoutPlaintext, Kind: DataPlane, Verb: "generatedatakeypairwithoutplaintext", Grantable: true, Roles: keyUser},
	{Name: ActionSign, Kind: DataPlane, Verb: "sign", Grantable: true, Roles: keyUser},
	{Name: ActionVerify, Kind: DataPlane, Verb: "verify", Grantable: true, Roles: keyUser},
	{Name: ActionGetPublicKey, Kind: DataPlane, Verb: "getpublickey", Grantable: true, Roles: keyUser},
	{Name: ActionGenerateMac, Kind: DataPlane, Verb: "generatemac", Grantable: true, Roles: keyUser},
	{Name: ActionVerifyMac, Kind: DataPlane, Verb: "verifymac", Grantable: true, Roles: keyUser},
	{Name: ActionDescribeKey, Kind: DataPlane, Verb: "describekey", Grantable: true, Roles: keyUser},
	{Name: ActionGenerateRandom, Kind: DataPlane, Verb: "generaterandom"},
	{Name: ActionExplainAccess, Kind: DataPlane, Verb: "explainaccess"},
	// The import token is an admin's credential.
	{Name: ActionGetParametersForImport, Kind: DataPlane, Verb: "getparametersforimport", Roles: keyAdmin},

	{Name: ActionAdminister, Kind: Admin, Verb: "administer"},
	{Name: ActionRotate, Kind: Admin, Verb: "rotate"},
	{Name: ActionDisable, Kind: Admin, Verb: "disable"},
	{Name: ActionScheduleDeletion, Kind: Admin, Verb: "scheduledeletion"},
	{Name: ActionCancelKeyDeletion, Kind: Admin, Verb: "cancelkeydeletion", DefaultPolicyVerb: "restore", Roles: keyAdmin},
	{Name: ActionImportKeyMaterial, Kind: Admin, Verb: "importkeymaterial"},
	{Name: ActionPutPolicy, Kind: Admin, Verb: "putpolicy"},
	{Name: ActionCreateGrant, Kind: Admin, Verb: "creategrant"},
}

// ActionNames returns the names of Actions, in the table's order.
func ActionNames() []string {
	out := make([]string, len(Actions))
	for i, a := range Actions {
		out[i] = a.Name
	}
	return out
}

// LookupAction returns the row of the action named exactly name.
func LookupAction(name string) (Action, bool) {
	for _, a := range Actions {
		if a.Name == name {
			return a, true
		}
	}
	return Action{}, false
}

// DefaultPolicyVerb returns the RBAC verb that allows action on a key with
// no policy (for CancelKeyDeletion, on the deleted key's name): the row's
// DefaultPolicyVerb, else its Verb; "" when action is not in the table.
func DefaultPolicyVerb(action string) string {
	a, ok := LookupAction(action)
	if ok && a.DefaultPolicyVerb != "" {
		return a.DefaultPolicyVerb
	}
	return a.Verb
}

// CanonicalAction returns the action a name means, compared without case
// and ignoring dashes ("decrypt" and "generate-data-key" are Decrypt and
// GenerateDataKey), and whether it is one of Actions.
func CanonicalAction(name string) (string, bool) {
	flat := strings.ReplaceAll(name, "-", "")
	for _, a := range Actions {
		if strings.EqualFold(a.Name, flat) {
			return a.Name, true
		}
	}
	return "", false
}
