package testenv

import (
	"net"

	. "github.com/onsi/gomega"
)

// FreeAddrs returns n distinct free loopback addresses: the listeners are
// held until all are chosen, so the kernel cannot hand one port out twice.
func FreeAddrs(n int) []string {
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		defer l.Close()
		out = append(out, l.Addr().String())
	}
	return out
}
