package agent

import (
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

// planNode plans ir: from the basis when there is one (a full reconcile drops it) with
// the same capabilities and layout, from scratch otherwise. On a node with direct ports
// the plan it returns is the caller's to annotate (DirectPorts.Annotate): it shares no
// Decisions with the basis the next call starts from; elsewhere it is the basis itself,
// read only.
func (a *Agent) planNode(ir *offload.IR, layout offload.NodeLayout) *offload.Plan {
	b := &a.inc
	var plan *offload.Plan
	b.ch, b.from = nil, nil
	if b.ir != nil && b.hw == a.hw && sameLayout(b.layout, layout) {
		ch := offload.DiffChanges(b.ir, ir, nil, nil)
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
