package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	testCreatedAt = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.FixedZone("CET", 3600))
	sentinels     = []error{ErrNotBundle, ErrUnsupportedVersion, ErrWrongIdentity, ErrTruncated, ErrCorrupted}
	fpPattern     = regexp.MustCompile(`^sha256:[0-9a-f]{32}$`)
)

// testPlaintext is ~200 bytes of recognisable text.
var testPlaintext = []byte(strings.Repeat("kubekms root key material 0123456789 ", 6)[:200])

func genIdentity(t testing.TB) *Identity {
	t.Helper()
	id, err := GenerateIdentity()
	if err != nil {
		t.Fatalf("GenerateIdentity: %v", err)
	}
	return id
}

func genIdentities(t testing.TB, n int) []*Identity {
	t.Helper()
	ids := make([]*Identity, n)
	for i := range ids {
		ids[i] = genIdentity(t)
	}
	return ids
}

func recipientsOf(ids []*Identity) []Recipient {
	rs := make([]Recipient, len(ids))
	for i, id := range ids {
		rs[i] = id.Recipient()
	}
	return rs
}

func mustSeal(t testing.TB, ids []*Identity, plaintext []byte) []byte {
	t.Helper()
	b, err := Seal(recipientsOf(ids), plaintext, testCreatedAt)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return b
}

// matchingSentinels returns the sentinels err wraps.
func matchingSentinels(err error) []error {
	var got []error
	for _, s := range sentinels {
		if errors.Is(err, s) {
			got = append(got, s)
		}
	}
	return got
}

// splitBundle returns line 1, the header JSON (without newline) and the payload.
func splitBundle(t *testing.T, b []byte) (string, []byte, []byte) {
	t.Helper()
	l1, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok {
		t.Fatal("bundle has no line 1")
	}
	l2, payload, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		t.Fatal("bundle has no line 2")
	}
	return string(l1) + "\n", l2, payload
}

// editHeader rewrites the header JSON of a bundle with edit and returns the
// reassembled bundle.
func editHeader(t *testing.T, b []byte, edit func(h map[string]any)) []byte {
	t.Helper()
	l1, l2, payload := splitBundle(t, b)
	var h map[string]any
	if err := json.Unmarshal(l2, &h); err != nil {
		t.Fatalf("unmarshal header: %v", err)
	}
	edit(h)
	nl2, err := json.Marshal(h)
	if err != nil {
		t.Fatalf("marshal header: %v", err)
	}
	out := append([]byte(l1), nl2...)
	out = append(out, '\n')
	return append(out, payload...)
}

func TestSealOpenRoundTrip(t *testing.T) {
	tests := []struct {
		name       string
		recipients int
		plaintext  []byte
	}{
		{name: "one recipient", recipients: 1, plaintext: testPlaintext},
		{name: "two recipients", recipients: 2, plaintext: testPlaintext},
		{name: "empty plaintext", recipients: 1, plaintext: []byte{}},
		{name: "binary plaintext with newlines", recipients: 3, plaintext: []byte("\n\x00\xff\nkubekms-backup v1\n{}\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ids := genIdentities(t, tt.recipients)
			b := mustSeal(t, ids, tt.plaintext)
			for i, id := range ids {
				got, err := Open(b, id)
				if err != nil {
					t.Fatalf("Open with identity %d: %v", i+1, err)
				}
				if !bytes.Equal(got, tt.plaintext) {
					t.Errorf("Open with identity %d = %q, want %q", i+1, got, tt.plaintext)
				}
			}
		})
	}
}

func TestSealIsRandomized(t *testing.T) {
	ids := genIdentities(t, 1)
	a, b := mustSeal(t, ids, testPlaintext), mustSeal(t, ids, testPlaintext)
	if bytes.Equal(a, b) {
		t.Fatal("two Seals of the same plaintext produced identical bundles")
	}
}

