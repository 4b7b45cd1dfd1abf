package offload

import (
	"net/netip"
	"slices"
	"strings"
)

// The intermediate representation (IR): what one node must do for the tenants, derived
// from the tenant model (see Build) and independent of any backend. Values reachable
// from an IR are treated as immutable: to change an object, put a new pointer in the map
// (Clone the IR first). Compiler.Update finds changed objects by pointer first, then by
// value, so an IR rebuilt from a fresh snapshot works too, only slower.

// Segment types (provider:network_type).
const (
	SegFlat   = "flat"
	SegVLAN   = "vlan"
	SegVXLAN  = "vxlan"
	SegGeneve = "geneve"
	SegGRE    = "gre"
	SegLocal  = "local"
)

// IsTunnel reports whether segments of type t ride an overlay (br-tun).
func IsTunnel(t string) bool { return t == SegVXLAN || t == SegGeneve || t == SegGRE }

// Rule directions and ether types (Neutron's spelling).
const (
	Ingress = "ingress"
	Egress  = "egress"
	IPv4    = "IPv4"
	IPv6    = "IPv6"
)

// IR is one node's intent.
type IR struct {
	Host string `json:"host"`
	// Segments are the networks with at least one port bound to this host, by network ID.
	Segments map[string]*Segment `json:"segments"`
	// Ports are the ports bound to this host (binding:host_id), by port ID.
	Ports map[string]*Port `json:"ports"`
	// RemotePorts are ports bound to other hosts on this node's segments, by port ID:
	// which remote VTEP hosts which MAC (L2 population, ARP responder).
	RemotePorts map[string]*RemotePort `json:"remote_ports"`
	// SecurityGroups are the groups of this node's ports, by ID.
	SecurityGroups map[string]*SecurityGroup `json:"security_groups"`
	// Members are the ports anywhere in the cloud that belong to a group some rule of
	// SecurityGroups names as its remote group, by port ID: the address sets.
	Members map[string]*Member `json:"members"`
	// Subnets are the subnets of the node's segments, by ID.
	Subnets map[string]*Subnet `json:"subnets"`
	// Routers are the routers with an interface on one of the node's segments, by ID.
	// Their interface networks and external network are in Segments too (a router on
	// this node reaches every network it is attached to, as Neutron's DVR does).
	Routers map[string]*Router `json:"routers"`
	// FloatingIPs are the associated floating IPs of Routers, by ID.
	FloatingIPs map[string]*FloatingIP `json:"floating_ips"`
	// QoSPolicies are the policies local ports use (Port.QoSPolicyID), by ID.
	QoSPolicies map[string]*QoSPolicy `json:"qos_policies"`
	// DHCPPorts are the DHCP ports of the node's segments, by network ID.
	DHCPPorts map[string]*DHCPPort `json:"dhcp_ports"`
	// Warnings are inconsistencies Build tolerated (e.g. a host without a known VTEP).
	Warnings []string `json:"warnings,omitempty"`
}

// Segment is one network as this node carries it.
type Segment struct {
	NetworkID       string `json:"network_id"`
	TenantID        string `json:"tenant_id"`
	Type            string `json:"type"`                       // flat | vlan | vxlan | geneve | gre | local
	PhysicalNetwork string `json:"physical_network,omitempty"` // flat and vlan
	SegmentationID  int    `json:"segmentation_id,omitempty"`  // VLAN id, VNI or GRE key
	// LocalVLAN is the network's tag inside br-int and its conntrack zone on this node
	// (1..4094), allocated stably: see AllocateLocalVLANs.
	LocalVLAN uint16 `json:"local_vlan"`
	MTU       int    `json:"mtu"`
	// External is router:external: a router gateway network.
	External bool `json:"external,omitempty"`
}

// AddressPair is an allowed address pair: a MAC (the port's own when the pair gave
// none) and a prefix the port may send from.
type AddressPair struct {
	MAC    string       `json:"mac"`
	Prefix netip.Prefix `json:"prefix"`
}

// Port is a port bound to this host.
type Port struct {
	ID        string `json:"id"`
	NetworkID string `json:"network_id"`
	// OFPort is the port's OpenFlow port number on the integration bridge, filled from
	// OVSDB by the applier; 0 while OVS has no interface for it (the compiler skips it).
	OFPort         int           `json:"ofport"`
	AdminStateUp   bool          `json:"admin_state_up"`
	MAC            string        `json:"mac"` // lower-case, colon-separated
	IPs            []netip.Addr  `json:"ips"`
	AllowedPairs   []AddressPair `json:"allowed_address_pairs"`
	PortSecurity   bool          `json:"port_security"`
	SecurityGroups []string      `json:"security_groups"` // sorted
	VNICType       string        `json:"vnic_type"`
	DeviceOwner    string        `json:"device_owner"`
	// PCISlot is binding:profile pci_slot (SR-IOV ports): the VF the port uses.
	PCISlot string `json:"pci_slot,omitempty"`
	// QoSPolicyID is the effective QoS policy: the port's qos_policy_id, else its
	// network's; "" for none. Router and DHCP ports (device_owner network:*) get none,
	// as in Neutron.
	QoSPolicyID string `json:"qos_policy_id,omitempty"`
}

