package dhcp

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/offlane/offlane/offload"
)

// ErrNothingToServe: the IR gives the network no DHCP server (no DHCP port, not a
// segment of this node, or no IPv4 DHCP subnet with a DHCP port address).
var ErrNothingToServe = errors.New("nothing to serve")

// DefaultLeaseTime is Neutron's dhcp_lease_duration default.
const DefaultLeaseTime = 24 * time.Hour

// NamespacePrefix names a network's DHCP namespace: qdhcp-<network id>, as Neutron.
const NamespacePrefix = "qdhcp-"

// Namespace is the DHCP namespace of a network.
func Namespace(networkID string) string { return NamespacePrefix + networkID }

// Lease is the static lease of one port: what a DHCPv4 client with MAC gets.
type Lease struct {
	PortID string
	MAC    string // lower-case, colon-separated
	IP     netip.Addr
	// Subnet is the DHCP subnet IP is on (its CIDR: the mask and broadcast address).
	SubnetID string
	Subnet   netip.Prefix
	Router   netip.Addr   // option 3; invalid when the subnet has no gateway_ip
	DNS      []netip.Addr // option 6, in the subnet's order
	// Routes is option 121 (RFC 3442): the subnet's host routes, plus the default route
	// via Router when there are host routes (a client that takes option 121 ignores
	// option 3), unless a host route already is the default. Empty without host routes.
	Routes []offload.SubnetRoute
	MTU    int // option 26; 0 = not sent
	// ServerID is the DHCP port's address on Subnet: option 54 and the source of replies.
	ServerID netip.Addr
}

// Table is one network's lease table. Immutable once built: Server swaps whole tables.
type Table struct {
	NetworkID string
	LeaseTime time.Duration
	byMAC     map[string]*Lease
}

// Lookup returns the lease of a MAC, or nil.
func (t *Table) Lookup(mac net.HardwareAddr) *Lease {
	if t == nil || len(mac) != 6 {
		return nil
	}
	return t.byMAC[mac.String()]
}

// Leases returns the leases sorted by MAC.
func (t *Table) Leases() []Lease {
	out := make([]Lease, 0, len(t.byMAC))
	for _, l := range t.byMAC {
		out = append(out, *l)
	}
	slices.SortFunc(out, func(a, b Lease) int { return strings.Compare(a.MAC, b.MAC) })
	return out
}

// Len is the number of leases.
func (t *Table) Len() int { return len(t.byMAC) }

