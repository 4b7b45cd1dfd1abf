package offload

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
)

func bwRule(id, dir string, maxKbps, burst int) controlplane.QoSRule {
	r := controlplane.QoSRule{ID: id, Type: QoSBandwidthLimit, Direction: dir, MaxKbps: intp(maxKbps)}
	if burst > 0 {
		r.MaxBurstKbps = intp(burst)
	}
	return r
}

func dscpRule(id string, mark int) controlplane.QoSRule {
	return controlplane.QoSRule{ID: id, Type: QoSDSCPMarking, DSCPMark: intp(mark)}
}

func minRule(id, dir string, kbps int) controlplane.QoSRule {
	return controlplane.QoSRule{ID: id, Type: QoSMinimumBandwidth, Direction: dir, MinKbps: intp(kbps)}
}

func policy(id string, rules ...controlplane.QoSRule) controlplane.QoSPolicy {
	return controlplane.QoSPolicy{ID: id, TenantID: "tenant-a", Rules: rules}
}

// qosSnapshot: twoTenants with policies: a1 has its own (limits both ways, DSCP, a
// minimum), net-a-vx carries a DSCP-only policy (a3 inherits it), b2 (unfiltered) has a
// limit to the VM, and a router port on net-a-vx ignores its network's policy.
func qosSnapshot() Snapshot {
	s := twoTenants()
	s.QoSPolicies = []controlplane.QoSPolicy{
		policy("q-full", bwRule("r-eg", Egress, 50000, 5000), bwRule("r-in", Ingress, 40000, 0), dscpRule("r-dscp", 26),
			minRule("r-min", Ingress, 10000), minRule("r-min-eg", Egress, 1000)),
		policy("q-dscp", dscpRule("r-af41", 34)),
		policy("q-in", bwRule("r-in2", Ingress, 2000, 100)),
	}
	for i := range s.Networks {
		if s.Networks[i].ID == "net-a-vx" {
			s.Networks[i].QoSPolicyID = strp("q-dscp")
		}
	}
	for i := range s.Ports {
		switch s.Ports[i].ID {
		case "a1":
			s.Ports[i].QoSPolicyID = strp("q-full")
		case "b2":
			s.Ports[i].QoSPolicyID = strp("q-in")
		}
	}
	rp := port("rtr", "net-a-vx", "node1", "fa:16:3e:00:00:fe", []string{"10.0.0.254"})
	rp.DeviceOwner = "network:router_interface"
	s.Ports = append(s.Ports, rp)
	return s
}

func buildQoSIR(t testing.TB, s Snapshot) *IR {
	t.Helper()
	ofp := map[string]int{"rtr": 30}
	for k, v := range twoTenantsOFPorts {
		ofp[k] = v
	}
	ir, err := Build(BuildInput{Host: "node1", Snapshot: s, OFPorts: ofp})
	if err != nil {
		t.Fatal(err)
	}
	return ir
}

