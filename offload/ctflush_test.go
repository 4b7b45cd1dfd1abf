package offload

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/controlplane"
)

// ctBuild builds the node1 IR of a snapshot (the agent rebuilds the IR from a fresh
// snapshot at every reconcile, so the two IRs of a test share no objects), keeping the
// local VLANs of prev when given.
func ctBuild(t testing.TB, s Snapshot, prev *IR) *IR {
	t.Helper()
	ofp := map[string]int{}
	for k, v := range twoTenantsOFPorts {
		ofp[k] = v
	}
	ofp["c1"], ofp["r1"] = 31, 32
	in := BuildInput{Host: "node1", Snapshot: s, OFPorts: ofp,
		VTEPs: map[string]netip.Addr{"node1": netip.MustParseAddr("192.0.2.1"), "node2": netip.MustParseAddr("192.0.2.2")}}
	if prev != nil {
		in.LocalVLANs = prev.LocalVLANs()
	}
	ir, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	return ir
}

// flushLines prints flushes as "String | Tuple exact=…", zones as z(net).
func flushLines(ir *IR, fs []CTFlush) []string {
	zones := map[uint16]string{}
	for id, s := range ir.Segments {
		zones[s.LocalVLAN] = id
	}
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		s := strings.Replace(f.String(), fmt.Sprintf("zone=%d ", f.Zone), "zone="+zones[f.Zone]+" ", 1)
		out = append(out, fmt.Sprintf("%s | %s exact=%v", s, f.Tuple(), f.Exact()))
	}
	return out
}

func portByID(s *Snapshot, id string) *controlplane.Port {
	for i := range s.Ports {
		if s.Ports[i].ID == id {
			return &s.Ports[i]
		}
	}
	panic("no port " + id)
}

func groupByID(s *Snapshot, id string) *controlplane.SecurityGroup {
	for i := range s.SecurityGroups {
		if s.SecurityGroups[i].ID == id {
			return &s.SecurityGroups[i]
		}
	}
	panic("no group " + id)
}

func dropRule(s *Snapshot, sg, rule string) {
	g := groupByID(s, sg)
	g.Rules = slices.DeleteFunc(slices.Clone(g.Rules), func(r controlplane.SecurityGroupRule) bool { return r.ID == rule })
}

// ctScenario is twoTenants plus an IPv6 port c1 (group sg-c: SSH over IPv6 from one
// host, and ICMPv6 echo requests) and a router interface r1 on net-a-vlan in sg-b (a
// network:* port: not filtered, so never flushed).
func ctScenario() Snapshot {
	s := twoTenants()
	s.SecurityGroups = append(s.SecurityGroups, secgroup("sg-c", "tenant-a",
		ruleSpec{id: "c-ssh6", dir: Ingress, eth: IPv6, proto: "tcp", min: 22, max: 22, cidr: "fd00::9/128"},
		ruleSpec{id: "c-ping6", dir: Ingress, eth: IPv6, proto: "icmp", min: 128}))
	s.Ports = append(s.Ports, port("c1", "net-a-vx", "node1", "fa:16:3e:00:00:31", []string{"10.0.0.31", "fd00::5"}, "sg-c"))
	r1 := port("r1", "net-a-vlan", "node1", "fa:16:3e:00:00:41", []string{"10.0.0.254"}, "sg-b")
	r1.DeviceOwner = controlplane.OwnerRouterInterface
	s.Ports = append(s.Ports, r1)
	return s
}

