package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/sriov"
)

// Fakes that hold state: VF settings per VF, tc rules per device, OVS ports, links.

type fakeSRIOV struct {
	reg *sriov.Registry
	vfs map[string]sriov.VFSettings // "pf/vf" → the last settings
	// macErr is what a switchdev PF answers to a MAC (netdevsim: unsupported)
	macErr error
	calls  int
}

func (f *fakeSRIOV) Registry(context.Context) (*sriov.Registry, error) { return f.reg, nil }

func (f *fakeSRIOV) VFSet(_ context.Context, ref string, vf int, s sriov.VFSettings) (*sriov.VFSetResult, error) {
	f.calls++
	if strings.HasPrefix(ref, "pci/0000:03") && f.macErr != nil {
		return nil, f.macErr
	}
	k := fmt.Sprintf("%s/%d", ref, vf)
	cur := f.vfs[k]
	if s.MAC != nil {
		cur.MAC = s.MAC
	}
	if s.VLAN != nil {
		cur.VLAN = s.VLAN
	}
	if s.SpoofChk != nil {
		cur.SpoofChk = s.SpoofChk
	}
	if s.LinkState != nil {
		cur.LinkState = s.LinkState
	}
	f.vfs[k] = cur
	if s.MAC != nil { // the driver now reports it, as the registry reads it
		f.setRegMAC(ref, vf, s.MAC.String())
	}
	return &sriov.VFSetResult{}, nil
}

func (f *fakeSRIOV) setRegMAC(ref string, vf int, mac string) {
	for i := range f.reg.PFs {
		for j := range f.reg.PFs[i].VFs {
			if e := &f.reg.PFs[i].VFs[j]; e.PF.String() == ref && e.VFIndex == vf {
				e.VFMAC = mac
			}
		}
	}
}

type fakeTC struct {
	rules    map[string][]offload.TCRule // by device
	pruned   []string
	refuseSW bool // the NIC refuses skip_sw: fall back like TCApplier does
	err      error
}

func (f *fakeTC) Apply(_ context.Context, desired []offload.TCRule, prune []string) (*sriov.TCReport, error) {
	if f.err != nil {
		return nil, f.err
	}
	f.pruned = prune
	for _, d := range prune {
		delete(f.rules, d)
	}
	rep := &sriov.TCReport{}
	for _, r := range desired {
		f.rules[r.Dev] = append(f.rules[r.Dev], r)
		if f.refuseSW && r.Flags == offload.TCSkipSW {
			rep.Fallbacks = append(rep.Fallbacks, sriov.TCFallback{Rule: r.String(), Reason: r.Dev + ": skip_sw rejected; runs in software (skip_hw)"})
		}
	}
	return rep, nil
}

type fakeLinks struct{ up map[string]bool }

func (f *fakeLinks) SetLink(_ context.Context, name string, up bool) (bool, error) {
	if _, ok := f.up[name]; !ok {
		return false, fmt.Errorf("%w: netdev %s", sriov.ErrNoDevice, name)
	}
	f.up[name] = up
	return up, nil
}

func (f *fakeLinks) Neighbours(context.Context, []netip.Addr) (map[netip.Addr]string, error) {
	return nil, nil
}

type fakeOVS struct{ ports map[string]ovsdpdk.Port }

func (f *fakeOVS) PortAdd(_ context.Context, ps ...ovsdpdk.Port) error {
	for _, p := range ps {
		f.ports[p.Name] = p
	}
	return nil
}

func (f *fakeOVS) PortDel(_ context.Context, names ...string) error {
	for _, n := range names {
		delete(f.ports, n)
	}
	return nil
}

func (f *fakeOVS) PortList(context.Context) ([]ovsdpdk.PortStatus, error) {
	var out []ovsdpdk.PortStatus
	for _, p := range f.ports {
		out = append(out, ovsdpdk.PortStatus{Name: p.Name, IfaceID: p.IfaceID, MAC: p.MAC, OFPort: 7, LinkState: "up"})
	}
	return out, nil
}

