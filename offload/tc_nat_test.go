package offload

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/offlane/offlane/hwdetect"
)

// natIR is tcL3IR with router r1's gateway on flat external network ext (SNAT
// 203.0.113.2, next hop 203.0.113.1), floating IP 203.0.113.9 on p2, SNAT for p1.
func natIR() (*IR, TCLayout) {
	ir := tcL3IR()
	ip := netip.MustParseAddr
	ir.Segments["ext"] = &Segment{NetworkID: "ext", Type: SegFlat, PhysicalNetwork: "physnet1", LocalVLAN: 9, MTU: 1500, External: true}
	gw := ir.Routers["r1"].Gateway
	gw.IPs, gw.CIDRs = []netip.Addr{ip("203.0.113.2")}, []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
	gw.NextHop = ip("203.0.113.1")
	ir.FloatingIPs["f1"].MAC = "fa:16:3e:00:00:e9"
	lay := tcLayout()
	lay.NeighMACs = map[netip.Addr]string{ip("203.0.113.1"): "02:00:00:00:00:01"}
	return ir, lay
}

func natRules(res *TCResult) []string {
	var out []string
	for _, r := range res.Rules {
		if r.Origin.Kind == KindFloatingIP || slices.ContainsFunc(r.Actions, func(a TCAction) bool { return a.Kind == TCActCT }) ||
			r.Match.CTState != "" {
			out = append(out, r.spec()+" "+r.Flags.String())
		}
	}
	return out
}

