package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/sriov"
)

// Direct (SR-IOV) ports: the agent realises the planner's choice for each port of vnic
// type direct bound here, the VF named by its binding:profile pci_slot:
//   - BackendTC (switchdev NIC): the VF's MAC (devlink port function), the representor
//     up, and the tc flower rules offload.CompileTC emits on the representors and
//     uplinks, applied by diff (sriov.TCApplier) with every representor and uplink of
//     the managed PFs pruned, so a removed port's rules go;
//   - BackendOpenFlow (switchdev with OVS hw-offload=true): the VF's MAC and the
//     representor plugged into the integration bridge with external_ids:iface-id = the
//     port (as os-vif does), so the OpenFlow pipeline binds it; unplugged when the port
//     goes;
//   - BackendVF (legacy SR-IOV): MAC, port VLAN (the segmentation ID on vlan networks),
//     spoof checking (port security) and link state, set on the VF through the PF.
// A port that cannot be realised (pci_slot unknown or not a VF of a managed PF, the tc
// apply failed) is ERROR with the reason; the other ports are not affected.

// SRIOV is what DirectPorts uses of sriov.Manager.
type SRIOV interface {
	// Registry rebuilds the VF identity registry from the system.
	Registry(ctx context.Context) (*sriov.Registry, error)
	// VFSet applies settings to VF vf of the PF ref and reads them back; idempotent.
	VFSet(ctx context.Context, ref string, vf int, s sriov.VFSettings) (*sriov.VFSetResult, error)
}

// TCRules applies tc rules by diff (sriov.TCApplier).
type TCRules interface {
	Apply(ctx context.Context, desired []offload.TCRule, prune []string) (*sriov.TCReport, error)
}

// DirectLinks is the netdev state DirectPorts needs (NetlinkDirectLinks on Linux).
type DirectLinks interface {
	// SetLink sets a netdev administratively up or down (idempotent) and reports whether
	// it is operationally up afterwards. An error wrapping sriov.ErrNoDevice when the
	// netdev does not exist.
	SetLink(ctx context.Context, name string, up bool) (operUp bool, err error)
	// Neighbours returns the MACs the kernel's neighbour table resolved for addrs
	// (entries that are not failed or incomplete); unresolved ones are absent. Read-only.
	Neighbours(ctx context.Context, addrs []netip.Addr) (map[netip.Addr]string, error)
}

// DirectOVS plugs representors into the integration bridge (ovsdpdk.Ports).
type DirectOVS interface {
	PortAdd(ctx context.Context, ports ...ovsdpdk.Port) error
	PortDel(ctx context.Context, names ...string) error
	PortList(ctx context.Context) ([]ovsdpdk.PortStatus, error)
}

// DirectPorts realises the direct ports bound to this node. Give it to the agent as
// Deps.Direct; nil on a node without SR-IOV PFs.
type DirectPorts struct {
	SRIOV SRIOV
	Links DirectLinks
	// TC applies the tc rules of BackendTC ports; nil: those ports are ERROR.
	TC TCRules
	// OVS plugs the representors of BackendOpenFlow (hw-offload) ports; nil: those
	// ports are ERROR.
	OVS DirectOVS
	// VXLANDev is the collect_md VXLAN device tc encap rules use ("" = the compiler's
	// default, vxlan_sys_4789).
	VXLANDev string
	Logger   *zap.Logger

	mu      sync.Mutex
	state   map[string]*directState // by tenant port ID, from the last Realise
	vfDone  map[string]string       // tenant port → legacy VF settings applied (skip unchanged)
	macDone map[string]string       // tenant port → switchdev VF MAC applied, with the note
	tc      *offload.TCResult
	report  *sriov.TCReport
}

