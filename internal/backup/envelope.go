// Package backup implements the kubekms backup bundle: a file the manager
// writes, encrypted to one or more admin-held "backup recipient" public keys,
// that only the holder of a matching backup identity (private key) can open.
//
// Keys are HPKE (RFC 9180) ML-KEM-768+X25519 ("X-Wing") key pairs, so a
// bundle stays confidential if either ML-KEM-768 or X25519 holds. A recipient
// travels as one line of text, "kmsbackup1:" + base64url without padding of
// the serialized public key; an identity as a PEM block of type
// "KUBEKMS BACKUP IDENTITY" holding the serialized private key.
//
// # Format v1
//
// A bundle is two text lines followed by a binary payload:
//
//	line 1   "kubekms-backup v1\n"
//	line 2   compact JSON header + "\n":
//	           {"version":1,"createdAt":"<RFC 3339, UTC>",
//	            "kem":"MLKEM768-X25519","kdf":"HKDF-SHA256","aead":"AES-256-GCM",
//	            "payloadBytes":<n>,
//	            "recipients":[{"fingerprint":"sha256:<32 hex>","wrappedKey":"<base64>"},...]}
//	payload  exactly payloadBytes bytes: nonce (12) | ciphertext | tag (16)
//
// A random 32-byte file key encrypts the plaintext with AES-256-GCM and a
// random nonce (cipher.NewGCMWithRandomNonce). The associated data is the
// exact bytes of line 1 and line 2, newlines included, so no byte of the
// header can change without the payload failing authentication.
//
// The file key is wrapped to each recipient with HPKE in export-only mode
// (KEM MLKEM768-X25519, KDF HKDF-SHA256): the context's exported secret
// (label "kubekms-backup v1 key wrap", 32 bytes) is an AES-256-GCM key
// that seals the file key with a random nonce, the fingerprint as
// associated data. (HPKE's own AEAD uses counter nonces, which Go's FIPS
// 140-only mode refuses; this way every bundle is also made and opened in
// that mode.) wrappedKey is standard base64 of the encapsulated key (1120
// bytes), then nonce | sealed file key | tag. The HPKE info string is
// "kubekms-backup v1 file key", a zero byte and the recipient's
// fingerprint, so a wrapped key only opens for the recipient it is listed
// under.
//
// # Rules
//
//   - At least one and at most 32 recipients, no duplicates.
//   - Open checks, in order: the magic line (ErrNotBundle, or
//     ErrUnsupportedVersion for another format version), the header
//     (ErrNotBundle if unreadable, ErrUnsupportedVersion for another version
//     or algorithm, ErrCorrupted for impossible values), that the identity is
//     a recipient (ErrWrongIdentity), the payload length (ErrTruncated if
//     short, ErrCorrupted if long), then the file key and the payload
//     (ErrCorrupted if either fails authentication).
//   - Errors never carry key material or plaintext.
//   - A bundle is encrypted, not signed: anyone holding a recipient (public)
//     key can write a bundle that recipient will open, and any recipient of a
//     bundle can forge one for its co-recipients. Authenticity of the file
//     must come from where it is stored.
package backup

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Errors a bundle can fail with. Every error Open and Inspect return for a
// bad bundle wraps exactly one of these.
var (
	// ErrNotBundle means the data is not a kubekms backup bundle: the magic
	// line is missing or the header is not readable JSON.
	ErrNotBundle = errors.New("not a readable kubekms backup bundle")
	// ErrUnsupportedVersion means the bundle is in a format version, or uses
	// an algorithm, this kubekms does not read.
	ErrUnsupportedVersion = errors.New("unsupported backup bundle format")
	// ErrWrongIdentity means the identity's recipient is not among the
	// bundle's recipients.
	ErrWrongIdentity = errors.New("wrong backup identity")
	// ErrTruncated means the bundle has fewer bytes than its header announces.
	ErrTruncated = errors.New("backup bundle truncated")
	// ErrCorrupted means the bundle fails authentication or is inconsistent:
	// a flipped bit, tampering, or trailing bytes.
	ErrCorrupted = errors.New("backup bundle corrupted")
)

