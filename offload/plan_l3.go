package offload

import (
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strings"

	"github.com/offlane/offlane/hwdetect"
)

// L3 backends a node config may name (NodeLayout.L3Backend).
const (
	L3Auto     = "auto"
	L3OpenFlow = "openflow"
	L3NFTables = "nftables"
)

// planRouters decides each router's backend (sorted by router ID).
func planRouters(ir *IR, node *hwdetect.Node, lay NodeLayout) []RouterPlan {
	if len(ir.Routers) == 0 {
		return nil
	}
	out := make([]RouterPlan, 0, len(ir.Routers))
	for _, id := range sortedKeys(ir.Routers) {
		out = append(out, planRouter(ir.Routers[id], node, lay))
	}
	return out
}

// planRouter is one router's backend: openflow (tables 60–68 of the integration
// bridge, conntrack NAT in a zone of its own) or nftables (a qrouter namespace), and why.
func planRouter(r *Router, node *hwdetect.Node, lay NodeLayout) RouterPlan {
	rp := RouterPlan{RouterID: r.ID}
	set := func(b Backend, format string, a ...any) RouterPlan {
		rp.Backend, rp.Reason = b, fmt.Sprintf(format, a...)
		return rp
	}
	if !r.AdminStateUp {
		return set(BackendNone, "admin_state_up is false: the router forwards nothing")
	}
	natOK, why := ctNAT(node, lay)
	needsNAT := r.Gateway != nil
	switch lay.L3Backend {
	case L3OpenFlow:
		if !natOK && needsNAT && node != nil && node.OVS != nil && node.OVS.Reachable {
			return set(BackendNone, "l3_backend openflow is configured, but %s: use l3_backend nftables (or auto)", why)
		}
		return set(BackendOpenFlow, "l3_backend openflow (configured); %s", why)
	case L3NFTables:
		return set(BackendNFTables, "l3_backend nftables (configured): qrouter-%s namespace, nftables NAT", r.ID)
	case "", L3Auto:
		if natOK {
			return set(BackendOpenFlow, "auto: %s: routing and NAT in %s tables %d–%d", why, lay.IntegrationBridge, TableL3Commit, TableL3Out)
		}
		return set(BackendNFTables, "auto: %s: qrouter-%s namespace with nftables NAT instead", why, r.ID)
	}
	return set(BackendNone, "l3_backend %q is not auto, openflow or nftables: fix the node config", lay.L3Backend)
}

// ctNAT reports whether the node's OVS datapath can do conntrack NAT, and why.
func ctNAT(node *hwdetect.Node, lay NodeLayout) (bool, string) {
	switch {
	case node == nil:
		return false, "node capabilities not detected (run offlane detect), conntrack NAT in OVS unknown"
	case node.OVS == nil || !node.OVS.Reachable:
		why := "not probed"
		if node.OVS != nil && node.OVS.Reason != "" {
			why = node.OVS.Reason
		}
		return false, "Open vSwitch not reachable (" + why + "), conntrack NAT in OVS unknown"
	}
	if caps, ok := node.OVS.DatapathCapabilities[lay.Datapath]; ok {
		var missing []string
		for _, k := range []string{"ct_state", "ct_zone", "ct_state_nat", "ct_clear"} {
			if caps[k] != "true" {
				missing = append(missing, fmt.Sprintf("%s=%q", k, caps[k]))
			}
		}
		if len(missing) > 0 {
			return false, fmt.Sprintf("OVS %s datapath %s lacks conntrack NAT (Datapath capabilities %s)", node.OVS.Version, lay.Datapath, strings.Join(missing, ", "))
		}
		return true, fmt.Sprintf("OVS %s datapath %s has conntrack NAT (Datapath capabilities ct_state_nat, ct_zone, ct_clear)", node.OVS.Version, lay.Datapath)
	}
	switch lay.Datapath {
	case "netdev":
		return true, fmt.Sprintf("OVS %s userspace datapath (netdev): its conntrack has NAT since OVS 2.8 (no Datapath row in OVSDB to confirm)", node.OVS.Version)
	case "system":
		if node.KernelFeatures.OVSDatapath == hwdetect.FeatureAbsent {
			return false, "datapath system needs the openvswitch kernel module, which this kernel lacks"
		}
		return false, "kernel datapath: conntrack NAT not confirmed (no Datapath capabilities in OVSDB; ovs-vsctl create a Datapath row for system)"
	}
	return false, fmt.Sprintf("datapath %q unknown", lay.Datapath)
}

