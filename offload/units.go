package offload

import (
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/offlane/offlane/controlplane"
)

// The flows of each compile unit. A unit is the set of flows one object produces; its
// inputs are listed on each function, and Compiler.Update marks a unit dirty when any of
// them changes.

// emitter collects a unit's flows.
type emitter struct {
	flows   []emitted
	text    []byte // the flows' match texts, one after the other
	origins []Origin
	bridge  string
	cookie  uint64
	free    []*match // matches to reuse (add returns them)
}

// emitted is a flow as a unit emits it: its match is text[off:end] of the emitter.
type emitted struct {
	bridge   string
	actions  string
	cookie   uint64
	off, end uint32
	prio     uint16
	table    uint8
	shared   bool // actions many units repeat: the compiler keeps one copy (flowtable.go)
}

// nm returns an empty match, reusing one add is done with.
func (e *emitter) nm() *match {
	if n := len(e.free); n > 0 {
		m := e.free[n-1]
		e.free = e.free[:n-1]
		return m.reset()
	}
	return newMatch()
}

// from sets the origin of the flows added next.
func (e *emitter) from(kind Kind, id string) {
	e.cookie = CookieFor(kind, id)
	e.origins = append(e.origins, Origin{Kind: kind, ID: id})
}

func newEmitter(bridge string, kind Kind, id string, capacity int) *emitter {
	e := &emitter{bridge: bridge, flows: make([]emitted, 0, capacity), text: make([]byte, 0, 64*capacity)}
	e.from(kind, id)
	return e
}

func (e *emitter) add(table uint8, prio uint16, m *match, actions string) {
	off := len(e.text)
	if m != nil {
		e.text = m.appendTo(e.text)
		e.free = append(e.free, m)
	}
	e.flows = append(e.flows, emitted{bridge: e.bridge, actions: actions, cookie: e.cookie, off: uint32(off), end: uint32(len(e.text)), prio: prio, table: table})
}

// addShared is add for actions that many units repeat (a network's classification, a
// group's conjunctions): the compiler keeps one copy of them.
func (e *emitter) addShared(table uint8, prio uint16, m *match, actions string) {
	e.add(table, prio, m, actions)
	e.flows[len(e.flows)-1].shared = true
}

