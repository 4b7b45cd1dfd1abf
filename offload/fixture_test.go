package offload

import (
	"net/netip"
	"testing"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
)

// Test fixtures: a small tenant model built from controlplane values, the node layout
// `offlane node apply` makes, and an OVS-only node's capabilities.

func strp(s string) *string { return &s }
func intp(i int) *int       { return &i }

func network(id, tenant, typ, physnet string, seg int) controlplane.Network {
	n := controlplane.Network{ID: id, TenantID: tenant, ProjectID: tenant, AdminStateUp: true, NetworkType: typ, MTU: 1500,
		PortSecurityEnabled: true}
	if physnet != "" {
		n.PhysicalNetwork = strp(physnet)
	}
	if seg != 0 {
		n.SegmentationID = intp(seg)
	}
	if IsTunnel(typ) {
		n.MTU = 1450
	}
	return n
}

// port is a bound, port-security-enabled normal port.
func port(id, net, host, mac string, ips []string, sgs ...string) controlplane.Port {
	p := controlplane.Port{ID: id, NetworkID: net, HostID: host, MACAddress: mac, AdminStateUp: true,
		PortSecurityEnabled: true, VNICType: controlplane.VNICNormal, SecurityGroups: sgs}
	for _, ip := range ips {
		p.FixedIPs = append(p.FixedIPs, controlplane.FixedIP{IPAddress: ip})
	}
	return p
}

type ruleSpec struct {
	id, dir, eth, proto string
	min, max            int // 0: unset
	cidr, group         string
}

func secgroup(id, tenant string, rules ...ruleSpec) controlplane.SecurityGroup {
	g := controlplane.SecurityGroup{ID: id, TenantID: tenant, Stateful: true}
	for _, r := range rules {
		cr := controlplane.SecurityGroupRule{ID: r.id, SecurityGroupID: id, Direction: r.dir, EtherType: r.eth}
		if cr.EtherType == "" {
			cr.EtherType = IPv4
		}
		if r.proto != "" {
			cr.Protocol = strp(r.proto)
		}
		if r.min != 0 {
			cr.PortRangeMin = intp(r.min)
		}
		if r.max != 0 {
			cr.PortRangeMax = intp(r.max)
		}
		if r.cidr != "" {
			cr.RemoteIPPrefix = strp(r.cidr)
		}
		if r.group != "" {
			cr.RemoteGroupID = strp(r.group)
		}
		g.Rules = append(g.Rules, cr)
	}
	return g
}

// testLayout is the layout of ovsdpdk's default node config with a tunnel bridge
// (vxlan, geneve, gre) and one physnet bridge with an uplink; ofports as OVS numbers
// them after `node apply` on an empty switch.
func testLayout() NodeLayout {
	return NodeLayout{
		Datapath: "netdev", IntegrationBridge: "br-int", TunnelBridge: "br-tun",
		TunnelLocalIP: netip.MustParseAddr("192.0.2.1"), TunnelTypes: []string{SegVXLAN, SegGeneve, SegGRE},
		PhysnetBridges: map[string]string{"physnet1": "br-phys1"},
		PhysnetUplinks: map[string]string{"physnet1": "eth1"},
		OFPorts: map[string]int{PatchTun: 1, IntPatch("br-phys1"): 2, PatchInt: 1, TunnelPort(SegVXLAN): 2,
			TunnelPort(SegGeneve): 3, TunnelPort(SegGRE): 4, PhyPatch("br-phys1"): 1, "eth1": 2},
	}
}

