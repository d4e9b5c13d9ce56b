//go:build pkcs11

package seal

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"github.com/miekg/pkcs11"
)

// PKCS11Available is true in builds with the pkcs11 tag (cgo; the -pkcs11
// image), which can load an HSM's PKCS#11 module.
const PKCS11Available = true

const (
	// pkcs11BlobFormat marks a blob sealed in an HSM: format (1 B) | IV
	// (12 B) | AES-GCM ciphertext and tag, computed by the HSM.
	pkcs11BlobFormat = 3
	pkcs11IVSize     = 12
	pkcs11TagBits    = 128
)

// PKCS11 seals with AES-256-GCM inside an HSM, under a secret key found by
// label on a token: the root key never leaves the HSM. One session serves
// every call, one at a time (PKCS#11 sessions are not safe for concurrent
// operations, and unsealing happens once per key version per replica).
type PKCS11 struct {
	cfg PKCS11Config

	mu      sync.Mutex
	ctx     *pkcs11.Ctx
	session pkcs11.SessionHandle
	key     pkcs11.ObjectHandle
	open    bool
}

// NewPKCS11 loads the module, logs in to the token and finds the key; a
// round trip is made before it is returned, so a wrong module, token, PIN
// or key label fails the start with the HSM's own error.
func NewPKCS11(ctx context.Context, cfg PKCS11Config) (*PKCS11, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &PKCS11{cfg: cfg, ctx: pkcs11.New(cfg.Module)}
	if p.ctx == nil {
		return nil, fmt.Errorf("PKCS#11 module %s cannot be loaded (a shared library for this platform is needed)", cfg.Module)
	}
	if err := p.ctx.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		return nil, fmt.Errorf("PKCS#11 module %s: initialize: %w", cfg.Module, err)
	}
	p.mu.Lock()
	err := p.openLocked()
	p.mu.Unlock()
	if err == nil {
		var blob []byte
		if blob, err = p.Seal(ctx, []byte("check"), []byte(checkAAD)); err == nil {
			_, err = p.Unseal(ctx, blob, []byte(checkAAD))
		}
	}
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("PKCS#11 key %q on token %q does not encrypt and decrypt: %w", cfg.KeyLabel, cfg.TokenLabel, err)
	}
	return p, nil
}

// openLocked opens a session on the token, logs in and finds the key.
func (p *PKCS11) openLocked() error {
	slots, err := p.ctx.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("%w: list PKCS#11 slots: %w", ErrRootUnavailable, err)
	}
	var labels []string
	slot, found := uint(0), false
	for _, s := range slots {
		info, err := p.ctx.GetTokenInfo(s)
		if err != nil {
			continue
		}
		labels = append(labels, info.Label)
		if info.Label == p.cfg.TokenLabel {
			slot, found = s, true
			break
		}
	}
	if !found {
		return fmt.Errorf("%w: no PKCS#11 token labelled %q (tokens present: %q)", ErrRootUnavailable, p.cfg.TokenLabel, labels)
	}
	session, err := p.ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		return fmt.Errorf("%w: open a session on token %q: %w", ErrRootUnavailable, p.cfg.TokenLabel, err)
	}
	pin, err := p.cfg.pin()
	if err == nil {
		err = p.ctx.Login(session, pkcs11.CKU_USER, pin)
		if errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
			err = nil
		}
		if err != nil {
			err = fmt.Errorf("%w: log in to token %q: %w", ErrRootUnavailable, p.cfg.TokenLabel, err)
		}
	}
	if err == nil {
		p.key, err = p.findKeyLocked(session)
	}
	if err != nil {
		_ = p.ctx.CloseSession(session)
		return err
	}
	p.session, p.open = session, true
	return nil
}

func (p *PKCS11) findKeyLocked(session pkcs11.SessionHandle) (pkcs11.ObjectHandle, error) {
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, p.cfg.KeyLabel),
	}
	if err := p.ctx.FindObjectsInit(session, tmpl); err != nil {
		return 0, fmt.Errorf("%w: find key %q: %w", ErrRootUnavailable, p.cfg.KeyLabel, err)
	}
	objs, _, err := p.ctx.FindObjects(session, 2)
	if ferr := p.ctx.FindObjectsFinal(session); err == nil {
		err = ferr
	}
	switch {
	case err != nil:
		return 0, fmt.Errorf("%w: find key %q: %w", ErrRootUnavailable, p.cfg.KeyLabel, err)
	case len(objs) == 0:
		return 0, fmt.Errorf("no AES key labelled %q on token %q", p.cfg.KeyLabel, p.cfg.TokenLabel)
	case len(objs) > 1:
		return 0, fmt.Errorf("more than one AES key is labelled %q on token %q: label the root key uniquely", p.cfg.KeyLabel, p.cfg.TokenLabel)
	}
	return objs[0], nil
}