// nodeFlows: the fixed pipeline. Inputs: the layout.
func (c *Compiler) nodeFlows() *emitter {
	l := c.layout
	e := newEmitter(l.IntegrationBridge, KindNode, nodeOriginID, 64)
	// br-int: table misses drop, except where a stage falls through to the next.
	for _, t := range []uint8{TableClassify, TablePortSecurity, TableEgressSG, TableFlood, TableFloodMore, TableIngress, TableIngressSG} {
		e.add(t, prioMiss, nil, "drop")
	}
	e.add(TableARPResponder, prioMiss, nil, actGoto(TableL2))
	e.add(TableL2, prioMiss, nil, actGoto(TableFlood))
	e.add(TableCommit, prioMiss, nil, actGoto(TableDeliver))
	e.add(TableDeliver, prioDeliverAny, nil, "output:NXM_NX_REG7[0..15]")

	// Port security: a VM must not act as a DHCP server or an IPv6 router. Router
	// solicitations and MLD reports pass (table 0 already checked the source MAC, and
	// they carry no address to spoof).
	e.add(TablePortSecurity, prioPSDeny, e.nm().proto("udp").tpSrc(67).tpDst(68), "drop")
	e.add(TablePortSecurity, prioPSDeny, e.nm().proto("udp6").tpSrc(547).tpDst(546), "drop")
	e.add(TablePortSecurity, prioPSDeny, e.nm().proto("icmp6").icmpType(134), "drop")
	for _, t := range []int{130, 131, 132, 133, 143} {
		e.add(TablePortSecurity, prioPSAllowL2, e.nm().proto("icmp6").icmpType(t), actGoto(TableL2))
	}

	// Conntrack plumbing: untracked IP goes through the network's zone once and comes
	// back to the same table; established and related pass; invalid is dropped.
	for _, t := range []uint8{TableEgressSG, TableFlood, TableIngressSG} {
		for _, p := range []string{"ip", "ipv6"} {
			e.add(t, prioSGTrack, e.nm().ctState("-trk").proto(p), "ct(table="+strconv.Itoa(int(t))+","+ctZone+")")
		}
	}
	for t, next := range map[uint8]uint8{TableEgressSG: TableL2, TableIngressSG: TableCommit} {
		e.add(t, prioSGEst, e.nm().ctState("+est-rel-inv+trk"), actGoto(next))
		e.add(t, prioSGEst, e.nm().ctState("+rel-inv+trk"), actGoto(next))
		e.add(t, prioSGInv, e.nm().ctState("+inv+trk"), "drop")
	}
	// Ingress that no security group can block (as Neutron): ARP, IPv6 neighbour
	// discovery and MLD, DHCP(v6) replies. Before conntrack: it marks ND invalid.
	e.add(TableIngressSG, prioSGAlways, e.nm().proto("arp"), actGoto(TableCommit))
	for _, t := range []int{130, 131, 132, 134, 135, 136, 143} {
		e.add(TableIngressSG, prioSGAlways, e.nm().proto("icmp6").icmpType(t), actGoto(TableCommit))
	}
	e.add(TableIngressSG, prioSGAlways, e.nm().proto("udp").tpSrc(67).tpDst(68), actGoto(TableCommit))
	e.add(TableIngressSG, prioSGAlways, e.nm().proto("udp6").tpSrc(547).tpDst(546), actGoto(TableCommit))
	// Commit what the security groups let through (and only tracked new connections).
	for _, p := range []string{"ip", "ipv6"} {
		e.add(TableCommit, prioCommit, e.nm().ctState("+new+trk").proto(p), "ct(commit,"+ctZone+"),"+actGoto(TableDeliver))
	}

	if l.TunnelBridge != "" {
		e.bridge = l.TunnelBridge
		e.add(TableTunClassify, prioPort, e.nm().inPort(l.OFPorts[PatchInt]), actGoto(TableTunToTunnel))
		for _, t := range l.TunnelTypes {
			e.add(TableTunClassify, prioPort, e.nm().inPort(l.OFPorts[TunnelPort(t)]), actGoto(TableTunFromTunnel))
		}
		for _, t := range []uint8{TableTunClassify, TableTunToTunnel, TableTunFromTunnel} {
			e.add(t, prioMiss, nil, "drop")
		}
	}
	for _, pn := range sortedKeys(l.PhysnetBridges) {
		e.bridge = l.PhysnetBridges[pn]
		e.add(TablePhysnet, prioMiss, nil, "drop")
	}
	return e
}

const nodeOriginID = PipelineOriginID

// PipelineOriginID is the origin ID of the fixed pipeline's flows (kind node): their
// cookie, CookieFor(KindNode, PipelineOriginID), is how an agent sees that a restarted
// ovs-vswitchd lost every flow.
const PipelineOriginID = "pipeline"

// served reports whether the layout can carry a segment of this type, and the
// integration bridge's patch port towards it (0 for local segments).
func (c *Compiler) served(seg *Segment) (patch int, ok bool) {
	l := c.layout
	switch {
	case IsTunnel(seg.Type):
		if l.TunnelBridge == "" || !slices.Contains(l.TunnelTypes, seg.Type) {
			return 0, false
		}
		return l.OFPorts[PatchTun], true
	case seg.Type == SegFlat || seg.Type == SegVLAN:
		br := l.PhysnetBridges[seg.PhysicalNetwork]
		if br == "" {
			return 0, false
		}
		return l.OFPorts[IntPatch(br)], true
	case seg.Type == SegLocal:
		return 0, true
	}
	return 0, false
}

