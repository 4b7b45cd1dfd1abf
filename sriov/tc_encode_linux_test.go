package sriov

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/offlane/offlane/offload"
)

// ownEncode encodes rules with offlane's encoder into one buffer (as the batched sender
// does) and splits it into the RTM_NEWTFILTER payloads; the devices get ifindexes 1.. in
// name order (the NetlinkTC returned resolves them back).
func ownEncode(t testing.TB, rules []offload.TCRule) ([][]byte, *NetlinkTC) {
	t.Helper()
	g := &NetlinkTC{index: map[string]uint32{}, name: map[uint32]string{}}
	var devs []string
	for _, r := range rules {
		devs = append(devs, r.Dev)
		for _, a := range r.Actions {
			if a.Dev != "" {
				devs = append(devs, a.Dev)
			}
		}
	}
	slices.Sort(devs)
	for i, d := range slices.Compact(devs) {
		g.index[d], g.name[uint32(i+1)] = uint32(i+1), d
	}
	var e tcEncoder
	for i := range rules {
		if err := e.appendFilter(&rules[i], uint32(100+i), g.ifindex); err != nil {
			t.Fatal(err)
		}
	}
	var out [][]byte
	for p, i := e.buf, 0; len(p) > 0; i++ {
		l := int(binary.NativeEndian.Uint32(p))
		if l < nlmsgHdrLen+tcmsgLen || l > len(p) || l%4 != 0 {
			t.Fatalf("message %d: length %d of %d bytes left", i, l, len(p))
		}
		typ, flags, seq := binary.NativeEndian.Uint16(p[4:]), binary.NativeEndian.Uint16(p[6:]), binary.NativeEndian.Uint32(p[8:])
		want := uint16(unix.NLM_F_REQUEST | unix.NLM_F_ACK | unix.NLM_F_CREATE | unix.NLM_F_EXCL)
		if typ != unix.RTM_NEWTFILTER || flags != want || seq != uint32(100+i) {
			t.Fatalf("message %d: type %d flags %#x seq %d", i, typ, flags, seq)
		}
		out = append(out, slices.Clone(p[nlmsgHdrLen:l]))
		p = p[l:]
	}
	if len(out) != len(rules) {
		t.Fatalf("%d messages for %d rules", len(out), len(rules))
	}
	return out, g
}