// directNode: PF "sw0" (0000:03:00.0) in switchdev with VFs 0000:03:00.1/.2 and
// representors rep0/rep1, VLAN push/pop in hardware; PF "lg0" (0000:04:00.0) legacy
// with VF 0000:04:00.1.
func directNode(hwOffload bool) (*hwdetect.Node, *sriov.Registry) {
	sw := hwdetect.NIC{Name: "sw0", PCIAddress: "0000:03:00.0", EswitchMode: hwdetect.EswitchSwitchdev,
		SRIOV: &hwdetect.SRIOV{TotalVFs: 2, NumVFs: 2, VFs: []hwdetect.VF{{Index: 0, PCIAddress: "0000:03:00.1", Representor: "rep0"},
			{Index: 1, PCIAddress: "0000:03:00.2", Representor: "rep1"}}},
		Capabilities: hwdetect.Capabilities{VLAN: hwdetect.Capability{Level: hwdetect.LevelHW}}}
	lg := hwdetect.NIC{Name: "lg0", PCIAddress: "0000:04:00.0", EswitchMode: hwdetect.EswitchLegacy,
		SRIOV: &hwdetect.SRIOV{TotalVFs: 1, NumVFs: 1, VFs: []hwdetect.VF{{Index: 0, PCIAddress: "0000:04:00.1"}}}}
	node := &hwdetect.Node{Hostname: "node1", NICs: []hwdetect.NIC{sw, lg},
		OVS:            &hwdetect.OVSInfo{Reachable: true, Version: "3.1", DatapathTypes: []string{"system"}, HWOffload: hwOffload},
		KernelFeatures: hwdetect.KernelFeatures{TCFlower: hwdetect.FeatureLoaded, OVSDatapath: hwdetect.FeatureLoaded}}
	swDev, lgDev := sriov.Device{Bus: "pci", Name: "0000:03:00.0"}, sriov.Device{Bus: "pci", Name: "0000:04:00.0"}
	reg := sriov.NewRegistry([]sriov.PFEntry{
		{PF: sriov.PF{Device: swDev, Netdev: "sw0", NumVFs: 2, EswitchMode: sriov.ModeSwitchdev}, VFs: []sriov.Entry{
			{PF: swDev, PFNetdev: "sw0", VFIndex: 0, VFPCI: "0000:03:00.1", Representor: "rep0"},
			{PF: swDev, PFNetdev: "sw0", VFIndex: 1, VFPCI: "0000:03:00.2", Representor: "rep1"}}},
		{PF: sriov.PF{Device: lgDev, Netdev: "lg0", NumVFs: 1, EswitchMode: sriov.ModeLegacy}, VFs: []sriov.Entry{
			{PF: lgDev, PFNetdev: "lg0", VFIndex: 0, VFPCI: "0000:04:00.1"}}},
	})
	return node, reg
}

func directLayout() offload.NodeLayout {
	return offload.NodeLayout{Datapath: "system", IntegrationBridge: "br-int", PhysnetBridges: map[string]string{"physnet1": "br-phys1"}}
}

func directIR(ports ...*offload.Port) *offload.IR {
	ir := &offload.IR{Host: "node1", Segments: map[string]*offload.Segment{
		"net": {NetworkID: "net", Type: offload.SegVLAN, PhysicalNetwork: "physnet1", SegmentationID: 100, LocalVLAN: 1, MTU: 1500}},
		Ports: map[string]*offload.Port{}, RemotePorts: map[string]*offload.RemotePort{}, SecurityGroups: map[string]*offload.SecurityGroup{},
		Members: map[string]*offload.Member{}}
	for _, p := range ports {
		ir.Ports[p.ID] = p
	}
	return ir
}

func directPort(id, slot, mac string) *offload.Port {
	return &offload.Port{ID: id, NetworkID: "net", AdminStateUp: true, MAC: mac, VNICType: controlplane.VNICDirect, PCISlot: slot, PortSecurity: true}
}

type directRig struct {
	d    *DirectPorts
	s    *fakeSRIOV
	tc   *fakeTC
	ovs  *fakeOVS
	node *hwdetect.Node
	a    *Agent
}

