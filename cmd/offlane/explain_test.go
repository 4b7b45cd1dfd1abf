package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/offload"
)

func explainStrp(s string) *string { return &s }
func explainIntp(i int) *int       { return &i }

// explainSnapshot: a VLAN and a VXLAN network, three ports on node1 (one with an allowed
// address pair, one without port security), one on node2; a group with a CIDR rule, a
// port range and a remote-group rule.
func explainSnapshot() offload.Snapshot {
	port := func(id, net, host, mac, ip string, sgs ...string) controlplane.Port {
		return controlplane.Port{ID: id, NetworkID: net, HostID: host, MACAddress: mac, AdminStateUp: true, PortSecurityEnabled: true,
			VNICType: controlplane.VNICNormal, SecurityGroups: sgs, FixedIPs: []controlplane.FixedIP{{IPAddress: ip}}}
	}
	p2 := port("p2", "vx", "node1", "fa:16:3e:00:00:02", "10.1.0.2", "web")
	p2.AllowedAddressPairs = []controlplane.AddressPair{{IPAddress: "10.1.0.100"}}
	p3 := port("p3", "vl", "node1", "fa:16:3e:00:00:03", "10.0.0.3")
	p3.PortSecurityEnabled = false
	rule := func(id, dir, proto string, lo, hi int, cidr, group string) controlplane.SecurityGroupRule {
		r := controlplane.SecurityGroupRule{ID: id, SecurityGroupID: "web", Direction: dir, EtherType: "IPv4"}
		if proto != "" {
			r.Protocol = explainStrp(proto)
		}
		if lo != 0 {
			r.PortRangeMin, r.PortRangeMax = explainIntp(lo), explainIntp(hi)
		}
		if cidr != "" {
			r.RemoteIPPrefix = explainStrp(cidr)
		}
		if group != "" {
			r.RemoteGroupID = explainStrp(group)
		}
		return r
	}
	return offload.Snapshot{
		Networks: []controlplane.Network{
			{ID: "vl", TenantID: "t", AdminStateUp: true, NetworkType: "vlan", PhysicalNetwork: explainStrp("physnet1"), SegmentationID: explainIntp(100), MTU: 1500},
			{ID: "vx", TenantID: "t", AdminStateUp: true, NetworkType: "vxlan", SegmentationID: explainIntp(5001), MTU: 1450},
		},
		Ports: []controlplane.Port{
			port("p1", "vl", "node1", "fa:16:3e:00:00:01", "10.0.0.1", "web"), p2, p3,
			port("r1", "vx", "node2", "fa:16:3e:00:00:09", "10.1.0.9", "web"),
		},
		SecurityGroups: []controlplane.SecurityGroup{{ID: "web", TenantID: "t", Stateful: true, Rules: []controlplane.SecurityGroupRule{
			rule("ssh", "ingress", "tcp", 22, 22, "192.168.1.0/24", ""),
			rule("web-range", "ingress", "tcp", 8000, 8080, "", ""),
			rule("icmp-group", "ingress", "icmp", 0, 0, "", "web"),
			rule("out", "egress", "", 0, 0, "", ""),
		}}},
	}
}

// explainLayout is ovsdpdk's node layout with a tunnel bridge and one physnet bridge,
// with the port numbers OVS gives them on an empty switch.
func explainLayout() offload.NodeLayout {
	return offload.NodeLayout{Datapath: "netdev", IntegrationBridge: "br-int", TunnelBridge: "br-tun",
		TunnelLocalIP: netip.MustParseAddr("192.0.2.1"), TunnelTypes: []string{"vxlan"},
		PhysnetBridges: map[string]string{"physnet1": "br-phys1"}, PhysnetUplinks: map[string]string{},
		OFPorts: map[string]int{offload.PatchTun: 2, offload.IntPatch("br-phys1"): 1, offload.PatchInt: 1,
			offload.TunnelPort("vxlan"): 2, offload.PhyPatch("br-phys1"): 1}}
}

func ovsOnlyNode() *hwdetect.Node {
	return &hwdetect.Node{Hostname: "node1", OVS: &hwdetect.OVSInfo{Reachable: true, Version: "3.1.0",
		DatapathTypes: []string{"netdev", "system"}, IfaceTypes: []string{"internal", "patch", "system", "vxlan"}}}
}