// l3Index finds the routers of a network and the floating IPs of a port without scanning
// every router and floating IP per port (PlanNode builds it once).
type l3Index struct {
	netRouters map[string][]*Router // sorted by ID
	portFIPs   map[string][]*FloatingIP
}

func newL3Index(ir *IR) *l3Index {
	x := &l3Index{netRouters: map[string][]*Router{}, portFIPs: map[string][]*FloatingIP{}}
	for _, r := range ir.Routers {
		seen := ""
		for _, ri := range r.Interfaces {
			if ri.NetworkID != seen && !slices.Contains(x.netRouters[ri.NetworkID], r) {
				x.netRouters[ri.NetworkID] = append(x.netRouters[ri.NetworkID], r)
			}
			seen = ri.NetworkID
		}
	}
	for _, rs := range x.netRouters {
		sort.Slice(rs, func(i, j int) bool { return rs[i].ID < rs[j].ID })
	}
	for _, f := range ir.FloatingIPs {
		x.portFIPs[f.PortID] = append(x.portFIPs[f.PortID], f)
	}
	return x
}

// planL3 is a port's routing and NAT: by the backend of the router(s) on its network.
// idx may be nil (one port: the routers and floating IPs are scanned).
func planL3(p *Port, ir *IR, idx *l3Index, l2 l2Choice, node *hwdetect.Node, lay NodeLayout) []Decision {
	rt, nat := FeatureRouting, FeatureNAT
	if l2.Backend == BackendNone {
		return []Decision{none(rt, "no L2 backend"), none(nat, "no L2 backend")}
	}
	if p.DeviceOwner == "network:router_interface" || p.DeviceOwner == "network:router_gateway" {
		return []Decision{none(rt, "the port is a router's own (%s): the router's backend realises it", p.DeviceOwner), none(nat, "a router's own port")}
	}
	var routers []*Router
	var portFIPs []*FloatingIP
	if idx != nil {
		routers, portFIPs = idx.netRouters[p.NetworkID], idx.portFIPs[p.ID]
	} else {
		for _, r := range ir.Routers {
			for _, ri := range r.Interfaces {
				if ri.NetworkID == p.NetworkID {
					routers = append(routers, r)
					break
				}
			}
		}
		for _, f := range ir.FloatingIPs {
			if f.PortID == p.ID {
				portFIPs = append(portFIPs, f)
			}
		}
	}
	if len(routers) == 0 {
		why := fmt.Sprintf("network %s has no router interface", p.NetworkID)
		return []Decision{none(rt, "%s", why), none(nat, "%s", why)}
	}
	if idx == nil {
		sort.Slice(routers, func(i, j int) bool { return routers[i].ID < routers[j].ID })
	}
	r := routers[0]
	rp := planRouter(r, node, lay)
	b := rp.Backend
	if b == BackendOpenFlow && l2.Backend != BackendOpenFlow {
		return []Decision{none(rt, "router %s is in OpenFlow but the port's L2 is %s: its traffic does not cross %s", r.ID, l2.Backend, lay.IntegrationBridge),
			none(nat, "no routing")}
	}
	var subnets []string
	v4, v6 := false, false
	for _, ri := range r.Interfaces {
		if ri.NetworkID == p.NetworkID {
			subnets = append(subnets, ri.CIDR.String())
			v4, v6 = v4 || ri.IP.Is4(), v6 || ri.IP.Is6()
		}
	}
	more := ""
	if len(routers) > 1 {
		more = fmt.Sprintf(" (%d routers on the network; gateway is %s)", len(routers), r.ID)
	}
	routing := Decision{rt, b, fmt.Sprintf("router %s, gateway %s%s: %s%s", r.ID, strings.Join(subnets, ", "), more, rp.Reason, families(v4, v6))}
	if b == BackendNone {
		routing = none(rt, "router %s: %s", r.ID, rp.Reason)
	}

	// NAT: a floating IP of the port wins over the router's SNAT.
	var fips []string
	for _, f := range portFIPs {
		fips = append(fips, fmt.Sprintf("%s ↔ %s (router %s)", f.FloatingIP, f.FixedIP, f.RouterID))
	}
	slices.Sort(fips)
	var nd Decision
	switch {
	case len(fips) > 0 && b != BackendNone:
		nd = Decision{nat, b, "floating IP " + strings.Join(fips, ", ") + ": 1:1 DNAT + SNAT, before the router's SNAT"}
	case !v4:
		nd = none(nat, "router %s has only IPv6 on network %s: routed, not NATed (as Neutron)", r.ID, p.NetworkID)
	case r.Gateway == nil:
		nd = none(nat, "router %s has no external gateway", r.ID)
	case !r.Gateway.EnableSNAT:
		nd = none(nat, "router %s: enable_snat is false: routed out with internal addresses", r.ID)
	case b == BackendNone:
		nd = none(nat, "router %s: %s", r.ID, rp.Reason)
	default:
		nd = Decision{nat, b, fmt.Sprintf("SNAT to %s (router %s gateway on %s)", r.Gateway.SNATAddr(), r.ID, r.Gateway.NetworkID)}
	}
	if l2.Backend == BackendTC && nd.Backend != BackendNone && l2.nic != nil {
		// a direct port: tc ct + nat on the representor when the NIC offloads conntrack
		if ct := l2.nic.Capabilities.CTOffload; ct.Level == hwdetect.LevelHW {
			nd.Backend, nd.Reason = BackendTC, nd.Reason+fmt.Sprintf("; tc ct + nat on the representor (conntrack offloaded by %s)", l2.nic.Name)
		} else {
			nd.Reason += fmt.Sprintf("; stays in router %s's %s backend: ct offload not supported by %s (%s)", r.ID, b, l2.nic.Name, levelWhy(ct))
		}
	}
	return []Decision{routing, nd}
}