const (
	// Version is the bundle format version this package writes and reads.
	Version = 1

	// PEMType is the PEM block type of a marshalled Identity.
	PEMType = "KUBEKMS BACKUP IDENTITY"
	// RecipientPrefix starts the text form of a Recipient.
	RecipientPrefix = "kmsbackup1:"

	// MaxRecipients bounds the recipients of one bundle.
	MaxRecipients = 32

	// magic is line 1 of a v1 bundle; magicPrefix is what every version shares.
	magic       = "kubekms-backup v1\n"
	magicPrefix = "kubekms-backup v"
	// maxMagicLine bounds how far a magic line is looked for.
	maxMagicLine = 32
	// maxHeaderBytes bounds line 2. 32 recipients need about 60 KiB.
	maxHeaderBytes = 1 << 20

	// Algorithm names written into and required from the header.
	kemName  = "MLKEM768-X25519"
	kdfName  = "HKDF-SHA256"
	aeadName = "AES-256-GCM"

	// wrapInfo starts the HPKE info string; a zero byte and the recipient's
	// fingerprint follow.
	wrapInfo = "kubekms-backup v1 file key"

	// fileKeySize is the AES-256 file key size.
	fileKeySize = 32
	// payloadOverhead is the random nonce plus the GCM tag.
	payloadOverhead = 12 + 16
	// publicKeySize is a serialized ML-KEM-768+X25519 public key:
	// the ML-KEM-768 encapsulation key (1184) and the X25519 point (32).
	publicKeySize = 1184 + 32

	fingerprintPrefix = "sha256:"
	// fingerprintHexLen is 16 bytes of SHA-256 in hex.
	fingerprintHexLen = 32
)

// suite returns the HPKE KEM and KDF every v1 bundle uses; the AEAD is
// AES-256-GCM with random nonces, outside HPKE (see the package comment).
func suite() (hpke.KEM, hpke.KDF) {
	return hpke.MLKEM768X25519(), hpke.HKDFSHA256()
}

// encSize is the size of an MLKEM768-X25519 encapsulated key, and
// wrapExportLabel the exporter context of the key-wrapping key.
const (
	encSize         = 1120
	wrapExportLabel = "kubekms-backup v1 key wrap"
)

// wrapFileKey wraps the file key to r.
func wrapFileKey(r Recipient, fileKey []byte) ([]byte, error) {
	_, kdf := suite()
	enc, sender, err := hpke.NewSender(r.key, kdf, hpke.ExportOnly(), wrapInfoFor(r.fingerprint))
	if err != nil {
		return nil, err
	}
	gcm, err := wrapAEAD(sender)
	if err != nil {
		return nil, err
	}
	return gcm.Seal(enc, nil, fileKey, []byte(r.fingerprint)), nil
}

// unwrapFileKey opens the file key wrapped to fingerprint fp with id.
func unwrapFileKey(id *Identity, fp string, wrapped []byte) ([]byte, error) {
	if len(wrapped) <= encSize {
		return nil, errors.New("wrapped file key too short")
	}
	_, kdf := suite()
	r, err := hpke.NewRecipient(wrapped[:encSize], id.key, kdf, hpke.ExportOnly(), wrapInfoFor(fp))
	if err != nil {
		return nil, err
	}
	gcm, err := wrapAEAD(r)
	if err != nil {
		return nil, err
	}
	return gcm.Open(nil, nil, wrapped[encSize:], []byte(fp))
}

// wrapAEAD is AES-256-GCM (random nonces) under the key-wrapping key an
// HPKE context, the sender's or the recipient's, exports.
func wrapAEAD(hpkeContext interface {
	Export(string, int) ([]byte, error)
}) (cipher.AEAD, error) {
	kek, err := hpkeContext.Export(wrapExportLabel, fileKeySize)
	if err != nil {
		return nil, err
	}
	defer clear(kek)
	return newPayloadAEAD(kek)
}

// Identity is the private half of a backup key pair: an HPKE
// ML-KEM-768+X25519 private key. Keep it offline; whoever holds it opens
// every bundle encrypted to its Recipient.
type Identity struct {
	key       hpke.PrivateKey
	recipient Recipient
}

// GenerateIdentity returns a new random identity.
func GenerateIdentity() (*Identity, error) {
	kem, _ := suite()
	key, err := kem.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("generate backup identity: %w", err)
	}
	return newIdentity(key)
}

// newIdentity derives the identity's recipient from its private key.
func newIdentity(key hpke.PrivateKey) (*Identity, error) {
	r, err := newRecipient(key.PublicKey())
	if err != nil {
		return nil, err
	}
	return &Identity{key: key, recipient: r}, nil
}

// Recipient returns the public half of the identity, to give to whoever
// writes bundles.
func (id *Identity) Recipient() Recipient {
	return id.recipient
}

