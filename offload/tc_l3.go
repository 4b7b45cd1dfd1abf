package offload

import (
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/offlane/offlane/hwdetect"
)

// The tc compiler's QoS and routing part (issue 6's IR on tc ports): police for a
// port's bandwidth limits, pedit + csum for DSCP marking and for east-west routing
// (router MAC rewrite and TTL decrement); SNAT and floating IPs are tc_nat.go's.
//
// QoS rules come before a representor's L2 rules and end with "continue", so the frame
// goes on to the L2 rules once policed or marked:
//
//	prio 5  protocol all  police (over the rate: drop)      continue   [egress limit, representor ingress]
//	prio 6  protocol ip   pedit dscp + csum iph             continue   [DSCP, representor ingress]
//	prio 8  protocol ip   dst_mac <router> dst_ip <port>/32 → pedit eth + ttl, csum, deliver
//	prio 5  protocol all  police                            continue   [ingress limit, representor egress]

// psched ticks: the kernel keeps police bursts as the time to send them at the rate, in
// units of 64 ns (PSCHED_SHIFT 6), so a burst is exact only to that granularity.
const ticksPerSecond = 1_000_000_000 / 64

// PoliceBurstTicks is the police burst (bytes at rate bytes/s) as the kernel's
// tc_police.burst: psched ticks, at most 2^32-1.
func PoliceBurstTicks(rate, burst uint64) uint32 {
	if rate == 0 {
		return 0
	}
	hi, lo := bits.Mul64(burst, ticksPerSecond)
	if hi >= rate {
		return 1<<32 - 1
	}
	t, _ := bits.Div64(hi, lo, rate)
	return uint32(min(t, 1<<32-1))
}

// PoliceBurstBytes is the burst in bytes that ticks stand for at rate: the smallest
// byte count with those ticks, so PoliceBurstBytes(PoliceBurstTicks(b)) is a fixed point
// (for rates up to 2^64 / 2^32 bytes/s).
func PoliceBurstBytes(rate uint64, ticks uint32) uint64 {
	hi, lo := bits.Mul64(uint64(ticks), rate)
	lo, carry := bits.Add64(lo, ticksPerSecond-1, 0)
	hi += carry
	if hi >= ticksPerSecond {
		return 1<<64 - 1
	}
	b, _ := bits.Div64(hi, lo, ticksPerSecond)
	return b
}

// PoliceBurst rounds a burst to what the kernel keeps (see PoliceBurstTicks).
func PoliceBurst(rate, burst uint64) uint64 {
	return PoliceBurstBytes(rate, PoliceBurstTicks(rate, burst))
}

// writeL3Action writes the tc syntax of the actions of this file; false for others.
func writeL3Action(b *strings.Builder, a *TCAction) bool {
	ctl := " pipe"
	if a.Continue {
		ctl = " continue"
	}
	switch a.Kind {
	case TCActPolice:
		b.WriteString("police rate ")
		b.WriteString(strconv.FormatUint(a.Rate, 10))
		b.WriteString("bps burst ")
		b.WriteString(strconv.FormatUint(a.Burst, 10))
		b.WriteString(" mtu 4294967295 conform-exceed drop/")
		b.WriteString(ctl[1:])
	case TCActPeditEth:
		b.WriteString("pedit ex munge eth dst set ")
		b.WriteString(a.EthDst)
		b.WriteString(" munge eth src set ")
		b.WriteString(a.EthSrc)
		b.WriteString(ctl)
	case TCActPeditTTL:
		b.WriteString("pedit ex munge ip ttl add 255")
		b.WriteString(ctl)
	case TCActPeditDSCP:
		// tos: DSCP in the top six bits, the two ECN bits kept
		fmt.Fprintf(b, "pedit ex munge ip tos set %d retain 252%s", int(a.DSCP)<<2, ctl)
	case TCActCsum:
		b.WriteString("csum iph")
		b.WriteString(ctl)
	default:
		return false
	}
	return true
}

