package main

// Commands for MAC and asymmetric keys: generate-mac, verify-mac,
// get-public-key, sign and verify.

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	"github.com/kubekms/kubekms/internal/kmsclient"
)

// generateMacCmd is `generate-mac`: GenerateMac with an HMAC key, in
// base64 or raw.
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
				return writeBytes(s.out, r.Mac, output)
			})
		},
	}
	keyFlag(cmd, &key, "HMAC key")
	fileFlag(cmd, &file, "Message file")
	cmd.Flags().StringVarP(&output, "output", "o", "base64", "base64 or raw.")
	return cmd
}

// verifyMacCmd is `verify-mac`: VerifyMac; an invalid MAC is the
// service's error, so the command exits 1.
func verifyMacCmd(conn *connection, s io3) *cobra.Command {
	var key, file, mac string
	cmd := &cobra.Command{
		Use:   "verify-mac --key KEY --mac BASE64 [-f FILE]",
		Short: "Check an HMAC; exits 1 when it does not verify",
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, raw, err := readSigned(s, file, "mac", mac)
			if err != nil {
				return err
			}
			return conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				r, err := kms.VerifyMac(ctx, &kmsv1.VerifyMacRequest{KeyId: key, Message: data, Mac: raw})
				if err != nil {
					return err
				}
				return writeValid(s.out, r.KeyVersion)
			})
		},
	}
	keyFlag(cmd, &key, "HMAC key")
	fileFlag(cmd, &file, "Message file")
	cmd.Flags().StringVar(&mac, "mac", "", "The MAC, base64.")
	_ = cmd.MarkFlagRequired("mac")
	return cmd
}

// getPublicKeyCmd is `get-public-key`: GetPublicKey, as PEM or DER.
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

// signCmd is `sign`: Sign a message (RAW) or a digest (DIGEST); prints
// the signature in base64.
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
				return writeBytes(s.out, r.Signature, "base64")
			})
		},
	}
	keyFlag(cmd, &key, "Signing key")
	fileFlag(cmd, &file, "Message file")
	signingFlags(cmd, &alg, &messageType)
	return cmd
}

// verifyCmd is `verify`: Verify a base64 signature; an invalid one is the
// service's error, so the command exits non-zero.
func verifyCmd(conn *connection, s io3) *cobra.Command {
	var key, file, alg, messageType, signature string
	cmd := &cobra.Command{
		Use:   "verify --key KEY --algorithm ALG --signature BASE64 [-f FILE]",
		Short: "Check a signature made by sign; exits non-zero when it does not verify",
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, sig, err := readSigned(s, file, "signature", signature)
			if err != nil {
				return err
			}
			return conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				r, err := kms.Verify(ctx, &kmsv1.VerifyRequest{KeyId: key, Message: data, MessageType: messageType, Signature: sig, SigningAlgorithm: alg})
				if err != nil {
					return err
				}
				return writeValid(s.out, r.KeyVersion)
			})
		},
	}
	keyFlag(cmd, &key, "Signing key")
	fileFlag(cmd, &file, "Message file")
	signingFlags(cmd, &alg, &messageType)
	cmd.Flags().StringVar(&signature, "signature", "", "The signature, base64.")
	_ = cmd.MarkFlagRequired("signature")
	return cmd
}
