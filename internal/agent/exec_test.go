package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A real child process: it gets the value in its environment, and SIGHUP
// each time the files change.
func TestWrapperRunSetsEnvAndSignalsOnChange(t *testing.T) {
	dir := Dir{Path: t.TempDir(), Mode: 0o400}
	if err := dir.Write(map[string][]byte{"env-DB_PASS": []byte("one")}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	script := `echo "start $DB_PASS" >> "$OUT"; trap 'echo reloaded >> "$OUT"' HUP; trap 'exit 3' TERM; while :; do sleep 0.05; done`
	t.Setenv("OUT", out)
	w := Wrapper{Dir: dir.Path, Env: []EnvVar{{Name: "DB_PASS", File: "env-DB_PASS"}}, Signal: syscall.SIGHUP,
		Poll: 20 * time.Millisecond, Argv: []string{"sh", "-c", script}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	result := make(chan int, 1)
	go func() {
		code, err := w.Run(ctx, nil, os.Stdout, &stderr)
		if err != nil {
			t.Error(err)
		}
		result <- code
	}()
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			b, _ := os.ReadFile(out)
			if strings.Contains(string(b), want) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		b, _ := os.ReadFile(out)
		t.Fatalf("waiting for %q; have %q", want, b)
	}
	waitFor("start one")
	if err := dir.Write(map[string][]byte{"env-DB_PASS": []byte("two")}); err != nil {
		t.Fatal(err)
	}
	waitFor("reloaded")
	cancel() // SIGTERM to the child, which exits 3
	select {
	case code := <-result:
		if code != 3 {
			t.Fatalf("exit code %d, want the child's 3", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the wrapper did not return")
	}
}

func TestWrapperEnvironRefusesMissingAndNUL(t *testing.T) {
	dir := Dir{Path: t.TempDir(), Mode: 0o400}
	if err := dir.Write(map[string][]byte{"env-A": []byte("a\x00b")}); err != nil {
		t.Fatal(err)
	}
	w := Wrapper{Dir: dir.Path, Env: []EnvVar{{Name: "A", File: "env-A"}}}
	if _, err := w.Environ(nil); err == nil || !strings.Contains(err.Error(), "environment variable A: the value contains a NUL byte") {
		t.Fatalf("err = %v", err)
	}
	w.Env = []EnvVar{{Name: "B", File: "env-B"}}
	if _, err := w.Environ(nil); err == nil || !strings.Contains(err.Error(), "environment variable B") {
		t.Fatalf("err = %v", err)
	}
}
