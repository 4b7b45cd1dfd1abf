package offload

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/offlane/offlane/controlplane"
)

// Snapshot is the part of the tenant model Build reads: every network, port and
// security group the store holds (ports of all hosts: remote ports feed L2 population,
// and remote group members may live anywhere).
type Snapshot struct {
	Networks       []controlplane.Network
	Ports          []controlplane.Port
	SecurityGroups []controlplane.SecurityGroup
	Subnets        []controlplane.Subnet
	Routers        []controlplane.Router
	FloatingIPs    []controlplane.FloatingIP
	QoSPolicies    []controlplane.QoSPolicy
}

// BuildInput is everything Build needs besides the snapshot.
type BuildInput struct {
	Host     string
	Snapshot Snapshot
	// VTEPs maps a host (binding:host_id) to its tunnel endpoint address. Static input
	// for now; the store will carry it.
	VTEPs map[string]netip.Addr
	// OFPorts maps a local port ID to its OpenFlow port on the integration bridge (from
	// OVSDB, external_ids:iface-id); ports without one are not compiled yet.
	OFPorts map[string]int
	// LocalVLANs is the previous allocation (network ID → local VLAN), kept stable; the
	// new allocation is in the IR's segments (see IR.LocalVLANs).
	LocalVLANs map[string]uint16
}

// Build derives one node's IR from a snapshot of the tenant model. It validates what
// the compilers rely on and reports every problem at once (errors.Join), each naming the
// object and field; it returns no IR then.
func Build(in BuildInput) (*IR, error) {
	if in.Host == "" {
		return nil, errors.New("build: host is empty: give the node's binding:host_id")
	}
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	nets := make(map[string]*controlplane.Network, len(in.Snapshot.Networks))
	for i := range in.Snapshot.Networks {
		n := &in.Snapshot.Networks[i]
		nets[n.ID] = n
	}
	sgs := make(map[string]*controlplane.SecurityGroup, len(in.Snapshot.SecurityGroups))
	for i := range in.Snapshot.SecurityGroups {
		g := &in.Snapshot.SecurityGroups[i]
		sgs[g.ID] = g
	}

	ir := &IR{Host: in.Host, Segments: map[string]*Segment{}, Ports: map[string]*Port{},
		RemotePorts: map[string]*RemotePort{}, SecurityGroups: map[string]*SecurityGroup{}, Members: map[string]*Member{},
		Subnets: map[string]*Subnet{}, Routers: map[string]*Router{}, FloatingIPs: map[string]*FloatingIP{}, QoSPolicies: map[string]*QoSPolicy{}, DHCPPorts: map[string]*DHCPPort{}}

	// Local ports and their segments.
	for i := range in.Snapshot.Ports {
		cp := &in.Snapshot.Ports[i]
		if !boundHere(cp, in) {
			continue
		}
		p, err := buildPort(cp, in.OFPorts[cp.ID])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n := nets[cp.NetworkID]
		if n == nil {
			fail("port %s: network_id %s is not in the snapshot: give the port's network too", cp.ID, cp.NetworkID)
			continue
		}
		if _, ok := ir.Segments[n.ID]; !ok {
			seg, err := buildSegment(n)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			ir.Segments[n.ID] = seg
		}
		for _, id := range p.SecurityGroups {
			g := sgs[id]
			if g == nil {
				fail("port %s: security group %s is not in the snapshot", cp.ID, id)
				continue
			}
			if _, ok := ir.SecurityGroups[id]; !ok {
				sg, err := buildSecurityGroup(g)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				ir.SecurityGroups[id] = sg
			}
		}
		ir.Ports[p.ID] = p
	}
	errs = append(errs, buildL3(in, ir, nets)...) // build_l3.go: routers' networks become segments
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	vlans, err := AllocateLocalVLANs(in.LocalVLANs, sortedKeys(ir.Segments))
	if err != nil {
		return nil, err
	}
	for id, seg := range ir.Segments {
		seg.LocalVLAN = vlans[id]
	}

	// Remote ports on this node's segments, and the address sets.
	referenced := referencedGroups(ir.SecurityGroups)
	for i := range in.Snapshot.Ports {
		if err := addRemote(&in.Snapshot.Ports[i], in, ir, referenced); err != nil {
			errs = append(errs, err)
		}
	}
	ir.Warnings = append(ir.Warnings, vtepWarnings(in, ir.Segments)...)
	errs = append(errs, buildQoS(in, ir)...)  // build_qos.go
	errs = append(errs, buildDHCP(in, ir)...) // build_dhcp.go
	sort.Strings(ir.Warnings)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return ir, nil
}

