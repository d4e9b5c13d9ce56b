package audit

import (
	"io"
	"testing"
	"time"
)

func sampleRecord() *Record {
	return &Record{
		AuditVersion: Version, EventTime: time.Now().UTC(), RequestID: NewRequestID(), EventName: "Encrypt",
		Principal: Principal{Username: "system:serviceaccount:shop:api", UID: "0b5c7a1e-3f7e-4d8f-9f3e-2a1b3c4d5e6f",
			Groups:         []string{"system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"},
			ServiceAccount: "api", PodName: "api-7d9f8c6b5-x2x9z", PodUID: "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d"},
		SourceNamespace: "shop", SourceAddress: "10.244.1.17:51234", RequestedKey: "payments",
		Key:                   &KeyRef{Namespace: "shop", Name: "payments", KeyID: "8d5c4e8a-1b2c-4d3e-8f40-5a6b7c8d9e0f", Version: 3},
		EncryptionContextKeys: []string{"tenant"}, Outcome: Allowed,
	}
}

func BenchmarkWriterSink(b *testing.B) {
	s := NewWriterSink(io.Discard)
	r := sampleRecord()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Write(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkNewRequestID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = NewRequestID()
	}
}

func BenchmarkUsageObserve(b *testing.B) {
	u := &Usage{}
	r := sampleRecord()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			u.Observe(r, "uid", "symmetric")
		}
	})
}
