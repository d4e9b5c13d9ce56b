package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KeySpecType names the kind of key material, as AWS KMS's KeySpec does.
// +kubebuilder:validation:Enum=SYMMETRIC_DEFAULT;RSA_2048;RSA_3072;RSA_4096;ECC_NIST_P256;ECC_NIST_P384;ECC_NIST_P521;ECC_NIST_EDWARDS25519;HMAC_224;HMAC_256;HMAC_384;HMAC_512
type KeySpecType string

const (
	// KeySpecSymmetricDefault is a 256-bit AES-GCM key.
	KeySpecSymmetricDefault KeySpecType = "SYMMETRIC_DEFAULT"
	// KeySpecRSA2048 is a 2048-bit RSA key pair.
	KeySpecRSA2048 KeySpecType = "RSA_2048"
	// KeySpecRSA3072 is a 3072-bit RSA key pair.
	KeySpecRSA3072 KeySpecType = "RSA_3072"
	// KeySpecRSA4096 is a 4096-bit RSA key pair.
	KeySpecRSA4096 KeySpecType = "RSA_4096"
	// KeySpecECCNISTP256 is an ECDSA key pair on NIST P-256.
	KeySpecECCNISTP256 KeySpecType = "ECC_NIST_P256"
	// KeySpecECCNISTP384 is an ECDSA key pair on NIST P-384.
	KeySpecECCNISTP384 KeySpecType = "ECC_NIST_P384"
	// KeySpecECCNISTP521 is an ECDSA key pair on NIST P-521.
	KeySpecECCNISTP521 KeySpecType = "ECC_NIST_P521"
	// KeySpecECCNISTEdwards25519 is an Ed25519 key pair.
	KeySpecECCNISTEdwards25519 KeySpecType = "ECC_NIST_EDWARDS25519"
	// KeySpecHMAC224 is an HMAC-SHA-224 key.
	KeySpecHMAC224 KeySpecType = "HMAC_224"
	// KeySpecHMAC256 is an HMAC-SHA-256 key.
	KeySpecHMAC256 KeySpecType = "HMAC_256"
	// KeySpecHMAC384 is an HMAC-SHA-384 key.
	KeySpecHMAC384 KeySpecType = "HMAC_384"
	// KeySpecHMAC512 is an HMAC-SHA-512 key.
	KeySpecHMAC512 KeySpecType = "HMAC_512"
)

// KeyUsage names the cryptographic operations a key may perform.
// +kubebuilder:validation:Enum=ENCRYPT_DECRYPT;SIGN_VERIFY;GENERATE_VERIFY_MAC
type KeyUsage string

const (
	// KeyUsageEncryptDecrypt allows Encrypt, Decrypt, ReEncrypt and data keys.
	KeyUsageEncryptDecrypt KeyUsage = "ENCRYPT_DECRYPT"
	// KeyUsageSignVerify allows Sign and Verify.
	KeyUsageSignVerify KeyUsage = "SIGN_VERIFY"
	// KeyUsageGenerateVerifyMAC allows GenerateMac and VerifyMac.
	KeyUsageGenerateVerifyMAC KeyUsage = "GENERATE_VERIFY_MAC"
)

// KeyOrigin says where key material comes from.
// +kubebuilder:validation:Enum=Generated;External
type KeyOrigin string

const (
	// KeyOriginGenerated means kubekms generates the material.
	KeyOriginGenerated KeyOrigin = "Generated"
	// KeyOriginExternal means the user imports their own material.
	KeyOriginExternal KeyOrigin = "External"
)

// KeyDesiredState is the state a key admin asks for.
// +kubebuilder:validation:Enum=Enabled;Disabled
type KeyDesiredState string

const (
	// KeyDesiredEnabled asks for a usable key.
	KeyDesiredEnabled KeyDesiredState = "Enabled"
	// KeyDesiredDisabled asks for a key that refuses every cryptographic operation.
	KeyDesiredDisabled KeyDesiredState = "Disabled"
)

// KeyState is the observed state of a key.
type KeyState string