// segmentFlows: translation, flooding and tunnel ingress of one network. Inputs: the
// segment, its compiled local ports (ofports) and its remote ports' VTEPs.
func (c *Compiler) segmentFlows(id string) *emitter {
	seg := c.ir.Segments[id]
	if seg == nil {
		return nil
	}
	patch, ok := c.served(seg)
	if !ok {
		return nil
	}
	l := c.layout
	z := int(seg.LocalVLAN)
	e := newEmitter(l.IntegrationBridge, KindNetwork, id, 8)

	// Flooding: local ports of the network through their ingress stage, in ofport order,
	// in chunks; from a local port also out of the patch (split horizon otherwise).
	ofports := make([]int, 0, len(c.netPorts[id]))
	for pid := range c.netPorts[id] {
		ofports = append(ofports, c.ir.Ports[pid].OFPort)
	}
	sort.Ints(ofports)
	ofports = slices.Compact(ofports)
	chunkActions := func(ports []int) []string {
		a := make([]string, 0, 2*len(ports)+2)
		for _, o := range ports {
			a = append(a, actSetReg(RegOutPort, o), actResubmit(TableIngress))
		}
		return a
	}
	first := ofports
	if len(first) > c.chunk {
		first = first[:c.chunk]
	}
	local := chunkActions(first)
	if len(ofports) > c.chunk {
		local = append(local, actSetReg(RegFloodChunk, 1), actResubmit(TableFloodMore))
		for i, n := 1, 1; n*c.chunk < len(ofports); i, n = i+1, n+1 {
			part := ofports[n*c.chunk : min((n+1)*c.chunk, len(ofports))]
			a := chunkActions(part)
			if (n+1)*c.chunk < len(ofports) {
				a = append(a, actSetReg(RegFloodChunk, i+1), actResubmit(TableFloodMore))
			}
			e.add(TableFloodMore, prioPort, e.nm().reg(RegNetwork, z).reg(RegFloodChunk, i), joinActions(a...))
		}
	}
	all := local
	if patch != 0 {
		all = append(slices.Clone(local), actSetReg(RegOutPort, patch), actResubmit(TableCommit))
		e.add(TableFlood, prioFloodPatch, e.nm().reg(RegNetwork, z).inPort(patch), orDrop(local))
		e.add(TableClassify, prioPort, e.nm().inPort(patch).dlVLAN(z), joinActions(actSetReg(RegNetwork, z), "pop_vlan", actGoto(TableL2)))
		e.add(TableDeliver, prioPort, e.nm().reg(RegNetwork, z).reg(RegOutPort, patch),
			joinActions(actPushVLAN, actSetVLAN(z), actOutput(patch), "pop_vlan"))
		if IsTunnel(seg.Type) {
			c.containServiceFloods(e, id, z, local)
		}
	}
	e.add(TableFlood, prioFloodAll, e.nm().reg(RegNetwork, z), orDrop(all))

	switch {
	case IsTunnel(seg.Type):
		tun := l.OFPorts[TunnelPort(seg.Type)]
		e.bridge = l.TunnelBridge
		vteps := c.segmentVTEPs(id)
		if len(vteps) > 0 {
			a := []string{"pop_vlan", "set_field:0x" + strconv.FormatUint(uint64(seg.SegmentationID), 16) + "->tun_id"}
			for _, v := range vteps {
				a = append(a, "set_field:"+v.String()+"->tun_dst", actOutput(tun))
			}
			e.add(TableTunToTunnel, prioFloodAll, e.nm().dlVLAN(z), joinActions(a...))
		}
		for _, v := range vteps {
			e.add(TableTunFromTunnel, prioPort, e.nm().tunID(seg.SegmentationID).tunSrc(v).inPort(tun),
				joinActions(actPushVLAN, actSetVLAN(z), actOutput(l.OFPorts[PatchInt])))
		}
	case seg.Type == SegFlat || seg.Type == SegVLAN:
		br := l.PhysnetBridges[seg.PhysicalNetwork]
		phy := l.OFPorts[PhyPatch(br)]
		up := OFPPLocal
		if name := l.PhysnetUplinks[seg.PhysicalNetwork]; name != "" {
			up = l.OFPorts[name]
		}
		e.bridge = br
		if seg.Type == SegVLAN {
			e.add(TablePhysnet, prioPort, e.nm().inPort(phy).dlVLAN(z), joinActions(actSetVLAN(seg.SegmentationID), actOutput(up)))
			e.add(TablePhysnet, prioPort, e.nm().inPort(up).dlVLAN(seg.SegmentationID), joinActions(actSetVLAN(z), actOutput(phy)))
		} else {
			e.add(TablePhysnet, prioPort, e.nm().inPort(phy).dlVLAN(z), joinActions("pop_vlan", actOutput(up)))
			e.add(TablePhysnet, prioPort, e.nm().inPort(up).add(rVLAN, "vlan_tci=0x0000/0x1fff"), joinActions(actPushVLAN, actSetVLAN(z), actOutput(phy)))
		}
	}
	return e
}