// extraRules are rules the compiler does not emit today but TCRule can say: src_mac,
// a drop action, a tagged uplink rule.
func extraRules() []offload.TCRule {
	rs := []offload.TCRule{
		{Dev: "a", Prio: 5, Proto: offload.TCProtoAll, Match: offload.TCMatch{SrcMAC: "fa:16:3e:00:00:01"},
			Actions: []offload.TCAction{{Kind: offload.TCActDrop}}, Flags: offload.TCSkipHW, Origin: offload.Origin{Kind: offload.KindPort, ID: "x"}},
		{Dev: "b", Chain: 3, Prio: 11, Proto: offload.TCProto8021Q, Match: offload.TCMatch{VLANID: 4094, DstMAC: "fa:16:3e:00:00:02"},
			Actions: []offload.TCAction{{Kind: offload.TCActVLANPop}, {Kind: offload.TCActMirror, Dev: "a"}, {Kind: offload.TCActRedirect, Dev: "c"}},
			Flags:   offload.TCSkipSW, Origin: offload.Origin{Kind: offload.KindPort, ID: "y"}},
		// tc_l3.go's actions: police (also above 2^32 bytes/s), pedit, csum, egress hook
		{Dev: "a", Prio: 5, Proto: offload.TCProtoAll, Actions: []offload.TCAction{{Kind: offload.TCActPolice, Rate: 1250000,
			Burst: offload.PoliceBurst(1250000, 1000000), Continue: true}}, Flags: offload.TCSkipHW, Origin: offload.Origin{Kind: offload.KindQoS, ID: "x"}},
		{Dev: "a", Egress: true, Prio: 5, Proto: offload.TCProtoAll, Actions: []offload.TCAction{{Kind: offload.TCActPolice, Rate: 50e9,
			Burst: offload.PoliceBurst(50e9, 1<<20)}}, Flags: offload.TCSkipSW, Origin: offload.Origin{Kind: offload.KindQoS, ID: "x"}},
		{Dev: "a", Prio: 6, Proto: offload.TCProtoIPv4, Actions: []offload.TCAction{{Kind: offload.TCActPeditDSCP, DSCP: 46},
			{Kind: offload.TCActCsum, Continue: true}}, Flags: offload.TCSkipHW, Origin: offload.Origin{Kind: offload.KindQoS, ID: "x"}},
		{Dev: "a", Prio: 8, Proto: offload.TCProtoIPv4, Match: offload.TCMatch{DstMAC: "fa:16:3e:00:00:f1", DstIP: netip.MustParsePrefix("10.0.1.0/24")},
			Actions: []offload.TCAction{{Kind: offload.TCActPeditEth, EthDst: "fa:16:3e:00:00:05", EthSrc: "fa:16:3e:00:00:f2"},
				{Kind: offload.TCActPeditTTL}, {Kind: offload.TCActCsum}, {Kind: offload.TCActRedirect, Dev: "c"}},
			Flags: offload.TCSkipHW, Origin: offload.Origin{Kind: offload.KindRouter, ID: "r"}},
		// tc_nat.go's: src_ip and ct_state matches, ct (restore, commit + SNAT / DNAT), goto chain
		{Dev: "a", Prio: 9, Proto: offload.TCProtoIPv4, Match: offload.TCMatch{DstMAC: "fa:16:3e:00:00:f1", SrcIP: netip.MustParsePrefix("10.0.0.1/32"), CTState: "-trk"},
			Actions: []offload.TCAction{{Kind: offload.TCActCT, CTZone: 28076, CTNAT: "nat"}, {Kind: offload.TCActGoto, Chain: 28076}},
			Flags:   offload.TCSkipHW, Origin: offload.Origin{Kind: offload.KindPort, ID: "n"}},
		{Dev: "a", Chain: 28076, Prio: 1, Proto: offload.TCProtoIPv4, Match: offload.TCMatch{CTState: "+trk+new"},
			Actions: []offload.TCAction{{Kind: offload.TCActCT, CTZone: 28076, CTCommit: true, CTNAT: "src", CTAddr: netip.MustParseAddr("203.0.113.2")},
				{Kind: offload.TCActPeditEth, EthDst: "02:00:00:00:00:01", EthSrc: "fa:16:3e:00:00:e1"}, {Kind: offload.TCActRedirect, Dev: "c"}},
			Flags: offload.TCSkipSW, Origin: offload.Origin{Kind: offload.KindPort, ID: "n"}},
		{Dev: "c", Chain: 7, Prio: 1, Proto: offload.TCProtoIPv4, Match: offload.TCMatch{DstIP: netip.MustParsePrefix("203.0.113.9/32"), CTState: "+trk+new"},
			Actions: []offload.TCAction{{Kind: offload.TCActCT, CTZone: 7, CTCommit: true, CTNAT: "dst", CTAddr: netip.MustParseAddr("10.0.0.2")},
				{Kind: offload.TCActCT, CTCommit: true}, {Kind: offload.TCActRedirect, Dev: "a"}},
			Flags: offload.TCSkipHW, Origin: offload.Origin{Kind: offload.KindFloatingIP, ID: "f"}},
	}
	for i := range rs {
		rs[i].Seal()
	}
	return rs
}

