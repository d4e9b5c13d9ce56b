// Package quota throttles data-plane requests the way AWS KMS does: token
// buckets per caller namespace and operation class (symmetric, RSA, ECC),
// plus per-operation limits for expensive calls. Limits are requests per
// second for the whole cluster; with N ready replicas each enforces 1/N.
package quota

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"sigs.k8s.io/yaml"

	"github.com/kubekms/kubekms/internal/keyspec"
)

// Class groups operations that share a bucket, as AWS's quotas do. The
// class of a key's spec is in the key-spec table (keyspec.Spec.QuotaClass);
// the names here are that table's.
type Class string

const (
	// Symmetric: every operation on a symmetric or HMAC key (Encrypt,
	// Decrypt, ReEncrypt, GenerateDataKey*, GenerateMac, VerifyMac,
	// DescribeKey, ...) and those naming no key (GenerateRandom).
	Symmetric Class = keyspec.ClassSymmetric
	// RSA: every operation on an RSA key, signing and encryption alike.
	RSA Class = keyspec.ClassRSA
	// ECC: every operation on an elliptic-curve key.
	ECC Class = keyspec.ClassECC
)

// Limits are requests per second; Burst is how many may come at once
// (default: one second's worth).
type Limits struct {
	Symmetric *float64 `json:"symmetric,omitempty"`
	RSA       *float64 `json:"rsa,omitempty"`
	ECC       *float64 `json:"ecc,omitempty"`
	// Operations limits single operations on top of their class, e.g.
	// GenerateDataKeyPair.
	Operations map[string]float64 `json:"operations,omitempty"`
}

// Config is the quota configuration: defaults, and overrides per caller
// namespace (fields an override leaves out come from the defaults).
type Config struct {
	Defaults   Limits            `json:"defaults"`
	Namespaces map[string]Limits `json:"namespaces,omitempty"`
}

// DefaultConfig is what applies without a configuration file.
func DefaultConfig() Config {
	return Config{Defaults: Limits{
		Symmetric:  new(2000.0),
		RSA:        new(500.0),
		ECC:        new(1000.0),
		Operations: map[string]float64{"GenerateDataKeyPair": 50, "GenerateDataKeyPairWithoutPlaintext": 50},
	}}
}

// knownOperations may carry their own limit.
var knownOperations = []string{
	"Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
	"GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "Sign", "Verify", "GetPublicKey",
	"GenerateMac", "VerifyMac", "GenerateRandom", "DescribeKey", "ExplainAccess", "GetParametersForImport",
}

// Parse reads a YAML or JSON configuration strictly and fills in defaults.
func Parse(data []byte) (Config, error) {
	cfg := Config{}
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("quota configuration: %w", err)
	}
	def := DefaultConfig().Defaults
	cfg.Defaults = merge(def, cfg.Defaults)
	check := func(where string, l Limits) error {
		for name, v := range map[Class]*float64{Symmetric: l.Symmetric, RSA: l.RSA, ECC: l.ECC} {
			if v != nil && *v <= 0 {
				return fmt.Errorf("quota configuration: %s.%s must be a positive number of requests per second, got %v", where, name, *v)
			}
		}
		for op, v := range l.Operations {
			if !slices.Contains(knownOperations, op) {
				return fmt.Errorf("quota configuration: %s.operations: unknown operation %q (known: %v)", where, op, knownOperations)
			}
			if v <= 0 {
				return fmt.Errorf("quota configuration: %s.operations.%s must be positive, got %v", where, op, v)
			}
		}
		return nil
	}
	if err := check("defaults", cfg.Defaults); err != nil {
		return Config{}, err
	}
	for ns, l := range cfg.Namespaces {
		if err := check("namespaces."+ns, l); err != nil {
			return Config{}, err
		}
	}
	return cfg, nil
}

// merge returns base with the fields over sets replaced.
func merge(base, over Limits) Limits {
	out := base
	if over.Symmetric != nil {
		out.Symmetric = over.Symmetric
	}
	if over.RSA != nil {
		out.RSA = over.RSA
	}
	if over.ECC != nil {
		out.ECC = over.ECC
	}
	out.Operations = maps.Clone(base.Operations)
	if out.Operations == nil {
		out.Operations = map[string]float64{}
	}
	maps.Copy(out.Operations, over.Operations)
	return out
}

// For returns the limits of a caller namespace.
func (c Config) For(namespace string) Limits {
	if o, ok := c.Namespaces[namespace]; ok {
		return merge(c.Defaults, o)
	}
	return c.Defaults
}

