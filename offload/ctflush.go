package offload

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Conntrack flushes on security group changes. The pipeline lets established
// connections through without looking at the rules again (ct_state=+est), so a
// connection a removed rule allowed would keep flowing until conntrack expires it.
// Neutron's OVS firewall deletes the affected conntrack entries; so does the agent, with
// what ConntrackFlushes returns, after the new flows are in (so a flushed connection's
// next packet meets the new rules: if no rule allows it, it is dropped; if one still
// does, it is committed again).

// CTFlush selects the conntrack entries one removed permission of one port allowed: the
// entries of Zone whose original-direction tuple matches every field set. The port is
// the destination of an ingress permission and the source of an egress one.
type CTFlush struct {
	// Zone is the conntrack zone: the network's local VLAN.
	Zone uint16 `json:"zone"`
	// PortID and Direction say whose permission it was (for logs).
	PortID    string `json:"port_id"`
	Direction string `json:"direction"` // ingress | egress
	EtherType string `json:"ethertype"` // IPv4 | IPv6
	// Src and Dst are the original direction's addresses; the zero Prefix is any.
	Src netip.Prefix `json:"src"`
	Dst netip.Prefix `json:"dst"`
	// Proto is the IP protocol, ProtoAny for every protocol.
	Proto int `json:"proto"`
	// PortMin/PortMax are as in Rule: the destination port range for TCP, UDP and SCTP,
	// the ICMP type and code for ICMP(v6); -1 when not given.
	PortMin int `json:"port_min"`
	PortMax int `json:"port_max"`
}

// CTTuple is a conntrack entry's original-direction tuple, as `ovs-appctl
// dpctl/dump-conntrack` prints it in orig=(...).
type CTTuple struct {
	Proto            int
	Src, Dst         netip.Addr
	SrcPort, DstPort int // protocols with ports
	ICMPID           int // ICMP(v6)
	ICMPType         int
	ICMPCode         int
}

// maxHostFlushes: above this many remote hosts for the same port, permission and
// port address (a large remote group shrinking), one flush without the remote address
// replaces them, as each flush costs one call into ovs-vswitchd.
const maxHostFlushes = 16

// ConntrackFlushes compares two successive IRs of a node and returns the conntrack
// flushes that cut what old allowed and cur no longer does, sorted and without
// duplicates (none when old or cur is nil). It considers every local port present in
// both, plugged (OFPort > 0) in both and filtered in cur (port security on, not a
// network:* port): the permissions of its groups (rules with remote groups resolved to
// address sets) before and after; a permission gone and not covered by one that remains
// yields one flush per port address of its family (fixed IPs, allowed address pairs, and
// the EUI-64 link-local address for IPv6) in the zone of the port's network, and in the
// routed zone of each router of that network (units_l3ct.go). A port that
// was not filtered before had every permission. Ports deleted or no longer filtered need
// nothing: their traffic no longer meets security groups. Stateless groups are enforced
// statefully by the pipeline (see the planner's reason), so they are treated alike.
func ConntrackFlushes(old, cur *IR) []CTFlush {
	if old == nil || cur == nil {
		return nil
	}
	d := newPermDiff(old, cur)
	var out []CTFlush
	for id, op := range old.Ports {
		cp := cur.Ports[id]
		if cp == nil || op.OFPort <= 0 || cp.OFPort <= 0 || !sgFiltered(cp) {
			continue
		}
		seg := old.Segments[op.NetworkID]
		if seg == nil || !d.portMayLose(op, cp) {
			continue
		}
		removed := d.removed(op, cp)
		if len(removed) == 0 {
			continue
		}
		out = append(out, portFlushes(seg.LocalVLAN, op, removed)...)
		// Routed connections are tracked in the routed zone of the port's routers.
		for _, z := range routedZones(old, cur, op.NetworkID) {
			if z != seg.LocalVLAN {
				out = append(out, portFlushes(z, op, removed)...)
			}
		}
	}
	return normalizeFlushes(out)
}

