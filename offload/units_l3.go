package offload

import (
	"net/netip"
	"slices"
	"sort"
	"strconv"
)

// Routing and NAT in OpenFlow (routers the planner put on backend openflow). Each node
// routes its own VMs' traffic (as Neutron's DVR and OVN do): a frame to a router
// interface MAC leaves the L2 stage for tables 60–68, is routed, and re-enters TableL2 on
// the destination network with the router's MAC as source, so the normal L2, ingress
// security group and tunnel path delivers it. NAT is conntrack NAT in a zone per router
// (zones 4096+, above the networks' zones 1..4094). See pipeline.go for the table map.

// Internal unit kinds of the L3 stage (never cookie kinds: their flows carry the origin
// kinds of the objects they come from).
const (
	kindL3Neigh    Kind = 0x40 // a port's addresses in the next-hop table (origin: the port)
	kindL3Net      Kind = 0x41 // an external network's ARP learning (origin: the network)
	kindL3Pipeline Kind = 0x42 // the fixed L3 tables (origin: node l3-pipeline)
)

// L3PipelineOriginID is the origin ID (kind node) of the fixed L3 tables' flows.
const L3PipelineOriginID = "l3-pipeline"

// l3State is the L3 stage's part of the compiler's indexes.
type l3State struct {
	routers  map[string]routerIdx // every router of the IR
	netRtrs  map[string]set       // network → routers touching it (any backend)
	routed   map[string]int       // network → compiled routers touching it
	external map[string]int       // network → compiled routers with it as gateway network
	fips     map[string]set       // router → its floating IPs
	zones    map[string]uint16    // compiled router → conntrack zone (= reg5 value)
}

type routerIdx struct {
	compiled bool
	nets     []string // interface networks and the gateway network, sorted, unique
	ext      string   // gateway network
}

func newL3State() *l3State {
	return &l3State{routers: map[string]routerIdx{}, netRtrs: map[string]set{}, routed: map[string]int{},
		external: map[string]int{}, fips: map[string]set{}, zones: map[string]uint16{}}
}

