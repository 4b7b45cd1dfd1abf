package offload

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/offlane/offlane/controlplane"
)

// buildL3 fills the IR's routers, floating IPs and subnets, and adds the networks of the
// routers this node carries to its segments (before the local VLANs are allocated, so
// the remote-port pass of Build populates them too). A router is on this node when one
// of its interfaces is on a network with a local port; then every network it touches
// (interfaces and external gateway) is a segment here, as in Neutron's DVR: each node
// routes its own VMs' traffic.
func buildL3(in BuildInput, ir *IR, nets map[string]*controlplane.Network) []error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	snap := &in.Snapshot

	subnets := make(map[string]*Subnet, len(snap.Subnets))
	for i := range snap.Subnets {
		cs := &snap.Subnets[i]
		s, err := buildSubnet(cs)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		subnets[s.ID] = s
	}
	// Router ports by router (device_id), and floating IP ports by floating IP.
	ifPorts := map[string][]*controlplane.Port{}
	gwPorts := map[string]*controlplane.Port{}
	fipPorts := map[string]*controlplane.Port{}
	portsByID := make(map[string]*controlplane.Port, len(snap.Ports))
	for i := range snap.Ports {
		p := &snap.Ports[i]
		portsByID[p.ID] = p
		switch p.DeviceOwner {
		case controlplane.OwnerRouterInterface:
			ifPorts[p.DeviceID] = append(ifPorts[p.DeviceID], p)
		case controlplane.OwnerRouterGateway:
			gwPorts[p.DeviceID] = p
		case controlplane.OwnerFloatingIP:
			fipPorts[p.DeviceID] = p
		}
	}
	localNets := map[string]bool{}
	for _, p := range ir.Ports {
		localNets[p.NetworkID] = true
	}
	addSegment := func(netID, where string) bool {
		if _, ok := ir.Segments[netID]; ok {
			return true
		}
		n := nets[netID]
		if n == nil {
			fail("%s: network_id %s is not in the snapshot: give the network too", where, netID)
			return false
		}
		seg, err := buildSegment(n)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			return false
		}
		ir.Segments[netID] = seg
		return true
	}

	for i := range snap.Routers {
		cr := &snap.Routers[i]
		r, here, err := buildRouter(cr, ifPorts[cr.ID], gwPorts[cr.ID], portsByID, subnets, in.OFPorts, localNets)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !here {
			continue
		}
		ok := true
		for _, ri := range r.Interfaces {
			ok = addSegment(ri.NetworkID, fmt.Sprintf("router %s interface port %s", r.ID, ri.PortID)) && ok
		}
		if r.Gateway != nil {
			ok = addSegment(r.Gateway.NetworkID, fmt.Sprintf("router %s external_gateway_info.network_id", r.ID)) && ok
			if ok && !nets[r.Gateway.NetworkID].External {
				fail("router %s: external_gateway_info.network_id %s is not router:external: set router:external on the network", r.ID, r.Gateway.NetworkID)
				ok = false
			}
		}
		if ok {
			ir.Routers[r.ID] = r
		}
	}

	for id, seg := range ir.Segments {
		if n := nets[id]; n != nil {
			seg.External = n.External
		}
	}
	for _, s := range subnets {
		if ir.Segments[s.NetworkID] != nil {
			ir.Subnets[s.ID] = s
		}
	}

	for i := range snap.FloatingIPs {
		cf := &snap.FloatingIPs[i]
		if cf.RouterID == nil || *cf.RouterID == "" || cf.PortID == nil || *cf.PortID == "" {
			continue // not associated
		}
		r := ir.Routers[*cf.RouterID]
		if r == nil {
			continue // a router this node does not carry
		}
		f, err := buildFloatingIP(cf, r, portsByID, fipPorts[cf.ID])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ir.FloatingIPs[f.ID] = f
	}
	return errs
}

