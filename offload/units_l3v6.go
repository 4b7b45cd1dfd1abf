package offload

import (
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
)

// IPv6 in the OpenFlow L3 stage: east-west routing only. As in Neutron, IPv6 is never
// NATed; floating IPs and SNAT stay IPv4, and IPv6 through the external gateway is not
// compiled (its next hop would need ND learning on the external network, which the
// pipeline does for ARP only). Per router interface with an IPv6 address the pipeline
// answers neighbour solicitations for the gateway address and for the interface MAC's
// EUI-64 link-local address (what hosts that learn routes from router advertisements use
// as their next hop; offlane sends no RAs, so VMs configure the gateway statically or
// from the subnet's host routes), answers ICMPv6 echo to both, and routes by longest
// prefix with the hop limit decremented. Next hops resolve from static entries: the
// IPv6 fixed IPs of the routed networks' ports, local and remote.

// ICMPv6 types (RFC 4443, RFC 4861).
const (
	icmp6EchoRequest = 128
	icmp6EchoReply   = 129
	icmp6NS          = 135
	icmp6NA          = 136
)

// ndFlagsRSO is the neighbour advertisement's Router, Solicited and Override flags (the
// nd_reserved word), in the decimal OVS prints.
var ndFlagsRSO = strconv.FormatUint(0xe0000000, 10)

// Priorities of the ND responder in TableL2 (beside the ARP responder's).
const (
	prioL3NDNoSLL uint16 = 112 // a solicitation without a source link-layer option: not answered
	prioL3NA      uint16 = 100 // TableL3NA: the advertisement's target link-layer option
)

// ndResponder answers neighbour solicitations for ip on network z with mac, to local
// ports: the solicitation is turned into a solicited advertisement with the Router and
// Override flags and the source link-layer option rewritten into a target link-layer
// option naming mac (TableL3NA writes it), sent back where it came from. OVS fixes the
// ICMPv6 checksum. Solicitations without a source link-layer option (duplicate address
// detection from ::, which must not be answered to its sender) are dropped, and so are
// solicitations arriving over the network's patch port: every node answers its own VMs.
func (e *emitter) ndResponder(z, patch int, ip netip.Addr, mac string) {
	m := func() *match {
		return e.nm().proto("icmp6").reg(RegNetwork, z).icmpType(icmp6NS).ndTarget(hostPrefix(ip))
	}
	e.add(TableL2, prioL3ARP, m(), joinActions("move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]", "set_field:"+mac+"->eth_src",
		"move:NXM_NX_IPV6_SRC[]->NXM_NX_IPV6_DST[]", "set_field:"+ip.String()+"->ipv6_src",
		"set_field:"+strconv.Itoa(icmp6NA)+"->icmpv6_type", "set_field:"+ndFlagsRSO+"->nd_reserved", "set_field:2->nd_options_type",
		actResubmit(TableL3NA)))
	e.add(TableL2, prioL3NDNoSLL, m().add(rNDLL, "nd_sll=00:00:00:00:00:00"), "drop")
	if patch != 0 {
		e.add(TableL2, prioL3ARPPatch, m().inPort(patch), "drop")
	}
	e.add(TableL3NA, prioL3NA, e.nm().proto("icmp6").reg(RegNetwork, z).icmpType(icmp6NA).ndTarget(hostPrefix(ip)),
		joinActions("set_field:"+mac+"->nd_tll", "IN_PORT"))
}

// ownV6 answers ICMPv6 echo to a router address (back into the source network) and
// drops anything else sent to it.
// rz is the router's routed zone (units_l3ct.go).
func (e *emitter) ownV6(zone, rz int, ip netip.Addr) {
	echo := func() *match {
		return e.nm().proto("icmp6").reg(RegRouter, zone).l3Dst(hostPrefix(ip)).icmpType(icmp6EchoRequest)
	}
	acts := joinActions("push:NXM_OF_ETH_SRC[]", "move:NXM_OF_ETH_DST[]->NXM_OF_ETH_SRC[]", "pop:NXM_OF_ETH_DST[]",
		"move:NXM_NX_IPV6_SRC[]->NXM_NX_IPV6_DST[]", "set_field:"+ip.String()+"->ipv6_src",
		"set_field:"+strconv.Itoa(icmp6EchoReply)+"->icmpv6_type", "set_field:0->in_port", "ct_clear", actResubmit(TableL2))
	e.add(TableL3Route, prioL3Echo, echo(), acts)
	if rz > 0 {
		e.routedEcho(rz, echo(), acts)
	}
	e.add(TableL3Route, prioL3Own, e.nm().proto("ipv6").reg(RegRouter, zone).l3Dst(hostPrefix(ip)), "drop")
}

// xxregNextHop6 is the 128-bit register holding the IPv6 next hop (reg8..reg11).
var xxregNextHop6 = "xxreg" + strconv.Itoa(RegNextHop6/4)

// actNextHop6IsDst: the next hop is the destination itself (a connected subnet).
var actNextHop6IsDst = "move:NXM_NX_IPV6_DST[]->NXM_NX_XXREG" + strconv.Itoa(RegNextHop6/4) + "[]"

// actSetNextHop6 loads an IPv6 next hop, in hex as OVS prints a 128-bit register.
func actSetNextHop6(a netip.Addr) string {
	b := a.As16()
	h := strings.TrimLeft(hex.EncodeToString(b[:]), "0")
	if h == "" {
		h = "0"
	}
	return "set_field:0x" + h + "->" + xxregNextHop6
}

// nextHop6 matches an IPv6 next hop in the four registers of xxreg2 (OVS prints a
// 128-bit register match as its 32-bit words).
func (m *match) nextHop6(a netip.Addr) *match {
	b := a.As16()
	for i := 0; i < 4; i++ {
		w := uint32(b[4*i])<<24 | uint32(b[4*i+1])<<16 | uint32(b[4*i+2])<<8 | uint32(b[4*i+3])
		m.addKV(rReg+RegNextHop6+i, regNames[RegNextHop6+i], func(buf []byte) []byte {
			if w == 0 {
				return append(buf, '0') // OVS prints %#x: a zero word has no 0x
			}
			return strconv.AppendUint(append(buf, "0x"...), uint64(w), 16)
		})
	}
	return m
}

// l3V6PipelineFlows are the fixed IPv6 flows of the L3 stage: new IPv6 connections are
// committed in the source network's zone like IPv4 ones, link-local and multicast
// addresses are never routed, and an advertisement TableL2 did not start is dropped.
func (e *emitter) l3V6PipelineFlows() {
	e.add(TableL3Commit, prioCommit, e.nm().ctState("+new+trk").proto("ipv6"), joinActions("ct(commit,"+ctZone+")", actGoto(TableL3In)))
	e.add(TableL3Commit, prioDeliverAny, e.nm().proto("ipv6"), actGoto(TableL3In))
	ll := netip.MustParsePrefix("fe80::/10")
	e.add(TableL3Route, prioL3Own, e.nm().proto("ipv6").l3Src(ll), "drop")
	e.add(TableL3Route, prioL3Own, e.nm().proto("ipv6").l3Dst(ll), "drop")
	e.add(TableL3Route, prioL3Own, e.nm().proto("ipv6").l3Dst(netip.MustParsePrefix("ff00::/8")), "drop")
	e.add(TableL3NA, prioMiss, nil, "drop")
}
