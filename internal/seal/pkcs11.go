//go:build pkcs11

package seal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

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
	// openErr is the last failure to open a session, at openFailed.
	openErr    error
	openFailed time.Time
	// pinned is a value sealed by the key found at start: a key found
	// again after a reopen must unseal it, so a key replaced under the
	// same label is refused, not used.
	pinned []byte
}

// NewPKCS11 loads the module, logs in to the token and finds the key; a
// round trip is made before it is returned, so a wrong module, token, PIN
// or key label fails the start with the HSM's own error.
func NewPKCS11(ctx context.Context, cfg PKCS11Config) (*PKCS11, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	module, err := loadModule(cfg.Module)
	if err != nil {
		return nil, err
	}
	p := &PKCS11{cfg: cfg, ctx: module}
	p.mu.Lock()
	err = p.openLocked()
	p.mu.Unlock()
	if err == nil {
		var blob []byte
		if blob, err = p.Seal(ctx, []byte(checkValue), []byte(checkAAD)); err == nil {
			if _, err = p.Unseal(ctx, blob, []byte(checkAAD)); err == nil {
				p.mu.Lock()
				p.pinned = blob
				p.mu.Unlock()
			}
		}
	}
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("PKCS#11 key %q on token %q does not encrypt and decrypt: %w", cfg.KeyLabel, cfg.TokenLabel, err)
	}
	return p, nil
}

// modules are the PKCS#11 modules this process loaded and initialized,
// by path: each once, and never unloaded (a module's C_Finalize ends every
// session of the process, and unloading an initialized module can crash
// it), however often a root that is down is tried again.
var modules struct {
	sync.Mutex
	m map[string]*pkcs11.Ctx
}

func loadModule(path string) (*pkcs11.Ctx, error) {
	modules.Lock()
	defer modules.Unlock()
	if c, ok := modules.m[path]; ok {
		return c, nil
	}
	c := pkcs11.New(path)
	if c == nil {
		return nil, fmt.Errorf("PKCS#11 module %s cannot be loaded (a shared library for this platform is needed)", path)
	}
	if err := c.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		c.Destroy() // not initialized: safe to unload
		return nil, fmt.Errorf("PKCS#11 module %s: initialize: %w", path, err)
	}
	if modules.m == nil {
		modules.m = map[string]*pkcs11.Ctx{}
	}
	modules.m[path] = c
	return c, nil
}

// reopenEvery limits how often a session that cannot be opened is tried
// again, whatever the rate of calls: each try is a login on the HSM.
const reopenEvery = time.Second

// openLocked opens a session on the token, logs in and finds the key; a
// failure is kept, and answered again without a try, for reopenEvery.
func (p *PKCS11) openLocked() error {
	if p.openErr != nil && time.Since(p.openFailed) < reopenEvery {
		return p.openErr
	}
	err := p.tryOpenLocked()
	p.openErr, p.openFailed = err, time.Now()
	return err
}

// tryOpenLocked opens a session on the token, logs in and finds the key.
func (p *PKCS11) tryOpenLocked() error {
	slots, err := p.ctx.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("%w: list PKCS#11 slots: %w", ErrRootUnavailable, err)
	}
	slot, found := uint(0), false
	for _, s := range slots {
		info, err := p.ctx.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if info.Label == p.cfg.TokenLabel {
			slot, found = s, true
			break
		}
	}
	if !found {
		// Other tokens' labels are not named: this reaches Events.
		return fmt.Errorf("%w: no PKCS#11 token labelled %q in the %d slots with a token", ErrRootUnavailable, p.cfg.TokenLabel, len(slots))
	}
	session, err := p.ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		return fmt.Errorf("%w: open a session on token %q: %w", ErrRootUnavailable, p.cfg.TokenLabel, err)
	}
	pin, err := p.cfg.pin()
	if err == nil {
		err = p.login(session, pin)
	}
	var key pkcs11.ObjectHandle
	if err == nil {
		key, err = p.findKeyLocked(session)
	}
	if err == nil && p.pinned != nil {
		pt, _, perr := p.gcm(session, key, false, p.pinned[1:1+pkcs11IVSize], fullAAD(p.pinned[:1], []byte(checkAAD)), p.pinned[1+pkcs11IVSize:])
		if perr != nil || string(pt) != checkValue {
			err = fmt.Errorf("%w: the AES key labelled %q on token %q is not the key this manager started with (it was replaced, or another key took its label): "+
				"restore the original key in the HSM; nothing is sealed or unsealed until then", ErrWrongRoot, p.cfg.KeyLabel, p.cfg.TokenLabel)
		}
	}
	if err != nil {
		_ = p.ctx.CloseSession(session)
		return err
	}
	p.session, p.key, p.open = session, key, true
	return nil
}

