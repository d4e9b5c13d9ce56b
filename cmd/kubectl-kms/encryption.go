package main

// Commands that encrypt and decrypt: encrypt, decrypt, re-encrypt,
// generate-data-key and generate-random.

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	"github.com/kubekms/kubekms/internal/kmsclient"
	"github.com/kubekms/kubekms/internal/kmscrypto"
)

// encryptCmd is `encrypt`: Encrypt for input up to 4 KiB, else envelope
// encryption (GenerateDataKey, then AES-256-GCM here; kms:env1:). Prints
// the ciphertext as text (kms:v1: or kms:env1:), raw bytes or JSON.
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
					blob, err = kmscrypto.SealEnvelope(dk.Plaintext, dk.CiphertextBlob, data)
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
				text := kmscrypto.EncodeText(blob)
				if envelope {
					text = kmscrypto.EncodeEnvelopeText(blob)
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
	keyFlag(cmd, &key, "Key")
	fileFlag(cmd, &file, "Input file")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text (kms:v1:...), raw or json.")
	cmd.Flags().StringArrayVarP(&ctxPairs, "encryption-context", "e", nil, "Encryption context key=value (repeatable); decrypt needs the same.")
	return cmd
}

// decryptCmd is `decrypt`: Decrypt of either form encrypt writes, text or
// raw; prints the plaintext bytes, or JSON with them in base64.
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
	fileFlag(cmd, &file, "Input file")
	cmd.Flags().StringVarP(&output, "output", "o", "raw", "raw (the plaintext bytes) or json (base64).")
	cmd.Flags().StringArrayVarP(&ctxPairs, "encryption-context", "e", nil, "Encryption context key=value (repeatable).")
	return cmd
}

// reEncryptCmd is `re-encrypt`: ReEncrypt under the key's current version
// or --destination-key; the plaintext never leaves the service.
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
				_, err = fmt.Fprintln(s.out, kmscrypto.EncodeText(re.CiphertextBlob))
				return err
			})
		},
	}
	cmd.Flags().StringVar(&dest, "destination-key", "", "Key to encrypt under (default: the same key, current version).")
	fileFlag(cmd, &file, "Input file")
	cmd.Flags().StringArrayVarP(&ctxPairs, "encryption-context", "e", nil, "Source encryption context key=value.")
	cmd.Flags().StringArrayVar(&destPairs, "destination-encryption-context", nil, "Destination encryption context key=value.")
	return cmd
}

// generateDataKeyCmd is `generate-data-key`: GenerateDataKey, printed as
// JSON (plaintext in base64, ciphertext as text). --bytes overrides
// --key-spec.
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
					"plaintext": base64.StdEncoding.EncodeToString(dk.Plaintext), "ciphertext": kmscrypto.EncodeText(dk.CiphertextBlob),
					"keyId": dk.KeyId, "keyVersion": dk.KeyVersion,
				})
			})
		},
	}
	keyFlag(cmd, &key, "Key")
	cmd.Flags().StringVar(&spec, "key-spec", "AES_256", "AES_256 or AES_128.")
	cmd.Flags().Uint32Var(&n, "bytes", 0, "Number of bytes (1..1024) instead of --key-spec.")
	cmd.Flags().StringArrayVarP(&ctxPairs, "encryption-context", "e", nil, "Encryption context key=value (repeatable).")
	return cmd
}

// generateRandomCmd is `generate-random`: GenerateRandom, in base64 or raw.
// It needs no key.
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
				return writeBytes(s.out, r.Plaintext, output)
			})
		},
	}
	cmd.Flags().Uint32Var(&n, "bytes", 32, "Number of bytes, 1..1024.")
	cmd.Flags().StringVarP(&output, "output", "o", "base64", "base64 or raw.")
	return cmd
}
