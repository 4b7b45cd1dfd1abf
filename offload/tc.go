package offload

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/offlane/offlane/hwdetect"
)

// The tc flower compiler: for ports the planner put on BackendTC (vnic direct on a
// switchdev NIC), ingress flower rules on the VF representor, the uplink and the VXLAN
// device that do what br-int/br-tun do for OVS ports: VLAN push/pop, VXLAN encap and
// decap, delivery to local representors and flooding. Pure: the applier (sriov) puts the
// rules into the kernel and diffs by cookie.

// Ethertypes a flower filter is attached for (tc's "protocol").
const (
	TCProtoAll   uint16 = 0x0003 // ETH_P_ALL
	TCProto8021Q uint16 = 0x8100 // ETH_P_8021Q: the filter can match vlan_id
	TCProtoIPv4  uint16 = 0x0800 // ETH_P_IP: the filter can match IPv4 addresses; pedit may touch the IP header
)

// Priorities offlane uses on chain TCChain of a device's ingress hook: unicast rules (an
// exact destination MAC) before flooding rules before the catch-all of a representor.
// Tagged and untagged rules sit at different priorities because tc requires one
// protocol per priority.
const (
	TCChain           uint32 = 0
	TCPrioPolice      uint16 = 5  // protocol all: a port's police, then continue (tc_l3.go)
	TCPrioDSCP        uint16 = 6  // protocol ip: a port's DSCP mark, then continue
	TCPrioRouted      uint16 = 8  // protocol ip: routed east-west (to a router MAC)
	TCPrioUnicast     uint16 = 10 // protocol all (representor, VXLAN device)
	TCPrioUnicastVLAN uint16 = 11 // protocol 802.1Q on the uplink
	TCPrioUnicastFlat uint16 = 12 // protocol all on the uplink, after the tagged rules
	TCPrioFlood       uint16 = 20
	TCPrioFloodVLAN   uint16 = 21
	TCPrioFloodFlat   uint16 = 22
	TCPrioDefault     uint16 = 30
)

// TCFlags are a filter's placement flags (TCA_CLS_FLAGS_*).
type TCFlags uint32

// Placement flags.
const (
	TCSkipHW TCFlags = 1 << 0 // software only (the kernel's flower classifier)
	TCSkipSW TCFlags = 1 << 1 // hardware only: the NIC must take it or the add fails
)

func (f TCFlags) String() string {
	switch f {
	case TCSkipHW:
		return "skip_hw"
	case TCSkipSW:
		return "skip_sw"
	case 0:
		return ""
	}
	return fmt.Sprintf("flags(%#x)", uint32(f))
}

// TCMatch is what a flower rule matches; zero fields match anything.
type TCMatch struct {
	DstMAC     string     `json:"dst_mac,omitempty"`      // lower-case
	DstMACMask string     `json:"dst_mac_mask,omitempty"` // "" = exact
	SrcMAC     string     `json:"src_mac,omitempty"`
	VLANID     uint16     `json:"vlan_id,omitempty"` // needs Proto TCProto8021Q
	EncKeyID   uint32     `json:"enc_key_id,omitempty"`
	EncDstIP   netip.Addr `json:"enc_dst_ip,omitzero"`
	EncDstPort uint16     `json:"enc_dst_port,omitempty"`
	// DstIP is an IPv4 destination prefix; needs Proto TCProtoIPv4.
	DstIP netip.Prefix `json:"dst_ip,omitzero"`
	// SrcIP is an IPv4 source prefix; needs Proto TCProtoIPv4.
	SrcIP netip.Prefix `json:"src_ip,omitzero"`
	// CTState is a conntrack state match in tc's syntax ("-trk", "+trk+new",
	// "+trk+est"): the flags named are the mask (tc_nat.go).
	CTState string `json:"ct_state,omitempty"`
}

// Multicast is the DstMAC/DstMACMask pair that matches broadcast and multicast frames.
const (
	MACMulticast     = "01:00:00:00:00:00"
	MACMulticastMask = "01:00:00:00:00:00"
)