// MarshalPEM encodes the identity as a PEM block of type PEMType holding the
// serialized private key, with a "Recipient" header giving the public half
// in text form for convenience.
func (id *Identity) MarshalPEM() ([]byte, error) {
	if id == nil || id.key == nil {
		return nil, errors.New("marshal backup identity: the identity is empty")
	}
	b, err := id.key.Bytes()
	if err != nil {
		return nil, fmt.Errorf("marshal backup identity: serialize private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{
		Type:    PEMType,
		Headers: map[string]string{"Recipient": id.recipient.String()},
		Bytes:   b,
	}), nil
}

// ParseIdentity reads an identity written by MarshalPEM. Data after the
// first PEM block is ignored. If the block has a Recipient header it must
// match the key.
func ParseIdentity(pemBytes []byte) (*Identity, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, fmt.Errorf("parse backup identity: no PEM block found; want a %q block", PEMType)
	}
	if block.Type != PEMType {
		return nil, fmt.Errorf("parse backup identity: PEM block is %q, want %q", block.Type, PEMType)
	}
	kem, _ := suite()
	key, err := kem.NewPrivateKey(block.Bytes)
	if err != nil {
		// The hpke error is not wrapped: it is not known to be free of key bytes.
		return nil, fmt.Errorf("parse backup identity: the %d-byte key in the PEM block is not an %s private key", len(block.Bytes), kemName)
	}
	id, err := newIdentity(key)
	if err != nil {
		return nil, fmt.Errorf("parse backup identity: %w", err)
	}
	if h, ok := block.Headers["Recipient"]; ok {
		want, err := ParseRecipient(h)
		if err != nil {
			return nil, fmt.Errorf("parse backup identity: Recipient header: %w", err)
		}
		if want.Fingerprint() != id.recipient.Fingerprint() {
			return nil, fmt.Errorf("parse backup identity: the Recipient header (%s) does not match the private key (%s): the file was edited or assembled from two keys",
				want.Fingerprint(), id.recipient.Fingerprint())
		}
	}
	return id, nil
}

// Recipient is the public half of a backup key pair. The zero value is not
// a valid recipient.
type Recipient struct {
	key         hpke.PublicKey
	raw         []byte
	fingerprint string
}

// newRecipient wraps an HPKE public key.
func newRecipient(key hpke.PublicKey) (Recipient, error) {
	raw := key.Bytes()
	if len(raw) != publicKeySize {
		return Recipient{}, fmt.Errorf("backup recipient key is %d bytes, want %d for %s", len(raw), publicKeySize, kemName)
	}
	sum := sha256.Sum256(raw)
	return Recipient{
		key:         key,
		raw:         raw,
		fingerprint: fingerprintPrefix + hex.EncodeToString(sum[:fingerprintHexLen/2]),
	}, nil
}

// ParseRecipient parses the text form of a recipient,
// "kmsbackup1:" + base64url without padding of the serialized public key.
// Leading and trailing whitespace is ignored.
func ParseRecipient(s string) (Recipient, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Recipient{}, errors.New("parse backup recipient: empty; want " + RecipientPrefix + "<base64url key>")
	}
	enc, ok := strings.CutPrefix(s, RecipientPrefix)
	if !ok {
		if strings.HasPrefix(s, "kmsbackup") {
			return Recipient{}, fmt.Errorf("parse backup recipient: unsupported recipient version; this kubekms reads %q recipients", RecipientPrefix)
		}
		return Recipient{}, fmt.Errorf("parse backup recipient: missing the %q prefix (is this a backup recipient?)", RecipientPrefix)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(enc)
	if err != nil {
		return Recipient{}, fmt.Errorf("parse backup recipient: the key after %q is not valid unpadded base64url: %w", RecipientPrefix, err)
	}
	if len(raw) != publicKeySize {
		return Recipient{}, fmt.Errorf("parse backup recipient: the key is %d bytes, want %d for an %s key (copied only part of the line?)", len(raw), publicKeySize, kemName)
	}
	kem, _ := suite()
	key, err := kem.NewPublicKey(raw)
	if err != nil {
		return Recipient{}, fmt.Errorf("parse backup recipient: not a valid %s public key: %w", kemName, err)
	}
	return newRecipient(key)
}

// String returns the text form ParseRecipient reads, or "" for the zero
// Recipient.
func (r Recipient) String() string {
	if r.key == nil {
		return ""
	}
	return RecipientPrefix + base64.RawURLEncoding.EncodeToString(r.raw)
}

