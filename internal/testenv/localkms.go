package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// LocalKMSEnv names the local-kms binary (an AWS KMS API emulator,
// hack/localkms, pinned): `make test` builds it and sets this variable.
const LocalKMSEnv = "KUBEKMS_LOCALKMS"

// LocalKMS is a running local-kms process.
type LocalKMS struct {
	// Endpoint is its URL, http://127.0.0.1:PORT.
	Endpoint string
	cmd      *exec.Cmd
}

// StartLocalKMS runs the local-kms binary named by $KUBEKMS_LOCALKMS on a
// loopback port with its data in dir, until Stop. An empty variable is an
// error that says how to get the binary.
func StartLocalKMS(dir string) (*LocalKMS, error) {
	bin := os.Getenv(LocalKMSEnv)
	if bin == "" {
		return nil, fmt.Errorf("$%s is not set: run `make test`, which builds local-kms from hack/localkms, or set it to that binary", LocalKMSEnv)
	}
	cmd := exec.Command(bin, "-data", filepath.Join(dir, "local-kms"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// It stands for a service elsewhere: the FIPS-only mode make test-fips
	// puts kubekms's tests in is not its to inherit.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") && !strings.HasPrefix(kv, "GOFIPS140=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start local-kms: %w", err)
	}
	lk := &LocalKMS{cmd: cmd}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			// local-kms logs every call; only the first line matters.
			if _, rest, ok := strings.Cut(sc.Text(), "local-kms serving on "); ok && !sent {
				sent = true
				addr <- strings.TrimSpace(rest)
			}
		}
	}()
	select {
	case a := <-addr:
		lk.Endpoint = "http://" + a
		return lk, nil
	case <-time.After(30 * time.Second):
		lk.Stop()
		return nil, fmt.Errorf("local-kms did not start within 30s")
	}
}

// Stop kills local-kms and waits for it.
func (l *LocalKMS) Stop() {
	_ = syscall.Kill(-l.cmd.Process.Pid, syscall.SIGKILL)
	_ = l.cmd.Wait()
}