// kbpsToBytes converts Neutron's kbit/s (1000 bit) to bytes per second.
func kbpsToBytes(kbps int) uint64 { return uint64(kbps) * 1000 / 8 }

// compileTCL3 adds the QoS and routing rules of the tc ports and returns them, with
// each port's fallbacks (feature-prefixed reasons) in fb.
func compileTCL3(ir *IR, all map[string]*tcPort, lay TCLayout, fb map[string][]string) []TCRule {
	var out []TCRule
	ids := sortedKeys(all)
	for _, id := range ids {
		out = append(out, compileTCQoS(ir, all[id], fb)...)
	}
	byNet := map[string][]*tcPort{}
	for _, id := range ids {
		byNet[all[id].p.NetworkID] = append(byNet[all[id].p.NetworkID], all[id])
	}
	out = append(out, compileTCRouting(ir, byNet, lay, fb)...)
	return out
}

// tcDecision is the plan's decision for a feature of a tc port ("" backend when the
// planner did not decide it).
func tcDecision(tp *tcPort, f Feature) Decision {
	if tp.pp != nil {
		if d := tp.pp.decision(f); d != nil {
			return *d
		}
	}
	return Decision{Feature: f}
}

func compileTCQoS(ir *IR, tp *tcPort, fb map[string][]string) []TCRule {
	if tp.p.QoSPolicyID == "" {
		return nil
	}
	q := ir.QoSPolicies[tp.p.QoSPolicyID]
	if q == nil {
		return nil
	}
	var out []TCRule
	origin := Origin{KindQoS, tp.p.ID}
	caps := &tp.nic.Capabilities
	for _, dir := range []string{Egress, Ingress} {
		f := FeatureQoSEgress
		if dir == Ingress {
			f = FeatureQoSIngress
		}
		r := q.Rule(QoSBandwidthLimit, dir)
		if r == nil || r.MaxKbps <= 0 || tcDecision(tp, f).Backend != BackendTC {
			continue
		}
		rate := kbpsToBytes(r.MaxKbps)
		burst := PoliceBurst(rate, kbpsToBytes(r.BurstKb()))
		flags, why := placement(tp, "police", caps.Police)
		if why != "" {
			fb[tp.p.ID] = append(fb[tp.p.ID], string(f)+": "+why)
		}
		// from the VM: what the representor receives; to the VM: what it sends
		out = append(out, TCRule{Dev: tp.rep, Egress: dir == Ingress, Prio: TCPrioPolice, Proto: TCProtoAll,
			Actions: []TCAction{{Kind: TCActPolice, Rate: rate, Burst: burst, Continue: true}},
			Flags:   flags, Origin: origin, Reason: why})
	}
	if r := q.Rule(QoSDSCPMarking, ""); r != nil && tcDecision(tp, FeatureDSCP).Backend == BackendTC {
		if r.DSCPMark < 0 || r.DSCPMark > 63 {
			fb[tp.p.ID] = append(fb[tp.p.ID], fmt.Sprintf("dscp: mark %d out of range 0-63: not compiled", r.DSCPMark))
		} else {
			flags, why := placement(tp, "dscp rewrite (pedit)", caps.DSCPRewrite)
			if why != "" {
				fb[tp.p.ID] = append(fb[tp.p.ID], "dscp: "+why)
			}
			out = append(out, TCRule{Dev: tp.rep, Prio: TCPrioDSCP, Proto: TCProtoIPv4,
				Actions: []TCAction{{Kind: TCActPeditDSCP, DSCP: uint8(r.DSCPMark)}, {Kind: TCActCsum, Continue: true}},
				Flags:   flags, Origin: origin, Reason: why})
		}
	}
	return out
}

// routedPort is a destination of east-west routing: a port on a subnet of a router.
type routedPort struct {
	mac  string
	ip   netip.Addr
	ifc  *RouterInterface // the router's interface on the destination's subnet
	seg  *Segment
	tp   *tcPort     // local tc port, or nil
	rp   *RemotePort // remote port, or nil
	port string      // ID
}

