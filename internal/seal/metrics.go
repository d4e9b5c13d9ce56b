package seal

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Instrumented is a Sealer that records each operation's latency and
// errors by provider: an HSM or AWS KMS that slows down or fails shows here
// before a key version cannot be loaded.
type Instrumented struct {
	Sealer
	seconds *prometheus.HistogramVec
	errors  *prometheus.CounterVec
}

// Instrument wraps s and registers its metrics with reg, reusing them when
// another sealer of the process registered them first:
//   - kubekms_root_of_trust_operation_seconds{provider,operation}
//   - kubekms_root_of_trust_errors_total{provider,operation,reason}, reason
//     "unavailable" (the root of trust could not be reached or refused),
//     "unseal" (the blob does not unseal under it) or "other".
func Instrument(s Sealer, reg prometheus.Registerer) (*Instrumented, error) {
	seconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "kubekms_root_of_trust_operation_seconds",
		Help:    "Latency of seal and unseal operations of the root of trust, by provider.",
		Buckets: []float64{0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10},
	}, []string{"provider", "operation"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kubekms_root_of_trust_errors_total",
		Help: "Failed seal and unseal operations of the root of trust, by provider and reason (unavailable, unseal, other).",
	}, []string{"provider", "operation", "reason"})
	var err error
	if seconds, err = register(reg, seconds); err != nil {
		return nil, err
	}
	if errs, err = register(reg, errs); err != nil {
		return nil, err
	}
	return &Instrumented{Sealer: s, seconds: seconds, errors: errs}, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// Seal implements Sealer.
func (m *Instrumented) Seal(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	start := time.Now()
	out, err := m.Sealer.Seal(ctx, plaintext, aad)
	m.observe("seal", start, err)
	return out, err
}

// Unseal implements Sealer.
func (m *Instrumented) Unseal(ctx context.Context, blob, aad []byte) ([]byte, error) {
	start := time.Now()
	out, err := m.Sealer.Unseal(ctx, blob, aad)
	m.observe("unseal", start, err)
	return out, err
}

func (m *Instrumented) observe(op string, start time.Time, err error) {
	p := m.Provider()
	m.seconds.WithLabelValues(p, op).Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
	case errors.Is(err, ErrRootUnavailable):
		m.errors.WithLabelValues(p, op, "unavailable").Inc()
	case errors.Is(err, ErrUnseal):
		m.errors.WithLabelValues(p, op, "unseal").Inc()
	default:
		m.errors.WithLabelValues(p, op, "other").Inc()
	}
}

// SealedUnderCurrent implements the optional method SealedUnderCurrent reads.
func (m *Instrumented) SealedUnderCurrent(blob []byte) bool {
	return SealedUnderCurrent(m.Sealer, blob)
}

// CurrentRootVersion implements the optional method CurrentRootVersion reads.
func (m *Instrumented) CurrentRootVersion() (uint32, bool) { return CurrentRootVersion(m.Sealer) }
