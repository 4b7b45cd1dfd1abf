package offload

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/offlane/offlane/controlplane"
)

// l3V6Snapshot is l3Snapshot with tenant A dual-stack: fd00:1::/64 on a-x and
// fd00:2::/64 on a-y on router ra's existing interface ports (gateways ::1), a1 and the
// remote ay with IPv6 fixed IPs, and an IPv6 extra route via a host on a-y.
func l3V6Snapshot() Snapshot {
	s := l3Snapshot()
	s.Subnets = append(s.Subnets,
		controlplane.Subnet{ID: "sa-x6", NetworkID: "a-x", CIDR: "fd00:1::/64", GatewayIP: strp("fd00:1::1"), IPVersion: 6},
		controlplane.Subnet{ID: "sa-y6", NetworkID: "a-y", CIDR: "fd00:2::/64", GatewayIP: strp("fd00:2::1"), IPVersion: 6})
	for i := range s.Ports {
		p := &s.Ports[i]
		switch p.ID {
		case "ra-x":
			p.FixedIPs = append(p.FixedIPs, controlplane.FixedIP{SubnetID: "sa-x6", IPAddress: "fd00:1::1"})
		case "ra-y":
			p.FixedIPs = append(p.FixedIPs, controlplane.FixedIP{SubnetID: "sa-y6", IPAddress: "fd00:2::1"})
		case "a1":
			p.FixedIPs = append(p.FixedIPs, controlplane.FixedIP{SubnetID: "sa-x6", IPAddress: "fd00:1::5"})
		case "ay":
			p.FixedIPs = append(p.FixedIPs, controlplane.FixedIP{SubnetID: "sa-y6", IPAddress: "fd00:2::5"})
		}
	}
	s.Routers[0].Routes = append(s.Routers[0].Routes, controlplane.Route{Destination: "fd00:99::/48", NextHop: "fd00:2::5"})
	return s
}

func buildL3V6Fixture(t testing.TB) *IR {
	t.Helper()
	ir, err := Build(BuildInput{Host: "node1", Snapshot: l3V6Snapshot(), OFPorts: l3OFPorts,
		VTEPs: map[string]netip.Addr{"node1": netip.MustParseAddr("192.0.2.1"), "node2": netip.MustParseAddr("192.0.2.2")}})
	if err != nil {
		t.Fatal(err)
	}
	return ir
}

// TestCompileL3IPv6 pins the IPv6 flows of router ra (testdata/l3-ipv6.flows: the ND
// responder, echo, routes, next hops) and checks what must hold whatever the golden
// says: no IPv6 in the NAT tables, static next hops for local and remote IPv6 ports,
// both the gateway and the link-local address answered. The lab tests prove the flows
// with traffic (test/e2e TestLabRoutingIPv6*).
func TestCompileL3IPv6(t *testing.T) {
	ir := buildL3V6Fixture(t)
	plan := PlanNode(ir, natNode("true"), testLayout())
	res, err := Compile(testLayout(), ir, plan)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Conflicts) > 0 {
		t.Fatalf("conflicts: %v", res.Conflicts)
	}
	var v6 []Flow
	has := func(table uint8, match, actions string) bool {
		return slices.ContainsFunc(res.Flows, func(f Flow) bool {
			return f.Table == table && strings.Contains(f.Match, match) && strings.Contains(f.Actions, actions)
		})
	}
	for _, f := range res.Flows {
		if strings.Contains(f.Match, "ipv6") || strings.Contains(f.Match, "icmp6") || f.Table == TableL3NA {
			if k := CookieKind(f.Cookie); k == KindRouter || k == KindPort || k == KindRemotePort || f.Cookie == CookieFor(KindNode, L3PipelineOriginID) {
				if f.Table >= TableL3Commit || f.Table == TableL2 && CookieKind(f.Cookie) == KindRouter {
					v6 = append(v6, f)
				}
			}
		}
		if (f.Table == TableL3In || f.Table == TableL3DNAT || f.Table == TableL3SNATIn || f.Table == TableL3SNAT) &&
			(strings.Contains(f.Match, "ipv6") || strings.Contains(f.Actions, "fd00:")) {
			t.Errorf("IPv6 in a NAT table: %s", f)
		}
	}
	golden(t, "l3-ipv6.flows", flowText(v6))

	llX := linkLocal("fa:16:3e:aa:00:01").String() // fe80::f816:3eff:feaa:1
	for _, c := range []struct {
		what           string
		table          uint8
		match, actions string
	}{
		{"ND for the a-x gateway", TableL2, "icmp6,reg6=0x1,icmp_type=135,nd_target=fd00:1::1", "set_field:3758096384->nd_reserved,set_field:2->nd_options_type,resubmit(,69)"},
		{"ND for ra-x's link-local address", TableL2, "icmp_type=135,nd_target=" + llX, "set_field:" + llX + "->ipv6_src"},
		{"NA completion", TableL3NA, "icmp6,reg6=0x1,icmp_type=136,nd_target=fd00:1::1", "set_field:fa:16:3e:aa:00:01->nd_tll,IN_PORT"},
		{"no answer without a source link-layer option", TableL2, "nd_target=fd00:1::1,nd_sll=00:00:00:00:00:00", "drop"},
		{"echo to the gateway", TableL3Route, "icmp6,reg5=", "set_field:fd00:1::1->ipv6_src,set_field:129->icmpv6_type"},
		{"connected route a-y", TableL3Route, "ipv6_dst=fd00:2::/64", "dec_ttl,set_field:0x2->reg6,set_field:fa:16:3e:aa:00:02->eth_src,move:NXM_NX_IPV6_DST[]->NXM_NX_XXREG2[],goto_table:67"},
		{"extra route via ay", TableL3Route, "ipv6_dst=fd00:99::/48", "set_field:0xfd000002000000000000000000000005->xxreg2,goto_table:67"},
		{"local next hop a1", TableL3Neigh, "ipv6,reg6=0x1,reg8=0xfd000001,reg9=0,reg10=0,reg11=0x5", "set_field:fa:16:3e:00:01:01->eth_dst"},
		{"remote next hop ay", TableL3Neigh, "ipv6,reg6=0x2,reg8=0xfd000002,reg9=0,reg10=0,reg11=0x5", "set_field:fa:16:3e:00:02:01->eth_dst"},
		{"IPv6 commit in the source zone", TableL3Commit, "ct_state=+new+trk,ipv6", "ct(commit,zone=NXM_NX_REG6[0..15])"},
	} {
		if !has(c.table, c.match, c.actions) {
			t.Errorf("%s: no flow in table %d matching %q with actions %q", c.what, c.table, c.match, c.actions)
		}
	}
	// The /48 route wins over nothing shorter, the /64s by prefix length.
	for _, f := range res.Flows {
		if f.Table == TableL3Route && strings.Contains(f.Match, "ipv6_dst=fd00:99::/48") && f.Priority != prioL3Route+48 {
			t.Errorf("route priority %d, want %d: %s", f.Priority, prioL3Route+48, f)
		}
	}

	// The plan says which families are routed, and that IPv6 is not NATed.
	for _, d := range plan.Port("a1").Decisions {
		if d.Feature == FeatureRouting && (d.Backend != BackendOpenFlow || !strings.Contains(d.Reason, "gateway 10.1.0.0/24, fd00:1::/64") ||
			!strings.HasSuffix(d.Reason, "; IPv4 and IPv6 routed, IPv6 not NATed")) {
			t.Errorf("a1 routing: %+v", d)
		}
	}
}

