package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestDirWriteAtomically(t *testing.T) {
	dir := Dir{Path: t.TempDir(), Mode: 0o400}
	if err := IsReady(dir.Path); err == nil {
		t.Fatal("ready before anything was written")
	}
	if err := dir.Write(map[string][]byte{"a": []byte("one"), "b": []byte("two")}); err != nil {
		t.Fatal(err)
	}
	if err := dir.MarkReady(); err != nil {
		t.Fatal(err)
	}
	if err := IsReady(dir.Path); err != nil {
		t.Fatal(err)
	}
	if err := dir.MarkReady(); err != nil {
		t.Fatalf("marking ready again: %v", err)
	}
	for name, want := range map[string]string{"a": "one", "b": "two"} {
		got, err := os.ReadFile(filepath.Join(dir.Path, name))
		if err != nil || string(got) != want {
			t.Fatalf("%s = %q, %v", name, got, err)
		}
		info, err := os.Stat(filepath.Join(dir.Path, name))
		if err != nil || info.Mode().Perm() != 0o400 {
			t.Fatalf("%s mode = %v, %v; want 0400", name, info.Mode(), err)
		}
	}
	// Replace a, drop b: b disappears, and only one generation remains.
	if err := dir.Write(map[string][]byte{"a": []byte("uno")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir.Path, "a")); string(got) != "uno" {
		t.Fatalf("a = %q", got)
	}
	if _, err := os.Lstat(filepath.Join(dir.Path, "b")); !os.IsNotExist(err) {
		t.Fatalf("b still there: %v", err)
	}
	entries, _ := os.ReadDir(dir.Path)
	gens := 0
	for _, e := range entries {
		if e.IsDir() {
			gens++
		}
	}
	if gens != 2 {
		t.Fatalf("%d generations left, want 2 (the current one and the one readers may still be resolving)", gens)
	}
}

// A reader in a loop never sees a partial or mixed file while the writer
// swaps large contents as fast as it can.
func TestDirConcurrentReaderNeverSeesPartialFile(t *testing.T) {
	// Keep as the agent runs: 300 swaps as fast as they go replace a
	// generation while a descheduled reader may still be walking into it
	// (a clean-clone run saw ENOENT with only the previous one kept).
	dir := Dir{Path: t.TempDir(), Mode: 0o400, Keep: time.Minute}
	content := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 256<<10) }
	if err := dir.Write(map[string][]byte{"f": content(0)}); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var reads, bad atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				b, err := os.ReadFile(filepath.Join(dir.Path, "f"))
				if err != nil {
					bad.Add(1)
					t.Errorf("read: %v", err)
					return
				}
				reads.Add(1)
				if len(b) != 256<<10 || bytes.Count(b, b[:1]) != len(b) {
					bad.Add(1)
					t.Errorf("partial or mixed file: %d bytes", len(b))
					return
				}
			}
		})
	}
	for i := 1; i <= 300; i++ {
		if err := dir.Write(map[string][]byte{"f": content(i)}); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 || reads.Load() < 10 {
		t.Fatalf("reads %d, bad %d", reads.Load(), bad.Load())
	}
	t.Logf("concurrent reads while swapping: %d", reads.Load())
}
