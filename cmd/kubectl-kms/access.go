package main

// Asking who may do what: can-i.

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	"github.com/kubekms/kubekms/internal/kmsclient"
	"github.com/kubekms/kubekms/internal/policy"
)

// errNo makes can-i exit 1 for "no", as kubectl auth can-i does.
var errNo = errors.New("no")

// canICmd is `can-i`: ExplainAccess for the caller or, with --as, for
// another principal (which needs Administer on the key). Like kubectl auth
// can-i it prints yes or no and exits 1 for no.
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
	keyFlag(cmd, &key, "Key")
	cmd.Flags().StringArrayVarP(&ctxPairs, "encryption-context", "e", nil, "Encryption context key=value (repeatable).")
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