// RemotePort is a port on another host of one of this node's segments.
type RemotePort struct {
	ID        string       `json:"id"`
	NetworkID string       `json:"network_id"`
	Host      string       `json:"host"`
	VTEP      netip.Addr   `json:"vtep"` // the host's tunnel endpoint; invalid when unknown
	MAC       string       `json:"mac"`
	IPs       []netip.Addr `json:"ips"`
}

// SecurityGroup is a group with its rules, sorted by rule ID.
type SecurityGroup struct {
	ID       string `json:"id"`
	TenantID string `json:"tenant_id"`
	Stateful bool   `json:"stateful"`
	Rules    []Rule `json:"rules"`
}

// Protocol numbers the compiler treats specially.
const (
	ProtoAny    = -1
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
	ProtoSCTP   = 132
)

// Rule is one security group rule, normalised.
type Rule struct {
	ID              string `json:"id"`
	SecurityGroupID string `json:"security_group_id"`
	Direction       string `json:"direction"` // ingress | egress
	EtherType       string `json:"ethertype"` // IPv4 | IPv6
	// Protocol is an IP protocol number, ProtoAny for every protocol. ICMP with IPv6 is
	// normalised to ICMPv6.
	Protocol int `json:"protocol"`
	// PortMin/PortMax: destination port range for TCP, UDP and SCTP; ICMP type and code
	// for ICMP(v6). -1 when not given.
	PortMin int `json:"port_min"`
	PortMax int `json:"port_max"`
	// RemotePrefix is the remote CIDR; the zero Prefix means any.
	RemotePrefix netip.Prefix `json:"remote_prefix"`
	// RemoteGroupID makes the remote side the address set of that group.
	RemoteGroupID string `json:"remote_group_id,omitempty"`
}

// Member is one port's share of the address sets: its groups (only those some local
// rule names as remote group) and its addresses (fixed IPs and allowed address pairs).
type Member struct {
	PortID    string         `json:"port_id"`
	Groups    []string       `json:"groups"` // sorted
	Addresses []netip.Prefix `json:"addresses"`
}

// Clone returns a copy of ir whose maps can be changed without touching ir (the objects
// themselves are shared: replace them, don't edit them).
func (ir *IR) Clone() *IR {
	n := &IR{Host: ir.Host, Warnings: slices.Clone(ir.Warnings)}
	n.Segments = cloneMap(ir.Segments)
	n.Ports = cloneMap(ir.Ports)
	n.RemotePorts = cloneMap(ir.RemotePorts)
	n.SecurityGroups = cloneMap(ir.SecurityGroups)
	n.Members = cloneMap(ir.Members)
	n.Subnets = cloneMap(ir.Subnets)
	n.Routers = cloneMap(ir.Routers)
	n.FloatingIPs = cloneMap(ir.FloatingIPs)
	n.QoSPolicies = cloneMap(ir.QoSPolicies)
	n.DHCPPorts = cloneMap(ir.DHCPPorts)
	return n
}

