package offload

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strconv"
	"strings"
)

// Flow is one OpenFlow flow in ovs-ofctl syntax (OpenFlow 1.5). Match and Actions are
// written exactly as `ovs-ofctl -O OpenFlow15 dump-flows --no-stats` prints them (field
// order, hex registers, masks), so a flow read back from a dump compares equal as text.
// Bridge, Table, Priority and Match identify a flow within OVS; Cookie names the object
// it came from (see CookieFor) and Actions is what it does.
type Flow struct {
	Bridge   string `json:"bridge"`
	Table    uint8  `json:"table"`
	Priority uint16 `json:"priority"`
	Cookie   uint64 `json:"cookie"`
	Match    string `json:"match"` // "" matches every packet
	Actions  string `json:"actions"`
}

// String is the flow as one line of `ovs-ofctl -O OpenFlow15 add-flows <bridge> FILE`
// (also accepted after "add " in a bundle file, and by replace-flows).
func (f Flow) String() string {
	var b strings.Builder
	b.Grow(48 + len(f.Match) + len(f.Actions))
	b.WriteString("table=")
	b.WriteString(strconv.Itoa(int(f.Table)))
	b.WriteString(",priority=")
	b.WriteString(strconv.Itoa(int(f.Priority)))
	b.WriteString(",cookie=0x")
	b.WriteString(strconv.FormatUint(f.Cookie, 16))
	if f.Match != "" {
		b.WriteByte(',')
		b.WriteString(f.Match)
	}
	b.WriteString(",actions=")
	b.WriteString(f.Actions)
	return b.String()
}

// DeleteStrict is the flow's selector for `ovs-ofctl del-flows --strict` or a
// "delete_strict " line in a bundle file: table, priority and match, restricted to the
// flow's exact cookie so a foreign flow with the same match is never removed.
func (f Flow) DeleteStrict() string {
	s := fmt.Sprintf("table=%d,priority=%d,cookie=%#x/-1", f.Table, f.Priority, f.Cookie)
	if f.Match != "" {
		s += "," + f.Match
	}
	return s
}

// Key identifies a flow in OVS: two flows with the same key are the same flow.
func (f Flow) Key() FlowKey {
	return FlowKey{Bridge: f.Bridge, Table: f.Table, Priority: f.Priority, Match: f.Match}
}

// FlowKey is a flow's identity within OVS.
type FlowKey struct {
	Bridge   string
	Table    uint8
	Priority uint16
	Match    string
}

// Cookies: offlane's marker in the top 16 bits (so the applier selects and prunes only
// offlane's flows with `cookie=CookieMarker/CookieMarkerMask`), the origin's kind in the
// next 4 bits and a 44-bit hash of the origin's ID in the rest. The compiler checks that
// no two origins share a cookie.
const (
	CookieMarker     uint64 = 0x6f6c << 48 // "ol"
	CookieMarkerMask uint64 = 0xffff << 48
	cookieKindShift         = 44
	cookieIDMask     uint64 = 1<<cookieKindShift - 1
)

// Kind is the kind of object a flow came from.
type Kind uint8

// Origin kinds.
const (
	KindNode          Kind = 1  // the fixed pipeline (table misses, conntrack plumbing)
	KindNetwork       Kind = 2  // a segment: VLAN/VNI translation, flooding, tunnel ingress
	KindPort          Kind = 3  // a local port: classification, port security, L2 entry, SG binding
	KindRemotePort    Kind = 4  // a port on another host: L2 population, ARP responder
	KindSecurityGroup Kind = 5  // a group's conjunction (conj_id) flows
	KindRule          Kind = 6  // a security group rule's match flows
	KindAddress       Kind = 7  // a port's addresses in remote-group address sets
	KindRouter        Kind = 8  // a router: gateway ARP/ND answers, routes, SNAT
	KindFloatingIP    Kind = 9  // a floating IP: its ARP answer and 1:1 NAT
	KindQoS           Kind = 10 // a port's QoS: meters, DSCP marking (ID = the port ID)
	KindDHCP          Kind = 11 // a network's DHCP plumbing
)