// Fingerprint returns "sha256:" and the lowercase hex of the first 16 bytes
// of SHA-256 of the serialized public key, or "" for the zero Recipient.
// Bundle headers name their recipients by fingerprint.
func (r Recipient) Fingerprint() string {
	return r.fingerprint
}

// Header is what a bundle says about itself, readable without decrypting.
// Nothing in it is authenticated until Open succeeds.
type Header struct {
	// Version is the format version, 1.
	Version int
	// CreatedAt is when the bundle was sealed, to the second, in UTC.
	CreatedAt time.Time
	// Recipients are the fingerprints of the recipients, in bundle order.
	Recipients []string
	// PayloadBytes is the payload length the header announces.
	PayloadBytes int64
}

// headerJSON is line 2 of a bundle.
type headerJSON struct {
	Version      int             `json:"version"`
	CreatedAt    string          `json:"createdAt"`
	KEM          string          `json:"kem"`
	KDF          string          `json:"kdf"`
	AEAD         string          `json:"aead"`
	PayloadBytes int64           `json:"payloadBytes"`
	Recipients   []recipientJSON `json:"recipients"`
}

// recipientJSON is one recipient's entry in the header.
type recipientJSON struct {
	Fingerprint string `json:"fingerprint"`
	// WrappedKey is standard base64 of the HPKE encapsulated key followed by
	// the sealed file key.
	WrappedKey string `json:"wrappedKey"`
}

// Seal encrypts plaintext to every recipient and returns the bundle. There
// must be at least one recipient and at most MaxRecipients, none twice.
// createdAt is recorded to the second and must not be zero.
func Seal(recipients []Recipient, plaintext []byte, createdAt time.Time) ([]byte, error) {
	switch {
	case len(recipients) == 0:
		return nil, errors.New("seal backup bundle: no recipients: a bundle nobody can open is refused")
	case len(recipients) > MaxRecipients:
		return nil, fmt.Errorf("seal backup bundle: %d recipients, at most %d allowed", len(recipients), MaxRecipients)
	case createdAt.IsZero():
		return nil, errors.New("seal backup bundle: createdAt is the zero time")
	}
	seen := make(map[string]int, len(recipients))
	for i, r := range recipients {
		if r.key == nil {
			return nil, fmt.Errorf("seal backup bundle: recipient %d is empty (the zero Recipient)", i+1)
		}
		if j, dup := seen[r.fingerprint]; dup {
			return nil, fmt.Errorf("seal backup bundle: recipients %d and %d are the same key %s", j+1, i+1, r.fingerprint)
		}
		seen[r.fingerprint] = i
	}

	fileKey := make([]byte, fileKeySize)
	defer clear(fileKey)
	rand.Read(fileKey) // never fails

	h := headerJSON{
		Version:      Version,
		CreatedAt:    createdAt.UTC().Format(time.RFC3339),
		KEM:          kemName,
		KDF:          kdfName,
		AEAD:         aeadName,
		PayloadBytes: int64(len(plaintext)) + payloadOverhead,
		Recipients:   make([]recipientJSON, 0, len(recipients)),
	}
	for i, r := range recipients {
		wrapped, err := wrapFileKey(r, fileKey)
		if err != nil {
			return nil, fmt.Errorf("seal backup bundle: wrap the file key to recipient %d (%s): %w", i+1, r.fingerprint, err)
		}
		h.Recipients = append(h.Recipients, recipientJSON{
			Fingerprint: r.fingerprint,
			WrappedKey:  base64.StdEncoding.EncodeToString(wrapped),
		})
	}
	line2, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("seal backup bundle: encode header: %w", err)
	}

	gcm, err := newPayloadAEAD(fileKey)
	if err != nil {
		return nil, fmt.Errorf("seal backup bundle: %w", err)
	}
	bundle := make([]byte, 0, len(magic)+len(line2)+1+int(h.PayloadBytes))
	bundle = append(bundle, magic...)
	bundle = append(bundle, line2...)
	bundle = append(bundle, '\n')
	aad := bundle[:len(bundle):len(bundle)]
	bundle = gcm.Seal(bundle, nil, plaintext, aad)
	if got := int64(len(bundle) - len(aad)); got != h.PayloadBytes {
		return nil, fmt.Errorf("seal backup bundle: payload is %d bytes, header announces %d", got, h.PayloadBytes)
	}
	return bundle, nil
}

