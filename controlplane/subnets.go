package controlplane

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
)

func (s *Server) subnetCollection() *collection {
	return &collection{
		name: "subnets", member: "subnet", plural: "subnets", kind: KindSubnet,
		notFound: "SubnetNotFound", label: "Subnet", attrs: attrNames(Subnet{}),
		indexes: []string{"network_id", "project_id"},
		newObj:  func() storable { return &Subnet{} },
		visible: func(rq *request, lk *lookup, m rawObj) bool {
			return rq.canSeeSubnet(lk, str(m, "project_id"), str(m, "network_id"))
		},
		create: s.createSubnet,
		update: s.updateSubnet,
		del:    s.deleteSubnet,
	}
}

// canSeeSubnet: admin, owner, or the subnet's network is shared (Neutron's get_subnet)
// or owned by the caller.
func (rq *request) canSeeSubnet(lk *lookup, project, networkID string) bool {
	if rq.c.owns(project) {
		return true
	}
	n := lk.network(networkID)
	return n != nil && (n.Shared || rq.c.owns(n.ProjectID))
}

func (rq *request) loadSubnet(tx ReadTx, id string) (*Subnet, error) {
	var sn Subnet
	nf := notFound("SubnetNotFound", "Subnet %s could not be found.", id)
	if err := getObj(tx, KindSubnet, id, &sn, nf); err != nil {
		return nil, err
	}
	if !rq.canSeeSubnet(rq.lookup(tx), sn.ProjectID, sn.NetworkID) {
		return nil, nf
	}
	return &sn, nil
}

var ipv6Modes = []string{"slaac", "dhcpv6-stateful", "dhcpv6-stateless"}

const (
	maxDNSNameservers = 5
	maxHostRoutes     = 20
)

