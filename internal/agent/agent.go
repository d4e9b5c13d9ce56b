package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Decrypter turns a ciphertext (kms:v1, kms:env1, text or binary) into
// plaintext through the data plane.
type Decrypter interface {
	Decrypt(ctx context.Context, ciphertext []byte, encryptionContext map[string]string) ([]byte, error)
}

// Objects reads the Secrets and ConfigMaps of the pod's namespace and
// reports when one changes.
type Objects interface {
	// Get returns an object's data (ConfigMap data as bytes).
	Get(ctx context.Context, kind SourceKind, name string) (map[string][]byte, error)
	// Watch calls changed whenever the object may have changed, until ctx ends.
	Watch(ctx context.Context, kind SourceKind, name string, changed func())
}

// Agent writes a pod's decrypted files.
type Agent struct {
	Config  Config
	Dir     Dir
	KMS     Decrypter
	Objects Objects
	Log     *slog.Logger
	// Backoff bounds the wait between failed attempts (defaults 1s, 30s).
	MinBackoff, MaxBackoff time.Duration

	// per file: the ciphertext last decrypted, and its plaintext. A file's
	// encryption context is fixed for the agent's life, so the ciphertext
	// alone says whether it must be decrypted again.
	current map[string]written
}

type written struct {
	ciphertext, plaintext []byte
}

// FileError is a file that could not be produced; Permanent says whether
// retrying without a change can help.
type FileError struct {
	File, Source string
	Err          error
	Permanent    bool
}

func (e *FileError) Error() string {
	return fmt.Sprintf("file %s (from %s): %v", e.File, e.Source, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// Sync reads every source, decrypts what changed and writes the whole set
// atomically. A file that fails keeps its previous content; Sync returns the
// failures joined, and writes nothing until every file has been produced once.
func (a *Agent) Sync(ctx context.Context) error {
	if a.current == nil {
		a.current = map[string]written{}
	}
	objects := map[string]fetched{}
	var errs []error
	next := make(map[string]written, len(a.Config.Files))
	changed := false
	for _, f := range a.Config.Files {
		w, err := a.produce(ctx, f, objects)
		if err != nil {
			errs = append(errs, err)
			if old, ok := a.current[f.Name]; ok {
				next[f.Name] = old
			}
			continue
		}
		if old, ok := a.current[f.Name]; !ok || !bytes.Equal(old.ciphertext, w.ciphertext) {
			changed = true
		}
		next[f.Name] = w
	}
	if len(next) < len(a.Config.Files) {
		return errors.Join(errs...) // never a partial first set
	}
	if changed {
		files := make(map[string][]byte, len(next))
		for n, w := range next {
			files[n] = w.plaintext
		}
		if err := a.Dir.Write(files); err != nil {
			return fmt.Errorf("write files: %w", err)
		}
		for n, old := range a.current {
			if !bytes.Equal(next[n].ciphertext, old.ciphertext) {
				clear(old.plaintext)
			}
		}
		a.current = next
		a.Log.Info("Wrote files", "dir", a.Dir.Path, "files", len(files))
	}
	if err := a.Dir.MarkReady(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// fetched is one read of a Secret or ConfigMap, shared by its files.
type fetched struct {
	data map[string][]byte
	err  error
}

func (a *Agent) produce(ctx context.Context, f File, objects map[string]fetched) (written, error) {
	fail := func(err error, permanent bool) (written, error) {
		return written{}, &FileError{File: f.Name, Source: f.Source.String(), Err: err, Permanent: permanent}
	}
	ciphertext := []byte(f.Source.Inline)
	if f.Source.Kind != SourceInline {
		id := string(f.Source.Kind) + "/" + f.Source.Name
		obj, ok := objects[id]
		if !ok {
			obj.data, obj.err = a.Objects.Get(ctx, f.Source.Kind, f.Source.Name)
			objects[id] = obj
		}
		if obj.err != nil {
			return fail(obj.err, apierrors.IsNotFound(obj.err) || apierrors.IsForbidden(obj.err))
		}
		if ciphertext, ok = obj.data[f.Source.Key]; !ok {
			return fail(fmt.Errorf("%s %s has no key %q", f.Source.Kind, f.Source.Name, f.Source.Key), true)
		}
	}
	if old, ok := a.current[f.Name]; ok && bytes.Equal(old.ciphertext, ciphertext) {
		return old, nil
	}
	pt, err := a.KMS.Decrypt(ctx, ciphertext, f.Context)
	if err != nil {
		return fail(err, permanent(err))
	}
	return written{ciphertext: ciphertext, plaintext: pt}, nil
}

// permanent says whether a data-plane error will stay the same until the
// source or the key's permissions change.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Aborted, codes.Internal, codes.Unknown:
		return false
	}
	return true
}

// Once writes every file, retrying transient failures with backoff until
// ctx ends; it returns at once on a permanent failure (init mode).
func (a *Agent) Once(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := a.Sync(ctx)
		if err == nil {
			return nil
		}
		if allPermanent(err) {
			return err
		}
		a.Log.Info("Could not write every file yet; retrying", "error", err.Error())
		if !a.sleep(ctx, attempt) {
			return fmt.Errorf("gave up: %w", err)
		}
	}
}

// Run writes the files, then keeps them current: on every change of a
// source, and after failures with backoff. It returns when ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	changes := make(chan struct{}, 1)
	notify := func() {
		select {
		case changes <- struct{}{}:
		default:
		}
	}
	watched := map[string]bool{}
	for _, f := range a.Config.Files {
		id := string(f.Source.Kind) + "/" + f.Source.Name
		if f.Source.Kind == SourceInline || watched[id] {
			continue
		}
		watched[id] = true
		go a.Objects.Watch(ctx, f.Source.Kind, f.Source.Name, notify)
	}
	attempt := 0
	for {
		err := a.Sync(ctx)
		var retry <-chan time.Time
		if err != nil {
			a.Log.Error("Could not write every file; keeping the previous content of those that failed", "error", err.Error())
			retry = time.After(a.backoff(attempt))
			attempt++
		} else {
			attempt = 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
			// Let a burst of changes settle into one write.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
		case <-retry:
		}
	}
}

func allPermanent(err error) bool {
	var joined interface{ Unwrap() []error }
	errs := []error{err}
	if errors.As(err, &joined) {
		errs = joined.Unwrap()
	}
	for _, e := range errs {
		var fe *FileError
		if !errors.As(e, &fe) || !fe.Permanent {
			return false
		}
	}
	return true
}

func (a *Agent) backoff(attempt int) time.Duration {
	lo, hi := a.MinBackoff, a.MaxBackoff
	if lo <= 0 {
		lo = time.Second
	}
	if hi <= 0 {
		hi = 30 * time.Second
	}
	d := lo << min(attempt, 16)
	if d > hi || d <= 0 {
		d = hi
	}
	return d/2 + rand.N(d/2+1) // jitter, so a restarted service is not hit by every pod at once
}

func (a *Agent) sleep(ctx context.Context, attempt int) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(a.backoff(attempt)):
		return true
	}
}
