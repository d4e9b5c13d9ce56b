package certs

import (
	"context"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func newTestCA(t *testing.T, now time.Time) *CA {
	t.Helper()
	c := fake.NewClientBuilder().Build()
	ca, err := LoadOrCreateCA(context.Background(), c, c, "kubekms-system", now)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateCA(context.Background(), c, c, "kubekms-system", now)
	if err != nil || !again.Cert.Equal(ca.Cert) {
		t.Fatalf("a second load must find the same CA: %v", err)
	}
	return ca
}

func TestIssuerServesCertificatesThatVerify(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(now)
	ca := newTestCA(t, now)
	iss := &Issuer{CA: ca, Clock: clk, DNSNames: []string{"kubekms.kubekms-system.svc", "localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}}

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	first, err := iss.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kubekms.kubekms-system.svc", "localhost", "127.0.0.1"} {
		if _, err := first.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: now}); err != nil {
			t.Errorf("certificate does not verify for %s: %v", name, err)
		}
	}
	if _, err := first.Leaf.Verify(x509.VerifyOptions{DNSName: "evil.example", Roots: roots, CurrentTime: now}); err == nil {
		t.Error("certificate verifies for a name it was not issued for")
	}

	clk.Step(50 * 24 * time.Hour)
	if again, _ := iss.GetCertificate(nil); again != first {
		t.Error("re-issued too early")
	}
	clk.Step(11 * 24 * time.Hour) // 61 days: less than a third of 90 left
	renewed, _ := iss.GetCertificate(nil)
	if renewed == first || !renewed.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Error("not renewed when a third of the lifetime was left")
	}
}

func TestParseCARefusesAMismatchedKey(t *testing.T) {
	now := time.Now()
	a, _ := newCASecret(keyOf("a"), now)
	b, _ := newCASecret(keyOf("b"), now)
	a.Data[corev1.TLSPrivateKeyKey] = b.Data[corev1.TLSPrivateKeyKey]
	if _, err := parseCA(a); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("err = %v", err)
	}
}

func keyOf(name string) types.NamespacedName {
	return types.NamespacedName{Namespace: "kubekms-system", Name: name}
}
