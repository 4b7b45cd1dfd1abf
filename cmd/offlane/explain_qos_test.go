package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/offload"
)

// TestExplainQoS: explain shows a port's QoS decisions with their reasons, its meter and
// its QoS flows (origin qos) next to the rest.
func TestExplainQoS(t *testing.T) {
	snap := explainSnapshot()
	snap.QoSPolicies = []controlplane.QoSPolicy{{ID: "gold", TenantID: "t", Rules: []controlplane.QoSRule{
		{ID: "lim", Type: controlplane.QoSBandwidthLimit, Direction: "egress", MaxKbps: explainIntp(50000), MaxBurstKbps: explainIntp(5000)},
		{ID: "mark", Type: controlplane.QoSDSCPMarking, DSCPMark: explainIntp(26)},
		{ID: "min", Type: controlplane.QoSMinimumBandwidth, Direction: "egress", MinKbps: explainIntp(1000)},
	}}}
	snap.Ports[0].QoSPolicyID = explainStrp("gold")
	ir, err := offload.Build(offload.BuildInput{Host: "node1", Snapshot: snap, OFPorts: map[string]int{"p1": 11, "p2": 12, "p3": 13},
		VTEPs: map[string]netip.Addr{"node2": netip.MustParseAddr("192.0.2.2")}})
	if err != nil {
		t.Fatal(err)
	}
	plan := filepath.Join(t.TempDir(), "node-plan.json")
	if err := writeNodePlan(plan, explainLayout(), ir, offload.PlanNode(ir, ovsOnlyNode(), explainLayout())); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runExplainCLI("explain", "--port", "p1", "--plan", plan, "--offline")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"qos_egress       openflow  50 Mbit/s from the VM, burst 5000 kbit: OpenFlow meter in br-int table 5",
		"ingress policing unavailable",
		"qos_ingress      none      policy gold has no ingress bandwidth_limit rule",
		"dscp             openflow  DSCP 26 on IPv4/IPv6 from the VM: set_field:26->ip_dscp",
		"qos_minimum      none      1 Mbit/s from the VM not enforced",
		"egress limit 50000 kbit/s, burst 5000 kbit (ovs-ofctl: meter=",
		"br-int table 5 (QoS (meter, DSCP))",
		"set_field:26->ip_dscp,goto_table:10",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	_, out, _ = runExplainCLI("explain", "--port", "p1", "--plan", plan, "--offline", "-o", "json")
	var rep explainReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	qosFlows := 0
	for _, f := range rep.Flows {
		if f.Origin.Kind == offload.KindQoS {
			qosFlows++
			if f.Origin.ID != "p1" || f.Cookie != fmt.Sprintf("%#x", offload.CookieFor(offload.KindQoS, "p1")) {
				t.Errorf("QoS flow with origin %v cookie %s", f.Origin, f.Cookie)
			}
		}
	}
	if qosFlows != 3 || len(rep.Meters) != 1 || rep.Meters[0].Kbps != 50000 {
		t.Fatalf("%d QoS flows (want 3), meters %+v", qosFlows, rep.Meters)
	}
}