var kindNames = map[Kind]string{KindNode: "node", KindNetwork: "network", KindPort: "port",
	KindRemotePort: "remote-port", KindSecurityGroup: "security-group", KindRule: "security-group-rule",
	KindAddress: "address", KindRouter: "router", KindFloatingIP: "floating-ip", KindQoS: "qos",
	KindDHCP: "dhcp"}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// MarshalText writes the kind's name.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a kind's name.
func (k *Kind) UnmarshalText(b []byte) error {
	for v, s := range kindNames {
		if s == string(b) {
			*k = v
			return nil
		}
	}
	return fmt.Errorf("unknown origin kind %q", b)
}

// Origin is the object a flow came from.
type Origin struct {
	Kind Kind   `json:"kind"`
	ID   string `json:"id"`
}

func (o Origin) String() string { return o.Kind.String() + " " + o.ID }

// CookieFor is the cookie of every flow that comes from the object (kind, id).
func CookieFor(kind Kind, id string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	return CookieMarker | uint64(kind&0xf)<<cookieKindShift | h.Sum64()&cookieIDMask
}

// CookieKind is the origin kind encoded in an offlane cookie (0 for a foreign cookie).
func CookieKind(c uint64) Kind {
	if c&CookieMarkerMask != CookieMarker {
		return 0
	}
	return Kind(c >> cookieKindShift & 0xf)
}

// IsOfflaneCookie reports whether a cookie carries offlane's marker.
func IsOfflaneCookie(c uint64) bool { return c&CookieMarkerMask == CookieMarker }

// Delta is what one Update changed, in no particular order (SortFlows sorts). Modify
// holds the new version of flows whose key stayed and whose cookie or actions changed.
type Delta struct {
	Add    []Flow `json:"add"`
	Modify []Flow `json:"modify"`
	Delete []Flow `json:"delete"`
}

// Empty reports whether nothing changed.
func (d *Delta) Empty() bool { return len(d.Add)+len(d.Modify)+len(d.Delete) == 0 }

// BundleLines is the delta for one bridge as lines of an `ovs-ofctl -O OpenFlow15
// --bundle add-flows <bridge> FILE` file: adds, then modifies (an add replaces the flow
// with the same key), then deletes, so the bundle applies it atomically.
func (d *Delta) BundleLines(bridge string) []string {
	var out []string
	for _, set := range [][]Flow{d.Add, d.Modify} {
		for _, f := range set {
			if f.Bridge == bridge {
				out = append(out, "add "+f.String())
			}
		}
	}
	for _, f := range d.Delete {
		if f.Bridge == bridge {
			out = append(out, "delete_strict "+f.DeleteStrict())
		}
	}
	return out
}

