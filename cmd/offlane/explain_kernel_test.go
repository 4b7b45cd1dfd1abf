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
	"github.com/offlane/offlane/test/kernellab"
	"github.com/offlane/offlane/test/lab"
)

// TestKernelOVSHWOffload runs OVS hw-offload mode on Debian's kernel: ovsdb-server and
// ovs-vswitchd with the kernel (system) datapath, a node layout with hw_offload: true
// (other_config:hw-offload=true, tc-policy none) applied by ovsdpdk, two VMs on one
// tenant VLAN network attached through veth pairs (stand-ins for VF representors:
// netdevsim's carry no traffic), offlane's compiled flows installed, and pings between
// the VMs. ovs-vswitchd then holds the tenant's datapath flows in tc (dpctl/dump-flows
// -m: dp:tc), read back with ovsdpdk's parser, the tc filters are on the veths
// (iproute2's view), and `offlane explain --port` reports each datapath flow of the port
// with its layer.
func TestKernelOVSHWOffload(t *testing.T) {
	kernellab.RequireGuest(t)
	o := lab.StartOVS(t, lab.Options{SystemDatapath: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := lab.Logger(t)
	c, err := ovsdpdk.Connect(ctx, ovsdpdk.Options{Endpoint: o.Endpoint, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg, err := ovsdpdk.ParseNodeConfig("node.yaml", strings.NewReader(
		"datapath: system\nhw_offload: true\ntc_policy: none\nintegration_bridge: br-int\nphysnets:\n  physnet1: {bridge: br-phys1}\n"))
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
	rows, err := o.Select("Open_vSwitch", nil, "other_config")
	if err != nil {
		t.Fatal(err)
	}
	if oc := fmt.Sprint(rows); !strings.Contains(oc, "hw-offload true") || !strings.Contains(oc, "tc-policy none") {
		t.Fatalf("other_config after apply: %s", oc)
	}

	snap := offload.Snapshot{Networks: []controlplane.Network{{ID: "net", TenantID: "t", AdminStateUp: true, NetworkType: "vlan",
		PhysicalNetwork: explainStrp("physnet1"), SegmentationID: explainIntp(100), MTU: 1500}}}
	ports := ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{})
	vms := map[string]*lab.VM{}
	for i, id := range []string{"p1", "p2"} {
		p := controlplane.Port{ID: id, NetworkID: "net", HostID: "node1", MACAddress: fmt.Sprintf("fa:16:3e:00:01:0%d", i+1),
			AdminStateUp: true, PortSecurityEnabled: false, VNICType: controlplane.VNICNormal,
			FixedIPs: []controlplane.FixedIP{{IPAddress: fmt.Sprintf("10.0.0.%d", i+1)}}}
		snap.Ports = append(snap.Ports, p)
		// the veth's host end is the representor stand-in OVS gets as a system port
		vms[id] = o.AddVM(t, "hwrep"+id, lab.VMOptions{IP: p.FixedIPs[0].IPAddress + "/24", MAC: p.MACAddress, TxOffload: true})
		if err := ports.PortAdd(ctx, ovsdpdk.Port{Name: "hwrep" + id, Type: ovsdpdk.PortSystem, IfaceID: id, MAC: p.MACAddress}); err != nil {
			t.Fatal(err)
		}
		if _, err := ports.PortWait(ctx, "hwrep"+id, func(s *ovsdpdk.PortStatus) bool { return s.OFPort > 0 }); err != nil {
			t.Fatal(err)
		}
	}
	layout, ofports, err := c.FlowLayout(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if layout.Datapath != "system" {
		t.Fatalf("layout datapath %q, want system", layout.Datapath)
	}
	ir, err := offload.Build(offload.BuildInput{Host: "node1", Snapshot: snap, OFPorts: ofports})
	if err != nil {
		t.Fatal(err)
	}
	hw, err := hwdetect.Detect(ctx, hwdetect.Options{OVS: ovsdpdk.NewProber(o.Endpoint)})
	if err != nil {
		t.Fatal(err)
	}
	if hw.OVS == nil || !hw.OVS.HWOffload {
		t.Fatalf("hwdetect's OVS probe does not see hw-offload: %+v", hw.OVS)
	}
	plan := offload.PlanNode(ir, hw, layout)
	for _, pp := range plan.Ports {
		if pp.Backend(offload.FeatureL2) != offload.BackendOpenFlow {
			t.Fatalf("port %s not planned on OpenFlow:\n%s", pp.PortID, plan)
		}
	}
	res, err := offload.Compile(layout, ir, plan)
	if err != nil {
		t.Fatal(err)
	}
	of := ovsdpdk.NewOfctl(ovsdpdk.OfctlOptions{RunDir: o.Dir})
	if _, err := ovsdpdk.NewFlows(of, ovsdpdk.FlowsOptions{Logger: log}).Sync(ctx, []string{"br-int", "br-phys1"}, res.Flows); err != nil {
		t.Fatal(err)
	}

	// Traffic: the first ping goes through upcalls; while it runs, the datapath flows
	// are installed (into tc) and the later pings hit them.
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := vms["p1"].Ping("10.0.0.2", 5); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("p1 cannot reach p2: %v\n%s", err, o.Tail("ovs-vswitchd.log", 30))
		}
	}
	raw, err := o.Appctl("dpctl/dump-flows", "-m")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dpctl/dump-flows -m (real output, kept in ovsdpdk/testdata/dpctl):\n%s", raw)
	flows, err := ovsdpdk.ParseDatapathFlows(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var tcFrom1, tcTo1 int
	for _, f := range flows {
		if !f.InTC() {
			continue
		}
		if f.InPort == "hwrepp1" {
			tcFrom1++
		}
		if f.Touches("hwrepp1") && f.InPort != "hwrepp1" {
			tcTo1++
		}
	}
	if tcFrom1 == 0 || tcTo1 == 0 {
		t.Fatalf("no tenant flows in tc (from p1: %d, to p1: %d):\n%s\n%s", tcFrom1, tcTo1, raw, o.Tail("ovs-vswitchd.log", 40))
	}
	// iproute2's view: OVS's flower filters on the representor stand-in
	tcOut, err := lab.Run("ip", "netns", "exec", o.NS, "tc", "filter", "show", "dev", "hwrepp1", "ingress")
	if err != nil || !strings.Contains(tcOut, "flower") || !strings.Contains(tcOut, "hwrepp2") {
		t.Fatalf("tc filter show dev hwrepp1 ingress: %v\n%s", err, tcOut)
	}
	t.Logf("tc filter show dev hwrepp1 ingress:\n%s", tcOut)

	planFile := filepath.Join(t.TempDir(), "node-plan.json")
	if err := writeNodePlan(planFile, layout, ir, plan); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runExplainCLI("explain", "--port", "p1", "--plan", planFile, "--ovs-rundir", o.Dir, "-o", "json")
	if code != exitOK {
		t.Fatalf("explain: exit %d: %s", code, errs)
	}
	var rep explainReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.DatapathPort != "hwrepp1" || rep.DatapathError != "" {
		t.Fatalf("explain datapath port %q, error %q", rep.DatapathPort, rep.DatapathError)
	}
	var inTC int
	for _, f := range rep.Datapath {
		if !f.Touches("hwrepp1") {
			t.Errorf("explain lists a datapath flow not touching the port: %+v", f)
		}
		if f.InTC() {
			inTC++
		}
	}
	if inTC < tcFrom1+tcTo1 {
		t.Errorf("explain shows %d datapath flows in tc, the dump has %d: %+v", inTC, tcFrom1+tcTo1, rep.Datapath)
	}
	code, out, errs = runExplainCLI("explain", "--port", "p1", "--plan", planFile, "--ovs-rundir", o.Dir)
	if code != exitOK || !strings.Contains(out, "datapath flows of hwrepp1") || !strings.Contains(out, "tc (software)") {
		t.Fatalf("explain (table): exit %d %s\n%s", code, errs, out)
	}
	t.Logf("explain:\n%s", out)
}