func TestBuildQoS(t *testing.T) {
	ir := buildQoSIR(t, qosSnapshot())
	got := map[string]string{}
	for id, p := range ir.Ports {
		got[id] = p.QoSPolicyID
	}
	want := map[string]string{"a1": "q-full", "a2": "", "a3": "q-dscp", "b1": "", "b2": "q-in", "b3": "", "rtr": ""}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("port %s: effective policy %q, want %q", id, got[id], w)
		}
	}
	if len(ir.QoSPolicies) != 3 {
		t.Fatalf("policies %v, want q-full, q-dscp, q-in", sortedKeys(ir.QoSPolicies))
	}
	q := ir.QoSPolicies["q-full"]
	var order []string
	for _, r := range q.Rules {
		order = append(order, r.Type+"/"+r.Direction)
	}
	if w := []string{"bandwidth_limit/egress", "bandwidth_limit/ingress", "dscp_marking/", "minimum_bandwidth/egress", "minimum_bandwidth/ingress"}; !slices.Equal(order, w) {
		t.Errorf("rule order %v, want %v", order, w)
	}
	if r := q.Rule(QoSBandwidthLimit, Ingress); r == nil || r.BurstKb() != 32000 {
		t.Errorf("default burst of 40 Mbit/s: %+v, want 32000 kbit (80 %%)", r)
	}

	bad := []struct {
		name  string
		edit  func(s *Snapshot)
		wants []string
	}{
		{"missing policy", func(s *Snapshot) { s.QoSPolicies = s.QoSPolicies[1:] },
			[]string{"port a1: qos_policy_id q-full is not in the snapshot"}},
		{"network policy missing", func(s *Snapshot) { s.QoSPolicies = s.QoSPolicies[:1] },
			[]string{"port a3: network net-a-vx qos_policy_id q-dscp is not in the snapshot", "port b2: qos_policy_id q-in"}},
		{"bad values", func(s *Snapshot) {
			s.QoSPolicies[0].Rules = []controlplane.QoSRule{bwRule("z0", Egress, 0, 0), dscpRule("z1", 27),
				{ID: "z2", Type: QoSBandwidthLimit, Direction: "up", MaxKbps: intp(1)}, {ID: "z3", Type: "rate"},
				minRule("z4", Ingress, -5), {ID: "z5", Type: QoSDSCPMarking, Direction: Egress, DSCPMark: intp(26)}}
		}, []string{"qos policy q-full rule z0: max_kbps 0", "rule z1: dscp_mark 27", "rule z2: direction \"up\"",
			"rule z3: type \"rate\"", "rule z4: min_kbps -5", "rule z5: direction \"egress\" on a dscp_marking rule"}},
		{"duplicate", func(s *Snapshot) {
			s.QoSPolicies[0].Rules = append(s.QoSPolicies[0].Rules, bwRule("r-eg2", "", 1000, 0))
		}, []string{"rule r-eg2: a second bandwidth_limit rule for egress (rule r-eg)"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			s := qosSnapshot()
			tc.edit(&s)
			ir, err := Build(BuildInput{Host: "node1", Snapshot: s, OFPorts: twoTenantsOFPorts})
			if err == nil || ir != nil {
				t.Fatalf("Build accepted it: %v", err)
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestPlanQoS(t *testing.T) {
	type want struct {
		f       Feature
		backend Backend
		reason  string
	}
	vhost := func(s *Snapshot) {
		for i := range s.Ports {
			if s.Ports[i].ID == "a1" {
				s.Ports[i].VNICType = controlplane.VNICVhostUser
			}
		}
	}
	tests := []struct {
		name string
		edit func(s *Snapshot)
		node func(t *testing.T) *hwdetect.Node
		port string
		want []want
	}{
		{name: "kernel veth on the netdev datapath", port: "a1", want: []want{
			{FeatureQoSEgress, BackendOpenFlow, "50 Mbit/s from the VM, burst 5000 kbit: OpenFlow meter in br-int table 5, run by the netdev datapath; ingress policing unavailable"},
			{FeatureQoSIngress, BackendOVSQoS, "40 Mbit/s to the VM, burst 32000 kbit: linux-htb QoS on the tap/veth (max-rate 40000000 bit/s)"},
			{FeatureDSCP, BackendOpenFlow, "DSCP 26 on IPv4/IPv6 from the VM: set_field:26->ip_dscp in br-int table 5"},
			{FeatureQoSMinimum, BackendOVSQoS, "10 Mbit/s to the VM: linux-htb min-rate 10000000 bit/s on the tap/veth's queue; 1 Mbit/s from the VM not enforced"},
		}},
		{name: "vhost-user port", edit: vhost, port: "a1", want: []want{
			{FeatureQoSEgress, BackendOVSQoS, "OVS-DPDK ingress policing on the dpdkvhostuserclient interface (ingress_policing_rate 50000 kbit/s"},
			{FeatureQoSIngress, BackendOVSQoS, "egress-policer QoS on the dpdkvhostuserclient port (cir 5000000 bytes/s, cbs 4000000 bytes"},
			{FeatureDSCP, BackendOpenFlow, "set_field:26->ip_dscp"},
			{FeatureQoSMinimum, BackendNone, "10 Mbit/s to the VM not enforced: only a kernel tap/veth has an htb queue"},
		}},
		{name: "network policy over VXLAN", port: "a3", want: []want{
			{FeatureQoSEgress, BackendNone, "policy q-dscp has no egress bandwidth_limit rule"},
			{FeatureQoSIngress, BackendNone, "policy q-dscp has no ingress bandwidth_limit rule"},
			{FeatureDSCP, BackendOpenFlow, "DSCP 34 on IPv4/IPv6 from the VM: set_field:34->ip_dscp in br-int table 5; the vxlan tunnel port copies it to the outer header (options:tos=inherit)"},
			{FeatureQoSMinimum, BackendNone, "policy q-dscp has no minimum_bandwidth rule"},
		}},
		{name: "no policy", port: "a2", want: []want{{FeatureQoSEgress, BackendNone, "no QoS policy on the port or its network"}}},
		{name: "router port", port: "rtr", want: []want{{FeatureDSCP, BackendNone, "device owner network:router_interface is infrastructure: QoS policies do not apply"}}},
		{name: "legacy SR-IOV VF", node: func(t *testing.T) *hwdetect.Node { return capturedNode(t, "cx6dx-legacy", false) }, port: "a1", edit: func(s *Snapshot) {
			for i := range s.Ports {
				if s.Ports[i].ID == "a1" {
					s.Ports[i].VNICType = controlplane.VNICDirect
					s.Ports[i].Profile = map[string]any{"pci_slot": "0000:3b:00.4"}
				}
			}
		}, want: []want{
			{FeatureQoSEgress, BackendVF, "VF max_tx_rate 50 Mbit/s on ens1f0np0"},
			{FeatureQoSIngress, BackendNone, "not enforced: a legacy VF's traffic to the VM"},
			{FeatureDSCP, BackendNone, "legacy VF's traffic bypasses the host"},
			{FeatureQoSMinimum, BackendVF, "1 Mbit/s from the VM: VF min_tx_rate 1 Mbit/s"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := qosSnapshot()
			if tc.edit != nil {
				tc.edit(&s)
			}
			ir := buildQoSIR(t, s)
			node := ovsNode()
			if tc.node != nil {
				node = tc.node(t)
			}
			pp, ok := PlanPort(ir, tc.port, node, testLayout())
			if !ok {
				t.Fatal("no port")
			}
			if len(pp.Decisions) != len(Features) {
				t.Fatalf("%d decisions for %d features", len(pp.Decisions), len(Features))
			}
			for i, d := range pp.Decisions {
				if d.Feature != Features[i] {
					t.Fatalf("decision %d is %s, want %s (Features order)", i, d.Feature, Features[i])
				}
			}
			for _, w := range tc.want {
				if tc.node != nil && pp.Backend(FeatureL2) == BackendNone {
					t.Fatalf("L2 not planned: %+v", pp.Decisions)
				}
				d := pp.decision(w.f)
				if d.Backend != w.backend || !strings.Contains(d.Reason, w.reason) {
					t.Errorf("%s: %s (%s), want %s (…%s…)", w.f, d.Backend, d.Reason, w.backend, w.reason)
				}
			}
		})
	}
}

func TestCompileQoS(t *testing.T) {
	ir := buildQoSIR(t, qosSnapshot())
	plan := PlanNode(ir, ovsNode(), testLayout())
	res, err := Compile(testLayout(), ir, plan)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := NewCompiler(testLayout())
	if _, err := c.Update(ir, plan); err != nil {
		t.Fatal(err)
	}
	meters := c.Meters()
	if len(meters) != 1 || meters[0].PortID != "a1" || meters[0].Direction != Egress || !IsOfflaneMeter(meters[0].ID) ||
		meters[0].Kbps != 50000 || meters[0].BurstKb != 5000 || meters[0].Bridge != "br-int" {
		t.Fatalf("meters %+v, want one egress meter of a1 (50000 kbps, 5000 kb)", meters)
	}
	mid := fmt.Sprint(meters[0].ID)
	want := []string{
		// a1: classified into the QoS table, metered and marked, then port security.
		"table=0,priority=100,cookie=" + ck(KindPort, "a1") + ",in_port=11,dl_src=fa:16:3e:00:00:01,actions=set_field:0x1->reg6,goto_table:5",
		"table=5,priority=110,cookie=" + ck(KindQoS, "a1") + ",ip,in_port=11,actions=meter:" + mid + ",set_field:26->ip_dscp,goto_table:10",
		"table=5,priority=110,cookie=" + ck(KindQoS, "a1") + ",ipv6,in_port=11,actions=meter:" + mid + ",set_field:26->ip_dscp,goto_table:10",
		"table=5,priority=100,cookie=" + ck(KindQoS, "a1") + ",in_port=11,actions=meter:" + mid + ",goto_table:10",
		// a3: DSCP only, from its network's policy.
		"table=5,priority=110,cookie=" + ck(KindQoS, "a3") + ",ip,in_port=13,actions=set_field:34->ip_dscp,goto_table:10",
		"table=5,priority=100,cookie=" + ck(KindQoS, "a3") + ",in_port=13,actions=goto_table:10",
	}
	have := map[string]bool{}
	for _, f := range res.Flows {
		have[f.String()] = true
	}
	for _, w := range want {
		if !have[w] {
			t.Errorf("missing flow %s", w)
		}
	}
	for _, f := range res.Flows {
		if f.Table == TableQoS && !strings.Contains(f.Match, "in_port=11") && !strings.Contains(f.Match, "in_port=13") {
			t.Errorf("unexpected QoS flow %s", f)
		}
		// b2's limit to the VM is htb (OVSDB), not a meter; nobody else gets table 5.
		if f.Table == TableClassify && strings.Contains(f.Actions, "goto_table:5") && !strings.Contains(f.Match, "in_port=11") && !strings.Contains(f.Match, "in_port=13") {
			t.Errorf("port classified into the QoS table without egress QoS: %s", f)
		}
	}
	if got := c.PortOrigins("a1"); !slices.Contains(got, Origin{KindQoS, "a1"}) {
		t.Errorf("PortOrigins(a1) %v lacks the QoS unit", got)
	}
	if fs := c.FlowsFrom(Origin{KindQoS, "a1"}); len(fs) != 3 {
		t.Errorf("FlowsFrom(qos a1): %d flows, want 3", len(fs))
	}

	ovsq := OVSQoS(ir, plan)
	wantQ := []string{
		`port a1: policing 0 kbit/s burst 0 kbit, qos "linux-htb" map[max-rate:40000000] queue map[burst:32000000 max-rate:40000000 min-rate:10000000]`,
		`port b2: policing 0 kbit/s burst 0 kbit, qos "linux-htb" map[max-rate:2000000] queue map[burst:100000 max-rate:2000000]`,
	}
	var gotQ []string
	for _, q := range ovsq {
		gotQ = append(gotQ, q.String())
	}
	if !slices.Equal(gotQ, wantQ) {
		t.Errorf("OVSQoS:\n got %q\nwant %q", gotQ, wantQ)
	}

	// The same policy on a vhost-user port: policing and egress-policer, no meter.
	s := qosSnapshot()
	for i := range s.Ports {
		if s.Ports[i].ID == "a1" {
			s.Ports[i].VNICType = controlplane.VNICVhostUser
		}
	}
	ir = buildQoSIR(t, s)
	plan = PlanNode(ir, ovsNode(), testLayout())
	c2, _ := NewCompiler(testLayout())
	if _, err := c2.Update(ir, plan); err != nil {
		t.Fatal(err)
	}
	if m := c2.Meters(); len(m) != 0 {
		t.Errorf("vhost-user port got meters %+v", m)
	}
	q := OVSQoS(ir, plan)[0]
	if q.PortID != "a1" || q.PolicingKbps != 50000 || q.PolicingBurstKb != 5000 || q.Type != "egress-policer" ||
		q.OtherConfig["cir"] != "5000000" || q.OtherConfig["cbs"] != "4000000" || q.Queue != nil {
		t.Errorf("vhost-user OVSQoS %s", q)
	}
}

func ck(k Kind, id string) string { return fmt.Sprintf("%#x", CookieFor(k, id)) }

// TestQoSIncremental: random policy edits, assignments and ofport changes, applied by
// Update one at a time, leave the same flows and meters as a compile from scratch.
func TestQoSIncremental(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	s := qosSnapshot()
	ofp := map[string]int{"rtr": 30}
	for k, v := range twoTenantsOFPorts {
		ofp[k] = v
	}
	c, _ := NewCompiler(testLayout())
	ports := []string{"a1", "a2", "a3", "b1", "b2", "b3"}
	pols := []string{"", "q-full", "q-dscp", "q-in", "q-new"}
	metered := 0
	for step := 0; step < 300; step++ {
		switch r.IntN(4) {
		case 0: // assign a policy to a port
			id := ports[r.IntN(len(ports))]
			i := slices.IndexFunc(s.Ports, func(p controlplane.Port) bool { return p.ID == id })
			if p := pols[r.IntN(len(pols))]; p == "" {
				s.Ports[i].QoSPolicyID = nil
			} else {
				s.Ports[i].QoSPolicyID = strp(p)
			}
		case 1: // edit a policy's rules
			q := &s.QoSPolicies[r.IntN(len(s.QoSPolicies))]
			var rules []controlplane.QoSRule
			if r.IntN(2) == 0 {
				rules = append(rules, bwRule(q.ID+"e", Egress, 1000*(1+r.IntN(5)), r.IntN(3)*100))
			}
			if r.IntN(2) == 0 {
				rules = append(rules, bwRule(q.ID+"i", Ingress, 1000*(1+r.IntN(5)), 0))
			}
			if r.IntN(2) == 0 {
				rules = append(rules, dscpRule(q.ID+"d", []int{10, 26, 46}[r.IntN(3)]))
			}
			q.Rules = rules
		case 2: // VNIC type flips between kernel and vhost-user
			i := r.IntN(len(s.Ports))
			if s.Ports[i].VNICType == controlplane.VNICNormal {
				s.Ports[i].VNICType = controlplane.VNICVhostUser
			} else {
				s.Ports[i].VNICType = controlplane.VNICNormal
			}
		case 3: // a port loses or regains its ofport
			id := ports[r.IntN(len(ports))]
			if ofp[id] == 0 {
				ofp[id] = twoTenantsOFPorts[id]
			} else {
				ofp[id] = 0
			}
		}
		if len(s.QoSPolicies) < 4 {
			s.QoSPolicies = append(s.QoSPolicies, policy("q-new", bwRule("n1", Egress, 3000, 0)))
		}
		ir, err := Build(BuildInput{Host: "node1", Snapshot: s, OFPorts: ofp})
		if err != nil {
			t.Fatal(err)
		}
		plan := PlanNode(ir, ovsNode(), testLayout())
		if _, err := c.Update(ir, plan); err != nil {
			t.Fatal(err)
		}
		full, _ := NewCompiler(testLayout())
		if _, err := full.Update(ir, plan); err != nil {
			t.Fatal(err)
		}
		if a, b := flowText(c.Flows()), flowText(full.Flows()); a != b {
			t.Fatalf("step %d: incremental flows differ from a full compile:\n%s", step, lineDiff(b, a))
		}
		if a, b := c.Meters(), full.Meters(); !slices.Equal(a, b) {
			t.Fatalf("step %d: meters %+v, full compile %+v", step, a, b)
		}
		if len(c.Meters()) > 0 {
			metered++
		}
	}
	if metered < 50 {
		t.Fatalf("only %d of 300 steps had meters: the walk does not exercise them", metered)
	}
}