// MarshalJSON writes the cookie in hex, as ovs-ofctl prints it.
func (f Flow) MarshalJSON() ([]byte, error) {
	type plain Flow
	return json.Marshal(struct {
		plain
		Cookie string `json:"cookie"`
	}{plain(f), fmt.Sprintf("%#x", f.Cookie)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (f *Flow) UnmarshalJSON(b []byte) error {
	type plain Flow
	var v struct {
		plain
		Cookie string `json:"cookie"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	c, err := strconv.ParseUint(strings.TrimPrefix(v.Cookie, "0x"), 16, 64)
	if err != nil {
		return fmt.Errorf("flow cookie %q: %w", v.Cookie, err)
	}
	*f = Flow(v.plain)
	f.Cookie = c
	return nil
}

// Match building. ovs-ofctl prints match fields in a fixed order (lib/match.c
// match_format); the ranks below follow it so Match strings equal dump output.
const (
	rConjID   = 0
	rCtState  = 1
	rProto    = 2 // shorthand: ip, ipv6, arp, tcp, udp6, icmp6, ...
	rTunID    = 3
	rTunSrc   = 4
	rReg      = 10 // + register number
	rInPort   = 30
	rVLAN     = 31
	rDlSrc    = 32
	rDlDst    = 33
	rL3Src    = 34 // nw_src, ipv6_src, arp_spa
	rL3Dst    = 35 // nw_dst, ipv6_dst, arp_tpa
	rNwProto  = 36 // nw_proto, arp_op
	rArpSha   = 37
	rIcmpType = 38
	rIcmpCode = 39
	rNDTarget = 40
	rNDLL     = 41 // nd_sll, nd_tll
	rTpSrc    = 42
	rTpDst    = 43
)

type field struct {
	rank     int
	off, end int // the field's text in match.buf
}

// match collects fields in any order and prints them in ovs-ofctl's. Field text is
// appended to one buffer (matches are built per flow, so they avoid allocating).
type match struct {
	buf []byte
	f   []field
}

func newMatch() *match { return &match{buf: make([]byte, 0, 96), f: make([]field, 0, 8)} }

func (m *match) reset() *match {
	m.buf, m.f = m.buf[:0], m.f[:0]
	return m
}

func (m *match) begin(rank int) { m.f = append(m.f, field{rank: rank, off: len(m.buf)}) }
func (m *match) end() *match {
	m.f[len(m.f)-1].end = len(m.buf)
	return m
}

func (m *match) add(rank int, text string) *match {
	m.begin(rank)
	m.buf = append(m.buf, text...)
	return m.end()
}

// addKV adds "key=<value appended by fn>".
func (m *match) addKV(rank int, key string, fn func([]byte) []byte) *match {
	m.begin(rank)
	m.buf = append(m.buf, key...)
	m.buf = append(m.buf, '=')
	m.buf = fn(m.buf)
	return m.end()
}

func (m *match) String() string { return string(m.appendTo(nil)) }

// appendTo appends the match's text to b.
func (m *match) appendTo(b []byte) []byte {
	// insertion sort: a handful of fields, stable.
	for i := 1; i < len(m.f); i++ {
		for j := i; j > 0 && m.f[j].rank < m.f[j-1].rank; j-- {
			m.f[j], m.f[j-1] = m.f[j-1], m.f[j]
		}
	}
	for i, f := range m.f {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.buf[f.off:f.end]...)
	}
	return b
}

func appendHex(v uint64) func([]byte) []byte {
	return func(b []byte) []byte { return strconv.AppendUint(append(b, "0x"...), v, 16) }
}

func appendDec(v int) func([]byte) []byte {
	return func(b []byte) []byte { return strconv.AppendInt(b, int64(v), 10) }
}

func appendPrefix(p netip.Prefix) func([]byte) []byte {
	return func(b []byte) []byte {
		b = p.Addr().AppendTo(b)
		if p.Bits() != p.Addr().BitLen() {
			b = strconv.AppendInt(append(b, '/'), int64(p.Bits()), 10)
		}
		return b
	}
}

func (m *match) proto(p string) *match { return m.add(rProto, p) }
func (m *match) inPort(n int) *match {
	if n == OFPPLocal {
		return m.add(rInPort, "in_port=LOCAL")
	}
	return m.addKV(rInPort, "in_port", appendDec(n))
}
func (m *match) reg(r, v int) *match {
	return m.addKV(rReg+r, regNames[r], appendHex(uint64(v)))
}
func (m *match) dlVLAN(v int) *match { return m.addKV(rVLAN, "dl_vlan", appendDec(v)) }
func (m *match) dlSrc(mac string) *match {
	return m.addKV(rDlSrc, "dl_src", func(b []byte) []byte { return append(b, mac...) })
}
func (m *match) dlDst(mac string) *match {
	return m.addKV(rDlDst, "dl_dst", func(b []byte) []byte { return append(b, mac...) })
}
func (m *match) ctState(s string) *match { return m.add(rCtState, "ct_state="+s) }
func (m *match) conjID(id uint32) *match { return m.addKV(rConjID, "conj_id", appendDec(int(id))) }
func (m *match) tunID(v int) *match      { return m.addKV(rTunID, "tun_id", appendHex(uint64(v))) }
func (m *match) tunSrc(a netip.Addr) *match {
	return m.addKV(rTunSrc, "tun_src", func(b []byte) []byte { return a.AppendTo(b) })
}
func (m *match) icmpType(t int) *match { return m.addKV(rIcmpType, "icmp_type", appendDec(t)) }
func (m *match) icmpCode(c int) *match { return m.addKV(rIcmpCode, "icmp_code", appendDec(c)) }
func (m *match) nwProto(p int) *match  { return m.addKV(rNwProto, "nw_proto", appendDec(p)) }
func (m *match) tpSrc(p int) *match    { return m.addKV(rTpSrc, "tp_src", appendDec(p)) }
func (m *match) tpDst(p int) *match    { return m.addKV(rTpDst, "tp_dst", appendDec(p)) }
func (m *match) ndTarget(p netip.Prefix) *match {
	return m.addKV(rNDTarget, "nd_target", appendPrefix(p))
}

var regNames = [16]string{"reg0", "reg1", "reg2", "reg3", "reg4", "reg5", "reg6", "reg7", "reg8", "reg9", "reg10", "reg11", "reg12", "reg13", "reg14", "reg15"}

// src/dst of IPv4 or IPv6 by the prefix's family.
func (m *match) l3Src(p netip.Prefix) *match {
	if p.Addr().Is4() {
		return m.addKV(rL3Src, "nw_src", appendPrefix(p))
	}
	return m.addKV(rL3Src, "ipv6_src", appendPrefix(p))
}

func (m *match) l3Dst(p netip.Prefix) *match {
	if p.Addr().Is4() {
		return m.addKV(rL3Dst, "nw_dst", appendPrefix(p))
	}
	return m.addKV(rL3Dst, "ipv6_dst", appendPrefix(p))
}

// tpDstMasked matches a destination port block value/mask as OVS prints it.
func (m *match) tpDstMasked(b portBlock) *match {
	if b.mask == 0xffff {
		return m.tpDst(int(b.value))
	}
	return m.addKV(rTpDst, "tp_dst", func(buf []byte) []byte {
		buf = strconv.AppendUint(append(buf, "0x"...), uint64(b.value), 16)
		return strconv.AppendUint(append(buf, "/0x"...), uint64(b.mask), 16)
	})
}

// prefixText prints a host prefix as the bare address and others as CIDR (as OVS).
func prefixText(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// OFPPLocal is OpenFlow's number for a bridge's own internal port.
const OFPPLocal = 0xfffe

// Actions.

func actGoto(t uint8) string { return gotoActions[t] }

// gotoActions are the goto_table actions, formatted once (read-only).
var gotoActions = func() (a [256]string) {
	for i := range a {
		a[i] = "goto_table:" + strconv.Itoa(i)
	}
	return a
}()

func actResubmit(t uint8) string { return "resubmit(," + strconv.Itoa(int(t)) + ")" }

func actOutput(n int) string {
	if n == OFPPLocal {
		return "LOCAL"
	}
	return "output:" + strconv.Itoa(n)
}

func actSetReg(r, v int) string {
	return "set_field:0x" + strconv.FormatUint(uint64(v), 16) + "->reg" + strconv.Itoa(r)
}

// actSetVLAN sets the VLAN ID of a tagged packet (OVS prints vlan_vid with the
// OFPVID_PRESENT bit, in decimal).
func actSetVLAN(vid int) string { return "set_field:" + strconv.Itoa(0x1000|vid) + "->vlan_vid" }

const actPushVLAN = "push_vlan:0x8100"

func actConj(id uint32, k, n int) string {
	return "conjunction(" + strconv.FormatUint(uint64(id), 10) + "," + strconv.Itoa(k) + "/" + strconv.Itoa(n) + ")"
}

func joinActions(a ...string) string { return strings.Join(a, ",") }
