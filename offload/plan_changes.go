package offload

import (
	"slices"
	"strings"

	"github.com/offlane/offlane/hwdetect"
)

// PlanNodeChanges is PlanNode after the IR changes ch, from prevIR (planned as prev) to
// ir, on the same node capabilities and layout: it re-plans only the ports and routers
// the changes can reach and takes every other entry from prev. A port's plan reads its
// own Port, its network's Segment, its security groups, the routers with an interface on
// its network, its floating IPs and its QoS policy; so a port is re-planned when ch names
// it or one of those (under prevIR or ir). It returns the plan and records in ch the
// entries that changed (PlanPorts, PlanRouters), ready for Compiler.UpdateChanges.
//
// When the capabilities or the layout changed, plan with PlanNode instead: every
// decision may move. The result equals PlanNode(ir, node, layout) (property-tested).
func PlanNodeChanges(prevIR *IR, prev *Plan, ir *IR, ch *Changes, node *hwdetect.Node, layout NodeLayout) *Plan {
	redo := affectedPorts(prevIR, ir, ch)
	pl := &Plan{Host: ir.Host, Datapath: layout.Datapath, Ports: make([]PortPlan, 0, len(prev.Ports)+len(redo))}
	ch.PlanPorts = ch.PlanPorts[:0]
	var l3 *l3Index
	if len(redo) > 8 {
		l3 = newL3Index(ir) // many ports: index once instead of scanning per port
	}
	ids := make([]string, 0, len(redo))
	for id := range redo {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	// merge prev's entries (minus the re-planned) with the new plans of ids, by port ID
	i := 0
	emit := func(id string) {
		pp, ok := planPort(ir, id, node, layout, l3)
		old, had := prevPort(prev, id)
		switch {
		case ok && had && slices.Equal(old.Decisions, pp.Decisions) && old.NetworkID == pp.NetworkID && old.VNICType == pp.VNICType:
			pl.Ports = append(pl.Ports, old) // same plan: keep the old entry
		case ok:
			pl.Ports = append(pl.Ports, pp)
			ch.PlanPorts = append(ch.PlanPorts, id)
		case had:
			ch.PlanPorts = append(ch.PlanPorts, id)
		}
	}
	for _, pp := range prev.Ports {
		for i < len(ids) && ids[i] < pp.PortID {
			emit(ids[i])
			i++
		}
		if i < len(ids) && ids[i] == pp.PortID {
			emit(ids[i])
			i++
			continue
		}
		pl.Ports = append(pl.Ports, pp)
	}
	for ; i < len(ids); i++ {
		emit(ids[i])
	}

	pl.Routers = prev.Routers
	ch.PlanRouters = ch.PlanRouters[:0]
	if len(ch.Routers) > 0 {
		pl.Routers = planRoutersChanged(prev.Routers, ir, ch, node, layout)
	}
	return pl
}

// affectedPorts is the set of local ports (under prevIR or ir) whose plan ch can change.
func affectedPorts(prevIR, ir *IR, ch *Changes) map[string]struct{} {
	out := map[string]struct{}{}
	for _, id := range ch.Ports {
		out[id] = struct{}{}
	}
	nets := map[string]struct{}{}
	for _, id := range ch.Segments {
		nets[id] = struct{}{}
	}
	for _, id := range ch.Routers {
		for _, r := range []*Router{prevIR.Routers[id], ir.Routers[id]} {
			if r != nil {
				for _, ri := range r.Interfaces {
					nets[ri.NetworkID] = struct{}{}
				}
			}
		}
	}
	for _, id := range ch.FloatingIPs {
		for _, f := range []*FloatingIP{prevIR.FloatingIPs[id], ir.FloatingIPs[id]} {
			if f != nil {
				out[f.PortID] = struct{}{}
			}
		}
	}
	if len(nets)+len(ch.SecurityGroups)+len(ch.QoSPolicies) == 0 {
		return out
	}
	sgs := make(map[string]struct{}, len(ch.SecurityGroups))
	for _, id := range ch.SecurityGroups {
		sgs[id] = struct{}{}
	}
	qos := make(map[string]struct{}, len(ch.QoSPolicies))
	for _, id := range ch.QoSPolicies {
		qos[id] = struct{}{}
	}
	// one pass over the ports: those on a changed network, or using a changed group or
	// policy (their network and groups as ir has them: a port whose own fields changed
	// is in ch.Ports already)
	for id, p := range ir.Ports {
		_, onNet := nets[p.NetworkID]
		_, usesQoS := qos[p.QoSPolicyID]
		if onNet || usesQoS && p.QoSPolicyID != "" || anyIn(p.SecurityGroups, sgs) {
			out[id] = struct{}{}
		}
	}
	return out
}

func anyIn(ids []string, set map[string]struct{}) bool {
	if len(set) == 0 {
		return false
	}
	for _, id := range ids {
		if _, ok := set[id]; ok {
			return true
		}
	}
	return false
}

// prevPort finds a port's entry in a plan sorted by port ID.
func prevPort(p *Plan, id string) (PortPlan, bool) {
	i, ok := slices.BinarySearchFunc(p.Ports, id, func(pp PortPlan, id string) int { return strings.Compare(pp.PortID, id) })
	if !ok {
		return PortPlan{}, false
	}
	return p.Ports[i], true
}

// planRoutersChanged is planRouters with only the routers ch names planned again.
func planRoutersChanged(prev []RouterPlan, ir *IR, ch *Changes, node *hwdetect.Node, lay NodeLayout) []RouterPlan {
	redo := make(map[string]struct{}, len(ch.Routers))
	for _, id := range ch.Routers {
		redo[id] = struct{}{}
	}
	out := make([]RouterPlan, 0, len(ir.Routers))
	for _, rp := range prev {
		if _, ok := redo[rp.RouterID]; !ok {
			out = append(out, rp)
		}
	}
	for id := range redo {
		if r := ir.Routers[id]; r != nil {
			out = append(out, planRouter(r, node, lay))
		}
	}
	slices.SortFunc(out, func(a, b RouterPlan) int { return strings.Compare(a.RouterID, b.RouterID) })
	for id := range redo {
		a, okA := findRouterPlan(prev, id)
		b, okB := findRouterPlan(out, id)
		if okA != okB || a != b {
			ch.PlanRouters = append(ch.PlanRouters, id)
		}
	}
	slices.Sort(ch.PlanRouters)
	if len(out) == 0 {
		return nil
	}
	return out
}

func findRouterPlan(rs []RouterPlan, id string) (RouterPlan, bool) {
	i, ok := slices.BinarySearchFunc(rs, id, func(rp RouterPlan, id string) int { return strings.Compare(rp.RouterID, id) })
	if !ok {
		return RouterPlan{}, false
	}
	return rs[i], true
}

// Clone returns a deep copy of the plan: its entries and their decisions can be changed
// (e.g. annotated with what a backend found at apply time) without touching p.
func (p *Plan) Clone() *Plan {
	n := *p
	n.Ports = make([]PortPlan, len(p.Ports))
	for i, pp := range p.Ports {
		pp.Decisions = slices.Clone(pp.Decisions)
		n.Ports[i] = pp
	}
	n.Routers = slices.Clone(p.Routers)
	return &n
}