// l3Update marks the L3 units whose inputs changed from (old, oldPlan) to (c.ir, c.plan).
// Called by Update after the L2 indexes (netAll, netRemotes) are current.
func (c *Compiler) l3Update(old *IR, oldPlan *Plan, d *dirty) {
	if c.l3 == nil {
		c.l3 = newL3State()
	}
	s, ir := c.l3, c.ir
	if len(old.Routers)+len(ir.Routers)+len(s.routers) == 0 && len(old.FloatingIPs)+len(ir.FloatingIPs) == 0 {
		return // the common node without routers: nothing to index
	}
	dirtyR := set{}
	diffIn(c.scoped, c.ch.Routers, old.Routers, ir.Routers, (*Router).equal, func(id string, _, _ *Router) { dirtyR[id] = struct{}{} })
	if c.plan != oldPlan {
		if c.scoped {
			planRoutersIn(c.ch.PlanRouters, oldPlan, c.plan, func(id string) { dirtyR[id] = struct{}{} })
		} else {
			planRouterChanges(oldPlan, c.plan, func(id string) { dirtyR[id] = struct{}{} })
		}
	}
	diffIn(c.scoped, c.ch.Segments, old.Segments, ir.Segments, (*Segment).equal, func(id string, _, _ *Segment) {
		for r := range s.netRtrs[id] {
			dirtyR[r] = struct{}{}
		}
		d.unit(unitKey{kindL3Net, id})
		for p := range c.netAll[id] {
			d.unit(unitKey{kindL3Neigh, p})
		}
		for p := range c.netRemotes[id] {
			d.unit(unitKey{kindL3Neigh, p})
		}
	})
	diffIn(c.scoped, c.ch.Ports, old.Ports, ir.Ports, (*Port).equal, func(id string, _, _ *Port) { d.unit(unitKey{kindL3Neigh, id}) })
	diffIn(c.scoped, c.ch.RemotePorts, old.RemotePorts, ir.RemotePorts, (*RemotePort).equal, func(id string, o, n *RemotePort) {
		d.unit(unitKey{kindL3Neigh, id})
		// The hosts of a router's networks route into them too (their tunnel ingress).
		for _, rp := range []*RemotePort{o, n} {
			if rp != nil {
				for r := range s.netRtrs[rp.NetworkID] {
					dirtyR[r] = struct{}{}
				}
			}
		}
	})
	diffIn(c.scoped, c.ch.FloatingIPs, old.FloatingIPs, ir.FloatingIPs, (*FloatingIP).equal, func(id string, o, n *FloatingIP) {
		d.unit(unitKey{KindFloatingIP, id})
		if o != nil {
			setDel(s.fips, o.RouterID, id)
		}
		if n != nil {
			setAdd(s.fips, n.RouterID, id)
		}
	})

	wasAny := len(s.zones) > 0
	compiledChanged := false
	flipNet := func(net string, counts map[string]int, delta int, onFlip func()) {
		before := counts[net]
		counts[net] += delta
		if counts[net] <= 0 {
			delete(counts, net)
		}
		if (before > 0) != (counts[net] > 0) {
			onFlip()
		}
	}
	routedFlip := func(net string) func() {
		return func() {
			for p := range c.netAll[net] {
				d.unit(unitKey{kindL3Neigh, p})
			}
			for p := range c.netRemotes[net] {
				d.unit(unitKey{kindL3Neigh, p})
			}
		}
	}
	for id := range dirtyR {
		d.unit(unitKey{KindRouter, id})
		for f := range s.fips[id] {
			d.unit(unitKey{KindFloatingIP, f})
		}
		prev := s.routers[id]
		for _, n := range prev.nets {
			setDel(s.netRtrs, n, id)
			if prev.compiled {
				flipNet(n, s.routed, -1, routedFlip(n))
			}
		}
		if prev.compiled && prev.ext != "" {
			ext := prev.ext
			flipNet(ext, s.external, -1, func() { d.unit(unitKey{kindL3Net, ext}) })
		}
		r := ir.Routers[id]
		if r == nil {
			delete(s.routers, id)
			if prev.compiled {
				compiledChanged = true
			}
			continue
		}
		now := routerIdx{nets: routerNets(r)}
		if r.Gateway != nil {
			now.ext = r.Gateway.NetworkID
		}
		rp := c.plan.Router(id)
		now.compiled = r.AdminStateUp && rp != nil && rp.Backend == BackendOpenFlow
		if now.compiled != prev.compiled {
			compiledChanged = true
		}
		s.routers[id] = now
		for _, n := range now.nets {
			setAdd(s.netRtrs, n, id)
			if now.compiled {
				flipNet(n, s.routed, 1, routedFlip(n))
			}
		}
		if now.compiled && now.ext != "" {
			ext := now.ext
			flipNet(ext, s.external, 1, func() { d.unit(unitKey{kindL3Net, ext}) })
		}
	}
	if compiledChanged {
		var ids []string
		for id, ri := range s.routers {
			if ri.compiled {
				ids = append(ids, id)
			}
		}
		zones := allocateRouterZones(ids)
		for id, z := range zones {
			if s.zones[id] != z {
				d.unit(unitKey{KindRouter, id})
				for f := range s.fips[id] {
					d.unit(unitKey{KindFloatingIP, f})
				}
			}
		}
		s.zones = zones
	}
	if wasAny != (len(s.zones) > 0) {
		d.unit(unitKey{kindL3Pipeline, ""})
	}
}

