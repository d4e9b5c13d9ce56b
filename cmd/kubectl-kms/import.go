package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keyspec"
	"github.com/kubekms/kubekms/internal/kmsclient"
	"github.com/kubekms/kubekms/internal/kmscrypto"
)

// importCmd gets the key's import parameters from the data plane
// (GetParametersForImport), wraps material with the wrapping key, puts it in
// a Secret with the import token and points the Key at it, as docs/keys.md
// describes doing by hand with openssl.
func importCmd(conn *connection, s io3) *cobra.Command {
	var file string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "import-key-material KEY -f MATERIAL",
		Short: "Import your own key material into an External key (wraps it locally; the plaintext never leaves this machine)",
		Long: `Gets the key's import parameters from the data plane (GetParametersForImport:
you need that action under the key's policy, or RBAC verb
getparametersforimport on the key), wraps MATERIAL with the RSA 4096 wrapping
public key, stores it with the import token in a new Secret next to the Key,
and points spec.import.secretRef at it. MATERIAL is 32 bytes for
SYMMETRIC_DEFAULT, the key size for HMAC_*, and a PKCS#8 DER private key for
RSA_* and ECC_*. Symmetric and HMAC material use RSAES_OAEP_SHA_256, private
keys RSA_AES_KEY_WRAP_SHA_256.`,
		Example: `  openssl rand 32 > material.bin && kubectl kms import-key-material byok -f material.bin`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, name, err := conn.keyClient(args[0])
			if err != nil {
				return err
			}
			material, err := readInput(s, file)
			if err != nil {
				return err
			}
			defer clear(material)
			ctx := cmd.Context()
			key := &kmsv1alpha1.Key{}
			if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, key); err != nil {
				return err
			}
			if key.Spec.Origin != kmsv1alpha1.KeyOriginExternal {
				return fmt.Errorf("key %s/%s has origin %s: only origin External keys take imported material", ns, name, key.Spec.Origin)
			}
			alg := kmsv1alpha1.WrappingRSAESOAEPSHA256
			spec, _ := keyspec.Lookup(string(key.Spec.KeySpec))
			if _, ok := spec.Asymmetric(); ok {
				alg = kmsv1alpha1.WrappingRSAAESKeyWrapSHA256
			}
			var params *kmsv1.GetParametersForImportResponse
			if err := conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				params, err = kms.GetParametersForImport(ctx, &kmsv1.GetParametersForImportRequest{
					KeyId: ns + "/" + name, WrappingAlgorithm: alg, WrappingKeySpec: wrappingKeySpec})
				return err
			}); err != nil {
				return err
			}
			if !time.Now().Before(params.ParametersValidTo.AsTime()) {
				return fmt.Errorf("the import parameters of key %s/%s expired at %s; try again in a few seconds",
					ns, name, params.ParametersValidTo.AsTime().Format(time.RFC3339))
			}
			wrapped, err := wrapMaterial(params.PublicKey, alg, material)
			if err != nil {
				return err
			}
			secret := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: name + "-import-"},
				Data: map[string][]byte{
					kmsv1alpha1.ImportSecretWrappedMaterial: wrapped,
					kmsv1alpha1.ImportSecretToken:           params.ImportToken,
				},
			}
			if err := c.Create(ctx, secret); err != nil {
				return err
			}
			// The request names the exact material: whoever may edit Secrets
			// cannot swap it before the manager reads it.
			sum := sha256.Sum256(wrapped)
			patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"import": map[string]any{
				"secretRef": map[string]string{"name": secret.Name}, "wrappedKeyMaterialSHA256": hex.EncodeToString(sum[:]), "wrappingAlgorithm": alg}}})
			before := key.Status.CurrentVersion
			if err := c.Patch(ctx, key, client.RawPatch(types.MergePatchType, patch)); err != nil {
				return err
			}
			fmt.Fprintf(s.out, "secret/%s created; key.kms.kubekms.io/%s imports it (%s)\n", secret.Name, name, alg)
			if wait <= 0 {
				return nil
			}
			return waitImported(ctx, c, key, secret.Name, before, wait, s)
		},
	}
	fileFlag(cmd, &file, "The material")
	cmd.Flags().DurationVar(&wait, "wait", time.Minute, "Wait this long for the import to finish; 0 returns at once.")
	return cmd
}