func TestSealRefuses(t *testing.T) {
	ids := genIdentities(t, MaxRecipients+1)
	r0, r1 := ids[0].Recipient(), ids[1].Recipient()
	tests := []struct {
		name       string
		recipients []Recipient
		createdAt  time.Time
		wantErr    string
	}{
		{name: "nil recipients", recipients: nil, createdAt: testCreatedAt, wantErr: "no recipients"},
		{name: "empty recipients", recipients: []Recipient{}, createdAt: testCreatedAt, wantErr: "no recipients"},
		{name: "duplicate recipient", recipients: []Recipient{r0, r1, r0}, createdAt: testCreatedAt, wantErr: "recipients 1 and 3 are the same key " + r0.Fingerprint()},
		{name: "zero recipient", recipients: []Recipient{r0, {}}, createdAt: testCreatedAt, wantErr: "recipient 2 is empty"},
		{name: "too many recipients", recipients: recipientsOf(ids), createdAt: testCreatedAt, wantErr: fmt.Sprintf("%d recipients, at most %d", MaxRecipients+1, MaxRecipients)},
		{name: "zero createdAt", recipients: []Recipient{r0}, wantErr: "createdAt is the zero time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Seal(tt.recipients, testPlaintext, tt.createdAt)
			if err == nil {
				t.Fatalf("Seal succeeded (%d bytes), want error containing %q", len(b), tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Seal error = %q, want it to contain %q", err, tt.wantErr)
			}
			if b != nil {
				t.Errorf("Seal returned %d bytes along with an error", len(b))
			}
		})
	}
}

func TestSealMaxRecipients(t *testing.T) {
	ids := genIdentities(t, MaxRecipients)
	b := mustSeal(t, ids, testPlaintext)
	got, err := Open(b, ids[MaxRecipients-1])
	if err != nil {
		t.Fatalf("Open with the last of %d recipients: %v", MaxRecipients, err)
	}
	if !bytes.Equal(got, testPlaintext) {
		t.Errorf("Open = %q, want %q", got, testPlaintext)
	}
}

func TestIdentityPEMRoundTrip(t *testing.T) {
	id := genIdentity(t)
	p, err := id.MarshalPEM()
	if err != nil {
		t.Fatalf("MarshalPEM: %v", err)
	}
	block, rest := pem.Decode(p)
	if block == nil || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("MarshalPEM output is not exactly one PEM block:\n%s", p)
	}
	if block.Type != "KUBEKMS BACKUP IDENTITY" {
		t.Errorf("PEM type = %q, want %q", block.Type, "KUBEKMS BACKUP IDENTITY")
	}
	if got, want := block.Headers["Recipient"], id.Recipient().String(); got != want {
		t.Errorf("PEM Recipient header = %q, want %q", got, want)
	}

	parsed, err := ParseIdentity(p)
	if err != nil {
		t.Fatalf("ParseIdentity: %v", err)
	}
	if got, want := parsed.Recipient().String(), id.Recipient().String(); got != want {
		t.Errorf("parsed identity's recipient = %q, want %q", got, want)
	}
	again, err := parsed.MarshalPEM()
	if err != nil {
		t.Fatalf("MarshalPEM of parsed identity: %v", err)
	}
	if !bytes.Equal(again, p) {
		t.Errorf("MarshalPEM(ParseIdentity(p)) differs from p")
	}

	// The parsed identity really holds the private key.
	b := mustSeal(t, []*Identity{id}, testPlaintext)
	got, err := Open(b, parsed)
	if err != nil {
		t.Fatalf("Open with parsed identity: %v", err)
	}
	if !bytes.Equal(got, testPlaintext) {
		t.Errorf("Open = %q, want %q", got, testPlaintext)
	}

	// Without the optional header it still parses.
	noHeader := pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: block.Bytes})
	if _, err := ParseIdentity(noHeader); err != nil {
		t.Errorf("ParseIdentity without Recipient header: %v", err)
	}
}

