package quota

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"
)

// FileWatcher keeps a Limiter's configuration in step with a file (a
// mounted ConfigMap): it polls, so it also sees the symlink swap kubelet
// does. A file that does not parse is reported and the last good
// configuration stays in force.
type FileWatcher struct {
	Path     string
	Interval time.Duration
	Limiter  *Limiter

	last []byte
}

// Load reads the file once; a bad file is an error here (at start-up).
func (w *FileWatcher) Load() error {
	_, err := w.reload()
	return err
}

// NeedLeaderElection: every replica enforces quotas.
func (w *FileWatcher) NeedLeaderElection() bool { return false }

// Start polls until ctx ends.
func (w *FileWatcher) Start(ctx context.Context) error {
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			changed, err := w.reload()
			switch {
			case err != nil:
				log.FromContext(ctx).Error(err, "Kept the previous quota configuration", "path", w.Path)
			case changed:
				log.FromContext(ctx).Info("Reloaded the quota configuration", "path", w.Path)
			}
		}
	}
}

func (w *FileWatcher) reload() (bool, error) {
	data, err := os.ReadFile(w.Path)
	if err != nil {
		return false, fmt.Errorf("read quota configuration: %w", err)
	}
	if w.last != nil && bytes.Equal(data, w.last) {
		return false, nil
	}
	cfg, err := Parse(data)
	if err != nil {
		return false, fmt.Errorf("%s: %w", w.Path, err)
	}
	w.Limiter.SetConfig(cfg)
	w.last = data
	return true, nil
}