// gcm runs one AES-GCM encryption or decryption of in in the HSM and
// returns the IV it used (an HSM may choose its own when encrypting).
func (p *PKCS11) gcm(session pkcs11.SessionHandle, key pkcs11.ObjectHandle, encrypt bool, iv, aad, in []byte) (out, usedIV []byte, err error) {
	params := pkcs11.NewGCMParams(iv, aad, pkcs11TagBits)
	defer params.Free()
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}
	if encrypt {
		if err = p.ctx.EncryptInit(session, mech, key); err == nil {
			out, err = p.ctx.Encrypt(session, in)
		}
	} else if err = p.ctx.DecryptInit(session, mech, key); err == nil {
		out, err = p.ctx.Decrypt(session, in)
	}
	if err != nil {
		return nil, nil, err
	}
	return out, params.IV(), nil
}

// refusedPINs remembers, per module and token, the PIN the token refused
// last, so that it is not tried again (every few seconds, by every
// reopen and root check) until the PIN file changes: HSMs lock a user out
// after a few wrong PINs.
var refusedPINs struct {
	sync.Mutex
	m map[string]refusedPIN
}

type refusedPIN struct {
	sum [sha256.Size]byte
	err error
}

func (p *PKCS11) login(session pkcs11.SessionHandle, pin string) error {
	token := p.cfg.Module + "\x00" + p.cfg.TokenLabel
	sum := sha256.Sum256([]byte(pin))
	refusedPINs.Lock()
	defer refusedPINs.Unlock()
	if r, ok := refusedPINs.m[token]; ok && r.sum == sum {
		return fmt.Errorf("%w: log in to token %q: the PIN in %s was refused (%w) and is not tried again until that file changes, lest the token lock",
			ErrRootUnavailable, p.cfg.TokenLabel, p.cfg.PINFile, r.err)
	}
	err := p.ctx.Login(session, pkcs11.CKU_USER, pin)
	switch {
	case err == nil, errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)):
		delete(refusedPINs.m, token)
		return nil
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)), errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_LOCKED)),
		errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_EXPIRED)), errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_LEN_RANGE)),
		errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INVALID)):
		if refusedPINs.m == nil {
			refusedPINs.m = map[string]refusedPIN{}
		}
		refusedPINs.m[token] = refusedPIN{sum: sum, err: err}
	}
	return fmt.Errorf("%w: log in to token %q: %w", ErrRootUnavailable, p.cfg.TokenLabel, err)
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
	var iv []byte
	ct, err := p.do(func() (ct []byte, err error) {
		ct, iv, err = p.gcm(p.session, p.key, true, out[1:], fullAAD(out[:1], aad), plaintext)
		return ct, err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: HSM encrypt: %w", ErrRootUnavailable, err)
	}
	if len(iv) != pkcs11IVSize {
		return nil, fmt.Errorf("%w: HSM encrypt used a %d-byte IV, want %d", ErrRootUnavailable, len(iv), pkcs11IVSize)
	}
	// An HSM may have chosen its own IV: store the one it used.
	copy(out[1:], iv)
	return append(out, ct...), nil
}

// Unseal implements Sealer.
func (p *PKCS11) Unseal(_ context.Context, blob, aad []byte) ([]byte, error) {
	if len(blob) < 1+pkcs11IVSize+pkcs11TagBits/8 || blob[0] != pkcs11BlobFormat {
		return nil, ErrUnseal
	}
	pt, err := p.do(func() ([]byte, error) {
		pt, _, err := p.gcm(p.session, p.key, false, blob[1:1+pkcs11IVSize], fullAAD(blob[:1], aad), blob[1+pkcs11IVSize:])
		return pt, err
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
	crypt := func(encrypt bool, in []byte) ([]byte, error) {
		return p.do(func() (out []byte, err error) {
			out, iv, err = p.gcm(p.session, p.key, encrypt, iv, []byte(checkAAD), in)
			return out, err
		})
	}
	ct, err := crypt(true, []byte(checkValue))
	if err != nil {
		return false
	}
	pt, err := crypt(false, ct)
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
		errors.Is(err, pkcs11.Error(pkcs11.CKR_KEY_HANDLE_INVALID)) || errors.Is(err, pkcs11.Error(pkcs11.CKR_DEVICE_ERROR)) ||
		errors.Is(err, pkcs11.Error(pkcs11.CKR_TOKEN_NOT_RECOGNIZED)) {
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
