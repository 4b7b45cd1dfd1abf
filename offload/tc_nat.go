package offload

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/offlane/offlane/hwdetect"
)

// SNAT and floating IPs in tc (ct action + nat), for tc ports whose NIC offloads
// conntrack (the capability matrix's ct offload) and whose NAT the planner put on tc,
// the way OVS's tc offload does it. Per port with NAT to address N (the floating IP, else
// the router's SNAT address), router zone Z (RouterZone) and chain C = Z:
//
//	representor, chain 0 prio 9  ip dst_mac <router> src_ip <port> ct_state -trk → ct zone Z nat, goto chain C
//	representor, chain C prio 1  ip ct_state +trk+new → ct commit zone Z nat src addr N, route out
//	representor, chain C prio 2  ip ct_state +trk+est → route out (the ct of chain 0 restored the NAT)
//	uplink,      chain 0 prio 9  ip dst_ip N ct_state -trk → ct zone Z nat, goto chain C
//	uplink,      chain C prio 1  ip dst_ip <FIP> ct_state +trk+new → ct commit zone Z nat dst addr <fixed IP>, route in   [floating IP]
//	uplink,      chain C prio 2  ip dst_ip <port> ct_state +trk+est → route in (un-NATed by chain 0's ct)
//
// "route out" is pedit eth (dst: the gateway's next hop, src: the gateway's or the
// floating IP's MAC), TTL − 1, csum, mirred to the uplink; "route in" the same towards the
// port (dst: its MAC, src: the router's on its subnet) and mirred to the representor.
// Only flat external networks are compiled (a VLAN external network stays in the
// router's backend, with the reason).

// Priorities of the NAT rules (TCPrioNAT on chain 0, after routed east-west; the others
// on the router's chain).
const (
	TCPrioNAT    uint16 = 9
	TCPrioNATNew uint16 = 1
	TCPrioNATEst uint16 = 2
)

// TC action kinds of this file.
const (
	TCActCT   = "ct"   // act_ct: zone, commit, nat
	TCActGoto = "goto" // gact goto chain
)

// Conntrack state flags of flower's ct_state (TCA_FLOWER_KEY_CT_FLAGS_*).
const (
	CTNew         uint16 = 1 << 0
	CTEstablished uint16 = 1 << 1
	CTRelated     uint16 = 1 << 2
	CTTracked     uint16 = 1 << 3
	CTInvalid     uint16 = 1 << 4
	CTReply       uint16 = 1 << 5
)

var ctFlagNames = []struct {
	name string
	flag uint16
}{{"trk", CTTracked}, {"new", CTNew}, {"est", CTEstablished}, {"rel", CTRelated}, {"inv", CTInvalid}, {"rpl", CTReply}}

// ParseCTState reads tc's ct_state syntax ("+trk+est", "-trk"): the flags named are the
// mask, those with + the state.
func ParseCTState(s string) (state, mask uint16, err error) {
	rest := s
	for rest != "" {
		sign := rest[0]
		if sign != '+' && sign != '-' {
			return 0, 0, fmt.Errorf("ct_state %q: want +flag or -flag (trk, new, est, rel, inv, rpl)", s)
		}
		rest = rest[1:]
		found := false
		for _, f := range ctFlagNames {
			if strings.HasPrefix(rest, f.name) {
				rest, found = rest[len(f.name):], true
				mask |= f.flag
				if sign == '+' {
					state |= f.flag
				}
				break
			}
		}
		if !found {
			return 0, 0, fmt.Errorf("ct_state %q: unknown flag at %q (trk, new, est, rel, inv, rpl)", s, rest)
		}
	}
	if mask == 0 {
		return 0, 0, fmt.Errorf("ct_state %q: no flag", s)
	}
	return state, mask, nil
}

// FormatCTState writes state/mask as ParseCTState reads it (flags in tc's order).
func FormatCTState(state, mask uint16) string {
	var b strings.Builder
	for _, f := range ctFlagNames {
		if mask&f.flag == 0 {
			continue
		}
		if state&f.flag != 0 {
			b.WriteByte('+')
		} else {
			b.WriteByte('-')
		}
		b.WriteString(f.name)
	}
	return b.String()
}