func newDirectRig(hwOffload bool) *directRig {
	node, reg := directNode(hwOffload)
	r := &directRig{s: &fakeSRIOV{reg: reg, vfs: map[string]sriov.VFSettings{}}, tc: &fakeTC{rules: map[string][]offload.TCRule{}},
		ovs: &fakeOVS{ports: map[string]ovsdpdk.Port{}}, node: node}
	r.d = &DirectPorts{SRIOV: r.s, TC: r.tc, OVS: r.ovs, Links: &fakeLinks{up: map[string]bool{"rep0": false, "rep1": false}}}
	r.a = &Agent{layout: directLayout(), d: Deps{Direct: r.d}}
	return r
}

// realise plans ir and realises it; it returns the plan (annotated) and the bindings.
func (r *directRig) realise(t *testing.T, ir *offload.IR) (*offload.Plan, map[string]controlplane.PortBinding) {
	t.Helper()
	plan := offload.PlanNode(ir, r.node, directLayout())
	if _, err := r.d.Realise(context.Background(), DirectInput{Layout: directLayout(), IR: ir, Plan: plan, Node: r.node}); err != nil {
		t.Fatal(err)
	}
	r.d.Annotate(plan)
	out := map[string]controlplane.PortBinding{}
	for id, p := range ir.Ports {
		cp := &controlplane.Port{ID: id, AdminStateUp: true, VNICType: p.VNICType, PortSecurityEnabled: p.PortSecurity}
		v := portView{port: cp, plan: plan.Port(id)}
		if ovsp, ok := r.ovs.ports[repOf(r, id)]; ok {
			v.status, v.flowsIn = &ovsdpdk.PortStatus{OFPort: 7, LinkState: "up", IfaceID: ovsp.IfaceID}, true
		}
		out[id] = r.a.binding(v)
	}
	return plan, out
}

func repOf(r *directRig, id string) string {
	for n, p := range r.ovs.ports {
		if p.IfaceID == id {
			return n
		}
	}
	return ""
}

func TestDirectPortsTC(t *testing.T) {
	r := newDirectRig(false)
	r.tc.refuseSW = true
	ir := directIR(directPort("p0", "0000:03:00.1", "fa:16:3e:00:00:01"), directPort("p1", "0000:03:00.2", "fa:16:3e:00:00:02"),
		directPort("bad", "0000:09:00.1", "fa:16:3e:00:00:09"))
	plan, b := r.realise(t, ir)
	res, _ := r.d.LastTC()
	want, err := offload.CompileTC(ir, plan, r.node, offload.TCLayout{Node: directLayout()})
	if err != nil {
		t.Fatal(err)
	}
	var got []offload.TCRule
	for _, rs := range r.tc.rules {
		got = append(got, rs...)
	}
	offload.SortTCRules(got)
	if len(got) == 0 || len(got) != len(want.Rules) || len(res.Rules) != len(want.Rules) {
		t.Fatalf("applied %d rules, compiler %d", len(got), len(want.Rules))
	}
	for i := range got {
		if got[i].Cookie != want.Rules[i].Cookie {
			t.Fatalf("rule %d: applied %s, want %s", i, got[i].String(), want.Rules[i].String())
		}
	}
	// every representor and uplink of the managed PFs is pruned, and the VXLAN device
	for _, d := range []string{"sw0", "rep0", "rep1", "lg0", offload.DefaultVXLANTC} {
		if !slices.Contains(r.tc.pruned, d) {
			t.Errorf("prune %v lacks %s", r.tc.pruned, d)
		}
	}
	for _, id := range []string{"p0", "p1"} {
		bb := b[id]
		if bb.Status != controlplane.PortStatusActive || bb.VIFType != VIFTypeHwVeb || bb.VIFDetails["pci_slot"] == nil ||
			bb.VIFDetails["physical_network"] != "physnet1" || bb.VIFDetails["representor"] == nil || bb.VIFDetails["bridge_name"] != nil {
			t.Errorf("%s binding %+v", id, bb)
		}
		st, _ := r.d.Status(id)
		if len(st.Fallbacks) == 0 {
			t.Errorf("%s: the refused skip_sw rules are not recorded", id)
		}
		if d := plan.Port(id).Decisions[0]; !strings.Contains(d.Reason, "tc fallback:") || !strings.Contains(d.Reason, "skip_sw rejected") {
			t.Errorf("%s: plan reason %q lacks the fallback", id, d.Reason)
		}
	}
	if !r.d.Links.(*fakeLinks).up["rep0"] || !r.d.Links.(*fakeLinks).up["rep1"] {
		t.Error("representors not set up")
	}
	// the planner refuses the unknown slot: binding_failed, the others unaffected
	if bb := b["bad"]; bb.Status != controlplane.PortStatusError || !strings.Contains(fmt.Sprint(bb.VIFDetails["reason"]), "0000:09:00.1") {
		t.Errorf("bad port binding %+v", bb)
	}

	// p1 goes: its rules go (pruned), p0's stay
	delete(ir.Ports, "p1")
	r.realise(t, ir)
	if len(r.tc.rules["rep1"]) != 0 || len(r.tc.rules["rep0"]) == 0 {
		t.Errorf("after p1's removal: rep1 %d rules, rep0 %d", len(r.tc.rules["rep1"]), len(r.tc.rules["rep0"]))
	}
	for _, rs := range r.tc.rules {
		for _, x := range rs {
			if x.Origin.ID == "p1" {
				t.Errorf("p1's rule stayed: %s", x.String())
			}
		}
	}

	// the apply fails: the tc ports are ERROR with the reason
	r.tc.err = errors.New("netlink: no buffer space")
	_, b = r.realise(t, ir)
	if bb := b["p0"]; bb.Status != controlplane.PortStatusError || !strings.Contains(fmt.Sprint(bb.VIFDetails["reason"]), "no buffer space") {
		t.Errorf("p0 after a failed apply: %+v", bb)
	}
}