func cloneMap[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// AddressSet is the remote group's addresses: the sorted union of its members'.
func (ir *IR) AddressSet(groupID string) []netip.Prefix {
	var out []netip.Prefix
	for _, m := range ir.Members {
		if slices.Contains(m.Groups, groupID) {
			out = append(out, m.Addresses...)
		}
	}
	sortPrefixes(out)
	return slices.Compact(out)
}

// ExpandedRule is a rule as it applies to one port, its remote group resolved.
type ExpandedRule struct {
	Rule
	// Remote is the remote side as prefixes: the rule's CIDR, the group's address set,
	// or nil for any.
	Remote []netip.Prefix `json:"remote"`
}

// PortRules expands the rules of a local port's security groups (sorted by direction,
// group, rule ID), remote groups resolved to address sets. The compiler does not use it
// (rules are compiled once per group and tied to ports by conjunctive matches); it is the
// per-port view for explain and tests.
func (ir *IR) PortRules(portID string) []ExpandedRule {
	p := ir.Ports[portID]
	if p == nil {
		return nil
	}
	var out []ExpandedRule
	for _, sgID := range p.SecurityGroups {
		sg := ir.SecurityGroups[sgID]
		if sg == nil {
			continue
		}
		for _, r := range sg.Rules {
			e := ExpandedRule{Rule: r}
			switch {
			case r.RemoteGroupID != "":
				e.Remote = ir.AddressSet(r.RemoteGroupID)
				if e.Remote == nil {
					e.Remote = []netip.Prefix{}
				}
			case r.RemotePrefix.IsValid():
				e.Remote = []netip.Prefix{r.RemotePrefix}
			}
			out = append(out, e)
		}
	}
	// egress before ingress; within a direction, group then rule order (stable)
	slices.SortStableFunc(out, func(a, b ExpandedRule) int { return strings.Compare(a.Direction, b.Direction) })
	return out
}

func sortPrefixes(ps []netip.Prefix) {
	slices.SortFunc(ps, comparePrefix)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// Value equality of IR objects (Compiler.Update compares changed pointers with these).

func (a *Segment) equal(b *Segment) bool { return *a == *b }

func (a *Port) equal(b *Port) bool {
	return a.ID == b.ID && a.NetworkID == b.NetworkID && a.OFPort == b.OFPort &&
		a.AdminStateUp == b.AdminStateUp && a.MAC == b.MAC && slices.Equal(a.IPs, b.IPs) &&
		slices.Equal(a.AllowedPairs, b.AllowedPairs) && a.PortSecurity == b.PortSecurity &&
		slices.Equal(a.SecurityGroups, b.SecurityGroups) && a.VNICType == b.VNICType &&
		a.DeviceOwner == b.DeviceOwner && a.PCISlot == b.PCISlot && a.QoSPolicyID == b.QoSPolicyID
}

func (a *RemotePort) equal(b *RemotePort) bool {
	return a.ID == b.ID && a.NetworkID == b.NetworkID && a.Host == b.Host && a.VTEP == b.VTEP &&
		a.MAC == b.MAC && slices.Equal(a.IPs, b.IPs)
}

func (a *SecurityGroup) equal(b *SecurityGroup) bool {
	return a.ID == b.ID && a.TenantID == b.TenantID && a.Stateful == b.Stateful && slices.Equal(a.Rules, b.Rules)
}

func (a *Member) equal(b *Member) bool {
	return a.PortID == b.PortID && slices.Equal(a.Groups, b.Groups) && slices.Equal(a.Addresses, b.Addresses)
}

// NodeLayout is what the compiler needs to know about the node's OVS layout: the
// bridges `offlane node apply` made (ovsdpdk's node config, mirrored here so this package
// does not import ovsdpdk) and the OpenFlow port numbers of their patch, tunnel and uplink
// ports. Port names follow ovsdpdk's (Neutron's) convention: patch-tun on the integration
// bridge ↔ patch-int on the tunnel bridge, int-<bridge> ↔ phy-<bridge> for each physnet
// bridge, tun-<type> for the flow-based tunnel ports.
type NodeLayout struct {
	// Datapath is the bridges' datapath_type: netdev or system.
	Datapath          string `json:"datapath"`
	IntegrationBridge string `json:"integration_bridge"`
	// TunnelBridge is "" when the node has no overlay.
	TunnelBridge  string     `json:"tunnel_bridge,omitempty"`
	TunnelLocalIP netip.Addr `json:"tunnel_local_ip"`
	TunnelTypes   []string   `json:"tunnel_types,omitempty"` // vxlan | geneve | gre
	// ExternalBridge is br-ex (routing and NAT, not used by the L2 compiler yet).
	ExternalBridge string `json:"external_bridge,omitempty"`
	// PhysnetBridges maps a physical network to its bridge.
	PhysnetBridges map[string]string `json:"physnet_bridges,omitempty"`
	// PhysnetUplinks maps a physical network to its uplink port on the physnet bridge;
	// a physnet without one uses the bridge's own internal port (LOCAL).
	PhysnetUplinks map[string]string `json:"physnet_uplinks,omitempty"`
	// OFPorts maps interface names (patch, tunnel and uplink ports) to OpenFlow port
	// numbers, read from OVSDB by the applier.
	OFPorts map[string]int `json:"ofports"`
	// L3Backend is where routers run (node config l3_backend): "" or "auto" (openflow
	// when the OVS datapath can do conntrack NAT, else nftables), "openflow", "nftables".
	L3Backend string `json:"l3_backend,omitempty"`
}

// Port names of the layout (ovsdpdk.NodeLayout creates them).
const (
	PatchTun = "patch-tun" // on the integration bridge, peer of PatchInt
	PatchInt = "patch-int" // on the tunnel bridge
)

// IntPatch is the integration bridge's patch port to a physnet bridge.
func IntPatch(bridge string) string { return "int-" + bridge }

// PhyPatch is a physnet bridge's patch port to the integration bridge.
func PhyPatch(bridge string) string { return "phy-" + bridge }

// TunnelPort is the tunnel bridge's flow-based port for tunnel type t.
func TunnelPort(t string) string { return "tun-" + t }