func TestParseIdentityErrors(t *testing.T) {
	id, other := genIdentity(t), genIdentity(t)
	p, err := id.MarshalPEM()
	if err != nil {
		t.Fatalf("MarshalPEM: %v", err)
	}
	block, _ := pem.Decode(p)
	keyBytes := block.Bytes

	badKey := bytes.Repeat([]byte{0xA5}, 7)
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{name: "empty", in: nil, wantErr: "no PEM block"},
		{name: "garbage", in: []byte("not a key at all\n"), wantErr: "no PEM block"},
		{name: "recipient line instead of identity", in: []byte(id.Recipient().String()), wantErr: "no PEM block"},
		{name: "wrong block type", in: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyBytes}), wantErr: `PEM block is "PRIVATE KEY", want "KUBEKMS BACKUP IDENTITY"`},
		{name: "short key bytes", in: pem.EncodeToMemory(&pem.Block{Type: PEMType, Bytes: badKey}), wantErr: "the 7-byte key in the PEM block is not an MLKEM768-X25519 private key"},
		{name: "empty key bytes", in: pem.EncodeToMemory(&pem.Block{Type: PEMType}), wantErr: "the 0-byte key"},
		{
			name:    "recipient header of another key",
			in:      pem.EncodeToMemory(&pem.Block{Type: PEMType, Headers: map[string]string{"Recipient": other.Recipient().String()}, Bytes: keyBytes}),
			wantErr: "does not match the private key",
		},
		{
			name:    "unparsable recipient header",
			in:      pem.EncodeToMemory(&pem.Block{Type: PEMType, Headers: map[string]string{"Recipient": "nope"}, Bytes: keyBytes}),
			wantErr: "Recipient header",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseIdentity(tt.in)
			if err == nil {
				t.Fatalf("ParseIdentity succeeded (%v), want error containing %q", got, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseIdentity error = %q, want it to contain %q", err, tt.wantErr)
			}
			for _, enc := range []string{hex.EncodeToString(keyBytes), base64.StdEncoding.EncodeToString(keyBytes), hex.EncodeToString(badKey)} {
				if strings.Contains(strings.ToLower(err.Error()), strings.ToLower(enc)) {
					t.Errorf("ParseIdentity error contains key bytes: %q", err)
				}
			}
		})
	}
}

func TestRecipientStringRoundTrip(t *testing.T) {
	r := genIdentity(t).Recipient()
	s := r.String()
	if !strings.HasPrefix(s, "kmsbackup1:") {
		t.Fatalf("String() = %q, want prefix kmsbackup1:", s)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s, "kmsbackup1:"))
	if err != nil {
		t.Fatalf("String() is not unpadded base64url: %v", err)
	}
	sum := sha256.Sum256(raw)
	if got, want := r.Fingerprint(), "sha256:"+hex.EncodeToString(sum[:16]); got != want {
		t.Errorf("Fingerprint() = %q, want %q", got, want)
	}
	if !fpPattern.MatchString(r.Fingerprint()) {
		t.Errorf("Fingerprint() = %q, want sha256: and 32 lowercase hex digits", r.Fingerprint())
	}

	for _, in := range []string{s, "  " + s + "\n", "\t" + s + "\r\n"} {
		got, err := ParseRecipient(in)
		if err != nil {
			t.Fatalf("ParseRecipient(%q...): %v", in[:20], err)
		}
		if got.String() != s || got.Fingerprint() != r.Fingerprint() {
			t.Errorf("ParseRecipient(String()) = %s, want %s", got.Fingerprint(), r.Fingerprint())
		}
	}

	// A bundle sealed to the parsed recipient opens with the identity.
	id := genIdentity(t)
	pr, err := ParseRecipient(id.Recipient().String())
	if err != nil {
		t.Fatalf("ParseRecipient: %v", err)
	}
	b, err := Seal([]Recipient{pr}, testPlaintext, testCreatedAt)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if _, err := Open(b, id); err != nil {
		t.Errorf("Open of a bundle sealed to a parsed recipient: %v", err)
	}

	var zero Recipient
	if zero.String() != "" || zero.Fingerprint() != "" {
		t.Errorf("zero Recipient: String() = %q, Fingerprint() = %q, want both empty", zero.String(), zero.Fingerprint())
	}
}

