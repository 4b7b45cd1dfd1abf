package agent

import (
	"maps"
	"net/netip"
	"reflect"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/offload"
)

// incremental keeps what the agent derived last, so that a reconcile after a small change
// re-plans only the ports the change reaches (offload.PlanNodeChanges) and the compiler
// compares only what changed (offload.Compiler.UpdateChanges). A full reconcile (the
// first, the periodic resync, any after an error) plans and compiles from scratch.
type incremental struct {
	ir     *offload.IR   // the IR the basis plan was made from
	plan   *offload.Plan // that plan, as the planner returned it (never annotated)
	hw     *hwdetect.Node
	layout offload.NodeLayout
	// the OpenFlow ports and VTEPs ir was built with
	ofports map[string]int
	vteps   map[string]netip.Addr

	// the changes of the last planNode call and the IR they start from
	ch   *offload.Changes
	from *offload.IR

	// the changes of this reconcile's planNode calls together (a stage's rebuild makes
	// a second one); nil once one of them planned from scratch
	since   *offload.Changes
	scratch bool
	// per stage (by index), the changes since the IR it last realised: a rebuild after
	// a stage ran is a change that stage has not seen yet
	stages map[int]*offload.Changes
}

// forStage is what changed since stage i last realised an IR; nil when unknown (it has
// not run since the last full reconcile, or a plan was made from scratch since).
func (b *incremental) forStage(i int) *offload.Changes { return b.stages[i] }

// stageDone records that stage i realised the newest IR.
func (b *incremental) stageDone(i int) {
	if b.stages == nil {
		b.stages = map[int]*offload.Changes{}
	}
	b.stages[i] = &offload.Changes{}
}

// reconcileStart begins a reconcile's record of changes.
func (b *incremental) reconcileStart() { b.since, b.scratch = &offload.Changes{}, false }

// sinceLast is what changed since the IR and plan of the last reconcile: the union of
// this reconcile's change sets, or nil when one of them was planned from scratch (then
// anything may have changed).
func (b *incremental) sinceLast() *offload.Changes {
	if b.scratch || b.since == nil {
		return nil
	}
	return b.since
}

// note adds one planNode call's changes to the reconcile's record and to each stage's
// (nil: from scratch).
func (b *incremental) note(ch *offload.Changes) {
	if ch == nil {
		b.scratch = true
		clear(b.stages)
		return
	}
	if b.since == nil {
		b.scratch = true
	} else {
		merge(b.since, ch)
	}
	for _, s := range b.stages {
		merge(s, ch)
	}
}

// merge appends ch's names to s (a name listed twice is harmless).
func merge(s, ch *offload.Changes) {
	s.Segments = append(s.Segments, ch.Segments...)
	s.Ports = append(s.Ports, ch.Ports...)
	s.RemotePorts = append(s.RemotePorts, ch.RemotePorts...)
	s.SecurityGroups = append(s.SecurityGroups, ch.SecurityGroups...)
	s.Members = append(s.Members, ch.Members...)
	s.Routers = append(s.Routers, ch.Routers...)
	s.FloatingIPs = append(s.FloatingIPs, ch.FloatingIPs...)
	s.QoSPolicies = append(s.QoSPolicies, ch.QoSPolicies...)
	s.PlanPorts = append(s.PlanPorts, ch.PlanPorts...)
	s.PlanRouters = append(s.PlanRouters, ch.PlanRouters...)
}

