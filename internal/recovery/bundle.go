package recovery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kubekms/kubekms/internal/backup"
)

// ErrNoRecipients: the manager was deployed without a backup recipient.
var ErrNoRecipients = errors.New("no backup recipient is configured: deploy the manager with --backup-recipient (chart value backup.recipients), the public key of an identity from kubectl kms backup-identity")

// Bundle exports everything and encrypts it to recipients at once: the
// material is in plaintext only between the two, and wiped after.
func Bundle(ctx context.Context, e *Exporter, recipients []backup.Recipient, now time.Time) ([]byte, error) {
	if len(recipients) == 0 {
		return nil, ErrNoRecipients
	}
	c, err := e.Export(ctx, now)
	if err != nil {
		return nil, err
	}
	defer c.Wipe()
	plaintext, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("backup: encode: %w", err)
	}
	defer clear(plaintext)
	return backup.Seal(recipients, plaintext, now)
}

// DecodeContents reads decrypted contents strictly: unknown fields and
// trailing data are refused, as ErrInvalid.
func DecodeContents(plaintext []byte) (*Contents, error) {
	dec := json.NewDecoder(bytes.NewReader(plaintext))
	dec.DisallowUnknownFields()
	c := &Contents{}
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the contents", ErrInvalid)
	}
	if c.Format != FormatV1 {
		return nil, fmt.Errorf("%w: format is %q, this version reads %q", ErrInvalid, c.Format, FormatV1)
	}
	return c, nil
}

// Open decrypts a bundle with an identity and decodes its contents.
func Open(bundle []byte, id *backup.Identity) (*Contents, error) {
	plaintext, err := backup.Open(bundle, id)
	if err != nil {
		return nil, err
	}
	defer clear(plaintext)
	return DecodeContents(plaintext)
}

// Encode is the contents as Restore reads them (DecodeContents).
func (c *Contents) Encode() ([]byte, error) { return json.Marshal(c) }