// wrappingKeySpec is the only wrapping key spec kubekms makes.
const wrappingKeySpec = "RSA_4096"

// getParametersForImportCmd prints a key's import parameters, for wrapping
// material by hand with openssl (docs/keys.md).
func getParametersForImportCmd(conn *connection, s io3) *cobra.Command {
	var output, alg string
	cmd := &cobra.Command{
		Use:   "get-parameters-for-import KEY [-o text|json]",
		Short: "Print an External key's wrapping public key (PEM), import token (base64) and expiry",
		Long: `Gets the key's current import parameters from the data plane
(GetParametersForImport: you need that action under the key's policy, or RBAC
verb getparametersforimport on the key). The import token is base64 here;
decode it into the import Secret's importToken. The parameters stay the same
until they expire or an import uses them; then the manager makes new ones.`,
		Example: `  kubectl kms get-parameters-for-import byok -o json > params.json
  jq -r .publicKeyPem params.json > wrapping.pem
  jq -r .importToken params.json | base64 -d > token.bin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output must be text or json, got %q", output)
			}
			return conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				r, err := kms.GetParametersForImport(ctx, &kmsv1.GetParametersForImportRequest{
					KeyId: args[0], WrappingAlgorithm: alg, WrappingKeySpec: wrappingKeySpec})
				if err != nil {
					return err
				}
				pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: r.PublicKey}))
				token := base64.StdEncoding.EncodeToString(r.ImportToken)
				validTo := r.ParametersValidTo.AsTime().UTC().Format(time.RFC3339)
				if output == "json" {
					return writeJSON(s.out, map[string]any{
						"keyId": r.KeyId, "importToken": token, "publicKey": base64.StdEncoding.EncodeToString(r.PublicKey),
						"publicKeyPem": pubPEM, "wrappingKeySpec": wrappingKeySpec, "parametersValidTo": validTo,
					})
				}
				_, err = fmt.Fprintf(s.out, "Key ID:              %s\nParameters valid to: %s\nImport token:        %s\nWrapping public key: %s\n%s",
					r.KeyId, validTo, token, wrappingKeySpec, pubPEM)
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json.")
	cmd.Flags().StringVar(&alg, "wrapping-algorithm", "", "Optional check: RSAES_OAEP_SHA_256 or RSA_AES_KEY_WRAP_SHA_256 (set the same in the Key's spec.import.wrappingAlgorithm).")
	return cmd
}

// wrapMaterial wraps material for the RSA wrapping key (SubjectPublicKeyInfo
// DER) by alg.
func wrapMaterial(wrappingKey []byte, alg string, material []byte) ([]byte, error) {
	k, err := x509.ParsePKIXPublicKey(wrappingKey)
	if err != nil {
		return nil, fmt.Errorf("the wrapping public key: %w", err)
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("the wrapping key is not RSA")
	}
	if alg == kmsv1alpha1.WrappingRSAESOAEPSHA256 {
		return rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, material, nil)
	}
	aesKey := make([]byte, 32)
	if _, err := rand.Read(aesKey); err != nil {
		return nil, err
	}
	defer clear(aesKey)
	head, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, aesKey, nil)
	if err != nil {
		return nil, err
	}
	tail, err := kmscrypto.WrapKWP(aesKey, material)
	if err != nil {
		return nil, err
	}
	return append(head, tail...), nil
}

// waitImported waits for a new version, or for the controller to refuse
// this Secret (its message says why).
func waitImported(ctx context.Context, c client.Client, key *kmsv1alpha1.Key, secret string, before int32, wait time.Duration, s io3) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		if err := c.Get(ctx, client.ObjectKeyFromObject(key), key); err != nil {
			return err
		}
		if key.Status.CurrentVersion > before {
			_, err := fmt.Fprintf(s.out, "key.kms.kubekms.io/%s imported as version %d\n", key.Name, key.Status.CurrentVersion)
			return err
		}
		if cond := meta.FindStatusCondition(key.Status.Conditions, kmsv1alpha1.KeyConditionImported); cond != nil &&
			cond.Reason == kmsv1alpha1.KeyReasonImportFailed && strings.Contains(cond.Message, "Secret "+key.Namespace+"/"+secret+":") {
			return errors.New(cond.Message)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the import has not finished after %s: see kubectl describe key %s", wait, key.Name)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
