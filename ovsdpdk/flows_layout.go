package ovsdpdk

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"github.com/offlane/offlane/offload"
)

// FlowLayout reads what offload's compiler needs to know about this node's OVS from the
// OVSDB cache: the bridges `offlane node apply` made (found by their offlane-role tags,
// so a renamed bridge is still found), the OpenFlow port numbers of their patch, tunnel
// and uplink ports, and the OpenFlow port of every attached tenant port by its iface-id
// (ports OVS has not numbered yet are left out: the compiler waits for them). The tenant
// map is shared until OVS changes: read it, do not change it.
func (c *Client) FlowLayout(ctx context.Context) (offload.NodeLayout, map[string]int, error) {
	ovsRow, err := c.ovsRow(ctx)
	if err != nil {
		return offload.NodeLayout{}, nil, err
	}
	idx, err := c.index() // index.go: the tenant ports kept up to date by the cache's events
	if err != nil {
		return offload.NodeLayout{}, nil, err
	}
	st := idx.layoutState()
	st.OVS = ovsRow
	l, _, err := FlowLayoutFrom(st)
	if err != nil {
		return l, nil, err
	}
	return l, idx.tenantPorts(), nil
}

// FlowLayoutFrom is FlowLayout on a snapshot (pure).
func FlowLayoutFrom(st *State) (offload.NodeLayout, map[string]int, error) {
	l := offload.NodeLayout{PhysnetBridges: map[string]string{}, PhysnetUplinks: map[string]string{}, OFPorts: map[string]int{}}
	// tenant interfaces per bridge, found in the same pass as the layout's rows (one
	// lookup per port and interface: this runs on every OVS change at 10,000 ports)
	tenantOn := map[string]map[string]int{}
	ifaceByUUID := st.Interfaces
	names := make([]string, 0, len(st.Bridges))
	for n := range st.Bridges {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		br := st.Bridges[name]
		role := ""
		if br.ExternalIDs[KeyOwner] == OwnerNode {
			role = br.ExternalIDs[KeyRole]
		}
		setOnce := func(dst *string, what string) {
			if *dst != "" && *dst != name {
				errs = append(errs, fmt.Errorf("two %s bridges: %s and %s (fix the node config and run offlane node apply)", what, *dst, name))
				return
			}
			*dst = name
		}
		switch role {
		case RoleIntegration:
			setOnce(&l.IntegrationBridge, "integration")
			l.Datapath = br.DatapathType
		case RoleTunnel:
			setOnce(&l.TunnelBridge, "tunnel")
		case RoleExternal:
			setOnce(&l.ExternalBridge, "external")
		case RolePhysnet:
			if pn := br.ExternalIDs[KeyPhysnet]; pn != "" {
				l.PhysnetBridges[pn] = name
			}
		}
		for _, pu := range br.Ports {
			p := st.Ports[pu]
			if p == nil {
				continue
			}
			for _, iu := range p.Interfaces {
				i := ifaceByUUID[iu]
				if i == nil {
					continue
				}
				of := 0
				if i.Ofport != nil && *i.Ofport > 0 {
					of = *i.Ofport
				}
				eid := i.ExternalIDs
				if eid[KeyOwner] != OwnerNode {
					// offlane's own tenant ports, and as with os-vif and OVN any interface
					// someone else adds with external_ids:iface-id (never a layout row)
					if id := eid[KeyIfaceID]; id != "" && of > 0 {
						t := tenantOn[name]
						if t == nil {
							t = make(map[string]int, len(br.Ports))
							tenantOn[name] = t
						}
						t[id] = of
					}
				} else {
					switch eid[KeyRole] {
					case RolePatch, RoleTunnelPort, RoleUplink:
						if of > 0 {
							l.OFPorts[i.Name] = of
						}
						if eid[KeyRole] == RoleTunnelPort && !slices.Contains(l.TunnelTypes, i.Type) {
							l.TunnelTypes = append(l.TunnelTypes, i.Type)
						}
						if eid[KeyRole] == RoleUplink && eid[KeyPhysnet] != "" {
							l.PhysnetUplinks[eid[KeyPhysnet]] = i.Name
						}
					}
				}
			}
		}
	}
	if l.IntegrationBridge == "" {
		errs = append(errs, errors.New("no integration bridge tagged offlane-role=integration in OVSDB: run offlane node apply first"))
	}
	// Tenant ports: those on the integration bridge.
	tenant := tenantOn[l.IntegrationBridge]
	if tenant == nil {
		tenant = map[string]int{}
	}
	if st.OVS != nil {
		if s := st.OVS.ExternalIDs[KeyTunnelLocalIP]; s != "" {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("Open_vSwitch external_ids:%s=%q is not an address: run offlane node apply", KeyTunnelLocalIP, s))
			}
			l.TunnelLocalIP = ip
		}
		l.L3Backend = st.OVS.ExternalIDs[KeyL3Backend]
	}
	sort.Strings(l.TunnelTypes)
	if err := errors.Join(errs...); err != nil {
		return offload.NodeLayout{}, nil, err
	}
	return l, tenant, nil
}
