package kernel

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/offlane/offlane/offload"
)

// The nftables table of a qrouter namespace: one table, replaced as a whole.
const (
	TableName        = "offlane" // family ip
	ChainPrerouting  = "prerouting"
	ChainPostrouting = "postrouting"
)

// NAT actions.
const (
	ActionSNAT = "snat"
	ActionDNAT = "dnat"
)

// NATRule is one rule of a router's table, a description both compiled from the IR and
// decoded from the kernel, so the two compare.
type NATRule struct {
	Chain  string       // ChainPrerouting | ChainPostrouting
	OutIf  string       // oifname match; "" = any
	Src    netip.Prefix // ip saddr; invalid = any
	Dst    netip.Prefix // ip daddr; invalid = any
	Action string       // ActionSNAT | ActionDNAT
	To     netip.Addr
	// Comment names the object the rule comes from ("fip <id>", "snat <subnet id>"),
	// stored as the rule's nft comment.
	Comment string
}

// String prints the rule as `nft list` does.
func (r NATRule) String() string {
	var b strings.Builder
	if r.OutIf != "" {
		fmt.Fprintf(&b, "oifname %q ", r.OutIf)
	}
	if r.Src.IsValid() {
		fmt.Fprintf(&b, "ip saddr %s ", nftPrefix(r.Src))
	}
	if r.Dst.IsValid() {
		fmt.Fprintf(&b, "ip daddr %s ", nftPrefix(r.Dst))
	}
	fmt.Fprintf(&b, "%s to %s", r.Action, r.To)
	if r.Comment != "" {
		fmt.Fprintf(&b, " comment %q", r.Comment)
	}
	return b.String()
}

