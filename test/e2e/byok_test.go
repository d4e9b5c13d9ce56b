package e2e

import (
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// Bring your own key with the CLI, material made by openssl.
func byokSpecs() {
	It("imports your own material with kubectl kms import-key-material, and refuses material of the wrong size", func() {
		applyYAML(`apiVersion: kms.kubekms.io/v1alpha1
kind: Key
metadata: {name: byok}
spec: {origin: External}
---
apiVersion: kms.kubekms.io/v1alpha1
kind: Key
metadata: {name: byok-signer}
spec: {origin: External, keySpec: ECC_NIST_P256}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: byok-user}
rules:
- apiGroups: [kms.kubekms.io]
  resources: [keys]
  resourceNames: [byok]
  verbs: [encrypt, decrypt]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: byok-user}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: byok-user}
subjects: [{kind: ServiceAccount, name: sample-app, namespace: default}]
---
# The import token comes from the data plane (GetParametersForImport), not
# from the Key's status.
apiVersion: v1
kind: ServiceAccount
metadata: {name: byok-admin}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: byok-admin}
rules:
- apiGroups: [kms.kubekms.io]
  resources: [keys]
  resourceNames: [byok, byok-signer]
  verbs: [getparametersforimport]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: byok-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: byok-admin}
subjects: [{kind: ServiceAccount, name: byok-admin, namespace: default}]
`)
		dir := GinkgoT().TempDir()
		script := `kubectl wait --for=jsonpath='{.status.state}'=PendingImport key/byok key/byok-signer --timeout=60s
openssl rand 32 > material.bin
kubectl kms get-parameters-for-import byok --service-account byok-admin | grep -q "BEGIN PUBLIC KEY"
kubectl kms import-key-material byok -f material.bin --service-account byok-admin
echo -n 'imported secret' | kubectl kms encrypt --key byok --service-account sample-app > ct
test "$(kubectl kms decrypt -f ct --service-account sample-app)" = 'imported secret'
openssl rand 32 | kubectl kms import-key-material byok --service-account byok-admin
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out signer.pem
openssl pkcs8 -topk8 -nocrypt -in signer.pem -outform DER -out signer.der
openssl pkey -in signer.pem -pubout -out theirs.pub
kubectl kms import-key-material byok-signer -f signer.der --service-account byok-admin
kubectl get key byok-signer -o jsonpath='{.status.publicKey}' > ours.pub
cmp theirs.pub ours.pub
if openssl rand 16 | kubectl kms import-key-material byok --service-account byok-admin 2> short.err; then exit 1; fi
`
		out, err := userShell(dir, script).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(ContainSubstring("key.kms.kubekms.io/byok imported as version 1"))
		Expect(string(out)).To(ContainSubstring("key.kms.kubekms.io/byok imported as version 2"))
		Expect(string(out)).To(ContainSubstring("key.kms.kubekms.io/byok-signer imported as version 1"))
		Expect(os.ReadFile(filepath.Join(dir, "short.err"))).To(ContainSubstring("SYMMETRIC_DEFAULT material must be 32 bytes (AES-256), got 16"))
	})
}