// referencedGroups is the set of groups some rule of sgs names as its remote group.
func referencedGroups(sgs map[string]*SecurityGroup) map[string]bool {
	referenced := map[string]bool{}
	for _, sg := range sgs {
		for _, r := range sg.Rules {
			if r.RemoteGroupID != "" {
				referenced[r.RemoteGroupID] = true
			}
		}
	}
	return referenced
}

// addRemote adds port cp's share of the remote side to ir: its RemotePort when it is
// bound to another host and on one of ir's segments, its Member when it is in a group
// referenced names (a remote group of some rule of ir's groups). Build calls it for every
// port, BuildChanges for the changed ones.
func addRemote(cp *controlplane.Port, in BuildInput, ir *IR, referenced map[string]bool) error {
	remote := cp.HostID != in.Host && cp.HostID != "" && !boundHere(cp, in)
	seg := ir.Segments[cp.NetworkID]
	var groups []string
	for _, g := range cp.SecurityGroups {
		if referenced[g] {
			groups = append(groups, g)
		}
	}
	if (!remote || seg == nil) && len(groups) == 0 {
		return nil
	}
	mac, ips, err := portAddrs(cp)
	if err != nil {
		return err
	}
	if remote && seg != nil && mac != "" {
		rp := &RemotePort{ID: cp.ID, NetworkID: cp.NetworkID, Host: cp.HostID, MAC: mac, IPs: ips}
		if v, ok := in.VTEPs[cp.HostID]; ok && v.IsValid() {
			rp.VTEP = v
		}
		ir.RemotePorts[rp.ID] = rp
	}
	if len(groups) > 0 {
		sort.Strings(groups)
		m := &Member{PortID: cp.ID, Groups: slices.Compact(groups)}
		for _, ip := range ips {
			m.Addresses = append(m.Addresses, netip.PrefixFrom(ip, ip.BitLen()))
		}
		pairs, err := addressPairs(cp, mac)
		if err != nil {
			return err
		}
		for _, ap := range pairs {
			m.Addresses = append(m.Addresses, ap.Prefix)
		}
		sortPrefixes(m.Addresses)
		m.Addresses = slices.Compact(m.Addresses)
		ir.Members[m.PortID] = m
	}
	return nil
}

// vtepWarnings warns once per host that has remote ports (RemotePorts, as addRemote makes
// them) on a tunnel segment of segs but no known VTEP, naming the segment of its first
// such port in Snapshot order.
func vtepWarnings(in BuildInput, segs map[string]*Segment) []string {
	var out []string
	var warned map[string]bool
	for i := range in.Snapshot.Ports {
		cp := &in.Snapshot.Ports[i]
		if cp.HostID == in.Host || cp.HostID == "" || cp.MACAddress == "" || warned[cp.HostID] || boundHere(cp, in) {
			continue
		}
		seg := segs[cp.NetworkID]
		if seg == nil || !IsTunnel(seg.Type) {
			continue
		}
		if v, ok := in.VTEPs[cp.HostID]; ok && v.IsValid() {
			continue
		}
		if warned == nil {
			warned = map[string]bool{}
		}
		warned[cp.HostID] = true
		out = append(out, fmt.Sprintf("host %s has ports on %s network %s but no known VTEP: its ports are unreachable over the overlay", cp.HostID, seg.Type, seg.NetworkID))
	}
	return out
}

