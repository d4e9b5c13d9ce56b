package integration

import (
	"context"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
)

// matrixCase replays a case of internal/policy's TestEvaluateMatrix through
// real tokens, CRDs and RBAC against the running data plane.
type matrixCase struct {
	caller     string // "api" (shop/api) or "frontend" (web/frontend)
	action     string // Encrypt, Decrypt or GenerateDataKey
	ctx        map[string]string
	rbacVerbs  []string // RBAC verbs the caller has on the key
	statements []kmsv1alpha1.PolicyStatement
	grants     []kmsv1alpha1.KeyGrantSpec
	allowed    bool
}

func allow(sid string, p kmsv1alpha1.PolicyPrincipals, actions ...string) kmsv1alpha1.PolicyStatement {
	return kmsv1alpha1.PolicyStatement{Sid: sid, Effect: kmsv1alpha1.PolicyAllow, Principals: p, Actions: actions}
}

func deny(sid string, p kmsv1alpha1.PolicyPrincipals, actions ...string) kmsv1alpha1.PolicyStatement {
	return kmsv1alpha1.PolicyStatement{Sid: sid, Effect: kmsv1alpha1.PolicyDeny, Principals: p, Actions: actions}
}

func withEquals(s kmsv1alpha1.PolicyStatement, c map[string]string) kmsv1alpha1.PolicyStatement {
	s.Conditions = &kmsv1alpha1.EncryptionContextConditions{EncryptionContextEquals: c}
	return s
}

// adminKeepsControl lets the test's admin (system:masters, through RBAC)
// change the policy again, so the lockout check does not apply.
var adminKeepsControl = allow("AdminKeepsControl", kmsv1alpha1.PolicyPrincipals{Groups: []string{"system:masters"}}, "PutPolicy", "CreateGrant")