// writeNATAction writes the tc syntax of ct and goto; false for other kinds.
func writeNATAction(b *strings.Builder, a *TCAction) bool {
	switch a.Kind {
	case TCActCT:
		b.WriteString("ct")
		if a.CTCommit {
			b.WriteString(" commit")
		}
		if a.CTZone != 0 {
			b.WriteString(" zone ")
			b.WriteString(strconv.Itoa(int(a.CTZone)))
		}
		switch a.CTNAT {
		case "":
		case "nat":
			b.WriteString(" nat")
		default:
			b.WriteString(" nat ")
			b.WriteString(a.CTNAT)
			b.WriteString(" addr ")
			b.WriteString(a.CTAddr.String())
		}
		b.WriteString(" pipe")
	case TCActGoto:
		b.WriteString("gact goto chain ")
		b.WriteString(strconv.FormatUint(uint64(a.Chain), 10))
	default:
		return false
	}
	return true
}

// natWork is what a port's NAT rules need.
type natWork struct {
	tp       *tcPort
	rt       *Router
	ifc      *RouterInterface
	fixed    netip.Addr
	fip      *FloatingIP // nil: SNAT
	natAddr  netip.Addr
	natMAC   string // the source MAC out
	nextHop  string // MAC
	zone     uint16
	external *Segment
}

// compileTCNAT returns the NAT rules of the tc ports whose NAT the planner put on tc, and
// the reason for each port with NAT that stays out of tc.
func compileTCNAT(ir *IR, all map[string]*tcPort, lay TCLayout, fb map[string][]string) []TCRule {
	n := newTCNAT(ir)
	out := make([]TCRule, 0, 5*len(all))
	snatDone := map[string]bool{} // uplink + router: the SNAT entry rule, once
	for _, id := range sortedKeys(all) {
		tp := all[id]
		w, reason := n.work(ir, tp, lay)
		if reason != "" {
			fb[id] = append(fb[id], reason)
		}
		if w == nil {
			continue
		}
		out = append(out, w.rules(snatDone)...)
	}
	return out
}

// work decides a port's NAT: nil and "" without NAT, nil and the reason when it stays
// out of tc.
func (n *tcNAT) work(ir *IR, tp *tcPort, lay TCLayout) (*natWork, string) {
	reason := n.reason(tp)
	if reason == "" || tp.nic.Capabilities.CTOffload.Level != hwdetect.LevelHW {
		return nil, reason
	}
	fip := n.fip[tp.p.ID]
	rid := ""
	if fip != nil {
		rid = fip.RouterID
	} else {
		for _, s := range n.snat[tp.p.NetworkID] {
			for _, a := range tp.p.IPs {
				if rid == "" && s.cidr.Contains(a) {
					rid = s.router
				}
			}
		}
	}
	fail := func(format string, a ...any) (*natWork, string) {
		return nil, "nat: " + fmt.Sprintf(format, a...) + ": NAT stays in router " + rid + "'s backend"
	}
	if d := tcDecision(tp, FeatureNAT); d.Backend != BackendTC {
		return fail("the planner put NAT on %q (%s), not tc", d.Backend, d.Reason)
	}
	rt := ir.Routers[rid]
	if rt == nil || rt.Gateway == nil {
		return fail("router %s has no external gateway in the IR", rid)
	}
	gw := rt.Gateway
	w := &natWork{tp: tp, rt: rt, fip: fip, zone: RouterZone(rid)}
	for i := range rt.Interfaces {
		ifc := &rt.Interfaces[i]
		if ifc.NetworkID != tp.p.NetworkID || !ifc.CIDR.Addr().Is4() || ifc.MAC == "" {
			continue
		}
		for _, a := range tp.p.IPs {
			if ifc.CIDR.Contains(a) && !w.fixed.IsValid() {
				w.ifc, w.fixed = ifc, a
			}
		}
	}
	if w.ifc == nil {
		return fail("port has no IPv4 address on a subnet of router %s", rid)
	}
	if fip != nil {
		w.natAddr, w.natMAC, w.fixed = fip.FloatingIP, fip.MAC, fip.FixedIP
		if w.natMAC == "" {
			w.natMAC = gw.MAC
		}
	} else {
		w.natAddr, w.natMAC = gw.SNATAddr(), gw.MAC
	}
	switch {
	case !w.natAddr.Is4():
		return fail("no IPv4 NAT address")
	case w.natMAC == "":
		return fail("router %s's gateway has no MAC", rid)
	case !gw.NextHop.IsValid():
		return fail("external subnet of router %s has no gateway (next hop)", rid)
	}
	w.nextHop = lay.NeighMACs[gw.NextHop]
	if w.nextHop == "" {
		return fail("next hop %s's MAC is not resolved yet", gw.NextHop)
	}
	w.external = ir.Segments[gw.NetworkID]
	if w.external == nil || w.external.Type != SegFlat {
		return fail("external network %s is not flat (only flat external networks are compiled to tc)", gw.NetworkID)
	}
	return w, ""
}