// boundHere reports whether a port is local to this node: bound here (binding:host_id),
// or a distributed service port (a router's or DHCP port, device_owner network:*) that
// something plugged into this node's integration bridge (it has an OpenFlow port): the
// nftables router backend's qr-/qg- veths and the qdhcp namespaces' veths.
func boundHere(cp *controlplane.Port, in BuildInput) bool {
	if cp.HostID == in.Host {
		return true
	}
	return strings.HasPrefix(cp.DeviceOwner, "network:") && in.OFPorts[cp.ID] > 0
}

// LocalVLANs returns the allocation in ir (network ID → local VLAN), to persist and give
// back to the next Build.
func (ir *IR) LocalVLANs() map[string]uint16 {
	out := make(map[string]uint16, len(ir.Segments))
	for id, s := range ir.Segments {
		out[id] = s.LocalVLAN
	}
	return out
}

// MaxLocalVLAN is the highest local VLAN (and so the most networks one node carries).
const MaxLocalVLAN = 4094

// AllocateLocalVLANs gives each network a local VLAN in 1..4094. Networks keep their
// previous VLAN (prev), so a network's flows and conntrack zone survive other networks
// coming and going; new networks take the lowest free VLANs in ID order. Deterministic
// for the same inputs.
func AllocateLocalVLANs(prev map[string]uint16, networks []string) (map[string]uint16, error) {
	out := make(map[string]uint16, len(networks))
	used := make(map[uint16]bool, len(networks))
	ids := slices.Clone(networks)
	sort.Strings(ids)
	ids = slices.Compact(ids)
	for _, id := range ids {
		if v, ok := prev[id]; ok && v >= 1 && v <= MaxLocalVLAN && !used[v] {
			out[id] = v
			used[v] = true
		}
	}
	next := uint16(1)
	for _, id := range ids {
		if _, ok := out[id]; ok {
			continue
		}
		for next <= MaxLocalVLAN && used[next] {
			next++
		}
		if next > MaxLocalVLAN {
			return nil, fmt.Errorf("local VLANs: %d networks on one node, at most %d fit", len(ids), MaxLocalVLAN)
		}
		out[id] = next
		used[next] = true
	}
	return out, nil
}

func buildSegment(n *controlplane.Network) (*Segment, error) {
	s := &Segment{NetworkID: n.ID, TenantID: n.TenantID, Type: n.NetworkType, MTU: n.MTU}
	if n.PhysicalNetwork != nil {
		s.PhysicalNetwork = *n.PhysicalNetwork
	}
	if n.SegmentationID != nil {
		s.SegmentationID = *n.SegmentationID
	}
	switch s.Type {
	case SegFlat:
		if s.PhysicalNetwork == "" {
			return nil, fmt.Errorf("network %s: flat without provider:physical_network: set the physnet", n.ID)
		}
	case SegVLAN:
		if s.PhysicalNetwork == "" || s.SegmentationID < 1 || s.SegmentationID > 4094 {
			return nil, fmt.Errorf("network %s: vlan needs provider:physical_network and provider:segmentation_id 1..4094 (have %q, %d)", n.ID, s.PhysicalNetwork, s.SegmentationID)
		}
	case SegVXLAN, SegGeneve, SegGRE:
		if s.SegmentationID < 1 || s.SegmentationID > 1<<24-1 {
			return nil, fmt.Errorf("network %s: %s needs provider:segmentation_id 1..16777215 (have %d)", n.ID, s.Type, s.SegmentationID)
		}
	case SegLocal:
	default:
		return nil, fmt.Errorf("network %s: provider:network_type %q is not flat, vlan, vxlan, geneve, gre or local", n.ID, s.Type)
	}
	return s, nil
}