// directState is one direct port as the last Realise left it.
type directState struct {
	backend offload.Backend
	entry   sriov.Entry
	slot    string
	status  string // ACTIVE, DOWN or ERROR (OpenFlow ports: "" unless ERROR, OVS decides)
	reason  string
	seg     *offload.Segment
	// fallbacks are this port's rules the NIC refused (skip_sw) that run in software.
	fallbacks []string
	macNote   string // why the VF's MAC was not set ("" when it was)
}

// DirectInput is what Realise needs of a reconcile.
type DirectInput struct {
	Layout offload.NodeLayout
	IR     *offload.IR
	Plan   *offload.Plan
	Node   *hwdetect.Node
}

// isDirect reports the vnic types that use a VF.
func isDirect(vnic string) bool {
	return vnic == controlplane.VNICDirect || vnic == controlplane.VNICVDPA
}

// Realise brings the node's direct ports to the plan: VF settings, representors,
// tc rules and OVS plugs. changed is true when representors were plugged into or
// unplugged from OVS (the agent then rebuilds the IR so they take part in OpenFlow).
// Per-port failures become the port's ERROR status, not an error; the error is for
// what stops every port (the registry cannot be read).
func (d *DirectPorts) Realise(ctx context.Context, in DirectInput) (changed bool, err error) {
	log := d.Logger
	if log == nil {
		log = zap.NewNop()
	}
	reg, err := d.SRIOV.Registry(ctx)
	if err != nil {
		return false, fmt.Errorf("SR-IOV registry: %w", err)
	}
	states := map[string]*directState{}
	var tcPorts []string
	wantOVS := map[string]ovsdpdk.Port{} // representor → port
	for i := range in.Plan.Ports {
		pp := &in.Plan.Ports[i]
		p := in.IR.Ports[pp.PortID]
		if p == nil || !isDirect(p.VNICType) {
			continue
		}
		be := pp.Backend(offload.FeatureL2)
		if be == offload.BackendNone {
			continue // binding_failed with the planner's reason
		}
		st := &directState{backend: be, slot: p.PCISlot, seg: in.IR.Segments[p.NetworkID]}
		states[p.ID] = st
		fail := func(format string, a ...any) {
			st.status, st.reason = controlplane.PortStatusError, fmt.Sprintf(format, a...)
		}
		if p.PCISlot == "" {
			fail("binding:profile has no pci_slot: give the VF's PCI address (binding:profile {\"pci_slot\": \"0000:3b:02.1\"})")
			continue
		}
		e, ok := reg.BySlot(p.PCISlot)
		if !ok {
			fail("binding:profile pci_slot %s is not a VF of a managed SR-IOV PF (offlane sriov list shows the VFs)", p.PCISlot)
			continue
		}
		st.entry = e
		switch be {
		case offload.BackendVF:
			d.realiseVF(ctx, p, st)
		case offload.BackendTC, offload.BackendOpenFlow:
			if e.Representor == "" {
				fail("VF %d of %s (pci_slot %s) has no representor: is the eswitch in switchdev mode? (offlane sriov configure --mode switchdev)", e.VFIndex, e.PF, p.PCISlot)
				continue
			}
			st.macNote = d.setSwitchdevMAC(ctx, p, e)
			if be == offload.BackendTC {
				tcPorts = append(tcPorts, p.ID)
				up, err := d.Links.SetLink(ctx, e.Representor, p.AdminStateUp)
				switch {
				case err != nil:
					fail("representor %s: %v", e.Representor, err)
				case !p.AdminStateUp:
					st.status = controlplane.PortStatusDown
				case !up:
					st.status, st.reason = controlplane.PortStatusDown, "representor "+e.Representor+" has no carrier"
				default:
					st.status = controlplane.PortStatusActive // until the tc apply says otherwise
				}
				continue
			}
			if d.OVS == nil {
				fail("OVS hw-offload port but the agent has no OVS port plugger")
				continue
			}
			if _, err := d.Links.SetLink(ctx, e.Representor, true); err != nil {
				fail("representor %s: %v", e.Representor, err)
				continue
			}
			wantOVS[e.Representor] = ovsdpdk.Port{Name: e.Representor, Type: ovsdpdk.PortSystem, IfaceID: p.ID, MAC: p.MAC}
		default:
			fail("backend %s is not realised for vnic %s", be, p.VNICType)
		}
	}
	d.forgetVFs(ctx, states, log)

	var errs []error
	if d.OVS != nil {
		ch, err := d.plugRepresentors(ctx, reg, wantOVS)
		if err != nil {
			for _, st := range states {
				if st.backend == offload.BackendOpenFlow && st.status == "" {
					st.status, st.reason = controlplane.PortStatusError, err.Error()
				}
			}
			errs = append(errs, err)
		}
		changed = ch
	}
	tc, rep := d.applyTC(ctx, in, reg, states, tcPorts, log)

	d.mu.Lock()
	d.state, d.tc, d.report = states, tc, rep
	d.mu.Unlock()
	if len(errs) > 0 {
		log.Warn("direct ports", zap.Error(errors.Join(errs...)))
	}
	return changed, nil
}

