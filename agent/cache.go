package agent

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/offlane/offlane/controlplane"
)

// desired is the agent's copy of the desired state: read once in full (Load), then kept
// current by applying the store's watch events, so that a reconcile after one change
// costs that change instead of decoding every object of the node (≈ 260 ms at 10,000
// ports). It is reloaded in full when the watch breaks (a gap) and after a failed
// reconcile. Only the reconcile loop touches it.
type desired struct {
	st  *controlplane.State
	idx map[string]*kindIndex // by store kind
	// ports names the ports whose stored object changed since takePorts (bindings.go
	// recomputes their bindings)
	ports map[string]struct{}
}

// kindIndex finds one kind's objects in their State slice.
type kindIndex struct {
	pos map[string]int
	ids []string // by position
}

func newKindIndex[T any](s []T, id func(*T) string) *kindIndex {
	ki := &kindIndex{pos: make(map[string]int, len(s)), ids: make([]string, len(s))}
	for i := range s {
		k := id(&s[i])
		ki.pos[k], ki.ids[i] = i, k
	}
	return ki
}

// reset makes st the cached state.
func (d *desired) reset(st *controlplane.State) {
	d.st = st
	d.idx = map[string]*kindIndex{
		controlplane.KindNetwork:    newKindIndex(st.Networks, func(v *controlplane.Network) string { return v.ID }),
		controlplane.KindSubnet:     newKindIndex(st.Subnets, func(v *controlplane.Subnet) string { return v.ID }),
		controlplane.KindPort:       newKindIndex(st.Ports, func(v *controlplane.Port) string { return v.ID }),
		controlplane.KindRouter:     newKindIndex(st.Routers, func(v *controlplane.Router) string { return v.ID }),
		controlplane.KindFloatingIP: newKindIndex(st.FloatingIPs, func(v *controlplane.FloatingIP) string { return v.ID }),
		controlplane.KindSecGroup:   newKindIndex(st.SecurityGroups, func(v *controlplane.SecurityGroup) string { return v.ID }),
		controlplane.KindQoSPolicy:  newKindIndex(st.QoSPolicies, func(v *controlplane.QoSPolicy) string { return v.ID }),
		controlplane.KindAgent:      newKindIndex(st.Agents, func(v *controlplane.Agent) string { return v.ID }),
	}
	d.ports = map[string]struct{}{}
}

// port returns the cached port id (nil when there is none).
func (d *desired) port(id string) *controlplane.Port {
	if i, ok := d.idx[controlplane.KindPort].pos[id]; ok {
		return &d.st.Ports[i]
	}
	return nil
}

// apply brings the cached state past ev. It reports the port's previous value for a port
// event (nil when it was not cached) so the caller can tell its own binding writes from
// changes. Events of kinds the agent does not read (security-group rules, which come
// with their group's event) change nothing.
func (d *desired) apply(ev controlplane.Event) (prev *controlplane.Port, err error) {
	if ev.Revision > d.st.Revision {
		d.st.Revision = ev.Revision
	}
	ki := d.idx[ev.Kind]
	if ki == nil {
		return nil, nil
	}
	switch ev.Kind {
	case controlplane.KindNetwork:
		return nil, applyTo(&d.st.Networks, ki, ev)
	case controlplane.KindSubnet:
		return nil, applyTo(&d.st.Subnets, ki, ev)
	case controlplane.KindPort:
		if p := d.port(ev.ID); p != nil {
			cp := *p
			prev = &cp
		}
		return prev, applyTo(&d.st.Ports, ki, ev)
	case controlplane.KindRouter:
		return nil, applyTo(&d.st.Routers, ki, ev)
	case controlplane.KindFloatingIP:
		return nil, applyTo(&d.st.FloatingIPs, ki, ev)
	case controlplane.KindSecGroup:
		return nil, applyTo(&d.st.SecurityGroups, ki, ev)
	case controlplane.KindQoSPolicy:
		return nil, applyTo(&d.st.QoSPolicies, ki, ev)
	case controlplane.KindAgent:
		return nil, applyTo(&d.st.Agents, ki, ev)
	}
	return nil, nil
}

// touch records that port id changed in a way that matters.
func (d *desired) touch(id string) { d.ports[id] = struct{}{} }

// takePorts returns the ports whose stored object changed since the last call.
func (d *desired) takePorts() map[string]struct{} {
	out := d.ports
	d.ports = map[string]struct{}{}
	return out
}

// applyTo puts (created, updated) or removes (deleted) one object of a kind's slice.
// A removal moves the last object into the hole: the agent does not depend on the order.
func applyTo[T any](s *[]T, ki *kindIndex, ev controlplane.Event) error {
	if ev.Type == controlplane.EventDeleted {
		i, ok := ki.pos[ev.ID]
		if !ok {
			return nil
		}
		last := len(*s) - 1
		(*s)[i], ki.ids[i] = (*s)[last], ki.ids[last]
		ki.pos[ki.ids[i]] = i
		var zero T
		(*s)[last] = zero
		*s, ki.ids = (*s)[:last], ki.ids[:last]
		delete(ki.pos, ev.ID)
		return nil
	}
	var v T
	if err := json.Unmarshal(ev.Value, &v); err != nil {
		return fmt.Errorf("%s %s at revision %d: decode: %w", ev.Kind, ev.ID, ev.Revision, err)
	}
	if i, ok := ki.pos[ev.ID]; ok {
		(*s)[i] = v
		return nil
	}
	ki.pos[ev.ID] = len(*s)
	ki.ids = append(ki.ids, ev.ID)
	*s = append(*s, v)
	return nil
}

// onlyBinding reports whether a port update changed nothing but what an agent writes
// (status, binding:vif_type, binding:vif_details) and the bookkeeping the store does
// with every write (revision_number, updated_at).
func onlyBinding(old, cur *controlplane.Port) bool {
	if old == nil || cur == nil {
		return false
	}
	a, b := *old, *cur
	for _, p := range []*controlplane.Port{&a, &b} {
		p.Status, p.VIFType, p.VIFDetails, p.RevisionNumber, p.UpdatedAt = "", "", nil, 0, ""
	}
	return reflect.DeepEqual(a, b)
}