// TC action kinds.
const (
	TCActVLANPush  = "vlan_push"
	TCActVLANPop   = "vlan_pop"
	TCActTunSet    = "tunnel_key_set"
	TCActTunUnset  = "tunnel_key_unset"
	TCActRedirect  = "redirect" // mirred egress redirect: the last action
	TCActMirror    = "mirror"   // mirred egress mirror: a copy, then continue
	TCActDrop      = "drop"
	TCActPolice    = "police"     // police: over the rate drop, else pipe (or continue)
	TCActPeditEth  = "pedit_eth"  // pedit: set the Ethernet destination and source
	TCActPeditTTL  = "pedit_ttl"  // pedit: IPv4 TTL minus one
	TCActPeditDSCP = "pedit_dscp" // pedit: IPv4 DSCP set, ECN kept
	TCActCsum      = "csum"       // csum: IPv4 header checksum
	VXLANPort      = 4789
	DefaultVXLANTC = "vxlan_sys_4789"
)

// TCAction is one action of a rule.
type TCAction struct {
	Kind    string     `json:"kind"`
	VLANID  uint16     `json:"vlan_id,omitempty"`  // vlan_push
	TunSrc  netip.Addr `json:"tun_src,omitzero"`   // tunnel_key_set
	TunDst  netip.Addr `json:"tun_dst,omitzero"`   // tunnel_key_set
	VNI     uint32     `json:"vni,omitempty"`      // tunnel_key_set
	TunPort uint16     `json:"tun_port,omitempty"` // tunnel_key_set
	Dev     string     `json:"dev,omitempty"`      // redirect, mirror
	// police: Rate in bytes per second, Burst in bytes (as CompileTC rounds it:
	// PoliceBurst)
	Rate  uint64 `json:"rate,omitempty"`
	Burst uint64 `json:"burst,omitempty"`
	// pedit_eth: the new destination and source MAC addresses
	EthDst string `json:"eth_dst,omitempty"`
	EthSrc string `json:"eth_src,omitempty"`
	DSCP   uint8  `json:"dscp,omitempty"` // pedit_dscp
	// ct (tc_nat.go): the conntrack zone, commit, and NAT: CTNAT "nat" restores an
	// existing connection's NAT, "src"/"dst" sets up SNAT/DNAT to CTAddr on commit.
	CTZone   uint16     `json:"ct_zone,omitempty"`
	CTCommit bool       `json:"ct_commit,omitempty"`
	CTNAT    string     `json:"ct_nat,omitempty"`
	CTAddr   netip.Addr `json:"ct_addr,omitzero"`
	// goto: the chain classification goes on in.
	Chain uint32 `json:"chain,omitempty"`
	// Continue ends the action with TC_ACT_UNSPEC (classification goes on with the next
	// filter) instead of pipe: the police and DSCP rules that precede a port's L2 rules.
	Continue bool `json:"continue,omitempty"`
}

// TCRule is one flower filter on a device's ingress hook (clsact). Dev, Chain, Prio and
// the cookie identify it; Handle is 0 (the kernel picks one and the applier finds the
// rule again by cookie). Reason says why the rule runs in software when Flags is skip_hw.
type TCRule struct {
	Dev string `json:"dev"`
	// Egress puts the rule on the device's egress hook (what the device sends: on a
	// representor, traffic to the VM) instead of ingress.
	Egress  bool       `json:"egress,omitempty"`
	Chain   uint32     `json:"chain"`
	Prio    uint16     `json:"prio"`
	Handle  uint32     `json:"handle,omitempty"`
	Proto   uint16     `json:"proto"`
	Match   TCMatch    `json:"match"`
	Actions []TCAction `json:"actions"`
	Flags   TCFlags    `json:"flags"`
	Origin  Origin     `json:"origin"`
	Reason  string     `json:"reason,omitempty"`
	// Cookie is put on every action: set by Seal (CompileTC seals every rule).
	Cookie TCCookie `json:"cookie"`
}