func (l Limits) class(c Class) float64 {
	var v *float64
	switch c {
	case Symmetric:
		v = l.Symmetric
	case RSA:
		v = l.RSA
	case ECC:
		v = l.ECC
	}
	if v == nil {
		return 0
	}
	return *v
}

type bucketKey struct {
	namespace string
	class     Class
	operation string // "" for the class bucket
}

// Limiter holds the buckets.
type Limiter struct {
	mu       sync.RWMutex
	cfg      Config
	replicas int
	buckets  map[bucketKey]*rate.Limiter
	now      func() time.Time
}

// NewLimiter returns a limiter with cfg and one replica.
func NewLimiter(cfg Config, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{cfg: cfg, replicas: 1, buckets: map[bucketKey]*rate.Limiter{}, now: now}
}

// SetConfig applies a new configuration to every bucket at once.
func (l *Limiter) SetConfig(cfg Config) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg = cfg
	l.resize()
}

// SetReplicas tells how many replicas share the limits (at least 1).
func (l *Limiter) SetReplicas(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n < 1 {
		n = 1
	}
	if n == l.replicas {
		return
	}
	l.replicas = n
	l.resize()
}

// Replicas is the current share divisor.
func (l *Limiter) Replicas() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.replicas
}

// resize sets every existing bucket to the current limits, keeping the
// tokens each has; buckets that have no limit now, or had none, are made
// again on next use. l.mu is held.
func (l *Limiter) resize() {
	now := l.now()
	for k, b := range l.buckets {
		r := l.limitLocked(k)
		if b == nil || r <= 0 {
			delete(l.buckets, k)
			continue
		}
		b.SetLimitAt(now, rate.Limit(r))
		b.SetBurstAt(now, burst(r))
	}
}

// limitLocked is this replica's rate for a bucket; 0 means no bucket.
func (l *Limiter) limitLocked(k bucketKey) float64 {
	lim := l.cfg.For(k.namespace)
	var total float64
	if k.operation != "" {
		total = lim.Operations[k.operation]
	} else {
		total = lim.class(k.class)
	}
	return total / float64(l.replicas)
}

func burst(r float64) int { return max(1, int(r)) }

// Limit is the cluster-wide requests per second of a namespace's class.
func (l *Limiter) Limit(namespace string, c Class) float64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.cfg.For(namespace).class(c)
}

// Decision is the answer for one request.
type Decision struct {
	Allowed bool
	// RetryAfter is when a refused request may succeed.
	RetryAfter time.Duration
	Class      Class
}

// Allow takes a token for one request of operation op, in class c, from
// caller namespace ns: from the operation's own bucket if it has one, and
// from the class bucket.
func (l *Limiter) Allow(ns string, c Class, op string) Decision {
	now := l.now()
	d := Decision{Allowed: true, Class: c}
	var taken [2]*rate.Reservation
	n := 0
	for _, k := range [2]bucketKey{{ns, c, op}, {ns, c, ""}} {
		b := l.bucket(k)
		if b == nil {
			continue
		}
		r := b.ReserveN(now, 1)
		if delay := r.DelayFrom(now); !r.OK() || delay > 0 {
			r.CancelAt(now)
			for _, t := range taken[:n] {
				t.CancelAt(now)
			}
			d.Allowed = false
			d.RetryAfter = max(delay, time.Millisecond)
			return d
		}
		taken[n] = r
		n++
	}
	return d
}

func (l *Limiter) bucket(k bucketKey) *rate.Limiter {
	l.mu.RLock()
	b, ok := l.buckets[k]
	l.mu.RUnlock()
	if ok {
		return b
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.buckets[k]; ok {
		return b
	}
	r := l.limitLocked(k)
	if r <= 0 {
		l.buckets[k] = nil
		return nil
	}
	b = rate.NewLimiter(rate.Limit(r), burst(r))
	l.buckets[k] = b
	return b
}

// Level is a bucket's state, for metrics.
type Level struct {
	Namespace, Class, Operation string
	Tokens                      float64
}

// Levels reports the tokens left in every bucket.
func (l *Limiter) Levels() []Level {
	l.mu.RLock()
	defer l.mu.RUnlock()
	now := l.now()
	out := make([]Level, 0, len(l.buckets))
	for k, b := range l.buckets {
		if b != nil {
			out = append(out, Level{Namespace: k.namespace, Class: string(k.class), Operation: k.operation, Tokens: b.TokensAt(now)})
		}
	}
	return out
}