// prioFloodDHCP: a DHCP request flooded on a tunnel network with a local DHCP port
// (below prioFloodPatch: requests from the patch flood locally anyway).
const prioFloodDHCP uint16 = 95

// containServiceFloods keeps floods of a tunnel network that a distributed service port
// answers on this node from leaving it over the tunnel (local ports only, as from the
// patch). A router interface or DHCP port plugged here (a local port, see boundHere)
// exists on every node carrying the network: its broadcasts, ARP requests and unknown
// unicast concern this node's ports only (the ARP responder answers for remote ports),
// and its DHCP replies are for local clients. And with a local DHCP port, a VM's DHCP
// request (udp 68→67) must reach only that port: every node's server would answer it.
func (c *Compiler) containServiceFloods(e *emitter, net string, z int, local []string) {
	var svc []int
	dhcp := false
	for pid := range c.netPorts[net] {
		p := c.ir.Ports[pid]
		switch p.DeviceOwner {
		case controlplane.OwnerDHCP:
			dhcp = true
		case controlplane.OwnerRouterInterface:
		default:
			continue
		}
		svc = append(svc, p.OFPort)
	}
	sort.Ints(svc)
	for _, o := range slices.Compact(svc) {
		e.add(TableFlood, prioFloodPatch, e.nm().reg(RegNetwork, z).inPort(o), orDrop(local))
	}
	if dhcp {
		e.add(TableFlood, prioFloodDHCP, e.nm().proto("udp").reg(RegNetwork, z).tpSrc(68).tpDst(67), orDrop(local))
	}
}

func orDrop(a []string) string {
	if len(a) == 0 {
		return "drop"
	}
	return joinActions(a...)
}

