package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/offlane/offlane/agent/metrics"
	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
)

// errOVSDBDown fails a reconcile up front while the OVSDB connection is down: every
// step needs OVSDB, and ovs-vswitchd, which loses its database lock with it, stops
// answering OpenFlow requests until the database is back.
var errOVSDBDown = errors.New("OVSDB connection lost (ovsdb-server down or restarting): the client reconnects by itself, the agent retries")

// reconcile brings the node to the desired state once. full: reload the desired state
// from the store, plan and compile from scratch, compare with what OVS has (a full sync
// of every bridge by diff) instead of sending the compiler's delta, re-apply the node
// layout and redo every binding. Otherwise it works from the cached state (cache.go) and
// costs what changed since the last reconcile.
func (a *Agent) reconcile(ctx context.Context, full bool) (err error) {
	start := time.Now()
	changes := 0
	defer func() {
		if o := a.d.Observer; o != nil {
			o.ObserveReconcile(full, time.Since(start), changes, err)
		}
		a.mu.Lock()
		a.lastErr = err
		if err != nil {
			a.needFull = true
		}
		a.mu.Unlock()
	}()

	if !a.d.OVS.Connected() {
		return errOVSDBDown
	}
	if full {
		a.inc = incremental{} // plan.go: plan and compile from scratch
	}
	a.inc.reconcileStart()
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ReconcileTimeout)
	defer cancel()
	ctx, stopWatch := a.abortOnOVSDBLoss(ctx)
	defer stopWatch()
	defer func() {
		if err != nil && errors.Is(context.Cause(ctx), errOVSDBDown) {
			err = fmt.Errorf("%w (aborted: %w)", errOVSDBDown, err)
		}
	}()
	if full || a.cache.st == nil {
		st, err := a.d.State.Load(ctx)
		if err != nil {
			return err
		}
		a.cache.reset(st)
	}
	st := a.cache.st
	touched := a.cache.takePorts() // ports whose stored object changed
	for id := range a.takeOVSIDs() {
		touched[id] = struct{}{} // and those whose OVS interface changed
	}
	if full && a.cfg.Layout != nil {
		res, err := a.d.OVS.ApplyNode(ctx, a.cfg.Layout, ovsdpdk.ApplyOptions{Wait: true})
		if err != nil {
			return fmt.Errorf("apply node layout: %w", err)
		}
		if res.Transacted {
			// OVS changed (bridges, DPDK, the Datapath row whose capabilities the planner
			// reads): detect again so the plan sees it
			if hw, err := a.d.Detect(ctx); err == nil {
				a.hw = hw
				if o := a.d.Observer; o != nil {
					o.SetNode(hw)
				}
			} else {
				a.log.Warn("detect after applying the node layout; keeping the previous capabilities", zap.Error(err))
			}
		}
	}
	if err := a.ensureVhostUser(ctx, st, full); err != nil {
		return err
	}

	snap := offload.Snapshot{Networks: st.Networks, Ports: st.Ports, SecurityGroups: st.SecurityGroups,
		Subnets: st.Subnets, Routers: st.Routers, FloatingIPs: st.FloatingIPs, QoSPolicies: st.QoSPolicies}
	vteps := vtepsOf(st.Agents, a.cfg.Host)
	layout, ir, plan, err := a.build(ctx, snap, vteps)
	if err != nil {
		return err
	}
	for i, s := range a.d.Stages {
		changed, err := a.realiseStage(ctx, i, s, ir, plan, a.inc.forStage(i))
		if err != nil {
			return fmt.Errorf("%s: %w", s.Name(), err)
		}
		if changed {
			// ports were plugged or unplugged: rebuild once with their OpenFlow ports
			if layout, ir, plan, err = a.build(ctx, snap, vteps); err != nil {
				return err
			}
		}
	}
	if d := a.d.Direct; d != nil {
		changed, err := d.Realise(ctx, DirectInput{Layout: layout, IR: ir, Plan: plan, Node: a.hw})
		if err != nil {
			return fmt.Errorf("direct ports: %w", err)
		}
		if changed { // representors plugged or unplugged (OVS hw-offload)
			if layout, ir, plan, err = a.build(ctx, snap, vteps); err != nil {
				return err
			}
		}
		d.Annotate(plan)
	}

	if a.comp == nil || !sameLayout(layout, a.layout) {
		if a.comp, err = offload.NewCompiler(layout); err != nil {
			return err
		}
		full = true
	}
	delta, err := a.compile(ir, plan)
	if err != nil {
		return err
	}
	a.layout = layout
	brs := bridgesOf(layout)
	meters := a.comp.Meters()
	metersChanged := full || !reflect.DeepEqual(meters, a.applied.meters)
	if a.d.Meters != nil && metersChanged {
		// meters first: the flows about to go in may reference them
		if _, err := a.d.Meters.Prepare(ctx, brs, meters); err != nil {
			return fmt.Errorf("meters: %w", err)
		}
	}
	if full {
		a.dropDrift() // drift.go: a check in flight compares with flows this sync replaces
		res, err := a.d.Flows.Sync(ctx, brs, a.comp.Flows())
		a.observeSync(res)
		if err != nil {
			return err
		}
		changes = res.Changes()
	} else if !delta.Empty() {
		a.noteDelta(delta) // drift.go
		if err := a.d.Flows.Update(ctx, delta); err != nil {
			return err
		}
		changes = len(delta.Add) + len(delta.Modify) + len(delta.Delete)
		if o := a.d.Observer; o != nil {
			o.AddChanges(metrics.ChangeAdd, len(delta.Add))
			o.AddChanges(metrics.ChangeModify, len(delta.Modify))
			o.AddChanges(metrics.ChangeDelete, len(delta.Delete))
		}
	}
	if full || !delta.Empty() || len(a.ct.retry) > 0 {
		// the new rules are in: cut what they no longer allow (conntrack.go)
		a.flushConntrack(ctx, ir)
	}

	if a.d.Meters != nil && metersChanged {
		// and removed last, once no flow references them
		if _, err := a.d.Meters.Prune(ctx, brs, meters); err != nil {
			return fmt.Errorf("meters: %w", err)
		}
	}
	a.applied.meters = meters
	if a.d.QoS != nil {
		if qos := offload.OVSQoS(ir, plan); full || !reflect.DeepEqual(qos, a.applied.qos) {
			if _, err := a.d.QoS.Apply(ctx, qos); err != nil {
				return fmt.Errorf("OVSDB QoS: %w", err)
			}
			a.applied.qos = qos
		}
	}

	if pr := a.comp.NeighbourProbes(); a.d.ProbeNeighbours != nil && len(pr) > 0 && (full || !slices.Equal(pr, a.probes)) {
		// after a full reconcile and when next hops change: the answers refresh the
		// learned next-hop MACs
		if err := a.d.ProbeNeighbours(ctx, pr); err != nil {
			a.log.Warn("probe next hops", zap.Error(err))
		} else {
			a.probes = pr
		}
	}

	bindings, err := a.writeBindings(ctx, st, plan, full, touched) // bindings.go
	if err != nil {
		return err
	}

	if vlans := ir.LocalVLANs(); full || !maps.Equal(vlans, a.state.LocalVLANs) {
		a.state.LocalVLANs = vlans
		a.state.Revision = st.Revision
		if err := a.state.save(filepath.Join(a.cfg.StateDir, StateFileName)); err != nil {
			return err
		}
	}
	res := Result{Revision: st.Revision, Full: full, Layout: layout, IR: ir, Plan: plan, Changes: changes, Bindings: bindings}
	infos := a.portInfos
	if full || len(touched) > 0 {
		infos = portInfos(st, a.cfg.Host)
	}
	counts := a.countFlows(full, delta)
	prevPlan := a.last.Plan // (a.last is only written on this goroutine)
	a.mu.Lock()
	a.last, a.ready, a.needFull, a.rev = res, true, false, st.Revision
	a.vteps = vteps
	a.portInfos, a.flowCounts = infos, counts
	a.mu.Unlock()
	if o := a.d.Observer; o != nil {
		// the decision counts: moved by the ports whose plan changed when that is known
		// (and no direct port annotation, made after planning, can have moved)
		if ch := a.inc.sinceLast(); !full && ch != nil && prevPlan != nil && a.d.Direct == nil {
			o.UpdatePlan(prevPlan, plan, ch.PlanPorts)
		} else {
			o.SetPlan(plan)
		}
	}
	if a.d.OnReconciled != nil {
		a.d.OnReconciled(res)
	}
	a.log.Debug("reconciled", zap.Int64("revision", st.Revision), zap.Bool("full", full), zap.Int("flow_changes", changes),
		zap.Int("bindings", bindings), zap.Duration("took", time.Since(start)))
	return nil
}