func buildSubnet(cs *controlplane.Subnet) (*Subnet, error) {
	pfx, err := netip.ParsePrefix(cs.CIDR)
	if err != nil {
		return nil, fmt.Errorf("subnet %s: cidr %q is not a CIDR (want e.g. 10.0.0.0/24)", cs.ID, cs.CIDR)
	}
	s := &Subnet{ID: cs.ID, NetworkID: cs.NetworkID, TenantID: cs.TenantID, CIDR: pfx.Masked(), EnableDHCP: cs.EnableDHCP}
	if cs.GatewayIP != nil && *cs.GatewayIP != "" {
		gw, err := netip.ParseAddr(*cs.GatewayIP)
		if err != nil || !pfx.Contains(gw.Unmap()) {
			return nil, fmt.Errorf("subnet %s: gateway_ip %q is not an address in %s", cs.ID, *cs.GatewayIP, s.CIDR)
		}
		s.Gateway = gw.Unmap()
	}
	for i, d := range cs.DNSNameservers {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return nil, fmt.Errorf("subnet %s: dns_nameservers[%d] %q is not an IP address", cs.ID, i, d)
		}
		s.DNS = append(s.DNS, a.Unmap())
	}
	for i, hr := range cs.HostRoutes {
		rt, err := parseRoute(hr.Destination, hr.NextHop)
		if err != nil {
			return nil, fmt.Errorf("subnet %s: host_routes[%d]: %w", cs.ID, i, err)
		}
		s.HostRoutes = append(s.HostRoutes, rt)
	}
	return s, nil
}

func parseRoute(dst, nh string) (SubnetRoute, error) {
	d, err := netip.ParsePrefix(dst)
	if err != nil {
		return SubnetRoute{}, fmt.Errorf("destination %q is not a CIDR", dst)
	}
	n, err := netip.ParseAddr(nh)
	if err != nil || n.Zone() != "" {
		return SubnetRoute{}, fmt.Errorf("nexthop %q is not an IP address", nh)
	}
	d = netip.PrefixFrom(d.Addr().Unmap(), d.Bits()).Masked()
	n = n.Unmap()
	if d.Addr().Is4() != n.Is4() {
		return SubnetRoute{}, fmt.Errorf("destination %s and nexthop %s are of different IP versions", d, n)
	}
	return SubnetRoute{Destination: d, NextHop: n}, nil
}

