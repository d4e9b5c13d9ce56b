package main

import (
	"bytes"
	"strings"
	"testing"
)

// Binary output is the bytes themselves only for -o raw; anything else is
// one line of base64, which a shell variable can hold.
func TestWriteBytes(t *testing.T) {
	for name, tc := range map[string]struct {
		output, want string
	}{
		"raw":    {output: "raw", want: "\x00\xffk"},
		"base64": {output: "base64", want: "AP9r\n"},
		"text":   {output: "", want: "AP9r\n"},
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			if err := writeBytes(&out, []byte("\x00\xffk"), tc.output); err != nil || out.String() != tc.want {
				t.Fatalf("writeBytes = %q, %v; want %q", out.String(), err, tc.want)
			}
		})
	}
}

// verify and verify-mac read the message from the input and the proof from
// a base64 flag, as $(cat sig.b64) gives it (with a newline), and name the
// flag when it is not base64.
func TestReadSigned(t *testing.T) {
	s := io3{in: strings.NewReader("the message")}
	msg, proof, err := readSigned(s, "-", "signature", "AP9r\n")
	if err != nil || string(msg) != "the message" || string(proof) != "\x00\xffk" {
		t.Fatalf("readSigned = %q, %q, %v", msg, proof, err)
	}
	_, _, err = readSigned(io3{in: strings.NewReader("m")}, "-", "mac", "not base64!")
	if err == nil || !strings.HasPrefix(err.Error(), "--mac is not base64") {
		t.Fatalf("err = %v, want it to name --mac", err)
	}
}