func TestConntrackFlushes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(s *Snapshot)
		want   []string
	}{{
		name:   "unchanged",
		change: func(*Snapshot) {},
	}, {
		name: "rule added",
		change: func(s *Snapshot) {
			g := groupByID(s, "sg-a")
			g.Rules = append(slices.Clone(g.Rules), secgroup("x", "t", ruleSpec{id: "a-web", dir: Ingress, proto: "tcp", min: 80, max: 80}).Rules[0])
		},
	}, {
		// a CIDR remote and one port: the tuple says dst, proto and port; the /24 source
		// only the exact matching of a dump can check
		name:   "rule removed",
		change: func(s *Snapshot) { dropRule(s, "sg-a", "a-ssh") },
		want: []string{
			"zone=net-a-vlan port=a1 ingress IPv4 src=192.168.1.0/24 dst=10.0.0.1 proto=6 dst_port=22-22 | ct_nw_dst=10.0.0.1,ct_nw_proto=6,ct_tp_dst=22 exact=false",
			"zone=net-a-vlan port=a2 ingress IPv4 src=192.168.1.0/24 dst=10.0.0.2 proto=6 dst_port=22-22 | ct_nw_dst=10.0.0.2,ct_nw_proto=6,ct_tp_dst=22 exact=false",
			"zone=net-a-vx port=a3 ingress IPv4 src=192.168.1.0/24 dst=10.0.0.3 proto=6 dst_port=22-22 | ct_nw_dst=10.0.0.3,ct_nw_proto=6,ct_tp_dst=22 exact=false",
		},
	}, {
		// ax (on node2) leaves sg-a's address set: the ICMP rule naming sg-a no longer
		// admits it on a1..a3 (the router port r1 is not filtered)
		name: "remote group member removed",
		change: func(s *Snapshot) {
			s.Ports = slices.DeleteFunc(slices.Clone(s.Ports), func(p controlplane.Port) bool { return p.ID == "ax" })
		},
		want: []string{
			"zone=net-a-vlan port=a1 ingress IPv4 src=10.0.0.9 dst=10.0.0.1 proto=1 | ct_nw_src=10.0.0.9,ct_nw_dst=10.0.0.1,ct_nw_proto=1 exact=false",
			"zone=net-a-vlan port=a2 ingress IPv4 src=10.0.0.9 dst=10.0.0.2 proto=1 | ct_nw_src=10.0.0.9,ct_nw_dst=10.0.0.2,ct_nw_proto=1 exact=false",
			"zone=net-a-vx port=a3 ingress IPv4 src=10.0.0.9 dst=10.0.0.3 proto=1 | ct_nw_src=10.0.0.9,ct_nw_dst=10.0.0.3,ct_nw_proto=1 exact=false",
		},
	}, {
		name: "remote group member changes address",
		change: func(s *Snapshot) {
			portByID(s, "ax").FixedIPs = []controlplane.FixedIP{{IPAddress: "10.0.0.19"}}
		},
		want: []string{
			"zone=net-a-vlan port=a1 ingress IPv4 src=10.0.0.9 dst=10.0.0.1 proto=1 | ct_nw_src=10.0.0.9,ct_nw_dst=10.0.0.1,ct_nw_proto=1 exact=false",
			"zone=net-a-vlan port=a2 ingress IPv4 src=10.0.0.9 dst=10.0.0.2 proto=1 | ct_nw_src=10.0.0.9,ct_nw_dst=10.0.0.2,ct_nw_proto=1 exact=false",
			"zone=net-a-vx port=a3 ingress IPv4 src=10.0.0.9 dst=10.0.0.3 proto=1 | ct_nw_src=10.0.0.9,ct_nw_dst=10.0.0.3,ct_nw_proto=1 exact=false",
		},
	}, {
		// b3 loses sg-b: its web range in, and everything out (from its fixed IP and its
		// allowed address pair)
		name:   "group removed from port",
		change: func(s *Snapshot) { portByID(s, "b3").SecurityGroups = []string{} },
		want: []string{
			"zone=net-b-vx port=b3 egress IPv4 src=10.0.0.3 dst=any proto=any | ct_nw_src=10.0.0.3 exact=true",
			"zone=net-b-vx port=b3 egress IPv4 src=10.0.0.100 dst=any proto=any | ct_nw_src=10.0.0.100 exact=true",
			"zone=net-b-vx port=b3 ingress IPv4 src=any dst=10.0.0.3 proto=6 dst_port=8000-8080 | ct_nw_dst=10.0.0.3,ct_nw_proto=6 exact=false",
			"zone=net-b-vx port=b3 ingress IPv4 src=any dst=10.0.0.100 proto=6 dst_port=8000-8080 | ct_nw_dst=10.0.0.100,ct_nw_proto=6 exact=false",
		},
	}, {
		// b3's allowed pair is a /28 holding its fixed IP: one flush per permission, the
		// wider one (not a partial tuple: the dump must match the prefix)
		name: "wide allowed pair covers the fixed IP",
		change: func(s *Snapshot) {
			portByID(s, "b3").SecurityGroups = []string{}
		},
		want: []string{
			"zone=net-b-vx port=b3 egress IPv4 src=10.0.0.0/28 dst=any proto=any |  exact=false",
			"zone=net-b-vx port=b3 ingress IPv4 src=any dst=10.0.0.0/28 proto=6 dst_port=8000-8080 | ct_nw_proto=6 exact=false",
		},
	}, {
		// the any-protocol egress rule of sg-a: a1..a3 (not r1, a router port)
		name:   "any-protocol rule removed",
		change: func(s *Snapshot) { dropRule(s, "sg-a", "a-eg4") },
		want: []string{
			"zone=net-a-vlan port=a1 egress IPv4 src=10.0.0.1 dst=any proto=any | ct_nw_src=10.0.0.1 exact=true",
			"zone=net-a-vlan port=a2 egress IPv4 src=10.0.0.2 dst=any proto=any | ct_nw_src=10.0.0.2 exact=true",
			"zone=net-a-vx port=a3 egress IPv4 src=10.0.0.3 dst=any proto=any | ct_nw_src=10.0.0.3 exact=true",
		},
	}, {
		name: "removed rule still covered by a wider one",
		change: func(s *Snapshot) {
			dropRule(s, "sg-a", "a-icmp")
			g := groupByID(s, "sg-a")
			g.Rules = append(g.Rules, secgroup("x", "t", ruleSpec{id: "a-all", dir: Ingress, group: "sg-a"}).Rules[0])
		},
	}, {
		name: "rule narrowed",
		change: func(s *Snapshot) {
			dropRule(s, "sg-b", "b-web")
			g := groupByID(s, "sg-b")
			g.Rules = append(g.Rules, secgroup("x", "t", ruleSpec{id: "b-web2", dir: Ingress, proto: "tcp", min: 8000, max: 8000}).Rules[0])
		},
		want: []string{
			"zone=net-b-vlan port=b1 ingress IPv4 src=any dst=10.0.0.1 proto=6 dst_port=8000-8080 | ct_nw_dst=10.0.0.1,ct_nw_proto=6 exact=false",
			"zone=net-b-vx port=b3 ingress IPv4 src=any dst=10.0.0.3 proto=6 dst_port=8000-8080 | ct_nw_dst=10.0.0.3,ct_nw_proto=6 exact=false",
			"zone=net-b-vx port=b3 ingress IPv4 src=any dst=10.0.0.100 proto=6 dst_port=8000-8080 | ct_nw_dst=10.0.0.100,ct_nw_proto=6 exact=false",
		},
	}, {
		// to the fixed IPv6 address and the EUI-64 link-local one
		name:   "IPv6 rule removed",
		change: func(s *Snapshot) { dropRule(s, "sg-c", "c-ssh6") },
		want: []string{
			"zone=net-a-vx port=c1 ingress IPv6 src=fd00::9 dst=fd00::5 proto=6 dst_port=22-22 | ct_ipv6_src=fd00::9,ct_ipv6_dst=fd00::5,ct_nw_proto=6,ct_tp_dst=22 exact=true",
			"zone=net-a-vx port=c1 ingress IPv6 src=fd00::9 dst=fe80::f816:3eff:fe00:31 proto=6 dst_port=22-22 | ct_ipv6_src=fd00::9,ct_ipv6_dst=fe80::f816:3eff:fe00:31,ct_nw_proto=6,ct_tp_dst=22 exact=true",
		},
	}, {
		name:   "ICMPv6 type rule removed",
		change: func(s *Snapshot) { dropRule(s, "sg-c", "c-ping6") },
		want: []string{
			"zone=net-a-vx port=c1 ingress IPv6 src=any dst=fd00::5 proto=58 icmp_type=128 | ct_ipv6_dst=fd00::5,ct_nw_proto=58,icmp_type=128 exact=false",
			"zone=net-a-vx port=c1 ingress IPv6 src=any dst=fe80::f816:3eff:fe00:31 proto=58 icmp_type=128 | ct_ipv6_dst=fe80::f816:3eff:fe00:31,ct_nw_proto=58,icmp_type=128 exact=false",
		},
	}, {
		// the pipeline enforces stateless groups statefully (the planner says so), so
		// their established connections need the flush as much
		name: "stateless group rule removed",
		change: func(s *Snapshot) {
			groupByID(s, "sg-b").Stateful = false
			dropRule(s, "sg-b", "b-web")
		},
		want: []string{
			"zone=net-b-vlan port=b1 ingress IPv4 src=any dst=10.0.0.1 proto=6 dst_port=8000-8080 | ct_nw_dst=10.0.0.1,ct_nw_proto=6 exact=false",
			"zone=net-b-vx port=b3 ingress IPv4 src=any dst=10.0.0.3 proto=6 dst_port=8000-8080 | ct_nw_dst=10.0.0.3,ct_nw_proto=6 exact=false",
			"zone=net-b-vx port=b3 ingress IPv4 src=any dst=10.0.0.100 proto=6 dst_port=8000-8080 | ct_nw_dst=10.0.0.100,ct_nw_proto=6 exact=false",
		},
	}, {
		name:   "port security turned off",
		change: func(s *Snapshot) { p := portByID(s, "b1"); p.PortSecurityEnabled = false; p.SecurityGroups = nil },
	}, {
		// b2 was unfiltered (everything allowed): now only egress IPv4 is
		name: "port security turned on",
		change: func(s *Snapshot) {
			p := portByID(s, "b2")
			p.PortSecurityEnabled, p.SecurityGroups = true, []string{"sg-b"}
			dropRule(s, "sg-b", "b-web")
		},
		want: []string{
			"zone=net-b-vlan port=b1 ingress IPv4 src=any dst=10.0.0.1 proto=6 dst_port=8000-8080 | ct_nw_dst=10.0.0.1,ct_nw_proto=6 exact=false",
			"zone=net-b-vlan port=b2 egress IPv6 src=fe80::f816:3eff:fe00:22 dst=any proto=any | ct_ipv6_src=fe80::f816:3eff:fe00:22 exact=true",
			"zone=net-b-vlan port=b2 ingress IPv4 src=any dst=10.0.0.2 proto=any | ct_nw_dst=10.0.0.2 exact=true",
			"zone=net-b-vlan port=b2 ingress IPv6 src=any dst=fe80::f816:3eff:fe00:22 proto=any | ct_ipv6_dst=fe80::f816:3eff:fe00:22 exact=true",
			"zone=net-b-vx port=b3 ingress IPv4 src=any dst=10.0.0.3 proto=6 dst_port=8000-8080 | ct_nw_dst=10.0.0.3,ct_nw_proto=6 exact=false",
			"zone=net-b-vx port=b3 ingress IPv4 src=any dst=10.0.0.100 proto=6 dst_port=8000-8080 | ct_nw_dst=10.0.0.100,ct_nw_proto=6 exact=false",
		},
	}, {
		name: "port deleted",
		change: func(s *Snapshot) {
			s.Ports = slices.DeleteFunc(slices.Clone(s.Ports), func(p controlplane.Port) bool { return p.ID == "b1" })
		},
	}, {
		name:   "router port's group changes (not filtered)",
		change: func(s *Snapshot) { portByID(s, "r1").SecurityGroups = []string{} },
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s0, s1 := ctScenario(), ctScenario()
			if strings.HasPrefix(tc.name, "wide allowed pair") {
				for _, s := range []*Snapshot{&s0, &s1} {
					portByID(s, "b3").AllowedAddressPairs = []controlplane.AddressPair{{IPAddress: "10.0.0.0/28"}}
				}
			}
			old := ctBuild(t, s0, nil)
			tc.change(&s1)
			cur := ctBuild(t, s1, old)
			got := ConntrackFlushes(old, cur)
			if lines := flushLines(old, got); !slices.Equal(lines, tc.want) {
				t.Errorf("flushes:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(tc.want, "\n"))
			}
			// deterministic: the same answer again, and from the same IRs as shared objects
			again := ConntrackFlushes(old, cur)
			if !slices.Equal(got, again) {
				t.Errorf("not deterministic:\n%v\n%v", got, again)
			}
			if !slices.IsSortedFunc(got, compareFlush) {
				t.Errorf("not sorted: %v", got)
			}
		})
	}
}