// ServerIPs are the addresses the server answers from (the DHCP port's IPv4 addresses on
// the network's DHCP subnets), sorted.
func (t *Table) ServerIPs() []netip.Addr {
	var out []netip.Addr
	for _, l := range t.byMAC {
		out = append(out, l.ServerID)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// BuildTable computes the lease table of networkID from a node's IR: every port of the
// network (local ports, except the DHCP port itself, and remote ports) with an IPv4
// fixed IP on a subnet with enable_dhcp where the DHCP port has an address gets a lease
// for its lowest such address. Ports with no such address get none (Neutron's dnsmasq
// has no host entry for them either). It fails when the IR has no DHCP port, segment or
// IPv4 DHCP subnet for the network (ErrNothingToServe). A zero leaseTime means
// DefaultLeaseTime.
func BuildTable(ir *offload.IR, networkID string, leaseTime time.Duration) (*Table, error) {
	return buildTable(ir, networkID, leaseTime, indexIR(ir, nil, nil))
}

// byNetwork indexes an IR by network: its local and remote port IDs, each sorted, and
// its subnets, sorted by ID. One pass over the node's ports serves every network's table
// (sorting every port of the node per network cost ~200 ms a reconcile at 10,000
// ports), and the Manager keeps it up to date from change sets (basis).
type byNetwork struct {
	local, remote map[string][]string
	subnets       map[string][]*offload.Subnet
}

// indexIR indexes ir; non-nil localNet and remoteNet are filled with each port's network.
func indexIR(ir *offload.IR, localNet, remoteNet map[string]string) byNetwork {
	x := byNetwork{local: map[string][]string{}, remote: map[string][]string{}, subnets: indexSubnets(ir.Subnets)}
	for id, p := range ir.Ports {
		if p == nil {
			continue
		}
		x.local[p.NetworkID] = append(x.local[p.NetworkID], id)
		if localNet != nil {
			localNet[id] = p.NetworkID
		}
	}
	for id, p := range ir.RemotePorts {
		if p == nil {
			continue
		}
		x.remote[p.NetworkID] = append(x.remote[p.NetworkID], id)
		if remoteNet != nil {
			remoteNet[id] = p.NetworkID
		}
	}
	for _, ids := range x.local {
		slices.Sort(ids)
	}
	for _, ids := range x.remote {
		slices.Sort(ids)
	}
	return x
}

// indexSubnets are the subnets by network, each network's sorted by ID.
func indexSubnets(subnets map[string]*offload.Subnet) map[string][]*offload.Subnet {
	out := map[string][]*offload.Subnet{}
	for _, sn := range subnets {
		if sn != nil {
			out[sn.NetworkID] = append(out[sn.NetworkID], sn)
		}
	}
	for _, sns := range out {
		slices.SortFunc(sns, func(a, b *offload.Subnet) int { return strings.Compare(a.ID, b.ID) })
	}
	return out
}

func buildTable(ir *offload.IR, networkID string, leaseTime time.Duration, idx byNetwork) (*Table, error) {
	if leaseTime == 0 {
		leaseTime = DefaultLeaseTime
	}
	if leaseTime < time.Minute || leaseTime > 0xffffffff*time.Second {
		return nil, fmt.Errorf("network %s: lease time %s: want 1m to 136y", networkID, leaseTime)
	}
	dp := ir.DHCPPorts[networkID]
	if dp == nil {
		return nil, fmt.Errorf("network %s: no DHCP port in the IR: %w", networkID, ErrNothingToServe)
	}
	seg := ir.Segments[networkID]
	if seg == nil {
		return nil, fmt.Errorf("network %s: not a segment of this node: %w", networkID, ErrNothingToServe)
	}
	// The network's DHCP subnets where the DHCP port has an address, by subnet ID.
	type dsub struct {
		sn     *offload.Subnet
		server netip.Addr
	}
	var subs []dsub
	for _, sn := range idx.subnets[networkID] {
		if !sn.EnableDHCP || !sn.CIDR.Addr().Is4() {
			continue
		}
		for _, ip := range dp.IPs {
			if sn.CIDR.Contains(ip) {
				subs = append(subs, dsub{sn, ip})
				break
			}
		}
	}
	if len(subs) == 0 {
		return nil, fmt.Errorf("network %s: DHCP port %s has no address on an IPv4 subnet with enable_dhcp: %w", networkID, dp.PortID, ErrNothingToServe)
	}
	t := &Table{NetworkID: networkID, LeaseTime: leaseTime, byMAC: map[string]*Lease{}}
	add := func(portID, mac string, ips []netip.Addr) error {
		if portID == dp.PortID || mac == "" {
			return nil
		}
		hw, err := net.ParseMAC(mac)
		if err != nil || len(hw) != 6 {
			return fmt.Errorf("network %s: port %s: MAC %q is not an Ethernet address", networkID, portID, mac)
		}
		var best *Lease
		for _, ip := range ips {
			if !ip.Is4() {
				continue
			}
			for _, s := range subs {
				if !s.sn.CIDR.Contains(ip) || (best != nil && best.IP.Compare(ip) <= 0) {
					continue
				}
				best = lease(portID, hw.String(), ip, s.sn, s.server, seg.MTU)
			}
		}
		if best == nil {
			return nil
		}
		if o := t.byMAC[best.MAC]; o != nil {
			return fmt.Errorf("network %s: ports %s and %s share MAC %s", networkID, o.PortID, portID, best.MAC)
		}
		t.byMAC[best.MAC] = best
		return nil
	}
	for _, id := range idx.local[networkID] {
		if p := ir.Ports[id]; p != nil {
			if err := add(p.ID, p.MAC, p.IPs); err != nil {
				return nil, err
			}
		}
	}
	for _, id := range idx.remote[networkID] {
		if p := ir.RemotePorts[id]; p != nil {
			if err := add(p.ID, p.MAC, p.IPs); err != nil {
				return nil, err
			}
		}
	}
	return t, nil
}

func lease(portID, mac string, ip netip.Addr, sn *offload.Subnet, server netip.Addr, mtu int) *Lease {
	l := &Lease{PortID: portID, MAC: mac, IP: ip, SubnetID: sn.ID, Subnet: sn.CIDR, ServerID: server, MTU: mtu}
	if sn.Gateway.IsValid() && sn.Gateway.Is4() {
		l.Router = sn.Gateway
	}
	for _, d := range sn.DNS {
		if d.Is4() {
			l.DNS = append(l.DNS, d)
		}
	}
	hasDefault := false
	for _, r := range sn.HostRoutes {
		if !r.Destination.Addr().Is4() {
			continue
		}
		l.Routes = append(l.Routes, r)
		hasDefault = hasDefault || r.Destination.Bits() == 0
	}
	if len(l.Routes) > 0 && !hasDefault && l.Router.IsValid() {
		l.Routes = append(l.Routes, offload.SubnetRoute{Destination: netip.PrefixFrom(netip.IPv4Unspecified(), 0), NextHop: l.Router})
	}
	slices.SortStableFunc(l.Routes, func(a, b offload.SubnetRoute) int {
		// Longest prefix first, as dnsmasq lists them; the default route last.
		return cmp.Compare(b.Destination.Bits(), a.Destination.Bits())
	})
	return l
}

func sortedIDs[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