const (
	// KeyStateCreating means the key's material does not exist yet.
	KeyStateCreating KeyState = "Creating"
	// KeyStateEnabled means the key can be used.
	KeyStateEnabled KeyState = "Enabled"
	// KeyStateDisabled means the key refuses every cryptographic operation.
	KeyStateDisabled KeyState = "Disabled"
	// KeyStatePendingImport means an External key waits for its material.
	KeyStatePendingImport KeyState = "PendingImport"
)

// Condition types and reasons of a Key.
const (
	// KeyConditionReady is True when the key has material and is usable.
	KeyConditionReady = "Ready"
	// KeyConditionImported (External keys only) is True when the material
	// named by spec.import was imported and has not expired.
	KeyConditionImported = "Imported"
	// KeyConditionRestored (keys with spec.restoreFrom only) is True when the
	// deleted key's versions are this Key's again; False says why the
	// restore is refused (RestoreSourceNotFound, RestoreKeySpecMismatch).
	KeyConditionRestored = "Restored"

	// KeyReasonEnabled: the key has material and is enabled.
	KeyReasonEnabled = "Enabled"
	// KeyReasonDisabled: the key has material but spec.state is Disabled.
	KeyReasonDisabled = "Disabled"
	// KeyReasonCreating: the key's material is being created.
	KeyReasonCreating = "Creating"
	// KeyReasonUnsupportedKeySpec: this release cannot make material of that keySpec.
	KeyReasonUnsupportedKeySpec = "UnsupportedKeySpec"
	// KeyReasonPendingImport: an External key waits for its first material.
	KeyReasonPendingImport = "PendingImport"
	// KeyReasonImported: the material was imported.
	KeyReasonImported = "Imported"
	// KeyReasonImportFailed: the material named by spec.import.secretRef
	// could not be imported; the message says why.
	KeyReasonImportFailed = "ImportFailed"
	// KeyReasonMaterialExpired: the imported material is past spec.import.validTo.
	KeyReasonMaterialExpired = "MaterialExpired"
	// KeyReasonRestored: the deleted key named by spec.restoreFrom is restored.
	KeyReasonRestored = "Restored"
	// KeyReasonRestoreSourceNotFound: restoreFrom names no key deleted within its window in this namespace.
	KeyReasonRestoreSourceNotFound = "RestoreSourceNotFound"
	// KeyReasonMaterialMissing: the key had versions but their sealed material
	// is gone; kubekms refuses to make new material under the same key ID.
	KeyReasonMaterialMissing = "MaterialMissing"
	// KeyReasonRestoreKeySpecMismatch: the deleted key has another keySpec than this Key.
	KeyReasonRestoreKeySpecMismatch = "RestoreKeySpecMismatch"
)

// Annotations and finalizers kubekms reads or writes on a Key.
const (
	// RotateAnnotation requests an on-demand rotation: every new value makes
	// exactly one new version.
	RotateAnnotation = "kms.kubekms.io/rotate"
	// KeyFinalizer keeps a Key until its material is moved to a tombstone.
	KeyFinalizer = "kms.kubekms.io/retain-material"
	// RestoredPolicyAnnotation marks a KeyPolicy the manager re-created for a
	// restored key; its value is the keyID restored.
	RestoredPolicyAnnotation = "kms.kubekms.io/restored-for"
	// RestoredGrantAnnotation marks a KeyGrant the manager re-created from
	// a backup (kubectl kms restore); its value is the keyID of the key it
	// is bound to. Only on the manager's own create does it mean anything.
	RestoredGrantAnnotation = "kms.kubekms.io/restored-grant"
)

// KeyRotation configures scheduled rotation.
type KeyRotation struct {
	// enabled turns on scheduled rotation. Defaults to false, as on AWS KMS;
	// on-demand rotation (the kms.kubekms.io/rotate annotation) works either way.
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	// period is the time between scheduled rotations, counted from the
	// creation of the newest version. Defaults to 8760h (365 days); at least 1h.
	// +optional
	// +kubebuilder:default="8760h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="rotation.period must be at least 1h"
	Period *metav1.Duration `json:"period,omitempty"`
}