// rules are a port's NAT rules (and its router's SNAT entry rule on the uplink, once).
func (w *natWork) rules(snatDone map[string]bool) []TCRule {
	tp, rep, up := w.tp, w.tp.rep, w.tp.nic.Name
	flags, why := placement(tp, "ct + nat", tp.nic.Capabilities.CTOffload)
	chain := uint32(w.zone)
	po := Origin{KindPort, tp.p.ID}
	ct := func(commit bool, nat string, addr netip.Addr) TCAction {
		return TCAction{Kind: TCActCT, CTZone: w.zone, CTCommit: commit, CTNAT: nat, CTAddr: addr}
	}
	entry := []TCAction{ct(false, "nat", netip.Addr{}), {Kind: TCActGoto, Chain: chain}}
	out := func(first ...TCAction) []TCAction {
		return append(first, TCAction{Kind: TCActPeditEth, EthDst: w.nextHop, EthSrc: w.natMAC},
			TCAction{Kind: TCActPeditTTL}, TCAction{Kind: TCActCsum}, TCAction{Kind: TCActRedirect, Dev: up})
	}
	in := func(first ...TCAction) []TCAction {
		return append(first, TCAction{Kind: TCActPeditEth, EthDst: tp.p.MAC, EthSrc: w.ifc.MAC},
			TCAction{Kind: TCActPeditTTL}, TCAction{Kind: TCActCsum}, TCAction{Kind: TCActRedirect, Dev: rep})
	}
	host := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, 32) }
	rule := func(dev string, chain uint32, prio uint16, m TCMatch, o Origin, acts []TCAction) TCRule {
		return TCRule{Dev: dev, Chain: chain, Prio: prio, Proto: TCProtoIPv4, Match: m, Actions: acts,
			Flags: flags, Origin: o, Reason: why}
	}
	rs := []TCRule{
		rule(rep, TCChain, TCPrioNAT, TCMatch{DstMAC: w.ifc.MAC, SrcIP: host(w.fixed), CTState: "-trk"}, po, entry),
		rule(rep, chain, TCPrioNATNew, TCMatch{CTState: "+trk+new"}, po, out(ct(true, "src", w.natAddr))),
		rule(rep, chain, TCPrioNATEst, TCMatch{CTState: "+trk+est"}, po, out()),
		rule(up, chain, TCPrioNATEst, TCMatch{DstIP: host(w.fixed), CTState: "+trk+est"}, po, in()),
	}
	if w.fip != nil {
		fo := Origin{KindFloatingIP, w.fip.ID}
		rs = append(rs,
			rule(up, TCChain, TCPrioNAT, TCMatch{DstIP: host(w.natAddr), CTState: "-trk"}, fo, entry),
			rule(up, chain, TCPrioNATNew, TCMatch{DstIP: host(w.natAddr), CTState: "+trk+new"}, fo, in(ct(true, "dst", w.fixed))))
	} else if k := up + "\x00" + w.rt.ID; !snatDone[k] {
		snatDone[k] = true
		rs = append(rs, rule(up, TCChain, TCPrioNAT, TCMatch{DstIP: host(w.natAddr), CTState: "-trk"}, Origin{KindRouter, w.rt.ID}, entry))
	}
	return rs
}
