package quota

import (
	"strings"
	"testing"
	"time"

	"github.com/kubekms/kubekms/internal/keyspec"
)

type fakeTime struct{ t time.Time }

func (f *fakeTime) now() time.Time       { return f.t }
func (f *fakeTime) step(d time.Duration) { f.t = f.t.Add(d) }
func mustParse(t *testing.T, s string) Config {
	t.Helper()
	cfg, err := Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// allowed counts how many of n requests at one instant pass.
func allowed(l *Limiter, ns string, c Class, op string, n int) int {
	ok := 0
	for range n {
		if l.Allow(ns, c, op).Allowed {
			ok++
		}
	}
	return ok
}

func TestLimiter(t *testing.T) {
	const cfg = `
defaults: {symmetric: 100, operations: {GenerateDataKeyPair: 5}}
namespaces:
  batch: {symmetric: 10}
`
	tests := map[string]struct {
		ns       string
		op       string
		replicas int
		want     int
	}{
		"default namespace gets its burst of one second": {ns: "shop", op: "Encrypt", want: 100},
		"override for one namespace":                     {ns: "batch", op: "Encrypt", want: 10},
		"two replicas each take half":                    {ns: "shop", op: "Encrypt", replicas: 2, want: 50},
		"a per-operation limit is stricter":              {ns: "shop", op: "GenerateDataKeyPair", want: 5},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ft := &fakeTime{t: time.Unix(1000, 0)}
			l := NewLimiter(mustParse(t, cfg), ft.now)
			if tc.replicas > 0 {
				l.SetReplicas(tc.replicas)
			}
			if got := allowed(l, tc.ns, Symmetric, tc.op, 1000); got != tc.want {
				t.Fatalf("allowed %d at once, want %d", got, tc.want)
			}
		})
	}
}

func TestRefusalSaysWhenToRetry(t *testing.T) {
	ft := &fakeTime{t: time.Unix(1000, 0)}
	l := NewLimiter(mustParse(t, `defaults: {symmetric: 10}`), ft.now)
	allowed(l, "shop", Symmetric, "Encrypt", 10)
	d := l.Allow("shop", Symmetric, "Encrypt")
	if d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > 100*time.Millisecond {
		t.Fatalf("decision = %+v, want refused with a retry within 100ms", d)
	}
	ft.step(d.RetryAfter)
	if !l.Allow("shop", Symmetric, "Encrypt").Allowed {
		t.Fatal("not allowed after RetryAfter")
	}
}

func TestNamespacesDoNotShareBuckets(t *testing.T) {
	ft := &fakeTime{t: time.Unix(1000, 0)}
	l := NewLimiter(mustParse(t, `defaults: {symmetric: 10}`), ft.now)
	allowed(l, "noisy", Symmetric, "Encrypt", 100)
	if got := allowed(l, "quiet", Symmetric, "Encrypt", 10); got != 10 {
		t.Fatalf("a noisy namespace slowed a quiet one: %d of 10", got)
	}
}

func TestRefusedOperationDoesNotSpendTheClassToken(t *testing.T) {
	ft := &fakeTime{t: time.Unix(1000, 0)}
	l := NewLimiter(mustParse(t, `defaults: {symmetric: 10, operations: {GenerateDataKeyPair: 1}}`), ft.now)
	allowed(l, "shop", Symmetric, "GenerateDataKeyPair", 50)
	if got := allowed(l, "shop", Symmetric, "Encrypt", 100); got != 9 {
		t.Fatalf("Encrypt allowed %d, want 9 (one token went to the one allowed key pair)", got)
	}
}

func TestReloadAndReplicaChangesApplyToExistingBuckets(t *testing.T) {
	ft := &fakeTime{t: time.Unix(1000, 0)}
	l := NewLimiter(mustParse(t, `defaults: {symmetric: 10}`), ft.now)
	allowed(l, "shop", Symmetric, "Encrypt", 10)
	l.SetConfig(mustParse(t, `defaults: {symmetric: 1000}`))
	ft.step(time.Second)
	if got := allowed(l, "shop", Symmetric, "Encrypt", 2000); got < 900 {
		t.Fatalf("after reload allowed %d, want about 1000", got)
	}
	l.SetReplicas(4)
	ft.step(time.Second)
	if got := allowed(l, "shop", Symmetric, "Encrypt", 2000); got != 250 {
		t.Fatalf("with 4 replicas allowed %d, want 250", got)
	}
}

func TestParseRefusesBadConfigurations(t *testing.T) {
	for name, tc := range map[string]struct{ in, want string }{
		"negative":          {`defaults: {symmetric: -1}`, "defaults.symmetric must be a positive number"},
		"zero override":     {`namespaces: {x: {rsa: 0}}`, "namespaces.x.rsa must be a positive number"},
		"unknown operation": {`defaults: {operations: {Encrpyt: 5}}`, `unknown operation "Encrpyt"`},
		"unknown field":     {`defaults: {symetric: 5}`, "symetric"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	cfg := mustParse(t, `namespaces: {batch: {symmetric: 5}}`)
	if got := *cfg.For("batch").RSA; got != 500 {
		t.Fatalf("fields an override leaves out come from the defaults: rsa = %v", got)
	}
}

func BenchmarkAllow(b *testing.B) {
	l := NewLimiter(Config{Defaults: Limits{Symmetric: new(1e12)}}, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !l.Allow("shop", Symmetric, "Encrypt").Allowed {
				b.Fatal("refused")
			}
		}
	})
}

// Every key spec's quota class is a class with a limit, and each can be
// configured by its name: a spec whose class quota does not know would
// count with no limit at all.
func TestEveryKeySpecClassHasALimit(t *testing.T) {
	cfg := mustParse(t, "defaults: {symmetric: 11, rsa: 12, ecc: 13}")
	want := map[Class]float64{Symmetric: 11, RSA: 12, ECC: 13}
	for _, s := range keyspec.All() {
		c := Class(s.QuotaClass)
		if got := cfg.Defaults.class(c); got != want[c] || got == 0 {
			t.Errorf("%s: class %q has limit %v, want %v", s.Name, c, got, want[c])
		}
	}
}