// realiseVF sets a legacy VF's MAC, port VLAN, spoof checking and link state.
func (d *DirectPorts) realiseVF(ctx context.Context, p *offload.Port, st *directState) {
	mac, err := net.ParseMAC(p.MAC)
	if err != nil {
		st.status, st.reason = controlplane.PortStatusError, fmt.Sprintf("port MAC %q: %v", p.MAC, err)
		return
	}
	vlan := 0
	if st.seg != nil && st.seg.Type == offload.SegVLAN {
		vlan = st.seg.SegmentationID
	}
	spoof := p.PortSecurity
	ls := sriov.LinkStateAuto
	if !p.AdminStateUp {
		ls = sriov.LinkStateDisable
	}
	s := sriov.VFSettings{MAC: mac, VLAN: &vlan, SpoofChk: &spoof, LinkState: &ls}
	key := fmt.Sprintf("%s vf %d mac %s vlan %d spoofchk %t link %s", st.entry.PF, st.entry.VFIndex, mac, vlan, spoof, ls)
	d.mu.Lock()
	done := d.vfDone[p.ID] == key && st.entry.VFMAC == mac.String()
	d.mu.Unlock()
	if !done {
		if _, err := d.SRIOV.VFSet(ctx, st.entry.PF.String(), st.entry.VFIndex, s); err != nil {
			st.status, st.reason = controlplane.PortStatusError, err.Error()
			return
		}
		d.mu.Lock()
		if d.vfDone == nil {
			d.vfDone = map[string]string{}
		}
		d.vfDone[p.ID] = key
		d.mu.Unlock()
	}
	st.status = controlplane.PortStatusActive
	if !p.AdminStateUp {
		st.status = controlplane.PortStatusDown
	}
}

// forgetVFs clears the port VLAN of legacy VFs whose port is gone (the next user of the
// VF must not inherit the tag); the MAC is left to whoever plugs the VF next.
func (d *DirectPorts) forgetVFs(ctx context.Context, states map[string]*directState, log *zap.Logger) {
	d.mu.Lock()
	var gone []string
	for id := range d.vfDone {
		if st := states[id]; st == nil || st.backend != offload.BackendVF {
			gone = append(gone, id)
		}
	}
	old := map[string]*directState{}
	for _, id := range gone {
		if st := d.state[id]; st != nil && st.backend == offload.BackendVF && st.entry.PFNetdev != "" {
			old[id] = st
		}
		delete(d.vfDone, id)
	}
	d.mu.Unlock()
	for id, st := range old {
		zero := 0
		if _, err := d.SRIOV.VFSet(ctx, st.entry.PF.String(), st.entry.VFIndex, sriov.VFSettings{VLAN: &zero}); err != nil {
			log.Warn("clear the VLAN of a released VF", zap.String("port", id), zap.String("pci_slot", st.slot), zap.Error(err))
		}
	}
}