// TestTCOwnEncodeDecode: what offlane's encoder writes for each compiled rule, the
// decoder reads back as the same rule (content, flags, cookie); the guest tests check
// the encoding against the kernel itself.
func TestTCOwnEncodeDecode(t *testing.T) {
	rules := append(roundTripRules(t), extraRules()...)
	msgs, g := ownEncode(t, rules)
	kinds := map[string]bool{}
	for i, m := range msgs {
		binary.NativeEndian.PutUint32(m[8:], 1) // a request has no handle; a dump reply has one
		f, ok, err := g.decodeFilter(rules[i].Dev, m)
		if err != nil || !ok {
			t.Fatalf("rule %s: decode ok=%v %v", rules[i].String(), ok, err)
		}
		f.Rule.Handle = 0
		if !TCEqual(&rules[i], &f.Rule) || f.Rule.Flags != rules[i].Flags || !f.Own() || f.Key() != rules[i].Key() {
			t.Errorf("round trip:\n got %s\nwant %s", f.Rule.String(), rules[i].String())
		}
		for _, a := range rules[i].Actions {
			kinds[a.Kind] = true
		}
	}
	for _, k := range []string{offload.TCActVLANPush, offload.TCActVLANPop, offload.TCActTunSet, offload.TCActTunUnset,
		offload.TCActRedirect, offload.TCActMirror, offload.TCActDrop, offload.TCActPolice, offload.TCActPeditEth,
		offload.TCActPeditTTL, offload.TCActPeditDSCP, offload.TCActCsum, offload.TCActCT, offload.TCActGoto} {
		if !kinds[k] {
			t.Errorf("no rule with action %s in the round trip", k)
		}
	}
}

// TestTCOwnEncodeVLANByteOrder: TCA_FLOWER_KEY_VLAN_ID is a host-order NLA_U16 (the
// kernel's nla_get_u16), ETH_TYPE and the tunnel port big-endian.
func TestTCOwnEncodeVLANByteOrder(t *testing.T) {
	r := extraRules()[1]
	msgs, _ := ownEncode(t, []offload.TCRule{r})
	m := msgs[0]
	want := binary.NativeEndian.AppendUint16([]byte{6, 0, flowerKeyVlanID, 0}, 4094)
	if !strings.Contains(string(m), string(want)) {
		t.Errorf("no host-order vlan_id attribute %x in %x", want, m)
	}
	et := []byte{6, 0, flowerKeyEthType, 0, 0x81, 0x00}
	if !strings.Contains(string(m), string(et)) {
		t.Errorf("no big-endian eth_type 802.1Q %x in %x", et, m)
	}
}

