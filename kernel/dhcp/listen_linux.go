package dhcp

import (
	"fmt"
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"github.com/offlane/offlane/kernel"
)

// Listen opens the DHCP server socket (UDP port 67, broadcast allowed, bound to ifName)
// inside the named network namespace ("" = this process's). The socket is created on a
// thread switched into the namespace and back; it stays in that namespace for its life,
// so the rest of the process never runs there.
func Listen(namespace, ifName string) (net.PacketConn, error) {
	var conn net.PacketConn
	err := kernel.InNamespace(namespace, func() error {
		c, err := server4.NewIPv4UDPConn(ifName, nil)
		if err != nil {
			return fmt.Errorf("listen on %s port 67: %w", ifName, err)
		}
		conn = c
		return nil
	})
	if err != nil && conn != nil {
		_ = conn.Close()
		conn = nil
	}
	return conn, err
}

// TxChecksumOff is kernel.TxChecksumOff (the manager's default Prepare).
func TxChecksumOff(namespace, ifName string) error { return kernel.TxChecksumOff(namespace, ifName) }
