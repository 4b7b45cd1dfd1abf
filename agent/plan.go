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
}

// planNode plans ir: from the basis when there is one (a full reconcile drops it) with
// the same capabilities and layout, from scratch otherwise. The plan it returns is the caller's to
// annotate: it shares no Decisions with the basis the next call starts from.
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
	b.ir, b.plan, b.hw, b.layout = ir, plan, a.hw, layout
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
