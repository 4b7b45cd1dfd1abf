package controlplane

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
)

func (s *Server) floatingIPCollection() *collection {
	return &collection{
		name: "floatingips", member: "floatingip", plural: "floatingips", kind: KindFloatingIP,
		notFound: "FloatingIPNotFound", label: "Floating IP", attrs: attrNames(FloatingIP{}),
		strip:   []string{"fip_port_id"},
		indexes: []string{"port_id", "router_id", "floating_network_id", "project_id"},
		newObj:  func() storable { return &FloatingIP{} },
		visible: func(rq *request, _ *lookup, m rawObj) bool { return rq.c.owns(str(m, "project_id")) },
		create:  s.createFloatingIP,
		update:  s.updateFloatingIP,
		del:     s.deleteFloatingIP,
	}
}

func (rq *request) loadFloatingIP(tx ReadTx, id string) (*FloatingIP, error) {
	var f FloatingIP
	nf := notFound("FloatingIPNotFound", "Floating IP %s could not be found", id)
	if err := getObj(tx, KindFloatingIP, id, &f, nf); err != nil {
		return nil, err
	}
	if !rq.c.owns(f.ProjectID) {
		return nil, nf
	}
	return &f, nil
}

func (s *Server) createFloatingIP(rq *request, tx Tx, a *attrs) (any, error) {
	f := &FloatingIP{ID: newID(), Status: "DOWN", Tags: []string{}, CreatedAt: rq.now, UpdatedAt: rq.now, RevisionNumber: 1}
	if err := a.forbid("id", "status", "router_id", "revision_number", "created_at", "updated_at", "fip_port_id"); err != nil {
		return nil, err
	}
	project, err := rq.project(a)
	if err != nil {
		return nil, err
	}
	f.ProjectID, f.TenantID = project, project
	if _, err := a.str("floating_network_id", &f.FloatingNetworkID, 64); err != nil {
		return nil, err
	}
	if f.FloatingNetworkID == "" {
		return nil, badRequest("Failed to parse request. Required attribute 'floating_network_id' not specified")
	}
	if _, err := a.str("description", &f.Description, maxNameLen); err != nil {
		return nil, err
	}
	var subnetID, addr string
	if _, err := a.str("subnet_id", &subnetID, 64); err != nil {
		return nil, err
	}
	hasAddr, err := a.str("floating_ip_address", &addr, 64)
	if err != nil {
		return nil, err
	}
	var ip netip.Addr
	if hasAddr {
		if !rq.c.admin {
			return nil, forbidden("create_floatingip:floating_ip_address")
		}
		if ip, err = netip.ParseAddr(addr); err != nil || !ip.Is4() {
			return nil, invalidAttr("floating_ip_address", "'%s' is not a valid IPv4 address", shortStr(addr))
		}
	}
	var portID, fixed *string
	if _, err := a.optStr("port_id", &portID, 64, true); err != nil {
		return nil, err
	}
	if _, err := a.optStr("fixed_ip_address", &fixed, 64, true); err != nil {
		return nil, err
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	net, err := rq.loadNetwork(tx, f.FloatingNetworkID)
	var ae *apiError
	if err != nil && (!errors.As(err, &ae) || ae.Status != http.StatusNotFound) {
		return nil, err
	}
	if err != nil || !net.External {
		return nil, badRequest("Bad floatingip request: Network %s is not a valid external network.", f.FloatingNetworkID)
	}
	// The address lives on a port of the external network, as in Neutron.
	p := &Port{
		ID: newID(), NetworkID: net.ID, AdminStateUp: true, Status: "N/A", DeviceID: f.ID, DeviceOwner: OwnerFloatingIP,
		SecurityGroups: []string{}, AllowedAddressPairs: []AddressPair{}, VNICType: VNICNormal, Profile: map[string]any{},
		VIFType: "unbound", VIFDetails: map[string]any{}, Tags: []string{}, CreatedAt: rq.now, UpdatedAt: rq.now, RevisionNumber: 1,
	}
	if p.MACAddress, err = generateMAC(tx, net.ID, p.ID); err != nil {
		return nil, err
	}
	var reqs []ipRequest
	switch {
	case hasAddr:
		reqs = []ipRequest{{subnetID: subnetID, ip: ip}}
	case subnetID != "":
		reqs = []ipRequest{{subnetID: subnetID}}
	default:
		// One IPv4 address from the first external subnet with room.
		for _, sid := range net.Subnets {
			var sn Subnet
			if err := getObj(tx, KindSubnet, sid, &sn, nil); err != nil {
				return nil, err
			}
			if sn.IPVersion != 4 {
				continue
			}
			a, err := s.allocateNext(tx, &sn, p.ID)
			if errors.Is(err, errPoolExhausted) {
				continue
			} else if err != nil {
				return nil, err
			}
			p.FixedIPs = []FixedIP{{SubnetID: sn.ID, IPAddress: a.String()}}
			break
		}
		if len(p.FixedIPs) == 0 {
			return nil, conflict("IpAddressGenerationFailure", "No more IP addresses available on network %s.", net.ID)
		}
	}
	if reqs != nil {
		if p.FixedIPs, err = rq.allocateIPs(tx, net, p, reqs, true); err != nil {
			return nil, err
		}
		if !netip.MustParseAddr(p.FixedIPs[0].IPAddress).Is4() {
			return nil, badRequest("Bad floatingip request: floating IPs are IPv4; subnet %s is IPv6.", p.FixedIPs[0].SubnetID)
		}
	}
	f.FloatingIPAddress = p.FixedIPs[0].IPAddress
	f.FloatingPortID = p.ID
	if err := save(tx, KindPort, p.ID, p); err != nil {
		return nil, err
	}
	if portID != nil {
		if err := rq.associate(tx, f, *portID, fixed); err != nil {
			return nil, err
		}
	} else if fixed != nil {
		return nil, badRequest("Bad floatingip request: fixed_ip_address needs a port_id.")
	}
	return f, save(tx, KindFloatingIP, f.ID, f)
}

// associate points the floating IP at a port's fixed IPv4 address, through the router
// that connects the port's subnet to the floating network.
func (rq *request) associate(tx Tx, f *FloatingIP, portID string, fixed *string) error {
	p, err := rq.loadPort(tx, portID)
	if err != nil {
		return err
	}
	if !rq.c.admin && p.ProjectID != f.ProjectID {
		return notFound("PortNotFound", "Port %s could not be found.", portID)
	}
	var v4 []FixedIP
	for _, ip := range p.FixedIPs {
		if netip.MustParseAddr(ip.IPAddress).Is4() {
			v4 = append(v4, ip)
		}
	}
	var chosen *FixedIP
	switch {
	case fixed != nil:
		for i := range v4 {
			if v4[i].IPAddress == *fixed {
				chosen = &v4[i]
			}
		}
		if chosen == nil {
			return badRequest("Bad floatingip request: Port %s does not have fixed ip %s.", portID, *fixed)
		}
	case len(v4) == 0:
		return badRequest("Bad floatingip request: Cannot add floating IP to port %s that has no fixed IPv4 addresses.", portID)
	case len(v4) > 1:
		return badRequest("Bad floatingip request: Port %s has multiple fixed IPv4 addresses. Must provide a specific IPv4 address when assigning a floating IP.", portID)
	default:
		chosen = &v4[0]
	}
	if p.DeviceOwner == OwnerRouterGateway || p.DeviceOwner == OwnerFloatingIP || p.DeviceOwner == OwnerRouterInterface {
		return badRequest("Bad floatingip request: Port %s is a %s port and cannot have a floating IP.", portID, p.DeviceOwner)
	}
	var dup error
	err = tx.ListBy(KindFloatingIP, "port_id", portID, func(_ string, v []byte) error {
		var o FloatingIP
		if err := json.Unmarshal(v, &o); err != nil {
			return err
		}
		if o.ID != f.ID && o.FixedIPAddress != nil && *o.FixedIPAddress == chosen.IPAddress {
			dup = conflict("FloatingIPPortAlreadyAssociated", "Cannot associate floating IP %s (%s) with port %s using fixed IP %s, as that fixed IP already has a floating IP on external network %s.", f.FloatingIPAddress, f.ID, portID, chosen.IPAddress, o.FloatingNetworkID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if dup != nil {
		return dup
	}
	routerID := ""
	err = tx.ListBy(KindPort, "router_subnet", chosen.SubnetID, func(_ string, v []byte) error {
		var rp Port
		if err := json.Unmarshal(v, &rp); err != nil {
			return err
		}
		if rp.DeviceOwner != OwnerRouterInterface || routerID != "" {
			return nil
		}
		var r Router
		if err := getObj(tx, KindRouter, rp.DeviceID, &r, nil); err != nil {
			return nil
		}
		if r.ExternalGatewayInfo != nil && r.ExternalGatewayInfo.NetworkID == f.FloatingNetworkID {
			routerID = r.ID
		}
		return nil
	})
	if err != nil {
		return err
	}
	if routerID == "" {
		return notFound("ExternalGatewayForFloatingIPNotFound", "External network %s is not reachable from subnet %s. Therefore, cannot associate Port %s with a Floating IP.", f.FloatingNetworkID, chosen.SubnetID, portID)
	}
	f.PortID, f.FixedIPAddress, f.RouterID = &p.ID, &chosen.IPAddress, &routerID
	return nil
}

func (s *Server) updateFloatingIP(rq *request, tx Tx, id string, a *attrs) (any, error) {
	f, err := rq.loadFloatingIP(tx, id)
	if err != nil {
		return nil, err
	}
	if err := rq.mustOwn(f.ProjectID, "update_floatingip"); err != nil {
		return nil, err
	}
	if err := a.forbid("id", "status", "router_id", "floating_network_id", "floating_ip_address", "subnet_id", "project_id", "tenant_id", "revision_number", "created_at", "updated_at", "fip_port_id"); err != nil {
		return nil, err
	}
	if _, err := a.str("description", &f.Description, maxNameLen); err != nil {
		return nil, err
	}
	var portID, fixed *string
	hasPort, err := a.optStr("port_id", &portID, 64, true)
	if err != nil {
		return nil, err
	}
	hasFixed, err := a.optStr("fixed_ip_address", &fixed, 64, true)
	if err != nil {
		return nil, err
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	switch {
	case hasPort && portID == nil:
		f.PortID, f.FixedIPAddress, f.RouterID = nil, nil, nil
	case hasPort:
		if err := rq.associate(tx, f, *portID, fixed); err != nil {
			return nil, err
		}
	case hasFixed && f.PortID != nil:
		if err := rq.associate(tx, f, *f.PortID, fixed); err != nil {
			return nil, err
		}
	case hasFixed && fixed != nil:
		return nil, badRequest("Bad floatingip request: fixed_ip_address needs a port_id.")
	}
	f.touch(rq.now)
	return f, save(tx, KindFloatingIP, f.ID, f)
}

func (s *Server) deleteFloatingIP(rq *request, tx Tx, id string) error {
	f, err := rq.loadFloatingIP(tx, id)
	if err != nil {
		return err
	}
	if err := rq.mustOwn(f.ProjectID, "delete_floatingip"); err != nil {
		return err
	}
	var p Port
	if err := getObj(tx, KindPort, f.FloatingPortID, &p, nil); err == nil {
		if err := removePort(tx, &p); err != nil {
			return err
		}
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	return tx.Delete(KindFloatingIP, id)
}