func routerNets(r *Router) []string {
	out := make([]string, 0, len(r.Interfaces)+1)
	for _, ri := range r.Interfaces {
		out = append(out, ri.NetworkID)
	}
	if r.Gateway != nil {
		out = append(out, r.Gateway.NetworkID)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// planRouterChanges calls fn for each router whose plan differs between a and b.
func planRouterChanges(a, b *Plan, fn func(id string)) {
	m := make(map[string]RouterPlan, len(a.Routers))
	for _, rp := range a.Routers {
		m[rp.RouterID] = rp
	}
	for _, rp := range b.Routers {
		if o, ok := m[rp.RouterID]; !ok || o != rp {
			fn(rp.RouterID)
		}
		delete(m, rp.RouterID)
	}
	for id := range m {
		fn(id)
	}
}

// allocateRouterZones gives each compiled router a conntrack zone in 4096..65535: its
// RouterZone, probing upwards past zones taken by routers earlier in ID order. Depends
// only on the set of routers, so incremental and full compiles agree.
func allocateRouterZones(ids []string) map[string]uint16 {
	sort.Strings(ids)
	out := make(map[string]uint16, len(ids))
	used := make(map[uint16]bool, len(ids))
	for _, id := range ids {
		z := uint32(RouterZone(id)) - routerZoneBase
		for i := 0; i < routerZoneSpan && used[uint16(routerZoneBase+z)]; i++ {
			z = (z + 1) % routerZoneSpan
		}
		out[id] = uint16(routerZoneBase + z)
		used[out[id]] = true
	}
	return out
}

// l3Flows dispatches the L3 units.
func (c *Compiler) l3Flows(u unitKey) *emitter {
	if c.l3 == nil {
		return nil
	}
	switch u.kind {
	case KindRouter:
		return c.routerFlows(u.id)
	case KindFloatingIP:
		return c.fipFlows(u.id)
	case kindL3Neigh:
		return c.neighFlows(u.id)
	case kindL3Net:
		return c.l3NetFlows(u.id)
	case kindL3Pipeline:
		return c.l3PipelineFlows()
	}
	return nil
}

// Priorities of the L3 stage.
const (
	prioL3Entry    uint16 = 100 // TableL2: a router MAC → the L3 stage
	prioL3ARP      uint16 = 110 // TableL2: ARP requests for a router address from a local port
	prioL3ARPPatch uint16 = 111 // TableL2: ... arriving over the network's patch port
	prioL3Learn    uint16 = 110 // TableClassify: ARP from an external network's patch → learn
	prioL3Echo     uint16 = 300 // TableL3Route: ICMP echo to a router address
	prioL3Own      uint16 = 299 // TableL3Route: anything else to a router address: drop
	prioL3Route    uint16 = 100 // TableL3Route: + prefix length (longest prefix first)
	prioL3FIPNew   uint16 = 200 // TableL3SNAT: new connection from a floating IP's fixed IP
	prioL3FIPSrc   uint16 = 150 // TableL3SNAT: traffic already translated to a floating IP
	prioL3SNAT     uint16 = 100 // TableL3SNAT: the router's SNAT
	prioL3Learned  uint16 = 50  // TableL3Neigh: entries learned from ARP (cookie 0)
)

func (c *Compiler) routerZone(id string) (uint16, bool) {
	z, ok := c.l3.zones[id]
	return z, ok
}

// segmentZ returns a network's local VLAN and its patch port (0: none), false when the
// node cannot carry it.
func (c *Compiler) segmentZ(net string) (int, int, bool) {
	seg := c.ir.Segments[net]
	if seg == nil {
		return 0, 0, false
	}
	patch, ok := c.served(seg)
	if !ok {
		return 0, 0, false
	}
	return int(seg.LocalVLAN), patch, true
}

func actARPReply(mac string, ip netip.Addr) []string {
	return []string{"move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]", "set_field:" + mac + "->eth_src", "set_field:2->arp_op",
		"move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[]", "move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[]",
		"set_field:" + mac + "->arp_sha", "set_field:" + ip.String() + "->arp_spa"}
}

// arpResponder answers ARP requests for ip on network z with mac: to local ports, and,
// when answerPatch, to requests from the network's patch port too (the external world
// behind a physnet); otherwise requests from the patch for ip are dropped (every node
// answers its own VMs).
func (e *emitter) arpResponder(z, patch int, ip netip.Addr, mac string, answerPatch bool) {
	m := func() *match {
		return e.nm().proto("arp").reg(RegNetwork, z).add(rL3Dst, "arp_tpa="+ip.String()).add(rNwProto, "arp_op=1")
	}
	e.add(TableL2, prioL3ARP, m(), joinActions(append(actARPReply(mac, ip), "IN_PORT")...))
	if patch == 0 {
		return
	}
	if answerPatch {
		e.add(TableL2, prioL3ARPPatch, m().inPort(patch), joinActions(append(actARPReply(mac, ip), actPushVLAN, actSetVLAN(z), "IN_PORT")...))
	} else {
		e.add(TableL2, prioL3ARPPatch, m().inPort(patch), "drop")
	}
}

func hexIP(a netip.Addr) string {
	b := a.As4()
	return "0x" + strconv.FormatUint(uint64(b[0])<<24|uint64(b[1])<<16|uint64(b[2])<<8|uint64(b[3]), 16)
}

func actSetReg3(a netip.Addr) string {
	return "set_field:" + hexIP(a) + "->reg" + strconv.Itoa(RegNextHop)
}

const actNextHopIsDst = "move:NXM_OF_IP_DST[]->NXM_NX_REG3[]"

// routerFlows: one router. Inputs: the router, its plan, its zone, the segments of its
// networks, the node's identity (ir.Host: which node answers the gateway addresses).
func (c *Compiler) routerFlows(id string) *emitter {
	r := c.ir.Routers[id]
	if r == nil {
		return nil
	}
	if !c.l3.routers[id].compiled {
		// Routed in a qrouter namespace on every host of its networks (nftables): those
		// hosts still route into all of its networks, so this node accepts them from
		// their VTEPs, as for a router in the pipeline.
		if rp := c.plan.Router(id); r.AdminStateUp && rp != nil && rp.Backend == BackendNFTables {
			e := newEmitter(c.layout.IntegrationBridge, KindRouter, id, 8)
			c.routerTunnelIngress(e, r)
			return e
		}
		return nil
	}
	rz, ok := c.routerZone(id)
	if !ok {
		return nil
	}
	zone := int(rz)
	e := newEmitter(c.layout.IntegrationBridge, KindRouter, id, 16+8*len(r.Interfaces))
	entry := func(z int, mac string) {
		e.add(TableL2, prioL3Entry, e.nm().reg(RegNetwork, z).dlDst(mac), joinActions(actSetReg(RegRouter, zone), actGoto(TableL3Commit)))
	}
	routedZ := int(RoutedZone(c.ir, r))
	own := func(ip netip.Addr) {
		echo := func() *match { return e.nm().proto("icmp").reg(RegRouter, zone).l3Dst(hostPrefix(ip)).icmpType(8) }
		acts := joinActions("push:NXM_OF_ETH_SRC[]", "move:NXM_OF_ETH_DST[]->NXM_OF_ETH_SRC[]", "pop:NXM_OF_ETH_DST[]",
			"move:NXM_OF_IP_SRC[]->NXM_OF_IP_DST[]", "set_field:"+ip.String()+"->ip_src", "set_field:0->icmp_type",
			"set_field:0->in_port", "ct_clear", actResubmit(TableL2))
		e.add(TableL3Route, prioL3Echo, echo(), acts)
		if routedZ > 0 {
			e.routedEcho(routedZ, echo(), acts)
		}
		e.add(TableL3Route, prioL3Own, e.nm().proto("ip").reg(RegRouter, zone).l3Dst(hostPrefix(ip)), "drop")
	}
	route := func(dst netip.Prefix, z int, mac string, nh netip.Addr, external bool) {
		v4 := dst.Addr().Is4()
		m := e.nm().proto(pick(v4, "ip", "ipv6")).reg(RegRouter, zone)
		if dst.Bits() > 0 {
			m.l3Dst(dst)
		}
		next := TableL3Out
		if external {
			next = TableL3SNATIn
		}
		var hop string
		switch {
		case v4 && nh.IsValid():
			hop = actSetReg3(nh)
		case v4:
			hop = actNextHopIsDst
		case nh.IsValid():
			hop = actSetNextHop6(nh)
		default:
			hop = actNextHop6IsDst
		}
		e.add(TableL3Route, prioL3Route+uint16(dst.Bits()), m,
			joinActions("dec_ttl", actSetReg(RegNetwork, z), "set_field:"+mac+"->eth_src", hop, actGoto(next)))
	}
	seenMAC := map[[2]string]bool{}
	var routed []routedNet
	seenLL := map[[2]string]bool{} // (network, MAC) whose link-local address is answered
	ownLL := map[netip.Addr]bool{} // link-local addresses answered to echo (one router zone)
	for _, ri := range r.Interfaces {
		z, patch, ok := c.segmentZ(ri.NetworkID)
		if !ok {
			continue
		}
		if k := [2]string{ri.NetworkID, ri.MAC}; !seenMAC[k] {
			seenMAC[k] = true
			entry(z, ri.MAC)
			routed = append(routed, routedNet{z, ri.MAC})
		}
		if ri.IP.Is4() {
			e.arpResponder(z, patch, ri.IP, ri.MAC, false)
			own(ri.IP)
		} else {
			e.ndResponder(z, patch, ri.IP, ri.MAC)
			e.ownV6(zone, routedZ, ri.IP)
			if k := [2]string{ri.NetworkID, ri.MAC}; !seenLL[k] {
				seenLL[k] = true
				ll := linkLocal(ri.MAC)
				e.ndResponder(z, patch, ll, ri.MAC)
				if !ownLL[ll] {
					ownLL[ll] = true
					e.ownV6(zone, routedZ, ll)
				}
			}
		}
		route(ri.CIDR, z, ri.MAC, netip.Addr{}, false)
	}
	g := r.Gateway
	var gz int
	gwOK := false
	if g != nil {
		var patch int
		gz, patch, gwOK = c.segmentZ(g.NetworkID)
		if gwOK {
			entry(gz, g.MAC)
			answer := g.Host == "" || g.Host == c.ir.Host
			for i, ip := range g.IPs {
				if !ip.Is4() {
					continue
				}
				if answer {
					e.arpResponder(gz, patch, ip, g.MAC, true)
				}
				own(ip)
				route(g.CIDRs[i], gz, g.MAC, netip.Addr{}, true)
			}
			if g.NextHop.IsValid() && g.NextHop.Is4() {
				route(netip.PrefixFrom(netip.IPv4Unspecified(), 0), gz, g.MAC, g.NextHop, true)
			}
			z := strconv.Itoa(zone)
			e.add(TableL3In, prioPort, e.nm().proto("ip").reg(RegRouter, zone).reg(RegNetwork, gz), "ct(table="+strconv.Itoa(int(TableL3DNAT))+",zone="+z+",nat)")
			e.add(TableL3SNATIn, prioPort, e.nm().proto("ip").reg(RegRouter, zone), "ct(table="+strconv.Itoa(int(TableL3SNAT))+",zone="+z+",nat)")
			if g.EnableSNAT {
				if a := g.SNATAddr(); a.IsValid() {
					e.add(TableL3SNAT, prioL3SNAT, e.nm().ctState("+new+trk").proto("ip").reg(RegRouter, zone),
						joinActions("ct(commit,zone="+z+",nat(src="+a.String()+"))", actGoto(TableL3Out)))
				}
			}
		}
	}
	if routedZ > 0 && len(routed) > 0 {
		e.routedCT(routedZ, zone, routed, gwOK)
	}
	c.routerTunnelIngress(e, r)
	for _, rt := range r.Routes {
		net, ok := r.Connected(rt.NextHop)
		if !ok {
			continue
		}
		if g != nil && net == g.NetworkID {
			if gwOK && rt.NextHop.Is4() { // IPv6 through the gateway: not compiled (units_l3v6.go)
				route(rt.Destination, gz, g.MAC, rt.NextHop, true)
			}
			continue
		}
		for _, ri := range r.Interfaces {
			if ri.NetworkID == net && ri.CIDR.Contains(rt.NextHop) {
				if z, _, ok := c.segmentZ(net); ok {
					route(rt.Destination, z, ri.MAC, rt.NextHop, false)
				}
				break
			}
		}
	}
	return e
}

// routerTunnelIngress: every host with a port on one of the router's networks carries
// the router too and routes into all of its networks, so this node accepts each of the
// router's overlay networks from those hosts' VTEPs, even when they host no port of that
// network (the same flows the network's own unit emits for VTEPs with ports: merged).
func (c *Compiler) routerTunnelIngress(e *emitter, r *Router) {
	l := c.layout
	if l.TunnelBridge == "" {
		return
	}
	var vteps []netip.Addr
	for _, n := range c.l3.routers[r.ID].nets {
		for rid := range c.netRemotes[n] {
			if v := c.ir.RemotePorts[rid].VTEP; v.IsValid() && v != l.TunnelLocalIP {
				vteps = append(vteps, v)
			}
		}
	}
	if len(vteps) == 0 {
		return
	}
	slices.SortFunc(vteps, netip.Addr.Compare)
	vteps = slices.Compact(vteps)
	br := e.bridge
	e.bridge = l.TunnelBridge
	for _, n := range c.l3.routers[r.ID].nets {
		seg := c.ir.Segments[n]
		if seg == nil || !IsTunnel(seg.Type) {
			continue
		}
		if _, ok := c.served(seg); !ok {
			continue
		}
		tun := l.OFPorts[TunnelPort(seg.Type)]
		for _, v := range vteps {
			e.add(TableTunFromTunnel, prioPort, e.nm().tunID(seg.SegmentationID).tunSrc(v).inPort(tun),
				joinActions(actPushVLAN, actSetVLAN(int(seg.LocalVLAN)), actOutput(l.OFPorts[PatchInt])))
		}
	}
	e.bridge = br
}

// fipFlows: one floating IP, compiled on the host of its port only (distributed NAT).
// Inputs: the floating IP, its router (zone, gateway), the external segment.
func (c *Compiler) fipFlows(id string) *emitter {
	f := c.ir.FloatingIPs[id]
	if f == nil || f.Host != c.ir.Host || !f.FloatingIP.Is4() {
		return nil
	}
	r := c.ir.Routers[f.RouterID]
	if r == nil || r.Gateway == nil || !c.l3.routers[f.RouterID].compiled {
		return nil
	}
	rz, ok := c.routerZone(f.RouterID)
	if !ok {
		return nil
	}
	gz, patch, ok := c.segmentZ(r.Gateway.NetworkID)
	if !ok {
		return nil
	}
	zone := int(rz)
	z := strconv.Itoa(zone)
	e := newEmitter(c.layout.IntegrationBridge, KindFloatingIP, id, 8)
	if f.MAC != r.Gateway.MAC {
		e.add(TableL2, prioL3Entry, e.nm().reg(RegNetwork, gz).dlDst(f.MAC), joinActions(actSetReg(RegRouter, zone), actGoto(TableL3Commit)))
	}
	e.arpResponder(gz, patch, f.FloatingIP, f.MAC, true)
	e.add(TableL3DNAT, prioPort, e.nm().ctState("+new+trk").proto("ip").reg(RegRouter, zone).l3Dst(hostPrefix(f.FloatingIP)),
		// recirculate: the route lookup must see the translated destination
		"ct(commit,table="+strconv.Itoa(int(TableL3Route))+",zone="+z+",nat(dst="+f.FixedIP.String()+"))")
	e.add(TableL3SNAT, prioL3FIPNew, e.nm().ctState("+new+trk").proto("ip").reg(RegRouter, zone).l3Src(hostPrefix(f.FixedIP)),
		joinActions("ct(commit,zone="+z+",nat(src="+f.FloatingIP.String()+"))", "set_field:"+f.MAC+"->eth_src", actGoto(TableL3Out)))
	e.add(TableL3SNAT, prioL3FIPSrc, e.nm().proto("ip").reg(RegRouter, zone).l3Src(hostPrefix(f.FloatingIP)),
		joinActions("set_field:"+f.MAC+"->eth_src", actGoto(TableL3Out)))
	return e
}

// neighFlows: a port's addresses in the next-hop table of its network, when a
// compiled router routes that network. Inputs: the port (local or remote), its segment,
// whether its network is routed.
func (c *Compiler) neighFlows(id string) *emitter {
	var net, mac string
	var ips []netip.Addr
	kind := KindPort
	if p := c.ir.Ports[id]; p != nil {
		if p.DeviceOwner == "network:router_interface" || p.DeviceOwner == "network:router_gateway" {
			return nil
		}
		net, mac, ips = p.NetworkID, p.MAC, p.IPs
	} else if r := c.ir.RemotePorts[id]; r != nil {
		net, mac, ips, kind = r.NetworkID, r.MAC, r.IPs, KindRemotePort
	} else {
		return nil
	}
	if c.l3.routed[net] == 0 {
		return nil
	}
	z, _, ok := c.segmentZ(net)
	if !ok {
		return nil
	}
	e := newEmitter(c.layout.IntegrationBridge, kind, id, len(ips))
	for _, ip := range ips {
		if ip.Is4() {
			e.add(TableL3Neigh, prioPort, e.nm().reg(RegNextHop, int(ip4Uint(ip))).reg(RegNetwork, z), "set_field:"+mac+"->eth_dst")
		} else {
			e.add(TableL3Neigh, prioPort, e.nm().proto("ipv6").reg(RegNetwork, z).nextHop6(ip), "set_field:"+mac+"->eth_dst")
		}
	}
	if len(e.flows) == 0 {
		return nil
	}
	return e
}

func ip4Uint(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// l3NetFlows: on an external network of a compiled router, ARP arriving from the
// physical network teaches the next-hop table who is where (the external gateway's MAC
// is not in the tenant model). Learned entries carry cookie 0: the applier's syncs leave
// them alone, a newer ARP replaces them, and like an ARP cache they expire after 5
// minutes unused (the agent's probes refresh the next hops in use; entries of a network
// that is gone expire). Inputs: the segment, whether it is external to a compiled router.
func (c *Compiler) l3NetFlows(id string) *emitter {
	if c.l3.external[id] == 0 {
		return nil
	}
	z, patch, ok := c.segmentZ(id)
	if !ok || patch == 0 {
		return nil
	}
	e := newEmitter(c.layout.IntegrationBridge, KindNetwork, id, 1)
	e.add(TableClassify, prioL3Learn, e.nm().proto("arp").inPort(patch).dlVLAN(z),
		joinActions(actSetReg(RegNetwork, z), "pop_vlan",
			"learn(table="+strconv.Itoa(int(TableL3Neigh))+",idle_timeout=300,priority="+strconv.Itoa(int(prioL3Learned))+",NXM_NX_REG6[],NXM_NX_REG3[]=NXM_OF_ARP_SPA[],load:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[])",
			actGoto(TableL2)))
	return e
}

// l3PipelineFlows: the fixed L3 tables, present while some router is compiled.
func (c *Compiler) l3PipelineFlows() *emitter {
	if len(c.l3.zones) == 0 {
		return nil
	}
	e := newEmitter(c.layout.IntegrationBridge, KindNode, L3PipelineOriginID, 12)
	// Commit the source network's new connection (its egress security groups allowed it;
	// the reply comes back routed, into the same zone) before the router's own tracking.
	// Traffic from the router's interface networks is tracked in its routed zone and
	// committed later (units_l3ct.go: a flow above this one per router).
	e.add(TableL3Commit, prioCommit, e.nm().ctState("+new+trk").proto("ip"), joinActions("ct(commit,"+ctZone+")", actGoto(TableL3In)))
	e.add(TableL3Commit, prioDeliverAny, e.nm().proto("ip"), actGoto(TableL3In))
	e.add(TableL3Commit, prioMiss, nil, "drop")
	e.add(TableL3In, prioMiss, nil, actGoto(TableL3Route))
	e.add(TableL3DNAT, prioMiss, nil, actGoto(TableL3Route))
	e.add(TableL3Route, prioMiss, nil, "drop")
	e.add(TableL3SNATIn, prioMiss, nil, "drop")
	e.add(TableL3SNAT, prioMiss, nil, actGoto(TableL3Out))
	// Next hop → MAC: unresolved stays all-zero and is dropped.
	e.add(TableL3Out, prioDeliverAny, nil, joinActions("set_field:00:00:00:00:00:00->eth_dst", actResubmit(TableL3Neigh), actGoto(TableL3Deliver)))
	e.add(TableL3Deliver, prioCommit, e.nm().dlDst("00:00:00:00:00:00"), "drop")
	// Back to L2 on the destination network, untracked (its ingress security groups
	// track it in that network's zone), from no port (so it may leave where it came in).
	// Above this flow, per router: tracked in its routed zone, delivered as it is.
	e.add(TableL3Deliver, prioDeliverAny, nil, joinActions("ct_clear", "set_field:0->in_port", actResubmit(TableL2)))
	e.l3V6PipelineFlows()
	return e
}

// NeighbourProbe is an ARP request the applier sends so that the next-hop table learns
// an external next hop's MAC (see ovsdpdk.ProbeNeighbours): from the router gateway's
// MAC and address, on the external network's local VLAN, flooded on that network.
type NeighbourProbe struct {
	Bridge    string     `json:"bridge"`
	RouterID  string     `json:"router_id"`
	LocalVLAN int        `json:"local_vlan"`
	SenderMAC string     `json:"sender_mac"`
	SenderIP  netip.Addr `json:"sender_ip"`
	Target    netip.Addr `json:"target"`
}

// NeighbourProbes lists the next hops of the compiled routers' external gateways
// (default route and extra routes through the gateway), sorted.
func (c *Compiler) NeighbourProbes() []NeighbourProbe {
	var out []NeighbourProbe
	if c.l3 == nil {
		return nil
	}
	for _, id := range sortedKeys(c.l3.zones) {
		r := c.ir.Routers[id]
		if r == nil || r.Gateway == nil {
			continue
		}
		z, _, ok := c.segmentZ(r.Gateway.NetworkID)
		src := r.Gateway.SNATAddr()
		if !ok || !src.IsValid() {
			continue
		}
		var targets []netip.Addr
		if r.Gateway.NextHop.Is4() {
			targets = append(targets, r.Gateway.NextHop)
		}
		for _, rt := range r.Routes {
			if n, ok := r.Connected(rt.NextHop); ok && n == r.Gateway.NetworkID && rt.NextHop.Is4() {
				targets = append(targets, rt.NextHop)
			}
		}
		slices.SortFunc(targets, netip.Addr.Compare)
		for _, t := range slices.Compact(targets) {
			out = append(out, NeighbourProbe{Bridge: c.layout.IntegrationBridge, RouterID: id, LocalVLAN: z, SenderMAC: r.Gateway.MAC, SenderIP: src, Target: t})
		}
	}
	return out
}

// RouterZones returns the conntrack zone of each compiled router (for explain and the
// applier's conntrack flushes).
func (c *Compiler) RouterZones() map[string]uint16 {
	if c.l3 == nil {
		return nil
	}
	out := make(map[string]uint16, len(c.l3.zones))
	for k, v := range c.l3.zones {
		out[k] = v
	}
	return out
}

// l3Origins are the L3 objects of a local port's dataplane: the routers of its network,
// its floating IPs and the L3 pipeline (for explain).
func (c *Compiler) l3Origins(p *Port) []Origin {
	if c.l3 == nil {
		return nil
	}
	var out []Origin
	for _, r := range sortedKeys(c.l3.netRtrs[p.NetworkID]) {
		out = append(out, Origin{KindRouter, r})
	}
	var fips []string
	for id, f := range c.ir.FloatingIPs {
		if f.PortID == p.ID {
			fips = append(fips, id)
		}
	}
	sort.Strings(fips)
	for _, f := range fips {
		out = append(out, Origin{KindFloatingIP, f})
	}
	if len(out) > 0 && len(c.l3.zones) > 0 {
		out = append(out, Origin{KindNode, L3PipelineOriginID})
	}
	return out
}