// buildRouter builds a router from its ports; here reports whether one of its
// interfaces is on a network with a local port.
func buildRouter(cr *controlplane.Router, ifs []*controlplane.Port, gw *controlplane.Port, ports map[string]*controlplane.Port,
	subnets map[string]*Subnet, ofports map[string]int, localNets map[string]bool) (*Router, bool, error) {
	here := false
	for _, p := range ifs {
		here = here || localNets[p.NetworkID]
	}
	if !here {
		return nil, false, nil // not validated: another node's business
	}
	r := &Router{ID: cr.ID, TenantID: cr.TenantID, AdminStateUp: cr.AdminStateUp}
	for _, p := range ifs {
		mac, err := normMAC(p.MACAddress)
		if err != nil {
			return nil, false, fmt.Errorf("router %s: interface port %s: mac_address: %w", cr.ID, p.ID, err)
		}
		for j, fip := range p.FixedIPs {
			a, err := netip.ParseAddr(fip.IPAddress)
			if err != nil {
				return nil, false, fmt.Errorf("router %s: interface port %s: fixed_ips[%d].ip_address %q is not an IP address", cr.ID, p.ID, j, fip.IPAddress)
			}
			sn := subnets[fip.SubnetID]
			if sn == nil {
				return nil, false, fmt.Errorf("router %s: interface port %s: fixed_ips[%d].subnet_id %s is not in the snapshot: give the subnet too", cr.ID, p.ID, j, fip.SubnetID)
			}
			if sn.NetworkID != p.NetworkID || !sn.CIDR.Contains(a.Unmap()) {
				return nil, false, fmt.Errorf("router %s: interface port %s: fixed_ips[%d] %s is not in subnet %s (%s) of network %s", cr.ID, p.ID, j, a, sn.ID, sn.CIDR, p.NetworkID)
			}
			r.Interfaces = append(r.Interfaces, RouterInterface{PortID: p.ID, NetworkID: p.NetworkID, SubnetID: sn.ID, MAC: mac, IP: a.Unmap(), CIDR: sn.CIDR, OFPort: ofports[p.ID]})
		}
	}
	slices.SortFunc(r.Interfaces, func(a, b RouterInterface) int {
		if c := strings.Compare(a.PortID, b.PortID); c != 0 {
			return c
		}
		return strings.Compare(a.SubnetID, b.SubnetID)
	})
	if g := cr.ExternalGatewayInfo; g != nil {
		if g.NetworkID == "" {
			return nil, false, fmt.Errorf("router %s: external_gateway_info.network_id is empty: give the external network", cr.ID)
		}
		if gw == nil && cr.GatewayPortID != "" {
			gw = ports[cr.GatewayPortID]
		}
		if gw == nil {
			return nil, false, fmt.Errorf("router %s: external_gateway_info: no gateway port (device_owner %s, device_id %s) in the snapshot", cr.ID, controlplane.OwnerRouterGateway, cr.ID)
		}
		mac, err := normMAC(gw.MACAddress)
		if err != nil {
			return nil, false, fmt.Errorf("router %s: gateway port %s: mac_address: %w", cr.ID, gw.ID, err)
		}
		rg := &RouterGateway{PortID: gw.ID, NetworkID: g.NetworkID, MAC: mac, EnableSNAT: g.EnableSNAT, Host: gw.HostID, OFPort: ofports[gw.ID]}
		if gw.NetworkID != g.NetworkID {
			return nil, false, fmt.Errorf("router %s: gateway port %s is on network %s, not external_gateway_info.network_id %s", cr.ID, gw.ID, gw.NetworkID, g.NetworkID)
		}
		for j, fip := range gw.FixedIPs {
			a, err := netip.ParseAddr(fip.IPAddress)
			if err != nil {
				return nil, false, fmt.Errorf("router %s: external_gateway_info.external_fixed_ips[%d].ip_address %q is not an IP address", cr.ID, j, fip.IPAddress)
			}
			sn := subnets[fip.SubnetID]
			if sn == nil || !sn.CIDR.Contains(a.Unmap()) {
				return nil, false, fmt.Errorf("router %s: external_gateway_info.external_fixed_ips[%d] %s: subnet %q is not in the snapshot or does not contain it", cr.ID, j, a, fip.SubnetID)
			}
			rg.IPs = append(rg.IPs, a.Unmap())
			rg.CIDRs = append(rg.CIDRs, sn.CIDR)
			if !rg.NextHop.IsValid() && a.Is4() && sn.Gateway.IsValid() {
				rg.NextHop = sn.Gateway
			}
		}
		if rg.SNATAddr() == (netip.Addr{}) {
			return nil, false, fmt.Errorf("router %s: external_gateway_info.external_fixed_ips has no IPv4 address: SNAT and floating IPs need one", cr.ID)
		}
		r.Gateway = rg
	}
	for j, rt := range cr.Routes {
		sr, err := parseRoute(rt.Destination, rt.NextHop)
		if err != nil {
			return nil, false, fmt.Errorf("router %s: routes[%d]: %w", cr.ID, j, err)
		}
		if _, ok := r.Connected(sr.NextHop); !ok {
			return nil, false, fmt.Errorf("router %s: routes[%d].nexthop %s is not on a subnet of the router: give a next hop on one of its interfaces or its gateway", cr.ID, j, sr.NextHop)
		}
		r.Routes = append(r.Routes, sr)
	}
	slices.SortFunc(r.Routes, func(a, b SubnetRoute) int {
		if c := comparePrefix(a.Destination, b.Destination); c != 0 {
			return c
		}
		return a.NextHop.Compare(b.NextHop)
	})
	r.Routes = slices.Compact(r.Routes)
	return r, true, nil
}

