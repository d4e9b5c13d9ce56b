package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// The exec wrapper runs an app container's command with values from the
// agent's files in its environment, and, with a reload signal, stays its
// parent to signal it when the files change. The webhook makes it the
// container's command; the agent copies its own binary where the app
// container can run it.

// WrapperDir is where app containers see the agent binary.
const WrapperDir = "/var/run/kubekms/bin"

// BinDir is where the agent container writes its binary for them.
const BinDir = "/var/run/kubekms/agent/bin"

// Wrapper runs one wrapped command.
type Wrapper struct {
	// Dir is the files' directory as the app container sees it.
	Dir string
	Env []EnvVar
	// Signal, when not zero, is sent to the command when the files change.
	Signal syscall.Signal
	// Poll is how often the files are checked for a change (default 1s).
	Poll time.Duration
	Argv []string
}

// Environ is env with the wrapper's variables set from their files.
func (w Wrapper) Environ(env []string) ([]string, error) {
	out := env
	for _, e := range w.Env {
		b, err := os.ReadFile(filepath.Join(w.Dir, e.File))
		if err != nil {
			return nil, fmt.Errorf("environment variable %s: %w", e.Name, err)
		}
		if strings.IndexByte(string(b), 0) >= 0 {
			return nil, fmt.Errorf("environment variable %s: the value contains a NUL byte, which an environment cannot hold", e.Name)
		}
		out = append(out, e.Name+"="+string(b))
	}
	return out, nil
}

// Exec replaces the process with the command (no reload signal).
func (w Wrapper) Exec() error {
	if len(w.Argv) == 0 {
		return errors.New("no command to run after --")
	}
	env, err := w.Environ(os.Environ())
	if err != nil {
		return err
	}
	path, err := exec.LookPath(w.Argv[0])
	if err != nil {
		return err
	}
	return syscall.Exec(path, w.Argv, env)
}

// Run starts the command as a child, forwards signals to it, sends Signal
// when the files change, and returns its exit code.
func (w Wrapper) Run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if len(w.Argv) == 0 {
		return 0, errors.New("no command to run after --")
	}
	env, err := w.Environ(os.Environ())
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(w.Argv[0], w.Argv[1:]...)
	cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = env, stdin, stdout, stderr
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(signals)
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	poll := w.Poll
	if poll <= 0 {
		poll = time.Second
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	generation, _ := os.Readlink(filepath.Join(w.Dir, dataLink))
	stop := ctx.Done()
	for {
		select {
		case err := <-done:
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal()), nil
				}
				return exit.ExitCode(), nil
			}
			return 0, err
		case s := <-signals:
			_ = cmd.Process.Signal(s)
		case <-stop:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			stop = nil // once; then wait for the child
		case <-tick.C:
			if w.Signal == 0 {
				continue
			}
			if g, err := os.Readlink(filepath.Join(w.Dir, dataLink)); err == nil && g != generation {
				generation = g
				_ = cmd.Process.Signal(w.Signal)
			}
		}
	}
}

// signalsByName are the signals kms.kubekms.io/reload-signal accepts.
var signalsByName = map[string]syscall.Signal{
	"SIGHUP": syscall.SIGHUP, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2,
	"SIGINT": syscall.SIGINT, "SIGTERM": syscall.SIGTERM, "SIGQUIT": syscall.SIGQUIT,
}

// ParseSignal reads a signal name such as SIGHUP.
func ParseSignal(name string) (syscall.Signal, error) {
	if s, ok := signalsByName[name]; ok {
		return s, nil
	}
	return 0, fmt.Errorf("%q is not one of %v", name, slices.Sorted(maps.Keys(signalsByName)))
}

// CopySelf copies the running binary to dir/kubekms-agent, atomically, so
// app containers can run the wrapper.
func CopySelf(dir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	in, err := os.Open(self)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".kubekms-agent-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o555); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, "kubekms-agent"))
}
