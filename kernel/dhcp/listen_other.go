//go:build !linux

package dhcp

import (
	"errors"
	"net"
)

// ErrNotSupported is returned off Linux.
var ErrNotSupported = errors.New("dhcp: network namespaces need Linux")

// Listen is Linux-only.
func Listen(namespace, ifName string) (net.PacketConn, error) { return nil, ErrNotSupported }

// TxChecksumOff is Linux-only.
func TxChecksumOff(namespace, ifName string) error { return ErrNotSupported }
