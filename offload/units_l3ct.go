package offload

import "strconv"

// Conntrack of east-west routed connections (routers in the pipeline). A routed
// packet meets two security group stages, the source port's egress on its network and
// the destination port's ingress on another. Were each stage to track in its own
// network's zone, every routed packet would need two conntrack lookups (a ct_clear and a
// second recirculation), and a single lookup per packet would leave each zone seeing one
// direction only (TCP would never be established in either). So both stages, in both
// directions and on every host, track a compiled router's east-west traffic in one zone,
// the router's routed zone (RoutedZone): the egress stage for frames to a router
// interface MAC, the ingress stage for frames from one (routed here or by the host of
// the source, arriving over the overlay). The router then delivers without ct_clear: the
// destination's ingress security groups see the packet's one lookup, as for a switched
// packet, and a new connection is committed there (TableCommit), only once they allowed
// it (or on its way to another host, whose ingress decides). North-south traffic keeps
// its NAT in the router's own zone; its source side is committed in the routed zone
// before NAT (TableL3SNATIn), where the reply's ingress lookup finds it.

// Priorities of the routed zone's flows (one above the generic flow of the same table).
const (
	prioRoutedTrack  = prioSGTrack + 1    // TableEgressSG, TableIngressSG
	prioRoutedCommit = prioCommit + 1     // TableCommit, TableL3Commit
	prioRoutedNAT    = prioPort + 1       // TableL3SNATIn
	prioRoutedEcho   = prioL3Echo + 1     // TableL3Route
	prioRoutedOut    = prioDeliverAny + 1 // TableL3Deliver (below the unresolved drop)
)

// routedNet is one interface network of a router: its local VLAN and the interface MAC.
type routedNet struct {
	z   int
	mac string
}

// RoutedZone is the conntrack zone of a router's east-west routed connections on a
// node: the lowest local VLAN of the router's interface networks (0 without one). The
// router's interface subnets never overlap, so its routed tuples (between two of them)
// never meet the switched ones of that network (within one). Two routers whose lowest
// network is the same share the zone; their tuples meet only where their other subnets
// overlap, as in that network's own zone (the reply side of both). Depends on the IR
// only, so the compiler and ConntrackFlushes agree.
func RoutedZone(ir *IR, r *Router) uint16 {
	var z uint16
	for _, ri := range r.Interfaces {
		if seg := ir.Segments[ri.NetworkID]; seg != nil && seg.LocalVLAN > 0 && (z == 0 || seg.LocalVLAN < z) {
			z = seg.LocalVLAN
		}
	}
	return z
}

// ctZone matches the zone of the packet's last conntrack lookup.
func (m *match) ctZone(z int) *match { return m.addKV(rCtState, "ct_zone", appendDec(z)) }

// routedCT emits a compiled router's routed-zone flows: rz is its routed zone, zone its
// router (NAT) zone, nets its interfaces served here.
func (e *emitter) routedCT(rz, zone int, nets []routedNet, gateway bool) {
	ct := func(t uint8) string {
		return "ct(table=" + strconv.Itoa(int(t)) + ",zone=" + strconv.Itoa(rz) + ")"
	}
	commit := "ct(commit,zone=" + strconv.Itoa(rz) + ")"
	for _, n := range nets {
		z := n.z
		if z == rz {
			continue // the generic flows track and commit in reg6, the routed zone
		}
		for _, p := range []string{"ip", "ipv6"} {
			e.add(TableEgressSG, prioRoutedTrack, e.nm().ctState("-trk").proto(p).reg(RegNetwork, z).dlDst(n.mac), ct(TableEgressSG))
			e.add(TableIngressSG, prioRoutedTrack, e.nm().ctState("-trk").proto(p).reg(RegNetwork, z).dlSrc(n.mac), ct(TableIngressSG))
			e.add(TableCommit, prioRoutedCommit, e.nm().ctState("+new+trk").ctZone(rz).proto(p).reg(RegNetwork, z).dlSrc(n.mac),
				joinActions(commit, actGoto(TableDeliver)))
		}
	}
	// From an interface network (tracked in the routed zone): no commit yet.
	e.add(TableL3Commit, prioRoutedCommit, e.nm().ctZone(rz).reg(RegRouter, zone), actGoto(TableL3In))
	// Routed between the router's networks: its one lookup stands for the destination.
	e.add(TableL3Deliver, prioRoutedOut, e.nm().ctZone(rz).reg(RegRouter, zone), joinActions("set_field:0->in_port", actResubmit(TableL2)))
	if gateway {
		z := strconv.Itoa(zone)
		e.add(TableL3SNATIn, prioRoutedNAT, e.nm().ctState("+new+trk").ctZone(rz).proto("ip").reg(RegRouter, zone),
			joinActions(commit, "ct(table="+strconv.Itoa(int(TableL3SNAT))+",zone="+z+",nat)"))
	}
}

// routedEcho adds, above an echo responder flow (table, prio, m, actions), its variant
// for a new request tracked in the routed zone rz (from an interface network): commit
// it there first, where the reply's ingress lookup finds it.
func (e *emitter) routedEcho(rz int, m *match, actions string) {
	e.add(TableL3Route, prioRoutedEcho, m.ctState("+new+trk").ctZone(rz), joinActions("ct(commit,zone="+strconv.Itoa(rz)+")", actions))
}