func TestParseRecipientErrors(t *testing.T) {
	s := genIdentity(t).Recipient().String()
	key := strings.TrimPrefix(s, "kmsbackup1:")
	raw, _ := base64.RawURLEncoding.DecodeString(key)
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "empty", in: "", wantErr: "empty"},
		{name: "whitespace only", in: " \n\t", wantErr: "empty"},
		{name: "no prefix", in: key, wantErr: `missing the "kmsbackup1:" prefix`},
		{name: "age recipient", in: "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", wantErr: `missing the "kmsbackup1:" prefix`},
		{name: "future version", in: "kmsbackup2:" + key, wantErr: "unsupported recipient version"},
		{name: "not base64url", in: "kmsbackup1:" + key[:40] + "!!" + key[42:], wantErr: "not valid unpadded base64url"},
		{name: "std base64 alphabet", in: "kmsbackup1:" + base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb, 0xff}, 608)), wantErr: "not valid unpadded base64url"},
		{name: "padded", in: "kmsbackup1:" + base64.URLEncoding.EncodeToString(raw[:1000]), wantErr: "not valid unpadded base64url"},
		{name: "short key", in: "kmsbackup1:" + base64.RawURLEncoding.EncodeToString(raw[:100]), wantErr: "the key is 100 bytes, want 1216"},
		{name: "long key", in: "kmsbackup1:" + base64.RawURLEncoding.EncodeToString(append(raw, 0)), wantErr: "the key is 1217 bytes, want 1216"},
		{name: "prefix only", in: "kmsbackup1:", wantErr: "the key is 0 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRecipient(tt.in)
			if err == nil {
				t.Fatalf("ParseRecipient succeeded (%s), want error containing %q", got.Fingerprint(), tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseRecipient error = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestOpenWrongIdentity(t *testing.T) {
	ids := genIdentities(t, 3)
	b := mustSeal(t, ids[:2], testPlaintext)
	got, err := Open(b, ids[2])
	if !errors.Is(err, ErrWrongIdentity) {
		t.Fatalf("Open with a non-recipient = %v, want ErrWrongIdentity", err)
	}
	if got != nil {
		t.Errorf("Open returned %d bytes along with an error", len(got))
	}
	for _, id := range ids {
		if fp := id.Recipient().Fingerprint(); !strings.Contains(err.Error(), fp) {
			t.Errorf("error %q does not name fingerprint %s", err, fp)
		}
	}
}

func TestOpenNilIdentity(t *testing.T) {
	b := mustSeal(t, genIdentities(t, 1), testPlaintext)
	for _, id := range []*Identity{nil, {}} {
		if got, err := Open(b, id); err == nil || got != nil {
			t.Errorf("Open with an empty identity = (%d bytes, %v), want an error", len(got), err)
		}
	}
}

func TestOpenTruncated(t *testing.T) {
	ids := genIdentities(t, 2)
	b := mustSeal(t, ids, testPlaintext)
	l1, l2, _ := splitBundle(t, b)
	headerEnd := len(l1) + len(l2) // index of line 2's newline
	tests := []struct {
		name    string
		n       int
		wantErr error
	}{
		{name: "empty file", n: 0, wantErr: ErrNotBundle},
		{name: "inside magic", n: 7, wantErr: ErrNotBundle},
		{name: "magic without newline", n: len(l1) - 1, wantErr: ErrNotBundle},
		{name: "magic only", n: len(l1), wantErr: ErrTruncated},
		{name: "inside header", n: len(l1) + 40, wantErr: ErrTruncated},
		{name: "inside a wrapped key", n: headerEnd - 200, wantErr: ErrTruncated},
		{name: "header without newline", n: headerEnd, wantErr: ErrTruncated},
		{name: "no payload", n: headerEnd + 1, wantErr: ErrTruncated},
		{name: "inside the nonce", n: headerEnd + 5, wantErr: ErrTruncated},
		{name: "inside payload", n: headerEnd + 1 + 100, wantErr: ErrTruncated},
		{name: "last byte missing", n: len(b) - 1, wantErr: ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, id := range ids {
				got, err := Open(b[:tt.n], id)
				if err == nil {
					t.Fatalf("Open of first %d of %d bytes succeeded", tt.n, len(b))
				}
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("Open with identity %d = %v, want %v", i+1, err, tt.wantErr)
				}
				if got != nil {
					t.Errorf("Open returned %d bytes along with an error", len(got))
				}
			}
		})
	}

	t.Run("message counts payload bytes", func(t *testing.T) {
		_, err := Open(b[:len(b)-10], ids[0])
		payload := int64(len(b) - headerEnd - 1)
		want := fmt.Sprintf("backup bundle truncated: %d of %d payload bytes present: the file was cut short", payload-10, payload)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open error = %v, want it to contain %q", err, want)
		}
	})
}

