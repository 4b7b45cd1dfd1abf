package offload

import (
	"fmt"

	"github.com/offlane/offlane/controlplane"
)

// buildDHCP fills ir.DHCPPorts: the DHCP port (device_owner network:dhcp) of each of the
// node's segments, with its OpenFlow port once the node's qdhcp namespace is plugged
// (then it is a local port in ir.Ports as well, see boundHere). The subnets it serves are
// in ir.Subnets (build_l3.go). A network with more than one DHCP port (the server keeps
// one; a client may have made another) serves from the lowest port ID, with a warning.
func buildDHCP(in BuildInput, ir *IR) []error {
	var errs []error
	for i := range in.Snapshot.Ports {
		cp := &in.Snapshot.Ports[i]
		if cp.DeviceOwner != controlplane.OwnerDHCP || ir.Segments[cp.NetworkID] == nil {
			continue
		}
		mac, ips, err := portAddrs(cp)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if mac == "" {
			errs = append(errs, fmt.Errorf("DHCP port %s of network %s: mac_address is empty", cp.ID, cp.NetworkID))
			continue
		}
		if o := ir.DHCPPorts[cp.NetworkID]; o != nil {
			keep, drop := o.PortID, cp.ID
			if cp.ID < o.PortID {
				keep, drop = cp.ID, o.PortID
			}
			ir.Warnings = append(ir.Warnings, fmt.Sprintf("network %s has DHCP ports %s and %s: serving from %s only", cp.NetworkID, keep, drop, keep))
			if keep == o.PortID {
				continue
			}
		}
		ir.DHCPPorts[cp.NetworkID] = &DHCPPort{PortID: cp.ID, NetworkID: cp.NetworkID, MAC: mac, IPs: ips, OFPort: in.OFPorts[cp.ID]}
	}
	return errs
}
