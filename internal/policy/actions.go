package policy

import "strings"

// Actions is every action a KeyPolicy statement, a KeyGrant, RBAC or
// ExplainAccess can name: the data-plane operations (ReEncrypt as
// ReEncryptFrom on the source and ReEncryptTo on the destination), then the
// admin actions the admission webhook checks. It is the one list: the CEL
// rule on PolicyStatement.actions (api/v1alpha1/access_types.go, which
// cannot import Go) spells the same names, and a test keeps the two equal.
var Actions = []string{
	// Data-plane operations.
	"Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo",
	"GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
	"GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext",
	"Sign", "Verify", "GetPublicKey", "GenerateMac", "VerifyMac",
	"DescribeKey", "GenerateRandom", "ExplainAccess", "GetParametersForImport",
	// Admin actions.
	"Administer", "Rotate", "Disable", "ScheduleDeletion", "CancelKeyDeletion",
	"ImportKeyMaterial", "PutPolicy", "CreateGrant",
}

// CanonicalAction returns the action a name means, compared without case
// and ignoring dashes ("decrypt" and "generate-data-key" are Decrypt and
// GenerateDataKey), and whether it is one of Actions.
func CanonicalAction(name string) (string, bool) {
	flat := strings.ReplaceAll(name, "-", "")
	for _, a := range Actions {
		if strings.EqualFold(a, flat) {
			return a, true
		}
	}
	return "", false
}