func nftPrefix(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// Ruleset is a router's table: the rules of each chain in order.
type Ruleset struct {
	Rules []NATRule
}

// Chain returns the rules of one chain, in order.
func (rs Ruleset) Chain(name string) []NATRule {
	var out []NATRule
	for _, r := range rs.Rules {
		if r.Chain == name {
			out = append(out, r)
		}
	}
	return out
}

// Equal reports whether two rulesets have the same rules in the same order per chain.
func (rs Ruleset) Equal(o Ruleset) bool {
	for _, c := range []string{ChainPrerouting, ChainPostrouting} {
		if !slices.Equal(rs.Chain(c), o.Chain(c)) {
			return false
		}
	}
	return len(rs.Rules) == len(o.Rules)
}

// String prints the table as `nft list table ip offlane` does.
func (rs Ruleset) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s {\n", TableName)
	for i, c := range []struct{ name, hook, prio string }{
		{ChainPrerouting, "prerouting", "dstnat"},
		{ChainPostrouting, "postrouting", "srcnat"},
	} {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype nat hook %s priority %s; policy accept;\n", c.name, c.hook, c.prio)
		for _, r := range rs.Chain(c.name) {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// RouterInput is what one router needs from a node's IR.
type RouterInput struct {
	Router *offload.Router
	// FloatingIPs are the router's associated floating IPs (RouterID = Router.ID).
	FloatingIPs []*offload.FloatingIP
	// MTUs are the networks' MTUs (network ID → MTU); a missing one is 1500.
	MTUs map[string]int
	// Neighbours are ports of other hosts on the router's networks, pinned as permanent
	// neighbours of the qr- ports: a router realised on several hosts reaches them without
	// ARP over the overlay, whose replies (to the router's MAC) would stop at the replying
	// host's own instance of the router (Neutron DVR populates ARP the same way).
	Neighbours []Neighbour
}

// Neighbour is an address of a port on one of the router's networks.
type Neighbour struct {
	NetworkID string
	IP        netip.Addr
	MAC       string
}

// NeighbourSpec is a permanent neighbour entry of the router's namespace.
type NeighbourSpec struct {
	Dev string
	IP  netip.Addr
	MAC string
}

// InputFromIR gathers router id's input from an IR.
func InputFromIR(ir *offload.IR, id string) (RouterInput, error) {
	r := ir.Routers[id]
	if r == nil {
		return RouterInput{}, fmt.Errorf("router %s is not in the IR", id)
	}
	in := RouterInput{Router: r, MTUs: map[string]int{}}
	for _, f := range ir.FloatingIPs {
		if f.RouterID == id {
			in.FloatingIPs = append(in.FloatingIPs, f)
		}
	}
	slices.SortFunc(in.FloatingIPs, func(a, b *offload.FloatingIP) int { return cmp.Compare(a.ID, b.ID) })
	for id, s := range ir.Segments {
		if s.MTU > 0 {
			in.MTUs[id] = s.MTU
		}
	}
	nets := map[string]bool{}
	for _, ri := range r.Interfaces {
		nets[ri.NetworkID] = true
	}
	for _, rp := range ir.RemotePorts {
		if !nets[rp.NetworkID] || rp.MAC == "" {
			continue
		}
		for _, ip := range rp.IPs {
			in.Neighbours = append(in.Neighbours, Neighbour{NetworkID: rp.NetworkID, IP: ip, MAC: rp.MAC})
		}
	}
	slices.SortFunc(in.Neighbours, func(a, b Neighbour) int { return a.IP.Compare(b.IP) })
	return in, nil
}

// Route is a route of the router's namespace (main table).
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
	Dev string // the device for the default route; "" = the kernel finds it from Via
}

func (r Route) String() string {
	s := r.Dst.String() + " via " + r.Via.String()
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	return s
}

// RouterSpec is a router compiled for the kernel: everything Routers.Ensure makes true.
type RouterSpec struct {
	ID        string
	Namespace string
	Ports     []PlugSpec // qr- ports by interface name, then the qg- port
	Routes    []Route    // sorted by destination
	// Neighbours are the permanent neighbour entries (on qr- ports), sorted by address.
	Neighbours []NeighbourSpec
	IPv6       bool // some port has an IPv6 address: forwarding and v6 stay on
	Ruleset    Ruleset
}

// Compile turns a router's input into its kernel realisation in namespace ns. Pure; every
// input error is reported here, naming the field, before anything is applied.
func Compile(in RouterInput, ns string) (*RouterSpec, error) {
	r := in.Router
	if r == nil || r.ID == "" {
		return nil, fmt.Errorf("router: no router or an empty id")
	}
	if err := checkNSName(ns); err != nil {
		return nil, fmt.Errorf("router %s: %w", r.ID, err)
	}
	spec := &RouterSpec{ID: r.ID, Namespace: ns}
	mtu := func(network string) int {
		if m := in.MTUs[network]; m > 0 {
			return m
		}
		return 1500
	}
	// Interfaces: one qr- port per router port, all its subnets' gateway addresses on it.
	byName := map[string]int{}
	portOf := map[string]string{} // interface name → port ID
	var connected []netip.Prefix
	var v4Subnets []offload.RouterInterface
	for _, ri := range r.Interfaces {
		if ri.PortID == "" {
			return nil, fmt.Errorf("router %s: an interface without port_id", r.ID)
		}
		if !ri.IP.IsValid() || !ri.CIDR.IsValid() || !ri.CIDR.Contains(ri.IP) {
			return nil, fmt.Errorf("router %s: interface port %s: ip %s is not inside its subnet %s cidr %s", r.ID, ri.PortID, ri.IP, ri.SubnetID, ri.CIDR)
		}
		name := IfName(PrefixRouterInterface, ri.PortID)
		if other, ok := portOf[name]; ok && other != ri.PortID {
			return nil, fmt.Errorf("router %s: interface ports %s and %s share the last 11 characters of their ids (%s), which name their interfaces: give them distinct ids", r.ID, other, ri.PortID, name)
		}
		portOf[name] = ri.PortID
		i, ok := byName[name]
		if !ok {
			i = len(spec.Ports)
			byName[name] = i
			spec.Ports = append(spec.Ports, PlugSpec{Namespace: ns, IfName: name, MAC: ri.MAC, MTU: mtu(ri.NetworkID), IfaceID: ri.PortID})
		}
		p := &spec.Ports[i]
		if !strings.EqualFold(p.MAC, ri.MAC) {
			return nil, fmt.Errorf("router %s: interface port %s has two MACs (%s, %s)", r.ID, ri.PortID, p.MAC, ri.MAC)
		}
		p.Addrs = append(p.Addrs, netip.PrefixFrom(ri.IP, ri.CIDR.Bits()))
		connected = append(connected, ri.CIDR)
		if ri.IP.Is6() {
			spec.IPv6 = true
		} else {
			v4Subnets = append(v4Subnets, ri)
		}
	}
	slices.SortFunc(spec.Ports, func(a, b PlugSpec) int { return cmp.Compare(a.IfName, b.IfName) })

	// Gateway: the qg- port with the external addresses and every floating IP (/32).
	g := r.Gateway
	var qg string
	var snatAddr netip.Addr
	if g != nil {
		if g.PortID == "" {
			return nil, fmt.Errorf("router %s: external_gateway_info without a gateway port", r.ID)
		}
		if len(g.IPs) == 0 || len(g.IPs) != len(g.CIDRs) {
			return nil, fmt.Errorf("router %s: gateway port %s: want one external subnet CIDR per external_fixed_ip (have %d IPs, %d CIDRs)", r.ID, g.PortID, len(g.IPs), len(g.CIDRs))
		}
		qg = IfName(PrefixRouterGateway, g.PortID)
		gp := PlugSpec{Namespace: ns, IfName: qg, MAC: g.MAC, MTU: mtu(g.NetworkID), IfaceID: g.PortID}
		nextHopOK := !g.NextHop.IsValid()
		for i, ip := range g.IPs {
			c := g.CIDRs[i]
			if !ip.IsValid() || !c.IsValid() || !c.Contains(ip) {
				return nil, fmt.Errorf("router %s: gateway port %s: external_fixed_ip %s is not inside its subnet's cidr %s", r.ID, g.PortID, ip, c)
			}
			gp.Addrs = append(gp.Addrs, netip.PrefixFrom(ip, c.Bits()))
			connected = append(connected, c)
			if ip.Is4() && !snatAddr.IsValid() {
				snatAddr = ip
			}
			if ip.Is6() {
				spec.IPv6 = true
			}
			if g.NextHop.IsValid() && c.Contains(g.NextHop) {
				nextHopOK = true
			}
		}
		if !nextHopOK {
			return nil, fmt.Errorf("router %s: the external subnet's gateway_ip %s is on none of the gateway's subnets %v", r.ID, g.NextHop, g.CIDRs)
		}
		if g.NextHop.IsValid() {
			spec.Routes = append(spec.Routes, Route{Dst: netip.PrefixFrom(zeroOf(g.NextHop), 0), Via: g.NextHop, Dev: qg})
		}
		if g.EnableSNAT && len(v4Subnets) > 0 && !snatAddr.IsValid() {
			return nil, fmt.Errorf("router %s: enable_snat needs an IPv4 external_fixed_ip on gateway port %s", r.ID, g.PortID)
		}
		spec.Ports = append(spec.Ports, gp)
	}

	// Extra routes: the next hop must be on a connected subnet (the kernel refuses others).
	for _, rt := range r.Routes {
		if !rt.Destination.IsValid() || !rt.NextHop.IsValid() || rt.Destination.Addr().Is4() != rt.NextHop.Is4() {
			return nil, fmt.Errorf("router %s: route %s via %s: want a destination CIDR and a next hop of the same family", r.ID, rt.Destination, rt.NextHop)
		}
		if !slices.ContainsFunc(connected, func(c netip.Prefix) bool { return c.Contains(rt.NextHop) }) {
			return nil, fmt.Errorf("router %s: route %s: nexthop %s is on none of the router's subnets %v", r.ID, rt.Destination, rt.NextHop, connected)
		}
		if rt.Destination.Bits() == 0 && g != nil && g.NextHop.IsValid() && rt.Destination.Addr().Is4() == g.NextHop.Is4() {
			return nil, fmt.Errorf("router %s: route %s conflicts with the default route via the external gateway %s: remove it", r.ID, rt.Destination, g.NextHop)
		}
		spec.Routes = append(spec.Routes, Route{Dst: rt.Destination.Masked(), Via: rt.NextHop})
	}
	slices.SortFunc(spec.Routes, func(a, b Route) int { return cmpPrefix(a.Dst, b.Dst) })
	for i := 1; i < len(spec.Routes); i++ {
		if spec.Routes[i].Dst == spec.Routes[i-1].Dst {
			return nil, fmt.Errorf("router %s: two routes to %s (via %s and %s): keep one", r.ID, spec.Routes[i].Dst, spec.Routes[i-1].Via, spec.Routes[i].Via)
		}
	}

	// Floating IPs: DNAT in, SNAT out (before the router's SNAT, as Neutron's float-snat).
	fips := slices.Clone(in.FloatingIPs)
	slices.SortFunc(fips, func(a, b *offload.FloatingIP) int { return a.FloatingIP.Compare(b.FloatingIP) })
	var pre, fsnat []NATRule
	seenFIP := map[netip.Addr]string{}
	seenFixed := map[netip.Addr]string{}
	for _, f := range fips {
		if f.RouterID != r.ID {
			return nil, fmt.Errorf("floating IP %s belongs to router %s, not %s", f.ID, f.RouterID, r.ID)
		}
		if g == nil {
			return nil, fmt.Errorf("floating IP %s: router %s has no external gateway: set external_gateway_info first", f.ID, r.ID)
		}
		if !f.FloatingIP.Is4() || !f.FixedIP.Is4() {
			return nil, fmt.Errorf("floating IP %s: floating_ip_address %s and fixed_ip_address %s must be IPv4", f.ID, f.FloatingIP, f.FixedIP)
		}
		if !slices.ContainsFunc(v4Subnets, func(ri offload.RouterInterface) bool { return ri.CIDR.Contains(f.FixedIP) }) {
			return nil, fmt.Errorf("floating IP %s: fixed_ip_address %s is on none of router %s's subnets", f.ID, f.FixedIP, r.ID)
		}
		if o, ok := seenFIP[f.FloatingIP]; ok {
			return nil, fmt.Errorf("floating IPs %s and %s have the same address %s", o, f.ID, f.FloatingIP)
		}
		if o, ok := seenFixed[f.FixedIP]; ok {
			return nil, fmt.Errorf("floating IPs %s and %s map the same fixed_ip_address %s", o, f.ID, f.FixedIP)
		}
		seenFIP[f.FloatingIP], seenFixed[f.FixedIP] = f.ID, f.ID
		gp := &spec.Ports[len(spec.Ports)-1]
		if fp := netip.PrefixFrom(f.FloatingIP, 32); !slices.Contains(gp.Addrs, fp) {
			gp.Addrs = append(gp.Addrs, fp)
		}
		c := "fip " + f.ID
		pre = append(pre, NATRule{Chain: ChainPrerouting, Dst: netip.PrefixFrom(f.FloatingIP, 32), Action: ActionDNAT, To: f.FixedIP, Comment: c})
		fsnat = append(fsnat, NATRule{Chain: ChainPostrouting, OutIf: qg, Src: netip.PrefixFrom(f.FixedIP, 32), Action: ActionSNAT, To: f.FloatingIP, Comment: c})
	}
	spec.Ruleset.Rules = append(append(spec.Ruleset.Rules, pre...), fsnat...)
	if g != nil && g.EnableSNAT {
		slices.SortFunc(v4Subnets, func(a, b offload.RouterInterface) int { return cmpPrefix(a.CIDR, b.CIDR) })
		seen := map[netip.Prefix]bool{}
		for _, ri := range v4Subnets {
			if seen[ri.CIDR] {
				continue
			}
			seen[ri.CIDR] = true
			spec.Ruleset.Rules = append(spec.Ruleset.Rules, NATRule{Chain: ChainPostrouting, OutIf: qg, Src: ri.CIDR,
				Action: ActionSNAT, To: snatAddr, Comment: "snat " + ri.SubnetID})
		}
	}
	// Neighbours on the qr- port whose subnet on the same network holds the address;
	// others (not on any router subnet) are not the router's business.
	for _, n := range in.Neighbours {
		if _, err := net.ParseMAC(n.MAC); err != nil {
			return nil, fmt.Errorf("router %s: neighbour %s: MAC %q is not a MAC", r.ID, n.IP, n.MAC)
		}
		i := slices.IndexFunc(r.Interfaces, func(ri offload.RouterInterface) bool {
			return ri.NetworkID == n.NetworkID && ri.CIDR.Contains(n.IP) && ri.IP != n.IP
		})
		if i < 0 {
			continue
		}
		spec.Neighbours = append(spec.Neighbours, NeighbourSpec{Dev: IfName(PrefixRouterInterface, r.Interfaces[i].PortID), IP: n.IP, MAC: strings.ToLower(n.MAC)})
	}
	slices.SortFunc(spec.Neighbours, func(a, b NeighbourSpec) int { return a.IP.Compare(b.IP) })
	spec.Neighbours = slices.CompactFunc(spec.Neighbours, func(a, b NeighbourSpec) bool { return a.IP == b.IP && a.Dev == b.Dev })
	for _, p := range spec.Ports {
		if err := p.validate(); err != nil {
			return nil, fmt.Errorf("router %s: %w", r.ID, err)
		}
		if _, err := net.ParseMAC(p.MAC); p.MAC == "" || err != nil {
			return nil, fmt.Errorf("router %s: port %s: mac_address %q is not a MAC", r.ID, p.IfaceID, p.MAC)
		}
	}
	return spec, nil
}

func zeroOf(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

func cmpPrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}
