package main

import (
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// io3 are the streams a command reads and writes; tests replace them.
type io3 struct {
	in       io.Reader
	out, err io.Writer
}

// newRoot builds the command tree: kubectl's connection flags, the flags
// that say how to reach the data plane (connection), and the command table.
// Every command that calls the data plane dials it through connection.run.
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

	// The command table, by job. docs/dataplane.md lists every command, and
	// test/docs keeps that list equal to this one.
	root.AddCommand(
		// Encryption and data keys (encryption.go).
		encryptCmd(conn, streams), decryptCmd(conn, streams), reEncryptCmd(conn, streams),
		generateDataKeyCmd(conn, streams), generateRandomCmd(conn, streams),
		// MACs and signatures (signing.go).
		generateMacCmd(conn, streams), verifyMacCmd(conn, streams),
		getPublicKeyCmd(conn, streams), signCmd(conn, streams), verifyCmd(conn, streams),
		// The key itself (keys.go) and bring your own key (import.go).
		describeCmd(conn, streams), rotateCmd(conn, streams),
		importCmd(conn, streams), getParametersForImportCmd(conn, streams),
		// Who may do what (access.go).
		canICmd(conn, streams),
		// Backup and restore (backup.go).
		backupIdentityCmd(streams), backupCmd(conn, streams), restoreCmd(conn, streams),
	)
	return root
}
