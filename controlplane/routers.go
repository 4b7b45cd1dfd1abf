package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
)

func (s *Server) routerCollection() *collection {
	return &collection{
		name: "routers", member: "router", plural: "routers", kind: KindRouter,
		notFound: "RouterNotFound", label: "Router", attrs: attrNames(Router{}),
		strip:   []string{"gw_port_id"},
		indexes: []string{"project_id"},
		newObj:  func() storable { return &Router{} },
		visible: func(rq *request, _ *lookup, m rawObj) bool { return rq.c.owns(str(m, "project_id")) },
		create:  s.createRouter,
		update:  s.updateRouter,
		del:     s.deleteRouter,
		actions: map[string]func(*request, Tx, string, *attrs) (any, error){
			"add_router_interface":    s.addRouterInterface,
			"remove_router_interface": s.removeRouterInterface,
		},
	}
}

func (rq *request) loadRouter(tx ReadTx, id string) (*Router, error) {
	var r Router
	nf := notFound("RouterNotFound", "Router %s could not be found", id)
	if err := getObj(tx, KindRouter, id, &r, nf); err != nil {
		return nil, err
	}
	if !rq.c.owns(r.ProjectID) {
		return nil, nf
	}
	return &r, nil
}

const maxRoutes = 30

func (s *Server) createRouter(rq *request, tx Tx, a *attrs) (any, error) {
	r := &Router{
		ID: newID(), AdminStateUp: true, Status: "ACTIVE", Routes: []Route{}, AvailabilityZoneHints: []string{},
		AvailabilityZones: []string{}, Tags: []string{}, CreatedAt: rq.now, UpdatedAt: rq.now, RevisionNumber: 1,
	}
	if err := a.forbid("id", "status", "routes", "revision_number", "created_at", "updated_at", "availability_zones", "gw_port_id"); err != nil {
		return nil, err
	}
	project, err := rq.project(a)
	if err != nil {
		return nil, err
	}
	r.ProjectID, r.TenantID = project, project
	if err := routerCommonAttrs(a, r); err != nil {
		return nil, err
	}
	if _, err := a.strList("availability_zone_hints", &r.AvailabilityZoneHints, 16); err != nil {
		return nil, err
	}
	for _, k := range []string{"distributed", "ha"} {
		var b bool
		if has, err := a.boolean(k, &b); err != nil {
			return nil, err
		} else if has && b {
			return nil, invalidAttr(k, "offlane routers are neither distributed nor HA; omit %s or set it false", k)
		}
	}
	gw, hasGW, err := parseGatewayInfo(rq, a)
	if err != nil {
		return nil, err
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	if hasGW && gw != nil {
		if err := rq.setGateway(tx, r, gw); err != nil {
			return nil, err
		}
	}
	return r, save(tx, KindRouter, r.ID, r)
}

func routerCommonAttrs(a *attrs, r *Router) error {
	if _, err := a.str("name", &r.Name, maxNameLen); err != nil {
		return err
	}
	if _, err := a.str("description", &r.Description, maxNameLen); err != nil {
		return err
	}
	_, err := a.boolean("admin_state_up", &r.AdminStateUp)
	return err
}

// gatewayRequest is a decoded external_gateway_info.
type gatewayRequest struct {
	networkID string
	snat      *bool
	ips       []ipRequest
	hasIPs    bool
}

func parseGatewayInfo(rq *request, a *attrs) (*gatewayRequest, bool, error) {
	raw, ok := a.raw("external_gateway_info")
	if !ok {
		return nil, false, nil
	}
	if isNull(raw) {
		return nil, true, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, true, invalidAttr("external_gateway_info", "'%s' is not a dictionary", shortRaw(raw))
	}
	if len(m) == 0 {
		return nil, true, nil
	}
	ga := &attrs{m: m, used: map[string]bool{}, method: a.method}
	g := &gatewayRequest{}
	if _, err := ga.str("network_id", &g.networkID, 64); err != nil {
		return nil, true, err
	}
	if g.networkID == "" {
		return nil, true, invalidAttr("external_gateway_info", "network_id is required")
	}
	var snat bool
	if has, err := ga.boolean("enable_snat", &snat); err != nil {
		return nil, true, err
	} else if has {
		if !rq.c.admin {
			return nil, true, forbidden("create_router:external_gateway_info:enable_snat")
		}
		g.snat = &snat
	}
	ipa := &attrs{m: map[string]json.RawMessage{}, used: map[string]bool{}}
	if v, ok := ga.raw("external_fixed_ips"); ok {
		ipa.m["fixed_ips"] = v
		reqs, has, err := parseFixedIPs(ipa)
		if err != nil {
			return nil, true, invalidAttr("external_gateway_info", "external_fixed_ips: %v", err)
		}
		if has && !rq.c.admin {
			return nil, true, forbidden("create_router:external_gateway_info:external_fixed_ips")
		}
		g.ips, g.hasIPs = reqs, has
	}
	if err := ga.done(); err != nil {
		return nil, true, invalidAttr("external_gateway_info", "%v", err)
	}
	return g, true, nil
}

// setGateway plugs the router into an external network: a gateway port with an address
// from the external subnets.
func (rq *request) setGateway(tx Tx, r *Router, g *gatewayRequest) error {
	net, err := rq.loadNetwork(tx, g.networkID)
	if err != nil {
		return err
	}
	if !net.External {
		return badRequest("Bad router request: Network %s is not an external network.", net.ID)
	}
	if len(net.Subnets) == 0 {
		return badRequest("Bad router request: external network %s has no subnet to take the gateway address from.", net.ID)
	}
	p := &Port{
		ID: newID(), NetworkID: net.ID, AdminStateUp: true, Status: "DOWN", DeviceID: r.ID, DeviceOwner: OwnerRouterGateway,
		SecurityGroups: []string{}, AllowedAddressPairs: []AddressPair{}, VNICType: VNICNormal, Profile: map[string]any{},
		VIFType: "unbound", VIFDetails: map[string]any{}, Tags: []string{}, CreatedAt: rq.now, UpdatedAt: rq.now, RevisionNumber: 1,
	}
	if p.MACAddress, err = generateMAC(tx, net.ID, p.ID); err != nil {
		return err
	}
	if p.FixedIPs, err = rq.allocateIPs(tx, net, p, g.ips, g.hasIPs); err != nil {
		return err
	}
	if err := save(tx, KindPort, p.ID, p); err != nil {
		return err
	}
	snat := true
	if g.snat != nil {
		snat = *g.snat
	}
	r.ExternalGatewayInfo = &GatewayInfo{NetworkID: net.ID, EnableSNAT: snat, ExternalFixedIPs: p.FixedIPs}
	r.GatewayPortID = p.ID
	return nil
}

// clearGateway removes the gateway port, refusing while floating IPs route through it.
func (rq *request) clearGateway(tx Tx, r *Router) error {
	if r.ExternalGatewayInfo == nil {
		return nil
	}
	if c, err := tx.Count(KindFloatingIP, "router_id", r.ID); err != nil {
		return err
	} else if c > 0 {
		return conflict("RouterExternalGatewayInUseByFloatingIp", "Gateway cannot be updated for router %s, since a gateway to external network %s is required by one or more floating IPs.", r.ID, r.ExternalGatewayInfo.NetworkID)
	}
	var p Port
	if err := getObj(tx, KindPort, r.GatewayPortID, &p, nil); err == nil {
		if err := removePort(tx, &p); err != nil {
			return err
		}
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	r.ExternalGatewayInfo, r.GatewayPortID = nil, ""
	return nil
}

func (s *Server) updateRouter(rq *request, tx Tx, id string, a *attrs) (any, error) {
	r, err := rq.loadRouter(tx, id)
	if err != nil {
		return nil, err
	}
	if err := rq.mustOwn(r.ProjectID, "update_router"); err != nil {
		return nil, err
	}
	if err := a.forbid("id", "status", "project_id", "tenant_id", "revision_number", "created_at", "updated_at", "availability_zones", "availability_zone_hints", "distributed", "ha", "gw_port_id"); err != nil {
		return nil, err
	}
	if err := routerCommonAttrs(a, r); err != nil {
		return nil, err
	}
	gw, hasGW, err := parseGatewayInfo(rq, a)
	if err != nil {
		return nil, err
	}
	routes, hasRoutes, err := a.objList("routes")
	if err != nil {
		return nil, err
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	if hasGW {
		switch {
		case gw == nil:
			if err := rq.clearGateway(tx, r); err != nil {
				return nil, err
			}
		case r.ExternalGatewayInfo != nil && r.ExternalGatewayInfo.NetworkID == gw.networkID && !gw.hasIPs:
			if gw.snat != nil {
				r.ExternalGatewayInfo.EnableSNAT = *gw.snat
			}
		default:
			if r.ExternalGatewayInfo != nil && r.ExternalGatewayInfo.NetworkID != gw.networkID {
				if err := rq.clearGateway(tx, r); err != nil {
					return nil, err
				}
			} else if r.ExternalGatewayInfo != nil {
				// Same network, new addresses: replace the port.
				var p Port
				if err := getObj(tx, KindPort, r.GatewayPortID, &p, nil); err == nil {
					if err := removePort(tx, &p); err != nil {
						return nil, err
					}
				}
				r.ExternalGatewayInfo, r.GatewayPortID = nil, ""
			}
			if err := rq.setGateway(tx, r, gw); err != nil {
				return nil, err
			}
		}
	}
	if hasRoutes {
		if len(routes) > maxRoutes {
			return nil, newErr(http.StatusBadRequest, "RoutesExhausted", "Unable to complete operation for %s. The number of routes exceeds the maximum %d.", r.ID, maxRoutes)
		}
		connected, err := routerSubnets(tx, r)
		if err != nil {
			return nil, err
		}
		out := []Route{}
		for _, raw := range routes {
			hr, err := parseRoute("routes", raw)
			if err != nil {
				return nil, err
			}
			rt := Route(hr)
			nh := netip.MustParseAddr(rt.NextHop)
			if !slices.ContainsFunc(connected, func(p netip.Prefix) bool { return p.Contains(nh) }) {
				return nil, newErr(http.StatusBadRequest, "InvalidRoutes", "Invalid format for routes: %s, the nexthop is not connected with router", rt.NextHop)
			}
			if slices.Contains(out, rt) {
				return nil, newErr(http.StatusBadRequest, "InvalidRoutes", "Invalid format for routes: %s via %s is duplicated", rt.Destination, rt.NextHop)
			}
			out = append(out, rt)
		}
		r.Routes = out
	}
	r.touch(rq.now)
	return r, save(tx, KindRouter, r.ID, r)
}

// routerPorts returns the router's interface ports.
func routerPorts(tx ReadTx, routerID string) ([]*Port, error) {
	var out []*Port
	err := tx.ListBy(KindPort, "device_id", routerID, func(_ string, v []byte) error {
		var p Port
		if err := json.Unmarshal(v, &p); err != nil {
			return err
		}
		if p.DeviceOwner == OwnerRouterInterface {
			out = append(out, &p)
		}
		return nil
	})
	return out, err
}

// routerSubnets are the prefixes of the subnets the router is connected to.
func routerSubnets(tx ReadTx, r *Router) ([]netip.Prefix, error) {
	var out []netip.Prefix
	ports, err := routerPorts(tx, r.ID)
	if err != nil {
		return nil, err
	}
	var ips []FixedIP
	for _, p := range ports {
		ips = append(ips, p.FixedIPs...)
	}
	if r.ExternalGatewayInfo != nil {
		ips = append(ips, r.ExternalGatewayInfo.ExternalFixedIPs...)
	}
	for _, ip := range ips {
		var sn Subnet
		if err := getObj(tx, KindSubnet, ip.SubnetID, &sn, nil); err != nil {
			return nil, fmt.Errorf("router %s: subnet %s: %w", r.ID, ip.SubnetID, err)
		}
		out = append(out, subnetPrefix(&sn))
	}
	return out, nil
}

func (s *Server) deleteRouter(rq *request, tx Tx, id string) error {
	r, err := rq.loadRouter(tx, id)
	if err != nil {
		return err
	}
	if err := rq.mustOwn(r.ProjectID, "delete_router"); err != nil {
		return err
	}
	ports, err := routerPorts(tx, id)
	if err != nil {
		return err
	}
	if len(ports) > 0 {
		return conflict("RouterInUse", "Router %s still has ports", id)
	}
	if err := rq.clearGateway(tx, r); err != nil {
		return err
	}
	return tx.Delete(KindRouter, id)
}

// interfaceInfo is the answer of add/remove_router_interface.
func interfaceInfo(r *Router, p *Port, subnetID string) map[string]any {
	ids := []string{}
	for _, ip := range p.FixedIPs {
		if !slices.Contains(ids, ip.SubnetID) {
			ids = append(ids, ip.SubnetID)
		}
	}
	if subnetID == "" && len(ids) > 0 {
		subnetID = ids[0]
	}
	return map[string]any{
		"id": r.ID, "tenant_id": r.ProjectID, "project_id": r.ProjectID, "port_id": p.ID,
		"network_id": p.NetworkID, "subnet_id": subnetID, "subnet_ids": ids,
	}
}

func interfaceAttrs(a *attrs) (subnetID, portID string, err error) {
	if _, err := a.str("subnet_id", &subnetID, 64); err != nil {
		return "", "", err
	}
	if _, err := a.str("port_id", &portID, 64); err != nil {
		return "", "", err
	}
	if err := a.done(); err != nil {
		return "", "", err
	}
	return subnetID, portID, nil
}

func (s *Server) addRouterInterface(rq *request, tx Tx, id string, a *attrs) (any, error) {
	r, err := rq.loadRouter(tx, id)
	if err != nil {
		return nil, err
	}
	if err := rq.mustOwn(r.ProjectID, "add_router_interface"); err != nil {
		return nil, err
	}
	subnetID, portID, err := interfaceAttrs(a)
	if err != nil {
		return nil, err
	}
	switch {
	case subnetID != "" && portID != "":
		return nil, badRequest("Bad router request: Cannot specify both subnet-id and port-id.")
	case subnetID == "" && portID == "":
		return nil, badRequest("Bad router request: Either subnet_id or port_id must be specified.")
	}
	existing, err := routerSubnets(tx, r)
	if err != nil {
		return nil, err
	}
	overlap := func(sn *Subnet) error {
		pf := subnetPrefix(sn)
		for _, e := range existing {
			if e == pf {
				return badRequest("Bad router request: Router already has a port on subnet %s.", sn.ID)
			}
			if e.Overlaps(pf) {
				return badRequest("Bad router request: Cidr %s of subnet %s overlaps with cidr %s of a subnet already on router %s.", pf, sn.ID, e, r.ID)
			}
		}
		return nil
	}
	if portID != "" {
		p, err := rq.loadPort(tx, portID)
		if err != nil {
			return nil, err
		}
		if !rq.c.owns(p.ProjectID) {
			return nil, notFound("PortNotFound", "Port %s could not be found.", portID)
		}
		if p.DeviceID != "" || p.DeviceOwner != "" && p.DeviceOwner != OwnerRouterInterface {
			return nil, conflict("PortInUse", "Unable to complete operation on port %s for network %s. Port already has an attached device %s.", p.ID, p.NetworkID, p.DeviceID)
		}
		if len(p.FixedIPs) == 0 {
			return nil, badRequest("Bad router request: Router port must have at least one fixed IP.")
		}
		v4 := 0
		for _, ip := range p.FixedIPs {
			sn, err := rq.loadSubnet(tx, ip.SubnetID)
			if err != nil {
				return nil, err
			}
			if sn.IPVersion == 4 {
				v4++
			}
			if err := overlap(sn); err != nil {
				return nil, err
			}
		}
		if v4 > 1 {
			return nil, badRequest("Bad router request: Cannot have multiple IPv4 subnets on router port.")
		}
		p.DeviceID, p.DeviceOwner = r.ID, OwnerRouterInterface
		p.SecurityGroups, p.PortSecurityEnabled, p.AllowedAddressPairs = []string{}, false, []AddressPair{}
		p.touch(rq.now)
		if err := save(tx, KindPort, p.ID, p); err != nil {
			return nil, err
		}
		r.touch(rq.now)
		return interfaceInfo(r, p, ""), save(tx, KindRouter, r.ID, r)
	}
	sn, err := rq.loadSubnet(tx, subnetID)
	if err != nil {
		return nil, err
	}
	net, err := rq.loadNetwork(tx, sn.NetworkID)
	if err != nil {
		return nil, err
	}
	if !rq.c.owns(sn.ProjectID) && !net.Shared {
		return nil, notFound("SubnetNotFound", "Subnet %s could not be found.", subnetID)
	}
	if net.External {
		return nil, badRequest("Bad router request: Router interfaces cannot be on an external network (%s); set it as the router's gateway instead.", net.ID)
	}
	if sn.GatewayIP == nil {
		return nil, badRequest("Bad router request: Subnet for router interface must have a gateway IP.")
	}
	if err := overlap(sn); err != nil {
		return nil, err
	}
	p := &Port{
		ID: newID(), ProjectID: r.ProjectID, TenantID: r.ProjectID, NetworkID: net.ID, AdminStateUp: true, Status: "DOWN",
		DeviceID: r.ID, DeviceOwner: OwnerRouterInterface, SecurityGroups: []string{}, AllowedAddressPairs: []AddressPair{},
		VNICType: VNICNormal, Profile: map[string]any{}, VIFType: "unbound", VIFDetails: map[string]any{}, Tags: []string{},
		CreatedAt: rq.now, UpdatedAt: rq.now, RevisionNumber: 1,
	}
	if p.MACAddress, err = generateMAC(tx, net.ID, p.ID); err != nil {
		return nil, err
	}
	gw := netip.MustParseAddr(*sn.GatewayIP)
	if p.FixedIPs, err = rq.allocateIPs(tx, net, p, []ipRequest{{subnetID: sn.ID, ip: gw}}, true); err != nil {
		return nil, err
	}
	if err := save(tx, KindPort, p.ID, p); err != nil {
		return nil, err
	}
	r.touch(rq.now)
	return interfaceInfo(r, p, sn.ID), save(tx, KindRouter, r.ID, r)
}

func (s *Server) removeRouterInterface(rq *request, tx Tx, id string, a *attrs) (any, error) {
	r, err := rq.loadRouter(tx, id)
	if err != nil {
		return nil, err
	}
	if err := rq.mustOwn(r.ProjectID, "remove_router_interface"); err != nil {
		return nil, err
	}
	subnetID, portID, err := interfaceAttrs(a)
	if err != nil {
		return nil, err
	}
	if subnetID == "" && portID == "" {
		return nil, badRequest("Bad router request: Either subnet_id or port_id must be specified.")
	}
	ports, err := routerPorts(tx, r.ID)
	if err != nil {
		return nil, err
	}
	var p *Port
	for _, c := range ports {
		hasSubnet := slices.ContainsFunc(c.FixedIPs, func(f FixedIP) bool { return f.SubnetID == subnetID })
		if (portID == "" || c.ID == portID) && (subnetID == "" || hasSubnet) {
			p = c
			break
		}
	}
	if p == nil {
		if portID != "" {
			return nil, notFound("RouterInterfaceNotFound", "Router %s does not have an interface with id %s", r.ID, portID)
		}
		return nil, notFound("RouterInterfaceNotFoundForSubnet", "Router %s has no interface on subnet %s", r.ID, subnetID)
	}
	// Refuse while floating IPs or extra routes need this interface.
	var fipErr error
	err = tx.ListBy(KindFloatingIP, "router_id", r.ID, func(_ string, v []byte) error {
		var f FloatingIP
		if err := json.Unmarshal(v, &f); err != nil {
			return err
		}
		var fp Port
		if f.PortID == nil || getObj(tx, KindPort, *f.PortID, &fp, nil) != nil {
			return nil
		}
		for _, ip := range fp.FixedIPs {
			if f.FixedIPAddress != nil && ip.IPAddress == *f.FixedIPAddress && slices.ContainsFunc(p.FixedIPs, func(x FixedIP) bool { return x.SubnetID == ip.SubnetID }) {
				fipErr = conflict("RouterInterfaceInUseByFloatingIP", "Router interface for subnet %s on router %s cannot be deleted, as it is required by one or more floating IPs.", ip.SubnetID, r.ID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if fipErr != nil {
		return nil, fipErr
	}
	for _, ip := range p.FixedIPs {
		var sn Subnet
		if err := getObj(tx, KindSubnet, ip.SubnetID, &sn, nil); err != nil {
			return nil, fmt.Errorf("port %s: subnet %s: %w", p.ID, ip.SubnetID, err)
		}
		pf := subnetPrefix(&sn)
		for _, rt := range r.Routes {
			if pf.Contains(netip.MustParseAddr(rt.NextHop)) {
				return nil, conflict("RouterInterfaceInUseByRoute", "Router interface for subnet %s on router %s cannot be deleted, as it is required by one or more routes.", sn.ID, r.ID)
			}
		}
	}
	info := interfaceInfo(r, p, subnetID)
	if err := removePort(tx, p); err != nil {
		return nil, err
	}
	r.touch(rq.now)
	return info, save(tx, KindRouter, r.ID, r)
}
