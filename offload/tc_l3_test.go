package offload

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/offlane/offlane/hwdetect"
)

// tcL3IR is tcIR plus a VLAN network net-w (VLAN 200) with direct port p5, subnets on
// net-v, net-w and net-x joined by router r1 (with SNAT to an external network), a
// floating IP on p2, and QoS policy q1 on p1 (10 Mbit/s from the VM, 20 Mbit/s to it,
// DSCP 26).
func tcL3IR() *IR {
	ir := tcIR()
	ir.Segments["net-w"] = &Segment{NetworkID: "net-w", Type: SegVLAN, PhysicalNetwork: "physnet1", SegmentationID: 200, LocalVLAN: 3, MTU: 1500}
	p5 := *ir.Ports["p1"]
	p5.ID, p5.NetworkID, p5.MAC, p5.PCISlot = "p5", "net-w", "fa:16:3e:00:00:05", tcVF(3)
	ir.Ports["p5"] = &p5
	ip := netip.MustParseAddr
	ir.Ports["p1"].IPs = []netip.Addr{ip("10.0.0.1")}
	ir.Ports["p2"].IPs = []netip.Addr{ip("10.0.0.2")}
	ir.Ports["p3"].IPs = []netip.Addr{ip("10.1.0.3")}
	ir.Ports["p5"].IPs = []netip.Addr{ip("10.0.1.5")}
	ir.RemotePorts["r1"].IPs = []netip.Addr{ip("10.1.0.10")}
	ir.Routers = map[string]*Router{"r1": {ID: "r1", AdminStateUp: true,
		Interfaces: []RouterInterface{
			{PortID: "ri-v", NetworkID: "net-v", SubnetID: "s-v", MAC: "fa:16:3e:00:00:f1", IP: ip("10.0.0.254"), CIDR: netip.MustParsePrefix("10.0.0.0/24")},
			{PortID: "ri-w", NetworkID: "net-w", SubnetID: "s-w", MAC: "fa:16:3e:00:00:f2", IP: ip("10.0.1.254"), CIDR: netip.MustParsePrefix("10.0.1.0/24")},
			{PortID: "ri-x", NetworkID: "net-x", SubnetID: "s-x", MAC: "fa:16:3e:00:00:f3", IP: ip("10.1.0.254"), CIDR: netip.MustParsePrefix("10.1.0.0/24")},
		},
		Gateway: &RouterGateway{PortID: "gw", NetworkID: "ext", MAC: "fa:16:3e:00:00:e1", EnableSNAT: true}}}
	ir.FloatingIPs = map[string]*FloatingIP{"f1": {ID: "f1", RouterID: "r1", NetworkID: "ext", FloatingIP: ip("203.0.113.9"), PortID: "p2", FixedIP: ip("10.0.0.2")}}
	ir.QoSPolicies = map[string]*QoSPolicy{"q1": {ID: "q1", Rules: []QoSRule{
		{ID: "b1", Type: QoSBandwidthLimit, Direction: Egress, MaxKbps: 10000},
		{ID: "b2", Type: QoSBandwidthLimit, Direction: Ingress, MaxKbps: 20000, MaxBurstKbps: 4000},
		{ID: "d1", Type: QoSDSCPMarking, DSCPMark: 26}}}}
	ir.Ports["p1"].QoSPolicyID = "q1"
	return ir
}

// planTC plans ir and puts the given features of every tc port on BackendTC (what a
// planner that picks tc for them decides; the compiler follows the plan).
func planTC(ir *IR, node *hwdetect.Node, lay TCLayout, feats ...Feature) *Plan {
	plan := PlanNode(ir, node, lay.Node)
	for i := range plan.Ports {
		pp := &plan.Ports[i]
		if pp.Backend(FeatureL2) != BackendTC {
			continue
		}
		for _, f := range feats {
			if d := pp.decision(f); d != nil {
				d.Backend, d.Reason = BackendTC, "test: tc"
			} else {
				pp.Decisions = append(pp.Decisions, Decision{Feature: f, Backend: BackendTC, Reason: "test: tc"})
			}
		}
	}
	return plan
}