// SNATAddr is the gateway's first IPv4 address: the router's SNAT source (invalid when
// it has none).
func (g *RouterGateway) SNATAddr() netip.Addr {
	for _, a := range g.IPs {
		if a.Is4() {
			return a
		}
	}
	return netip.Addr{}
}

// Connected returns the network of the router's connected subnet that contains a (an
// interface subnet or the gateway's external subnet).
func (r *Router) Connected(a netip.Addr) (string, bool) {
	for _, ri := range r.Interfaces {
		if ri.CIDR.Contains(a) {
			return ri.NetworkID, true
		}
	}
	if r.Gateway != nil {
		for _, c := range r.Gateway.CIDRs {
			if c.Contains(a) {
				return r.Gateway.NetworkID, true
			}
		}
	}
	return "", false
}

func buildFloatingIP(cf *controlplane.FloatingIP, r *Router, ports map[string]*controlplane.Port, fipPort *controlplane.Port) (*FloatingIP, error) {
	where := "floating IP " + cf.ID
	if r.Gateway == nil {
		return nil, fmt.Errorf("%s: router_id %s has no external gateway: set the router's external_gateway_info", where, r.ID)
	}
	fa, err := netip.ParseAddr(cf.FloatingIPAddress)
	if err != nil || !fa.Unmap().Is4() {
		return nil, fmt.Errorf("%s: floating_ip_address %q is not an IPv4 address", where, cf.FloatingIPAddress)
	}
	if cf.FloatingNetworkID != r.Gateway.NetworkID {
		return nil, fmt.Errorf("%s: floating_network_id %s is not router %s's external network %s", where, cf.FloatingNetworkID, r.ID, r.Gateway.NetworkID)
	}
	f := &FloatingIP{ID: cf.ID, TenantID: cf.TenantID, RouterID: r.ID, NetworkID: cf.FloatingNetworkID, FloatingIP: fa.Unmap(), PortID: *cf.PortID, MAC: r.Gateway.MAC}
	p := ports[f.PortID]
	if p == nil {
		return nil, fmt.Errorf("%s: port_id %s is not in the snapshot", where, f.PortID)
	}
	f.PortNetworkID, f.Host = p.NetworkID, p.HostID
	if cf.FixedIPAddress == nil || *cf.FixedIPAddress == "" {
		return nil, fmt.Errorf("%s: fixed_ip_address is empty: give the port's fixed IP", where)
	}
	fx, err := netip.ParseAddr(*cf.FixedIPAddress)
	if err != nil || !fx.Unmap().Is4() {
		return nil, fmt.Errorf("%s: fixed_ip_address %q is not an IPv4 address", where, *cf.FixedIPAddress)
	}
	f.FixedIP = fx.Unmap()
	if !slices.ContainsFunc(r.Interfaces, func(ri RouterInterface) bool { return ri.NetworkID == f.PortNetworkID && ri.CIDR.Contains(f.FixedIP) }) {
		return nil, fmt.Errorf("%s: fixed_ip_address %s of port %s is not on a subnet attached to router %s", where, f.FixedIP, f.PortID, r.ID)
	}
	if fipPort == nil && cf.FloatingPortID != "" {
		fipPort = ports[cf.FloatingPortID]
	}
	if fipPort != nil && fipPort.MACAddress != "" {
		mac, err := normMAC(fipPort.MACAddress)
		if err != nil {
			return nil, fmt.Errorf("%s: floating IP port %s: mac_address: %w", where, fipPort.ID, err)
		}
		f.MAC = mac
	}
	return f, nil
}