// TCCookie is an action cookie of offlane: the origin's OpenFlow-style cookie
// (CookieFor: marker, kind, ID hash) and a hash of the rule's content (device, chain,
// priority, match, actions; not the flags), so a changed rule has a new cookie and the
// diff needs only cookies.
type TCCookie [TCCookieLen]byte

// MarshalText writes the cookie in hex, as tc prints it.
func (c TCCookie) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(c[:])), nil }

// UnmarshalText reads what MarshalText writes.
func (c *TCCookie) UnmarshalText(b []byte) error {
	if hex.DecodedLen(len(b)) != TCCookieLen {
		return fmt.Errorf("tc cookie %q: want %d hex bytes", b, TCCookieLen)
	}
	_, err := hex.Decode(c[:], b)
	return err
}

// TCCookieLen is the length of offlane's action cookies.
const TCCookieLen = 16

// Seal computes the rule's cookie from its origin and content; call it after changing
// the rule.
func (r *TCRule) Seal() { r.Cookie = r.computeCookie(r.spec()) }

func (r *TCRule) computeCookie(spec string) TCCookie {
	var c TCCookie
	binary.BigEndian.PutUint64(c[:], CookieFor(r.Origin.Kind, r.Origin.ID))
	h := fnv.New64a()
	_, _ = h.Write([]byte(spec))
	binary.BigEndian.PutUint64(c[8:], h.Sum64())
	return c
}

// IsOfflaneTCCookie reports whether an action cookie is one of offlane's.
func IsOfflaneTCCookie(c []byte) bool {
	return len(c) == TCCookieLen && IsOfflaneCookie(binary.BigEndian.Uint64(c))
}

// spec is the rule in tc's syntax without flags and cookies (what the cookie hashes).
func (r *TCRule) spec() string {
	var b strings.Builder
	b.Grow(160)
	r.write(&b, false)
	return b.String()
}

// String is the rule as a line of `tc -batch`: "filter add dev ... action ... cookie ...".
func (r TCRule) String() string {
	var b strings.Builder
	b.Grow(256)
	r.write(&b, true)
	return b.String()
}

func (r *TCRule) write(b *strings.Builder, full bool) {
	b.WriteString("filter add dev ")
	b.WriteString(r.Dev)
	if r.Egress {
		b.WriteString(" egress chain ")
	} else {
		b.WriteString(" ingress chain ")
	}
	b.WriteString(strconv.FormatUint(uint64(r.Chain), 10))
	b.WriteString(" prio ")
	b.WriteString(strconv.FormatUint(uint64(r.Prio), 10))
	switch r.Proto {
	case TCProto8021Q:
		b.WriteString(" protocol 802.1Q flower")
	case TCProtoIPv4:
		b.WriteString(" protocol ip flower")
	default:
		b.WriteString(" protocol all flower")
	}
	m := r.Match
	if m.VLANID != 0 {
		b.WriteString(" vlan_id ")
		b.WriteString(strconv.Itoa(int(m.VLANID)))
	}
	if m.DstMAC != "" {
		b.WriteString(" dst_mac ")
		b.WriteString(m.DstMAC)
		if m.DstMACMask != "" {
			b.WriteByte('/')
			b.WriteString(m.DstMACMask)
		}
	}
	if m.SrcMAC != "" {
		b.WriteString(" src_mac ")
		b.WriteString(m.SrcMAC)
	}
	if m.EncKeyID != 0 {
		b.WriteString(" enc_key_id ")
		b.WriteString(strconv.FormatUint(uint64(m.EncKeyID), 10))
	}
	if m.EncDstIP.IsValid() {
		b.WriteString(" enc_dst_ip ")
		b.WriteString(m.EncDstIP.String())
	}
	if m.EncDstPort != 0 {
		b.WriteString(" enc_dst_port ")
		b.WriteString(strconv.Itoa(int(m.EncDstPort)))
	}
	if m.DstIP.IsValid() {
		b.WriteString(" dst_ip ")
		b.WriteString(m.DstIP.String())
	}
	if m.SrcIP.IsValid() {
		b.WriteString(" src_ip ")
		b.WriteString(m.SrcIP.String())
	}
	if m.CTState != "" {
		b.WriteString(" ct_state ")
		b.WriteString(m.CTState)
	}
	if full && r.Flags != 0 {
		b.WriteByte(' ')
		b.WriteString(r.Flags.String())
	}
	var cookie string
	if full {
		cookie = " cookie " + hex.EncodeToString(r.Cookie[:])
	}
	for _, a := range r.Actions {
		b.WriteString(" action ")
		switch a.Kind {
		case TCActVLANPush:
			b.WriteString("vlan push id ")
			b.WriteString(strconv.Itoa(int(a.VLANID)))
		case TCActVLANPop:
			b.WriteString("vlan pop")
		case TCActTunSet:
			fmt.Fprintf(b, "tunnel_key set src_ip %s dst_ip %s id %d dst_port %d", a.TunSrc, a.TunDst, a.VNI, a.TunPort)
		case TCActTunUnset:
			b.WriteString("tunnel_key unset")
		case TCActRedirect:
			b.WriteString("mirred egress redirect dev ")
			b.WriteString(a.Dev)
		case TCActMirror:
			b.WriteString("mirred egress mirror dev ")
			b.WriteString(a.Dev)
		case TCActDrop:
			b.WriteString("gact drop")
		default:
			if !writeL3Action(b, &a) && !writeNATAction(b, &a) {
				b.WriteString(a.Kind)
			}
		}
		b.WriteString(cookie)
	}
}

