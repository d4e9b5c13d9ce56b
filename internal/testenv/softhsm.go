//go:build pkcs11

package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	"github.com/miekg/pkcs11"
)

// SoftHSMModule is where Debian's softhsm2 package puts its PKCS#11
// module (hack/softhsm.sh installs it).
const SoftHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// SoftHSM is a SoftHSM2 token of its own, in a directory of its own.
type SoftHSM struct {
	Module, TokenLabel, PINFile string
}

var softHSM struct {
	once sync.Once
	h    *SoftHSM
	err  error
}

// StartSoftHSM returns this process's SoftHSM2 token, labelled "kubekms",
// made on first use in a directory of its own (SoftHSM2 reads its
// configuration, SOFTHSM2_CONF, once per process), and generates on it one
// AES-256 key per label: sensitive and not extractable, as a root key in
// an HSM is. Labels must be unique in the process.
func StartSoftHSM(keyLabels ...string) (*SoftHSM, error) {
	softHSM.once.Do(func() { softHSM.h, softHSM.err = initSoftHSM() })
	if softHSM.err != nil {
		return nil, softHSM.err
	}
	for _, label := range keyLabels {
		if err := softHSM.h.GenerateKey(label, SoftHSMPIN); err != nil {
			return nil, fmt.Errorf("generate HSM key %q: %w", label, err)
		}
	}
	return softHSM.h, nil
}

// SoftHSMPIN is the user PIN of the test token.
const SoftHSMPIN = "1234-kubekms"

func initSoftHSM() (*SoftHSM, error) {
	if _, err := os.Stat(SoftHSMModule); err != nil {
		return nil, fmt.Errorf("SoftHSM2 is not installed (%w): hack/softhsm.sh installs it (make test-pkcs11 runs it)", err)
	}
	dir, err := os.MkdirTemp("", "kubekms-softhsm-")
	if err != nil {
		return nil, err
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens), 0o600); err != nil {
		return nil, err
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return nil, err
	}
	h := &SoftHSM{Module: SoftHSMModule, TokenLabel: "kubekms", PINFile: filepath.Join(dir, "pin")}
	if err := os.WriteFile(h.PINFile, []byte(SoftHSMPIN+"\n"), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", h.TokenLabel, "--pin", SoftHSMPIN, "--so-pin", "5678-kubekms")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("softhsm2-util --init-token: %w: %s", err, out)
	}
	return h, nil
}

// GenerateKey makes an AES-256 key labelled label on the token.
func (h *SoftHSM) GenerateKey(label, pin string) error {
	return h.withSession(pin, func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		_, err := p.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		})
		return err
	})
}

// DestroyKeys destroys every key labelled label on the token, as an HSM
// admin (or an attacker with the PIN) could.
func (h *SoftHSM) DestroyKeys(label string) error {
	return h.withSession(SoftHSMPIN, func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		if err := p.FindObjectsInit(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}); err != nil {
			return err
		}
		objs, _, err := p.FindObjects(s, 16)
		_ = p.FindObjectsFinal(s)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if err := p.DestroyObject(s, o); err != nil {
				return err
			}
		}
		return nil
	})
}

// withSession runs f in a read-write session on the token, logged in.
func (h *SoftHSM) withSession(pin string, f func(*pkcs11.Ctx, pkcs11.SessionHandle) error) error {
	p := pkcs11.New(h.Module)
	if p == nil {
		return errors.New("load " + h.Module)
	}
	if err := p.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		return err
	}
	slots, err := p.GetSlotList(true)
	if err != nil {
		return err
	}
	for _, slot := range slots {
		info, err := p.GetTokenInfo(slot)
		if err != nil || info.Label != h.TokenLabel {
			continue
		}
		s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return err
		}
		defer p.CloseSession(s)
		if err := p.Login(s, pkcs11.CKU_USER, pin); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
			return err
		}
		return f(p, s)
	}
	return fmt.Errorf("no token labelled %s", h.TokenLabel)
}