func buildPort(cp *controlplane.Port, ofport int) (*Port, error) {
	mac, ips, err := portAddrs(cp)
	if err != nil {
		return nil, err
	}
	if mac == "" {
		return nil, fmt.Errorf("port %s: mac_address is empty: every bound port needs a MAC", cp.ID)
	}
	if ofport < 0 {
		return nil, fmt.Errorf("port %s: ofport %d is negative", cp.ID, ofport)
	}
	p := &Port{ID: cp.ID, NetworkID: cp.NetworkID, OFPort: ofport, AdminStateUp: cp.AdminStateUp,
		MAC: mac, IPs: ips, PortSecurity: cp.PortSecurityEnabled, VNICType: cp.VNICType, DeviceOwner: cp.DeviceOwner}
	if p.VNICType == "" {
		p.VNICType = controlplane.VNICNormal
	}
	p.AllowedPairs, err = addressPairs(cp, mac)
	if err != nil {
		return nil, err
	}
	p.SecurityGroups = slices.Clone(cp.SecurityGroups)
	sort.Strings(p.SecurityGroups)
	p.SecurityGroups = slices.Compact(p.SecurityGroups)
	if s, ok := cp.Profile["pci_slot"].(string); ok {
		p.PCISlot = s
	}
	return p, nil
}

// portAddrs parses a port's MAC (normalised; "" when empty) and fixed IPs (sorted).
func portAddrs(cp *controlplane.Port) (string, []netip.Addr, error) {
	mac := ""
	if cp.MACAddress != "" {
		var err error
		if mac, err = normMAC(cp.MACAddress); err != nil {
			return "", nil, fmt.Errorf("port %s: mac_address: %w", cp.ID, err)
		}
	}
	var ips []netip.Addr
	for i, f := range cp.FixedIPs {
		a, err := netip.ParseAddr(f.IPAddress)
		if err != nil || a.Zone() != "" {
			return "", nil, fmt.Errorf("port %s: fixed_ips[%d].ip_address %q is not an IP address", cp.ID, i, f.IPAddress)
		}
		ips = append(ips, a.Unmap())
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return mac, slices.Compact(ips), nil
}

func addressPairs(cp *controlplane.Port, mac string) ([]AddressPair, error) {
	var out []AddressPair
	for i, ap := range cp.AllowedAddressPairs {
		pfx, err := parsePrefixOrAddr(ap.IPAddress)
		if err != nil {
			return nil, fmt.Errorf("port %s: allowed_address_pairs[%d].ip_address: %w", cp.ID, i, err)
		}
		m := mac
		if ap.MACAddress != "" {
			if m, err = normMAC(ap.MACAddress); err != nil {
				return nil, fmt.Errorf("port %s: allowed_address_pairs[%d].mac_address: %w", cp.ID, i, err)
			}
		}
		out = append(out, AddressPair{MAC: m, Prefix: pfx})
	}
	slices.SortFunc(out, func(a, b AddressPair) int {
		if c := strings.Compare(a.MAC, b.MAC); c != 0 {
			return c
		}
		return comparePrefix(a.Prefix, b.Prefix)
	})
	return slices.Compact(out), nil
}

func normMAC(s string) (string, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("%q is not an Ethernet MAC address (want e.g. fa:16:3e:00:00:01)", s)
	}
	if hw[0]&1 == 1 {
		return "", fmt.Errorf("%q is a multicast MAC address: a port needs a unicast one", s)
	}
	return hw.String(), nil
}

