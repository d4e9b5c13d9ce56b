package dataplane

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Runnable serves the data plane as a manager runnable on every replica,
// not only the leader.
type Runnable struct {
	Addr   string
	Server *grpc.Server
	// Listening, if set, receives the bound address once serving.
	Listening chan<- net.Addr
	// Synced, if set, must say true before the server listens: a replica
	// that has not read every key, policy and grant serves nothing.
	Synced func() bool
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every
// replica serves.
func (r *Runnable) NeedLeaderElection() bool { return false }

// Start serves until ctx ends, then stops gracefully (bounded).
func (r *Runnable) Start(ctx context.Context) error {
	for r.Synced != nil && !r.Synced() {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
	lis, err := net.Listen("tcp", r.Addr)
	if err != nil {
		return fmt.Errorf("data plane listen on %s: %w", r.Addr, err)
	}
	log.FromContext(ctx).Info("Serving the data plane", "address", lis.Addr().String())
	if r.Listening != nil {
		r.Listening <- lis.Addr()
	}
	errc := make(chan error, 1)
	go func() { errc <- r.Server.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { r.Server.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		r.Server.Stop()
	}
	return nil
}