// TCKey identifies a rule in the kernel as the applier finds it: device, chain,
// priority and cookie.
type TCKey struct {
	Dev    string
	Egress bool
	Chain  uint32
	Prio   uint16
	Cookie TCCookie
}

// Key is the rule's identity.
func (r *TCRule) Key() TCKey {
	return TCKey{Dev: r.Dev, Egress: r.Egress, Chain: r.Chain, Prio: r.Prio, Cookie: r.Cookie}
}

// TCLayout is what the tc compiler needs beyond the IR, plan and capabilities.
type TCLayout struct {
	// Node is the node's OVS layout (physnets, tunnel types, local VTEP), as for the
	// OpenFlow compiler; the planner checked the segments against it.
	Node NodeLayout
	// VXLANDev is the external (collect_md) VXLAN device encap rules redirect to and
	// decap rules sit on; "" means DefaultVXLANTC.
	VXLANDev string
	// NeighMACs are the MACs of external next hops (a router gateway's NextHop) as the
	// node resolved them: tc SNAT / floating IP rules rewrite to them (tc_nat.go).
	NeighMACs map[netip.Addr]string
}

// TCSkip is a tc port the compiler emitted no rules for, and why.
type TCSkip struct {
	PortID string `json:"port_id"`
	Reason string `json:"reason"`
}

// TCResult is the compiler's output: the rules sorted by device, chain, priority and
// text, the tc ports it could not compile, and the fallbacks with their reasons: the L2
// rules that run skip_hw (the planner's reason, first), then per feature ("police: ...",
// "dscp: ...", "routing: ...", "nat: ...") what runs in software or outside tc.
type TCResult struct {
	Rules     []TCRule `json:"rules"`
	Skipped   []TCSkip `json:"skipped,omitempty"`
	Fallbacks []TCSkip `json:"fallbacks,omitempty"`
}

// tcPort is a tc port with what its rules need.
type tcPort struct {
	p   *Port
	seg *Segment
	nic *hwdetect.NIC
	rep string
	why string    // the planner's L2 reason
	pp  *PortPlan // the port's decisions (QoS features: tc_l3.go)
}