func TestDirectPortsUnknownSlotNotInRegistry(t *testing.T) {
	// hwdetect knows the VF, the registry (sysfs/devlink) does not: ERROR naming it
	r := newDirectRig(false)
	r.s.reg = sriov.NewRegistry(nil)
	ir := directIR(directPort("p0", "0000:03:00.1", "fa:16:3e:00:00:01"))
	_, b := r.realise(t, ir)
	if bb := b["p0"]; bb.Status != controlplane.PortStatusError || !strings.Contains(fmt.Sprint(bb.VIFDetails["reason"]), "not a VF of a managed SR-IOV PF") {
		t.Errorf("binding %+v", bb)
	}
}

func TestDirectPortsLegacyVF(t *testing.T) {
	r := newDirectRig(false)
	ir := directIR(directPort("v0", "0000:04:00.1", "fa:16:3e:00:00:05"), directPort("p0", "0000:03:00.1", "fa:16:3e:00:00:01"))
	_, b := r.realise(t, ir)
	s := r.s.vfs["pci/0000:04:00.0/0"]
	if s.MAC.String() != "fa:16:3e:00:00:05" || s.VLAN == nil || *s.VLAN != 100 || s.SpoofChk == nil || !*s.SpoofChk || *s.LinkState != sriov.LinkStateAuto {
		t.Errorf("VF settings %+v", s)
	}
	if bb := b["v0"]; bb.Status != controlplane.PortStatusActive || bb.VIFType != VIFTypeHwVeb || bb.VIFDetails["vlan"] != "100" ||
		bb.VIFDetails["pci_slot"] != "0000:04:00.1" || bb.VIFDetails["physical_network"] != "physnet1" {
		t.Errorf("v0 binding %+v", bb)
	}
	// unchanged: no call (p0's switchdev MAC is remembered too); the MAC changed
	// behind the agent's back: set again; the port goes: its VLAN is cleared
	calls := r.s.calls
	r.realise(t, ir)
	if r.s.calls != calls {
		t.Errorf("an unchanged reconcile made %d VF calls", r.s.calls-calls)
	}
	r.s.setRegMAC("pci/0000:04:00.0", 0, "02:00:00:00:00:99")
	r.realise(t, ir)
	if r.s.calls != calls+1 || r.s.vfs["pci/0000:04:00.0/0"].MAC.String() != "fa:16:3e:00:00:05" {
		t.Errorf("drifted VF MAC: %d calls, VF %+v", r.s.calls-calls, r.s.vfs["pci/0000:04:00.0/0"])
	}
	delete(ir.Ports, "v0")
	r.realise(t, ir)
	if s := r.s.vfs["pci/0000:04:00.0/0"]; s.VLAN == nil || *s.VLAN != 0 {
		t.Errorf("released VF keeps VLAN %v", s.VLAN)
	}
}

