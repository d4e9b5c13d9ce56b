// Command kubectl-kms is the kubectl plugin for kubekms: `kubectl kms ...`.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/crypto"
	"github.com/kubekms/kubekms/internal/kmsclient"
	"github.com/kubekms/kubekms/internal/policy"
)

// maxInput bounds what the CLI reads: larger data belongs in a file
// encrypted with a data key by the application itself.
const maxInput = 64 << 20

func main() {
	if err := newRoot().Execute(); errors.Is(err, errNo) {
		os.Exit(1)
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "error:", describeError(err))
		os.Exit(1)
	}
}

// describeError turns a gRPC status into "Code: message".
func describeError(err error) string {
	if st, ok := status.FromError(errors.Unwrap(err)); ok && st.Code() != 0 {
		return fmt.Sprintf("%s: %s", st.Code(), st.Message())
	}
	if st, ok := status.FromError(err); ok && st.Code() != 0 {
		return fmt.Sprintf("%s: %s", st.Code(), st.Message())
	}
	return err.Error()
}

type io3 struct {
	in       io.Reader
	out, err io.Writer
}

func newRoot() *cobra.Command {
	conn := &connection{kube: genericclioptions.NewConfigFlags(true)}
	streams := io3{in: os.Stdin, out: os.Stdout, err: os.Stderr}
	root := &cobra.Command{
		Use:           "kubectl-kms",
		Short:         "Use kubekms keys: encrypt, decrypt, data keys, rotation",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	f := root.PersistentFlags()
	conn.kube.AddFlags(f)
	f.StringVar(&conn.address, "address", "", "Data plane address host:port (default $KUBEKMS_ADDRESS; else through the API server to a manager pod).")
	f.StringVar(&conn.caFile, "ca-file", "", "CA certificate of the data plane (default $KUBEKMS_CA_FILE).")
	f.BoolVar(&conn.insecure, "insecure", false, "Connect without TLS (local development only).")
	f.StringVar(&conn.token, "kms-token", "", "Bearer token with audience kubekms (default $KUBEKMS_TOKEN).")
	f.StringVar(&conn.serviceAccount, "service-account", "", "Act as this ServiceAccount of the namespace: request a short-lived token for it.")
	f.StringVar(&conn.kmsNamespace, "kms-namespace", "kubekms-system", "Namespace where kubekms runs.")
	f.DurationVar(&conn.timeout, "kms-timeout", time.Minute, "Give up on a throttled or unavailable service after this long.")

	root.AddCommand(
		encryptCmd(conn, streams), decryptCmd(conn, streams), reEncryptCmd(conn, streams),
		generateDataKeyCmd(conn, streams), generateRandomCmd(conn, streams),
		describeCmd(conn, streams), rotateCmd(conn, streams), canICmd(conn, streams),
		generateMacCmd(conn, streams), verifyMacCmd(conn, streams),
		getPublicKeyCmd(conn, streams), signCmd(conn, streams), verifyCmd(conn, streams),
		importCmd(conn, streams), getParametersForImportCmd(conn, streams),
	)
	return root
}

// run dials, runs fn, and closes.
func (c *connection) run(cmd *cobra.Command, fn func(ctx context.Context, kms *kmsclient.Client) error) error {
	ctx := cmd.Context()
	kms, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	defer kms.Close()
	return fn(ctx, kms)
}

func parseContext(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--encryption-context %q: want key=value", p)
		}
		out[k] = v
	}
	return out, nil
}

// readRequest reads the input and parses the encryption context.
func readRequest(s io3, file string, pairs []string) ([]byte, map[string]string, error) {
	ec, err := parseContext(pairs)
	if err != nil {
		return nil, nil, err
	}
	data, err := readInput(s, file)
	return data, ec, err
}

