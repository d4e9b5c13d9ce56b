package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
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

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/crypto"
)

// importCmd wraps material with the key's published wrapping key, puts it
// in a Secret and points the Key at it, as docs/keys.md describes doing by
// hand with openssl.
func importCmd(conn *connection, s io3) *cobra.Command {
	var file string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "import-key-material KEY -f MATERIAL",
		Short: "Import your own key material into an External key (wraps it locally; the plaintext never leaves this machine)",
		Long: `Wraps MATERIAL with the RSA 4096 public key in the Key's status.importParameters,
stores it with the import token in a new Secret next to the Key, and points
spec.import.secretRef at it. MATERIAL is 32 bytes for SYMMETRIC_DEFAULT, the
key size for HMAC_*, and a PKCS#8 DER private key for RSA_* and ECC_*.
Symmetric and HMAC material use RSAES_OAEP_SHA_256, private keys
RSA_AES_KEY_WRAP_SHA_256.`,
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
			params := key.Status.ImportParameters
			if params == nil || !time.Now().Before(params.ExpiresAt.Time) {
				return fmt.Errorf("key %s/%s has no current import parameters in status yet; try again in a few seconds", ns, name)
			}
			alg := kmsv1alpha1.WrappingRSAESOAEPSHA256
			if _, ok := crypto.Asymmetric(string(key.Spec.KeySpec)); ok {
				alg = kmsv1alpha1.WrappingRSAAESKeyWrapSHA256
			}
			wrapped, err := wrapMaterial(params.WrappingPublicKey, alg, material)
			if err != nil {
				return err
			}
			secret := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: name + "-import-"},
				Data: map[string][]byte{
					kmsv1alpha1.ImportSecretWrappedMaterial: wrapped,
					kmsv1alpha1.ImportSecretToken:           []byte(params.ImportToken),
				},
			}
			if err := c.Create(ctx, secret); err != nil {
				return err
			}
			patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"import": map[string]any{
				"secretRef": map[string]string{"name": secret.Name}, "wrappingAlgorithm": alg}}})
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
	cmd.Flags().StringVarP(&file, "filename", "f", "-", "The material; - for stdin.")
	cmd.Flags().DurationVar(&wait, "wait", time.Minute, "Wait this long for the import to finish; 0 returns at once.")
	return cmd
}

// wrapMaterial wraps material for the PEM RSA wrapping key by alg.
func wrapMaterial(wrappingPEM, alg string, material []byte) ([]byte, error) {
	block, _ := pem.Decode([]byte(wrappingPEM))
	if block == nil {
		return nil, errors.New("status.importParameters.wrappingPublicKey is not PEM")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
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
	tail, err := crypto.WrapKWP(aesKey, material)
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