// buildIR builds the IR of in: from the basis IR and the ports that changed since
// (offload.BuildChanges: a one-port change costs about a millisecond at 10,000 ports
// instead of 30–40 for Build and DiffChanges), from scratch when other objects changed,
// and in full when there is no basis. The changes it returns go from the basis to the
// new IR (nil: unknown).
func (a *Agent) buildIR(in offload.BuildInput) (*offload.IR, *offload.Changes, error) {
	b := &a.inc
	changed, all := a.pend.ports, a.pend.all
	a.pend.ports, a.pend.all = map[string]*controlplane.Port{}, false
	if b.ir == nil || !maps.Equal(b.vteps, in.VTEPs) {
		all = true
	}
	if !all && !sameMap(b.ofports, in.OFPorts) {
		// a port (un)plugged or renumbered: it changed for Build too (its current entry
		// stands for the old one, which only the OpenFlow port tells apart)
		for id, of := range in.OFPorts {
			if b.ofports[id] != of {
				a.noteOFPort(changed, id)
			}
		}
		for id := range b.ofports {
			if _, ok := in.OFPorts[id]; !ok {
				a.noteOFPort(changed, id)
			}
		}
	}
	ir, ch, err := offload.BuildChanges(b.ir, in, changed, all)
	if err != nil {
		return nil, nil, err
	}
	b.ofports, b.vteps = in.OFPorts, in.VTEPs
	return ir, ch, nil
}

// noteOFPort names port id among the changed ports of a build when its OpenFlow port
// changed (with its current entry, unless the store changed it too).
func (a *Agent) noteOFPort(changed map[string]*controlplane.Port, id string) {
	if _, ok := changed[id]; ok {
		return
	}
	if p := a.cache.port(id); p != nil {
		changed[id] = p
	}
}

// sameMap reports whether two OpenFlow port maps are the same map (FlowLayout hands out
// one map until OVS changes) or equal.
func sameMap(x, y map[string]int) bool {
	if len(x) != len(y) {
		return false
	}
	if len(x) == 0 || reflect.ValueOf(x).UnsafePointer() == reflect.ValueOf(y).UnsafePointer() {
		return true
	}
	return maps.Equal(x, y)
}

// pending is what changed in the cached state since the last build (drain records it).
type pending struct {
	// ports: the ports whose stored object changed, each with its value at the last
	// build (nil when it had none)
	ports map[string]*controlplane.Port
	// all: something else changed (a network, subnet, router, floating IP, security
	// group, QoS policy or another node's VTEP)
	all bool
}

// note records a relevant store event for the next build.
func (p *pending) note(ev controlplane.Event, prev *controlplane.Port) {
	if ev.Kind != controlplane.KindPort {
		p.all = true
		return
	}
	if p.ports == nil {
		p.ports = map[string]*controlplane.Port{}
	}
	if _, ok := p.ports[ev.ID]; !ok {
		p.ports[ev.ID] = prev
	}
}

// planNode plans ir: from the basis when there is one (a full reconcile drops it) with
// the same capabilities and layout, from scratch otherwise. On a node with direct ports
// the plan it returns is the caller's to annotate (DirectPorts.Annotate): it shares no
// Decisions with the basis the next call starts from; elsewhere it is the basis itself,
// read only.
func (a *Agent) planNode(ir *offload.IR, ch *offload.Changes, layout offload.NodeLayout) *offload.Plan {
	b := &a.inc
	var plan *offload.Plan
	b.ch, b.from = nil, nil
	if b.ir != nil && b.hw == a.hw && sameLayout(b.layout, layout) {
		if ch == nil {
			ch = offload.DiffChanges(b.ir, ir, nil, nil)
		}
		plan = offload.PlanNodeChanges(b.ir, b.plan, ir, ch, a.hw, layout)
		b.ch, b.from = ch, b.ir
	} else {
		plan = offload.PlanNode(ir, a.hw, layout)
	}
	b.note(b.ch)
	b.ir, b.plan, b.hw, b.layout = ir, plan, a.hw, layout
	if a.d.Direct == nil {
		return plan // nothing annotates it: share it with the basis (10,000 ports: ~5 MB)
	}
	return plan.Clone()
}

// compile brings the compiler to (ir, plan): with the change set of the last planNode
// when the compiler stands where that change set starts, comparing everything otherwise.
func (a *Agent) compile(ir *offload.IR, plan *offload.Plan) (*offload.Delta, error) {
	if b := &a.inc; b.ch != nil && b.from != nil && a.comp.IR() == b.from {
		return a.comp.UpdateChanges(ir, plan, b.ch)
	}
	return a.comp.Update(ir, plan)
}