func readInput(s io3, file string) ([]byte, error) {
	var r io.Reader = s.in
	if file != "" && file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxInput {
		return nil, fmt.Errorf("input is larger than %d MiB", maxInput>>20)
	}
	return data, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func encryptCmd(conn *connection, s io3) *cobra.Command {
	var key, file, output string
	var ctxPairs []string
	cmd := &cobra.Command{
		Use:   "encrypt --key KEY [-f FILE]",
		Short: "Encrypt a file or stdin; over 4 KiB with a data key (envelope encryption)",
		Example: `  echo -n 's3cr3t' | kubectl kms encrypt --key payments --service-account api
  kubectl kms encrypt --key shop/payments -f big.json --encryption-context tenant=shop > big.json.kms`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, ec, err := readRequest(s, file, ctxPairs)
			if err != nil {
				return err
			}
			if len(data) == 0 {
				return errors.New("nothing to encrypt: the input is empty")
			}
			return conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				var blob []byte
				var keyID string
				var version uint32
				envelope := len(data) > 4096
				if envelope {
					dk, err := kms.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: key, KeySpec: "AES_256", EncryptionContext: ec})
					if err != nil {
						return err
					}
					blob, err = crypto.SealEnvelope(dk.Plaintext, dk.CiphertextBlob, data)
					clear(dk.Plaintext)
					if err != nil {
						return err
					}
					keyID, version = dk.KeyId, dk.KeyVersion
				} else {
					enc, err := kms.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: key, Plaintext: data, EncryptionContext: ec})
					if err != nil {
						return err
					}
					blob, keyID, version = enc.CiphertextBlob, enc.KeyId, enc.KeyVersion
				}
				text := crypto.EncodeText(blob)
				if envelope {
					text = crypto.EncodeEnvelopeText(blob)
				}
				switch output {
				case "raw":
					_, err := s.out.Write(blob)
					return err
				case "json":
					return writeJSON(s.out, map[string]any{"ciphertext": text, "keyId": keyID, "keyVersion": version, "envelope": envelope})
				default:
					_, err := fmt.Fprintln(s.out, text)
					return err
				}
			})
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "Key: name, namespace/name or keyID.")
	cmd.Flags().StringVarP(&file, "filename", "f", "-", "Input file; - for stdin.")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text (kms:v1:...), raw or json.")
	cmd.Flags().StringArrayVarP(&ctxPairs, "encryption-context", "e", nil, "Encryption context key=value (repeatable); decrypt needs the same.")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func decryptCmd(conn *connection, s io3) *cobra.Command {
	var key, file, output string
	var ctxPairs []string
	cmd := &cobra.Command{
		Use:     "decrypt [-f FILE]",
		Short:   "Decrypt a kubekms ciphertext (kms:v1: or kms:env1:, text or raw)",
		Example: `  kubectl kms decrypt -f secret.kms --service-account api`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, ec, err := readRequest(s, file, ctxPairs)
			if err != nil {
				return err
			}
			return conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				pt, err := kms.DecryptAny(ctx, data, ec, key)
				if err != nil {
					return err
				}
				if output == "json" {
					return writeJSON(s.out, map[string]any{"plaintext": base64.StdEncoding.EncodeToString(pt)})
				}
				_, err = s.out.Write(pt)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "Optional: the key the ciphertext must belong to.")
	cmd.Flags().StringVarP(&file, "filename", "f", "-", "Input file; - for stdin.")
	cmd.Flags().StringVarP(&output, "output", "o", "raw", "raw (the plaintext bytes) or json (base64).")
	cmd.Flags().StringArrayVarP(&ctxPairs, "encryption-context", "e", nil, "Encryption context key=value (repeatable).")
	return cmd
}

func reEncryptCmd(conn *connection, s io3) *cobra.Command {
	var dest, file string
	var ctxPairs, destPairs []string
	cmd := &cobra.Command{
		Use:   "re-encrypt [-f FILE] [--destination-key KEY]",
		Short: "Re-encrypt a ciphertext under the current version (or another key) without revealing it",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ec, err := parseContext(ctxPairs)
			if err != nil {
				return err
			}
			dec, err := parseContext(destPairs)
			if err != nil {
				return err
			}
			data, err := readInput(s, file)
			if err != nil {
				return err
			}
			return conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				re, err := kms.ReEncrypt(ctx, &kmsv1.ReEncryptRequest{CiphertextBlob: data, SourceEncryptionContext: ec, DestinationKeyId: dest, DestinationEncryptionContext: dec})
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(s.out, crypto.EncodeText(re.CiphertextBlob))
				return err
			})
		},
	}
	cmd.Flags().StringVar(&dest, "destination-key", "", "Key to encrypt under (default: the same key, current version).")
	cmd.Flags().StringVarP(&file, "filename", "f", "-", "Input file; - for stdin.")
	cmd.Flags().StringArrayVarP(&ctxPairs, "encryption-context", "e", nil, "Source encryption context key=value.")
	cmd.Flags().StringArrayVar(&destPairs, "destination-encryption-context", nil, "Destination encryption context key=value.")
	return cmd
}