// segmentVTEPs are the remote tunnel endpoints hosting ports of the network, sorted.
func (c *Compiler) segmentVTEPs(id string) []netip.Addr {
	var out []netip.Addr
	for rid := range c.netRemotes[id] {
		v := c.ir.RemotePorts[rid].VTEP
		if v.IsValid() && v != c.layout.TunnelLocalIP {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// portFlows: one local port. Inputs: the port, its mode, its segment's local VLAN, the
// conjunction IDs of its security groups.
func (c *Compiler) portFlows(id string) *emitter {
	p := c.ir.Ports[id]
	m := c.portIdx[id].mode
	if p == nil || !m.compiled {
		return nil
	}
	seg := c.ir.Segments[p.NetworkID]
	z := int(seg.LocalVLAN)
	o := p.OFPort
	e := newEmitter(c.layout.IntegrationBridge, KindPort, id, 20)

	macs := []string{p.MAC}
	for _, ap := range p.AllowedPairs {
		if !slices.Contains(macs, ap.MAC) {
			macs = append(macs, ap.MAC)
		}
	}
	// L2: frames to the port's MACs go to its ingress stage.
	for _, mac := range macs {
		e.add(TableL2, prioPort, e.nm().reg(RegNetwork, z).dlDst(mac), joinActions(actSetReg(RegOutPort, o), actGoto(TableIngress)))
	}
	if !m.filtered {
		e.addShared(TableClassify, prioPort, e.nm().inPort(o), joinActions(actSetReg(RegNetwork, z), actGoto(m.afterClassify(TableARPResponder))))
		e.add(TableIngress, prioPort, e.nm().reg(RegOutPort, o), actGoto(TableCommit))
		return e
	}
	// A filtered port's frames must come from its MACs (so no flow after this one needs
	// to check dl_src just to stop MAC spoofing).
	for _, mac := range macs {
		e.addShared(TableClassify, prioPort, e.nm().inPort(o).dlSrc(mac), joinActions(actSetReg(RegNetwork, z), actGoto(m.afterClassify(TablePortSecurity))))
	}

	// Port security (egress). IP from the port's addresses goes on to the security
	// groups; ARP, ND and DHCP requests skip them (as Neutron).
	ipNext := TableEgressSG
	ingressNext := TableIngressSG
	if !m.sg {
		ipNext, ingressNext = TableL2, TableCommit
	}
	type src struct {
		mac string
		pfx netip.Prefix
	}
	srcs := make([]src, 0, len(p.IPs)+len(p.AllowedPairs)+1)
	for _, ip := range p.IPs {
		srcs = append(srcs, src{p.MAC, hostPrefix(ip)})
	}
	srcs = append(srcs, src{p.MAC, hostPrefix(linkLocal(p.MAC))})
	for _, ap := range p.AllowedPairs {
		srcs = append(srcs, src{ap.MAC, ap.Prefix})
	}
	for _, s := range srcs {
		if s.pfx.Addr().Is4() {
			ipm := e.nm().proto("ip").inPort(o).dlSrc(s.mac)
			arp := e.nm().proto("arp").inPort(o).dlSrc(s.mac).add(rArpSha, "arp_sha="+s.mac)
			if s.pfx.Bits() > 0 {
				ipm.l3Src(s.pfx)
				arp.add(rL3Src, "arp_spa="+prefixText(s.pfx))
			}
			e.add(TablePortSecurity, prioPSAllowIP, ipm, actGoto(ipNext))
			e.add(TablePortSecurity, prioPSAllowL2, arp, actGoto(TableARPResponder))
			continue
		}
		ipm := e.nm().proto("ipv6").inPort(o).dlSrc(s.mac)
		if s.pfx.Bits() > 0 {
			ipm.l3Src(s.pfx)
		}
		e.add(TablePortSecurity, prioPSAllowIP, ipm, actGoto(ipNext))
		// Neighbour advertisements only for the port's own addresses, naming its own MAC
		// (or none); solicitations only from them.
		for _, ll := range []string{s.mac, "00:00:00:00:00:00"} {
			na := e.nm().proto("icmp6").inPort(o).dlSrc(s.mac).icmpType(136).add(rNDLL, "nd_tll="+ll)
			ns := e.nm().proto("icmp6").inPort(o).dlSrc(s.mac).icmpType(135).add(rNDLL, "nd_sll="+ll)
			if s.pfx.Bits() > 0 {
				na.ndTarget(s.pfx)
				ns.l3Src(s.pfx)
			}
			e.add(TablePortSecurity, prioPSAllowL2, na, actGoto(TableL2))
			e.add(TablePortSecurity, prioPSAllowL2, ns, actGoto(TableL2))
		}
	}
	// Duplicate address detection and DHCP requests come from the unspecified address.
	e.add(TablePortSecurity, prioPSAllowL2, e.nm().proto("icmp6").inPort(o).dlSrc(p.MAC).l3Src(netip.MustParsePrefix("::/128")).icmpType(135).add(rNDLL, "nd_sll=00:00:00:00:00:00"), actGoto(TableL2))
	e.add(TablePortSecurity, prioPSAllowL2, e.nm().proto("udp").inPort(o).dlSrc(p.MAC).l3Src(netip.MustParsePrefix("0.0.0.0/32")).tpSrc(68).tpDst(67), actGoto(TableL2))
	e.add(TablePortSecurity, prioPSAllowL2, e.nm().proto("udp6").inPort(o).dlSrc(p.MAC).l3Src(hostPrefix(linkLocal(p.MAC))).tpSrc(546).tpDst(547), actGoto(TableL2))

	// Ingress: only frames to the port's MACs (or multicast) reach a filtered port.
	for _, mac := range macs {
		e.add(TableIngress, prioPort, e.nm().reg(RegOutPort, o).dlDst(mac), actGoto(ingressNext))
	}
	e.add(TableIngress, prioPort, e.nm().reg(RegOutPort, o).add(rDlDst, "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00"), actGoto(ingressNext))

	// Security groups: the port's side of each of its groups' conjunctions.
	if m.sg {
		for _, dir := range []string{Egress, Ingress} {
			var acts []string
			for _, k := range c.portKeys(p, dir) {
				n := 2
				if k.group != "" {
					n = 3
				}
				acts = append(acts, actConj(c.conjIDs[k], n, n))
			}
			if len(acts) == 0 {
				continue
			}
			acts = sortConj(acts)
			if dir == Egress {
				e.addShared(TableEgressSG, prioConj, e.nm().inPort(o), joinActions(acts...))
			} else {
				e.addShared(TableIngressSG, prioConj, e.nm().reg(RegOutPort, o), joinActions(acts...))
			}
		}
	}
	return e
}

// portKeys are the conjunctions a port takes part in for one direction.
func (c *Compiler) portKeys(p *Port, dir string) []conjKey {
	var out []conjKey
	for _, sg := range p.SecurityGroups {
		for _, k := range c.sgKeys[sg] {
			if k.dir == dir {
				out = append(out, k)
			}
		}
	}
	return out
}

// linkLocal is the EUI-64 IPv6 link-local address of a MAC (the address a VM's kernel
// gives itself).
func linkLocal(mac string) netip.Addr {
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	var hw [6]byte
	for i := 0; i < 6; i++ {
		v, _ := strconv.ParseUint(mac[3*i:3*i+2], 16, 8)
		hw[i] = byte(v)
	}
	b[8], b[9], b[10] = hw[0]^2, hw[1], hw[2]
	b[11], b[12] = 0xff, 0xfe
	b[13], b[14], b[15] = hw[3], hw[4], hw[5]
	return netip.AddrFrom16(b)
}

// remoteFlows: one remote port. Inputs: the remote port and its segment.
func (c *Compiler) remoteFlows(id string) *emitter {
	r := c.ir.RemotePorts[id]
	if r == nil {
		return nil
	}
	seg := c.ir.Segments[r.NetworkID]
	if seg == nil {
		return nil
	}
	patch, ok := c.served(seg)
	if !ok || patch == 0 {
		return nil
	}
	tunnel := IsTunnel(seg.Type)
	if tunnel && (!r.VTEP.IsValid() || r.VTEP == c.layout.TunnelLocalIP) {
		return nil
	}
	z := int(seg.LocalVLAN)
	e := newEmitter(c.layout.IntegrationBridge, KindRemotePort, id, 3)
	// Known remote MACs go straight to the patch port (no flooding), ...
	e.addShared(TableL2, prioPort, e.nm().reg(RegNetwork, z).dlDst(r.MAC), joinActions(actSetReg(RegOutPort, patch), actGoto(TableCommit)))
	if !tunnel {
		return e
	}
	// ... and over the overlay straight to the VTEP that hosts them (L2 population).
	// The ARP responder answers for their addresses so requests need not cross it.
	for _, ip := range r.IPs {
		if !ip.Is4() {
			continue
		}
		e.add(TableARPResponder, prioPort, e.nm().proto("arp").reg(RegNetwork, z).add(rL3Dst, "arp_tpa="+ip.String()).add(rNwProto, "arp_op=1"),
			joinActions("move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]", "set_field:"+r.MAC+"->eth_src", "set_field:2->arp_op",
				"move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[]", "move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[]",
				"set_field:"+r.MAC+"->arp_sha", "set_field:"+ip.String()+"->arp_spa", "IN_PORT"))
	}
	e.bridge = c.layout.TunnelBridge
	e.add(TableTunToTunnel, prioPort, e.nm().dlVLAN(z).dlDst(r.MAC),
		joinActions("pop_vlan", "set_field:0x"+strconv.FormatUint(uint64(seg.SegmentationID), 16)+"->tun_id",
			"set_field:"+r.VTEP.String()+"->tun_dst", actOutput(c.layout.OFPorts[TunnelPort(seg.Type)])))
	return e
}

// sgFlows: one security group's rule matches and conj_id flows. Inputs: the group,
// whether a compiled port uses it, its conjunction IDs.
func (c *Compiler) sgFlows(id string) *emitter {
	sg := c.ir.SecurityGroups[id]
	keys := c.sgKeys[id]
	if sg == nil || len(keys) == 0 {
		return nil
	}
	e := &emitter{bridge: c.layout.IntegrationBridge}
	for _, r := range sg.Rules {
		k := conjKey{sg: id, dir: r.Direction, group: r.RemoteGroupID}
		n := 2
		if k.group != "" {
			n = 3
		}
		act := actConj(c.conjIDs[k], 1, n)
		t := TableIngressSG
		if r.Direction == Egress {
			t = TableEgressSG
		}
		e.from(KindRule, r.ID)
		for _, m := range ruleMatches(r) {
			e.add(t, prioConj, m, act)
		}
	}
	e.from(KindSecurityGroup, id)
	for _, k := range keys {
		if k.dir == Egress {
			e.add(TableEgressSG, prioConj, e.nm().conjID(c.conjIDs[k]), actGoto(TableL2))
		} else {
			e.add(TableIngressSG, prioConj, e.nm().conjID(c.conjIDs[k]), actGoto(TableCommit))
		}
	}
	return e
}

// ruleMatches are a rule's match flows without its remote group: ether type, protocol,
// destination port blocks (or ICMP type/code) and the remote CIDR.
func ruleMatches(r Rule) []*match {
	v6 := r.EtherType == IPv6
	base := func() *match {
		m := newMatch()
		switch r.Protocol {
		case ProtoAny:
			m.proto(pick(v6, "ipv6", "ip"))
		case ProtoTCP:
			m.proto(pick(v6, "tcp6", "tcp"))
		case ProtoUDP:
			m.proto(pick(v6, "udp6", "udp"))
		case ProtoSCTP:
			m.proto(pick(v6, "sctp6", "sctp"))
		case ProtoICMP, ProtoICMPv6:
			m.proto(pick(v6, "icmp6", "icmp"))
			if r.PortMin >= 0 {
				m.icmpType(r.PortMin)
				if r.PortMax >= 0 {
					m.icmpCode(r.PortMax)
				}
			}
		default:
			m.proto(pick(v6, "ipv6", "ip")).nwProto(r.Protocol)
		}
		if r.RemotePrefix.IsValid() && r.RemotePrefix.Bits() > 0 {
			if r.Direction == Ingress {
				m.l3Src(r.RemotePrefix)
			} else {
				m.l3Dst(r.RemotePrefix)
			}
		}
		return m
	}
	switch r.Protocol {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
		if r.PortMin >= 0 {
			blocks := portBlocks(r.PortMin, r.PortMax)
			if len(blocks) == 1 && blocks[0].mask == 0 {
				break
			}
			out := make([]*match, 0, len(blocks))
			for _, b := range blocks {
				out = append(out, base().tpDstMasked(b))
			}
			return out
		}
	}
	return []*match{base()}
}

func pick(cond bool, a, b string) string {
	if cond {
		return a
	}
	return b
}

// memberFlows: one port's addresses in the address sets of the remote groups it
// belongs to. Inputs: the member, the conjunctions naming its groups.
func (c *Compiler) memberFlows(id string) *emitter {
	mb := c.ir.Members[id]
	if mb == nil {
		return nil
	}
	var in, eg []string
	for _, g := range mb.Groups {
		for _, k := range c.groupKeys[g] {
			a := actConj(c.conjIDs[k], 2, 3)
			if k.dir == Ingress {
				in = append(in, a)
			} else {
				eg = append(eg, a)
			}
		}
	}
	if len(in)+len(eg) == 0 {
		return nil
	}
	in, eg = sortConj(in), sortConj(eg)
	e := newEmitter(c.layout.IntegrationBridge, KindAddress, id, 2*len(mb.Addresses))
	for _, a := range mb.Addresses {
		if len(in) > 0 {
			m := e.nm().proto(pick(a.Addr().Is4(), "ip", "ipv6"))
			if a.Bits() > 0 {
				m.l3Src(a)
			}
			e.addShared(TableIngressSG, prioConj, m, joinActions(in...))
		}
		if len(eg) > 0 {
			m := e.nm().proto(pick(a.Addr().Is4(), "ip", "ipv6"))
			if a.Bits() > 0 {
				m.l3Dst(a)
			}
			e.addShared(TableEgressSG, prioConj, m, joinActions(eg...))
		}
	}
	return e
}

// sortConj sorts conjunction actions by ID (then dimension) and drops duplicates.
func sortConj(a []string) []string {
	slices.SortFunc(a, func(x, y string) int {
		ix, iy := conjActionID(x), conjActionID(y)
		if ix != iy {
			if ix < iy {
				return -1
			}
			return 1
		}
		return strings.Compare(x, y)
	})
	return slices.Compact(a)
}

func conjActionID(a string) uint64 {
	s := strings.TrimPrefix(a, "conjunction(")
	s, _, _ = strings.Cut(s, ",")
	v, _ := strconv.ParseUint(s, 10, 32)
	return v
}