// realiseStage runs stage i on ir and plan: with the changes since the IR it last
// realised when it takes them (ChangeStage) and they are known (ch != nil), in full
// otherwise.
func (a *Agent) realiseStage(ctx context.Context, i int, s Stage, ir *offload.IR, plan *offload.Plan, ch *offload.Changes) (bool, error) {
	var changed bool
	var err error
	if cs, ok := s.(ChangeStage); ok {
		changed, err = cs.RealiseChanges(ctx, ir, plan, ch)
	} else {
		changed, err = s.Realise(ctx, ir, plan)
	}
	if err == nil {
		a.inc.stageDone(i)
	}
	return changed, err
}

// appliedState is what the last reconcile left in place, so that the next one skips
// what did not change.
type appliedState struct {
	meters []offload.Meter      // the compiler's meters, prepared and pruned
	qos    []offload.OVSPortQoS // the OVSDB QoS applied
	vhu    int                  // vhost-user ports wanted
	counts map[tableKey]int     // flows per bridge table (metrics)
}

type tableKey struct {
	bridge string
	table  uint8
}

// takeOVSIDs returns the iface-ids whose OVS interface changed since the last call.
func (a *Agent) takeOVSIDs() map[string]struct{} {
	a.evMu.Lock()
	defer a.evMu.Unlock()
	out := a.ovsIDs
	a.ovsIDs = map[string]struct{}{}
	return out
}

