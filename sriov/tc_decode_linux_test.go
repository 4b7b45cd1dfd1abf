package sriov

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/offload"
)

// roundTripRules compiles a VLAN network (two ports) and a VXLAN network (one port, two
// remote VTEPs), VLAN offloaded and VXLAN in software.
func roundTripRules(t testing.TB) []offload.TCRule {
	nic := hwdetect.NIC{Name: "pf0", EswitchMode: hwdetect.EswitchSwitchdev, SRIOV: &hwdetect.SRIOV{TotalVFs: 3, NumVFs: 3},
		Capabilities: hwdetect.Capabilities{VLAN: hwdetect.Capability{Level: hwdetect.LevelHW}, VXLANEncap: hwdetect.Capability{Level: hwdetect.LevelSW}}}
	ir := &offload.IR{Host: "node1", Segments: map[string]*offload.Segment{
		"v": {NetworkID: "v", Type: offload.SegVLAN, PhysicalNetwork: "physnet1", SegmentationID: 100, LocalVLAN: 1},
		"x": {NetworkID: "x", Type: offload.SegVXLAN, SegmentationID: 70000, LocalVLAN: 2}},
		Ports: map[string]*offload.Port{}, RemotePorts: map[string]*offload.RemotePort{
			"r1": {ID: "r1", NetworkID: "x", VTEP: netip.MustParseAddr("192.0.2.2"), MAC: "fa:16:3e:00:00:0a"},
			"r2": {ID: "r2", NetworkID: "x", VTEP: netip.MustParseAddr("192.0.2.3"), MAC: "fa:16:3e:00:00:0b"}}}
	for i, net := range []string{"v", "v", "x"} {
		pci := fmt.Sprintf("0000:03:00.%d", i+1)
		nic.SRIOV.VFs = append(nic.SRIOV.VFs, hwdetect.VF{Index: i, PCIAddress: pci, Representor: fmt.Sprintf("pf0vf%d", i)})
		id := fmt.Sprintf("p%d", i)
		ir.Ports[id] = &offload.Port{ID: id, NetworkID: net, AdminStateUp: true, VNICType: controlplane.VNICDirect,
			MAC: fmt.Sprintf("fa:16:3e:00:00:%02x", i+1), PCISlot: pci}
	}
	node := &hwdetect.Node{NICs: []hwdetect.NIC{nic}}
	lay := offload.TCLayout{Node: offload.NodeLayout{Datapath: "system", IntegrationBridge: "br-int", TunnelBridge: "br-tun",
		TunnelTypes: []string{offload.SegVXLAN}, TunnelLocalIP: netip.MustParseAddr("192.0.2.1"),
		PhysnetBridges: map[string]string{"physnet1": "br-phys1"}}}
	res, err := offload.CompileTC(ir, offload.PlanNode(ir, node, lay.Node), node, lay)
	if err != nil {
		t.Fatal(err)
	}
	return res.Rules
}

// encodeRules marshals rules with go-tc (captured, as in the benchmark) and returns
// the RTM_NEWTFILTER payloads; the devices get ifindexes 1.. in name order.
func encodeRules(t testing.TB, rules []offload.TCRule) ([][]byte, *NetlinkTC) {
	nl, c := capturingTC(t)
	g := &NetlinkTC{index: map[string]uint32{}, name: map[uint32]string{}}
	var devs []string
	for _, r := range rules {
		devs = append(devs, r.Dev)
		for _, a := range r.Actions {
			if a.Dev != "" {
				devs = append(devs, a.Dev)
			}
		}
	}
	slices.Sort(devs)
	for i, d := range slices.Compact(devs) {
		g.index[d], g.name[uint32(i+1)] = uint32(i+1), d
	}
	var out [][]byte
	for i := range rules {
		obj, err := EncodeTC(&rules[i], g.ifindex)
		if err != nil {
			t.Fatal(err)
		}
		if err := nl.Filter().Add(obj); err != nil {
			t.Fatal(err)
		}
		out = append(out, slices.Clone(c.last.Data))
	}
	return out, g
}

// TestTCEncodeDecode: what go-tc writes for each compiled rule, the applier's own
// decoder reads back as the same rule (the kernel's dump has the same layout; the guest
// tests check it against the kernel itself).
func TestTCEncodeDecode(t *testing.T) {
	rules := roundTripRules(t)
	msgs, g := encodeRules(t, rules)
	for i, m := range msgs {
		// a request has no handle; a dump reply has one
		m[8] = 1
		f, ok, err := g.decodeFilter(rules[i].Dev, m)
		if err != nil || !ok {
			t.Fatalf("rule %s: decode ok=%v %v", rules[i].String(), ok, err)
		}
		if !TCEqual(&rules[i], &f.Rule) || f.Rule.Flags != rules[i].Flags || !f.Own() || f.Key() != rules[i].Key() {
			t.Errorf("round trip:\n got %s\nwant %s", f.Rule.String(), rules[i].String())
		}
	}
	if len(msgs) < 10 {
		t.Fatalf("only %d rules", len(msgs))
	}
}

func FuzzTCDecode(f *testing.F) {
	msgs, g := encodeRules(f, roundTripRules(f))
	for _, m := range msgs {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < tcmsgLen {
			return
		}
		_, _, _ = g.decodeFilter("d", b)
	})
}
