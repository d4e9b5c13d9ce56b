package dataplane

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"

	"github.com/kubekms/kubekms/internal/quota"
)

// Metrics of the data plane. A nil *Metrics records nothing.
type Metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	throttled *prometheus.CounterVec
	// AuditBatch is how many audit records each write of the audit log
	// carried (group commit).
	AuditBatch prometheus.Histogram
}

// NewMetrics creates the data-plane metrics and registers them.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubekms_dataplane_requests_total",
			Help: "Data-plane requests by operation and gRPC code.",
		}, []string{"operation", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kubekms_dataplane_request_duration_seconds",
			Help:    "Data-plane request latency by operation.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16), // 50µs .. ~1.6s
		}, []string{"operation"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubekms_quota_throttled_requests_total",
			Help: "Requests refused for quota, by caller namespace and operation class.",
		}, []string{"namespace", "class"}),
		AuditBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kubekms_audit_batch_records",
			Help:    "Audit records per write of the audit log: calls that arrive while a write is in flight go out together in the next one.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10), // 1 .. 512
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.throttled, m.AuditBatch} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observe counts a finished call of operation op by its gRPC code and
// records how long it took since start. Latency is measured, not decided,
// so it uses the real monotonic clock, never the injected one.
func (m *Metrics) observe(op string, start time.Time, err error) {
	if m == nil {
		return
	}
	m.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	m.requests.WithLabelValues(op, status.Code(err).String()).Inc()
}

// refused counts a call refused for the quota of namespace's class.
func (m *Metrics) refused(namespace string, class quota.Class) {
	if m == nil {
		return
	}
	m.throttled.WithLabelValues(namespace, string(class)).Inc()
}