// Wrapping algorithms for importing key material (origin: External).
const (
	// WrappingRSAESOAEPSHA256 wraps the material directly with RSAES-OAEP
	// (SHA-256, MGF1 SHA-256). It fits symmetric and HMAC material.
	WrappingRSAESOAEPSHA256 = "RSAES_OAEP_SHA_256"
	// WrappingRSAAESKeyWrapSHA256 wraps a fresh AES-256 key with RSAES-OAEP
	// SHA-256 and the material with AES key wrap with padding (RFC 5649);
	// the two are concatenated. Needed for asymmetric private keys.
	WrappingRSAAESKeyWrapSHA256 = "RSA_AES_KEY_WRAP_SHA_256"
)

// Data keys of an import Secret (spec.import.secretRef).
const (
	// ImportSecretWrappedMaterial holds the wrapped key material.
	ImportSecretWrappedMaterial = "wrappedKeyMaterial"
	// ImportSecretToken holds the import token GetParametersForImport
	// returns (the data plane, or kubectl kms get-parameters-for-import).
	ImportSecretToken = "importToken"
)

// LocalSecretReference names a Secret in the same namespace.
type LocalSecretReference struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// KeyImport says where imported material comes from (origin: External).
// +kubebuilder:validation:XValidation:rule="!has(self.secretRef) || has(self.wrappedKeyMaterialSHA256)",message="an import request (secretRef) needs wrappedKeyMaterialSHA256: the SHA-256 of the Secret's wrappedKeyMaterial, so that only that material is imported"
type KeyImport struct {
	// secretRef names a Secret in the Key's namespace whose data holds
	// wrappedKeyMaterial (the material wrapped with the wrapping public key)
	// and importToken, from the data plane's GetParametersForImport. Setting
	// it asks for one import (the admin action ImportKeyMaterial): the
	// controller imports the Secret as a new version, deletes it, retires
	// the token and clears secretRef. Set it again to import another version.
	// The manager needs get and delete on the Secret: bind the ClusterRole
	// kubekms-key-import in this namespace (docs/keys.md).
	// +optional
	SecretRef *LocalSecretReference `json:"secretRef,omitempty"`

	// wrappedKeyMaterialSHA256 is the SHA-256 (64 lower-case hex digits) of
	// the Secret's wrappedKeyMaterial: the import request names the exact
	// material, so whoever may edit Secrets cannot swap it before the
	// controller reads it. Required with secretRef.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{64}$`
	WrappedKeyMaterialSHA256 string `json:"wrappedKeyMaterialSHA256,omitempty"`

	// wrappingAlgorithm is how the material was wrapped: RSAES_OAEP_SHA_256
	// (default; symmetric and HMAC material) or RSA_AES_KEY_WRAP_SHA_256
	// (any material; needed for RSA and ECC private keys).
	// +optional
	// +kubebuilder:default=RSAES_OAEP_SHA_256
	// +kubebuilder:validation:Enum=RSAES_OAEP_SHA_256;RSA_AES_KEY_WRAP_SHA_256
	WrappingAlgorithm string `json:"wrappingAlgorithm,omitempty"`

	// validTo, when set, is when the imported material expires: from then
	// on the key refuses every cryptographic operation (state
	// PendingImport, reason MaterialExpired) until validTo is moved later.
	// Unset means the material does not expire.
	// +optional
	ValidTo *metav1.Time `json:"validTo,omitempty"`
}