// setSwitchdevMAC sets the MAC of a switchdev VF through its devlink port function;
// a driver without it (netdevsim) leaves the MAC to the hypervisor, which sets it when
// it attaches the VF: the reason is returned, not an error.
func (d *DirectPorts) setSwitchdevMAC(ctx context.Context, p *offload.Port, e sriov.Entry) string {
	mac, err := net.ParseMAC(p.MAC)
	if err != nil {
		return fmt.Sprintf("port MAC %q: %v", p.MAC, err)
	}
	key := "switchdev " + e.Slot() + " " + mac.String()
	d.mu.Lock()
	prev, done := d.macDone[p.ID]
	d.mu.Unlock()
	if done && strings.HasPrefix(prev, key) {
		return strings.TrimPrefix(strings.TrimPrefix(prev, key), "|")
	}
	note := ""
	if _, err := d.SRIOV.VFSet(ctx, e.PF.String(), e.VFIndex, sriov.VFSettings{MAC: mac}); err != nil {
		note = "VF MAC not set by the agent (the hypervisor sets it when it attaches the VF): " + err.Error()
	}
	d.mu.Lock()
	if d.macDone == nil {
		d.macDone = map[string]string{}
	}
	d.macDone[p.ID] = key + "|" + note
	d.mu.Unlock()
	return note
}

// plugRepresentors makes the representors on OVS exactly the wanted ones: a
// representor of a managed PF on the integration bridge whose port is gone (or moved
// to another VF) is removed; foreign ports are left alone.
func (d *DirectPorts) plugRepresentors(ctx context.Context, reg *sriov.Registry, want map[string]ovsdpdk.Port) (bool, error) {
	have, err := d.OVS.PortList(ctx)
	if err != nil {
		return false, fmt.Errorf("list OVS ports: %w", err)
	}
	add, del := diffPorts(have, want, func(h ovsdpdk.PortStatus) bool { _, rep := reg.ByRepresentor(h.Name); return rep })
	sort.Slice(add, func(i, j int) bool { return add[i].Name < add[j].Name })
	sort.Strings(del)
	if len(add) > 0 {
		if err := d.OVS.PortAdd(ctx, add...); err != nil {
			return false, fmt.Errorf("plug representors: %w", err)
		}
	}
	if len(del) > 0 {
		if err := d.OVS.PortDel(ctx, del...); err != nil {
			return len(add) > 0, fmt.Errorf("unplug representors %s: %w", strings.Join(del, ", "), err)
		}
	}
	return len(add)+len(del) > 0, nil
}

// applyTC compiles and applies the tc rules of every BackendTC port, pruning every
// representor and uplink of the managed PFs.
func (d *DirectPorts) applyTC(ctx context.Context, in DirectInput, reg *sriov.Registry, states map[string]*directState, ports []string, log *zap.Logger) (*offload.TCResult, *sriov.TCReport) {
	prune := reg.Representors()
	if len(ports) == 0 && len(prune) == 0 {
		return nil, nil
	}
	failAll := func(why string) {
		for _, id := range ports {
			if st := states[id]; st.status != controlplane.PortStatusError {
				st.status, st.reason = controlplane.PortStatusError, why
			}
		}
	}
	if d.TC == nil {
		failAll("switchdev tc port but the agent has no tc applier")
		return nil, nil
	}
	lay := offload.TCLayout{Node: in.Layout, VXLANDev: d.VXLANDev, NeighMACs: d.neighMACs(ctx, in.IR, log)}
	res, err := offload.CompileTC(in.IR, in.Plan, in.Node, lay)
	if err != nil {
		log.Warn("tc compile", zap.Error(err))
		failAll("tc compile: " + err.Error())
		return nil, nil
	}
	for _, sk := range res.Skipped {
		if st := states[sk.PortID]; st != nil {
			st.status, st.reason = controlplane.PortStatusError, "tc: "+sk.Reason
		}
	}
	if lay.VXLANDev == "" {
		lay.VXLANDev = offload.DefaultVXLANTC
	}
	prune = append(prune, lay.VXLANDev)
	rep, err := d.TC.Apply(ctx, res.Rules, prune)
	if err != nil {
		// with no tc port (all hw-offload or legacy) this is the prune of the
		// representors: no port to fail, but not to be lost either
		log.Warn("tc apply", zap.Int("rules", len(res.Rules)), zap.Strings("prune", prune), zap.Error(err))
		failAll("tc apply: " + err.Error())
		return res, rep
	}
	if rep != nil {
		byRule := make(map[string]string, len(res.Rules))
		for i := range res.Rules {
			if r := &res.Rules[i]; r.Origin.Kind == offload.KindPort {
				byRule[r.String()] = r.Origin.ID
			}
		}
		for _, fb := range rep.Fallbacks {
			if st := states[byRule[fb.Rule]]; st != nil {
				st.fallbacks = append(st.fallbacks, fb.Reason)
			}
		}
	}
	return res, rep
}