var _ = Describe("The authorization matrix through real tokens", func() {
	DescribeTable("decides as the evaluator does",
		func(ctx SpecContext, tc matrixCase) {
			shop, web := newNamespace(ctx), newNamespace(ctx)
			newReadyKey(ctx, shop, "payments")
			newServiceAccount(ctx, shop, "api")
			newServiceAccount(ctx, web, "frontend")
			newServiceAccount(ctx, shop, "maker")
			grant(ctx, shop, "maker", "payments", "encrypt")
			maker := withToken(context.Background(), kmsToken(ctx, shop, "maker"))
			usable(maker, "payments")

			// Ciphertexts are made before any policy: the maker's RBAC suffices.
			var blob []byte
			if tc.action == "Decrypt" {
				enc, err := kms.Encrypt(maker, &kmsv1.EncryptRequest{KeyId: "payments", Plaintext: []byte("x"), EncryptionContext: tc.ctx})
				Expect(err).NotTo(HaveOccurred())
				blob = enc.CiphertextBlob
			}
			callerNS := shop
			if tc.caller == "frontend" {
				callerNS = web
			}
			if len(tc.rbacVerbs) > 0 {
				// A Role in the key's namespace binding the caller.
				grantCross(ctx, shop, callerNS, tc.caller, "payments", tc.rbacVerbs...)
			}
			resolve := func(v string) string {
				return strings.NewReplacer("SHOP/", shop+"/", "WEB/", web+"/").Replace(v)
			}
			for i := range tc.statements {
				st := tc.statements[i].DeepCopy()
				for j, sa := range st.Principals.ServiceAccounts {
					st.Principals.ServiceAccounts[j] = resolve(sa)
				}
				tc.statements[i] = *st
			}
			for i := range tc.grants {
				tc.grants[i].Grantee.ServiceAccount = resolve(tc.grants[i].Grantee.ServiceAccount)
			}
			var waitFor []func() bool
			if tc.statements != nil {
				p := newPolicy(ctx, shop, "payments", "payments", append(tc.statements, adminKeepsControl)...)
				waitFor = append(waitFor, func() bool {
					cur := &kmsv1alpha1.KeyPolicy{}
					Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), cur)).To(Succeed())
					return meta.IsStatusConditionTrue(cur.Status.Conditions, kmsv1alpha1.KeyPolicyConditionAccepted)
				})
			}
			for i, spec := range tc.grants {
				g := newGrant(ctx, shop, "g"+string(rune('a'+i)), "payments", spec.Grantee, spec.Operations, spec.Constraints)
				waitFor = append(waitFor, func() bool { return grantState(ctx, g)() == kmsv1alpha1.KeyGrantActive })
			}
			for _, w := range waitFor {
				Eventually(w).Should(BeTrue())
			}

			caller := withToken(context.Background(), kmsToken(ctx, callerNS, tc.caller))
			call := func() codes.Code {
				var err error
				switch tc.action {
				case "Encrypt":
					_, err = kms.Encrypt(caller, &kmsv1.EncryptRequest{KeyId: shop + "/payments", Plaintext: []byte("x"), EncryptionContext: tc.ctx})
				case "GenerateDataKey":
					_, err = kms.GenerateDataKey(caller, &kmsv1.GenerateDataKeyRequest{KeyId: shop + "/payments", KeySpec: "AES_256", EncryptionContext: tc.ctx})
				case "Decrypt":
					_, err = kms.Decrypt(caller, &kmsv1.DecryptRequest{CiphertextBlob: blob, EncryptionContext: tc.ctx})
				}
				return status.Code(err)
			}
			if tc.allowed {
				Eventually(call).Should(Equal(codes.OK))
			} else {
				Consistently(call, "1500ms").Should(Equal(codes.PermissionDenied))
			}
		},
		Entry("no policy, RBAC allows", matrixCase{caller: "api", action: "Encrypt", rbacVerbs: []string{"encrypt"}, allowed: true}),
		Entry("no policy, RBAC denies", matrixCase{caller: "api", action: "Encrypt"}),
		Entry("allow exact SA", matrixCase{caller: "api", action: "Encrypt",
			statements: []kmsv1alpha1.PolicyStatement{allow("A", kmsv1alpha1.PolicyPrincipals{ServiceAccounts: []string{"SHOP/api"}}, "Encrypt")}, allowed: true}),
		Entry("allow SA wildcard in namespace", matrixCase{caller: "api", action: "Encrypt",
			statements: []kmsv1alpha1.PolicyStatement{allow("A", kmsv1alpha1.PolicyPrincipals{ServiceAccounts: []string{"SHOP/*"}}, "Encrypt")}, allowed: true}),
		Entry("SA wildcard of another namespace", matrixCase{caller: "frontend", action: "Encrypt",
			statements: []kmsv1alpha1.PolicyStatement{allow("A", kmsv1alpha1.PolicyPrincipals{ServiceAccounts: []string{"SHOP/*"}}, "Encrypt")}}),
		Entry("action suffix wildcard", matrixCase{caller: "api", action: "GenerateDataKey",
			statements: []kmsv1alpha1.PolicyStatement{allow("A", kmsv1alpha1.PolicyPrincipals{ServiceAccounts: []string{"SHOP/api"}}, "GenerateDataKey*")}, allowed: true}),
		Entry("action not listed", matrixCase{caller: "api", action: "Decrypt",
			statements: []kmsv1alpha1.PolicyStatement{allow("A", kmsv1alpha1.PolicyPrincipals{ServiceAccounts: []string{"SHOP/api"}}, "Encrypt")}}),
		Entry("deny over allow", matrixCase{caller: "api", action: "Decrypt", statements: []kmsv1alpha1.PolicyStatement{
			allow("A", kmsv1alpha1.PolicyPrincipals{ServiceAccounts: []string{"SHOP/api"}}, "*"),
			deny("D", kmsv1alpha1.PolicyPrincipals{ServiceAccounts: []string{"SHOP/api"}}, "Decrypt")}}),
		Entry("rbac delegation allows", matrixCase{caller: "api", action: "Encrypt", rbacVerbs: []string{"encrypt"},
			statements: []kmsv1alpha1.PolicyStatement{allow("R", kmsv1alpha1.PolicyPrincipals{RBAC: true}, "*")}, allowed: true}),
		Entry("rbac delegation, RBAC denies", matrixCase{caller: "api", action: "Encrypt",
			statements: []kmsv1alpha1.PolicyStatement{allow("R", kmsv1alpha1.PolicyPrincipals{RBAC: true}, "*")}}),
		Entry("empty policy denies RBAC-allowed", matrixCase{caller: "api", action: "Encrypt", rbacVerbs: []string{"encrypt"},
			statements: []kmsv1alpha1.PolicyStatement{allow("Other", kmsv1alpha1.PolicyPrincipals{Users: []string{"nobody"}}, "*")}}),
		Entry("equals holds", matrixCase{caller: "api", action: "Decrypt", ctx: map[string]string{"tenant": "shop"}, statements: []kmsv1alpha1.PolicyStatement{
			withEquals(allow("A", kmsv1alpha1.PolicyPrincipals{ServiceAccounts: []string{"SHOP/api"}}, "Decrypt"), map[string]string{"tenant": "shop"})}, allowed: true}),
		Entry("equals with extra pair fails", matrixCase{caller: "api", action: "Decrypt", ctx: map[string]string{"tenant": "shop", "x": "y"}, statements: []kmsv1alpha1.PolicyStatement{
			withEquals(allow("A", kmsv1alpha1.PolicyPrincipals{ServiceAccounts: []string{"SHOP/api"}}, "Decrypt"), map[string]string{"tenant": "shop"})}}),
		Entry("grant to SA in another namespace", matrixCase{caller: "frontend", action: "Decrypt",
			grants: []kmsv1alpha1.KeyGrantSpec{{Grantee: kmsv1alpha1.GrantPrincipal{ServiceAccount: "WEB/frontend"}, Operations: []string{"Decrypt"}}}, allowed: true}),
		Entry("grant for another operation", matrixCase{caller: "frontend", action: "Encrypt",
			grants: []kmsv1alpha1.KeyGrantSpec{{Grantee: kmsv1alpha1.GrantPrincipal{ServiceAccount: "WEB/frontend"}, Operations: []string{"Decrypt"}}}}),
		Entry("grant constraint, other context", matrixCase{caller: "frontend", action: "Decrypt", ctx: map[string]string{"tenant": "web"},
			grants: []kmsv1alpha1.KeyGrantSpec{{Grantee: kmsv1alpha1.GrantPrincipal{ServiceAccount: "WEB/frontend"}, Operations: []string{"Decrypt"},
				Constraints: &kmsv1alpha1.EncryptionContextConditions{EncryptionContextEquals: map[string]string{"tenant": "shop"}}}}}),
		Entry("deny over grant", matrixCase{caller: "frontend", action: "Decrypt",
			statements: []kmsv1alpha1.PolicyStatement{deny("D", kmsv1alpha1.PolicyPrincipals{ServiceAccounts: []string{"WEB/*"}}, "*")},
			grants:     []kmsv1alpha1.KeyGrantSpec{{Grantee: kmsv1alpha1.GrantPrincipal{ServiceAccount: "WEB/frontend"}, Operations: []string{"Decrypt"}}}}),
	)
})
