package seal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeRootKey(t *testing.T, path string, fill byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Repeat([]byte{fill}, RootKeySize), 0o400); err != nil {
		t.Fatal(err)
	}
}

func TestLoadFileOneFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "root.key")
	writeRootKey(t, path, 7)
	s, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Provider() != FileProvider || s.CurrentVersion() != 1 {
		t.Fatalf("provider %q version %d; want file 1", s.Provider(), s.CurrentVersion())
	}
	aad := MaterialAAD("k", 1, "SYMMETRIC_DEFAULT")
	blob, err := s.Seal(ctx, []byte("material"), aad)
	if err != nil {
		t.Fatal(err)
	}
	// The same file loaded again (a restart, another node) unseals it; a
	// different key does not.
	again, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Unseal(ctx, blob, aad); err != nil || string(got) != "material" {
		t.Fatalf("Unseal after reload = %q, %v", got, err)
	}
	other := filepath.Join(t.TempDir(), "other.key")
	writeRootKey(t, other, 8)
	o, err := LoadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Unseal(ctx, blob, aad); !errors.Is(err, ErrUnseal) {
		t.Fatalf("Unseal under another root key: %v, want ErrUnseal", err)
	}
}

// A Secret mounted as a volume: root-key-v<N> entries are symlinks into a
// ..data directory, next to entries that are not root keys.
func TestLoadFileDirectoryAsMountedSecret(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	data := filepath.Join(dir, "..2026_12_01")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	writeRootKey(t, filepath.Join(data, "root-key-v1"), 1)
	if err := os.Symlink(data, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "root-key-v1"), filepath.Join(dir, "root-key-v1")); err != nil {
		t.Fatal(err)
	}
	v1, err := LoadFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	aad := MaterialAAD("k", 1, "SYMMETRIC_DEFAULT")
	old, err := v1.Seal(ctx, []byte("old"), aad)
	if err != nil {
		t.Fatal(err)
	}
	// A second version: new seals use it, the first still unseals.
	writeRootKey(t, filepath.Join(dir, "root-key-v2"), 2)
	v2, err := LoadFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if v2.CurrentVersion() != 2 {
		t.Fatalf("current version %d, want 2", v2.CurrentVersion())
	}
	if got, err := v2.Unseal(ctx, old, aad); err != nil || string(got) != "old" {
		t.Fatalf("Unseal of a v1 blob = %q, %v", got, err)
	}
	fresh, err := v2.Seal(ctx, []byte("new"), aad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v1.Unseal(ctx, fresh, aad); !errors.Is(err, ErrRootUnavailable) {
		t.Fatalf("a sealer not given v2 must say so for a v2 blob: %v", err)
	}
}

func TestLoadFileRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	badName := t.TempDir()
	writeRootKey(t, filepath.Join(badName, "root-key-vX"), 1)
	dup := t.TempDir()
	writeRootKey(t, filepath.Join(dup, "root-key-v1"), 1)
	writeRootKey(t, filepath.Join(dup, "root-key-v01"), 2)
	for name, tc := range map[string]struct{ path, want string }{
		"one version twice": {dup, `files "root-key-v01" and "root-key-v1" are both root key version 1`},
		"missing":           {filepath.Join(dir, "nope"), "no such file"},
		"base64 text":       {short, "is 45 bytes, want exactly 32 raw bytes"},
		"empty dir":         {empty, "holds no root-key-v<N> file"},
		"bad file name":     {badName, `file "root-key-vX" is not root-key-v<N>`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := LoadFile(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadFile(%s) = %v, want an error containing %q", tc.path, err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "MDEy") {
				t.Fatalf("error shows the file's content: %v", err)
			}
		})
	}
}
