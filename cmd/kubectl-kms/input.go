package main

// Reading what a command is given (the flags several commands share, the
// input) and writing what it prints.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// maxInput bounds what the CLI reads: larger data belongs in a file
// encrypted with a data key by the application itself.
const maxInput = 64 << 20

// keyFlag adds the required --key flag: a key of the kind what names
// ("Key", "HMAC key", ...), given as the data plane resolves it.
func keyFlag(cmd *cobra.Command, key *string, what string) {
	cmd.Flags().StringVar(key, "key", "", what+": name, namespace/name or keyID.")
	_ = cmd.MarkFlagRequired("key")
}

// fileFlag adds -f/--filename, what the command reads (what: "Input file",
// "Message file", ...); - or nothing is stdin, as readInput reads it.
func fileFlag(cmd *cobra.Command, file *string, what string) {
	cmd.Flags().StringVarP(file, "filename", "f", "-", what+"; - for stdin.")
}

// signingFlags add the required --algorithm and --message-type of sign and
// verify: a signature is checked with the algorithm and input kind it was
// made with.
func signingFlags(cmd *cobra.Command, alg, messageType *string) {
	cmd.Flags().StringVar(alg, "algorithm", "", "Signing algorithm, e.g. ECDSA_SHA_256, RSASSA_PSS_SHA_256, ED25519_SHA_512.")
	cmd.Flags().StringVar(messageType, "message-type", "RAW", "RAW or DIGEST.")
	_ = cmd.MarkFlagRequired("algorithm")
}

// parseContext parses --encryption-context pairs (key=value) into a map;
// none is nil, which the service treats as no context.
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

// readInput reads a file, or stdin for "" and "-", up to maxInput.
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

// readSigned reads the message a MAC or signature is checked against, and
// decodes that MAC or signature from the base64 value of the flag name
// (spaces around it, as from $(cat file), are ignored).
func readSigned(s io3, file, name, value string) (message, proof []byte, err error) {
	if message, err = readInput(s, file); err != nil {
		return nil, nil, err
	}
	if proof, err = base64.StdEncoding.DecodeString(strings.TrimSpace(value)); err != nil {
		return nil, nil, fmt.Errorf("--%s is not base64: %w", name, err)
	}
	return message, proof, nil
}

// writeBytes prints binary output as -o asks: the bytes themselves for
// raw, else one line of base64.
func writeBytes(w io.Writer, b []byte, output string) error {
	if output == "raw" {
		_, err := w.Write(b)
		return err
	}
	_, err := fmt.Fprintln(w, base64.StdEncoding.EncodeToString(b))
	return err
}

// writeValid prints a verification that passed; one that fails is the
// service's error, so the command exits non-zero.
func writeValid(w io.Writer, keyVersion uint32) error {
	_, err := fmt.Fprintf(w, "valid (key version %d)\n", keyVersion)
	return err
}

// writeJSON prints v as indented JSON, the form of every -o json.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
