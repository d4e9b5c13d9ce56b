package testenv

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// Run starts a manager (start is its Start method) in the background and
// returns a function that stops it and waits until it has stopped, so a
// spec can restart a manager the way a pod restarts: stop, then start.
// The manager must stop cleanly.
func Run(start func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(start(ctx)).To(Succeed())
	}()
	return func() {
		cancel()
		Eventually(done).Should(BeClosed())
	}
}
