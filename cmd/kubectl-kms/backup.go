package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	"github.com/kubekms/kubekms/internal/backup"
	"github.com/kubekms/kubekms/internal/kmsclient"
	"github.com/kubekms/kubekms/internal/recovery"
)

// backupIdentityCmd is `backup-identity`: a new backup identity (private,
// for the admin to keep offline) and its recipient (public, for the
// manager's --backup-recipient).
func backupIdentityCmd(s io3) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "backup-identity -o KEY.pem",
		Short: "Make a backup identity (ML-KEM-768+X25519): writes the private key, prints the recipient for --backup-recipient",
		Long: `Makes a backup identity and writes it to -o (mode 0600; the file must not exist).
Keep it offline: whoever holds it can open every backup made to its recipient.
The recipient printed is its public half: give it to the manager
(--backup-recipient, chart value backup.recipients).`,
		RunE: func(*cobra.Command, []string) error {
			if output == "" {
				return errors.New("--output (-o) is required: the file to write the identity to")
			}
			id, err := backup.GenerateIdentity()
			if err != nil {
				return err
			}
			pemBytes, err := id.MarshalPEM()
			if err != nil {
				return err
			}
			if err := writeNew(output, pemBytes); err != nil {
				return err
			}
			_, err = fmt.Fprintln(s.out, id.Recipient().String())
			return err
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "File to write the identity to (created, never overwritten).")
	return cmd
}

// backupCmd is `backup`: the manager's bundle, encrypted to the recipients
// it was deployed with, written to a file.
func backupCmd(conn *connection, s io3) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "backup -o FILE",
		Short: "Back up every key, policy, grant and material version, encrypted to the manager's backup recipients",
		Long: `Writes a backup bundle: every Key, KeyPolicy and KeyGrant and every material
version (tombstones included), encrypted by the manager to the backup
recipients it was deployed with, so only their identities open it. Needs RBAC
verb backup on rootoftrusts named default in the kubekms namespace
(ClusterRole kubekms-backup-operator), as the ServiceAccount of --service-account.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output == "" {
				return errors.New("--output (-o) is required: the file to write the bundle to")
			}
			return conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				bundle, err := kmsclient.ReceiveBundle(ctx, kms.Backup())
				if err != nil {
					return err
				}
				h, err := backup.Inspect(bundle)
				if err != nil {
					return fmt.Errorf("the service sent something that is not a backup bundle: %w", err)
				}
				if err := writeNew(output, bundle); err != nil {
					return err
				}
				_, err = fmt.Fprintf(s.out, "wrote %s (%d bytes, sha256:%s), taken at %s, encrypted to %v\nkeep the sha256 apart from the bundle: kubectl kms restore --sha256 checks it\n",
					output, len(bundle), digestOf(bundle), h.CreatedAt.Format("2006-01-02T15:04:05Z07:00"), h.Recipients)
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "File to write the bundle to (created, never overwritten).")
	return cmd
}

// restoreCmd is `restore`: open a bundle here with the identity, check it,
// and have the manager recreate what it holds.
func restoreCmd(conn *connection, s io3) *cobra.Command {
	var file, identity, digest string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "restore -f FILE --identity KEY.pem",
		Short: "Restore a backup bundle: every key with the same keyID, its versions, policy and grants",
		Long: `Opens the bundle here with the identity (the private key never leaves this
machine), then sends its contents over the data plane's TLS to the manager,
which reseals every version under this cluster's root of trust and recreates
the keys with the same keyIDs, their policies and grants. A bundle that does
not open (wrong identity, truncated, altered) is refused before anything is
sent. The manager refuses, writing nothing, contents that collide with keys
this cluster holds or name namespaces that do not exist; run it again to
finish a partial restore. --dry-run only opens and summarizes the bundle.
Needs RBAC verb restore on rootoftrusts named default in the kubekms namespace.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" || identity == "" {
				return errors.New("--filename (-f) and --identity are required")
			}
			if conn.insecure && !dryRun {
				return errors.New("--insecure: a restore sends every key's material; it is only sent over TLS")
			}
			contents, sum, err := openBundle(file, identity, digest)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.out, "%s opens (sha256:%s)\n", file, sum)
			defer contents.Wipe()
			if dryRun {
				return summarizeContents(s.out, file, contents)
			}
			return conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				sum, err := sendContents(ctx, kms, contents)
				if err != nil {
					return err
				}
				fmt.Fprintf(s.out, "restored %d keys, %d versions (%d of them tombstones of deleted keys), %d policies, %d grants\n",
					sum.Keys, sum.Versions, sum.Tombstones, sum.Policies, sum.Grants)
				for _, why := range sum.Skipped {
					fmt.Fprintf(s.out, "skipped: %s\n", why)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "The backup bundle.")
	cmd.Flags().StringVar(&identity, "identity", "", "The backup identity (from kubectl kms backup-identity) the bundle was encrypted to.")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "Only open the bundle and say what it holds; send nothing.")
	cmd.Flags().StringVar(&digest, "sha256", "", "The bundle's SHA-256 as recorded when it was made (kubectl kms backup's output, the RootOfTrust's status.lastBackupSHA256): a bundle with another is refused.")
	return cmd
}

// openBundle reads a bundle, checks its digest when one is given, and
// opens it with an identity file.
func openBundle(file, identity, digest string) (*recovery.Contents, string, error) {
	bundle, err := os.ReadFile(file)
	if err != nil {
		return nil, "", err
	}
	got := digestOf(bundle)
	if want := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(digest)), "sha256:"); want != "" && want != got {
		return nil, "", fmt.Errorf("%s: its SHA-256 is %s, not %s: this is not the bundle that was recorded; nothing was restored", file, got, want)
	}
	pemBytes, err := os.ReadFile(identity)
	if err != nil {
		return nil, "", err
	}
	id, err := backup.ParseIdentity(pemBytes)
	if err != nil {
		return nil, "", fmt.Errorf("--identity %s: %w", identity, err)
	}
	contents, err := recovery.Open(bundle, id)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w; nothing was restored", file, err)
	}
	return contents, got, nil
}

// sendContents restores decrypted contents through the manager.
func sendContents(ctx context.Context, kms *kmsclient.Client, contents *recovery.Contents) (*kmsv1.RestoreResponse, error) {
	plaintext, err := contents.Encode()
	if err != nil {
		return nil, err
	}
	defer clear(plaintext)
	return kmsclient.SendContents(ctx, kms.Backup(), plaintext)
}

// summarizeContents says what a bundle holds, for --dry-run.
func summarizeContents(w io.Writer, file string, c *recovery.Contents) error {
	tombstones := 0
	for _, m := range c.Material {
		if m.Tombstone {
			tombstones++
		}
	}
	_, err := fmt.Fprintf(w, "%s: taken at %s in namespace %s (root of trust %s): %d keys, %d material versions (%d tombstoned), %d grants\n",
		filepath.Base(file), c.CreatedAt.Format("2006-01-02T15:04:05Z07:00"), c.Source.Namespace, c.Source.RootOfTrust,
		len(c.Keys), len(c.Material), tombstones, len(c.Grants))
	return err
}

// digestOf is the hex SHA-256 of a bundle.
func digestOf(b []byte) string {
	d := sha256.Sum256(b)
	return hex.EncodeToString(d[:])
}

// writeNew writes data to a new file of mode 0600: an existing file is
// never overwritten.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