// parsePrefixOrAddr accepts an address (a host prefix) or a CIDR, returned masked.
func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
		}
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func buildSecurityGroup(g *controlplane.SecurityGroup) (*SecurityGroup, error) {
	sg := &SecurityGroup{ID: g.ID, TenantID: g.TenantID, Stateful: g.Stateful}
	var errs []error
	for i := range g.Rules {
		r, err := buildRule(g.ID, &g.Rules[i])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sg.Rules = append(sg.Rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(sg.Rules, func(a, b Rule) int { return strings.Compare(a.ID, b.ID) })
	return sg, nil
}

// protocolNumbers are the protocol names Neutron accepts.
var protocolNumbers = map[string]int{
	"ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "icmp": 1, "icmpv6": 58, "ipv6-icmp": 58,
	"igmp": 2, "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-nonxt": 59, "ipv6-opts": 60,
	"ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17,
	"udplite": 136, "vrrp": 112,
}

func buildRule(sgID string, cr *controlplane.SecurityGroupRule) (Rule, error) {
	where := fmt.Sprintf("security group %s rule %s", sgID, cr.ID)
	r := Rule{ID: cr.ID, SecurityGroupID: sgID, Direction: cr.Direction, EtherType: cr.EtherType,
		Protocol: ProtoAny, PortMin: -1, PortMax: -1}
	if r.Direction != Ingress && r.Direction != Egress {
		return r, fmt.Errorf("%s: direction %q: want ingress or egress", where, cr.Direction)
	}
	if r.EtherType == "" {
		r.EtherType = IPv4
	}
	if r.EtherType != IPv4 && r.EtherType != IPv6 {
		return r, fmt.Errorf("%s: ethertype %q: want IPv4 or IPv6", where, cr.EtherType)
	}
	if cr.Protocol != nil && *cr.Protocol != "" && *cr.Protocol != "any" {
		name := strings.ToLower(*cr.Protocol)
		if n, ok := protocolNumbers[name]; ok {
			r.Protocol = n
		} else if n, err := strconv.Atoi(name); err == nil && n >= 0 && n <= 255 {
			r.Protocol = n
		} else {
			return r, fmt.Errorf("%s: protocol %q: want a name (tcp, udp, icmp, ...) or a number 0..255", where, *cr.Protocol)
		}
	}
	if r.EtherType == IPv6 && r.Protocol == ProtoICMP {
		r.Protocol = ProtoICMPv6
	}
	if r.EtherType == IPv4 && r.Protocol == ProtoICMPv6 {
		return r, fmt.Errorf("%s: protocol ipv6-icmp with ethertype IPv4: use icmp or ethertype IPv6", where)
	}
	if cr.PortRangeMin != nil {
		r.PortMin = *cr.PortRangeMin
	}
	if cr.PortRangeMax != nil {
		r.PortMax = *cr.PortRangeMax
	}
	switch r.Protocol {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
		if r.PortMin < 0 && r.PortMax >= 0 || r.PortMin >= 0 && r.PortMax < 0 {
			if r.PortMin < 0 {
				r.PortMin = r.PortMax
			} else {
				r.PortMax = r.PortMin
			}
		}
		if r.PortMin >= 0 && (r.PortMin > 65535 || r.PortMax > 65535 || r.PortMin > r.PortMax) {
			return r, fmt.Errorf("%s: port_range_min %d / port_range_max %d: want 0 <= min <= max <= 65535", where, r.PortMin, r.PortMax)
		}
	case ProtoICMP, ProtoICMPv6:
		if r.PortMin > 255 || r.PortMax > 255 {
			return r, fmt.Errorf("%s: icmp type %d / code %d: want 0..255", where, r.PortMin, r.PortMax)
		}
		if r.PortMin < 0 && r.PortMax >= 0 {
			return r, fmt.Errorf("%s: icmp code %d without a type (port_range_min): give the type too", where, r.PortMax)
		}
	default:
		if r.PortMin >= 0 || r.PortMax >= 0 {
			return r, fmt.Errorf("%s: port range on protocol %d: only tcp, udp and sctp have ports (icmp: type/code)", where, r.Protocol)
		}
	}
	if cr.RemoteIPPrefix != nil && *cr.RemoteIPPrefix != "" {
		pfx, err := parsePrefixOrAddr(*cr.RemoteIPPrefix)
		if err != nil {
			return r, fmt.Errorf("%s: remote_ip_prefix: %w", where, err)
		}
		if pfx.Addr().Is4() != (r.EtherType == IPv4) {
			return r, fmt.Errorf("%s: remote_ip_prefix %s does not match ethertype %s", where, pfx, r.EtherType)
		}
		if pfx.Bits() > 0 {
			r.RemotePrefix = pfx
		}
	}
	if cr.RemoteGroupID != nil && *cr.RemoteGroupID != "" {
		if r.RemotePrefix.IsValid() {
			return r, fmt.Errorf("%s: both remote_ip_prefix and remote_group_id: give one", where)
		}
		r.RemoteGroupID = *cr.RemoteGroupID
	}
	return r, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