// CompileTC compiles the ports the plan put on BackendTC into flower rules. It is pure
// and deterministic. node is the capability matrix (hwdetect): it names each port's NIC
// (the uplink), the VF's representor, and whether the NIC offloads VLAN push/pop and
// VXLAN encap (skip_sw) or the rule runs in the kernel (skip_hw, reason recorded).
func CompileTC(ir *IR, plan *Plan, node *hwdetect.Node, lay TCLayout) (*TCResult, error) {
	if lay.VXLANDev == "" {
		lay.VXLANDev = DefaultVXLANTC
	}
	res := &TCResult{}
	vfs := vfIndex(node)
	byNet := map[string][]*tcPort{}
	all := map[string]*tcPort{}
	var nets []string
	for i := range plan.Ports {
		pp := &plan.Ports[i]
		if pp.Backend(FeatureL2) != BackendTC {
			continue
		}
		p := ir.Ports[pp.PortID]
		if p == nil {
			return nil, fmt.Errorf("tc: plan has port %s, the IR does not: plan and IR are out of step", pp.PortID)
		}
		seg := ir.Segments[p.NetworkID]
		skip := func(format string, a ...any) {
			res.Skipped = append(res.Skipped, TCSkip{PortID: p.ID, Reason: fmt.Sprintf(format, a...)})
		}
		if seg == nil {
			skip("network %s is not in the IR", p.NetworkID)
			continue
		}
		vf, ok := vfs[p.PCISlot]
		if !ok {
			// not a VF of a switchdev NIC: let the planner's lookup say what it is
			nic, how := findNIC(p, seg, node, lay.Node)
			if nic == nil {
				skip("%s", how)
				continue
			}
			vf.nic = nic
		}
		nic, rep := vf.nic, vf.rep
		switch {
		case rep == "":
			skip("VF %s of %s has no representor netdev (is the eswitch in switchdev mode?)", p.PCISlot, nic.Name)
			continue
		case p.MAC == "":
			skip("port has no MAC address")
			continue
		case IsTunnel(seg.Type) && seg.Type != SegVXLAN:
			skip("%s encap is not compiled to tc yet (vxlan is): enable OVS hw-offload for this network", seg.Type)
			continue
		case seg.Type == SegVXLAN && !lay.Node.TunnelLocalIP.IsValid():
			skip("network %s is vxlan but the node has no tunnel local IP", seg.NetworkID)
			continue
		case seg.Type == SegLocal:
			skip("local networks are not compiled to tc")
			continue
		}
		if _, ok := byNet[seg.NetworkID]; !ok {
			nets = append(nets, seg.NetworkID)
		}
		tp := &tcPort{p: p, seg: seg, nic: nic, rep: rep, why: pp.Decisions[0].Reason, pp: pp}
		all[p.ID] = tp
		byNet[seg.NetworkID] = append(byNet[seg.NetworkID], tp)
	}
	slices.Sort(nets)
	fallback := map[string][]string{}
	perNet := make([][]TCRule, 0, len(nets))
	total := 0
	for _, id := range nets {
		ports := byNet[id]
		slices.SortFunc(ports, func(a, b *tcPort) int { return strings.Compare(a.p.ID, b.p.ID) })
		var rules []TCRule
		if ports[0].seg.Type == SegVXLAN {
			rules = compileVXLAN(ir, ports, lay)
		} else {
			rules = compilePhysnet(ports)
		}
		for i := range rules {
			if r := &rules[i]; r.Flags == TCSkipHW && r.Origin.Kind == KindPort && len(fallback[r.Origin.ID]) == 0 {
				fallback[r.Origin.ID] = []string{r.Reason}
			}
		}
		perNet = append(perNet, rules)
		total += len(rules)
	}
	if l3 := compileTCL3(ir, all, lay, fallback); len(l3) > 0 {
		perNet = append(perNet, l3)
		total += len(l3)
	}
	if nat := compileTCNAT(ir, all, lay, fallback); len(nat) > 0 {
		perNet = append(perNet, nat)
		total += len(nat)
	}
	// one allocation for the result (appending network by network regrows a slice of
	// large structs: most of the compiler's allocation at 10k ports)
	res.Rules = make([]TCRule, 0, total)
	for _, rs := range perNet {
		res.Rules = append(res.Rules, rs...)
	}
	for _, id := range sortedKeys(fallback) {
		for _, why := range fallback[id] {
			res.Fallbacks = append(res.Fallbacks, TCSkip{PortID: id, Reason: why})
		}
	}
	sealAndSort(res.Rules)
	if err := checkTCCookies(res.Rules); err != nil {
		return nil, err
	}
	return res, nil
}