func TestOpenEveryBitFlip(t *testing.T) {
	id := genIdentity(t)
	b := mustSeal(t, []*Identity{id}, testPlaintext)
	probe := testPlaintext[:24]
	counts := map[error]int{}
	for bit := range len(b) * 8 {
		flipped := bytes.Clone(b)
		flipped[bit/8] ^= 1 << (bit % 8)
		got, err := Open(flipped, id)
		if err == nil {
			t.Fatalf("Open succeeded with bit %d (byte %d) flipped", bit, bit/8)
		}
		if got != nil {
			t.Fatalf("bit %d: Open returned %d bytes along with an error", bit, len(got))
		}
		m := matchingSentinels(err)
		if len(m) != 1 {
			t.Fatalf("bit %d (byte %d): error %q wraps %d sentinels, want exactly 1", bit, bit/8, err, len(m))
		}
		counts[m[0]]++
		if strings.Contains(err.Error(), string(probe)) {
			t.Fatalf("bit %d: error contains plaintext: %q", bit, err)
		}
	}
	t.Logf("%d bits flipped in a %d-byte bundle: %v", len(b)*8, len(b), counts)
	// Flips in the payload can only be caught by authentication.
	if counts[ErrCorrupted] < (len(testPlaintext)+payloadOverhead)*8 {
		t.Errorf("%d flips reported as ErrCorrupted, want at least one per payload bit (%d)", counts[ErrCorrupted], (len(testPlaintext)+payloadOverhead)*8)
	}
}

func TestOpenTrailingBytes(t *testing.T) {
	id := genIdentity(t)
	b := mustSeal(t, []*Identity{id}, testPlaintext)
	for _, extra := range []string{"\x00", "\n", "x", strings.Repeat("A", 1000)} {
		got, err := Open(append(bytes.Clone(b), extra...), id)
		if !errors.Is(err, ErrCorrupted) {
			t.Errorf("Open with %d bytes appended = %v, want ErrCorrupted", len(extra), err)
		} else if want := fmt.Sprintf("%d bytes follow the", len(extra)); !strings.Contains(err.Error(), want) {
			t.Errorf("Open error = %q, want it to say %q (something was appended)", err, want)
		}
		if got != nil {
			t.Errorf("Open returned %d bytes along with an error", len(got))
		}
	}
}

