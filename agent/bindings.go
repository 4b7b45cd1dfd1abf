package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/offload"
)

// writeBindings writes each bound port's binding and status where they changed. A full
// reconcile looks at every port bound here; an incremental one only at the ports whose
// binding can have changed: the ones whose stored object or OVS interface changed
// (touched), the ones whose IR entry or plan changed, the ones whose flows went in or out
// (the compiler's unbound set), the ones whose last write failed, and direct ports (their
// VF state lives outside the store and OVS).
func (a *Agent) writeBindings(ctx context.Context, st *controlplane.State, plan *offload.Plan, full bool, touched map[string]struct{}) (int, error) {
	unbound := map[string]bool{}
	for _, id := range a.comp.Unbound() {
		unbound[id] = true
	}
	ids := touched
	if !full {
		for id := range a.bindRetry {
			ids[id] = struct{}{}
		}
		for id := range unbound {
			if !a.unbound[id] {
				ids[id] = struct{}{}
			}
		}
		for id := range a.unbound {
			if !unbound[id] {
				ids[id] = struct{}{}
			}
		}
		if ch := a.inc.sinceLast(); ch != nil {
			for _, l := range [][]string{ch.Ports, ch.PlanPorts} {
				for _, id := range l {
					ids[id] = struct{}{}
				}
			}
		} else {
			full = true // the plan was made from scratch: look at every port
		}
	}
	var ports []*controlplane.Port
	if full {
		ids = map[string]struct{}{}
		for i := range st.Ports {
			if p := &st.Ports[i]; p.HostID == a.cfg.Host {
				ports = append(ports, p)
				ids[p.ID] = struct{}{}
			}
		}
	} else {
		for id := range ids {
			if p := a.cache.port(id); p != nil && p.HostID == a.cfg.Host {
				ports = append(ports, p)
			}
		}
		if a.d.Direct != nil {
			for i := range st.Ports {
				if p := &st.Ports[i]; p.HostID == a.cfg.Host && isDirect(p.VNICType) {
					if _, ok := ids[p.ID]; !ok {
						ports = append(ports, p)
						ids[p.ID] = struct{}{}
					}
				}
			}
		}
	}
	statuses, err := a.d.Ports.AttachedIDs(ctx, ids)
	if err != nil {
		return 0, fmt.Errorf("read attached ports: %w", err)
	}
	n := 0
	var errs []error
	retry := map[string]struct{}{}
	for _, p := range ports {
		v := portView{port: p, plan: plan.Port(p.ID)}
		if s, ok := statuses[p.ID]; ok {
			v.status = &s
		}
		v.flowsIn = v.plan != nil && !unbound[p.ID]
		b := a.binding(v)
		if controlplane.BindingHolds(p, b) {
			a.written[p.ID] = b // what the store has: no write, no transaction
			continue
		}
		wrote, err := a.d.State.SetPortBinding(ctx, a.cfg.Host, p.ID, b)
		switch {
		case err != nil && !errors.Is(err, controlplane.ErrNotFound):
			errs = append(errs, err)
			retry[p.ID] = struct{}{}
		case err == nil:
			a.written[p.ID] = b
		}
		if wrote {
			n++
		}
	}
	// forget the ports that are gone or bound elsewhere
	if full {
		for id := range a.written {
			if _, ok := ids[id]; !ok {
				delete(a.written, id)
			}
		}
	} else {
		for id := range touched {
			if p := a.cache.port(id); p == nil || p.HostID != a.cfg.Host {
				delete(a.written, id)
			}
		}
	}
	a.unbound, a.bindRetry = unbound, retry
	return n, errors.Join(errs...)
}
