// Command kubectl-kms is the kubectl plugin for kubekms: `kubectl kms ...`.
//
// The files are split by job: root.go builds the command tree (flags and
// the command table); connect.go reaches the data plane (address, CA,
// token, port-forward); input.go reads input and writes output; the
// commands live by what they do: encryption.go (encrypt, decrypt,
// re-encrypt, data keys, random bytes), signing.go (MACs, signatures,
// public keys), keys.go (describe, rotate), import.go (bring your own key)
// and access.go (can-i). docs/dataplane.md lists the commands, and a test
// (test/docs) keeps that list equal to the command table.
package main

import (
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc/status"
)

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