func TestOpenTamperedHeader(t *testing.T) {
	ids := genIdentities(t, 2)
	b := mustSeal(t, ids, testPlaintext)
	l1, l2, payload := splitBundle(t, b)
	tests := []struct {
		name    string
		bundle  []byte
		wantErr error
	}{
		{
			name: "createdAt changed",
			bundle: editHeader(t, b, func(h map[string]any) {
				h["createdAt"] = "2020-01-01T00:00:00Z"
			}),
			wantErr: ErrCorrupted,
		},
		{
			name: "wrapped keys swapped",
			bundle: editHeader(t, b, func(h map[string]any) {
				rs := h["recipients"].([]any)
				a, c := rs[0].(map[string]any), rs[1].(map[string]any)
				a["wrappedKey"], c["wrappedKey"] = c["wrappedKey"], a["wrappedKey"]
			}),
			wantErr: ErrCorrupted,
		},
		{
			name: "other recipient removed",
			bundle: editHeader(t, b, func(h map[string]any) {
				h["recipients"] = h["recipients"].([]any)[:1]
			}),
			wantErr: ErrCorrupted,
		},
		{
			name:    "header re-encoded with spaces",
			bundle:  append(append([]byte(l1), bytes.ReplaceAll(l2, []byte(`,"`), []byte(`, "`))...), append([]byte("\n"), payload...)...),
			wantErr: ErrCorrupted,
		},
		{
			name: "wrapped key not base64",
			bundle: editHeader(t, b, func(h map[string]any) {
				h["recipients"].([]any)[0].(map[string]any)["wrappedKey"] = "%%%"
			}),
			wantErr: ErrCorrupted,
		},
		{
			name: "payload shortened in header",
			bundle: editHeader(t, b, func(h map[string]any) {
				h["payloadBytes"] = h["payloadBytes"].(float64) - 1
			}),
			wantErr: ErrCorrupted,
		},
		{
			name: "payload lengthened in header",
			bundle: editHeader(t, b, func(h map[string]any) {
				h["payloadBytes"] = h["payloadBytes"].(float64) + 1
			}),
			wantErr: ErrTruncated,
		},
		{
			name: "negative payloadBytes",
			bundle: editHeader(t, b, func(h map[string]any) {
				h["payloadBytes"] = -1
			}),
			wantErr: ErrCorrupted,
		},
		{
			name: "duplicate recipient entry",
			bundle: editHeader(t, b, func(h map[string]any) {
				rs := h["recipients"].([]any)
				h["recipients"] = append(rs, rs[0])
			}),
			wantErr: ErrCorrupted,
		},
		{
			name: "no recipients",
			bundle: editHeader(t, b, func(h map[string]any) {
				h["recipients"] = []any{}
			}),
			wantErr: ErrCorrupted,
		},
		{
			name: "header version 2",
			bundle: editHeader(t, b, func(h map[string]any) {
				h["version"] = 2
			}),
			wantErr: ErrUnsupportedVersion,
		},
		{
			name: "other KEM",
			bundle: editHeader(t, b, func(h map[string]any) {
				h["kem"] = "DHKEM-X25519"
			}),
			wantErr: ErrUnsupportedVersion,
		},
		{
			name: "unknown header field",
			bundle: editHeader(t, b, func(h map[string]any) {
				h["compression"] = "zstd"
			}),
			wantErr: ErrNotBundle,
		},
		{
			name:    "magic v2",
			bundle:  append([]byte("kubekms-backup v2\n"), b[len(l1):]...),
			wantErr: ErrUnsupportedVersion,
		},
		{
			name:    "header not JSON",
			bundle:  append([]byte(l1+"{not json\n"), payload...),
			wantErr: ErrNotBundle,
		},
		{
			name:    "data after the JSON",
			bundle:  append(append([]byte(l1), l2...), append([]byte(" {}\n"), payload...)...),
			wantErr: ErrNotBundle,
		},
		{
			name:    "a PEM file",
			bundle:  []byte("-----BEGIN KUBEKMS BACKUP IDENTITY-----\nAAAA\n-----END KUBEKMS BACKUP IDENTITY-----\n"),
			wantErr: ErrNotBundle,
		},
		{
			name:    "CRLF magic",
			bundle:  append([]byte("kubekms-backup v1\r\n"), b[len(l1):]...),
			wantErr: ErrNotBundle,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Open(tt.bundle, ids[0])
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open = %v, want %v", err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("Open returned %d bytes along with an error", len(got))
			}
		})
	}
}

func TestBundleHidesSecrets(t *testing.T) {
	id := genIdentity(t)
	b := mustSeal(t, []*Identity{id}, testPlaintext)
	// No 8-byte window of the plaintext appears anywhere in the bundle.
	for i := 0; i+8 <= len(testPlaintext); i++ {
		if w := testPlaintext[i : i+8]; bytes.Contains(b, w) {
			t.Fatalf("bundle contains plaintext %q", w)
		}
	}
	key, err := id.key.Bytes()
	if err != nil {
		t.Fatalf("private key bytes: %v", err)
	}
	for _, enc := range [][]byte{key, []byte(base64.StdEncoding.EncodeToString(key)), []byte(hex.EncodeToString(key))} {
		if bytes.Contains(b, enc[:16]) {
			t.Fatal("bundle contains private key bytes")
		}
	}
}

