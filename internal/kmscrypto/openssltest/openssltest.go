// Package openssltest runs openssl for tests: an implementation of the
// formats and algorithms kubekms uses that nobody here wrote, to check ours
// against. A test that uses it fails (never skips) when openssl is missing,
// so a machine without it cannot pass by testing less.
package openssltest

import (
	"bytes"
	"os/exec"
	"testing"
)

// Run runs openssl with args and stdin, and returns what it printed on
// stdout; the test fails when openssl is missing or exits non-zero.
func Run(t testing.TB, stdin []byte, args ...string) []byte {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is needed (Debian package openssl)")
	}
	cmd := exec.Command(openssl, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// PKCS8 makes a private key with `openssl genpkey args...` and returns it
// as unencrypted PKCS#8 DER, the form kubekms imports.
func PKCS8(t testing.TB, args ...string) []byte {
	t.Helper()
	pem := Run(t, nil, append([]string{"genpkey"}, args...)...)
	return Run(t, pem, "pkcs8", "-topk8", "-nocrypt", "-outform", "DER")
}