// compileTCRouting: for each router, traffic from a local tc port to the router's MAC
// on its subnet, addressed to a port on another subnet of the router, is routed in tc:
// destination MAC := the port's, source MAC := the router's on that subnet, TTL − 1,
// IPv4 checksum fixed, then delivered as the destination's network delivers (a local
// representor, a VTEP over VXLAN, or the uplink with the VLAN tag). The reverse
// direction is the destination's node's own rule (distributed routing).
func compileTCRouting(ir *IR, byNet map[string][]*tcPort, lay TCLayout, fb map[string][]string) []TCRule {
	type work struct {
		rid  string
		ifcs []*RouterInterface
		dsts []routedPort
	}
	var todo []work
	est := 0
	remotes := map[string][]*RemotePort{}
	for _, id := range sortedKeys(ir.RemotePorts) {
		rp := ir.RemotePorts[id]
		remotes[rp.NetworkID] = append(remotes[rp.NetworkID], rp)
	}
	for _, rid := range sortedKeys(ir.Routers) {
		rt := ir.Routers[rid]
		if !rt.AdminStateUp || len(rt.Interfaces) < 2 {
			continue
		}
		ifcs := make([]*RouterInterface, 0, len(rt.Interfaces))
		for i := range rt.Interfaces {
			if rt.Interfaces[i].CIDR.Addr().Is4() && rt.Interfaces[i].MAC != "" {
				ifcs = append(ifcs, &rt.Interfaces[i])
			}
		}
		// destinations: every port (local tc or remote) on a subnet of the router
		var dsts []routedPort
		for _, ifc := range ifcs {
			seg := ir.Segments[ifc.NetworkID]
			if seg == nil {
				continue
			}
			for _, tp := range byNet[ifc.NetworkID] {
				for _, a := range tp.p.IPs {
					if ifc.CIDR.Contains(a) && a != ifc.IP {
						dsts = append(dsts, routedPort{mac: tp.p.MAC, ip: a, ifc: ifc, seg: seg, tp: tp, port: tp.p.ID})
					}
				}
			}
			for _, rp := range remotes[ifc.NetworkID] {
				if rp.MAC == "" {
					continue
				}
				for _, a := range rp.IPs {
					if ifc.CIDR.Contains(a) && a != ifc.IP {
						dsts = append(dsts, routedPort{mac: rp.MAC, ip: a, ifc: ifc, seg: seg, rp: rp, port: rp.ID})
					}
				}
			}
		}
		for _, in := range ifcs {
			est += len(byNet[in.NetworkID]) * len(dsts)
		}
		todo = append(todo, work{rid, ifcs, dsts})
	}
	// one allocation for the rules and one for their actions (a rule per source and
	// destination: the bulk of a routed node's rules)
	out := make([]TCRule, 0, est)
	slab := make([]TCAction, 0, est*5)
	for _, w := range todo {
		rid, ifcs, dsts := w.rid, w.ifcs, w.dsts
		for _, in := range ifcs {
			for _, src := range byNet[in.NetworkID] {
				sid := src.p.ID
				if !slices.ContainsFunc(src.p.IPs, in.CIDR.Contains) {
					continue
				}
				flags, why := placement(src, "routing header rewrite (pedit)", src.nic.Capabilities.DSCPRewrite)
				n := 0
				for i := range dsts {
					d := &dsts[i]
					if d.ifc.SubnetID == in.SubnetID || d.tp == src {
						continue
					}
					start := len(slab)
					slab = append(slab, TCAction{Kind: TCActPeditEth, EthDst: d.mac, EthSrc: d.ifc.MAC}, TCAction{Kind: TCActPeditTTL}, TCAction{Kind: TCActCsum})
					var ok bool
					if slab, ok = appendDelivery(slab, d, src, lay); !ok {
						slab = slab[:start]
						continue
					}
					acts := slab[start:len(slab):len(slab)]
					out = append(out, TCRule{Dev: src.rep, Prio: TCPrioRouted, Proto: TCProtoIPv4,
						Match:   TCMatch{DstMAC: in.MAC, DstIP: netip.PrefixFrom(d.ip, 32)},
						Actions: acts, Flags: flags, Origin: Origin{KindRouter, rid}, Reason: why})
					n++
				}
				if n > 0 && why != "" {
					fb[sid] = append(fb[sid], "routing: "+why)
				}
			}
		}
	}
	return out
}