// Inspect parses the magic line and header of a bundle and returns the
// header. It neither decrypts nor looks at the payload, so it cannot tell
// whether the bundle is whole or authentic; Open does.
func Inspect(bundle []byte) (Header, error) {
	p, err := parse(bundle)
	if err != nil {
		return Header{}, err
	}
	fps := make([]string, len(p.header.Recipients))
	for i, r := range p.header.Recipients {
		fps[i] = r.Fingerprint
	}
	return Header{
		Version:      p.header.Version,
		CreatedAt:    p.createdAt,
		Recipients:   fps,
		PayloadBytes: p.header.PayloadBytes,
	}, nil
}

// Open decrypts a bundle with an identity and returns the plaintext, or an
// error wrapping one of the package's sentinel errors.
func Open(bundle []byte, id *Identity) ([]byte, error) {
	if id == nil || id.key == nil {
		return nil, errors.New("open backup bundle: no identity given")
	}
	p, err := parse(bundle)
	if err != nil {
		return nil, err
	}

	fp := id.recipient.fingerprint
	var entry *recipientJSON
	for i := range p.header.Recipients {
		if p.header.Recipients[i].Fingerprint == fp {
			entry = &p.header.Recipients[i]
			break
		}
	}
	if entry == nil {
		fps := make([]string, len(p.header.Recipients))
		for i, r := range p.header.Recipients {
			fps[i] = r.Fingerprint
		}
		return nil, fmt.Errorf("%w: the bundle is encrypted to recipients %s; this identity is %s: use the identity of one of those recipients (if it is one, the header is damaged)",
			ErrWrongIdentity, strings.Join(fps, ", "), fp)
	}

	payload := bundle[len(p.aad):]
	switch n := int64(len(payload)); {
	case n < p.header.PayloadBytes:
		return nil, fmt.Errorf("%w: %d of %d payload bytes present: the file was cut short (an interrupted copy?)",
			ErrTruncated, n, p.header.PayloadBytes)
	case n > p.header.PayloadBytes:
		return nil, fmt.Errorf("%w: %d bytes follow the %d-byte payload: something was appended to the file; nothing in it can be trusted",
			ErrCorrupted, n-p.header.PayloadBytes, p.header.PayloadBytes)
	}

	wrapped, err := base64.StdEncoding.Strict().DecodeString(entry.WrappedKey)
	if err != nil {
		return nil, fmt.Errorf("%w: the wrapped file key for %s is not valid base64 (a flipped bit, or tampering)", ErrCorrupted, fp)
	}
	fileKey, err := unwrapFileKey(id, fp, wrapped)
	if err != nil {
		return nil, fmt.Errorf("%w: the file key wrapped to %s fails authentication (a flipped bit, or tampering); nothing in the bundle can be trusted", ErrCorrupted, fp)
	}
	defer clear(fileKey)
	if len(fileKey) != fileKeySize {
		return nil, fmt.Errorf("%w: the file key wrapped to %s is %d bytes, want %d", ErrCorrupted, fp, len(fileKey), fileKeySize)
	}
	gcm, err := newPayloadAEAD(fileKey)
	if err != nil {
		return nil, fmt.Errorf("open backup bundle: %w", err)
	}
	plaintext, err := gcm.Open(nil, nil, payload, p.aad)
	if err != nil {
		return nil, fmt.Errorf("%w: the payload fails authentication (a flipped bit, or tampering); nothing in it can be trusted", ErrCorrupted)
	}
	return plaintext, nil
}

// parsed is a bundle whose magic line and header have been checked.
type parsed struct {
	header    headerJSON
	createdAt time.Time
	// aad is line 1 and line 2, newlines included.
	aad []byte
}

