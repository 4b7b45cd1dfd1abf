package offload

import (
	"slices"
	"sort"
)

// Changes names what differs between the IR and plan of a Compiler's last Update and
// the next ones: per IR map, the IDs of the objects added, removed or replaced by a
// different value, and the ports and routers whose plan entries changed. A caller that
// knows what it changed (one floating IP associated, one port added) passes it to
// UpdateChanges, and the compiler's diff then costs what changed instead of a scan of
// every object on the node. Naming an unchanged object is harmless; leaving out a
// changed one leaves its flows stale (DiffChanges computes an exact set by scanning).
type Changes struct {
	Segments       []string `json:"segments,omitempty"`
	Ports          []string `json:"ports,omitempty"`
	RemotePorts    []string `json:"remote_ports,omitempty"`
	SecurityGroups []string `json:"security_groups,omitempty"`
	Members        []string `json:"members,omitempty"`
	Routers        []string `json:"routers,omitempty"`
	FloatingIPs    []string `json:"floating_ips,omitempty"`
	QoSPolicies    []string `json:"qos_policies,omitempty"`
	// PlanPorts are the ports whose PortPlan was added, removed or changed.
	PlanPorts []string `json:"plan_ports,omitempty"`
	// PlanRouters are the routers whose RouterPlan was added, removed or changed.
	PlanRouters []string `json:"plan_routers,omitempty"`
}

// Empty reports whether ch names nothing.
func (ch *Changes) Empty() bool {
	return len(ch.Segments)+len(ch.Ports)+len(ch.RemotePorts)+len(ch.SecurityGroups)+len(ch.Members)+
		len(ch.Routers)+len(ch.FloatingIPs)+len(ch.QoSPolicies)+len(ch.PlanPorts)+len(ch.PlanRouters) == 0
}

// DiffChanges is the exact Changes from (oldIR, oldPlan) to (newIR, newPlan), each list
// sorted; nil old values mean empty. It scans everything: it is what UpdateChanges saves
// a caller that knows its changes, and the reference the property tests check against.
func DiffChanges(oldIR, newIR *IR, oldPlan, newPlan *Plan) *Changes {
	if oldIR == nil {
		oldIR = &IR{}
	}
	if oldPlan == nil {
		oldPlan = &Plan{}
	}
	if newPlan == nil {
		newPlan = &Plan{}
	}
	ch := &Changes{
		Segments:       changedKeys(oldIR.Segments, newIR.Segments, (*Segment).equal),
		Ports:          changedKeys(oldIR.Ports, newIR.Ports, (*Port).equal),
		RemotePorts:    changedKeys(oldIR.RemotePorts, newIR.RemotePorts, (*RemotePort).equal),
		SecurityGroups: changedKeys(oldIR.SecurityGroups, newIR.SecurityGroups, (*SecurityGroup).equal),
		Members:        changedKeys(oldIR.Members, newIR.Members, (*Member).equal),
		Routers:        changedKeys(oldIR.Routers, newIR.Routers, (*Router).equal),
		FloatingIPs:    changedKeys(oldIR.FloatingIPs, newIR.FloatingIPs, (*FloatingIP).equal),
		QoSPolicies:    changedKeys(oldIR.QoSPolicies, newIR.QoSPolicies, (*QoSPolicy).equal),
	}
	planChanges(oldPlan, newPlan, func(id string) { ch.PlanPorts = append(ch.PlanPorts, id) })
	planRouterChanges(oldPlan, newPlan, func(id string) { ch.PlanRouters = append(ch.PlanRouters, id) })
	sort.Strings(ch.PlanRouters)
	return ch
}

func changedKeys[V comparable](old, cur map[string]V, equal func(V, V) bool) []string {
	var out []string
	diffMaps(old, cur, equal, func(id string, _, _ V) { out = append(out, id) })
	sort.Strings(out)
	return out
}

// diffIn is diffMaps over the keys ids only when scoped (the caller's Changes), over
// every key otherwise. A key listed twice is reported once.
func diffIn[V comparable](scoped bool, ids []string, old, cur map[string]V, equal func(V, V) bool, fn func(id string, o, n V)) {
	if !scoped {
		diffMaps(old, cur, equal, fn)
		return
	}
	seen := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		o, inOld := old[id]
		n, inCur := cur[id]
		if !inOld && !inCur || inOld && inCur && (o == n || equal(o, n)) {
			continue
		}
		fn(id, o, n)
	}
}

// planPortsIn is planChanges over the ports ids only (both plans sorted by port ID).
func planPortsIn(ids []string, a, b *Plan, fn func(id string)) {
	find := func(p *Plan, id string) *PortPlan {
		i, ok := slices.BinarySearchFunc(p.Ports, id, func(pp PortPlan, id string) int {
			switch {
			case pp.PortID < id:
				return -1
			case pp.PortID > id:
				return 1
			}
			return 0
		})
		if !ok {
			return nil
		}
		return &p.Ports[i]
	}
	seen := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		x, y := find(a, id), find(b, id)
		switch {
		case x == nil && y == nil:
		case x == nil || y == nil || !slices.Equal(x.Decisions, y.Decisions) || x.NetworkID != y.NetworkID:
			fn(id)
		}
	}
}

// planRoutersIn is planRouterChanges over the routers ids only.
func planRoutersIn(ids []string, a, b *Plan, fn func(id string)) {
	find := func(p *Plan, id string) (RouterPlan, bool) {
		for _, rp := range p.Routers {
			if rp.RouterID == id {
				return rp, true
			}
		}
		return RouterPlan{}, false
	}
	for _, id := range ids {
		x, okA := find(a, id)
		y, okB := find(b, id)
		if okA != okB || x != y {
			fn(id)
		}
	}
}