func (s *Server) createSubnet(rq *request, tx Tx, a *attrs) (any, error) {
	sn := &Subnet{
		ID: newID(), EnableDHCP: true, DNSNameservers: []string{}, HostRoutes: []HostRoute{},
		ServiceTypes: []string{}, Tags: []string{}, CreatedAt: rq.now, UpdatedAt: rq.now, RevisionNumber: 1,
	}
	if err := a.forbid("id", "revision_number", "created_at", "updated_at"); err != nil {
		return nil, err
	}
	if _, err := a.str("network_id", &sn.NetworkID, 64); err != nil {
		return nil, err
	}
	if sn.NetworkID == "" {
		return nil, badRequest("Failed to parse request. Required attribute 'network_id' not specified")
	}
	net, err := rq.loadNetwork(tx, sn.NetworkID)
	if err != nil {
		return nil, err
	}
	if err := rq.mustOwn(net.ProjectID, "create_subnet"); err != nil {
		return nil, err
	}
	if !a.has("project_id") && !a.has("tenant_id") && rq.c.admin && rq.c.projectID == "" {
		sn.ProjectID = net.ProjectID
	} else if sn.ProjectID, err = rq.project(a); err != nil {
		return nil, err
	}
	sn.TenantID = sn.ProjectID
	if _, err := a.str("name", &sn.Name, maxNameLen); err != nil {
		return nil, err
	}
	if _, err := a.str("description", &sn.Description, maxNameLen); err != nil {
		return nil, err
	}
	hasVer, err := a.integer("ip_version", &sn.IPVersion, 0, 1<<31)
	if err != nil {
		return nil, err
	}
	if !hasVer {
		return nil, badRequest("Failed to parse request. Required attribute 'ip_version' not specified")
	}
	if sn.IPVersion != 4 && sn.IPVersion != 6 {
		return nil, invalidAttr("ip_version", "%d is not in [4, 6]", sn.IPVersion)
	}
	var pool *string
	if _, err := a.optStr("subnetpool_id", &pool, 64, true); err != nil {
		return nil, err
	}
	if pool != nil {
		return nil, invalidAttr("subnetpool_id", "subnet pools are not supported; give a cidr")
	}
	if has, err := a.str("cidr", &sn.CIDR, 64); err != nil {
		return nil, err
	} else if !has {
		return nil, badRequest("Failed to parse request. Required attribute 'cidr' not specified")
	}
	prefix, err := netip.ParsePrefix(sn.CIDR)
	if err != nil {
		return nil, invalidAttr("cidr", "'%s' is not a valid IP subnet", shortStr(sn.CIDR))
	}
	if prefix.Masked() != prefix {
		return nil, invalidAttr("cidr", "'%s' isn't a recognized IP subnet cidr, '%s' is recommended", sn.CIDR, prefix.Masked())
	}
	if (sn.IPVersion == 4) != prefix.Addr().Is4() {
		return nil, newErr(http.StatusBadRequest, "InvalidInput", "Invalid input for operation: Cidr %s is invalid for IP version %d.", sn.CIDR, sn.IPVersion)
	}
	sn.CIDR = prefix.String()
	if _, err := a.optStr("ipv6_address_mode", &sn.IPv6AddressMode, 32, true); err != nil {
		return nil, err
	}
	if _, err := a.optStr("ipv6_ra_mode", &sn.IPv6RAMode, 32, true); err != nil {
		return nil, err
	}
	if err := checkIPv6Modes(sn, prefix); err != nil {
		return nil, err
	}
	// gateway_ip: absent → first usable address; null → none.
	var gwp *string
	hasGW, err := a.optStr("gateway_ip", &gwp, 64, true)
	if err != nil {
		return nil, err
	}
	var gw *netip.Addr
	if !hasGW {
		first, last := usableRange(prefix)
		if first.IsValid() && first.Compare(last) <= 0 && prefix.Bits() < prefix.Addr().BitLen()-1 {
			gw = &first
			g := first.String()
			sn.GatewayIP = &g
		}
	} else if gwp != nil {
		g, err := checkGateway(prefix, *gwp)
		if err != nil {
			return nil, err
		}
		gw = &g
		gs := g.String()
		sn.GatewayIP = &gs
	}
	if pools, has, err := a.objList("allocation_pools"); err != nil {
		return nil, err
	} else if has {
		if sn.AllocationPools, err = checkPools(prefix, pools, gw); err != nil {
			return nil, err
		}
	} else {
		sn.AllocationPools = defaultPools(prefix, gw)
	}
	if err := subnetOptions(a, sn); err != nil {
		return nil, err
	}
	if _, err := a.boolean("enable_dhcp", &sn.EnableDHCP); err != nil {
		return nil, err
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	for _, other := range net.Subnets {
		var o Subnet
		if err := getObj(tx, KindSubnet, other, &o, nil); err != nil {
			return nil, fmt.Errorf("network %s: subnet %s: %w", net.ID, other, err)
		}
		if subnetPrefix(&o).Overlaps(prefix) {
			return nil, conflict("SubnetOverlap", "Requested subnet with cidr: %s for network: %s overlaps with another subnet (%s, %s).", sn.CIDR, net.ID, o.ID, o.CIDR)
		}
	}
	net.Subnets = append(net.Subnets, sn.ID)
	net.touch(rq.now)
	if err := save(tx, KindNetwork, net.ID, net); err != nil {
		return nil, err
	}
	if err := save(tx, KindSubnet, sn.ID, sn); err != nil {
		return nil, err
	}
	return sn, rq.syncDHCPPort(tx, net)
}

func checkIPv6Modes(sn *Subnet, prefix netip.Prefix) error {
	for _, m := range []struct {
		name string
		v    *string
	}{{"ipv6_address_mode", sn.IPv6AddressMode}, {"ipv6_ra_mode", sn.IPv6RAMode}} {
		if m.v == nil {
			continue
		}
		if !slices.Contains(ipv6Modes, *m.v) {
			return invalidAttr(m.name, "'%s' is not in %v", shortStr(*m.v), ipv6Modes)
		}
		if sn.IPVersion != 6 {
			return newErr(http.StatusBadRequest, "InvalidInput", "Invalid input for operation: %s set to '%s' with ip_version set to '4' is not valid.", m.name, *m.v)
		}
	}
	if sn.IPv6AddressMode != nil && sn.IPv6RAMode != nil && *sn.IPv6AddressMode != *sn.IPv6RAMode {
		return newErr(http.StatusBadRequest, "InvalidInput", "Invalid input for operation: ipv6_ra_mode set to '%s' with ipv6_address_mode set to '%s' is not valid. If both attributes are set, they must be the same value.", *sn.IPv6RAMode, *sn.IPv6AddressMode)
	}
	if slaac(sn) && prefix.Bits() != 64 {
		return newErr(http.StatusBadRequest, "InvalidInput", "Invalid input for operation: Invalid CIDR %s for IPv6 address mode. OpenStack uses the EUI-64 address format, which requires the prefix to be /64.", sn.CIDR)
	}
	return nil
}

// slaac reports whether addresses come from EUI-64 (slaac and dhcpv6-stateless).
func slaac(sn *Subnet) bool {
	return sn.IPv6AddressMode != nil && (*sn.IPv6AddressMode == "slaac" || *sn.IPv6AddressMode == "dhcpv6-stateless")
}

func checkGateway(prefix netip.Prefix, s string) (netip.Addr, error) {
	g, err := netip.ParseAddr(s)
	if err != nil || g.Zone() != "" {
		return g, invalidAttr("gateway_ip", "'%s' is not a valid IP address", shortStr(s))
	}
	if g.Is4() != prefix.Addr().Is4() {
		return g, invalidAttr("gateway_ip", "'%s' is not an IPv%d address", s, map[bool]int{true: 4, false: 6}[prefix.Addr().Is4()])
	}
	if !validHostIP(prefix, g) {
		return g, newErr(http.StatusBadRequest, "InvalidInput", "Invalid input for operation: Gateway is not valid on subnet: %s is not a host address of %s.", s, prefix)
	}
	return g, nil
}

// checkPools validates allocation pools as Neutron does.
func checkPools(prefix netip.Prefix, pools []map[string]json.RawMessage, gw *netip.Addr) ([]AllocationPool, error) {
	type rng struct{ lo, hi netip.Addr }
	var rs []rng
	out := []AllocationPool{}
	first, last := usableRange(prefix)
	for _, p := range pools {
		start, _, err := subStr("allocation_pools", p, "start")
		if err != nil {
			return nil, err
		}
		end, _, err := subStr("allocation_pools", p, "end")
		if err != nil {
			return nil, err
		}
		for k := range p {
			if k != "start" && k != "end" {
				return nil, invalidAttr("allocation_pools", "unexpected key '%s' (want start and end)", shortStr(k))
			}
		}
		lo, err1 := netip.ParseAddr(start)
		hi, err2 := netip.ParseAddr(end)
		pool := fmt.Sprintf("%s-%s", start, end)
		if err1 != nil || err2 != nil || lo.Is4() != hi.Is4() || lo.Compare(hi) > 0 || lo.Zone() != "" || hi.Zone() != "" {
			return nil, newErr(http.StatusBadRequest, "InvalidAllocationPool", "The allocation pool %s is not valid.", shortStr(pool))
		}
		if lo.Is4() != prefix.Addr().Is4() || lo.Compare(first) < 0 || hi.Compare(last) > 0 {
			return nil, newErr(http.StatusBadRequest, "OutOfBoundsAllocationPool", "The allocation pool %s spans beyond the subnet cidr %s.", pool, prefix)
		}
		for _, r := range rs {
			if lo.Compare(r.hi) <= 0 && r.lo.Compare(hi) <= 0 {
				return nil, conflict("OverlappingAllocationPools", "Found overlapping allocation pools: %s-%s %s for subnet %s.", r.lo, r.hi, pool, prefix)
			}
		}
		if gw != nil && lo.Compare(*gw) <= 0 && gw.Compare(hi) <= 0 {
			return nil, conflict("GatewayConflictWithAllocationPools", "Gateway ip %s conflicts with allocation pool %s.", gw, pool)
		}
		rs = append(rs, rng{lo, hi})
		out = append(out, AllocationPool{Start: lo.String(), End: hi.String()})
	}
	slices.SortFunc(out, func(a, b AllocationPool) int {
		return netip.MustParseAddr(a.Start).Compare(netip.MustParseAddr(b.Start))
	})
	return out, nil
}

// subnetOptions decodes dns_nameservers and host_routes.
func subnetOptions(a *attrs, sn *Subnet) error {
	if has, err := a.strList("dns_nameservers", &sn.DNSNameservers, 0); err != nil {
		return err
	} else if has {
		if len(sn.DNSNameservers) > maxDNSNameservers {
			return newErr(http.StatusBadRequest, "DNSNameServersExhausted", "Unable to complete operation for %s. The number of DNS nameservers exceeds the limit %d.", sn.ID, maxDNSNameservers)
		}
		seen := map[string]bool{}
		for _, d := range sn.DNSNameservers {
			if _, err := netip.ParseAddr(d); err != nil {
				return invalidAttr("dns_nameservers", "'%s' is not a valid nameserver", shortStr(d))
			}
			if seen[d] {
				return invalidAttr("dns_nameservers", "Duplicate nameserver '%s'", d)
			}
			seen[d] = true
		}
	}
	routes, has, err := a.objList("host_routes")
	if err != nil || !has {
		return err
	}
	if len(routes) > maxHostRoutes {
		return newErr(http.StatusBadRequest, "HostRoutesExhausted", "Unable to complete operation for %s. The number of host routes exceeds the limit %d.", sn.ID, maxHostRoutes)
	}
	sn.HostRoutes = []HostRoute{}
	for _, r := range routes {
		hr, err := parseRoute("host_routes", r)
		if err != nil {
			return err
		}
		if netip.MustParsePrefix(hr.Destination).Addr().Is4() != (sn.IPVersion == 4) {
			return invalidAttr("host_routes", "route %s is not IPv%d", hr.Destination, sn.IPVersion)
		}
		if slices.Contains(sn.HostRoutes, hr) {
			return invalidAttr("host_routes", "Duplicate hostroute '%s'", hr.Destination)
		}
		sn.HostRoutes = append(sn.HostRoutes, hr)
	}
	return nil
}

// parseRoute decodes {destination, nexthop} with matching IP versions.
func parseRoute(attr string, r map[string]json.RawMessage) (HostRoute, error) {
	dst, _, err := subStr(attr, r, "destination")
	if err != nil {
		return HostRoute{}, err
	}
	nh, _, err := subStr(attr, r, "nexthop")
	if err != nil {
		return HostRoute{}, err
	}
	for k := range r {
		if k != "destination" && k != "nexthop" {
			return HostRoute{}, invalidAttr(attr, "unexpected key '%s' (want destination and nexthop)", shortStr(k))
		}
	}
	p, err := netip.ParsePrefix(dst)
	if err != nil {
		return HostRoute{}, invalidAttr(attr, "'%s' is not a valid CIDR destination", shortStr(dst))
	}
	h, err := netip.ParseAddr(nh)
	if err != nil || h.Zone() != "" {
		return HostRoute{}, invalidAttr(attr, "'%s' is not a valid nexthop IP address", shortStr(nh))
	}
	if h.Is4() != p.Addr().Is4() {
		return HostRoute{}, invalidAttr(attr, "nexthop %s and destination %s are different IP versions", nh, dst)
	}
	return HostRoute{Destination: p.Masked().String(), NextHop: h.String()}, nil
}

func (s *Server) updateSubnet(rq *request, tx Tx, id string, a *attrs) (any, error) {
	sn, err := rq.loadSubnet(tx, id)
	if err != nil {
		return nil, err
	}
	if err := rq.mustOwn(sn.ProjectID, "update_subnet"); err != nil {
		return nil, err
	}
	if err := a.forbid("id", "network_id", "ip_version", "cidr", "project_id", "tenant_id", "subnetpool_id",
		"ipv6_address_mode", "ipv6_ra_mode", "revision_number", "created_at", "updated_at"); err != nil {
		return nil, err
	}
	prefix := subnetPrefix(sn)
	if _, err := a.str("name", &sn.Name, maxNameLen); err != nil {
		return nil, err
	}
	if _, err := a.str("description", &sn.Description, maxNameLen); err != nil {
		return nil, err
	}
	wasDHCP := sn.EnableDHCP
	if _, err := a.boolean("enable_dhcp", &sn.EnableDHCP); err != nil {
		return nil, err
	}
	var gwp *string
	hasGW, err := a.optStr("gateway_ip", &gwp, 64, true)
	if err != nil {
		return nil, err
	}
	if hasGW {
		sn.GatewayIP = nil
		if gwp != nil {
			g, err := checkGateway(prefix, *gwp)
			if err != nil {
				return nil, err
			}
			gs := g.String()
			sn.GatewayIP = &gs
		}
	}
	var gw *netip.Addr
	if sn.GatewayIP != nil {
		g := netip.MustParseAddr(*sn.GatewayIP)
		gw = &g
	}
	if pools, has, err := a.objList("allocation_pools"); err != nil {
		return nil, err
	} else if has {
		if sn.AllocationPools, err = checkPools(prefix, pools, gw); err != nil {
			return nil, err
		}
	} else if hasGW && gw != nil {
		for _, p := range sn.AllocationPools {
			if netip.MustParseAddr(p.Start).Compare(*gw) <= 0 && gw.Compare(netip.MustParseAddr(p.End)) <= 0 {
				return nil, conflict("GatewayConflictWithAllocationPools", "Gateway ip %s conflicts with allocation pool %s-%s.", gw, p.Start, p.End)
			}
		}
	}
	if err := subnetOptions(a, sn); err != nil {
		return nil, err
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	sn.touch(rq.now)
	if err := save(tx, KindSubnet, sn.ID, sn); err != nil {
		return nil, err
	}
	if sn.EnableDHCP == wasDHCP {
		return sn, nil
	}
	net, err := rq.s.getNetwork(tx, sn.NetworkID, nil)
	if err != nil {
		return nil, fmt.Errorf("subnet %s: network %s: %w", sn.ID, sn.NetworkID, err)
	}
	return sn, rq.syncDHCPPort(tx, net)
}

func (s *Server) deleteSubnet(rq *request, tx Tx, id string) error {
	sn, err := rq.loadSubnet(tx, id)
	if err != nil {
		return err
	}
	if err := rq.mustOwn(sn.ProjectID, "delete_subnet"); err != nil {
		return err
	}
	var net Network
	if err := getObj(tx, KindNetwork, sn.NetworkID, &net, nil); err != nil {
		return fmt.Errorf("subnet %s: network %s: %w", id, sn.NetworkID, err)
	}
	if i := slices.Index(net.Subnets, id); i >= 0 {
		net.Subnets = slices.Delete(net.Subnets, i, i+1)
	}
	// The DHCP port's address on the subnet goes with it (the port too with the last
	// DHCP subnet), as Neutron's DHCP agent lets go of it; other ports keep it in use.
	if err := rq.syncDHCPPort(tx, &net); err != nil {
		return err
	}
	inUse := false
	if err := tx.Claims(claimIPs, id+"/", "", func(string, string) bool { inUse = true; return false }); err != nil {
		return err
	} else if inUse {
		return conflict("SubnetInUse", "Unable to complete operation on subnet %s: One or more ports have an IP allocation from this subnet.", id)
	}
	net.touch(rq.now)
	if err := save(tx, KindNetwork, net.ID, &net); err != nil {
		return err
	}
	return tx.Delete(KindSubnet, id)
}
