package ovsdpdk

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/offlane/offlane/offload"
)

// dumpConntrack31 is `ovs-appctl dpctl/dump-conntrack zone=5` from the lab's OVS 3.1.0
// (userspace datapath): an IPv4 echo, an IPv6 echo and TCP connections.
const dumpConntrack31 = `icmp,orig=(src=10.9.0.1,dst=10.9.0.2,id=4110,type=8,code=0),reply=(src=10.9.0.2,dst=10.9.0.1,id=4110,type=0,code=0),zone=5
icmpv6,orig=(src=fd00::1,dst=fd00::2,id=4112,type=128,code=0),reply=(src=fd00::2,dst=fd00::1,id=4112,type=129,code=0),zone=5
tcp,orig=(src=10.9.0.1,dst=10.9.0.2,sport=51028,dport=5201),reply=(src=10.9.0.2,dst=10.9.0.1,sport=5201,dport=51028),zone=5,protoinfo=(state=ESTABLISHED)
tcp,orig=(src=10.9.0.1,dst=10.9.0.2,sport=39374,dport=5201),reply=(src=10.9.0.2,dst=10.9.0.1,sport=5201,dport=39374),zone=5,protoinfo=(state=TIME_WAIT)

udp,orig=(src=10.9.0.1,dst=10.9.0.2,sport=5353,dport=53),reply=(src=10.9.0.2,dst=10.9.0.1,sport=53,dport=5353)
47,orig=(src=10.9.0.1,dst=10.9.0.2),reply=(src=10.9.0.2,dst=10.9.0.1),zone=12,mark=1
`

func TestParseConntrack(t *testing.T) {
	got, err := ParseConntrack(strings.NewReader(dumpConntrack31))
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	want := []ConntrackEntry{
		{5, offload.CTTuple{Proto: 1, Src: a("10.9.0.1"), Dst: a("10.9.0.2"), ICMPID: 4110, ICMPType: 8}},
		{5, offload.CTTuple{Proto: 58, Src: a("fd00::1"), Dst: a("fd00::2"), ICMPID: 4112, ICMPType: 128}},
		{5, offload.CTTuple{Proto: 6, Src: a("10.9.0.1"), Dst: a("10.9.0.2"), SrcPort: 51028, DstPort: 5201}},
		{5, offload.CTTuple{Proto: 6, Src: a("10.9.0.1"), Dst: a("10.9.0.2"), SrcPort: 39374, DstPort: 5201}},
		{0, offload.CTTuple{Proto: 17, Src: a("10.9.0.1"), Dst: a("10.9.0.2"), SrcPort: 5353, DstPort: 53}},
		{12, offload.CTTuple{Proto: 47, Src: a("10.9.0.1"), Dst: a("10.9.0.2")}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	// the exact tuples a flush sends back
	if s := got[0].Tuple.String(); s != "ct_nw_src=10.9.0.1,ct_nw_dst=10.9.0.2,ct_nw_proto=1,icmp_type=8,icmp_code=0,icmp_id=4110" {
		t.Errorf("icmp tuple %s", s)
	}
	if s := got[2].Tuple.String(); s != "ct_nw_src=10.9.0.1,ct_nw_dst=10.9.0.2,ct_nw_proto=6,ct_tp_src=51028,ct_tp_dst=5201" {
		t.Errorf("tcp tuple %s", s)
	}
	for _, e := range got {
		if err := ValidateConntrackTuple(e.Tuple.String()); err != nil {
			t.Errorf("%+v: %v", e, err)
		}
	}
}

func TestParseConntrackErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"tcp", "want proto,orig=(...)"},
		{"foo,orig=(src=1.1.1.1,dst=1.1.1.2)", `protocol "foo"`},
		{"tcp,reply=(src=1.1.1.1,dst=1.1.1.2)", "no orig"},
		{"tcp,orig=(src=1.1.1.1,dst=1.1.1.2", "unbalanced"},
		{"tcp,orig=(src=1.1.1.1)", "want src and dst of one family"},
		{"tcp,orig=(src=1.1.1.1,dst=::1)", "want src and dst of one family"},
		{"tcp,orig=(src=1.1.1.1,dst=1.1.1.2,sport=70000,dport=1)", "sport=70000"},
		{"tcp,orig=(src=1.1.1.1,dst=1.1.1.2),zone=x", `zone "x"`},
		{"icmp,orig=src=1.1.1.1", "want (...)"},
	} {
		_, err := ParseConntrack(strings.NewReader("\n" + tc.in + "\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: %v, want an error with %q naming line 2", tc.in, err, tc.want)
		}
	}
}