func TestInspect(t *testing.T) {
	ids := genIdentities(t, 2)
	b := mustSeal(t, ids, testPlaintext)
	h, err := Inspect(b)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if h.Version != 1 {
		t.Errorf("Version = %d, want 1", h.Version)
	}
	if want := testCreatedAt.Truncate(time.Second).UTC(); !h.CreatedAt.Equal(want) || h.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt = %v, want %v", h.CreatedAt, want)
	}
	wantFPs := []string{ids[0].Recipient().Fingerprint(), ids[1].Recipient().Fingerprint()}
	if strings.Join(h.Recipients, ",") != strings.Join(wantFPs, ",") {
		t.Errorf("Recipients = %v, want %v", h.Recipients, wantFPs)
	}
	if want := int64(len(testPlaintext) + payloadOverhead); h.PayloadBytes != want {
		t.Errorf("PayloadBytes = %d, want %d", h.PayloadBytes, want)
	}
	_, _, payload := splitBundle(t, b)
	if int64(len(payload)) != h.PayloadBytes {
		t.Errorf("bundle has %d payload bytes, header announces %d", len(payload), h.PayloadBytes)
	}

	// Inspect only reads the header: a truncated payload still inspects,
	// a broken magic line does not.
	if _, err := Inspect(b[:len(b)-1]); err != nil {
		t.Errorf("Inspect of a bundle missing its last byte: %v", err)
	}
	if _, err := Inspect(b[1:]); !errors.Is(err, ErrNotBundle) {
		t.Errorf("Inspect without the first byte = %v, want ErrNotBundle", err)
	}
}

func TestFormatLines(t *testing.T) {
	b := mustSeal(t, genIdentities(t, 1), testPlaintext)
	l1, l2, _ := splitBundle(t, b)
	if l1 != "kubekms-backup v1\n" {
		t.Errorf("line 1 = %q, want %q", l1, "kubekms-backup v1\n")
	}
	var h struct {
		Version      int    `json:"version"`
		CreatedAt    string `json:"createdAt"`
		KEM          string `json:"kem"`
		KDF          string `json:"kdf"`
		AEAD         string `json:"aead"`
		PayloadBytes int64  `json:"payloadBytes"`
		Recipients   []struct {
			Fingerprint string `json:"fingerprint"`
			WrappedKey  string `json:"wrappedKey"`
		} `json:"recipients"`
	}
	if err := json.Unmarshal(l2, &h); err != nil {
		t.Fatalf("line 2 is not JSON: %v", err)
	}
	if h.Version != 1 || h.CreatedAt != "2026-03-14T14:09:26Z" || h.KEM != "MLKEM768-X25519" || h.KDF != "HKDF-SHA256" || h.AEAD != "AES-256-GCM" {
		t.Errorf("header = %+v", h)
	}
	if len(h.Recipients) != 1 || !fpPattern.MatchString(h.Recipients[0].Fingerprint) {
		t.Fatalf("header recipients = %+v", h.Recipients)
	}
	// X-Wing encapsulated key (1120) + nonce (12) + sealed 32-byte file key + tag (16).
	wk, err := base64.StdEncoding.DecodeString(h.Recipients[0].WrappedKey)
	if err != nil || len(wk) != 1120+12+32+16 {
		t.Errorf("wrappedKey decodes to %d bytes (err %v), want %d", len(wk), err, 1120+12+32+16)
	}
}

func FuzzOpen(f *testing.F) {
	id := genIdentity(f)
	b := mustSeal(f, []*Identity{id}, testPlaintext)
	f.Add(b)
	f.Add(b[:len(b)-1])
	f.Add(b[:len(magic)+30])
	f.Add([]byte(magic + "{}\n"))
	f.Add([]byte(magic + `{"version":1,"recipients":[{}]}` + "\n"))
	f.Add([]byte("kubekms-backup v9\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Open(data, id)
		if err == nil {
			if !bytes.Equal(got, testPlaintext) {
				t.Fatalf("Open succeeded with %q", got)
			}
			return
		}
		if got != nil {
			t.Fatalf("Open returned %d bytes along with an error", len(got))
		}
		if m := matchingSentinels(err); len(m) != 1 {
			t.Fatalf("error %q wraps %d sentinels, want exactly 1", err, len(m))
		}
		if _, ierr := Inspect(data); ierr != nil && len(matchingSentinels(ierr)) != 1 {
			t.Fatalf("Inspect error %q wraps no single sentinel", ierr)
		}
	})
}