func TestCompileTCL3(t *testing.T) {
	ir := tcL3IR()
	node := tcNode(4, hwdetect.LevelHW, hwdetect.LevelSW)
	node.NICs[0].Capabilities.Police = hwdetect.Capability{Level: hwdetect.LevelSW, Reason: "test matrix"}
	node.NICs[0].Capabilities.DSCPRewrite = hwdetect.Capability{Level: hwdetect.LevelHW}
	lay := tcLayout()
	lay.VXLANDev = DefaultVXLANTC
	plan := planTC(ir, node, lay, FeatureQoSEgress, FeatureQoSIngress, FeatureDSCP)
	res, err := CompileTC(ir, plan, node, lay)
	if err != nil {
		t.Fatal(err)
	}
	text := map[string]TCRule{}
	for _, r := range res.Rules {
		text[r.spec()] = r // without flags and cookies
	}
	want := []struct {
		rule  string
		flags TCFlags
	}{
		// QoS of p1: 10 Mbit/s = 1,250,000 B/s, burst 80 % = 1,000,000 B; 20 Mbit/s to the VM, burst 4000 kbit
		{"filter add dev pf0vf0 ingress chain 0 prio 5 protocol all flower action police rate 1250000bps burst 1000000 mtu 4294967295 conform-exceed drop/continue", TCSkipHW},
		{"filter add dev pf0vf0 egress chain 0 prio 5 protocol all flower action police rate 2500000bps burst 500000 mtu 4294967295 conform-exceed drop/continue", TCSkipHW},
		{"filter add dev pf0vf0 ingress chain 0 prio 6 protocol ip flower action pedit ex munge ip tos set 104 retain 252 pipe", TCSkipSW},
		// routed east-west: VLAN 100 → VLAN 200 locally, → VXLAN 1001 remotely
		{"filter add dev pf0vf0 ingress chain 0 prio 8 protocol ip flower dst_mac fa:16:3e:00:00:f1 dst_ip 10.0.1.5/32 action pedit ex munge eth dst set fa:16:3e:00:00:05 munge eth src set fa:16:3e:00:00:f2 pipe", TCSkipSW},
		{"filter add dev pf0vf0 ingress chain 0 prio 8 protocol ip flower dst_mac fa:16:3e:00:00:f1 dst_ip 10.1.0.10/32 action pedit ex munge eth dst set fa:16:3e:00:00:0a munge eth src set fa:16:3e:00:00:f3 pipe", TCSkipSW},
		{"filter add dev pf0vf3 ingress chain 0 prio 8 protocol ip flower dst_mac fa:16:3e:00:00:f2 dst_ip 10.0.0.2/32 action pedit ex munge eth dst set fa:16:3e:00:00:02 munge eth src set fa:16:3e:00:00:f1 pipe", TCSkipSW},
	}
	for _, w := range want {
		var got *TCRule
		for s, r := range text {
			if strings.HasPrefix(s, w.rule) {
				got = &r
			}
		}
		if got == nil {
			t.Errorf("no rule %s", w.rule)
			continue
		}
		if got.Flags != w.flags {
			t.Errorf("rule %s: flags %s, want %s", w.rule, got.Flags, w.flags)
		}
	}
	full := func(prefix string) string {
		for s := range text {
			if strings.HasPrefix(s, prefix) {
				return s
			}
		}
		return ""
	}
	if s := full("filter add dev pf0vf0 ingress chain 0 prio 8 protocol ip flower dst_mac fa:16:3e:00:00:f1 dst_ip 10.1.0.10/32"); !strings.HasSuffix(s,
		"action pedit ex munge ip ttl add 255 pipe action csum iph pipe action tunnel_key set src_ip 192.0.2.1 dst_ip 192.0.2.2 id 1001 dst_port 4789 action mirred egress redirect dev vxlan_sys_4789") {
		t.Errorf("routed to the remote port: %s", s)
	}
	if s := full("filter add dev pf0vf3 ingress chain 0 prio 8 protocol ip flower dst_mac fa:16:3e:00:00:f2 dst_ip 10.0.0.1/32"); !strings.HasSuffix(s,
		"action pedit ex munge ip ttl add 255 pipe action csum iph pipe action mirred egress redirect dev pf0vf0") {
		t.Errorf("routed p5 → p1: %s", s)
	}
	if s := full("filter add dev pf0vf0 ingress chain 0 prio 6"); !strings.HasSuffix(s, "action csum iph continue") {
		t.Errorf("dscp rule: %s", s)
	}
	// no route to the own subnet, none from a port outside the router's subnets
	for s := range text {
		if strings.Contains(s, "prio 8") && (strings.Contains(s, "dst_ip 10.0.0.1/32") && strings.HasPrefix(s, "filter add dev pf0vf0") ||
			strings.HasPrefix(s, "filter add dev pf0vf1") && strings.Contains(s, "dst_ip 10.0.0.") || strings.Contains(s, "10.0.0.254")) {
			t.Errorf("unexpected routed rule %s", s)
		}
	}
	// fallbacks: police in software, NAT outside tc for p1, p2 (FIP) and p5 (SNAT)
	fb := map[string][]string{}
	for _, f := range res.Fallbacks {
		fb[f.PortID] = append(fb[f.PortID], f.Reason)
	}
	joined := strings.Join(fb["p1"], "\n")
	for _, w := range []string{"qos_egress: police not offloaded by pf0 (sw: test matrix)", "qos_ingress: police not offloaded",
		"nat: ct offload not supported by mlx5_core (none): SNAT stays in router r1's backend"} {
		if !strings.Contains(joined, w) {
			t.Errorf("p1 fallbacks lack %q:\n%s", w, joined)
		}
	}
	if j := strings.Join(fb["p2"], "\n"); !strings.Contains(j, "floating IP 203.0.113.9 stays in router r1's backend") {
		t.Errorf("p2 fallbacks: %s", j)
	}
	if strings.Contains(joined, "dscp:") || strings.Contains(joined, "routing:") {
		t.Errorf("pedit is offloaded by the matrix, yet a fallback: %s", joined)
	}

	// the plan decides: without tc decisions, no QoS rules
	res2, err := CompileTC(ir, PlanNode(ir, node, lay.Node), node, lay)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res2.Rules {
		if r.Origin.Kind == KindQoS && (r.Egress || r.Prio == TCPrioPolice) && planTCBackend(PlanNode(ir, node, lay.Node), "p1", r) != BackendTC {
			t.Errorf("QoS rule compiled though the plan did not put it on tc: %s", r.String())
		}
	}
}

