package offload

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
)

// capturedNode replays one of hwdetect's captured sysfs trees (real NICs: ConnectX-6 Dx
// in switchdev and legacy mode, E810 with VFs, X710 without) and puts a reachable OVS
// on it (captures hold no OVS).
func capturedNode(t *testing.T, capture string, hwOffload bool) *hwdetect.Node {
	t.Helper()
	n, err := hwdetect.Detect(context.Background(), hwdetect.Options{From: "../hwdetect/testdata/" + capture})
	if err != nil {
		t.Fatal(err)
	}
	n.OVS = ovsNode().OVS
	n.OVS.HWOffload = hwOffload
	return n
}

func TestPlanReasons(t *testing.T) {
	type want struct {
		backend Backend
		reason  string // a substring
	}
	tests := []struct {
		name   string
		node   func(t *testing.T) *hwdetect.Node
		layout func(l *NodeLayout)
		seg    string // network: vlan | vxlan | geneve | flat-none (physnet without bridge)
		port   func(p *controlplane.Port)
		l2     want
		ps     want
		sg     want
	}{
		{name: "normal port, OVS userspace datapath",
			node: func(*testing.T) *hwdetect.Node { return ovsNode() }, seg: "vxlan",
			l2: want{BackendOpenFlow, "vnic normal: tap/veth on br-int (netdev datapath), local VLAN 1 ↔ vxlan VNI 1001"},
			ps: want{BackendOpenFlow, "anti-spoofing flows in br-int table 10"},
			sg: want{BackendOpenFlow, "stateful, OVS conntrack zone 1"}},
		{name: "OVS not reachable (capture without OVS)",
			node: func(t *testing.T) *hwdetect.Node {
				n, err := hwdetect.Detect(context.Background(), hwdetect.Options{From: "../hwdetect/testdata/virtio-vm"})
				if err != nil {
					t.Fatal(err)
				}
				return n
			}, seg: "vlan",
			l2: want{BackendNone, "vnic normal needs OVS: Open vSwitch not reachable: not in the capture"},
			ps: want{BackendNone, "no L2 backend"}, sg: want{BackendNone, "not filtered: no L2 backend"}},
		{name: "no capabilities at all", node: func(*testing.T) *hwdetect.Node { return nil }, seg: "vlan",
			l2: want{BackendNone, "node capabilities not detected"}, ps: want{BackendNone, ""}, sg: want{BackendNone, ""}},
		{name: "system datapath without the kernel module",
			node: func(*testing.T) *hwdetect.Node { return ovsNode() }, seg: "vlan",
			layout: func(l *NodeLayout) { l.Datapath = "system" },
			l2:     want{BackendNone, "datapath system needs the openvswitch kernel module"}, ps: want{BackendNone, ""}, sg: want{BackendNone, ""}},
		{name: "vhost-user on the system datapath",
			node: func(*testing.T) *hwdetect.Node {
				n := ovsNode()
				n.KernelFeatures.OVSDatapath = hwdetect.FeatureLoaded
				return n
			}, seg: "vlan",
			layout: func(l *NodeLayout) { l.Datapath = "system" },
			port:   func(p *controlplane.Port) { p.VNICType = controlplane.VNICVhostUser },
			l2:     want{BackendNone, "vnic vhost-user needs datapath netdev"}, ps: want{BackendNone, ""}, sg: want{BackendNone, ""}},
		{name: "vhost-user without the DPDK build",
			node: func(*testing.T) *hwdetect.Node {
				n := ovsNode()
				n.OVS.IfaceTypes = []string{"internal", "patch", "system", "tap", "vxlan"}
				return n
			}, seg: "vlan",
			port: func(p *controlplane.Port) { p.VNICType = controlplane.VNICVhostUser },
			l2:   want{BackendNone, "no dpdkvhostuserclient interface type"}, ps: want{BackendNone, ""}, sg: want{BackendNone, ""}},
		{name: "vhost-user on OVS-DPDK",
			node: func(*testing.T) *hwdetect.Node { return ovsNode() }, seg: "vlan",
			port: func(p *controlplane.Port) { p.VNICType = controlplane.VNICVhostUser },
			l2:   want{BackendOpenFlow, "vnic vhost-user: dpdkvhostuserclient port on br-int"},
			ps:   want{BackendOpenFlow, ""}, sg: want{BackendOpenFlow, ""}},
		{name: "SR-IOV VF on switchdev ConnectX-6 Dx, OVS hw-offload off: tc",
			node: func(t *testing.T) *hwdetect.Node { return capturedNode(t, "cx6dx-switchdev", false) }, seg: "vxlan",
			port: func(p *controlplane.Port) {
				p.VNICType = controlplane.VNICDirect
				p.Profile = map[string]any{"pci_slot": "0000:3b:00.3"}
			},
			l2: want{BackendTC, "switchdev NIC ens1f0np0 (pci_slot 0000:3b:00.3 is VF 1), tc flower on the VF representor, vxlan encap hw"},
			ps: want{BackendTC, "flower rules on the representor"},
			sg: want{BackendTC, "tc flower ct offloaded by NIC ens1f0np0"}},
		{name: "SR-IOV VF on switchdev ConnectX-6 Dx, OVS hw-offload on: openflow",
			node: func(t *testing.T) *hwdetect.Node { return capturedNode(t, "cx6dx-switchdev", true) }, seg: "vxlan",
			port: func(p *controlplane.Port) {
				p.VNICType = controlplane.VNICDirect
				p.Profile = map[string]any{"pci_slot": "0000:3b:00.2"}
			},
			l2: want{BackendOpenFlow, "VF representor on br-int, OVS hw-offload=true pushes its datapath flows into NIC ens1f0np0"},
			ps: want{BackendOpenFlow, ""},
			sg: want{BackendOpenFlow, "conntrack offload on ens1f0np0: hw"}},
		{name: "switchdev without ct offload nor act_ct",
			node: func(t *testing.T) *hwdetect.Node {
				n := capturedNode(t, "cx6dx-switchdev", false)
				n.NICs[0].Capabilities.CTOffload = hwdetect.Capability{Level: hwdetect.LevelSW, Reason: "firmware too old"}
				n.KernelFeatures.ActCT = hwdetect.FeatureAbsent
				return n
			}, seg: "vlan",
			port: func(p *controlplane.Port) {
				p.VNICType = controlplane.VNICDirect
				p.Profile = map[string]any{"pci_slot": "0000:3b:00.3"}
			},
			l2: want{BackendTC, "vlan push/pop hw"}, ps: want{BackendTC, ""},
			sg: want{BackendNone, "no conntrack for tc: NIC ens1f0np0 ct offload sw and the kernel lacks act_ct"}},
		{name: "legacy SR-IOV VF on a VLAN network",
			node: func(t *testing.T) *hwdetect.Node { return capturedNode(t, "cx6dx-legacy", false) }, seg: "vlan",
			port: func(p *controlplane.Port) {
				p.VNICType = controlplane.VNICDirect
				p.Profile = map[string]any{"pci_slot": "0000:3b:00.4"}
			},
			l2: want{BackendVF, "legacy SR-IOV VF of ens1f0np0 (pci_slot 0000:3b:00.4 is VF 2), VLAN 100 set on the VF"},
			ps: want{BackendVF, "MAC anti-spoofing only"},
			sg: want{BackendNone, "bypasses the host"}},
		{name: "legacy SR-IOV VF cannot join VXLAN",
			node: func(t *testing.T) *hwdetect.Node { return capturedNode(t, "e810-legacy-8vfs", false) }, seg: "vxlan",
			port: func(p *controlplane.Port) {
				p.VNICType = controlplane.VNICDirect
				p.Profile = map[string]any{"pci_slot": "0000:5e:01.7"}
			},
			l2: want{BackendNone, "a legacy VF cannot join a vxlan network; switch the NIC to switchdev"},
			ps: want{BackendNone, ""}, sg: want{BackendNone, ""}},
		{name: "vdpa needs switchdev",
			node: func(t *testing.T) *hwdetect.Node { return capturedNode(t, "e810-legacy-8vfs", false) }, seg: "vlan",
			port: func(p *controlplane.Port) {
				p.VNICType = controlplane.VNICVDPA
				p.Profile = map[string]any{"pci_slot": "0000:5e:01.0"}
			},
			l2: want{BackendNone, "vnic vdpa needs NIC ens2f0 in switchdev mode"}, ps: want{BackendNone, ""}, sg: want{BackendNone, ""}},
		{name: "unknown pci_slot",
			node: func(t *testing.T) *hwdetect.Node { return capturedNode(t, "e810-legacy-8vfs", false) }, seg: "vlan",
			port: func(p *controlplane.Port) {
				p.VNICType = controlplane.VNICDirect
				p.Profile = map[string]any{"pci_slot": "0000:99:00.1"}
			},
			l2: want{BackendNone, "pci_slot 0000:99:00.1 is not a VF (or PF) of any detected NIC"}, ps: want{BackendNone, ""}, sg: want{BackendNone, ""}},
		{name: "direct-physical PF passthrough",
			node: func(t *testing.T) *hwdetect.Node { return capturedNode(t, "x710-novfs", false) }, seg: "vlan",
			port: func(p *controlplane.Port) {
				p.VNICType = controlplane.VNICDirectPhysical
				p.Profile = map[string]any{"pci_slot": "0000:af:00.0"}
			},
			l2: want{BackendVF, "PF ens3f0 (pci_slot 0000:af:00.0) passed through"},
			ps: want{BackendNone, "whole-PF passthrough"}, sg: want{BackendNone, ""}},
		{name: "port security disabled",
			node: func(*testing.T) *hwdetect.Node { return ovsNode() }, seg: "vlan",
			port: func(p *controlplane.Port) { p.PortSecurityEnabled = false },
			l2:   want{BackendOpenFlow, ""}, ps: want{BackendNone, "port_security_enabled is false"},
			sg: want{BackendNone, "not filtered: port_security_enabled is false"}},
		{name: "router interface is trusted",
			node: func(*testing.T) *hwdetect.Node { return ovsNode() }, seg: "vlan",
			port: func(p *controlplane.Port) { p.DeviceOwner = controlplane.OwnerRouterInterface },
			l2:   want{BackendOpenFlow, ""}, ps: want{BackendNone, "device owner network:router_interface is infrastructure"}, sg: want{BackendNone, ""}},
		{name: "admin down",
			node: func(*testing.T) *hwdetect.Node { return ovsNode() }, seg: "vlan",
			port: func(p *controlplane.Port) { p.AdminStateUp = false },
			l2:   want{BackendNone, "admin_state_up is false"}, ps: want{BackendNone, ""}, sg: want{BackendNone, ""}},
		{name: "vxlan without a tunnel bridge",
			node: func(*testing.T) *hwdetect.Node { return ovsNode() }, seg: "vxlan",
			layout: func(l *NodeLayout) { l.TunnelBridge, l.TunnelTypes = "", nil },
			l2:     want{BackendNone, "is vxlan but the node has no tunnel bridge"}, ps: want{BackendNone, ""}, sg: want{BackendNone, ""}},
		{name: "geneve on the system datapath without the geneve module",
			node: func(*testing.T) *hwdetect.Node {
				n := ovsNode()
				n.KernelFeatures.OVSDatapath = hwdetect.FeatureLoaded
				return n
			}, seg: "geneve",
			layout: func(l *NodeLayout) { l.Datapath = "system" },
			l2:     want{BackendNone, "the system datapath needs the kernel's geneve module"}, ps: want{BackendNone, ""}, sg: want{BackendNone, ""}},
		{name: "physnet without a bridge",
			node: func(*testing.T) *hwdetect.Node { return ovsNode() }, seg: "flat-none",
			l2: want{BackendNone, "physnet physnet9, which has no bridge on this node"}, ps: want{BackendNone, ""}, sg: want{BackendNone, ""}},
		{name: "stateless group noted",
			node: func(*testing.T) *hwdetect.Node { return ovsNode() }, seg: "vlan",
			port: func(p *controlplane.Port) { p.SecurityGroups = []string{"sg-stateless"} },
			l2:   want{BackendOpenFlow, ""}, ps: want{BackendOpenFlow, ""},
			sg: want{BackendOpenFlow, "group sg-stateless is stateless but enforced statefully"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nets := map[string]controlplane.Network{
				"vlan":      network("n", "t", SegVLAN, "physnet1", 100),
				"vxlan":     network("n", "t", SegVXLAN, "", 1001),
				"geneve":    network("n", "t", SegGeneve, "", 1001),
				"flat-none": network("n", "t", SegFlat, "physnet9", 0),
			}
			p := port("p1", "n", "node1", "fa:16:3e:00:00:01", []string{"10.0.0.1"}, "sg")
			if tc.port != nil {
				tc.port(&p)
			}
			stateless := secgroup("sg-stateless", "t")
			stateless.Stateful = false
			ir, err := Build(BuildInput{Host: "node1", OFPorts: map[string]int{"p1": 5}, Snapshot: Snapshot{
				Networks: []controlplane.Network{nets[tc.seg]}, Ports: []controlplane.Port{p},
				SecurityGroups: []controlplane.SecurityGroup{secgroup("sg", "t"), stateless}}})
			if err != nil {
				t.Fatal(err)
			}
			l := testLayout()
			if tc.layout != nil {
				tc.layout(&l)
			}
			pl := PlanNode(ir, tc.node(t), l)
			pp := pl.Port("p1")
			if pp == nil {
				t.Fatal("no plan for p1")
			}
			for _, c := range []struct {
				f Feature
				w want
			}{{FeatureL2, tc.l2}, {FeaturePortSecurity, tc.ps}, {FeatureSecurityGroups, tc.sg}} {
				d := pp.decision(c.f)
				if d == nil {
					t.Fatalf("no %s decision", c.f)
				}
				if d.Backend != c.w.backend || !strings.Contains(d.Reason, c.w.reason) {
					t.Errorf("%s: %s (%q), want %s with %q", c.f, d.Backend, d.Reason, c.w.backend, c.w.reason)
				}
				if d.Reason == "" {
					t.Errorf("%s: empty reason", c.f)
				}
			}
		})
	}
}

