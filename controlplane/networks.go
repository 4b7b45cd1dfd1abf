package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

func (s *Server) networkCollection() *collection {
	return &collection{
		name: "networks", member: "network", plural: "networks", kind: KindNetwork,
		notFound: "NetworkNotFound", label: "Network", attrs: attrNames(Network{}),
		hidden:  []string{"provider:network_type", "provider:physical_network", "provider:segmentation_id"},
		indexes: []string{"project_id", "qos_policy_id"},
		newObj:  func() storable { return &Network{} },
		visible: func(rq *request, _ *lookup, m rawObj) bool {
			return rq.canSeeNetwork(str(m, "project_id"), boolean(m, "shared"), boolean(m, "router:external"))
		},
		create: s.createNetwork,
		update: s.updateNetwork,
		del:    s.deleteNetwork,
	}
}

// canSeeNetwork is Neutron's get_network rule: admin, owner, shared or external.
func (rq *request) canSeeNetwork(project string, shared, external bool) bool {
	return rq.c.owns(project) || shared || external
}

// loadNetwork reads a network the caller can see (404 otherwise).
func (rq *request) loadNetwork(tx ReadTx, id string) (*Network, error) {
	nf := notFound("NetworkNotFound", "Network %s could not be found.", id)
	n, err := rq.s.getNetwork(tx, id, nf)
	if err != nil {
		return nil, err
	}
	if !rq.canSeeNetwork(n.ProjectID, n.Shared, n.External) {
		return nil, nf
	}
	return n, nil
}

// mustOwn refuses a write on a visible object the caller does not own (or may only read).
func (rq *request) mustOwn(project, rule string) error {
	if rq.c.readOnly || !rq.c.owns(project) {
		return forbidden(rule)
	}
	return nil
}