// countFlows returns the installed flows per bridge table: counted in full after a
// full reconcile, kept up to date by each delta otherwise.
func (a *Agent) countFlows(full bool, delta *offload.Delta) []metrics.FlowCount {
	if full || a.applied.counts == nil {
		a.applied.counts = map[tableKey]int{}
		for _, t := range a.comp.TableCounts() {
			a.applied.counts[tableKey{t.Bridge, t.Table}] = t.Flows
		}
	} else if delta != nil && !delta.Empty() {
		for _, f := range delta.Add {
			a.applied.counts[tableKey{f.Bridge, f.Table}]++
		}
		for _, f := range delta.Delete {
			k := tableKey{f.Bridge, f.Table}
			if a.applied.counts[k]--; a.applied.counts[k] <= 0 {
				delete(a.applied.counts, k)
			}
		}
	} else {
		return a.flowCounts
	}
	out := make([]metrics.FlowCount, 0, len(a.applied.counts))
	for k, n := range a.applied.counts {
		out = append(out, metrics.FlowCount{Bridge: k.bridge, Table: int(k.table), Backend: offload.BackendOpenFlow, Flows: n})
	}
	slices.SortFunc(out, func(x, y metrics.FlowCount) int {
		return cmp.Or(strings.Compare(x.Bridge, y.Bridge), cmp.Compare(x.Table, y.Table))
	})
	return out
}

// abortOnOVSDBLoss returns ctx cancelled (cause errOVSDBDown) as soon as the OVSDB
// client loses its connection: ovs-vswitchd stops answering OpenFlow without its
// database, so an ovs-ofctl call in flight would otherwise hold the loop (and the
// readiness report) until the reconcile timeout. What the reconcile applied so far is
// whole (one bundle per bridge, one transaction per OVSDB change); the next one is full.
func (a *Agent) abortOnOVSDBLoss(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if !a.d.OVS.Connected() {
					cancel(errOVSDBDown)
					return
				}
			}
		}
	}()
	return ctx, func() { close(done); cancel(nil) }
}

// build reads the OVS layout and OpenFlow ports and derives the IR and the plan.
func (a *Agent) build(ctx context.Context, snap offload.Snapshot, vteps map[string]netip.Addr) (offload.NodeLayout, *offload.IR, *offload.Plan, error) {
	layout, ofports, err := a.d.OVS.FlowLayout(ctx)
	if err != nil {
		return layout, nil, nil, fmt.Errorf("read OVS layout: %w", err)
	}
	if a.cfg.L3Backend != "" && a.cfg.L3Backend != "auto" {
		layout.L3Backend = a.cfg.L3Backend // the flag wins over the node config's l3_backend
	}
	in := offload.BuildInput{Host: a.cfg.Host, Snapshot: snap, VTEPs: vteps, OFPorts: ofports, LocalVLANs: a.state.LocalVLANs}
	ir, ch, err := a.buildIR(in) // plan.go: from the last IR and what changed since
	if err != nil {
		// a tenant model this node cannot realise: keep what is installed
		return layout, nil, nil, fmt.Errorf("build: %w", err)
	}
	for _, w := range ir.Warnings {
		a.log.Warn("build", zap.String("warning", w))
	}
	plan := a.planNode(ir, ch, layout) // plan.go: incremental after a small change
	return layout, ir, plan, nil
}

// ensureVhostUser creates the vhost-user ports of vhost-user tenant ports bound here
// (the agent plugs these itself, as Neutron's OVS agent does for OVS-DPDK) and removes
// the ones whose tenant port is gone or bound elsewhere. One OVSDB transaction each way.
// Between full reconciles it skips OVS when no vhost-user port was or is wanted.
func (a *Agent) ensureVhostUser(ctx context.Context, st *controlplane.State, full bool) error {
	want := map[string]ovsdpdk.Port{}
	for i := range st.Ports {
		p := &st.Ports[i]
		if p.HostID == a.cfg.Host && p.VNICType == controlplane.VNICVhostUser {
			n := vhostUserName(p.ID)
			want[n] = ovsdpdk.Port{Name: n, Type: ovsdpdk.PortVhostUser, IfaceID: p.ID, MAC: p.MACAddress}
		}
	}
	if !full && len(want) == 0 && a.applied.vhu == 0 {
		return nil
	}
	have, err := a.d.Ports.PortList(ctx)
	if err != nil {
		return fmt.Errorf("list vhost-user ports: %w", err)
	}
	add, del := diffPorts(have, want, func(h ovsdpdk.PortStatus) bool { return h.Type == ovsdpdk.PortVhostUser })
	if len(add) > 0 {
		if err := a.d.Ports.PortAdd(ctx, add...); err != nil {
			return fmt.Errorf("add vhost-user ports: %w", err)
		}
	}
	if len(del) > 0 {
		if err := a.d.Ports.PortDel(ctx, del...); err != nil {
			return fmt.Errorf("remove vhost-user ports: %w", err)
		}
	}
	a.applied.vhu = len(want)
	return nil
}
