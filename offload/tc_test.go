package offload

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
)

// tcNode is a switchdev NIC pf0 with n VFs (0000:03:00.<i+1>, representors pf0vf<i>)
// whose capability matrix offloads VLAN at vlan and VXLAN encap at vxlan.
func tcNode(n int, vlan, vxlan hwdetect.Level) *hwdetect.Node {
	nic := hwdetect.NIC{Name: "pf0", PCIAddress: "0000:03:00.0", Driver: "mlx5_core", EswitchMode: hwdetect.EswitchSwitchdev,
		SRIOV: &hwdetect.SRIOV{TotalVFs: n, NumVFs: n},
		Capabilities: hwdetect.Capabilities{
			VLAN:       hwdetect.Capability{Level: vlan, Reason: "test matrix"},
			VXLANEncap: hwdetect.Capability{Level: vxlan, Reason: "test matrix"},
			CTOffload:  hwdetect.Capability{Level: hwdetect.LevelNone}}}
	for i := range n {
		nic.SRIOV.VFs = append(nic.SRIOV.VFs, hwdetect.VF{Index: i, PCIAddress: tcVF(i), Representor: fmt.Sprintf("pf0vf%d", i)})
	}
	return &hwdetect.Node{Hostname: "node1", NICs: []hwdetect.NIC{nic},
		KernelFeatures: hwdetect.KernelFeatures{TCFlower: hwdetect.FeatureLoaded, ActCT: hwdetect.FeatureLoaded}}
}

func tcVF(i int) string { return fmt.Sprintf("0000:%02x:%02x.%d", 3+i/256, i/8%32, i%8+1) }

// tcIR: a VLAN network (100) with two direct ports, a VXLAN network (VNI 1001) with one
// direct port and two remote ports on two VTEPs, and a normal port (not tc).
func tcIR() *IR {
	ir := &IR{Host: "node1",
		Segments: map[string]*Segment{
			"net-v": {NetworkID: "net-v", Type: SegVLAN, PhysicalNetwork: "physnet1", SegmentationID: 100, LocalVLAN: 1, MTU: 1500},
			"net-x": {NetworkID: "net-x", Type: SegVXLAN, SegmentationID: 1001, LocalVLAN: 2, MTU: 1450},
		},
		Ports: map[string]*Port{}, RemotePorts: map[string]*RemotePort{},
		SecurityGroups: map[string]*SecurityGroup{}, Members: map[string]*Member{},
	}
	add := func(id, net, mac string, vf int) {
		p := &Port{ID: id, NetworkID: net, AdminStateUp: true, MAC: mac, VNICType: controlplane.VNICDirect}
		if vf >= 0 {
			p.PCISlot = tcVF(vf)
		} else {
			p.VNICType = controlplane.VNICNormal
		}
		ir.Ports[id] = p
	}
	add("p1", "net-v", "fa:16:3e:00:00:01", 0)
	add("p2", "net-v", "fa:16:3e:00:00:02", 1)
	add("p3", "net-x", "fa:16:3e:00:00:03", 2)
	add("n1", "net-v", "fa:16:3e:00:00:04", -1)
	ir.RemotePorts["r1"] = &RemotePort{ID: "r1", NetworkID: "net-x", Host: "node2", VTEP: netip.MustParseAddr("192.0.2.2"), MAC: "fa:16:3e:00:00:0a"}
	ir.RemotePorts["r2"] = &RemotePort{ID: "r2", NetworkID: "net-x", Host: "node3", VTEP: netip.MustParseAddr("192.0.2.3"), MAC: "fa:16:3e:00:00:0b"}
	return ir
}

func tcLayout() TCLayout {
	l := testLayout()
	l.PhysnetUplinks = map[string]string{"physnet1": "pf0"}
	return TCLayout{Node: l}
}