func generateDataKeyCmd(conn *connection, s io3) *cobra.Command {
	var key, spec string
	var n uint32
	var ctxPairs []string
	cmd := &cobra.Command{
		Use:   "generate-data-key --key KEY",
		Short: "Make a data key: prints it in plaintext (base64) and encrypted, as JSON",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ec, err := parseContext(ctxPairs)
			if err != nil {
				return err
			}
			if n != 0 {
				spec = ""
			}
			return conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				dk, err := kms.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: key, KeySpec: spec, NumberOfBytes: n, EncryptionContext: ec})
				if err != nil {
					return err
				}
				return writeJSON(s.out, map[string]any{
					"plaintext": base64.StdEncoding.EncodeToString(dk.Plaintext), "ciphertext": crypto.EncodeText(dk.CiphertextBlob),
					"keyId": dk.KeyId, "keyVersion": dk.KeyVersion,
				})
			})
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "Key: name, namespace/name or keyID.")
	cmd.Flags().StringVar(&spec, "key-spec", "AES_256", "AES_256 or AES_128.")
	cmd.Flags().Uint32Var(&n, "bytes", 0, "Number of bytes (1..1024) instead of --key-spec.")
	cmd.Flags().StringArrayVarP(&ctxPairs, "encryption-context", "e", nil, "Encryption context key=value (repeatable).")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func generateRandomCmd(conn *connection, s io3) *cobra.Command {
	var n uint32
	var output string
	cmd := &cobra.Command{
		Use:   "generate-random --bytes N",
		Short: "Random bytes from the service (1..1024), base64 by default",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				r, err := kms.GenerateRandom(ctx, &kmsv1.GenerateRandomRequest{NumberOfBytes: n})
				if err != nil {
					return err
				}
				if output == "raw" {
					_, err = s.out.Write(r.Plaintext)
					return err
				}
				_, err = fmt.Fprintln(s.out, base64.StdEncoding.EncodeToString(r.Plaintext))
				return err
			})
		},
	}
	cmd.Flags().Uint32Var(&n, "bytes", 32, "Number of bytes, 1..1024.")
	cmd.Flags().StringVarP(&output, "output", "o", "base64", "base64 or raw.")
	return cmd
}

func describeCmd(conn *connection, s io3) *cobra.Command {
	return &cobra.Command{
		Use:   "describe KEY",
		Short: "Show a key's metadata as the data plane sees it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				d, err := kms.DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: args[0]})
				if err != nil {
					return err
				}
				m := d.KeyMetadata
				fmt.Fprintf(s.out, "Key:              %s/%s\nKey ID:           %s\nKey spec:         %s\nKey usage:        %s\nState:            %s\nOrigin:           %s\nCurrent version:  %d\nCreated:          %s\nRotation enabled: %t\n",
					m.Namespace, m.Name, m.KeyId, m.KeySpec, m.KeyUsage, m.KeyState, m.Origin, m.CurrentVersion, m.CreationDate.AsTime().Format(time.RFC3339), m.RotationEnabled)
				if m.NextRotationDate != nil {
					fmt.Fprintf(s.out, "Next rotation:    %s\n", m.NextRotationDate.AsTime().Format(time.RFC3339))
				}
				if m.Description != "" {
					fmt.Fprintf(s.out, "Description:      %s\n", m.Description)
				}
				return nil
			})
		},
	}
}

func rotateCmd(conn *connection, s io3) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate KEY",
		Short: "Rotate a key now (sets the kms.kubekms.io/rotate annotation: one new version)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, name, err := conn.keyClient(args[0])
			if err != nil {
				return err
			}
			value := time.Now().UTC().Format(time.RFC3339Nano)
			patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, kmsv1alpha1.RotateAnnotation, value)
			key := &kmsv1alpha1.Key{}
			key.Namespace, key.Name = ns, name
			if err := c.Patch(cmd.Context(), key, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
				return err
			}
			_, err = fmt.Fprintf(s.out, "key.kms.kubekms.io/%s rotation requested (%s=%s)\n", name, kmsv1alpha1.RotateAnnotation, value)
			return err
		},
	}
}