// neighMACs resolves the routers' external next hops from the kernel's neighbour
// table; the tc NAT rules of a router whose next hop is unresolved are not compiled
// (the compiler records why) until it is.
func (d *DirectPorts) neighMACs(ctx context.Context, ir *offload.IR, log *zap.Logger) map[netip.Addr]string {
	var hops []netip.Addr
	for _, r := range ir.Routers {
		if r.Gateway != nil && r.Gateway.NextHop.IsValid() {
			hops = append(hops, r.Gateway.NextHop)
		}
	}
	if len(hops) == 0 {
		return nil
	}
	slices.SortFunc(hops, func(a, b netip.Addr) int { return a.Compare(b) })
	m, err := d.Links.Neighbours(ctx, slices.Compact(hops))
	if err != nil {
		log.Warn("read the neighbour table for the routers' next hops", zap.Error(err))
	}
	return m
}

// Annotate records in the plan what Realise found for each tc port: the rules the
// NIC refused to offload (skip_sw) that run in software; explain and the
// offlane_feature_backend metric show the plan's reasons.
func (d *DirectPorts) Annotate(plan *offload.Plan) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range plan.Ports {
		pp := &plan.Ports[i]
		st := d.state[pp.PortID]
		if st == nil || len(st.fallbacks) == 0 {
			continue
		}
		for j := range pp.Decisions {
			if pp.Decisions[j].Feature == offload.FeatureL2 {
				pp.Decisions[j].Reason += fmt.Sprintf("; tc fallback: %d rules run in software (skip_hw): %s", len(st.fallbacks), st.fallbacks[0])
			}
		}
	}
}

// amend completes a direct port's binding with what Realise found: the VF's identity
// for the hypervisor, and for tc and legacy-VF ports the status (OpenFlow ports keep
// the OVS interface's, unless Realise failed them).
func (d *DirectPorts) amend(v portView, b *controlplane.PortBinding) {
	d.mu.Lock()
	st := d.state[v.port.ID]
	d.mu.Unlock()
	if st == nil {
		return
	}
	det := b.VIFDetails
	det["pci_slot"] = st.slot
	if st.seg != nil && (st.seg.Type == offload.SegVLAN || st.seg.Type == offload.SegFlat) {
		det["physical_network"] = st.seg.PhysicalNetwork
	}
	if st.entry.PFNetdev != "" || st.entry.PF.Name != "" {
		det["pf"] = st.entry.PF.String()
		det["vf_index"] = st.entry.VFIndex
	}
	if st.entry.Representor != "" {
		det["representor"] = st.entry.Representor
	}
	if st.macNote != "" {
		det["vf_mac_note"] = st.macNote
	}
	switch st.backend {
	case offload.BackendTC, offload.BackendVF:
		// the VF is a PCI host device of the VM; nothing is plugged into OVS
		b.VIFType = VIFTypeHwVeb
		delete(det, "bridge_name")
		delete(det, "datapath_type")
		det["port_filter"] = st.backend == offload.BackendTC || v.port.PortSecurityEnabled
		if st.backend == offload.BackendVF && st.seg != nil && st.seg.Type == offload.SegVLAN {
			det["vlan"] = strconv.Itoa(st.seg.SegmentationID) // Nova's hw_veb VIF reads it
		}
		b.Status = st.status
		delete(det, "reason")
		if !v.port.AdminStateUp && st.status == controlplane.PortStatusActive {
			b.Status = controlplane.PortStatusDown
		}
	}
	if st.status == controlplane.PortStatusError {
		b.Status = controlplane.PortStatusError
		det["reason"] = st.reason
	} else if st.reason != "" {
		det["reason"] = st.reason
	}
}

