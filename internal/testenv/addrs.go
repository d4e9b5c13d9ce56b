package testenv

import (
	"net"

	. "github.com/onsi/gomega"
)

// FreeAddrs returns n distinct free loopback addresses, failing the spec
// if there are none (LoopbackAddrs, for a Ginkgo spec).
func FreeAddrs(n int) []string {
	out, err := LoopbackAddrs(n)
	Expect(err).NotTo(HaveOccurred())
	return out
}

// LoopbackAddrs returns n distinct free loopback addresses: the listeners
// are held until all are chosen, so the kernel cannot hand one port out
// twice.
func LoopbackAddrs(n int) ([]string, error) {
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		out = append(out, l.Addr().String())
	}
	return out, nil
}