func TestValidateConntrackTuple(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"ct_nw_dst=10.0.0.1", ""},
		{"ct_nw_src=10.0.0.9,ct_nw_dst=10.0.0.1,ct_nw_proto=1,icmp_type=8,icmp_code=0,icmp_id=4110", ""},
		{"ct_ipv6_src=fd00::9,ct_ipv6_dst=fe80::1,ct_nw_proto=6,ct_tp_dst=22", ""},
		{"", "empty"},
		{"ct_nw_proto=6,ct_tp_dst=22", "names no address"},
		{"ct_nw_dst=10.0.0.1,ct_nw_dst=10.0.0.2", "given twice"},
		{"ct_nw_dst=fd00::1", "want an IPv4 address"},
		{"ct_ipv6_dst=10.0.0.1", "want an IPv6 address"},
		{"ct_nw_src=10.0.0.1,ct_ipv6_dst=fd00::1", "mixes"},
		{"ct_nw_dst=10.0.0.1,ct_tp_dst=70000", "0..65535"},
		{"ct_nw_dst=10.0.0.1,ct_nw_proto=-1", "0..255"},
		{"ct_nw_dst=10.0.0.1,zone=5", "unknown field"},
		{"ct_nw_dst=10.0.0.1 ct_nw_proto=6", "want an IPv4 address"},
		{"ct_nw_dst=10.0.0.1,", "want key=value"},
		{"ct_ipv6_dst=fe80::1%eth0", "want an IPv6 address"},
	} {
		err := ValidateConntrackTuple(tc.in)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestOVSHasICMPv6FlushFix(t *testing.T) {
	for v, want := range map[string]bool{
		"ovs-vswitchd (Open vSwitch) 3.1.0\n":                  false,
		"ovs-vswitchd (Open vSwitch) 3.1.0\nDPDK 22.11.4\n":    false,
		"ovs-vswitchd (Open vSwitch) 3.1.4":                    false,
		"ovs-vswitchd (Open vSwitch) 3.1.5":                    true,
		"ovs-vswitchd (Open vSwitch) 2.17.9":                   false,
		"ovs-vswitchd (Open vSwitch) 2.17.10":                  true,
		"ovs-vswitchd (Open vSwitch) 3.0.7":                    true,
		"ovs-vswitchd (Open vSwitch) 3.2.2":                    false,
		"ovs-vswitchd (Open vSwitch) 3.3.1":                    true,
		"ovs-vswitchd (Open vSwitch) 3.4.0":                    true,
		"ovs-vswitchd (Open vSwitch) 3.6.90":                   true,
		"ovs-vswitchd (Open vSwitch) 2.16.0":                   false,
		"garbage":                                              false,
		"":                                                     false,
		"ovs-vswitchd (Open vSwitch) 3.1.0-2+deb12u1 (Debian)": false,
	} {
		if got := ovsHasICMPv6FlushFix(v); got != want {
			t.Errorf("%q: %v, want %v", v, got, want)
		}
	}
}

func FuzzParseConntrack(f *testing.F) {
	for _, l := range strings.Split(dumpConntrack31, "\n") {
		f.Add(l)
	}
	f.Add("tcp,orig=((((,zone=")
	f.Add("icmp,orig=(src=1.1.1.1,dst=1.1.1.2,id=,type=8)")
	f.Fuzz(func(t *testing.T, s string) {
		es, err := ParseConntrack(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, e := range es {
			// whatever parses names two addresses of one family: its exact tuple is valid
			if err := ValidateConntrackTuple(e.Tuple.String()); err != nil {
				t.Fatalf("%q parsed to %+v whose tuple is invalid: %v", s, e, err)
			}
		}
	})
}

func FuzzValidateConntrackTuple(f *testing.F) {
	f.Add("ct_nw_dst=10.0.0.1")
	f.Add("ct_ipv6_src=fd00::9,ct_nw_proto=58,icmp_type=128")
	f.Add("=,=,")
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateConntrackTuple(s) == nil && (strings.ContainsAny(s, " '\"\n;") || !strings.Contains(s, "=")) {
			t.Fatalf("%q accepted", s)
		}
	})
}
