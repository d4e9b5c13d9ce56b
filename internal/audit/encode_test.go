package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The hand-written encoder must produce what encoding/json makes of a
// Record, byte for byte, for any strings.
func checkSameAsEncodingJSON(t *testing.T, r *Record) {
	t.Helper()
	want, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	got := appendRecord(nil, r)
	if string(got) != string(want)+"\n" {
		t.Fatalf("encoding differs:\n got %s\nwant %s", got, want)
	}
}

func TestEncoderMatchesEncodingJSON(t *testing.T) {
	checkSameAsEncodingJSON(t, sampleRecord())
	checkSameAsEncodingJSON(t, &Record{AuditVersion: Version, EventTime: time.Unix(0, 0).UTC(), Outcome: Error})
	r := sampleRecord()
	r.DestinationKey = &KeyRef{Namespace: "web", Name: "k", KeyID: "x"}
	r.Principal.Username = "evil\"user\\<script>&\n\t\x00\x1f\u2028\u2029\xff"
	checkSameAsEncodingJSON(t, r)
}

func FuzzEncoderMatchesEncodingJSON(f *testing.F) {
	f.Add("system:serviceaccount:shop:api", "tenant", "payments", uint32(3))
	f.Add("\x00\"<>&\u2028\xff\xfe", "é", "", uint32(0))
	f.Fuzz(func(t *testing.T, user, ctxKey, keyName string, version uint32) {
		r := sampleRecord()
		r.Principal.Username = user
		r.Principal.Groups = []string{user, ctxKey}
		r.EncryptionContextKeys = []string{ctxKey}
		r.RequestedKey = keyName
		r.Key.Name, r.Key.Version = keyName, version
		checkSameAsEncodingJSON(t, r)
	})
}

// failingWriter fails every write after the first n.
type failingWriter struct {
	mu    sync.Mutex
	n     int
	lines int
}

func (f *failingWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		return 0, errors.New("disk full")
	}
	f.n--
	f.lines += bytes.Count(p, []byte("\n"))
	return len(p), nil
}

func TestGroupCommitWritesEveryLineOnceAndReportsFailures(t *testing.T) {
	var out syncBuf
	s := NewWriterSink(&out)
	var batched, writes atomic.Int64
	s.ObserveBatches(func(n int) { batched.Add(int64(n)); writes.Add(1) })
	var wg sync.WaitGroup
	for i := range 400 {
		wg.Go(func() {
			r := sampleRecord()
			r.RequestID = fmt.Sprint(i)
			if err := s.Write(r); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bad line %q: %v", line, err)
		}
		if seen[r.RequestID] {
			t.Fatalf("record %s written twice", r.RequestID)
		}
		seen[r.RequestID] = true
	}
	if len(seen) != 400 {
		t.Fatalf("%d records written, want 400", len(seen))
	}
	if batched.Load() != 400 || writes.Load() == 0 || writes.Load() > 400 {
		t.Fatalf("batches observed: %d records in %d writes, want the 400 records", batched.Load(), writes.Load())
	}

	fw := &failingWriter{n: 0}
	bad := NewWriterSink(fw)
	for range 3 {
		if err := bad.Write(sampleRecord()); err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Fatalf("err = %v, want the write failure", err)
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