// parse checks the magic line and the header of a bundle.
func parse(bundle []byte) (parsed, error) {
	if err := checkMagic(bundle); err != nil {
		return parsed{}, err
	}
	rest := bundle[len(magic):]
	end := bytes.IndexByte(rest[:min(len(rest), maxHeaderBytes)], '\n')
	if end < 0 {
		if len(rest) < maxHeaderBytes {
			return parsed{}, fmt.Errorf("%w: the file ends inside the header line (after %d bytes): the file was cut short (an interrupted copy?)",
				ErrTruncated, len(bundle))
		}
		return parsed{}, fmt.Errorf("%w: the header line is longer than %d bytes", ErrNotBundle, maxHeaderBytes)
	}
	line2 := rest[:end]

	var h headerJSON
	dec := json.NewDecoder(bytes.NewReader(line2))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return parsed{}, fmt.Errorf("%w: the header line is not valid JSON: %v", ErrNotBundle, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return parsed{}, fmt.Errorf("%w: data follows the JSON header on its line", ErrNotBundle)
	}

	if h.Version != Version {
		return parsed{}, fmt.Errorf("%w: the header says version %d, this kubekms reads version %d", ErrUnsupportedVersion, h.Version, Version)
	}
	for _, a := range []struct{ what, got, want string }{
		{"KEM", h.KEM, kemName}, {"KDF", h.KDF, kdfName}, {"AEAD", h.AEAD, aeadName},
	} {
		if a.got != a.want {
			return parsed{}, fmt.Errorf("%w: %s %q, this kubekms reads only %s", ErrUnsupportedVersion, a.what, a.got, a.want)
		}
	}
	createdAt, err := time.Parse(time.RFC3339, h.CreatedAt)
	if err != nil {
		return parsed{}, fmt.Errorf("%w: createdAt %q is not an RFC 3339 time", ErrCorrupted, h.CreatedAt)
	}
	if h.PayloadBytes < payloadOverhead {
		return parsed{}, fmt.Errorf("%w: the header announces a %d-byte payload, at least %d needed", ErrCorrupted, h.PayloadBytes, payloadOverhead)
	}
	switch n := len(h.Recipients); {
	case n == 0:
		return parsed{}, fmt.Errorf("%w: the header lists no recipients", ErrCorrupted)
	case n > MaxRecipients:
		return parsed{}, fmt.Errorf("%w: the header lists %d recipients, at most %d allowed", ErrCorrupted, n, MaxRecipients)
	}
	seen := make(map[string]bool, len(h.Recipients))
	for i, r := range h.Recipients {
		if !validFingerprint(r.Fingerprint) {
			return parsed{}, fmt.Errorf("%w: recipient %d has a malformed fingerprint", ErrCorrupted, i+1)
		}
		if seen[r.Fingerprint] {
			return parsed{}, fmt.Errorf("%w: recipient %s is listed twice", ErrCorrupted, r.Fingerprint)
		}
		seen[r.Fingerprint] = true
		if r.WrappedKey == "" {
			return parsed{}, fmt.Errorf("%w: recipient %s has no wrapped file key", ErrCorrupted, r.Fingerprint)
		}
	}
	return parsed{
		header:    h,
		createdAt: createdAt.UTC(),
		aad:       bundle[: len(magic)+end+1 : len(magic)+end+1],
	}, nil
}

// checkMagic checks line 1.
func checkMagic(bundle []byte) error {
	if bytes.HasPrefix(bundle, []byte(magic)) {
		return nil
	}
	if len(bundle) < len(magic) && bytes.HasPrefix([]byte(magic), bundle) {
		return fmt.Errorf("%w: the file is %d bytes and ends inside the magic line: it is empty or was cut short", ErrNotBundle, len(bundle))
	}
	line, _, _ := bytes.Cut(bundle[:min(len(bundle), maxMagicLine)], []byte("\n"))
	if v, ok := bytes.CutPrefix(line, []byte(magicPrefix)); ok && len(v) > 0 && isDigits(v) {
		return fmt.Errorf("%w: the bundle is format v%s, this kubekms reads v%d: use a newer kubekms", ErrUnsupportedVersion, v, Version)
	}
	return fmt.Errorf("%w: the file does not start with %q", ErrNotBundle, strings.TrimSuffix(magic, "\n"))
}

// wrapInfoFor returns the HPKE info string binding a wrapped file key to the
// recipient it is listed under.
func wrapInfoFor(fingerprint string) []byte {
	return append([]byte(wrapInfo+"\x00"), fingerprint...)
}

// newPayloadAEAD returns AES-256-GCM with random nonces under the file key.
func newPayloadAEAD(fileKey []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(fileKey)
	if err != nil {
		return nil, fmt.Errorf("payload cipher: %w", err)
	}
	gcm, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("payload cipher: %w", err)
	}
	return gcm, nil
}

// validFingerprint reports whether s is "sha256:" and 32 lowercase hex digits.
func validFingerprint(s string) bool {
	h, ok := strings.CutPrefix(s, fingerprintPrefix)
	if !ok || len(h) != fingerprintHexLen {
		return false
	}
	for _, c := range []byte(h) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// isDigits reports whether b is all ASCII digits.
func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