// KeySpec is the desired state of a Key.
// +kubebuilder:validation:XValidation:rule="!has(self.import) || (has(self.origin) && self.origin == 'External')",message="import applies only to keys with origin: External"
// +kubebuilder:validation:XValidation:rule="!(has(self.origin) && self.origin == 'External' && has(self.rotation) && has(self.rotation.enabled) && self.rotation.enabled)",message="scheduled rotation cannot make material for origin: External; import again to add a version"
// +kubebuilder:validation:XValidation:rule="!has(self.keyUsage) || self.keyUsage in {'SYMMETRIC_DEFAULT': ['ENCRYPT_DECRYPT'], 'RSA_2048': ['ENCRYPT_DECRYPT', 'SIGN_VERIFY'], 'RSA_3072': ['ENCRYPT_DECRYPT', 'SIGN_VERIFY'], 'RSA_4096': ['ENCRYPT_DECRYPT', 'SIGN_VERIFY'], 'ECC_NIST_P256': ['SIGN_VERIFY'], 'ECC_NIST_P384': ['SIGN_VERIFY'], 'ECC_NIST_P521': ['SIGN_VERIFY'], 'ECC_NIST_EDWARDS25519': ['SIGN_VERIFY'], 'HMAC_224': ['GENERATE_VERIFY_MAC'], 'HMAC_256': ['GENERATE_VERIFY_MAC'], 'HMAC_384': ['GENERATE_VERIFY_MAC'], 'HMAC_512': ['GENERATE_VERIFY_MAC']}[self.keySpec]",message="keyUsage does not fit keySpec: SYMMETRIC_DEFAULT allows ENCRYPT_DECRYPT; RSA_* allow ENCRYPT_DECRYPT or SIGN_VERIFY; ECC_* allow SIGN_VERIFY; HMAC_* allow GENERATE_VERIFY_MAC"
// +kubebuilder:validation:XValidation:rule="(has(self.keyUsage) ? self.keyUsage : {'SYMMETRIC_DEFAULT': 'ENCRYPT_DECRYPT', 'RSA_2048': 'ENCRYPT_DECRYPT', 'RSA_3072': 'ENCRYPT_DECRYPT', 'RSA_4096': 'ENCRYPT_DECRYPT', 'ECC_NIST_P256': 'SIGN_VERIFY', 'ECC_NIST_P384': 'SIGN_VERIFY', 'ECC_NIST_P521': 'SIGN_VERIFY', 'ECC_NIST_EDWARDS25519': 'SIGN_VERIFY', 'HMAC_224': 'GENERATE_VERIFY_MAC', 'HMAC_256': 'GENERATE_VERIFY_MAC', 'HMAC_384': 'GENERATE_VERIFY_MAC', 'HMAC_512': 'GENERATE_VERIFY_MAC'}[self.keySpec]) == (has(oldSelf.keyUsage) ? oldSelf.keyUsage : {'SYMMETRIC_DEFAULT': 'ENCRYPT_DECRYPT', 'RSA_2048': 'ENCRYPT_DECRYPT', 'RSA_3072': 'ENCRYPT_DECRYPT', 'RSA_4096': 'ENCRYPT_DECRYPT', 'ECC_NIST_P256': 'SIGN_VERIFY', 'ECC_NIST_P384': 'SIGN_VERIFY', 'ECC_NIST_P521': 'SIGN_VERIFY', 'ECC_NIST_EDWARDS25519': 'SIGN_VERIFY', 'HMAC_224': 'GENERATE_VERIFY_MAC', 'HMAC_256': 'GENERATE_VERIFY_MAC', 'HMAC_384': 'GENERATE_VERIFY_MAC', 'HMAC_512': 'GENERATE_VERIFY_MAC'}[oldSelf.keySpec])",message="keyUsage is immutable"
// +kubebuilder:validation:XValidation:rule="has(self.restoreFrom) == has(oldSelf.restoreFrom) && (!has(self.restoreFrom) || self.restoreFrom == oldSelf.restoreFrom)",message="restoreFrom is immutable: it can only be set when the Key is created"
// +kubebuilder:validation:XValidation:rule="has(self.initialPolicy) == has(oldSelf.initialPolicy) && (!has(self.initialPolicy) || self.initialPolicy == oldSelf.initialPolicy)",message="initialPolicy is immutable: it can only be set when the Key is created; change the key's policy with a KeyPolicy"
// +kubebuilder:validation:XValidation:rule="!has(self.initialPolicy) || !has(self.restoreFrom)",message="a restored key comes back under the policy it had: give initialPolicy or restoreFrom, not both"
type KeySpec struct {
	// description is free text for people. At most 8192 characters.
	// +optional
	// +kubebuilder:validation:MaxLength=8192
	Description string `json:"description,omitempty"`

	// keySpec is the kind of key material. Defaults to SYMMETRIC_DEFAULT
	// (AES-256-GCM). Immutable.
	// +optional
	// +kubebuilder:default=SYMMETRIC_DEFAULT
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="keySpec is immutable"
	KeySpec KeySpecType `json:"keySpec,omitempty"`

	// keyUsage is what the key may do. When omitted it follows keySpec:
	// GENERATE_VERIFY_MAC for HMAC_*, SIGN_VERIFY for ECC_*, otherwise
	// ENCRYPT_DECRYPT. Must fit keySpec. Immutable (also its defaulted value).
	// +optional
	KeyUsage KeyUsage `json:"keyUsage,omitempty"`

	// origin says where the material comes from: Generated (default) or
	// External (bring your own material). Immutable.
	// +optional
	// +kubebuilder:default=Generated
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="origin is immutable"
	Origin KeyOrigin `json:"origin,omitempty"`

	// import names the material to import into an External key.
	// +optional
	Import *KeyImport `json:"import,omitempty"`

	// state is the desired state: Enabled (default) or Disabled. A disabled
	// key refuses every cryptographic operation and does not rotate.
	// +optional
	// +kubebuilder:default=Enabled
	State KeyDesiredState `json:"state,omitempty"`

	// rotation configures scheduled rotation.
	// +optional
	// +kubebuilder:default={}
	Rotation KeyRotation `json:"rotation,omitempty"`

	// deletionWindow is how long the material is kept after the Key is
	// deleted; within it, a Key with restoreFrom brings the key back.
	// Between 168h (7 days) and 720h (30 days); defaults to 720h.
	// +optional
	// +kubebuilder:default="720h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('168h') && duration(self) <= duration('720h')",message="deletionWindow must be between 168h (7 days) and 720h (30 days)"
	DeletionWindow *metav1.Duration `json:"deletionWindow,omitempty"`

	// restoreFrom is the keyID of a key of this namespace that was deleted
	// within its deletion window: the new Key takes over its keyID and every
	// version, so old ciphertexts decrypt again. Only when creating the Key.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`
	RestoreFrom string `json:"restoreFrom,omitempty"`

	// initialPolicy is the key's policy from the moment it is created, as
	// AWS's CreateKey takes a policy: with it no one outside it can slip a
	// KeyGrant or KeyPolicy in before the key's KeyPolicy exists. A KeyPolicy
	// bound to the Key (allowed PutPolicy under this policy) takes
	// precedence; without one, this policy governs, never the default (RBAC)
	// policy. Immutable.
	// +optional
	InitialPolicy *KeyInitialPolicy `json:"initialPolicy,omitempty"`
}