func TestConntrackFlushesNil(t *testing.T) {
	ir := ctBuild(t, ctScenario(), nil)
	if f := ConntrackFlushes(nil, ir); f != nil {
		t.Errorf("no previous IR: %v", f)
	}
	if f := ConntrackFlushes(ir, ir); f != nil {
		t.Errorf("same IR: %v", f)
	}
}

// A large address set shrinking to nothing: per port and port address, one flush
// without the remote address replaces the many host flushes.
func TestConntrackFlushesCollapsesHosts(t *testing.T) {
	build := func(members int) Snapshot {
		s := ctScenario()
		for i := 0; i < members; i++ {
			s.Ports = append(s.Ports, port(fmt.Sprintf("m%02d", i), "net-a-vx", "node2", fmt.Sprintf("fa:16:3e:00:01:%02x", i),
				[]string{fmt.Sprintf("10.0.1.%d", i+1)}, "sg-a"))
		}
		return s
	}
	for _, tc := range []struct {
		members, perPort int
	}{{maxHostFlushes, maxHostFlushes}, {maxHostFlushes + 4, 1}} {
		old := ctBuild(t, build(tc.members), nil)
		cur := ctBuild(t, ctScenario(), old)
		got := ConntrackFlushes(old, cur)
		per := map[string]int{}
		for _, f := range got {
			per[f.PortID]++
			if f.Proto != ProtoICMP || f.Direction != Ingress {
				t.Errorf("%d members: unexpected %s", tc.members, f)
			}
			if tc.perPort == 1 && f.Src.IsValid() {
				t.Errorf("%d members: %s kept its source", tc.members, f)
			}
		}
		// a1..a3 each lose the removed members (and ax stays)
		for _, p := range []string{"a1", "a2", "a3"} {
			if per[p] != tc.perPort {
				t.Errorf("%d members removed: %s has %d flushes, want %d", tc.members, p, per[p], tc.perPort)
			}
		}
	}
}