// keyClient is a Kubernetes client for kubekms objects, with the namespace
// and name of a key given as NAME or NAMESPACE/NAME.
func (c *connection) keyClient(ref string) (client.Client, string, string, error) {
	restConfig, err := c.kube.ToRESTConfig()
	if err != nil {
		return nil, "", "", err
	}
	scheme := runtime.NewScheme()
	if err := kmsv1alpha1.AddToScheme(scheme); err != nil {
		return nil, "", "", err
	}
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, "", "", err
	}
	kc, err := client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		return nil, "", "", err
	}
	ns, err := c.namespace()
	if err != nil {
		return nil, "", "", err
	}
	name := ref
	if before, after, ok := strings.Cut(ref, "/"); ok {
		ns, name = before, after
	}
	return kc, ns, name, nil
}

// errNo makes can-i exit 1 for "no", as kubectl auth can-i does.
var errNo = errors.New("no")

func canICmd(conn *connection, s io3) *cobra.Command {
	var key string
	var ctxPairs []string
	cmd := &cobra.Command{
		Use:   "can-i ACTION --key KEY [--as PRINCIPAL]",
		Short: "Say whether you (or --as someone) may perform an action on a key, and what decides it",
		Example: `  kubectl kms can-i decrypt --key shop/payments --as system:serviceaccount:web:frontend
  kubectl kms can-i encrypt --key payments -e tenant=shop --service-account api`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ec, err := parseContext(ctxPairs)
			if err != nil {
				return err
			}
			// --as names the principal asked about, as in kubectl auth can-i;
			// the question itself is asked with the caller's own identity.
			var about string
			if conn.kube.Impersonate != nil {
				about, *conn.kube.Impersonate = *conn.kube.Impersonate, ""
			}
			return conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				r, err := kms.ExplainAccess(ctx, &kmsv1.ExplainAccessRequest{KeyId: key, Action: canonicalAction(args[0]), Principal: about, EncryptionContext: ec})
				if err != nil {
					return err
				}
				answer := "no"
				if r.Allowed {
					answer = "yes"
				}
				fmt.Fprintln(s.out, answer)
				if r.DecidedBy != "" {
					fmt.Fprintf(s.out, "decided by: %s\n", r.DecidedBy)
				}
				fmt.Fprintln(s.out, r.Explanation)
				if !r.Allowed {
					return errNo
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "Key: name, namespace/name or keyID.")
	cmd.Flags().StringArrayVarP(&ctxPairs, "encryption-context", "e", nil, "Encryption context key=value (repeatable).")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

// canonicalAction turns "decrypt" or "generate-data-key" into the
// action's name (Decrypt, GenerateDataKey); the service refuses other names.
func canonicalAction(a string) string {
	if name, ok := policy.CanonicalAction(a); ok {
		return name
	}
	return a
}

func generateMacCmd(conn *connection, s io3) *cobra.Command {
	var key, file, output string
	cmd := &cobra.Command{
		Use:   "generate-mac --key KEY [-f FILE]",
		Short: "HMAC of a message (up to 4096 bytes) with an HMAC key; base64 by default",
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := readInput(s, file)
			if err != nil {
				return err
			}
			return conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				r, err := kms.GenerateMac(ctx, &kmsv1.GenerateMacRequest{KeyId: key, Message: data})
				if err != nil {
					return err
				}
				if output == "raw" {
					_, err = s.out.Write(r.Mac)
					return err
				}
				_, err = fmt.Fprintln(s.out, base64.StdEncoding.EncodeToString(r.Mac))
				return err
			})
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "HMAC key: name, namespace/name or keyID.")
	cmd.Flags().StringVarP(&file, "filename", "f", "-", "Message file; - for stdin.")
	cmd.Flags().StringVarP(&output, "output", "o", "base64", "base64 or raw.")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func verifyMacCmd(conn *connection, s io3) *cobra.Command {
	var key, file, mac string
	cmd := &cobra.Command{
		Use:   "verify-mac --key KEY --mac BASE64 [-f FILE]",
		Short: "Check an HMAC; exits 1 when it does not verify",
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := readInput(s, file)
			if err != nil {
				return err
			}
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(mac))
			if err != nil {
				return fmt.Errorf("--mac is not base64: %w", err)
			}
			return conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				r, err := kms.VerifyMac(ctx, &kmsv1.VerifyMacRequest{KeyId: key, Message: data, Mac: raw})
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(s.out, "valid (key version %d)\n", r.KeyVersion)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "HMAC key: name, namespace/name or keyID.")
	cmd.Flags().StringVarP(&file, "filename", "f", "-", "Message file; - for stdin.")
	cmd.Flags().StringVar(&mac, "mac", "", "The MAC, base64.")
	_ = cmd.MarkFlagRequired("key")
	_ = cmd.MarkFlagRequired("mac")
	return cmd
}