func TestCompileTC(t *testing.T) {
	ir := tcIR()
	node := tcNode(4, hwdetect.LevelHW, hwdetect.LevelSW)
	plan := PlanNode(ir, node, tcLayout().Node)
	if b := plan.Port("n1").Backend(FeatureL2); b == BackendTC {
		t.Fatalf("normal port planned on tc: %v", plan)
	}
	res, err := CompileTC(ir, plan, node, tcLayout())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res.Rules {
		s := r.String()
		got = append(got, s[:strings.Index(s, " cookie ")]+" | "+r.Origin.String())
	}
	want := []string{
		"filter add dev pf0 ingress chain 0 prio 11 protocol 802.1Q flower vlan_id 100 dst_mac fa:16:3e:00:00:01 skip_sw action vlan pop | port p1",
		"filter add dev pf0 ingress chain 0 prio 11 protocol 802.1Q flower vlan_id 100 dst_mac fa:16:3e:00:00:02 skip_sw action vlan pop | port p2",
		"filter add dev pf0 ingress chain 0 prio 21 protocol 802.1Q flower vlan_id 100 dst_mac 01:00:00:00:00:00/01:00:00:00:00:00 skip_sw action vlan pop | network net-v",
		"filter add dev pf0vf0 ingress chain 0 prio 10 protocol all flower dst_mac fa:16:3e:00:00:02 skip_sw action mirred egress redirect dev pf0vf1 | port p1",
		"filter add dev pf0vf0 ingress chain 0 prio 20 protocol all flower dst_mac 01:00:00:00:00:00/01:00:00:00:00:00 skip_sw action mirred egress mirror dev pf0vf1 | port p1",
		"filter add dev pf0vf0 ingress chain 0 prio 30 protocol all flower skip_sw action vlan push id 100 | port p1",
		"filter add dev pf0vf1 ingress chain 0 prio 10 protocol all flower dst_mac fa:16:3e:00:00:01 skip_sw action mirred egress redirect dev pf0vf0 | port p2",
		"filter add dev pf0vf1 ingress chain 0 prio 20 protocol all flower dst_mac 01:00:00:00:00:00/01:00:00:00:00:00 skip_sw action mirred egress mirror dev pf0vf0 | port p2",
		"filter add dev pf0vf1 ingress chain 0 prio 30 protocol all flower skip_sw action vlan push id 100 | port p2",
		"filter add dev pf0vf2 ingress chain 0 prio 10 protocol all flower dst_mac fa:16:3e:00:00:0a skip_hw action tunnel_key set src_ip 192.0.2.1 dst_ip 192.0.2.2 id 1001 dst_port 4789 | port p3",
		"filter add dev pf0vf2 ingress chain 0 prio 10 protocol all flower dst_mac fa:16:3e:00:00:0b skip_hw action tunnel_key set src_ip 192.0.2.1 dst_ip 192.0.2.3 id 1001 dst_port 4789 | port p3",
		"filter add dev pf0vf2 ingress chain 0 prio 20 protocol all flower dst_mac 01:00:00:00:00:00/01:00:00:00:00:00 skip_hw action tunnel_key set src_ip 192.0.2.1 dst_ip 192.0.2.2 id 1001 dst_port 4789 | port p3",
		"filter add dev vxlan_sys_4789 ingress chain 0 prio 10 protocol all flower dst_mac fa:16:3e:00:00:03 enc_key_id 1001 enc_dst_ip 192.0.2.1 enc_dst_port 4789 skip_hw action tunnel_key unset | port p3",
		"filter add dev vxlan_sys_4789 ingress chain 0 prio 20 protocol all flower dst_mac 01:00:00:00:00:00/01:00:00:00:00:00 enc_key_id 1001 enc_dst_ip 192.0.2.1 enc_dst_port 4789 skip_hw action tunnel_key unset | network net-x",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d rules, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("rule %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	// the full text of two rules, actions and all
	full := map[string]bool{}
	for _, r := range res.Rules {
		s := r.String()
		full[strings.ReplaceAll(s, " cookie "+fmt.Sprintf("%x", r.Cookie), "")] = true
	}
	for _, w := range []string{
		"filter add dev pf0vf2 ingress chain 0 prio 20 protocol all flower dst_mac 01:00:00:00:00:00/01:00:00:00:00:00 skip_hw action tunnel_key set src_ip 192.0.2.1 dst_ip 192.0.2.2 id 1001 dst_port 4789 action mirred egress mirror dev vxlan_sys_4789 action tunnel_key set src_ip 192.0.2.1 dst_ip 192.0.2.3 id 1001 dst_port 4789 action mirred egress redirect dev vxlan_sys_4789",
		"filter add dev pf0 ingress chain 0 prio 21 protocol 802.1Q flower vlan_id 100 dst_mac 01:00:00:00:00:00/01:00:00:00:00:00 skip_sw action vlan pop action mirred egress mirror dev pf0vf0 action mirred egress redirect dev pf0vf1",
		"filter add dev pf0vf0 ingress chain 0 prio 30 protocol all flower skip_sw action vlan push id 100 action mirred egress redirect dev pf0",
	} {
		if !full[w] {
			t.Errorf("missing rule %s", w)
		}
	}
	// software fallback recorded with the planner's reason for the VXLAN port only
	if len(res.Fallbacks) != 1 || res.Fallbacks[0].PortID != "p3" ||
		!strings.Contains(res.Fallbacks[0].Reason, "vxlan encap not offloaded by pf0 (sw: test matrix)") ||
		!strings.Contains(res.Fallbacks[0].Reason, "planner: vnic direct: switchdev NIC pf0") {
		t.Errorf("fallbacks = %+v", res.Fallbacks)
	}
	// cookies: offlane's marker and the origin, different per rule
	seen := map[string]bool{}
	for _, r := range res.Rules {
		c := r.Cookie[:]
		if !IsOfflaneTCCookie(c) || seen[string(c)] {
			t.Fatalf("cookie %x of %s: foreign or shared", c, r)
		}
		seen[string(c)] = true
	}
	// deterministic
	again, _ := CompileTC(ir, plan, node, tcLayout())
	for i := range res.Rules {
		if res.Rules[i].String() != again.Rules[i].String() {
			t.Fatalf("not deterministic at %d", i)
		}
	}
}

func TestCompileTCSkips(t *testing.T) {
	ir := tcIR()
	ir.Segments["net-g"] = &Segment{NetworkID: "net-g", Type: SegGeneve, SegmentationID: 7, LocalVLAN: 3}
	ir.Ports["g1"] = &Port{ID: "g1", NetworkID: "net-g", AdminStateUp: true, MAC: "fa:16:3e:00:00:07", VNICType: controlplane.VNICDirect, PCISlot: tcVF(3)}
	node := tcNode(4, hwdetect.LevelHW, hwdetect.LevelHW)
	node.NICs[0].Capabilities.GeneveEncap = hwdetect.Capability{Level: hwdetect.LevelHW}
	node.NICs[0].SRIOV.VFs[1].Representor = ""
	plan := PlanNode(ir, node, tcLayout().Node)
	res, err := CompileTC(ir, plan, node, tcLayout())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"g1": "geneve encap is not compiled to tc yet", "p2": "has no representor netdev"}
	if len(res.Skipped) != len(want) {
		t.Fatalf("skipped = %+v", res.Skipped)
	}
	for _, s := range res.Skipped {
		if !strings.Contains(s.Reason, want[s.PortID]) {
			t.Errorf("skip %s: %q, want %q", s.PortID, s.Reason, want[s.PortID])
		}
	}
	for _, r := range res.Rules {
		if r.Flags != TCSkipSW {
			t.Errorf("all offloadable, got %s", r)
		}
		if strings.Contains(r.String(), "pf0vf1") {
			t.Errorf("rule for the skipped port: %s", r)
		}
	}
}

func TestCompileTCFlat(t *testing.T) {
	ir := tcIR()
	ir.Segments["net-f"] = &Segment{NetworkID: "net-f", Type: SegFlat, PhysicalNetwork: "physnet1", LocalVLAN: 4}
	ir.Ports["f1"] = &Port{ID: "f1", NetworkID: "net-f", AdminStateUp: true, MAC: "fa:16:3e:00:00:f1", VNICType: controlplane.VNICDirect, PCISlot: tcVF(3)}
	node := tcNode(4, hwdetect.LevelHW, hwdetect.LevelHW)
	res, err := CompileTC(ir, PlanNode(ir, node, tcLayout().Node), node, tcLayout())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res.Rules {
		if r.Origin.ID == "f1" || r.Origin.ID == "net-f" {
			s := r.String()
			got = append(got, strings.Split(s, " cookie ")[0])
		}
	}
	want := []string{
		"filter add dev pf0 ingress chain 0 prio 12 protocol all flower dst_mac fa:16:3e:00:00:f1 skip_sw action mirred egress redirect dev pf0vf3",
		"filter add dev pf0 ingress chain 0 prio 22 protocol all flower dst_mac 01:00:00:00:00:00/01:00:00:00:00:00 skip_sw action mirred egress redirect dev pf0vf3",
		"filter add dev pf0vf3 ingress chain 0 prio 20 protocol all flower dst_mac 01:00:00:00:00:00/01:00:00:00:00:00 skip_sw action mirred egress redirect dev pf0",
		"filter add dev pf0vf3 ingress chain 0 prio 30 protocol all flower skip_sw action mirred egress redirect dev pf0",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("flat rules:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestTCCookieText(t *testing.T) {
	r := TCRule{Dev: "d", Prio: 10, Origin: Origin{KindPort, "p1"}}
	r.Seal()
	b, _ := r.Cookie.MarshalText()
	var c TCCookie
	if err := c.UnmarshalText(b); err != nil || c != r.Cookie || !strings.HasPrefix(string(b), "6f6c3") {
		t.Fatalf("cookie %s round trip %x %v", b, c, err)
	}
	if err := c.UnmarshalText([]byte("abcd")); err == nil {
		t.Fatal("short cookie accepted")
	}
	old := r.Cookie
	r.Actions = []TCAction{{Kind: TCActDrop}}
	r.Seal()
	if r.Cookie == old || CookieKind(binary.BigEndian.Uint64(r.Cookie[:])) != KindPort {
		t.Fatalf("content change kept cookie %x", r.Cookie)
	}
}