// checkTCCookies makes sure no two rules on a device share a cookie (the applier's
// identity of a rule).
func checkTCCookies(rs []TCRule) error {
	seen := make(map[TCKey]int, len(rs))
	for i := range rs {
		k := rs[i].Key()
		k.Prio, k.Chain = 0, 0
		if j, dup := seen[k]; dup {
			return fmt.Errorf("tc: rules %q and %q share a cookie", rs[j].String(), rs[i].String())
		}
		seen[k] = i
	}
	return nil
}

// SortTCRules sorts rules by device, chain, priority and text.
func SortTCRules(rs []TCRule) {
	specs := make([]string, len(rs))
	for i := range rs {
		specs[i] = rs[i].spec()
	}
	sortBySpec(rs, specs)
}

// sealAndSort seals every rule and sorts them, building each rule's text once.
func sealAndSort(rs []TCRule) {
	specs := make([]string, len(rs))
	for i := range rs {
		specs[i] = rs[i].spec()
		rs[i].Cookie = rs[i].computeCookie(specs[i])
	}
	sortBySpec(rs, specs)
}

func sortBySpec(rs []TCRule, specs []string) {
	idx := make([]int, len(rs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(i, j int) int {
		a, b := &rs[i], &rs[j]
		if c := strings.Compare(a.Dev, b.Dev); c != 0 {
			return c
		}
		if a.Egress != b.Egress {
			if a.Egress {
				return 1
			}
			return -1
		}
		if a.Chain != b.Chain {
			return int(a.Chain) - int(b.Chain)
		}
		if a.Prio != b.Prio {
			return int(a.Prio) - int(b.Prio)
		}
		return strings.Compare(specs[i], specs[j])
	})
	out := make([]TCRule, len(rs))
	for k, i := range idx {
		out[k] = rs[i]
	}
	copy(rs, out)
}

type vfRef struct {
	nic *hwdetect.NIC
	rep string
}

// vfIndex maps each VF's PCI address to its NIC and representor (one pass, so that
// compiling is linear in the ports).
func vfIndex(node *hwdetect.Node) map[string]vfRef {
	out := map[string]vfRef{}
	if node == nil {
		return out
	}
	for i := range node.NICs {
		n := &node.NICs[i]
		if n.SRIOV == nil {
			continue
		}
		for _, vf := range n.SRIOV.VFs {
			out[vf.PCIAddress] = vfRef{n, vf.Representor}
		}
	}
	return out
}

// placement is skip_sw when the NIC offloads the capability, else skip_hw with the
// reason (the planner's decision and the capability's level).
func placement(tp *tcPort, what string, c hwdetect.Capability) (TCFlags, string) {
	if c.Level == hwdetect.LevelHW {
		return TCSkipSW, ""
	}
	return TCSkipHW, fmt.Sprintf("%s not offloaded by %s (%s): software tc; planner: %s", what, tp.nic.Name, levelWhy(c), tp.why)
}

// floodTargets turns a list of output devices into mirror, mirror, ..., redirect.
func floodTargets(devs []string) []TCAction {
	out := make([]TCAction, 0, len(devs))
	for i, d := range devs {
		k := TCActMirror
		if i == len(devs)-1 {
			k = TCActRedirect
		}
		out = append(out, TCAction{Kind: k, Dev: d})
	}
	return out
}

// compilePhysnet: flat and VLAN networks. Frames from a VM (representor ingress) go to
// a local port by MAC, or are flooded to the other local ports and tagged out of the
// uplink; frames on the uplink with the network's tag go untagged to the port by MAC,
// or to every port when broadcast/multicast.
func compilePhysnet(ports []*tcPort) []TCRule {
	seg := ports[0].seg
	vlan := seg.Type == SegVLAN
	vid := uint16(seg.SegmentationID)
	out := make([]TCRule, 0, len(ports)*(len(ports)+2)+2)
	// Flat rules match by MAC with protocol all, so they come after the tagged ones: a
	// tagged frame for a VLAN port never reaches them (one for an unknown VLAN carrying
	// a flat port's MAC would; flower cannot say "untagged" under protocol all).
	upProto, upUni, upFlood := TCProtoAll, TCPrioUnicastFlat, TCPrioFloodFlat
	if vlan {
		upProto, upUni, upFlood = TCProto8021Q, TCPrioUnicastVLAN, TCPrioFloodVLAN
	}
	// per uplink: networks may span NICs (ports on VFs of different PFs)
	uplinks := map[string][]*tcPort{}
	for _, tp := range ports {
		flags, why := placement(tp, "vlan push/pop", tp.nic.Capabilities.VLAN)
		po := Origin{KindPort, tp.p.ID}
		up := tp.nic.Name
		uplinks[up] = append(uplinks[up], tp)
		toUplink := make([]TCAction, 0, 2)
		if vlan {
			toUplink = append(toUplink, TCAction{Kind: TCActVLANPush, VLANID: vid})
		}
		toUplink = append(toUplink, TCAction{Kind: TCActRedirect, Dev: up})
		var others []string
		for _, q := range ports {
			if q == tp {
				continue
			}
			others = append(others, q.rep)
			// local delivery stays in the eswitch: representor to representor
			out = append(out, TCRule{Dev: tp.rep, Prio: TCPrioUnicast, Proto: TCProtoAll,
				Match:   TCMatch{DstMAC: q.p.MAC},
				Actions: []TCAction{{Kind: TCActRedirect, Dev: q.rep}}, Flags: flags, Origin: po, Reason: why})
		}
		flood := make([]TCAction, 0, len(others)+2)
		for _, o := range others {
			flood = append(flood, TCAction{Kind: TCActMirror, Dev: o})
		}
		flood = append(flood, toUplink...)
		out = append(out,
			TCRule{Dev: tp.rep, Prio: TCPrioFlood, Proto: TCProtoAll,
				Match: TCMatch{DstMAC: MACMulticast, DstMACMask: MACMulticastMask}, Actions: flood, Flags: flags, Origin: po, Reason: why},
			TCRule{Dev: tp.rep, Prio: TCPrioDefault, Proto: TCProtoAll, Actions: toUplink, Flags: flags, Origin: po, Reason: why})
		fromUplink := make([]TCAction, 0, 2)
		if vlan {
			fromUplink = append(fromUplink, TCAction{Kind: TCActVLANPop})
		}
		out = append(out, TCRule{Dev: up, Prio: upUni, Proto: upProto,
			Match:   TCMatch{VLANID: vid * b2u16(vlan), DstMAC: tp.p.MAC},
			Actions: append(fromUplink, TCAction{Kind: TCActRedirect, Dev: tp.rep}), Flags: flags, Origin: po, Reason: why})
	}
	for _, up := range sortedKeys(uplinks) {
		tps := uplinks[up]
		flags, why := placement(tps[0], "vlan push/pop", tps[0].nic.Capabilities.VLAN)
		devs := make([]string, len(tps))
		for i, tp := range tps {
			devs[i] = tp.rep
		}
		acts := make([]TCAction, 0, len(devs)+1)
		if vlan {
			acts = append(acts, TCAction{Kind: TCActVLANPop})
		}
		out = append(out, TCRule{Dev: up, Prio: upFlood, Proto: upProto,
			Match:   TCMatch{VLANID: vid * b2u16(vlan), DstMAC: MACMulticast, DstMACMask: MACMulticastMask},
			Actions: append(acts, floodTargets(devs)...), Flags: flags, Origin: Origin{KindNetwork, seg.NetworkID}, Reason: why})
	}
	return out
}

func b2u16(b bool) uint16 {
	if b {
		return 1
	}
	return 0
}

// compileVXLAN: VXLAN networks through an external (collect_md) VXLAN device. Frames
// from a VM go to a local port by MAC, to a remote port's VTEP by MAC (tunnel_key set +
// redirect to the VXLAN device), or are flooded to the local ports and every VTEP of the
// network; frames decapsulated with the network's VNI go to the port by MAC, or to every
// port when broadcast/multicast.
func compileVXLAN(ir *IR, ports []*tcPort, lay TCLayout) []TCRule {
	seg := ports[0].seg
	vni := uint32(seg.SegmentationID)
	local := lay.Node.TunnelLocalIP
	dev := lay.VXLANDev
	var remotes []*RemotePort
	vteps := map[netip.Addr]bool{}
	for _, id := range sortedKeys(ir.RemotePorts) {
		rp := ir.RemotePorts[id]
		if rp.NetworkID == seg.NetworkID && rp.VTEP.IsValid() && rp.MAC != "" {
			remotes = append(remotes, rp)
			vteps[rp.VTEP] = true
		}
	}
	vtepList := make([]netip.Addr, 0, len(vteps))
	for a := range vteps {
		vtepList = append(vtepList, a)
	}
	slices.SortFunc(vtepList, netip.Addr.Compare)
	set := func(dst netip.Addr) TCAction {
		return TCAction{Kind: TCActTunSet, TunSrc: local, TunDst: dst, VNI: vni, TunPort: VXLANPort}
	}
	out := make([]TCRule, 0, len(ports)*(len(ports)+len(remotes)+2)+1)
	for _, tp := range ports {
		flags, why := placement(tp, "vxlan encap", tp.nic.Capabilities.VXLANEncap)
		po := Origin{KindPort, tp.p.ID}
		var flood []TCAction
		for _, q := range ports {
			if q == tp {
				continue
			}
			flood = append(flood, TCAction{Kind: TCActMirror, Dev: q.rep})
			out = append(out, TCRule{Dev: tp.rep, Prio: TCPrioUnicast, Proto: TCProtoAll,
				Match:   TCMatch{DstMAC: q.p.MAC},
				Actions: []TCAction{{Kind: TCActRedirect, Dev: q.rep}}, Flags: flags, Origin: po, Reason: why})
		}
		for _, rp := range remotes {
			out = append(out, TCRule{Dev: tp.rep, Prio: TCPrioUnicast, Proto: TCProtoAll,
				Match:   TCMatch{DstMAC: rp.MAC},
				Actions: []TCAction{set(rp.VTEP), {Kind: TCActRedirect, Dev: dev}}, Flags: flags, Origin: po, Reason: why})
		}
		for _, v := range vtepList {
			flood = append(flood, set(v), TCAction{Kind: TCActMirror, Dev: dev})
		}
		if n := len(flood); n > 0 {
			flood[n-1].Kind = TCActRedirect
			out = append(out, TCRule{Dev: tp.rep, Prio: TCPrioFlood, Proto: TCProtoAll,
				Match: TCMatch{DstMAC: MACMulticast, DstMACMask: MACMulticastMask}, Actions: flood, Flags: flags, Origin: po, Reason: why})
		}
		out = append(out, TCRule{Dev: dev, Prio: TCPrioUnicast, Proto: TCProtoAll,
			Match:   TCMatch{EncKeyID: vni, EncDstIP: local, EncDstPort: VXLANPort, DstMAC: tp.p.MAC},
			Actions: []TCAction{{Kind: TCActTunUnset}, {Kind: TCActRedirect, Dev: tp.rep}}, Flags: flags, Origin: po, Reason: why})
	}
	flags, why := placement(ports[0], "vxlan decap", ports[0].nic.Capabilities.VXLANEncap)
	devs := make([]string, len(ports))
	for i, tp := range ports {
		devs[i] = tp.rep
	}
	out = append(out, TCRule{Dev: dev, Prio: TCPrioFlood, Proto: TCProtoAll,
		Match:   TCMatch{EncKeyID: vni, EncDstIP: local, EncDstPort: VXLANPort, DstMAC: MACMulticast, DstMACMask: MACMulticastMask},
		Actions: append([]TCAction{{Kind: TCActTunUnset}}, floodTargets(devs)...), Flags: flags, Origin: Origin{KindNetwork, seg.NetworkID}, Reason: why})
	return out
}
