package audit

import (
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// appendRecord appends r as one line of JSON, the same document
// encoding/json makes of a Record (fuzzed against it), without reflection:
// records are written on every data-plane call.
func appendRecord(b []byte, r *Record) []byte {
	b = append(b, `{"auditVersion":`...)
	b = appendString(b, r.AuditVersion)
	b = append(b, `,"eventTime":"`...)
	b = r.EventTime.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","requestID":`...)
	b = appendString(b, r.RequestID)
	b = append(b, `,"eventName":`...)
	b = appendString(b, r.EventName)
	b = append(b, `,"principal":{"username":`...)
	p := &r.Principal
	b = appendString(b, p.Username)
	b = appendOptString(b, "uid", p.UID)
	if len(p.Groups) > 0 {
		b = append(b, `,"groups":`...)
		b = appendStrings(b, p.Groups)
	}
	b = appendOptString(b, "serviceAccount", p.ServiceAccount)
	b = appendOptString(b, "podName", p.PodName)
	b = appendOptString(b, "podUID", p.PodUID)
	b = append(b, '}')
	b = appendOptString(b, "sourceNamespace", r.SourceNamespace)
	b = appendOptString(b, "sourceAddress", r.SourceAddress)
	b = appendOptString(b, "requestedKey", r.RequestedKey)
	b = appendKey(b, "key", r.Key)
	b = appendKey(b, "destinationKey", r.DestinationKey)
	if len(r.EncryptionContextKeys) > 0 {
		b = append(b, `,"encryptionContextKeys":`...)
		b = appendStrings(b, r.EncryptionContextKeys)
	}
	b = append(b, `,"outcome":`...)
	b = appendString(b, r.Outcome)
	b = appendOptString(b, "errorCode", r.ErrorCode)
	b = appendOptString(b, "decidedBy", r.DecidedBy)
	return append(b, '}', '\n')
}

func appendKey(b []byte, name string, k *KeyRef) []byte {
	if k == nil {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, `":{"namespace":`...)
	b = appendString(b, k.Namespace)
	b = append(b, `,"name":`...)
	b = appendString(b, k.Name)
	b = append(b, `,"keyID":`...)
	b = appendString(b, k.KeyID)
	if k.Version != 0 {
		b = append(b, `,"version":`...)
		b = strconv.AppendUint(b, uint64(k.Version), 10)
	}
	return append(b, '}')
}

func appendOptString(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping as encoding/json does
// (HTML characters included) and replacing invalid UTF-8 with U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

var lineBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}