func (s *Server) createNetwork(rq *request, tx Tx, a *attrs) (any, error) {
	n := &Network{
		ID: newID(), AdminStateUp: true, Status: "ACTIVE", Subnets: []string{}, PortSecurityEnabled: true,
		AvailabilityZoneHints: []string{}, AvailabilityZones: []string{}, Tags: []string{},
		CreatedAt: rq.now, UpdatedAt: rq.now, RevisionNumber: 1,
	}
	if err := a.forbid("id", "status", "subnets", "revision_number", "created_at", "updated_at", "availability_zones"); err != nil {
		return nil, err
	}
	project, err := rq.project(a)
	if err != nil {
		return nil, err
	}
	n.ProjectID, n.TenantID = project, project
	if err := s.networkCommonAttrs(rq, tx, a, n, "create_network"); err != nil {
		return nil, err
	}
	if _, err := a.strList("availability_zone_hints", &n.AvailabilityZoneHints, 16); err != nil {
		return nil, err
	}
	var typ string
	var physnet *string
	var segID *int
	hasType, err := a.str("provider:network_type", &typ, 32)
	if err != nil {
		return nil, err
	}
	hasPhys, err := a.optStr("provider:physical_network", &physnet, 64, true)
	if err != nil {
		return nil, err
	}
	hasSeg, err := a.optInt("provider:segmentation_id", &segID, -1<<32, 1<<32)
	if err != nil {
		return nil, err
	}
	// The multi-provider form (what gophercloud's provider extension sends): one segment.
	if segs, has, err := a.objList("segments"); err != nil {
		return nil, err
	} else if has {
		if hasType || hasPhys || hasSeg {
			return nil, newErr(http.StatusBadRequest, "InvalidInput", "Invalid input for operation: Segments and provider values cannot both be set.")
		}
		if len(segs) != 1 {
			return nil, invalidAttr("segments", "offlane networks have exactly one segment, got %d", len(segs))
		}
		sa := &attrs{m: segs[0], used: map[string]bool{}, method: a.method}
		if hasType, err = sa.str("provider:network_type", &typ, 32); err != nil {
			return nil, err
		}
		if hasPhys, err = sa.optStr("provider:physical_network", &physnet, 64, true); err != nil {
			return nil, err
		}
		if hasSeg, err = sa.optInt("provider:segmentation_id", &segID, -1<<32, 1<<32); err != nil {
			return nil, err
		}
		if err := sa.done(); err != nil {
			return nil, invalidAttr("segments", "%v", err)
		}
		hasType = hasType || hasPhys || hasSeg
	}
	if segID != nil && *segID == 0 {
		segID = nil // clients send 0 for "allocate one" (gophercloud's Segment has no omitempty)
	}
	hasMTU, err := a.integer("mtu", &n.MTU, 68, 65535)
	if err != nil {
		return nil, err
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	provider := hasType || hasPhys || hasSeg
	if provider && !rq.c.admin {
		return nil, forbidden("create_network:provider:network_type")
	}
	if provider {
		n.NetworkType, n.PhysicalNetwork, n.SegmentationID, err = s.segs.provider(tx, n.ID, typ, physnet, segID)
	} else {
		n.NetworkType, n.PhysicalNetwork, n.SegmentationID, err = s.segs.tenant(tx, n.ID)
	}
	if err != nil {
		return nil, err
	}
	max := s.segs.mtuFor(n.NetworkType)
	if !hasMTU {
		n.MTU = max
	} else if n.MTU > max {
		return nil, invalidAttr("mtu", "requested MTU %d is too big, maximum is %d", n.MTU, max)
	}
	return n, save(tx, KindNetwork, n.ID, n)
}

// networkCommonAttrs decodes the attributes create and update share.
func (s *Server) networkCommonAttrs(rq *request, tx Tx, a *attrs, n *Network, op string) error {
	if _, err := a.str("name", &n.Name, maxNameLen); err != nil {
		return err
	}
	if _, err := a.str("description", &n.Description, maxNameLen); err != nil {
		return err
	}
	if _, err := a.boolean("admin_state_up", &n.AdminStateUp); err != nil {
		return err
	}
	shared := n.Shared
	if has, err := a.boolean("shared", &n.Shared); err != nil {
		return err
	} else if has && n.Shared != shared && !rq.c.admin {
		return forbidden(op + ":shared")
	} else if has && op == "create_network" && n.Shared && !rq.c.admin {
		return forbidden(op + ":shared")
	}
	ext := n.External
	if has, err := a.boolean("router:external", &n.External); err != nil {
		return err
	} else if has && (n.External != ext || n.External) && !rq.c.admin {
		return forbidden(op + ":router:external")
	}
	if _, err := a.boolean("port_security_enabled", &n.PortSecurityEnabled); err != nil {
		return err
	}
	if has, err := a.optStr("qos_policy_id", &n.QoSPolicyID, 64, true); err != nil {
		return err
	} else if has && n.QoSPolicyID != nil {
		if _, err := rq.usableQoSPolicy(tx, *n.QoSPolicyID); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) updateNetwork(rq *request, tx Tx, id string, a *attrs) (any, error) {
	n, err := rq.loadNetwork(tx, id)
	if err != nil {
		return nil, err
	}
	if err := rq.mustOwn(n.ProjectID, "update_network"); err != nil {
		return nil, err
	}
	for _, k := range []string{"provider:network_type", "provider:physical_network", "provider:segmentation_id"} {
		if a.has(k) {
			if !rq.c.admin {
				return nil, forbidden("update_network:" + k)
			}
			return nil, newErr(http.StatusBadRequest, "InvalidInput", "Invalid input for operation: Plugin does not support updating provider attributes.")
		}
	}
	if err := a.forbid("id", "status", "subnets", "project_id", "tenant_id", "revision_number", "created_at", "updated_at", "availability_zones", "availability_zone_hints"); err != nil {
		return nil, err
	}
	wasShared, wasExternal := n.Shared, n.External
	if err := s.networkCommonAttrs(rq, tx, a, n, "update_network"); err != nil {
		return nil, err
	}
	if _, err := a.integer("mtu", &n.MTU, 68, 65535); err != nil {
		return nil, err
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	if max := s.segs.mtuFor(n.NetworkType); n.MTU > max {
		return nil, invalidAttr("mtu", "requested MTU %d is too big, maximum is %d", n.MTU, max)
	}
	if wasShared && !n.Shared {
		// Neutron refuses to unshare while other projects have ports on the network.
		err := tx.ListBy(KindPort, "network_id", n.ID, func(_ string, v []byte) error {
			if p := projectOf(v); p != n.ProjectID && p != "" {
				return conflict("InvalidSharedSetting", "Unable to reconfigure sharing settings for network %s. Multiple tenants are using it.", n.ID)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if wasExternal && !n.External {
		if c, _ := tx.Count(KindFloatingIP, "floating_network_id", n.ID); c > 0 {
			return nil, conflict("ExternalNetworkInUse", "External network %s is in use by %d floating IPs; delete them before unsetting router:external.", n.ID, c)
		}
		if c, _ := tx.Count(KindRouter, "gateway_network_id", n.ID); c > 0 {
			return nil, conflict("ExternalNetworkInUse", "External network %s is in use by %d router gateways; clear them before unsetting router:external.", n.ID, c)
		}
	}
	n.touch(rq.now)
	return n, save(tx, KindNetwork, n.ID, n)
}

func (s *Server) deleteNetwork(rq *request, tx Tx, id string) error {
	n, err := rq.loadNetwork(tx, id)
	if err != nil {
		return err
	}
	if err := rq.mustOwn(n.ProjectID, "delete_network"); err != nil {
		return err
	}
	// The DHCP port is the network's own, deleted with it (Neutron auto-deletes
	// network:dhcp ports); any other port keeps the network in use.
	if p, err := dhcpPort(tx, id); err != nil {
		return err
	} else if p != nil {
		if err := removePort(tx, p); err != nil {
			return err
		}
	}
	if c, err := tx.Count(KindPort, "network_id", id); err != nil {
		return err
	} else if c > 0 {
		return conflict("NetworkInUse", "Unable to complete operation on network %s. There are one or more ports still in use on the network.", id)
	}
	for _, sid := range n.Subnets {
		if err := tx.Delete(KindSubnet, sid); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	if n.NetworkType != "" && n.NetworkType != NetTypeLocal {
		phys := ""
		if n.PhysicalNetwork != nil {
			phys = *n.PhysicalNetwork
		}
		seg := 0
		if n.SegmentationID != nil {
			seg = *n.SegmentationID
		}
		if err := tx.Release(claimSegments, segmentKey(n.NetworkType, phys, seg)); err != nil {
			return err
		}
	}
	return tx.Delete(KindNetwork, id)
}

// projectOf extracts project_id from a stored object without a full decode.
func projectOf(v []byte) string {
	var o struct {
		ProjectID string `json:"project_id"`
	}
	_ = json.Unmarshal(v, &o)
	return o.ProjectID
}

// Claim spaces.
const (
	claimSegments  = "segments"   // type/physnet/id → network id
	claimIPs       = "ips"        // subnet/hex(ip) → port id
	claimMACs      = "macs"       // network/mac → port id
	claimDefaultSG = "default-sg" // project → security group id
)

// provider validates an admin's provider attributes and claims the segment.
func (p segmentPlan) provider(tx Tx, netID, typ string, physnet *string, segID *int) (string, *string, *int, error) {
	invalid := func(format string, args ...any) error {
		return newErr(http.StatusBadRequest, "InvalidInput", "Invalid input for operation: %s.", fmt.Sprintf(format, args...))
	}
	if typ == "" {
		return "", nil, nil, invalid("provider:network_type required")
	}
	phys := ""
	if physnet != nil {
		phys = *physnet
	}
	switch typ {
	case NetTypeFlat:
		if segID != nil {
			return "", nil, nil, invalid("segmentation_id not allowed for flat provider network")
		}
		if phys == "" {
			return "", nil, nil, invalid("physical_network required for flat provider network")
		}
		if !p.flatAny && !p.flatNets[phys] {
			return "", nil, nil, invalid("physical_network '%s' unknown for flat provider network (flat_networks in the serve config)", phys)
		}
		if err := tx.Claim(claimSegments, segmentKey(typ, phys, 0), netID); errors.Is(err, ErrClaimed) {
			return "", nil, nil, conflict("FlatNetworkInUse", "Unable to create the flat network. Physical network %s is in use.", phys)
		} else if err != nil {
			return "", nil, nil, err
		}
		return typ, physnet, nil, nil
	case NetTypeVLAN:
		if phys == "" {
			if segID != nil {
				return "", nil, nil, invalid("physical_network required for VLAN provider network with a segmentation_id")
			}
			n := 0
			for _, rs := range p.vlanRanges {
				n += len(rs)
			}
			if n == 0 {
				return "", nil, nil, invalid("no VLAN ranges to allocate from (network_vlan_ranges in the serve config); give provider:physical_network and provider:segmentation_id")
			}
			return p.allocVLAN(tx, netID)
		}
		if _, known := p.vlanRanges[phys]; !p.vlanAny && !known {
			return "", nil, nil, invalid("physical_network '%s' unknown for VLAN provider network (network_vlan_ranges in the serve config)", phys)
		}
		if segID == nil {
			if len(p.vlanRanges[phys]) == 0 {
				return "", nil, nil, invalid("physical_network '%s' has no VLAN range to allocate from (network_vlan_ranges in the serve config); give provider:segmentation_id", phys)
			}
			id, ok, err := findFree(tx, typ, phys, p.vlanRanges[phys])
			if err != nil {
				return "", nil, nil, err
			}
			if !ok {
				return "", nil, nil, newErr(http.StatusServiceUnavailable, "NoNetworkAvailable", "Unable to create the network. No tenant network is available for allocation.")
			}
			segID = &id
		}
		if *segID < 1 || *segID > maxVLAN {
			return "", nil, nil, invalid("provider:segmentation_id %d out of range (1 through %d)", *segID, maxVLAN)
		}
		if err := tx.Claim(claimSegments, segmentKey(typ, phys, *segID), netID); errors.Is(err, ErrClaimed) {
			return "", nil, nil, conflict("VlanIdInUse", "Unable to create the network. The VLAN %d on physical network %s is in use.", *segID, phys)
		} else if err != nil {
			return "", nil, nil, err
		}
		return typ, &phys, segID, nil
	case NetTypeVXLAN, NetTypeGeneve, NetTypeGRE:
		if phys != "" {
			return "", nil, nil, invalid("provider:physical_network specified for %s network", strings.ToUpper(typ))
		}
		if segID == nil {
			id, ok, err := findFree(tx, typ, "", p.tunnelRanges[typ])
			if err != nil {
				return "", nil, nil, err
			}
			if !ok {
				return "", nil, nil, newErr(http.StatusServiceUnavailable, "NoNetworkAvailable", "Unable to create the network. No tenant network is available for allocation.")
			}
			segID = &id
		}
		if *segID < 1 || *segID > maxTunnel {
			return "", nil, nil, invalid("provider:segmentation_id %d out of range (1 through %d) for %s", *segID, maxTunnel, typ)
		}
		if err := tx.Claim(claimSegments, segmentKey(typ, "", *segID), netID); errors.Is(err, ErrClaimed) {
			return "", nil, nil, conflict("TunnelIdInUse", "Unable to create the network. The tunnel ID %d is in use.", *segID)
		} else if err != nil {
			return "", nil, nil, err
		}
		return typ, nil, segID, nil
	case NetTypeLocal:
		if phys != "" || segID != nil {
			return "", nil, nil, invalid("provider:physical_network and provider:segmentation_id not allowed for local network")
		}
		return typ, nil, nil, nil
	}
	return "", nil, nil, invalid("network_type value '%s' not supported (flat, vlan, vxlan, gre, geneve, local)", typ)
}

// tenant allocates a segment for a project network from the configured ranges.
func (p segmentPlan) tenant(tx Tx, netID string) (string, *string, *int, error) {
	for _, typ := range p.tenantTypes {
		switch typ {
		case NetTypeLocal:
			return typ, nil, nil, nil
		case NetTypeVLAN:
			t, ph, id, err := p.allocVLAN(tx, netID)
			var ae *apiError
			if errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable {
				continue
			}
			return t, ph, id, err
		default:
			id, ok, err := findFree(tx, typ, "", p.tunnelRanges[typ])
			if err != nil {
				return "", nil, nil, err
			}
			if !ok {
				continue
			}
			if err := tx.Claim(claimSegments, segmentKey(typ, "", id), netID); err != nil {
				return "", nil, nil, err
			}
			return typ, nil, &id, nil
		}
	}
	return "", nil, nil, newErr(http.StatusServiceUnavailable, "NoNetworkAvailable", "Unable to create the network. No tenant network is available for allocation.")
}

func (p segmentPlan) allocVLAN(tx Tx, netID string) (string, *string, *int, error) {
	physnets := make([]string, 0, len(p.vlanRanges))
	for ph := range p.vlanRanges {
		physnets = append(physnets, ph)
	}
	slices.Sort(physnets)
	for _, ph := range physnets {
		id, ok, err := findFree(tx, NetTypeVLAN, ph, p.vlanRanges[ph])
		if err != nil {
			return "", nil, nil, err
		}
		if ok {
			if err := tx.Claim(claimSegments, segmentKey(NetTypeVLAN, ph, id), netID); err != nil {
				return "", nil, nil, err
			}
			return NetTypeVLAN, &ph, &id, nil
		}
	}
	return "", nil, nil, newErr(http.StatusServiceUnavailable, "NoNetworkAvailable", "Unable to create the network. No tenant network is available for allocation.")
}

// findFree returns the lowest unclaimed id in ranges, walking only the claimed ids.
func findFree(tx ReadTx, typ, physnet string, ranges []idRange) (int, bool, error) {
	prefix := typ + "/" + physnet + "/"
	for _, r := range ranges {
		next := r.lo
		err := tx.Claims(claimSegments, prefix, segmentKey(typ, physnet, r.lo), func(key, _ string) bool {
			id, err := strconv.Atoi(key[len(prefix):])
			if err != nil || id > r.hi || id > next {
				return false
			}
			next = id + 1
			return true
		})
		if err != nil {
			return 0, false, err
		}
		if next <= r.hi {
			return next, true, nil
		}
	}
	return 0, false, nil
}