// appendDelivery appends how a routed frame reaches d from src's representor; false
// when it cannot.
func appendDelivery(acts []TCAction, d *routedPort, src *tcPort, lay TCLayout) ([]TCAction, bool) {
	if d.tp != nil {
		return append(acts, TCAction{Kind: TCActRedirect, Dev: d.tp.rep}), true
	}
	switch d.seg.Type {
	case SegVXLAN:
		if !d.rp.VTEP.IsValid() || !lay.Node.TunnelLocalIP.IsValid() {
			return acts, false
		}
		return append(acts, TCAction{Kind: TCActTunSet, TunSrc: lay.Node.TunnelLocalIP, TunDst: d.rp.VTEP, VNI: uint32(d.seg.SegmentationID), TunPort: VXLANPort},
			TCAction{Kind: TCActRedirect, Dev: lay.VXLANDev}), true
	case SegVLAN:
		return append(acts, TCAction{Kind: TCActVLANPush, VLANID: uint16(d.seg.SegmentationID)}, TCAction{Kind: TCActRedirect, Dev: src.nic.Name}), true
	case SegFlat:
		return append(acts, TCAction{Kind: TCActRedirect, Dev: src.nic.Name}), true
	}
	return acts, false
}

// tcNAT indexes the floating IPs by port and the SNAT routers by network.
type tcNAT struct {
	fip  map[string]*FloatingIP
	snat map[string][]snatIfc
}

type snatIfc struct {
	router string
	cidr   netip.Prefix
}

func newTCNAT(ir *IR) *tcNAT {
	n := &tcNAT{fip: map[string]*FloatingIP{}, snat: map[string][]snatIfc{}}
	for _, id := range sortedKeys(ir.FloatingIPs) {
		if f := ir.FloatingIPs[id]; n.fip[f.PortID] == nil {
			n.fip[f.PortID] = f
		}
	}
	for _, rid := range sortedKeys(ir.Routers) {
		rt := ir.Routers[rid]
		if rt.Gateway == nil || !rt.Gateway.EnableSNAT {
			continue
		}
		for _, ifc := range rt.Interfaces {
			n.snat[ifc.NetworkID] = append(n.snat[ifc.NetworkID], snatIfc{rid, ifc.CIDR})
		}
	}
	return n
}

// reason says why a tc port's SNAT / floating IP is not in tc ("" when the port has
// none): the capability matrix's ct level, and where NAT runs instead.
func (n *tcNAT) reason(tp *tcPort) string {
	fip := n.fip[tp.p.ID]
	snat := ""
	for _, s := range n.snat[tp.p.NetworkID] {
		if snat == "" && slices.ContainsFunc(tp.p.IPs, s.cidr.Contains) {
			snat = s.router
		}
	}
	if fip == nil && snat == "" {
		return ""
	}
	what, rid := "SNAT", snat
	if fip != nil {
		what, rid = "floating IP "+fip.FloatingIP.String(), fip.RouterID
	}
	ct := tp.nic.Capabilities.CTOffload
	if ct.Level == hwdetect.LevelHW {
		// tc_nat.go compiles it, or says why not
		return fmt.Sprintf("nat: %s of router %s: ct + nat in tc on %s", what, rid, tp.nic.Name)
	}
	drv := tp.nic.Driver
	if drv == "" {
		drv = tp.nic.Name
	}
	return fmt.Sprintf("nat: ct offload not supported by %s (%s): %s stays in router %s's backend (OVS or nftables); frames to the router's MAC leave by the uplink", drv, levelWhy(ct), what, rid)
}