func TestCompileTCNATConntrackNIC(t *testing.T) {
	ir, lay := natIR()
	node := tcNode(4, hwdetect.LevelHW, hwdetect.LevelHW)
	node.NICs[0].Capabilities.CTOffload = hwdetect.Capability{Level: hwdetect.LevelHW, Reason: "ConnectX-6 Dx"}
	plan := PlanNode(ir, node, lay.Node)
	// the planner puts a direct port's NAT on tc when the NIC offloads conntrack
	for _, id := range []string{"p1", "p2"} {
		if d := plan.Port(id).decision(FeatureNAT); d == nil || d.Backend != BackendTC || !strings.Contains(d.Reason, "conntrack offloaded by pf0") {
			t.Fatalf("%s: NAT decision %+v, want tc", id, d)
		}
	}
	res, err := CompileTC(ir, plan, node, lay)
	if err != nil {
		t.Fatal(err)
	}
	z := "zone 28076"
	if RouterZone("r1") != 28076 {
		t.Fatalf("router zone of r1 is %d: update the expected rules", RouterZone("r1"))
	}
	out := " action pedit ex munge ip ttl add 255 pipe action csum iph pipe action mirred egress redirect dev pf0"
	want := []string{
		"filter add dev pf0 ingress chain 0 prio 9 protocol ip flower dst_ip 203.0.113.2/32 ct_state -trk action ct " + z + " nat pipe action gact goto chain 28076 skip_sw",
		"filter add dev pf0 ingress chain 0 prio 9 protocol ip flower dst_ip 203.0.113.9/32 ct_state -trk action ct " + z + " nat pipe action gact goto chain 28076 skip_sw",
		"filter add dev pf0 ingress chain 28076 prio 1 protocol ip flower dst_ip 203.0.113.9/32 ct_state +trk+new action ct commit " + z + " nat dst addr 10.0.0.2 pipe action pedit ex munge eth dst set fa:16:3e:00:00:02 munge eth src set fa:16:3e:00:00:f1 pipe action pedit ex munge ip ttl add 255 pipe action csum iph pipe action mirred egress redirect dev pf0vf1 skip_sw",
		"filter add dev pf0 ingress chain 28076 prio 2 protocol ip flower dst_ip 10.0.0.1/32 ct_state +trk+est action pedit ex munge eth dst set fa:16:3e:00:00:01 munge eth src set fa:16:3e:00:00:f1 pipe action pedit ex munge ip ttl add 255 pipe action csum iph pipe action mirred egress redirect dev pf0vf0 skip_sw",
		"filter add dev pf0 ingress chain 28076 prio 2 protocol ip flower dst_ip 10.0.0.2/32 ct_state +trk+est action pedit ex munge eth dst set fa:16:3e:00:00:02 munge eth src set fa:16:3e:00:00:f1 pipe action pedit ex munge ip ttl add 255 pipe action csum iph pipe action mirred egress redirect dev pf0vf1 skip_sw",
		"filter add dev pf0 ingress chain 28076 prio 2 protocol ip flower dst_ip 10.0.1.5/32 ct_state +trk+est action pedit ex munge eth dst set fa:16:3e:00:00:05 munge eth src set fa:16:3e:00:00:f2 pipe action pedit ex munge ip ttl add 255 pipe action csum iph pipe action mirred egress redirect dev pf0vf3 skip_sw",
		"filter add dev pf0 ingress chain 28076 prio 2 protocol ip flower dst_ip 10.1.0.3/32 ct_state +trk+est action pedit ex munge eth dst set fa:16:3e:00:00:03 munge eth src set fa:16:3e:00:00:f3 pipe action pedit ex munge ip ttl add 255 pipe action csum iph pipe action mirred egress redirect dev pf0vf2 skip_sw",
		"filter add dev pf0vf0 ingress chain 0 prio 9 protocol ip flower dst_mac fa:16:3e:00:00:f1 src_ip 10.0.0.1/32 ct_state -trk action ct " + z + " nat pipe action gact goto chain 28076 skip_sw",
		"filter add dev pf0vf0 ingress chain 28076 prio 1 protocol ip flower ct_state +trk+new action ct commit " + z + " nat src addr 203.0.113.2 pipe action pedit ex munge eth dst set 02:00:00:00:00:01 munge eth src set fa:16:3e:00:00:e1 pipe" + out + " skip_sw",
		"filter add dev pf0vf0 ingress chain 28076 prio 2 protocol ip flower ct_state +trk+est action pedit ex munge eth dst set 02:00:00:00:00:01 munge eth src set fa:16:3e:00:00:e1 pipe" + out + " skip_sw",
		"filter add dev pf0vf1 ingress chain 0 prio 9 protocol ip flower dst_mac fa:16:3e:00:00:f1 src_ip 10.0.0.2/32 ct_state -trk action ct " + z + " nat pipe action gact goto chain 28076 skip_sw",
		"filter add dev pf0vf1 ingress chain 28076 prio 1 protocol ip flower ct_state +trk+new action ct commit " + z + " nat src addr 203.0.113.9 pipe action pedit ex munge eth dst set 02:00:00:00:00:01 munge eth src set fa:16:3e:00:00:e9 pipe" + out + " skip_sw",
		"filter add dev pf0vf1 ingress chain 28076 prio 2 protocol ip flower ct_state +trk+est action pedit ex munge eth dst set 02:00:00:00:00:01 munge eth src set fa:16:3e:00:00:e9 pipe" + out + " skip_sw",
		// p3 (VXLAN net-x) and p5 (VLAN net-w): SNAT too, the VF side is untagged
		"filter add dev pf0vf2 ingress chain 0 prio 9 protocol ip flower dst_mac fa:16:3e:00:00:f3 src_ip 10.1.0.3/32 ct_state -trk action ct " + z + " nat pipe action gact goto chain 28076 skip_sw",
		"filter add dev pf0vf2 ingress chain 28076 prio 1 protocol ip flower ct_state +trk+new action ct commit " + z + " nat src addr 203.0.113.2 pipe action pedit ex munge eth dst set 02:00:00:00:00:01 munge eth src set fa:16:3e:00:00:e1 pipe" + out + " skip_sw",
		"filter add dev pf0vf2 ingress chain 28076 prio 2 protocol ip flower ct_state +trk+est action pedit ex munge eth dst set 02:00:00:00:00:01 munge eth src set fa:16:3e:00:00:e1 pipe" + out + " skip_sw",
		"filter add dev pf0vf3 ingress chain 0 prio 9 protocol ip flower dst_mac fa:16:3e:00:00:f2 src_ip 10.0.1.5/32 ct_state -trk action ct " + z + " nat pipe action gact goto chain 28076 skip_sw",
		"filter add dev pf0vf3 ingress chain 28076 prio 1 protocol ip flower ct_state +trk+new action ct commit " + z + " nat src addr 203.0.113.2 pipe action pedit ex munge eth dst set 02:00:00:00:00:01 munge eth src set fa:16:3e:00:00:e1 pipe" + out + " skip_sw",
		"filter add dev pf0vf3 ingress chain 28076 prio 2 protocol ip flower ct_state +trk+est action pedit ex munge eth dst set 02:00:00:00:00:01 munge eth src set fa:16:3e:00:00:e1 pipe" + out + " skip_sw",
	}
	got := natRules(res)
	if !slices.Equal(got, want) {
		t.Errorf("NAT rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, f := range res.Fallbacks {
		if strings.HasPrefix(f.Reason, "nat:") {
			t.Errorf("NAT compiled to tc, yet a fallback: %+v", f)
		}
	}

	// without the next hop's MAC: no NAT rules, the reason recorded
	lay.NeighMACs = nil
	res, err = CompileTC(ir, plan, node, lay)
	if err != nil {
		t.Fatal(err)
	}
	if got := natRules(res); len(got) != 0 {
		t.Errorf("NAT rules without a next-hop MAC: %v", got)
	}
	if !slices.ContainsFunc(res.Fallbacks, func(f TCSkip) bool {
		return f.PortID == "p1" && f.Reason == "nat: next hop 203.0.113.1's MAC is not resolved yet: NAT stays in router r1's backend"
	}) {
		t.Errorf("fallbacks: %+v", res.Fallbacks)
	}
}

func TestCompileTCNATIceFallback(t *testing.T) {
	ir, lay := natIR()
	node := tcNode(4, hwdetect.LevelHW, hwdetect.LevelHW)
	node.NICs[0].Driver = "ice"
	node.NICs[0].Capabilities.CTOffload = hwdetect.Capability{Level: hwdetect.LevelNone, Reason: "ice does not offload conntrack (kernel intel/ice.rst)"}
	plan := PlanNode(ir, node, lay.Node)
	if d := plan.Port("p1").decision(FeatureNAT); d == nil || d.Backend == BackendTC || !strings.Contains(d.Reason, "ct offload not supported by pf0") {
		t.Fatalf("p1 NAT decision %+v", d)
	}
	res, err := CompileTC(ir, plan, node, lay)
	if err != nil {
		t.Fatal(err)
	}
	if got := natRules(res); len(got) != 0 {
		t.Errorf("NAT rules on ice: %v", got)
	}
	want := map[string]string{
		"p1": "nat: ct offload not supported by ice (none: ice does not offload conntrack (kernel intel/ice.rst)): SNAT stays in router r1's backend (OVS or nftables); frames to the router's MAC leave by the uplink",
		"p2": "nat: ct offload not supported by ice (none: ice does not offload conntrack (kernel intel/ice.rst)): floating IP 203.0.113.9 stays in router r1's backend (OVS or nftables); frames to the router's MAC leave by the uplink",
	}
	for id, w := range want {
		if !slices.ContainsFunc(res.Fallbacks, func(f TCSkip) bool { return f.PortID == id && f.Reason == w }) {
			t.Errorf("%s: no fallback %q in %+v", id, w, res.Fallbacks)
		}
	}
}

func TestCTState(t *testing.T) {
	for _, c := range []struct {
		s           string
		state, mask uint16
	}{{"-trk", 0, CTTracked}, {"+trk+new", CTTracked | CTNew, CTTracked | CTNew}, {"+trk+est", CTTracked | CTEstablished, CTTracked | CTEstablished}, {"+trk-inv+rpl", CTTracked | CTReply, CTTracked | CTInvalid | CTReply}} {
		st, m, err := ParseCTState(c.s)
		if err != nil || st != c.state || m != c.mask || FormatCTState(st, m) != c.s {
			t.Errorf("%q: %#x/%#x %v → %q", c.s, st, m, err, FormatCTState(st, m))
		}
	}
	for _, bad := range []string{"", "trk", "+foo", "+trk+"} {
		if _, _, err := ParseCTState(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