// routedZones are the routed zones (RoutedZone) of the routers with an interface on
// network net in old or cur, sorted and unique: where the port's east-west routed
// connections are tracked (the router's backend is not in the IR: a zone of a router
// routed in a namespace holds none of them, and its flush finds nothing of the port's).
func routedZones(old, cur *IR, net string) []uint16 {
	var out []uint16
	for _, ir := range []*IR{old, cur} {
		for _, r := range ir.Routers {
			for _, ri := range r.Interfaces {
				if ri.NetworkID == net {
					if z := RoutedZone(ir, r); z != 0 {
						out = append(out, z)
					}
					break
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// sgFiltered: the port's traffic meets its security groups (and conntrack).
func sgFiltered(p *Port) bool { return p.PortSecurity && !trusted(p.DeviceOwner) }

// perm is one permission: a rule with one remote prefix (the zero Prefix is any).
type perm struct {
	dir, ether string
	proto      int
	min, max   int
	remote     netip.Prefix
}

// allowAll is what an unfiltered port may do.
var allowAll = []perm{
	{dir: Egress, ether: IPv4, proto: ProtoAny, min: -1, max: -1},
	{dir: Egress, ether: IPv6, proto: ProtoAny, min: -1, max: -1},
	{dir: Ingress, ether: IPv4, proto: ProtoAny, min: -1, max: -1},
	{dir: Ingress, ether: IPv6, proto: ProtoAny, min: -1, max: -1},
}

// hasPorts: the protocols whose rules carry a destination port range.
func hasPorts(proto int) bool { return proto == ProtoTCP || proto == ProtoUDP || proto == ProtoSCTP }

func isICMP(proto int) bool { return proto == ProtoICMP || proto == ProtoICMPv6 }

// covers reports whether q allows everything p does.
func (q perm) covers(p perm) bool {
	if q.dir != p.dir || q.ether != p.ether || !prefixCovers(q.remote, p.remote) {
		return false
	}
	if q.proto == ProtoAny {
		return true
	}
	if q.proto != p.proto {
		return false
	}
	switch {
	case hasPorts(q.proto):
		return q.min < 0 || p.min >= 0 && q.min <= p.min && p.max <= q.max
	case isICMP(q.proto):
		return q.min < 0 || q.min == p.min && (q.max < 0 || q.max == p.max)
	}
	return true
}

// prefixCovers: q (the zero Prefix = any) contains all of p.
func prefixCovers(q, p netip.Prefix) bool {
	if !q.IsValid() {
		return true
	}
	return p.IsValid() && q.Bits() <= p.Bits() && q.Contains(p.Addr())
}

// permDiff memoises, for one pair of IRs, which groups changed and their permissions.
type permDiff struct {
	old, cur *IR
	// affected: groups whose permissions may differ (the group changed, or one of its
	// remote groups' address sets did).
	affected map[string]bool
	perms    [2]map[string][]perm         // 0 old, 1 cur: by group
	sets     [2]map[string][]netip.Prefix // address sets by group
	memo     map[string][]perm            // removed, by (old groups, cur groups, filtered before)
}

func newPermDiff(old, cur *IR) *permDiff {
	d := &permDiff{old: old, cur: cur, affected: map[string]bool{}, memo: map[string][]perm{},
		perms: [2]map[string][]perm{{}, {}}, sets: [2]map[string][]netip.Prefix{{}, {}}}
	// address sets that changed: the groups of every member added, removed or changed
	setChanged := map[string]bool{}
	for id, m0 := range old.Members {
		if m1 := cur.Members[id]; m1 == nil || (m1 != m0 && !m0.equal(m1)) {
			for _, g := range m0.Groups {
				setChanged[g] = true
			}
		}
	}
	for id, m1 := range cur.Members {
		if old.Members[id] == nil { // changed ones were seen above
			for _, g := range m1.Groups {
				setChanged[g] = true
			}
		}
	}
	refsChanged := func(g *SecurityGroup) bool {
		for _, r := range g.Rules {
			if r.RemoteGroupID != "" && setChanged[r.RemoteGroupID] {
				return true
			}
		}
		return false
	}
	for id, g0 := range old.SecurityGroups {
		g1 := cur.SecurityGroups[id]
		if g1 == nil || (g1 != g0 && !g0.equal(g1)) || refsChanged(g0) || refsChanged(g1) {
			d.affected[id] = true
		}
	}
	for id := range cur.SecurityGroups {
		if old.SecurityGroups[id] == nil {
			d.affected[id] = true
		}
	}
	return d
}

// portMayLose is the cheap test (cp is filtered): a port that was filtered, kept its
// groups and whose groups are unaffected lost nothing (its own addresses do not change
// what it may do, only which flushes a loss needs).
func (d *permDiff) portMayLose(op, cp *Port) bool {
	if !sgFiltered(op) || !slices.Equal(op.SecurityGroups, cp.SecurityGroups) {
		return true
	}
	for _, g := range op.SecurityGroups {
		if d.affected[g] {
			return true
		}
	}
	return false
}

// removed are the permissions op had and cp has no longer (not covered by any left).
func (d *permDiff) removed(op, cp *Port) []perm {
	wasFiltered := sgFiltered(op)
	key := strconv.FormatBool(wasFiltered) + "\x00" + strings.Join(op.SecurityGroups, "\x01") + "\x00" + strings.Join(cp.SecurityGroups, "\x01")
	if r, ok := d.memo[key]; ok {
		return r
	}
	// candidates: what the port had through groups it left or groups that changed (an
	// unchanged group it keeps grants the same permissions still)
	var before []perm
	if !wasFiltered {
		before = allowAll
	} else {
		for _, g := range op.SecurityGroups {
			if d.affected[g] || !slices.Contains(cp.SecurityGroups, g) {
				before = append(before, d.groupPerms(0, g)...)
			}
		}
	}
	var after []perm
	have := map[perm]bool{}
	for _, g := range cp.SecurityGroups {
		for _, p := range d.groupPerms(1, g) {
			if !have[p] {
				have[p] = true
				after = append(after, p)
			}
		}
	}
	var out []perm
	seen := map[perm]bool{}
	for _, p := range before {
		if have[p] || seen[p] {
			continue
		}
		seen[p] = true
		if !slices.ContainsFunc(after, func(q perm) bool { return q.covers(p) }) {
			out = append(out, p)
		}
	}
	d.memo[key] = out
	return out
}

// groupPerms are a group's permissions in old (side 0) or cur (side 1).
func (d *permDiff) groupPerms(side int, id string) []perm {
	if ps, ok := d.perms[side][id]; ok {
		return ps
	}
	ir := d.old
	if side == 1 {
		ir = d.cur
	}
	var out []perm
	if g := ir.SecurityGroups[id]; g != nil {
		for _, r := range g.Rules {
			base := perm{dir: r.Direction, ether: r.EtherType, proto: r.Protocol, min: r.PortMin, max: r.PortMax}
			switch {
			case r.Protocol == ProtoAny || !hasPorts(r.Protocol) && !isICMP(r.Protocol):
				base.min, base.max = -1, -1
			case hasPorts(r.Protocol) && r.PortMin <= 0 && r.PortMax == 65535:
				base.min, base.max = -1, -1 // the whole range
			}
			var remotes []netip.Prefix
			switch {
			case r.RemoteGroupID != "":
				set, ok := d.sets[side][r.RemoteGroupID]
				if !ok {
					set = ir.AddressSet(r.RemoteGroupID)
					d.sets[side][r.RemoteGroupID] = set
				}
				remotes = set // empty: the rule allows nothing
			case r.RemotePrefix.IsValid() && r.RemotePrefix.Bits() > 0:
				remotes = []netip.Prefix{r.RemotePrefix}
			default:
				out = append(out, base)
				continue
			}
			for _, rp := range remotes {
				if rp.Addr().Is4() != (r.EtherType == IPv4) {
					continue // the other family's addresses never match the rule
				}
				p := base
				if rp.Bits() > 0 {
					p.remote = rp
				}
				out = append(out, p)
			}
		}
	}
	d.perms[side][id] = out
	return out
}

// portFlushes are the flushes of a port's removed permissions, one per port address of
// the permission's family.
func portFlushes(zone uint16, p *Port, removed []perm) []CTFlush {
	var v4, v6 []netip.Prefix
	add := func(pfx netip.Prefix) {
		if pfx.Bits() == 0 {
			pfx = netip.Prefix{} // any address (a 0.0.0.0/0 pair)
		}
		if pfx.Addr().Is4() {
			v4 = append(v4, pfx)
		} else {
			v6 = append(v6, pfx)
		}
	}
	for _, ip := range p.IPs {
		add(hostPrefix(ip))
	}
	for _, ap := range p.AllowedPairs {
		add(ap.Prefix.Masked())
	}
	if p.MAC != "" && len(p.MAC) == 17 {
		add(hostPrefix(linkLocal(p.MAC)))
	}
	var out []CTFlush
	for _, r := range removed {
		own := v4
		if r.ether == IPv6 {
			own = v6
		}
		for _, a := range own {
			f := CTFlush{Zone: zone, PortID: p.ID, Direction: r.dir, EtherType: r.ether, Proto: r.proto, PortMin: r.min, PortMax: r.max}
			if r.dir == Ingress {
				f.Src, f.Dst = r.remote, a
			} else {
				f.Src, f.Dst = a, r.remote
			}
			out = append(out, f)
		}
	}
	return out
}

// normalizeFlushes collapses large host lists, drops flushes another one of the same
// port covers, and sorts.
func normalizeFlushes(fs []CTFlush) []CTFlush {
	if len(fs) == 0 {
		return nil
	}
	// collapse: too many remote hosts for one (port, permission, port address)
	type key struct {
		f CTFlush // with the remote side cleared
	}
	remoteOf := func(f CTFlush) netip.Prefix {
		if f.Direction == Ingress {
			return f.Src
		}
		return f.Dst
	}
	clearRemote := func(f CTFlush) CTFlush {
		if f.Direction == Ingress {
			f.Src = netip.Prefix{}
		} else {
			f.Dst = netip.Prefix{}
		}
		return f
	}
	hosts := map[key]int{}
	for _, f := range fs {
		if r := remoteOf(f); r.IsValid() && r.IsSingleIP() {
			hosts[key{clearRemote(f)}]++
		}
	}
	for i, f := range fs {
		if r := remoteOf(f); r.IsValid() && r.IsSingleIP() && hosts[key{clearRemote(f)}] > maxHostFlushes {
			fs[i] = clearRemote(f)
		}
	}
	slices.SortFunc(fs, compareFlush)
	fs = slices.Compact(fs)
	// drop what a broader flush of the same port and zone covers (sorted: each port's
	// flushes are one run)
	out := fs[:0]
	for start := 0; start < len(fs); {
		end := start + 1
		for end < len(fs) && fs[end].Zone == fs[start].Zone && fs[end].PortID == fs[start].PortID {
			end++
		}
		run := fs[start:end]
		for i, f := range run {
			covered := false
			for j, g := range run {
				if j != i && g.covers(f) && (!f.covers(g) || j < i) {
					covered = true
					break
				}
			}
			if !covered {
				out = append(out, f)
			}
		}
		start = end
	}
	return slices.Clip(out)
}

// covers reports whether f selects every entry o does.
func (f CTFlush) covers(o CTFlush) bool {
	if f.Zone != o.Zone || f.EtherType != o.EtherType || !prefixCovers(f.Src, o.Src) || !prefixCovers(f.Dst, o.Dst) {
		return false
	}
	return perm{dir: "d", ether: "e", proto: f.Proto, min: f.PortMin, max: f.PortMax}.
		covers(perm{dir: "d", ether: "e", proto: o.Proto, min: o.PortMin, max: o.PortMax})
}

func compareFlush(a, b CTFlush) int {
	return cmp.Or(cmp.Compare(a.Zone, b.Zone), strings.Compare(a.PortID, b.PortID), strings.Compare(a.Direction, b.Direction),
		strings.Compare(a.EtherType, b.EtherType), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.PortMin, b.PortMin),
		cmp.Compare(a.PortMax, b.PortMax), comparePrefixOrAny(a.Src, b.Src), comparePrefixOrAny(a.Dst, b.Dst))
}

func comparePrefixOrAny(a, b netip.Prefix) int {
	switch {
	case !a.IsValid() || !b.IsValid():
		return cmp.Compare(boolInt(a.IsValid()), boolInt(b.IsValid()))
	}
	return comparePrefix(a, b)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Matches reports whether a conntrack entry of the flush's zone, by its original
// tuple, is one the flush selects.
func (f CTFlush) Matches(t CTTuple) bool {
	if !t.Src.IsValid() || !t.Dst.IsValid() || t.Src.Is4() != (f.EtherType == IPv4) || t.Dst.Is4() != (f.EtherType == IPv4) {
		return false
	}
	if f.Src.IsValid() && !f.Src.Contains(t.Src) || f.Dst.IsValid() && !f.Dst.Contains(t.Dst) {
		return false
	}
	if f.Proto == ProtoAny {
		return true
	}
	if f.Proto != t.Proto {
		return false
	}
	switch {
	case hasPorts(f.Proto):
		return f.PortMin < 0 || f.PortMin <= t.DstPort && t.DstPort <= f.PortMax
	case isICMP(f.Proto):
		return (f.PortMin < 0 || t.ICMPType == f.PortMin) && (f.PortMax < 0 || t.ICMPCode == f.PortMax)
	}
	return true
}

// Tuple is the flush as an `ovs-appctl dpctl/flush-conntrack` tuple: the fields OVS's
// partial tuples can express (single addresses, the protocol, one destination port).
// A wider flush selects more than the tuple says; see Exact.
func (f CTFlush) Tuple() string {
	v6 := f.EtherType == IPv6
	var b []string
	if f.Src.IsValid() && f.Src.IsSingleIP() {
		b = append(b, pick(v6, "ct_ipv6_src=", "ct_nw_src=")+f.Src.Addr().String())
	}
	if f.Dst.IsValid() && f.Dst.IsSingleIP() {
		b = append(b, pick(v6, "ct_ipv6_dst=", "ct_nw_dst=")+f.Dst.Addr().String())
	}
	if f.Proto >= 0 {
		b = append(b, "ct_nw_proto="+strconv.Itoa(f.Proto))
	}
	switch {
	case hasPorts(f.Proto) && f.PortMin > 0 && f.PortMin == f.PortMax:
		b = append(b, "ct_tp_dst="+strconv.Itoa(f.PortMin))
	case isICMP(f.Proto) && f.PortMin >= 0:
		b = append(b, "icmp_type="+strconv.Itoa(f.PortMin))
		if f.PortMax >= 0 {
			b = append(b, "icmp_code="+strconv.Itoa(f.PortMax))
		}
	}
	return strings.Join(b, ",")
}

// Exact reports whether the partial tuple of Tuple selects exactly the flush's entries
// in OVS 3.1: every address single or any, the port range one port or any, at least one
// address (an empty tuple would flush the whole zone), and not ICMP — OVS compares an
// ICMP entry's id, type and code exactly, so a partial ICMP tuple matches nothing (an
// applier dumps the zone and flushes the matching entries one by one instead).
func (f CTFlush) Exact() bool {
	for _, p := range []netip.Prefix{f.Src, f.Dst} {
		if p.IsValid() && !p.IsSingleIP() {
			return false
		}
	}
	if !f.Src.IsValid() && !f.Dst.IsValid() || isICMP(f.Proto) {
		return false
	}
	return !hasPorts(f.Proto) || f.PortMin < 0 || f.PortMin > 0 && f.PortMin == f.PortMax
}

// Args are `ovs-appctl dpctl/flush-conntrack`'s arguments for the partial tuple:
// zone=N and Tuple.
func (f CTFlush) Args() []string {
	return []string{"zone=" + strconv.Itoa(int(f.Zone)), f.Tuple()}
}

// String describes the flush (for logs): zone, port, direction and the full filter.
func (f CTFlush) String() string {
	orAny := func(p netip.Prefix) string {
		if !p.IsValid() {
			return "any"
		}
		return prefixText(p)
	}
	s := fmt.Sprintf("zone=%d port=%s %s %s src=%s dst=%s", f.Zone, f.PortID, f.Direction, f.EtherType, orAny(f.Src), orAny(f.Dst))
	if f.Proto < 0 {
		return s + " proto=any"
	}
	s += " proto=" + strconv.Itoa(f.Proto)
	switch {
	case hasPorts(f.Proto) && f.PortMin >= 0:
		s += fmt.Sprintf(" dst_port=%d-%d", f.PortMin, f.PortMax)
	case isICMP(f.Proto) && f.PortMin >= 0:
		s += fmt.Sprintf(" icmp_type=%d", f.PortMin)
		if f.PortMax >= 0 {
			s += fmt.Sprintf(" icmp_code=%d", f.PortMax)
		}
	}
	return s
}

// String is the full tuple in `ovs-appctl dpctl/flush-conntrack` syntax: with both
// addresses, the protocol and its ports (or ICMP id, type and code), OVS flushes exactly
// this entry.
func (t CTTuple) String() string {
	v6 := t.Src.Is6()
	b := []string{pick(v6, "ct_ipv6_src=", "ct_nw_src=") + t.Src.String(), pick(v6, "ct_ipv6_dst=", "ct_nw_dst=") + t.Dst.String(),
		"ct_nw_proto=" + strconv.Itoa(t.Proto)}
	switch {
	case isICMP(t.Proto):
		b = append(b, "icmp_type="+strconv.Itoa(t.ICMPType), "icmp_code="+strconv.Itoa(t.ICMPCode), "icmp_id="+strconv.Itoa(t.ICMPID))
	case t.SrcPort > 0 || t.DstPort > 0:
		b = append(b, "ct_tp_src="+strconv.Itoa(t.SrcPort), "ct_tp_dst="+strconv.Itoa(t.DstPort))
	}
	return strings.Join(b, ",")
}