func getPublicKeyCmd(conn *connection, s io3) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get-public-key KEY [-o pem|der]",
		Short: "Download an asymmetric key's public key (PEM by default)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				r, err := kms.GetPublicKey(ctx, &kmsv1.GetPublicKeyRequest{KeyId: args[0]})
				if err != nil {
					return err
				}
				if output == "der" {
					_, err = s.out.Write(r.PublicKey)
				} else {
					_, err = io.WriteString(s.out, r.PublicKeyPem)
				}
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "pem", "pem or der.")
	return cmd
}

func signCmd(conn *connection, s io3) *cobra.Command {
	var key, file, alg, messageType string
	cmd := &cobra.Command{
		Use:     "sign --key KEY --algorithm ALG [-f FILE]",
		Short:   "Sign a message (or a digest) with an asymmetric key; the signature in base64",
		Example: `  kubectl kms sign --key release-signer --algorithm ECDSA_SHA_256 -f release.tar.sha256`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := readInput(s, file)
			if err != nil {
				return err
			}
			return conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				r, err := kms.Sign(ctx, &kmsv1.SignRequest{KeyId: key, Message: data, MessageType: messageType, SigningAlgorithm: alg})
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(s.out, base64.StdEncoding.EncodeToString(r.Signature))
				return err
			})
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "Signing key: name, namespace/name or keyID.")
	cmd.Flags().StringVarP(&file, "filename", "f", "-", "Message file; - for stdin.")
	cmd.Flags().StringVar(&alg, "algorithm", "", "Signing algorithm, e.g. ECDSA_SHA_256, RSASSA_PSS_SHA_256, ED25519_SHA_512.")
	cmd.Flags().StringVar(&messageType, "message-type", "RAW", "RAW or DIGEST.")
	_ = cmd.MarkFlagRequired("key")
	_ = cmd.MarkFlagRequired("algorithm")
	return cmd
}

func verifyCmd(conn *connection, s io3) *cobra.Command {
	var key, file, alg, messageType, signature string
	cmd := &cobra.Command{
		Use:   "verify --key KEY --algorithm ALG --signature BASE64 [-f FILE]",
		Short: "Check a signature made by sign; exits non-zero when it does not verify",
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := readInput(s, file)
			if err != nil {
				return err
			}
			sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(signature))
			if err != nil {
				return fmt.Errorf("--signature is not base64: %w", err)
			}
			return conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				r, err := kms.Verify(ctx, &kmsv1.VerifyRequest{KeyId: key, Message: data, MessageType: messageType, Signature: sig, SigningAlgorithm: alg})
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(s.out, "valid (key version %d)\n", r.KeyVersion)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "Signing key: name, namespace/name or keyID.")
	cmd.Flags().StringVarP(&file, "filename", "f", "-", "Message file; - for stdin.")
	cmd.Flags().StringVar(&alg, "algorithm", "", "Signing algorithm.")
	cmd.Flags().StringVar(&messageType, "message-type", "RAW", "RAW or DIGEST.")
	cmd.Flags().StringVar(&signature, "signature", "", "The signature, base64.")
	_ = cmd.MarkFlagRequired("key")
	_ = cmd.MarkFlagRequired("algorithm")
	_ = cmd.MarkFlagRequired("signature")
	return cmd
}