// planTCBackend is the plan's backend for the feature a QoS rule implements.
func planTCBackend(p *Plan, port string, r TCRule) Backend {
	switch {
	case r.Prio == TCPrioDSCP:
		return p.Port(port).Backend(FeatureDSCP)
	case r.Egress:
		return p.Port(port).Backend(FeatureQoSIngress)
	}
	return p.Port(port).Backend(FeatureQoSEgress)
}

func TestPoliceBurst(t *testing.T) {
	for _, c := range []struct{ rate, burst uint64 }{
		{1250000, 1000000}, {125, 1}, {1, 1}, {12_500_000_000, 100_000_000}, {125_000_000, 12345}, {1000, 0}, {3, 1 << 40},
	} {
		b := PoliceBurst(c.rate, c.burst)
		if b > c.burst && PoliceBurstTicks(c.rate, c.burst) != 1<<32-1 {
			t.Errorf("rate %d burst %d: rounded up to %d", c.rate, c.burst, b)
		}
		if PoliceBurst(c.rate, b) != b || PoliceBurstTicks(c.rate, b) != PoliceBurstTicks(c.rate, c.burst) {
			t.Errorf("rate %d burst %d → %d: not a fixed point", c.rate, c.burst, b)
		}
	}
	// 1 MB at 10 Mbit/s is 0.8 s: 12,500,000 ticks of 64 ns
	if got := PoliceBurstTicks(1250000, 1000000); got != 12_500_000 {
		t.Errorf("ticks %d", got)
	}
}

func FuzzPoliceBurst(f *testing.F) {
	f.Add(uint64(1250000), uint64(1000000))
	f.Add(uint64(1), uint64(1<<63))
	f.Fuzz(func(t *testing.T, rate, burst uint64) {
		if rate == 0 || rate > 1<<40 {
			return // up to 8.8 Tbit/s
		}
		b := PoliceBurst(rate, burst)
		if PoliceBurst(rate, b) != b {
			t.Fatalf("rate %d burst %d → %d → %d", rate, burst, b, PoliceBurst(rate, b))
		}
	})
}