// ovsNode is a node with a reachable OVS 3.1 (netdev and system datapaths, tunnels,
// vhost-user) and no SR-IOV NIC.
func ovsNode() *hwdetect.Node {
	return &hwdetect.Node{Hostname: "node1",
		OVS: &hwdetect.OVSInfo{Reachable: true, Version: "3.1.0", DatapathTypes: []string{"netdev", "system"},
			IfaceTypes: []string{"dpdkvhostuserclient", "geneve", "gre", "internal", "patch", "system", "tap", "vxlan"}},
		KernelFeatures: hwdetect.KernelFeatures{OVSDatapath: hwdetect.FeatureAbsent, VXLAN: hwdetect.FeatureBuiltin,
			Geneve: hwdetect.FeatureAbsent, TCFlower: hwdetect.FeatureAbsent, ActCT: hwdetect.FeatureAbsent}}
}

// twoTenants is the scenario of the proofs: two tenants, each with a VLAN and a
// VXLAN network, overlapping CIDRs (10.0.0.0/24 everywhere) and even a shared MAC; a
// remote host; port security on and off; an allowed address pair; security groups
// with a CIDR rule, a port range, and a remote-group rule.
func twoTenants() Snapshot {
	return Snapshot{
		Networks: []controlplane.Network{
			network("net-a-vlan", "tenant-a", SegVLAN, "physnet1", 100),
			network("net-a-vx", "tenant-a", SegVXLAN, "", 1001),
			network("net-b-vlan", "tenant-b", SegVLAN, "physnet1", 200),
			network("net-b-vx", "tenant-b", SegVXLAN, "", 1002),
		},
		Ports: []controlplane.Port{
			port("a1", "net-a-vlan", "node1", "fa:16:3e:00:00:01", []string{"10.0.0.1"}, "sg-a"),
			port("a2", "net-a-vlan", "node1", "fa:16:3e:00:00:02", []string{"10.0.0.2"}, "sg-a"),
			port("a3", "net-a-vx", "node1", "fa:16:3e:00:00:03", []string{"10.0.0.3"}, "sg-a"),
			port("ax", "net-a-vx", "node2", "fa:16:3e:00:00:09", []string{"10.0.0.9"}, "sg-a"),
			port("b1", "net-b-vlan", "node1", "fa:16:3e:00:00:01", []string{"10.0.0.1"}, "sg-b"),
			func() controlplane.Port {
				p := port("b2", "net-b-vlan", "node1", "fa:16:3e:00:00:22", []string{"10.0.0.2"})
				p.PortSecurityEnabled = false
				return p
			}(),
			func() controlplane.Port {
				p := port("b3", "net-b-vx", "node1", "fa:16:3e:00:00:23", []string{"10.0.0.3"}, "sg-b")
				p.AllowedAddressPairs = []controlplane.AddressPair{{IPAddress: "10.0.0.100"}}
				return p
			}(),
		},
		SecurityGroups: []controlplane.SecurityGroup{
			secgroup("sg-a", "tenant-a",
				ruleSpec{id: "a-ssh", dir: Ingress, proto: "tcp", min: 22, max: 22, cidr: "192.168.1.0/24"},
				ruleSpec{id: "a-icmp", dir: Ingress, proto: "icmp", group: "sg-a"},
				ruleSpec{id: "a-eg4", dir: Egress},
				ruleSpec{id: "a-eg6", dir: Egress, eth: IPv6}),
			secgroup("sg-b", "tenant-b",
				ruleSpec{id: "b-web", dir: Ingress, proto: "tcp", min: 8000, max: 8080},
				ruleSpec{id: "b-eg4", dir: Egress}),
		},
	}
}

var twoTenantsOFPorts = map[string]int{"a1": 11, "a2": 12, "a3": 13, "b1": 21, "b2": 22, "b3": 23}

func buildTwoTenants(t testing.TB) (*IR, *Plan) {
	t.Helper()
	ir, err := Build(BuildInput{Host: "node1", Snapshot: twoTenants(), OFPorts: twoTenantsOFPorts,
		VTEPs: map[string]netip.Addr{"node1": netip.MustParseAddr("192.0.2.1"), "node2": netip.MustParseAddr("192.0.2.2")}})
	if err != nil {
		t.Fatal(err)
	}
	return ir, PlanNode(ir, ovsNode(), testLayout())
}