// families names the IP versions a router routes on a network; IPv6 is never NATed (as
// in Neutron: floating IPs and SNAT are IPv4).
func families(v4, v6 bool) string {
	switch {
	case v4 && v6:
		return "; IPv4 and IPv6 routed, IPv6 not NATed"
	case v6:
		return "; IPv6 routed, not NATed"
	case v4:
		return "; IPv4 routed"
	}
	return ""
}

// RouterPlan returns the plan of a router, nil when the plan has none.
func (p *Plan) Router(id string) *RouterPlan {
	if p == nil {
		return nil
	}
	i := sort.Search(len(p.Routers), func(i int) bool { return p.Routers[i].RouterID >= id })
	if i < len(p.Routers) && p.Routers[i].RouterID == id {
		return &p.Routers[i]
	}
	return nil
}

// RouterZone is a router's conntrack zone (and its number in reg5): 4096 + a hash of its
// ID into 4096..65535, above the networks' zones (their local VLANs, 1..4094), so tenant
// zones never meet router zones. Two routers of one node hashing to the same zone are
// moved apart by the compiler (probing upwards in router ID order); RouterZone is the
// first choice, which explain and plans print.
func RouterZone(id string) uint16 {
	return uint16(routerZoneBase + routerZoneHash(id)%routerZoneSpan)
}

func routerZoneHash(id string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return h.Sum32()
}

const (
	routerZoneBase = 4096
	routerZoneSpan = 65536 - routerZoneBase
)

// String of a router plan line, for Plan.String.
func (rp RouterPlan) String() string {
	return fmt.Sprintf("router %s: %s (%s)", rp.RouterID, rp.Backend, rp.Reason)
}
