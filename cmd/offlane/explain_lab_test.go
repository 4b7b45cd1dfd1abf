package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

// TestLabExplainLive runs the pipeline on a real OVS (node apply, two VMs attached with
// the Ports API, compile, full sync), sends pings, saves the node plan file, and checks
// that explain finds every flow of the port installed with the packets counted; then a
// flow deleted behind offlane's back shows as missing and a leftover flow with the port's
// cookie as stale.
func TestLabExplainLive(t *testing.T) {
	o := lab.StartOVS(t, lab.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := lab.Logger(t) // safe if libovsdb logs after Close
	c, err := ovsdpdk.Connect(ctx, ovsdpdk.Options{Endpoint: o.Endpoint, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg, err := ovsdpdk.ParseNodeConfig("node.yaml", strings.NewReader("datapath: netdev\nintegration_bridge: br-int\nphysnets:\n  physnet1: {bridge: br-phys1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ovsdpdk.Resolve(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApplyNode(ctx, ovsdpdk.NodeLayout(spec), ovsdpdk.ApplyOptions{Wait: true}); err != nil {
		t.Fatal(err)
	}

	open := controlplane.SecurityGroup{ID: "open", TenantID: "t", Stateful: true, Rules: []controlplane.SecurityGroupRule{
		{ID: "in", SecurityGroupID: "open", Direction: "ingress", EtherType: "IPv4"},
		{ID: "out", SecurityGroupID: "open", Direction: "egress", EtherType: "IPv4"}}}
	snap := offload.Snapshot{
		Networks:       []controlplane.Network{{ID: "net", TenantID: "t", AdminStateUp: true, NetworkType: "vlan", PhysicalNetwork: explainStrp("physnet1"), SegmentationID: explainIntp(100), MTU: 1500}},
		SecurityGroups: []controlplane.SecurityGroup{open},
	}
	ports := ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{})
	vms := map[string]*lab.VM{}
	for i, id := range []string{"p1", "p2"} {
		p := controlplane.Port{ID: id, NetworkID: "net", HostID: "node1", MACAddress: fmt.Sprintf("fa:16:3e:00:00:0%d", i+1),
			AdminStateUp: true, PortSecurityEnabled: true, VNICType: controlplane.VNICNormal, SecurityGroups: []string{"open"},
			FixedIPs: []controlplane.FixedIP{{IPAddress: fmt.Sprintf("10.0.0.%d", i+1)}}}
		snap.Ports = append(snap.Ports, p)
		vms[id] = o.AddVM(t, id, lab.VMOptions{IP: p.FixedIPs[0].IPAddress + "/24", MAC: p.MACAddress})
		if err := ports.PortAdd(ctx, ovsdpdk.Port{Name: id, Type: ovsdpdk.PortSystem, IfaceID: id, MAC: p.MACAddress}); err != nil {
			t.Fatal(err)
		}
		if _, err := ports.PortWait(ctx, id, func(s *ovsdpdk.PortStatus) bool { return s.OFPort > 0 }); err != nil {
			t.Fatal(err)
		}
	}
	layout, ofports, err := c.FlowLayout(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ir, err := offload.Build(offload.BuildInput{Host: "node1", Snapshot: snap, OFPorts: ofports})
	if err != nil {
		t.Fatal(err)
	}
	hw, err := hwdetect.Detect(ctx, hwdetect.Options{OVS: ovsdpdk.NewProber(o.Endpoint)})
	if err != nil {
		t.Fatal(err)
	}
	plan := offload.PlanNode(ir, hw, layout)
	res, err := offload.Compile(layout, ir, plan)
	if err != nil {
		t.Fatal(err)
	}
	of := ovsdpdk.NewOfctl(ovsdpdk.OfctlOptions{RunDir: o.Dir})
	bridges := []string{layout.IntegrationBridge, layout.PhysnetBridges["physnet1"]}
	if _, err := ovsdpdk.NewFlows(of, ovsdpdk.FlowsOptions{Logger: log}).Sync(ctx, bridges, res.Flows); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := vms["p1"].Ping("10.0.0.2", 5); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("p1 cannot reach p2: %v", err)
		}
	}
	planFile := filepath.Join(t.TempDir(), "node-plan.json")
	if err := writeNodePlan(planFile, layout, ir, plan); err != nil {
		t.Fatal(err)
	}

	explainJSON := func() explainReport {
		t.Helper()
		code, out, errs := runExplainCLI("explain", "--port", "p1", "--plan", planFile, "--ovs-rundir", o.Dir, "-o", "json")
		if code != exitOK {
			t.Fatalf("explain: exit %d: %s", code, errs)
		}
		var rep explainReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	// ovs-vswitchd folds datapath statistics into its flows every second or so: poll.
	var rep explainReport
	var classify *explainFlow
	deadline = time.Now().Add(30 * time.Second)
	for {
		rep = explainJSON()
		classify = nil
		for i, f := range rep.Flows {
			if f.Table == offload.TableClassify && f.Origin == (offload.Origin{Kind: offload.KindPort, ID: "p1"}) {
				classify = &rep.Flows[i]
			}
		}
		if classify != nil && classify.Packets != nil && *classify.Packets >= 5 && *classify.Bytes >= 5*98 {
			break
		}
		if time.Now().After(deadline) {
			if classify == nil || classify.Packets == nil {
				t.Fatalf("no counted classify flow of p1 in %+v", rep.Flows)
			}
			t.Fatalf("p1's classify flow did not count the pings: %d packets, %d bytes", *classify.Packets, *classify.Bytes)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rep.Source.OVSRunDir != o.Dir {
		t.Fatalf("source: %+v", rep.Source)
	}
	for _, f := range rep.Flows {
		if f.State != flowInstalled || f.Packets == nil {
			t.Errorf("flow not installed: %+v", f)
		}
	}
	t.Logf("p1's classify flow: %s → %s, %d packets, %d bytes", classify.Match, classify.Actions, *classify.Packets, *classify.Bytes)
	// the datapath part: the userspace datapath's flows of p1's interface, none in tc
	if rep.DatapathPort != "p1" || rep.DatapathError != "" || len(rep.Datapath) == 0 {
		t.Fatalf("explain datapath: port %q, error %q, %d flows", rep.DatapathPort, rep.DatapathError, len(rep.Datapath))
	}
	for _, f := range rep.Datapath {
		if !f.Touches("p1") || f.InTC() || f.DP != "ovs" {
			t.Errorf("datapath flow of p1: %+v", f)
		}
	}

	// Behind offlane's back: delete that flow, add one with p1's cookie.
	target := of.Target("br-int")
	if _, err := o.Ofctl("-O", "OpenFlow15", "--strict", "del-flows", target, fmt.Sprintf("table=%d,priority=%d,%s", classify.Table, classify.Priority, classify.Match)); err != nil {
		t.Fatal(err)
	}
	cookie := offload.CookieFor(offload.KindPort, "p1")
	if _, err := o.Ofctl("-O", "OpenFlow15", "add-flow", target, fmt.Sprintf("table=0,priority=1,cookie=%#x,in_port=999,actions=drop", cookie)); err != nil {
		t.Fatal(err)
	}
	states := map[string]int{}
	for _, f := range explainJSON().Flows {
		states[f.State]++
		switch {
		case f.Match == classify.Match && f.State != flowMissing:
			t.Errorf("the deleted flow is %q, want missing", f.State)
		case f.Match == "in_port=999" && (f.State != flowStale || f.Origin.ID != "p1"):
			t.Errorf("the foreign flow with p1's cookie: %+v, want stale from port p1", f)
		}
	}
	if states[flowMissing] != 1 || states[flowStale] != 1 {
		t.Fatalf("states %v, want one missing and one stale", states)
	}
	code, out, errs := runExplainCLI("explain", "--port", "p1", "--plan", planFile, "--ovs-rundir", o.Dir)
	if code != exitOK || !strings.Contains(out, "compared with the live switch") || !strings.Contains(out, "stale") || !strings.Contains(out, "missing") {
		t.Fatalf("explain (table): exit %d %s\n%s", code, errs, out)
	}
}
