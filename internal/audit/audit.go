// Package audit records every data-plane call: one JSON object per line
// (auditVersion kubekms.audit/v1, CloudTrail's fields) to a sink, written
// before any plaintext is returned; and a summary of use as a bounded number
// of Events on each Key, with status.lastUsed.
//
// Records never hold plaintext, key material, ciphertexts, tokens or
// encryption-context values: only the context's keys.
package audit

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Version marks every record.
const Version = "kubekms.audit/v1"

// Outcomes.
const (
	Allowed = "Allowed"
	Denied  = "Denied"
	Error   = "Error"
)

// Principal is who called.
type Principal struct {
	Username       string   `json:"username"`
	UID            string   `json:"uid,omitempty"`
	Groups         []string `json:"groups,omitempty"`
	ServiceAccount string   `json:"serviceAccount,omitempty"`
	PodName        string   `json:"podName,omitempty"`
	PodUID         string   `json:"podUID,omitempty"`
}

// KeyRef names the key a call used.
type KeyRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	KeyID     string `json:"keyID"`
	Version   uint32 `json:"version,omitempty"`
}

// Record is one call.
type Record struct {
	AuditVersion    string    `json:"auditVersion"`
	EventTime       time.Time `json:"eventTime"`
	RequestID       string    `json:"requestID"`
	EventName       string    `json:"eventName"`
	Principal       Principal `json:"principal"`
	SourceNamespace string    `json:"sourceNamespace,omitempty"`
	SourceAddress   string    `json:"sourceAddress,omitempty"`
	// RequestedKey is the key as the caller named it, when it named one.
	RequestedKey string  `json:"requestedKey,omitempty"`
	Key          *KeyRef `json:"key,omitempty"`
	// DestinationKey is ReEncrypt's destination.
	DestinationKey        *KeyRef  `json:"destinationKey,omitempty"`
	EncryptionContextKeys []string `json:"encryptionContextKeys,omitempty"`
	Outcome               string   `json:"outcome"`
	ErrorCode             string   `json:"errorCode,omitempty"`
	// DecidedBy names the policy statement, grant or RBAC rule that allowed
	// or denied the call.
	DecidedBy string `json:"decidedBy,omitempty"`
}

// NewRequestID returns a random request ID.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Sink stores records.
type Sink interface {
	Write(*Record) error
}

// WriterSink writes one JSON line per record to w, with group commit: the
// first caller writes the lines of every caller that arrived meanwhile in one
// write call, and each Write returns only once its own line is written (or
// failed), so "recorded before the response leaves" still holds.
type WriterSink struct {
	w io.Writer

	mu       sync.Mutex
	open     *batch
	flushing bool
	// batches, if set, is told how many records each write carried.
	batches func(records int)
}

type batch struct {
	buf     *[]byte
	records int
	done    chan struct{}
	err     error
}

// ObserveBatches has observe called with the number of records of every
// write (how well group commit batches under load). Call it before the
// first Write.
func (s *WriterSink) ObserveBatches(observe func(records int)) { s.batches = observe }

// NewWriterSink returns a sink writing to w.
func NewWriterSink(w io.Writer) *WriterSink { return &WriterSink{w: w} }

// Write implements Sink.
func (s *WriterSink) Write(r *Record) error {
	s.mu.Lock()
	if s.open == nil {
		buf := lineBuffers.Get().(*[]byte)
		*buf = (*buf)[:0]
		s.open = &batch{buf: buf, done: make(chan struct{})}
	}
	mine := s.open
	*mine.buf = appendRecord(*mine.buf, r)
	mine.records++
	if s.flushing {
		s.mu.Unlock()
		<-mine.done
		return mine.err
	}
	s.flushing = true
	for s.open != nil {
		cur := s.open
		s.open = nil
		s.mu.Unlock()
		if _, err := s.w.Write(*cur.buf); err != nil {
			cur.err = fmt.Errorf("write audit record: %w", err)
		}
		if s.batches != nil {
			s.batches(cur.records)
		}
		lineBuffers.Put(cur.buf)
		close(cur.done)
		s.mu.Lock()
	}
	s.flushing = false
	s.mu.Unlock()
	return mine.err
}

// Open returns the sink a --audit-log value names: "-" for stdout, else a
// file opened for appending (created 0600).
func Open(path string) (Sink, io.Closer, error) {
	if path == "" || path == "-" {
		return NewWriterSink(os.Stdout), io.NopCloser(nil), nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open audit log: %w", err)
	}
	return NewWriterSink(f), f, nil
}
