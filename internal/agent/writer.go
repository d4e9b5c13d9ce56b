package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Dir writes a set of files atomically, the way the kubelet updates
// projected volumes: the files live in a fresh hidden directory, a symlink
// "..data" points at it and is swapped by rename, and each visible file is a
// symlink through "..data". A reader sees the old set or the new one, never
// a partial file.
type Dir struct {
	Path string
	Mode os.FileMode
	// Keep is how long a replaced generation is kept besides the previous
	// one: a reader that resolved "..data" and was then descheduled in the
	// middle of its open may still be walking into it. Zero keeps only the
	// previous generation.
	Keep time.Duration
}

const (
	dataLink = "..data"
	// ReadyFile exists once every file has been written.
	ReadyFile = "..ready"
)

// Write replaces the whole set of files.
func (d Dir) Write(files map[string][]byte) error {
	if err := os.MkdirAll(d.Path, 0o755); err != nil {
		return err
	}
	gen, err := os.MkdirTemp(d.Path, ".."+time.Now().UTC().Format("2006_01_02_15_04_05.")) // removed below on failure
	if err != nil {
		return err
	}
	if err := os.Chmod(gen, 0o755); err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(gen)
		}
	}()
	for name, data := range files {
		if err := writeFile(filepath.Join(gen, name), data, d.Mode); err != nil {
			return err
		}
	}
	// The generation readers may be resolving right now is kept until the
	// next write: a reader that followed ..data to it just before the swap
	// still finds its file.
	previous, _ := os.Readlink(filepath.Join(d.Path, dataLink))
	tmp := filepath.Join(d.Path, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(gen), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(d.Path, dataLink)); err != nil {
		return err
	}
	ok = true
	for name := range files {
		link := filepath.Join(d.Path, name)
		if target, err := os.Readlink(link); err == nil && target == filepath.Join(dataLink, name) {
			continue
		}
		_ = os.Remove(link)
		if err := os.Symlink(filepath.Join(dataLink, name), link); err != nil {
			return err
		}
	}
	// Files no longer configured go away, and every generation older than
	// the previous one (the directory is the agent's alone). Readers that
	// opened an old file keep it.
	entries, err := os.ReadDir(d.Path)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		if n == dataLink || n == ReadyFile || n == filepath.Base(gen) || (previous != "" && n == previous) {
			continue
		}
		if _, keep := files[n]; keep {
			continue
		}
		if info, err := e.Info(); err == nil && e.IsDir() && d.Keep > 0 && time.Since(info.ModTime()) < d.Keep {
			continue
		}
		if err := os.RemoveAll(filepath.Join(d.Path, n)); err != nil {
			return err
		}
	}
	return nil
}

// MarkReady records that every file has been written.
func (d Dir) MarkReady() error {
	err := writeFile(filepath.Join(d.Path, ReadyFile), nil, 0o444)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	return err
}

// IsReady says whether MarkReady has happened in dir.
func IsReady(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, ReadyFile)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("the files in %s are not written yet", dir)
		}
		return err
	}
	return nil
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(path, mode) // the umask may have narrowed it
	}
	return err
}