// DirectStatus is a direct port's realisation, for tests and explain.
type DirectStatus struct {
	Backend     offload.Backend
	Slot        string
	Representor string
	Status      string
	Reason      string
	Fallbacks   []string
}

// Status returns what the last Realise did for a port; false when it is not a direct
// port it handled.
func (d *DirectPorts) Status(portID string) (DirectStatus, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.state[portID]
	if st == nil {
		return DirectStatus{}, false
	}
	return DirectStatus{Backend: st.backend, Slot: st.slot, Representor: st.entry.Representor, Status: st.status, Reason: st.reason,
		Fallbacks: slices.Clone(st.fallbacks)}, true
}

// LastTC returns the last compiled tc rules and the applier's report (nil before any).
func (d *DirectPorts) LastTC() (*offload.TCResult, *sriov.TCReport) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tc, d.report
}

// WithSRIOVInventory completes detect's node with the SR-IOV registry: a PF netdev
// hwdetect lists without VFs (a PF that is not a PCI device, such as netdevsim's) gets
// the registry's VFs, named by their slot (sriov.Entry.Slot), with their representors,
// and its eswitch mode. NICs hwdetect already knows the VFs of are left as they are. A
// registry that cannot be read leaves the node as detected.
func WithSRIOVInventory(detect func(context.Context) (*hwdetect.Node, error), s SRIOV) func(context.Context) (*hwdetect.Node, error) {
	return func(ctx context.Context) (*hwdetect.Node, error) {
		node, err := detect(ctx)
		if err != nil || node == nil {
			return node, err
		}
		reg, err := s.Registry(ctx)
		if err != nil {
			return node, nil
		}
		CompleteSRIOV(node, reg)
		return node, nil
	}
}

// CompleteSRIOV is WithSRIOVInventory's merge.
func CompleteSRIOV(node *hwdetect.Node, reg *sriov.Registry) {
	for _, pe := range reg.PFs {
		if pe.PF.Netdev == "" {
			continue
		}
		for i := range node.NICs {
			n := &node.NICs[i]
			if n.Name != pe.PF.Netdev || (n.SRIOV != nil && len(n.SRIOV.VFs) > 0) {
				continue
			}
			s := &hwdetect.SRIOV{TotalVFs: pe.PF.TotalVFs, NumVFs: pe.PF.NumVFs, VFs: []hwdetect.VF{}}
			for _, e := range pe.VFs {
				s.VFs = append(s.VFs, hwdetect.VF{Index: e.VFIndex, PCIAddress: e.Slot(), Netdev: e.VFNetdev, MAC: e.VFMAC, Driver: e.VFDriver, Representor: e.Representor})
			}
			n.SRIOV = s
			if (n.EswitchMode == "" || n.EswitchMode == hwdetect.EswitchUnknown) && pe.PF.EswitchMode != "" {
				n.EswitchMode = pe.PF.EswitchMode
			}
		}
	}
}