// TestTCOwnEncodeErrors: bad input names the field and appends nothing.
func TestTCOwnEncodeErrors(t *testing.T) {
	ok := func(string) (uint32, error) { return 1, nil }
	base := extraRules()[1]
	cases := []struct {
		name string
		mod  func(r *offload.TCRule)
		want string
	}{
		{"dst mac", func(r *offload.TCRule) { r.Match.DstMAC = "fa:16:3e:00:00" }, "dst_mac"},
		{"dst mask", func(r *offload.TCRule) { r.Match.DstMACMask = "zz:00:00:00:00:00" }, "dst_mac mask"},
		{"src mac", func(r *offload.TCRule) { r.Match.SrcMAC = "fa-16-3e-00-00-01" }, "src_mac"},
		{"enc ip6", func(r *offload.TCRule) { r.Match.EncDstIP = netip.MustParseAddr("2001:db8::1") }, "enc_dst_ip"},
		{"action", func(r *offload.TCRule) { r.Actions = append(r.Actions, offload.TCAction{Kind: "pedit"}) }, `unknown action "pedit"`},
		{"tun6", func(r *offload.TCRule) {
			r.Actions = []offload.TCAction{{Kind: offload.TCActTunSet, TunSrc: netip.MustParseAddr("::1"), TunDst: netip.MustParseAddr("::2")}}
		}, "tunnel_key set"},
		{"pedit mac", func(r *offload.TCRule) {
			r.Actions = []offload.TCAction{{Kind: offload.TCActPeditEth, EthDst: "fa:16:3e:00:00:05", EthSrc: "router"}}
		}, "pedit eth dst"},
		{"police 0", func(r *offload.TCRule) { r.Actions = []offload.TCAction{{Kind: offload.TCActPolice}} }, "police with rate 0"},
		{"dst_ip proto", func(r *offload.TCRule) { r.Match.DstIP = netip.MustParsePrefix("10.0.0.1/32") }, "dst_ip 10.0.0.1/32: only IPv4, under protocol ip"},
		{"src_ip proto", func(r *offload.TCRule) { r.Match.SrcIP = netip.MustParsePrefix("10.0.0.1/32") }, "src_ip 10.0.0.1/32: only IPv4, under protocol ip"},
		{"ct_state", func(r *offload.TCRule) { r.Match.CTState = "+tracked" }, `ct_state "+tracked": unknown flag`},
		{"ct nat addr", func(r *offload.TCRule) {
			r.Actions = []offload.TCAction{{Kind: offload.TCActCT, CTCommit: true, CTNAT: "src"}}
		}, "ct nat src addr invalid IP: want an IPv4 address"},
		{"ct nat commit", func(r *offload.TCRule) {
			r.Actions = []offload.TCAction{{Kind: offload.TCActCT, CTNAT: "dst", CTAddr: netip.MustParseAddr("10.0.0.2")}}
		}, "ct nat dst needs commit"},
		{"ct nat kind", func(r *offload.TCRule) { r.Actions = []offload.TCAction{{Kind: offload.TCActCT, CTNAT: "masq"}} }, `ct nat "masq"`},
		{"goto 0", func(r *offload.TCRule) { r.Actions = []offload.TCAction{{Kind: offload.TCActGoto}} }, "goto chain 0"},
	}
	for _, c := range cases {
		r := base
		r.Actions = slices.Clone(base.Actions)
		c.mod(&r)
		e := tcEncoder{buf: []byte("keep")}
		err := e.appendFilter(&r, 1, ok)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		}
		if string(e.buf) != "keep" {
			t.Errorf("%s: %d bytes left appended", c.name, len(e.buf)-4)
		}
	}
	gone := errors.New("no such netdev")
	e := tcEncoder{}
	r := extraRules()[1]
	if err := e.appendFilter(&r, 1, func(d string) (uint32, error) {
		if d == "c" {
			return 0, gone
		}
		return 1, nil
	}); !errors.Is(err, gone) || !strings.Contains(err.Error(), "mirred target") || len(e.buf) != 0 {
		t.Errorf("missing mirred target: %v, %d bytes", err, len(e.buf))
	}
}

// TestTCExtAckMsg reads the kernel's reason out of an error ack.
func TestTCExtAckMsg(t *testing.T) {
	var e tcEncoder
	e.u32(0)
	e.u16(unix.NLMSG_ERROR)
	e.u16(nlmFAckTLVs | 0x100)
	e.u32(7)
	e.u32(0)
	e.u32(uint32(0xffffffff - uint32(unix.EOPNOTSUPP) + 1))
	e.buf = append(e.buf, make([]byte, nlmsgHdrLen)...)
	e.attrString(nlmsgerrAttrMsg, "TC offload is disabled on net device")
	binary.NativeEndian.PutUint32(e.buf, uint32(len(e.buf)))
	if got := extAckMsg(e.buf, nlmFAckTLVs); got != "TC offload is disabled on net device" {
		t.Errorf("ext ack %q", got)
	}
	if got := extAckMsg(e.buf, 0); got != "" {
		t.Errorf("without NLM_F_ACK_TLVS: %q", got)
	}
}

func FuzzTCOwnDecode(f *testing.F) {
	msgs, g := ownEncode(f, append(roundTripRules(f), extraRules()...))
	for _, m := range msgs {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < tcmsgLen {
			return
		}
		_, _, _ = g.decodeFilter("d", b)
		_ = extAckMsg(append(make([]byte, nlmsgHdrLen+nlmsgerrLen), b...), nlmFAckTLVs)
	})
}