// KeyInitialPolicy is a key policy given with the Key itself.
type KeyInitialPolicy struct {
	// statements: 1 to 32, as in a KeyPolicy.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	Statements []PolicyStatement `json:"statements"`
	// bypassPolicyLockoutSafetyCheck accepts a policy under which the Key's
	// creator could not PutPolicy.
	// +optional
	BypassPolicyLockoutSafetyCheck bool `json:"bypassPolicyLockoutSafetyCheck,omitempty"`
}

// KeyVersion is one version of a key's material.
type KeyVersion struct {
	// version numbers versions from 1, one higher per rotation.
	// +required
	// +kubebuilder:validation:Minimum=1
	Version int32 `json:"version"`

	// createdAt is when the version's material was made.
	// +required
	CreatedAt metav1.Time `json:"createdAt"`
}

// KeyImportParameters are the public half of a key's current import
// parameters. The import token is not here: whoever may read the Key (the
// built-in view role) must not get it. It comes from the data plane's
// GetParametersForImport, authorized under the key's policy.
type KeyImportParameters struct {
	// wrappingPublicKey is the PEM RSA 4096 public key to wrap material with.
	// +required
	// +kubebuilder:validation:MaxLength=4096
	WrappingPublicKey string `json:"wrappingPublicKey"`
	// expiresAt is when the token and wrapping key stop being accepted; new
	// ones are made then.
	// +required
	ExpiresAt metav1.Time `json:"expiresAt"`
}

