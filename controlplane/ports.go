package controlplane

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

func (s *Server) portCollection() *collection {
	return &collection{
		name: "ports", member: "port", plural: "ports", kind: KindPort,
		notFound: "PortNotFound", label: "Port", attrs: attrNames(Port{}),
		hidden:  []string{"binding:host_id", "binding:profile", "binding:vif_type", "binding:vif_details"},
		indexes: []string{"network_id", "device_id", "binding:host_id", "project_id", "qos_policy_id"},
		newObj:  func() storable { return &Port{} },
		visible: func(rq *request, lk *lookup, m rawObj) bool {
			return rq.canSeePort(lk, str(m, "project_id"), str(m, "network_id"))
		},
		create: s.createPort,
		update: s.updatePort,
		del:    s.deletePort,
	}
}

// canSeePort: admin, the port's owner, or the owner of its network.
func (rq *request) canSeePort(lk *lookup, project, networkID string) bool {
	if rq.c.owns(project) {
		return true
	}
	n := lk.network(networkID)
	return n != nil && rq.c.owns(n.ProjectID)
}

func (rq *request) loadPort(tx ReadTx, id string) (*Port, error) {
	var p Port
	nf := notFound("PortNotFound", "Port %s could not be found.", id)
	if err := getObj(tx, KindPort, id, &p, nf); err != nil {
		return nil, err
	}
	if !rq.canSeePort(rq.lookup(tx), p.ProjectID, p.NetworkID) {
		return nil, nf
	}
	return &p, nil
}

var vnicTypes = []string{VNICNormal, VNICDirect, VNICDirectPhysical, VNICVirtioForwarder, VNICVDPA, VNICVhostUser}

const maxAddressPairs = 10

// ipRequest is one entry of a port's requested fixed_ips.
type ipRequest struct {
	subnetID string
	ip       netip.Addr
}

func parseFixedIPs(a *attrs) ([]ipRequest, bool, error) {
	l, has, err := a.objList("fixed_ips")
	if err != nil || !has {
		return nil, has, err
	}
	var out []ipRequest
	for _, e := range l {
		var r ipRequest
		for k := range e {
			if k != "subnet_id" && k != "ip_address" {
				return nil, true, invalidAttr("fixed_ips", "unexpected key '%s' (want subnet_id and/or ip_address)", shortStr(k))
			}
		}
		sid, _, err := subStr("fixed_ips", e, "subnet_id")
		if err != nil {
			return nil, true, err
		}
		ip, hasIP, err := subStr("fixed_ips", e, "ip_address")
		if err != nil {
			return nil, true, err
		}
		r.subnetID = sid
		if hasIP {
			if r.ip, err = netip.ParseAddr(ip); err != nil || r.ip.Zone() != "" {
				return nil, true, invalidAttr("fixed_ips", "'%s' is not a valid IP address", shortStr(ip))
			}
		}
		if sid == "" && !hasIP {
			return nil, true, invalidAttr("fixed_ips", "each entry needs subnet_id and/or ip_address")
		}
		if slices.Contains(out, r) && r.ip.IsValid() {
			return nil, true, invalidAttr("fixed_ips", "Duplicate IP address '%s'", r.ip)
		}
		out = append(out, r)
	}
	return out, true, nil
}

func isRouterOwner(owner string) bool {
	return strings.HasPrefix(owner, "network:router_") || owner == OwnerRouterGateway
}

