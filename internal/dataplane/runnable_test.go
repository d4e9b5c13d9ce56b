package dataplane_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/kubekms/kubekms/internal/dataplane"
)

// A replica whose informers have not delivered every key, policy and grant
// does not listen (issue 12, finding 6): a caller cannot reach a data plane
// that would decide blind.
func TestRunnableListensOnlyOnceSynced(t *testing.T) {
	var synced atomic.Bool
	listening := make(chan net.Addr, 1)
	r := &dataplane.Runnable{Addr: "127.0.0.1:0", Server: grpc.NewServer(), Listening: listening, Synced: synced.Load}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	select {
	case addr := <-listening:
		t.Fatalf("listening on %s before the caches synced", addr)
	case <-time.After(500 * time.Millisecond):
	}
	synced.Store(true)
	select {
	case addr := <-listening:
		conn, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatalf("synced, but %s does not accept: %v", addr, err)
		}
		conn.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("synced, but not listening after 5s")
	}
}