func TestCTFlushMatches(t *testing.T) {
	v4 := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	pf := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	tcp := CTTuple{Proto: ProtoTCP, Src: v4("192.168.1.7"), Dst: v4("10.0.0.1"), SrcPort: 40000, DstPort: 22}
	icmp := CTTuple{Proto: ProtoICMP, Src: v4("10.0.0.9"), Dst: v4("10.0.0.1"), ICMPID: 7, ICMPType: 8}
	icmp6 := CTTuple{Proto: ProtoICMPv6, Src: netip.MustParseAddr("fd00::9"), Dst: netip.MustParseAddr("fd00::5"), ICMPID: 7, ICMPType: 128}
	base := CTFlush{Zone: 3, EtherType: IPv4, Direction: Ingress, Proto: ProtoAny, PortMin: -1, PortMax: -1}
	with := func(mod func(f *CTFlush)) CTFlush { f := base; mod(&f); return f }
	for _, tc := range []struct {
		name string
		f    CTFlush
		t    CTTuple
		want bool
	}{
		{"any matches tcp", base, tcp, true},
		{"any IPv4 does not match IPv6", base, icmp6, false},
		{"dst host", with(func(f *CTFlush) { f.Dst = pf("10.0.0.1/32") }), tcp, true},
		{"other dst", with(func(f *CTFlush) { f.Dst = pf("10.0.0.2/32") }), tcp, false},
		{"src cidr", with(func(f *CTFlush) { f.Src = pf("192.168.1.0/24") }), tcp, true},
		{"src cidr miss", with(func(f *CTFlush) { f.Src = pf("192.168.2.0/24") }), tcp, false},
		{"port range", with(func(f *CTFlush) { f.Proto, f.PortMin, f.PortMax = ProtoTCP, 20, 23 }), tcp, true},
		{"port range miss", with(func(f *CTFlush) { f.Proto, f.PortMin, f.PortMax = ProtoTCP, 80, 80 }), tcp, false},
		{"udp is not tcp", with(func(f *CTFlush) { f.Proto = ProtoUDP }), tcp, false},
		{"icmp any type", with(func(f *CTFlush) { f.Proto = ProtoICMP }), icmp, true},
		{"icmp type", with(func(f *CTFlush) { f.Proto, f.PortMin = ProtoICMP, 8 }), icmp, true},
		{"icmp other type", with(func(f *CTFlush) { f.Proto, f.PortMin = ProtoICMP, 13 }), icmp, false},
		{"icmp type and code", with(func(f *CTFlush) { f.Proto, f.PortMin, f.PortMax = ProtoICMP, 8, 0 }), icmp, true},
		{"icmp other code", with(func(f *CTFlush) { f.Proto, f.PortMin, f.PortMax = ProtoICMP, 8, 1 }), icmp, false},
		{"icmpv6", with(func(f *CTFlush) { f.EtherType, f.Proto, f.Dst = IPv6, ProtoICMPv6, pf("fd00::5/128") }), icmp6, true},
		{"invalid tuple", base, CTTuple{Proto: ProtoTCP}, false},
	} {
		if got := tc.f.Matches(tc.t); got != tc.want {
			t.Errorf("%s: %s matches %s = %v, want %v", tc.name, tc.f, tc.t, got, tc.want)
		}
	}
}

