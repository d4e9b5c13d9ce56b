package seal

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestInstrumentedCountsOperationsAndErrorsByProvider(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	s, err := Instrument(testSealer(t, 1, 1), reg)
	if err != nil {
		t.Fatal(err)
	}
	// A second sealer in the process (test suites, the bench) shares them.
	again, err := Instrument(testSealer(t, 1, 1), reg)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := s.Seal(ctx, []byte("m"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Unseal(ctx, blob, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Unseal(ctx, blob, []byte("other")); !errors.Is(err, ErrUnseal) {
		t.Fatal(err)
	}
	if _, err := s.Unseal(ctx, append([]byte{blobFormat, 0, 0, 0, 2}, blob[headerLen:]...), nil); !errors.Is(err, ErrRootUnavailable) {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(s.seconds, "kubekms_root_of_trust_operation_seconds"); n != 2 {
		t.Fatalf("%d latency series, want seal and unseal", n)
	}
	for reason, want := range map[string]float64{"unseal": 1, "unavailable": 1, "other": 0} {
		if got := testutil.ToFloat64(s.errors.WithLabelValues("test", "unseal", reason)); got != want {
			t.Errorf("errors{reason=%s} = %v, want %v", reason, got, want)
		}
	}
}