// allocateIPs claims the port's addresses: the requested ones, or by default one from
// the first IPv4 subnet with room, one from the first stateful IPv6 subnet with room, and
// an EUI-64 address on every SLAAC subnet (Neutron's behaviour).
func (rq *request) allocateIPs(tx Tx, net *Network, p *Port, reqs []ipRequest, explicit bool) ([]FixedIP, error) {
	subnets := make([]*Subnet, 0, len(net.Subnets))
	for _, id := range net.Subnets {
		sn, err := rq.s.getSubnet(tx, id, nil)
		if err != nil {
			return nil, fmt.Errorf("network %s: subnet %s: %w", net.ID, id, err)
		}
		subnets = append(subnets, sn)
	}
	out := []FixedIP{}
	claim := func(sn *Subnet, ip netip.Addr) error {
		if !validHostIP(subnetPrefix(sn), ip) {
			return newErr(http.StatusBadRequest, "InvalidIpForSubnet", "IP address %s is not a valid IP for the specified subnet.", ip)
		}
		if sn.GatewayIP != nil && *sn.GatewayIP == ip.String() && !isRouterOwner(p.DeviceOwner) {
			return conflict("IpAddressInUse", "Unable to complete operation for network %s. The IP address %s is in use (it is the gateway of subnet %s).", net.ID, ip, sn.ID)
		}
		if err := tx.Claim(claimIPs, ipKey(sn.ID, ip), p.ID); errors.Is(err, ErrClaimed) {
			return conflict("IpAddressInUse", "Unable to complete operation for network %s. The IP address %s is in use.", net.ID, ip)
		} else if err != nil {
			return err
		}
		out = append(out, FixedIP{SubnetID: sn.ID, IPAddress: ip.String()})
		return nil
	}
	next := func(sn *Subnet) error {
		if slaac(sn) {
			ip, err := eui64(subnetPrefix(sn), p.MACAddress)
			if err != nil {
				return err
			}
			return claim(sn, ip)
		}
		ip, err := rq.s.allocateNext(tx, sn, p.ID)
		if errors.Is(err, errPoolExhausted) {
			return conflict("IpAddressGenerationFailure", "No more IP addresses available for subnet %s.", sn.ID)
		} else if err != nil {
			return err
		}
		out = append(out, FixedIP{SubnetID: sn.ID, IPAddress: ip.String()})
		return nil
	}
	if !explicit {
		for _, v := range []int{4, 6} {
			var tried, got bool
			for _, sn := range subnets {
				if sn.IPVersion != v || slaac(sn) {
					continue
				}
				tried = true
				err := next(sn)
				var ae *apiError
				if errors.As(err, &ae) && ae.Type == "IpAddressGenerationFailure" {
					continue
				}
				if err != nil {
					return nil, err
				}
				got = true
				break
			}
			if tried && !got {
				return nil, conflict("IpAddressGenerationFailure", "No more IP addresses available on network %s.", net.ID)
			}
		}
		for _, sn := range subnets {
			if slaac(sn) {
				if err := next(sn); err != nil {
					return nil, err
				}
			}
		}
		return out, nil
	}
	find := func(id string) *Subnet {
		for _, sn := range subnets {
			if sn.ID == id {
				return sn
			}
		}
		return nil
	}
	for _, r := range reqs {
		switch {
		case r.subnetID != "":
			sn := find(r.subnetID)
			if sn == nil {
				return nil, newErr(http.StatusBadRequest, "InvalidInput", "Invalid input for operation: Failed to create port on network %s, because fixed_ips included invalid subnet %s.", net.ID, r.subnetID)
			}
			if !r.ip.IsValid() {
				if err := next(sn); err != nil {
					return nil, err
				}
				continue
			}
			if !subnetPrefix(sn).Contains(r.ip) {
				return nil, newErr(http.StatusBadRequest, "InvalidIpForSubnet", "IP address %s is not a valid IP for the specified subnet.", r.ip)
			}
			if err := claim(sn, r.ip); err != nil {
				return nil, err
			}
		default:
			var sn *Subnet
			for _, c := range subnets {
				if subnetPrefix(c).Contains(r.ip) {
					sn = c
				}
			}
			if sn == nil {
				return nil, newErr(http.StatusBadRequest, "InvalidIpForNetwork", "IP address %s is not a valid IP for any of the subnets on the specified network.", r.ip)
			}
			if err := claim(sn, r.ip); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// releaseIPs drops the claims of addresses a port no longer has.
func releaseIPs(tx Tx, ips []FixedIP) error {
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip.IPAddress)
		if err != nil {
			return fmt.Errorf("corrupt fixed ip %q: %w", ip.IPAddress, err)
		}
		if err := tx.Release(claimIPs, ipKey(ip.SubnetID, a)); err != nil {
			return err
		}
	}
	return nil
}

// claimMAC takes mac on the network (409 MacAddressInUse).
func claimMAC(tx Tx, netID, mac, portID string) error {
	if err := tx.Claim(claimMACs, netID+"/"+mac, portID); errors.Is(err, ErrClaimed) {
		return conflict("MacAddressInUse", "Unable to complete operation for network %s. The mac address %s is in use.", netID, mac)
	} else if err != nil {
		return err
	}
	return nil
}

// generateMAC claims a random fa:16:3e:xx:xx:xx address (OpenStack's base MAC).
func generateMAC(tx Tx, netID, portID string) (string, error) {
	for range 16 {
		var b [3]byte
		_, _ = rand.Read(b[:])
		mac := fmt.Sprintf("fa:16:3e:%x:%x:%x", b[0:1], b[1:2], b[2:3])
		err := claimMAC(tx, netID, mac, portID)
		var ae *apiError
		if errors.As(err, &ae) {
			continue
		}
		return mac, err
	}
	return "", newErr(http.StatusServiceUnavailable, "MacAddressGenerationFailure", "Unable to generate unique mac on network %s.", netID)
}

func parseMACAttr(a *attrs, dst *string) (bool, error) {
	var mac string
	has, err := a.str("mac_address", &mac, 64)
	if err != nil || !has {
		return has, err
	}
	hw, err := parseMAC(strings.ToLower(mac))
	if err != nil {
		return true, invalidAttr("mac_address", "%v", err)
	}
	if hw[0]&1 == 1 || hw == [6]byte{} {
		return true, invalidAttr("mac_address", "'%s' is not a valid unicast MAC address", mac)
	}
	*dst = strings.ToLower(mac)
	return true, nil
}

func parseAddressPairs(a *attrs, mac string) ([]AddressPair, bool, error) {
	l, has, err := a.objList("allowed_address_pairs")
	if err != nil || !has {
		return nil, has, err
	}
	if len(l) > maxAddressPairs {
		return nil, true, newErr(http.StatusBadRequest, "AllowedAddressPairExhausted", "The number of allowed address pair exceeds the maximum %d.", maxAddressPairs)
	}
	out := []AddressPair{}
	for _, e := range l {
		for k := range e {
			if k != "ip_address" && k != "mac_address" {
				return nil, true, invalidAttr("allowed_address_pairs", "unexpected key '%s'", shortStr(k))
			}
		}
		ip, hasIP, err := subStr("allowed_address_pairs", e, "ip_address")
		if err != nil {
			return nil, true, err
		}
		if !hasIP {
			return nil, true, newErr(http.StatusBadRequest, "AllowedAddressPairsMissingIP", "AllowedAddressPair must contain ip_address")
		}
		if p, err := netip.ParsePrefix(ip); err == nil {
			ip = p.Masked().String()
		} else if addr, err := netip.ParseAddr(ip); err == nil && addr.Zone() == "" {
			ip = addr.String()
		} else {
			return nil, true, invalidAttr("allowed_address_pairs", "'%s' is not a valid IP address or CIDR", shortStr(ip))
		}
		m, hasMAC, err := subStr("allowed_address_pairs", e, "mac_address")
		if err != nil {
			return nil, true, err
		}
		if !hasMAC {
			m = mac
		} else if _, err := parseMAC(strings.ToLower(m)); err != nil {
			return nil, true, invalidAttr("allowed_address_pairs", "%v", err)
		}
		pair := AddressPair{IPAddress: ip, MACAddress: strings.ToLower(m)}
		if slices.Contains(out, pair) {
			return nil, true, newErr(http.StatusBadRequest, "DuplicateAddressPairInRequest", "Request contains duplicate address pair: mac_address %s ip_address %s.", pair.MACAddress, pair.IPAddress)
		}
		out = append(out, pair)
	}
	return out, true, nil
}

func (s *Server) createPort(rq *request, tx Tx, a *attrs) (any, error) {
	p := &Port{
		ID: newID(), AdminStateUp: true, Status: "DOWN", FixedIPs: []FixedIP{}, SecurityGroups: []string{},
		AllowedAddressPairs: []AddressPair{}, VNICType: VNICNormal, Profile: map[string]any{}, VIFType: "unbound",
		VIFDetails: map[string]any{}, Tags: []string{}, CreatedAt: rq.now, UpdatedAt: rq.now, RevisionNumber: 1,
	}
	if err := a.forbid("id", "status", "binding:vif_type", "binding:vif_details", "revision_number", "created_at", "updated_at"); err != nil {
		return nil, err
	}
	if _, err := a.str("network_id", &p.NetworkID, 64); err != nil {
		return nil, err
	}
	if p.NetworkID == "" {
		return nil, badRequest("Failed to parse request. Required attribute 'network_id' not specified")
	}
	net, err := rq.loadNetwork(tx, p.NetworkID)
	if err != nil {
		return nil, err
	}
	netOwner := rq.c.owns(net.ProjectID)
	if !netOwner && !net.Shared {
		return nil, forbidden("create_port:network_id")
	}
	if rq.c.readOnly {
		return nil, forbidden("create_port")
	}
	if !a.has("project_id") && !a.has("tenant_id") && rq.c.admin && rq.c.projectID == "" {
		p.ProjectID = net.ProjectID
	} else if p.ProjectID, err = rq.project(a); err != nil {
		return nil, err
	}
	p.TenantID = p.ProjectID
	if err := s.portCommonAttrs(rq, tx, a, p); err != nil {
		return nil, err
	}
	hasMAC, err := parseMACAttr(a, &p.MACAddress)
	if err != nil {
		return nil, err
	}
	if hasMAC && !netOwner {
		return nil, forbidden("create_port:mac_address")
	}
	reqs, explicitIPs, err := parseFixedIPs(a)
	if err != nil {
		return nil, err
	}
	if !netOwner && slices.ContainsFunc(reqs, func(r ipRequest) bool { return r.ip.IsValid() }) {
		return nil, forbidden("create_port:fixed_ips:ip_address")
	}
	p.PortSecurityEnabled = net.PortSecurityEnabled
	hasPS, err := a.boolean("port_security_enabled", &p.PortSecurityEnabled)
	if err != nil {
		return nil, err
	}
	if hasPS && !netOwner {
		return nil, forbidden("create_port:port_security_enabled")
	}
	var sgs []string
	hasSG, err := a.strList("security_groups", &sgs, 64)
	if err != nil {
		return nil, err
	}
	pairs, hasPairs, err := parseAddressPairs(a, "")
	if err != nil {
		return nil, err
	}
	if hasPairs && !netOwner {
		return nil, forbidden("create_port:allowed_address_pairs")
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	if hasMAC {
		if err := claimMAC(tx, net.ID, p.MACAddress, p.ID); err != nil {
			return nil, err
		}
	} else if p.MACAddress, err = generateMAC(tx, net.ID, p.ID); err != nil {
		return nil, err
	}
	for i := range pairs {
		if pairs[i].MACAddress == "" {
			pairs[i].MACAddress = p.MACAddress
		}
	}
	if p.FixedIPs, err = rq.allocateIPs(tx, net, p, reqs, explicitIPs); err != nil {
		return nil, err
	}
	hasIP := len(p.FixedIPs) > 0
	switch {
	case hasSG && len(sgs) > 0 && (!p.PortSecurityEnabled || !hasIP):
		return nil, newErr(http.StatusBadRequest, "PortSecurityAndIPRequiredForSecurityGroups", "Port security must be enabled and port must have an IP address in order to use security groups.")
	case hasSG:
		if p.SecurityGroups, err = rq.checkSecurityGroups(tx, p.ProjectID, sgs); err != nil {
			return nil, err
		}
	case p.PortSecurityEnabled && hasIP && !strings.HasPrefix(p.DeviceOwner, "network:"):
		sg, err := rq.s.ensureDefaultSG(rq, tx, p.ProjectID)
		if err != nil {
			return nil, err
		}
		p.SecurityGroups = []string{sg}
	}
	if hasPairs {
		if !p.PortSecurityEnabled && len(pairs) > 0 {
			return nil, conflict("AddressPairAndPortSecurityRequired", "Port Security must be enabled in order to have allowed address pairs on a port.")
		}
		p.AllowedAddressPairs = pairs
	}
	return p, save(tx, KindPort, p.ID, p)
}

// portCommonAttrs decodes what create and update share (not addresses or security).
func (s *Server) portCommonAttrs(rq *request, tx Tx, a *attrs, p *Port) error {
	if _, err := a.str("name", &p.Name, maxNameLen); err != nil {
		return err
	}
	if _, err := a.str("description", &p.Description, maxNameLen); err != nil {
		return err
	}
	if _, err := a.boolean("admin_state_up", &p.AdminStateUp); err != nil {
		return err
	}
	if _, err := a.str("device_id", &p.DeviceID, maxNameLen); err != nil {
		return err
	}
	if _, err := a.str("device_owner", &p.DeviceOwner, maxNameLen); err != nil {
		return err
	}
	if has, err := a.str("binding:host_id", &p.HostID, maxNameLen); err != nil {
		return err
	} else if has && !rq.c.admin {
		return forbidden("create_port:binding:host_id")
	}
	if has, err := a.str("binding:vnic_type", &p.VNICType, 64); err != nil {
		return err
	} else if has && !slices.Contains(vnicTypes, p.VNICType) {
		return invalidAttr("binding:vnic_type", "'%s' is not in %v", shortStr(p.VNICType), vnicTypes)
	}
	if has, err := a.dict("binding:profile", &p.Profile); err != nil {
		return err
	} else if has && !rq.c.admin {
		return forbidden("create_port:binding:profile")
	}
	if has, err := a.optStr("qos_policy_id", &p.QoSPolicyID, 64, true); err != nil {
		return err
	} else if has && p.QoSPolicyID != nil {
		if _, err := rq.usableQoSPolicy(tx, *p.QoSPolicyID); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) updatePort(rq *request, tx Tx, id string, a *attrs) (any, error) {
	p, err := rq.loadPort(tx, id)
	if err != nil {
		return nil, err
	}
	if err := rq.mustOwn(p.ProjectID, "update_port"); err != nil {
		return nil, err
	}
	if err := a.forbid("id", "network_id", "project_id", "tenant_id", "status", "binding:vif_type", "binding:vif_details", "revision_number", "created_at", "updated_at"); err != nil {
		return nil, err
	}
	var net Network
	if err := getObj(tx, KindNetwork, p.NetworkID, &net, nil); err != nil {
		return nil, fmt.Errorf("port %s: network %s: %w", p.ID, p.NetworkID, err)
	}
	netOwner := rq.c.owns(net.ProjectID)
	oldHost := p.HostID
	if err := s.portCommonAttrs(rq, tx, a, p); err != nil {
		return nil, err
	}
	var mac string
	if has, err := parseMACAttr(a, &mac); err != nil {
		return nil, err
	} else if has && mac != p.MACAddress {
		if !rq.c.admin {
			return nil, forbidden("update_port:mac_address")
		}
		if oldHost != "" {
			return nil, conflict("PortBound", "Unable to complete operation on port %s, port is already bound, port type: %s, old_mac %s, new_mac %s.", p.ID, p.VIFType, p.MACAddress, mac)
		}
		if err := tx.Release(claimMACs, p.NetworkID+"/"+p.MACAddress); err != nil {
			return nil, err
		}
		if err := claimMAC(tx, p.NetworkID, mac, p.ID); err != nil {
			return nil, err
		}
		p.MACAddress = mac
	}
	reqs, hasIPs, err := parseFixedIPs(a)
	if err != nil {
		return nil, err
	}
	if hasIPs && !netOwner && slices.ContainsFunc(reqs, func(r ipRequest) bool { return r.ip.IsValid() }) {
		return nil, forbidden("update_port:fixed_ips:ip_address")
	}
	if has, err := a.boolean("port_security_enabled", &p.PortSecurityEnabled); err != nil {
		return nil, err
	} else if has && !netOwner {
		return nil, forbidden("update_port:port_security_enabled")
	}
	var sgs []string
	hasSG, err := a.strList("security_groups", &sgs, 64)
	if err != nil {
		return nil, err
	}
	pairs, hasPairs, err := parseAddressPairs(a, p.MACAddress)
	if err != nil {
		return nil, err
	}
	if hasPairs && !netOwner {
		return nil, forbidden("update_port:allowed_address_pairs")
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	if hasIPs {
		// Keep addresses asked for again; release the rest; claim the new ones.
		var keep []FixedIP
		var fresh []ipRequest
		for _, r := range reqs {
			i := slices.IndexFunc(p.FixedIPs, func(f FixedIP) bool {
				return r.ip.IsValid() && f.IPAddress == r.ip.String() && (r.subnetID == "" || r.subnetID == f.SubnetID)
			})
			if i >= 0 {
				keep = append(keep, p.FixedIPs[i])
				continue
			}
			fresh = append(fresh, r)
		}
		var drop []FixedIP
		for _, f := range p.FixedIPs {
			if !slices.Contains(keep, f) {
				drop = append(drop, f)
			}
		}
		if err := releaseIPs(tx, drop); err != nil {
			return nil, err
		}
		added := []FixedIP{}
		if len(fresh) > 0 {
			if added, err = rq.allocateIPs(tx, &net, p, fresh, true); err != nil {
				return nil, err
			}
		}
		p.FixedIPs = append(nonNil(keep), added...)
	}
	if hasSG {
		if p.SecurityGroups, err = rq.checkSecurityGroups(tx, p.ProjectID, sgs); err != nil {
			return nil, err
		}
	}
	if hasPairs {
		p.AllowedAddressPairs = pairs
	}
	if !p.PortSecurityEnabled {
		if len(p.SecurityGroups) > 0 {
			return nil, conflict("PortSecurityPortHasSecurityGroup", "Port has security group associated. Cannot disable port security or ip address until security group is removed.")
		}
		if len(p.AllowedAddressPairs) > 0 {
			return nil, conflict("AddressPairAndPortSecurityRequired", "Port Security must be enabled in order to have allowed address pairs on a port.")
		}
	}
	if len(p.SecurityGroups) > 0 && len(p.FixedIPs) == 0 {
		return nil, conflict("PortSecurityPortHasSecurityGroup", "Port has security group associated. Cannot disable port security or ip address until security group is removed.")
	}
	p.touch(rq.now)
	return p, save(tx, KindPort, p.ID, p)
}

func (s *Server) deletePort(rq *request, tx Tx, id string) error {
	p, err := rq.loadPort(tx, id)
	if err != nil {
		return err
	}
	if err := rq.mustOwn(p.ProjectID, "delete_port"); err != nil {
		return err
	}
	switch p.DeviceOwner {
	case OwnerRouterInterface, OwnerRouterGateway, OwnerFloatingIP:
		return conflict("L3PortInUse", "Port %s has owner %s and therefore cannot be deleted directly via the port API.", id, p.DeviceOwner)
	case OwnerDHCP:
		if p.DeviceID == DHCPDeviceID(p.NetworkID) {
			return conflict("DHCPPortInUse", "Port %s is the DHCP port of network %s, kept by the server: set enable_dhcp=false on the network's subnets to remove it.", id, p.NetworkID)
		}
	}
	// Floating IPs on this port are disassociated, as Neutron does.
	var fips []*FloatingIP
	err = tx.ListBy(KindFloatingIP, "port_id", id, func(_ string, v []byte) error {
		var f FloatingIP
		if err := json.Unmarshal(v, &f); err != nil {
			return err
		}
		fips = append(fips, &f)
		return nil
	})
	if err != nil {
		return err
	}
	for _, f := range fips {
		f.PortID, f.FixedIPAddress, f.RouterID = nil, nil, nil
		f.Status = "DOWN"
		f.touch(rq.now)
		if err := save(tx, KindFloatingIP, f.ID, f); err != nil {
			return err
		}
	}
	return removePort(tx, p)
}

// removePort deletes a port and releases its addresses and MAC.
func removePort(tx Tx, p *Port) error {
	if err := releaseIPs(tx, p.FixedIPs); err != nil {
		return err
	}
	if err := tx.Release(claimMACs, p.NetworkID+"/"+p.MACAddress); err != nil {
		return err
	}
	return tx.Delete(KindPort, p.ID)
}