// KeyUse is the last use of a key in one operation class.
type KeyUse struct {
	// class is the operation class: symmetric, rsa or ecc.
	// +required
	// +kubebuilder:validation:Enum=symmetric;rsa;ecc
	Class string `json:"class"`
	// time of the last use seen.
	// +required
	Time metav1.Time `json:"time"`
	// principal that used it (a username or system:serviceaccount:ns:name).
	// +required
	// +kubebuilder:validation:MaxLength=512
	Principal string `json:"principal"`
}

// KeyStatus is the observed state of a Key.
type KeyStatus struct {
	// keyID is the key's stable identity, written into every ciphertext.
	// +optional
	// +kubebuilder:validation:MaxLength=36
	KeyID string `json:"keyID,omitempty"`

	// state is Creating, Enabled, Disabled or PendingImport (an External
	// key without material, or whose material expired).
	// +optional
	// +kubebuilder:validation:Enum=Creating;Enabled;Disabled;PendingImport
	State KeyState `json:"state,omitempty"`

	// keyUsage is the effective key usage (spec.keyUsage or its default).
	// +optional
	KeyUsage KeyUsage `json:"keyUsage,omitempty"`

	// currentVersion is the version new ciphertexts are made with.
	// +optional
	CurrentVersion int32 `json:"currentVersion,omitempty"`

	// versions lists the newest versions, at most 50; older versions still
	// exist and still decrypt.
	// +optional
	// +listType=map
	// +listMapKey=version
	// +kubebuilder:validation:MaxItems=50
	Versions []KeyVersion `json:"versions,omitempty"`

	// lastRotationTime is when the current version was made by a rotation.
	// Unset until the first rotation.
	// +optional
	LastRotationTime *metav1.Time `json:"lastRotationTime,omitempty"`

	// nextRotationTime is when scheduled rotation makes the next version.
	// Unset when scheduled rotation is off or the key is disabled.
	// +optional
	NextRotationTime *metav1.Time `json:"nextRotationTime,omitempty"`

	// publicKey is the PEM public key of an asymmetric key.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	PublicKey string `json:"publicKey,omitempty"`

	// importParameters is the public key an External key's material must be
	// wrapped with and when it expires (it is renewed then). The import
	// token is not published here: get it with GetParametersForImport.
	// +optional
	ImportParameters *KeyImportParameters `json:"importParameters,omitempty"`

	// lastUsed is when the key was last used successfully, per operation
	// class, and by whom. The data plane updates it at most once per
	// interval (default 1m), so "is it safe to delete?" has an answer.
	// +optional
	// +listType=map
	// +listMapKey=class
	// +kubebuilder:validation:MaxItems=3
	LastUsed []KeyUse `json:"lastUsed,omitempty"`

	// observedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready; Imported for External keys; Restored for keys
	// with spec.restoreFrom.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Key is a key managed by kubekms: its material is generated, sealed under
// the root of trust, rotated and retired by the Key controller.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=kmskey,categories=kms
// +kubebuilder:printcolumn:name="Spec",type=string,JSONPath=`.spec.keySpec`
// +kubebuilder:printcolumn:name="Usage",type=string,JSONPath=`.status.keyUsage`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Version",type=integer,JSONPath=`.status.currentVersion`
// +kubebuilder:printcolumn:name="Last Rotated",type=date,JSONPath=`.status.lastRotationTime`
// +kubebuilder:printcolumn:name="Next Rotation",type=string,JSONPath=`.status.nextRotationTime`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="Key names are at most 63 characters"
type Key struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the key. Every field has a default, so a
	// Key with no spec is a symmetric, enabled key.
	// +optional
	// +kubebuilder:default={keySpec: "SYMMETRIC_DEFAULT"}
	Spec KeySpec `json:"spec"`

	// status is the observed state of the key.
	// +optional
	Status KeyStatus `json:"status,omitempty"`
}

// KeyList is a list of Keys.
// +kubebuilder:object:root=true
type KeyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Key `json:"items"`
}