func TestCTTupleString(t *testing.T) {
	for _, tc := range []struct {
		t    CTTuple
		want string
	}{
		{CTTuple{Proto: ProtoICMP, Src: netip.MustParseAddr("10.0.0.9"), Dst: netip.MustParseAddr("10.0.0.1"), ICMPID: 4110, ICMPType: 8},
			"ct_nw_src=10.0.0.9,ct_nw_dst=10.0.0.1,ct_nw_proto=1,icmp_type=8,icmp_code=0,icmp_id=4110"},
		{CTTuple{Proto: ProtoTCP, Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::2"), SrcPort: 1, DstPort: 2},
			"ct_ipv6_src=fd00::1,ct_ipv6_dst=fd00::2,ct_nw_proto=6,ct_tp_src=1,ct_tp_dst=2"},
		{CTTuple{Proto: 47, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2")},
			"ct_nw_src=10.0.0.1,ct_nw_dst=10.0.0.2,ct_nw_proto=47"},
	} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.t, got, tc.want)
		}
	}
	f := CTFlush{Zone: 7, EtherType: IPv4, Direction: Egress, Src: netip.MustParsePrefix("10.0.0.1/32"), Proto: ProtoUDP, PortMin: 53, PortMax: 53}
	if got := strings.Join(f.Args(), " "); got != "zone=7 ct_nw_src=10.0.0.1,ct_nw_proto=17,ct_tp_dst=53" || !f.Exact() {
		t.Errorf("args %q exact=%v", got, f.Exact())
	}
}