// Provider implements Sealer.
func (p *PKCS11) Provider() string { return PKCS11Provider }

// Seal implements Sealer.
func (p *PKCS11) Seal(_ context.Context, plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, 1+pkcs11IVSize, 1+pkcs11IVSize+len(plaintext)+pkcs11TagBits/8)
	out[0] = pkcs11BlobFormat
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	ct, err := p.do(func() ([]byte, error) {
		params := pkcs11.NewGCMParams(out[1:], fullAAD(out[:1], aad), pkcs11TagBits)
		defer params.Free()
		if err := p.ctx.EncryptInit(p.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, p.key); err != nil {
			return nil, err
		}
		return p.ctx.Encrypt(p.session, plaintext)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: HSM encrypt: %w", ErrRootUnavailable, err)
	}
	return append(out, ct...), nil
}

// Unseal implements Sealer.
func (p *PKCS11) Unseal(_ context.Context, blob, aad []byte) ([]byte, error) {
	if len(blob) < 1+pkcs11IVSize+pkcs11TagBits/8 || blob[0] != pkcs11BlobFormat {
		return nil, ErrUnseal
	}
	pt, err := p.do(func() ([]byte, error) {
		params := pkcs11.NewGCMParams(blob[1:1+pkcs11IVSize], fullAAD(blob[:1], aad), pkcs11TagBits)
		defer params.Free()
		if err := p.ctx.DecryptInit(p.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, p.key); err != nil {
			return nil, err
		}
		return p.ctx.Decrypt(p.session, blob[1+pkcs11IVSize:])
	})
	switch {
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_ENCRYPTED_DATA_INVALID)), errors.Is(err, pkcs11.Error(pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE)):
		return nil, ErrUnseal
	case err != nil && p.healthy():
		// HSMs differ in what a failed tag returns (SoftHSM2 says
		// CKR_GENERAL_ERROR): when the HSM still seals and unseals a
		// value of its own, the blob is what is wrong.
		return nil, ErrUnseal
	case err != nil:
		return nil, fmt.Errorf("%w: HSM decrypt: %w", ErrRootUnavailable, err)
	}
	return pt, nil
}

// healthy reports whether the HSM seals and unseals a check value now.
func (p *PKCS11) healthy() bool {
	iv := make([]byte, pkcs11IVSize)
	if _, err := rand.Read(iv); err != nil {
		return false
	}
	crypt := func(init func(pkcs11.SessionHandle, []*pkcs11.Mechanism, pkcs11.ObjectHandle) error,
		run func(pkcs11.SessionHandle, []byte) ([]byte, error), in []byte) ([]byte, error) {
		return p.do(func() ([]byte, error) {
			params := pkcs11.NewGCMParams(iv, []byte(checkAAD), pkcs11TagBits)
			defer params.Free()
			if err := init(p.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, p.key); err != nil {
				return nil, err
			}
			return run(p.session, in)
		})
	}
	ct, err := crypt(p.ctx.EncryptInit, p.ctx.Encrypt, []byte(checkValue))
	if err != nil {
		return false
	}
	pt, err := crypt(p.ctx.DecryptInit, p.ctx.Decrypt, ct)
	return err == nil && string(pt) == checkValue
}

// do runs op on the session, reopening it once when the HSM lost it (a
// token re-inserted, an HSM restarted).
func (p *PKCS11) do(op func() ([]byte, error)) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.open {
		if err := p.openLocked(); err != nil {
			return nil, err
		}
	}
	out, err := op()
	if errors.Is(err, pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID)) || errors.Is(err, pkcs11.Error(pkcs11.CKR_SESSION_CLOSED)) ||
		errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN)) || errors.Is(err, pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED)) ||
		errors.Is(err, pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT)) || errors.Is(err, pkcs11.Error(pkcs11.CKR_OBJECT_HANDLE_INVALID)) ||
		errors.Is(err, pkcs11.Error(pkcs11.CKR_KEY_HANDLE_INVALID)) {
		p.open = false
		if err := p.openLocked(); err != nil {
			return nil, err
		}
		out, err = op()
	}
	return out, err
}

// Close closes the session. It neither logs out nor finalizes the module:
// both act on every session of the process, and other sealers (tests, a
// root being migrated from) may share the module.
func (p *PKCS11) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open {
		_ = p.ctx.CloseSession(p.session)
		p.open = false
	}
}