func TestDirectPortsHWOffload(t *testing.T) {
	r := newDirectRig(true)
	r.s.macErr = fmt.Errorf("%w: hw_addr", sriov.ErrUnsupported)
	ir := directIR(directPort("p0", "0000:03:00.1", "fa:16:3e:00:00:01"))
	plan, b := r.realise(t, ir)
	if be := plan.Port("p0").Backend(offload.FeatureL2); be != offload.BackendOpenFlow {
		t.Fatalf("planned %s, want openflow (hw-offload)", be)
	}
	if p, ok := r.ovs.ports["rep0"]; !ok || p.IfaceID != "p0" || p.Type != ovsdpdk.PortSystem || p.MAC != "fa:16:3e:00:00:01" {
		t.Fatalf("rep0 not plugged with iface-id p0: %+v", r.ovs.ports)
	}
	bb := b["p0"]
	if bb.Status != controlplane.PortStatusActive || bb.VIFType != VIFTypeOVS || bb.VIFDetails["representor"] != "rep0" ||
		bb.VIFDetails["bridge_name"] != "br-int" || !strings.Contains(fmt.Sprint(bb.VIFDetails["vf_mac_note"]), "hw_addr") {
		t.Errorf("binding %+v", bb)
	}
	// a foreign port stays; the port goes: its representor is unplugged
	r.ovs.ports["vm1"] = ovsdpdk.Port{Name: "vm1", IfaceID: "x"}
	delete(ir.Ports, "p0")
	r.realise(t, ir)
	if _, ok := r.ovs.ports["rep0"]; ok {
		t.Error("rep0 still on OVS after its port went")
	}
	if _, ok := r.ovs.ports["vm1"]; !ok {
		t.Error("a foreign OVS port was removed")
	}
}

func TestCompleteSRIOV(t *testing.T) {
	d := sriov.Device{Bus: "netdevsim", Name: "netdevsim1"}
	reg := sriov.NewRegistry([]sriov.PFEntry{{PF: sriov.PF{Device: d, Netdev: "eni1np1", NumVFs: 2, TotalVFs: 4, EswitchMode: sriov.ModeSwitchdev},
		VFs: []sriov.Entry{{PF: d, PFNetdev: "eni1np1", VFIndex: 0, Representor: "eni1npf0vf0"}, {PF: d, PFNetdev: "eni1np1", VFIndex: 1, Representor: "eni1npf0vf1"}}}})
	node := &hwdetect.Node{NICs: []hwdetect.NIC{{Name: "eni1np1", EswitchMode: hwdetect.EswitchUnknown}, {Name: "eth0", EswitchMode: hwdetect.EswitchUnknown}}}
	CompleteSRIOV(node, reg)
	n := node.NICs[0]
	if n.EswitchMode != hwdetect.EswitchSwitchdev || n.SRIOV == nil || len(n.SRIOV.VFs) != 2 ||
		n.SRIOV.VFs[1].PCIAddress != "netdevsim/netdevsim1/vf1" || n.SRIOV.VFs[1].Representor != "eni1npf0vf1" {
		t.Fatalf("completed NIC %+v %+v", n, n.SRIOV)
	}
	if node.NICs[1].SRIOV != nil {
		t.Error("a NIC without a PF entry got VFs")
	}
	if e, ok := reg.BySlot("netdevsim/netdevsim1/vf1"); !ok || e.Representor != "eni1npf0vf1" {
		t.Errorf("BySlot: %+v %v", e, ok)
	}
	for _, s := range []string{"", "netdevsim/netdevsim1/vf9", "netdevsim/netdevsim1", "/vf"} {
		if _, ok := reg.BySlot(s); ok {
			t.Errorf("BySlot(%q) found an entry", s)
		}
	}
}