// BenchmarkConntrackFlushes is the benchmark node's reconcile after one rule of a group
// of 200 ports is removed, against a Compiler.Update of the same change measured in the
// same run (the flushes are computed on every reconcile, so they must cost far less).
func BenchmarkConntrackFlushes(b *testing.B) {
	s, ofp := benchSnapshot()
	build := func(s Snapshot, prev *IR) *IR {
		in := BuildInput{Host: "node1", Snapshot: s, OFPorts: ofp,
			VTEPs: map[string]netip.Addr{"node2": netip.MustParseAddr("192.0.2.2"), "node3": netip.MustParseAddr("192.0.2.3")}}
		if prev != nil {
			in.LocalVLANs = prev.LocalVLANs()
		}
		ir, err := Build(in)
		if err != nil {
			b.Fatal(err)
		}
		return ir
	}
	ir0 := build(s, nil)
	s1 := s
	s1.SecurityGroups = slices.Clone(s.SecurityGroups)
	g := s1.SecurityGroups[7]
	g.Rules = slices.Delete(slices.Clone(g.Rules), 1, 2) // sg07's tcp 80 from anywhere
	s1.SecurityGroups[7] = g
	ir1 := build(s1, ir0)
	plan0, plan1 := PlanNode(ir0, ovsNode(), testLayout()), PlanNode(ir1, ovsNode(), testLayout())

	c, err := NewCompiler(testLayout())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Update(ir0, plan0); err != nil {
		b.Fatal(err)
	}
	const rounds = 10
	start := time.Now()
	for i := 0; i < rounds; i++ {
		ir, plan := ir1, plan1
		if i%2 == 1 {
			ir, plan = ir0, plan0
		}
		if _, err := c.Update(ir, plan); err != nil {
			b.Fatal(err)
		}
	}
	compile := time.Since(start) / rounds

	b.ReportAllocs()
	var n int
	for b.Loop() {
		n = len(ConntrackFlushes(ir0, ir1))
	}
	perOp := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(n), "flushes")
	b.ReportMetric(float64(perOp)/float64(compile), "x-of-compile-update")
}

