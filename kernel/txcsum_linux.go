package kernel

import (
	"fmt"
	"strings"

	"github.com/safchain/ethtool"
)

// TxChecksumOff turns off TX checksum offload on ifName in the namespace. A veth leaves
// checksums to be filled in later; the userspace (netdev) OVS datapath forwards them
// unfilled, and receivers drop the packets (the lab pitfall of veths on userspace OVS).
// A namespace port that is an endpoint (a DHCP server, a netns VM) computes its
// checksums in software instead.
func TxChecksumOff(namespace, ifName string) error {
	return inNS(namespace, func() error {
		e, err := ethtool.NewEthtool()
		if err != nil {
			return fmt.Errorf("ethtool: %w", err)
		}
		defer e.Close()
		feats, err := e.Features(ifName)
		if err != nil {
			return fmt.Errorf("%s: ethtool features: %w", ifName, err)
		}
		off := map[string]bool{}
		for name, on := range feats {
			if on && strings.HasPrefix(name, "tx-checksum") {
				off[name] = false
			}
		}
		if len(off) == 0 {
			return nil
		}
		if err := e.Change(ifName, off); err != nil {
			return fmt.Errorf("%s: turn off TX checksum offload: %w", ifName, err)
		}
		return nil
	})
}