func TestPlanJSONAndDiff(t *testing.T) {
	ir, plan := buildTwoTenants(t)
	b, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if d := plan.Diff(&back); len(d) != 0 {
		t.Errorf("JSON round trip changed the plan: %q", d)
	}
	// Same input, same plan (stable order).
	if again := PlanNode(ir, ovsNode(), testLayout()); again.String() != plan.String() {
		t.Error("planning twice gave different text")
	}
	// Turning port security off on a1 and removing b3 shows as a diff.
	ir2 := ir.Clone()
	a1 := *ir2.Ports["a1"]
	a1.PortSecurity = false
	ir2.Ports["a1"] = &a1
	delete(ir2.Ports, "b3")
	got := plan.Diff(PlanNode(ir2, ovsNode(), testLayout()))
	want := []string{
		"- b3 l2 openflow", "- b3 port_security openflow", "- b3 security_groups openflow",
		"- b3 routing none", "- b3 nat none",
		"- b3 qos_egress none", "- b3 qos_ingress none", "- b3 dscp none", "- b3 qos_minimum none",
		"~ a1 port_security openflow → none (port_security_enabled is false: no anti-spoofing and no security groups (as Neutron))",
		"~ a1 security_groups openflow → none (not filtered: port_security_enabled is false: no anti-spoofing and no security groups (as Neutron))",
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("diff:\n got %q\nwant %q", got, want)
	}
}