// TestConntrackFlushesRoutedZone: a port on a network of a router loses a permission:
// its routed connections sit in the router's routed zone (the lower local VLAN of its
// two networks), flushed as well as the port's own network zone.
func TestConntrackFlushesRoutedZone(t *testing.T) {
	s := ctScenario()
	old := ctBuild(t, s, nil)
	dropRule(&s, "sg-a", "a-ssh")
	cur := ctBuild(t, s, old)
	rt := &Router{ID: "rt", AdminStateUp: true, Interfaces: []RouterInterface{{NetworkID: "net-a-vx"}, {NetworkID: "net-a-vlan"}}}
	for _, ir := range []*IR{old, cur} {
		ir.Routers = map[string]*Router{"rt": rt}
	}
	rz := RoutedZone(cur, rt)
	vlan, vx := cur.Segments["net-a-vlan"].LocalVLAN, cur.Segments["net-a-vx"].LocalVLAN
	if rz != min(vlan, vx) {
		t.Fatalf("routed zone %d, want the lower of %d and %d", rz, vlan, vx)
	}
	got := flushLines(cur, ConntrackFlushes(old, cur))
	// The ports of the network that is not the routed zone's are flushed in both zones.
	other := "net-a-vx"
	if rz == vx {
		other = "net-a-vlan"
	}
	n := 0
	for _, l := range got {
		if strings.HasPrefix(l, "zone=net-a-") && strings.Contains(l, "proto=6 dst_port=22-22") {
			n++
		}
	}
	zoneOf := map[string]string{"a1": "net-a-vlan", "a2": "net-a-vlan", "a3": "net-a-vx"}
	want := len(zoneOf)
	for _, net := range zoneOf {
		if net == other {
			want++
		}
	}
	if n != want || len(got) != want {
		t.Fatalf("flushes (routed zone %d, other network %s):\n%s\nwant %d", rz, other, strings.Join(got, "\n"), want)
	}
	rzName := map[uint16]string{vlan: "net-a-vlan", vx: "net-a-vx"}[rz]
	for p, net := range zoneOf {
		for _, z := range []string{net, rzName} {
			if !slices.ContainsFunc(got, func(l string) bool {
				return strings.HasPrefix(l, "zone="+z+" port="+p+" ")
			}) {
				t.Errorf("no flush of %s in zone %s:\n%s", p, z, strings.Join(got, "\n"))
			}
		}
	}
	// Without the router, only the ports' own zones.
	old.Routers, cur.Routers = nil, nil
	if got := ConntrackFlushes(old, cur); len(got) != len(zoneOf) {
		t.Errorf("without a router: %d flushes, want %d", len(got), len(zoneOf))
	}
}