// writeExplainPlan builds the node's IR and plan and saves the plan file.
func writeExplainPlan(t *testing.T, ofports map[string]int) string {
	t.Helper()
	ir, err := offload.Build(offload.BuildInput{Host: "node1", Snapshot: explainSnapshot(), OFPorts: ofports,
		VTEPs: map[string]netip.Addr{"node2": netip.MustParseAddr("192.0.2.2")}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "node-plan.json")
	if err := writeNodePlan(path, explainLayout(), ir, offload.PlanNode(ir, ovsOnlyNode(), explainLayout())); err != nil {
		t.Fatal(err)
	}
	return path
}

func runExplainCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestExplainOffline(t *testing.T) {
	plan := writeExplainPlan(t, map[string]int{"p1": 11, "p2": 12, "p3": 13})
	code, out, errs := runExplainCLI("explain", "--port", "p2", "--plan", plan, "--offline")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"port p2 on host node1",
		"network   vx (tenant t): vxlan VNI 5001, local VLAN 2, MTU 1450",
		"allowed   fa:16:3e:00:00:02 10.1.0.100/32",
		"l2               openflow  vnic normal",
		"port_security    openflow",
		"security_groups  openflow  stateful, OVS conntrack zone 2",
		"ssh         web    ingress    IPv4       tcp       22         192.168.1.0/24",
		"icmp-group  web    ingress    IPv4       icmp      any        group web (10.0.0.1/32 10.1.0.2/32 10.1.0.9/32 10.1.0.100/32)",
		"br-int table 0 (classify)",
		"br-int table 10 (port security)",
		"br-tun table 1 (to tunnels (local VLAN → VNI))",
		"offline: not compared with the switch",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	code, out, errs = runExplainCLI("explain", "--port", "p2", "--plan", plan, "--offline", "-o", "json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rep explainReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if rep.Port.ID != "p2" || rep.Port.OFPort != 12 || len(rep.Decisions) != len(offload.Features) || len(rep.Rules) != 4 || rep.Source.OVSRunDir != "" {
		t.Fatalf("report: %+v", rep)
	}
	kinds := map[offload.Kind]int{}
	for _, f := range rep.Flows {
		if f.State != "" || f.Packets != nil {
			t.Fatalf("offline flow with live state: %+v", f)
		}
		if f.Origin.ID == "" {
			t.Fatalf("flow without an origin: %+v", f)
		}
		if c := fmt.Sprintf("%#x", offload.CookieFor(f.Origin.Kind, f.Origin.ID)); f.Cookie != c {
			t.Fatalf("flow cookie %s is not its origin's %s: %+v", f.Cookie, c, f)
		}
		kinds[f.Origin.Kind]++
		// Every port flow names the port (its OpenFlow port, MAC or address) or its
		// network's local VLAN.
		if f.Origin.Kind == offload.KindPort && !strings.Contains(f.Match+f.Actions, "0xc") && !strings.Contains(f.Match+f.Actions, "12") &&
			!strings.Contains(f.Match+f.Actions, "fa:16:3e:00:00:02") {
			t.Errorf("flow of port p2 does not mention it: %+v", f)
		}
	}
	for _, k := range []offload.Kind{offload.KindPort, offload.KindNetwork, offload.KindRule} {
		if kinds[k] == 0 {
			t.Errorf("no flows from a %s (have %v)", k, kinds)
		}
	}

	// Without port security: no filtering flows, and the reasons say why.
	_, out, _ = runExplainCLI("explain", "--port", "p3", "--plan", plan, "--offline")
	if !strings.Contains(out, "port_security    none      port_security_enabled is false") || strings.Contains(out, "table 10 (port security)") {
		t.Errorf("p3 (port security off):\n%s", out)
	}
}

func TestExplainUnboundPort(t *testing.T) {
	plan := writeExplainPlan(t, map[string]int{"p1": 11}) // p2 has no OpenFlow port yet
	code, out, errs := runExplainCLI("explain", "--port", "p2", "--plan", plan, "--offline")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "OVS has no OpenFlow port for it yet") {
		t.Fatalf("unbound port not reported:\n%s", out)
	}
}

func TestExplainErrors(t *testing.T) {
	plan := writeExplainPlan(t, map[string]int{"p1": 11})
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"format":"something-else"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(t.TempDir(), "junk.json")
	if err := os.WriteFile(junk, []byte("not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no port", []string{"explain", "--plan", plan}, exitUsage, "--port is required"},
		{"unknown port", []string{"explain", "--port", "nope", "--plan", plan, "--offline"}, exitUsage, "its ports: p1, p2, p3"},
		{"remote port", []string{"explain", "--port", "r1", "--plan", plan, "--offline"}, exitUsage, "not a port bound to host node1"},
		{"no plan file", []string{"explain", "--port", "p1", "--plan", "/nonexistent/plan.json"}, exitUsage, "no such file"},
		{"other format", []string{"explain", "--port", "p1", "--plan", bad}, exitUsage, "not a node plan file"},
		{"not json", []string{"explain", "--port", "p1", "--plan", junk}, exitUsage, "not a node plan file"},
		{"bad output", []string{"explain", "--port", "p1", "--plan", plan, "-o", "yaml"}, exitUsage, "use table or json"},
		{"no switch", []string{"explain", "--port", "p1", "--plan", plan, "--ovs-rundir", "/nonexistent"}, exitFailure, "use --offline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runExplainCLI(tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, errs, tc.code, tc.want)
			}
		})
	}
}