// TestPlanL3IPv6Only: a port on an IPv6-only routed network is routed and not NATed, even
// when its router SNATs IPv4.
func TestPlanL3IPv6Only(t *testing.T) {
	s := l3V6Snapshot()
	s.Subnets = slices.DeleteFunc(s.Subnets, func(sn controlplane.Subnet) bool { return sn.ID == "sa-x" })
	for i := range s.Ports {
		p := &s.Ports[i]
		p.FixedIPs = slices.DeleteFunc(p.FixedIPs, func(f controlplane.FixedIP) bool { return f.SubnetID == "sa-x" })
	}
	s.FloatingIPs = nil
	ir, err := Build(BuildInput{Host: "node1", Snapshot: s, OFPorts: l3OFPorts})
	if err != nil {
		t.Fatal(err)
	}
	plan := PlanNode(ir, natNode("true"), testLayout())
	want := map[Feature]string{
		FeatureRouting: "router ra, gateway fd00:1::/64: auto: OVS 3.1.0 datapath netdev has conntrack NAT",
		FeatureNAT:     "router ra has only IPv6 on network a-x: routed, not NATed (as Neutron)",
	}
	for _, d := range plan.Port("a2").Decisions {
		if w, ok := want[d.Feature]; ok && !strings.Contains(d.Reason, w) {
			t.Errorf("a2 %s: %q, want it to contain %q", d.Feature, d.Reason, w)
		}
		if d.Feature == FeatureRouting && !strings.HasSuffix(d.Reason, "; IPv6 routed, not NATed") {
			t.Errorf("a2 routing: %q does not say IPv6 only", d.Reason)
		}
	}
}

func TestNextHop6Text(t *testing.T) {
	for _, c := range []struct{ addr, set, match string }{
		{"fd00:2::5", "set_field:0xfd000002000000000000000000000005->xxreg2", "reg8=0xfd000002,reg9=0,reg10=0,reg11=0x5"},
		{"::107", "set_field:0x107->xxreg2", "reg8=0,reg9=0,reg10=0,reg11=0x107"},
		{"2001:db8:0:1:ffff:0:ab:1", "set_field:0x20010db800000001ffff000000ab0001->xxreg2", "reg8=0x20010db8,reg9=0x1,reg10=0xffff0000,reg11=0xab0001"},
	} {
		a := netip.MustParseAddr(c.addr)
		if got := actSetNextHop6(a); got != c.set {
			t.Errorf("actSetNextHop6(%s) = %s, want %s", a, got, c.set)
		}
		if got := newMatch().nextHop6(a).String(); got != c.match {
			t.Errorf("nextHop6(%s) = %s, want %s", a, got, c.match)
		}
	}
}
