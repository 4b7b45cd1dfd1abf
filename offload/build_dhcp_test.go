package offload

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/offlane/offlane/controlplane"
)

// dhcpSnapshot: VXLAN network n1 (a DHCP subnet, a VM here, a VM on node2, its DHCP
// port) and network n2 with a DHCP port but no port on node1.
func dhcpSnapshot() Snapshot {
	seg := 100
	net := func(id string) controlplane.Network {
		return controlplane.Network{ID: id, TenantID: "t", NetworkType: SegVXLAN, SegmentationID: &seg, MTU: 1450}
	}
	n2 := net("n2")
	seg2 := 101
	n2.SegmentationID = &seg2
	gw := "10.0.0.1"
	vm := func(id, host, mac, ip string) controlplane.Port {
		return controlplane.Port{ID: id, NetworkID: "n1", HostID: host, MACAddress: mac, AdminStateUp: true,
			FixedIPs: []controlplane.FixedIP{{SubnetID: "s1", IPAddress: ip}}}
	}
	dhcp := func(id, netID, mac, ip string) controlplane.Port {
		return controlplane.Port{ID: id, NetworkID: netID, DeviceOwner: controlplane.OwnerDHCP, DeviceID: controlplane.DHCPDeviceID(netID),
			MACAddress: mac, AdminStateUp: true, FixedIPs: []controlplane.FixedIP{{SubnetID: "s-" + netID, IPAddress: ip}}}
	}
	return Snapshot{
		Networks: []controlplane.Network{net("n1"), n2},
		Subnets: []controlplane.Subnet{
			{ID: "s1", NetworkID: "n1", TenantID: "t", IPVersion: 4, CIDR: "10.0.0.0/24", GatewayIP: &gw, EnableDHCP: true,
				DNSNameservers: []string{"192.0.2.53"}, HostRoutes: []controlplane.HostRoute{{Destination: "172.16.0.0/16", NextHop: "10.0.0.254"}}},
			{ID: "s2", NetworkID: "n2", TenantID: "t", IPVersion: 4, CIDR: "10.1.0.0/24", EnableDHCP: true},
		},
		Ports: []controlplane.Port{
			vm("vm1", "node1", "fa:16:3e:00:00:01", "10.0.0.3"),
			vm("vm2", "node2", "fa:16:3e:00:00:02", "10.0.0.4"),
			dhcp("dhcp1", "n1", "fa:16:3e:00:00:d1", "10.0.0.2"),
			dhcp("dhcp2", "n2", "fa:16:3e:00:00:d2", "10.1.0.2"),
		},
	}
}

// TestBuildDHCPPorts: the DHCP port of each of the node's segments is in IR.DHCPPorts
// (not the one of a network the node does not carry); once plugged (an ofport) it is a
// local port too, with its OFPort in both places; the subnet's DHCP fields are in
// IR.Subnets.
func TestBuildDHCPPorts(t *testing.T) {
	in := BuildInput{Host: "node1", Snapshot: dhcpSnapshot(), OFPorts: map[string]int{"vm1": 5},
		VTEPs: map[string]netip.Addr{"node2": netip.MustParseAddr("192.0.2.2")}}
	ir, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	want := &DHCPPort{PortID: "dhcp1", NetworkID: "n1", MAC: "fa:16:3e:00:00:d1", IPs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}}
	if got := sortedKeys(ir.DHCPPorts); !slices.Equal(got, []string{"n1"}) || !ir.DHCPPorts["n1"].equal(want) {
		t.Fatalf("DHCP ports %v: %+v", got, ir.DHCPPorts["n1"])
	}
	if _, ok := ir.Ports["dhcp1"]; ok {
		t.Fatal("an unplugged DHCP port is a local port")
	}
	s := ir.Subnets["s1"]
	if s == nil || !s.EnableDHCP || s.Gateway != netip.MustParseAddr("10.0.0.1") || !slices.Equal(s.DNS, []netip.Addr{netip.MustParseAddr("192.0.2.53")}) ||
		len(s.HostRoutes) != 1 || s.HostRoutes[0] != (SubnetRoute{netip.MustParsePrefix("172.16.0.0/16"), netip.MustParseAddr("10.0.0.254")}) {
		t.Fatalf("subnet s1 in the IR: %+v", s)
	}
	if ir.RemotePorts["vm2"] == nil || ir.Segments["n1"].MTU != 1450 {
		t.Fatalf("remote port or segment MTU: %+v %+v", ir.RemotePorts, ir.Segments["n1"])
	}

	in.OFPorts["dhcp1"] = 7
	ir, err = Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if dp, p := ir.DHCPPorts["n1"], ir.Ports["dhcp1"]; dp == nil || dp.OFPort != 7 || p == nil || p.OFPort != 7 || p.PortSecurity || p.DeviceOwner != controlplane.OwnerDHCP {
		t.Fatalf("plugged DHCP port: %+v / %+v", dp, p)
	}

	// A second DHCP port on n1: the lowest ID serves, with a warning.
	in.Snapshot.Ports = append(in.Snapshot.Ports, controlplane.Port{ID: "dhcp0", NetworkID: "n1", DeviceOwner: controlplane.OwnerDHCP,
		MACAddress: "fa:16:3e:00:00:d0", FixedIPs: []controlplane.FixedIP{{SubnetID: "s1", IPAddress: "10.0.0.9"}}})
	ir, err = Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if ir.DHCPPorts["n1"].PortID != "dhcp0" || len(ir.Warnings) != 1 {
		t.Fatalf("two DHCP ports: %+v, warnings %v", ir.DHCPPorts["n1"], ir.Warnings)
	}

	// A DHCP port without a MAC is an error naming it.
	in.Snapshot.Ports[len(in.Snapshot.Ports)-1].MACAddress = ""
	if _, err := Build(in); err == nil || !strings.Contains(err.Error(), "DHCP port dhcp0") {
		t.Fatalf("DHCP port without a MAC: %v", err)
	}
}
