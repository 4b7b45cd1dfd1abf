package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/offlane/offlane/agent/metrics"
	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
)

// Config is the agent's configuration.
type Config struct {
	// Host is this node's binding:host_id: ports bind here when theirs equals it.
	Host string
	// Layout is the node's OVS layout (from the node config `offlane node apply` takes);
	// the agent applies it at start and whenever it finds OVS lost it. nil: bridges are
	// managed elsewhere.
	Layout *ovsdpdk.Layout
	// TunnelIP is the VTEP this node publishes (the node config's tunnel local_ip);
	// invalid when the node has no overlay.
	TunnelIP netip.Addr
	// StateDir holds the agent's state file (local VLANs, last revision).
	StateDir string
	// L3Backend is openflow, nftables or auto ("" = auto): see offload's planner.
	L3Backend string
	// Debounce is how long the agent waits, after a change finds it idle, before it
	// reconciles, so that the changes that come together (a port created, then its VM
	// plugged) are taken at once (default 10 ms). Changes that arrive during a reconcile
	// are taken by the next one as soon as it ends.
	Debounce time.Duration
	// Resync is the period of the drift check, which compares the installed flows with
	// the compiled ones beside the reconcile loop and repairs the difference (default
	// 30 s).
	Resync time.Duration
	// Probe is how often the agent checks that OVS still holds its pipeline, to notice
	// a restarted ovs-vswitchd within seconds (default 2 s).
	Probe time.Duration
	// Heartbeat is the agents-registry heartbeat period (default 10 s).
	Heartbeat time.Duration
	// ReconcileTimeout bounds one reconcile (default 2 min): a hung ovs-vswitchd (it
	// stops serving OpenFlow while its database is gone) makes it fail and be reported
	// instead of blocking the agent.
	ReconcileTimeout time.Duration
}

func (c *Config) defaults() {
	if c.Debounce <= 0 {
		c.Debounce = 10 * time.Millisecond
	}
	if c.Resync <= 0 {
		c.Resync = 30 * time.Second
	}
	if c.Probe <= 0 {
		c.Probe = 2 * time.Second
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 10 * time.Second
	}
	if c.ReconcileTimeout <= 0 {
		c.ReconcileTimeout = 2 * time.Minute
	}
}

// Stage realises, before the flows are compiled, what a plan puts outside OVS's flow
// tables: qrouter namespaces for routers planned on nftables, qdhcp namespaces, QoS
// rows. A stage that plugged or unplugged ports into the integration bridge returns
// changed=true: the agent then rebuilds the IR once so the new ports take part in L2.
type Stage interface {
	Name() string
	Realise(ctx context.Context, ir *offload.IR, plan *offload.Plan) (changed bool, err error)
}

// Observer receives the agent's measurements (package agent/metrics implements it).
type Observer interface {
	ObserveReconcile(full bool, d time.Duration, changes int, err error)
	ObserveFlowSync(s metrics.FlowSync)
	AddChanges(kind string, n int)
	SetPlan(plan *offload.Plan)
	// UpdatePlan is SetPlan(cur) after a change that moved the plan entries of ports
	// only, prev being the plan last set.
	UpdatePlan(prev, cur *offload.Plan, ports []string)
	SetNode(node *hwdetect.Node)
	SetWatchLag(revisions int64)
	ObserveError(kind string)
	AddConntrackFlushes(n int)
}

// Result is one successful reconcile, for explain and tests.
type Result struct {
	Revision int64
	Full     bool
	Layout   offload.NodeLayout
	IR       *offload.IR
	Plan     *offload.Plan
	Changes  int // flow mods sent
	Bindings int // port bindings written
}

// Deps are the agent's collaborators.
type Deps struct {
	// State is the desired state and where bindings and heartbeats go. Store is the
	// shorthand for StoreState{Store} (the agent beside the store); give one of them.
	State DesiredState
	Store controlplane.Store
	OVS   *ovsdpdk.Client
	Ports *ovsdpdk.Ports
	Flows *ovsdpdk.Flows
	// OpenFlow is the channel Flows uses; the agent probes the pipeline through it.
	OpenFlow ovsdpdk.OpenFlow
	// Meters and QoS apply the QoS the flows need (OpenFlow meters, OVSDB QoS rows);
	// optional (nil: QoS policies are compiled but not applied).
	Meters *ovsdpdk.Meters
	QoS    *ovsdpdk.QoS
	// ProbeNeighbours sends ARP requests for the routers' external next hops, whose
	// MACs the pipeline learns (ovsdpdk.ProbeNeighbours); optional.
	ProbeNeighbours func(ctx context.Context, probes []offload.NeighbourProbe) error
	// Detect returns the node's capabilities (hwdetect.Detect with the OVS prober).
	Detect func(ctx context.Context) (*hwdetect.Node, error)
	Stages []Stage
	// Direct realises the ports of vnic type direct (SR-IOV VFs: tc rules, representors
	// on OVS, legacy VF settings; agent/sriov.go); nil on a node without SR-IOV PFs.
	Direct *DirectPorts
	// Conntrack flushes the connections a security group change no longer allows
	// (ovsdpdk.Unixctl, the one PMD statistics come from); optional (nil: established
	// connections outlive the rule that allowed them until conntrack expires them).
	Conntrack Conntrack
	// OnReconciled is called after each successful reconcile (e.g. to save the node
	// plan file `offlane explain` reads). Optional.
	OnReconciled func(Result)
	Observer     Observer // optional
	Logger       *zap.Logger
}

// Agent is one node's agent. Run it once.
type Agent struct {
	cfg Config
	d   Deps
	log *zap.Logger

	state  *persisted
	hw     *hwdetect.Node
	layout offload.NodeLayout
	comp   *offload.Compiler
	inc    incremental // plan.go
	pend   pending     // plan.go: what changed since the last build
	ct     conntrackState

	mu       sync.Mutex
	last     Result
	ready    bool
	lastErr  error
	needFull bool
	rev      int64 // revision of the last snapshot reconciled
	vteps    map[string]netip.Addr

	probes     []offload.NeighbourProbe
	portInfos  []metrics.PortInfo
	flowCounts []metrics.FlowCount

	// the desired state, kept current by the store's events (cache.go); only the loop
	// touches it
	cache desired
	// written is the binding last written (or found) per bound port, unbound the ports
	// compiled without flows (no OpenFlow port yet), bindRetry the ports whose last
	// write failed (bindings.go)
	written   map[string]controlplane.PortBinding
	unbound   map[string]bool
	bindRetry map[string]struct{}
	// applied is what the last reconcile left in place, for the incremental one
	// (reconcile.go)
	applied appliedState
	// the periodic drift check of the flows (drift.go)
	drift     *driftCheck
	driftDone chan driftResult
	drifts    DriftStats // under mu

	// what the watch and the OVS handler hand the loop
	wake       chan struct{}
	evMu       sync.Mutex
	evq        []controlplane.Event
	watchEnded bool
	ovsKicked  bool
	ovsIDs     map[string]struct{} // iface-ids whose OVS interface changed
}

// New checks the configuration and returns an agent.
func New(cfg Config, d Deps) (*Agent, error) {
	cfg.defaults()
	if d.State == nil && d.Store != nil {
		d.State = StoreState{Store: d.Store}
	}
	switch {
	case cfg.Host == "":
		return nil, errors.New("agent: host is empty: give --host (the ports' binding:host_id)")
	case cfg.StateDir == "":
		return nil, errors.New("agent: state dir is empty")
	case d.State == nil || d.OVS == nil || d.Ports == nil || d.Flows == nil || d.OpenFlow == nil || d.Detect == nil:
		return nil, errors.New("agent: store, OVS client, ports, flows, OpenFlow channel and detector are all required")
	}
	switch cfg.L3Backend {
	case "", "auto", "openflow", "nftables":
	default:
		return nil, fmt.Errorf("agent: l3 backend %q: want openflow, nftables or auto", cfg.L3Backend)
	}
	if d.Logger == nil {
		d.Logger = zap.NewNop()
	}
	return &Agent{cfg: cfg, d: d, log: d.Logger.Named("agent"), written: map[string]controlplane.PortBinding{},
		ovsIDs: map[string]struct{}{}, driftDone: make(chan driftResult, 1)}, nil
}

// Ready reports whether the agent completed a reconcile and the last one succeeded
// (for /readyz), with the last error otherwise.
func (a *Agent) Ready() (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ready && a.lastErr == nil, a.lastErr
}

// Last returns the last successful reconcile.
func (a *Agent) Last() Result {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// Run starts the agent and blocks until ctx ends: it restores its state, detects the
// node, lays OVS out, registers the node, reconciles fully, then follows the store's
// events and OVS's interface changes: a reconcile starts Debounce after the first change
// that finds the agent idle, and changes that arrive during a reconcile are taken by the
// next one, at once. Every Resync, once the loop has been quiet for a second (at most
// five periods late), the flows are checked for drift beside the loop (drift.go) and
// what lives outside them is swept (sweep.go). Failures of OVS or the store are retried with backoff and reported;
// nothing is half applied (each flow change is one bundle per bridge; each OVSDB change
// one transaction).
func (a *Agent) Run(ctx context.Context) error {
	var err error
	statePath := filepath.Join(a.cfg.StateDir, StateFileName)
	if a.state, err = loadPersisted(statePath, a.cfg.Host); err != nil {
		return err
	}
	if a.hw, err = a.d.Detect(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: not a failure
		}
		return fmt.Errorf("agent: detect: %w", err)
	}
	if o := a.d.Observer; o != nil {
		o.SetNode(a.hw)
	}
	a.log.Info("starting", zap.String("host", a.cfg.Host), zap.Int64("resume_revision", a.state.Revision),
		zap.Int("networks", len(a.state.LocalVLANs)))

	// OVS-side changes (a VM plugged, a vhost-user client connected, link state) are
	// events too: they change bindings and statuses. Registered before the first
	// reconcile so that none is missed.
	a.wake = make(chan struct{}, 1)
	a.d.OVS.OnInterfacesChanged(func(ids []string) {
		a.evMu.Lock()
		a.ovsKicked = true
		for _, id := range ids {
			a.ovsIDs[id] = struct{}{}
		}
		a.evMu.Unlock()
		signal(a.wake)
	})

	// The first full reconcile, retried until it succeeds (OVS or the store may still
	// be starting).
	if err := a.retry(ctx, "initial reconcile", func() error { return a.reconcile(ctx, true) }); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before the first reconcile succeeded: not a failure
		}
		return err
	}
	a.heartbeat(ctx)

	hb := time.NewTicker(a.cfg.Heartbeat)
	defer hb.Stop()
	resync := time.NewTicker(a.cfg.Resync)
	defer resync.Stop()
	probe := time.NewTicker(a.cfg.Probe)
	defer probe.Stop()
	stop := a.watch(ctx)
	defer func() { stop() }()
	watching := true
	var soon <-chan time.Time // the next reconcile
	// the periodic drift check and sweep wait for a quiet loop (drift.go, sweep.go): the
	// check's dump of every flow costs memory and CPU a burst of changes needs more,
	// and its repair would leave out the flows the burst touched anyway
	quiet := min(time.Second, a.cfg.Resync/2)
	var sweepC <-chan time.Time
	var sweepDue, lastChange time.Time
	reconcileNow := func(full bool) {
		soon = nil
		a.drain()
		a.tryReconcile(ctx, full)
		if !watching && !a.needFull {
			// the watch broke and the reload that follows it succeeded: follow the
			// store again from the revision just loaded
			stop = a.watch(ctx)
			watching = true
		}
		if a.drain() {
			soon = time.After(0) // what came during the reconcile, at once
		}
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.wake:
			dirty := a.drain()
			if a.takeWatchEnded() {
				// The watch ended (store restarted, history compacted): reload in full,
				// which is correct whatever was missed, then watch again.
				stop()
				watching, a.needFull, dirty = false, true, true
			}
			if dirty {
				lastChange = time.Now()
				if soon == nil {
					soon = time.After(a.cfg.Debounce)
				}
			}
		case <-soon:
			reconcileNow(a.needFull)
		case <-resync.C:
			if a.needFull {
				reconcileNow(true) // the last reconcile failed: try again in full
				continue
			}
			if sweepDue.IsZero() {
				sweepDue = time.Now()
			}
			sweepC = time.After(quiet)
		case <-sweepC:
			// housekeeping yields to changes: it runs once the loop has been quiet
			// for a while, or when it is five periods overdue
			sweepC = nil
			if wait := quiet - time.Since(lastChange); wait > 0 && time.Since(sweepDue) < 5*a.cfg.Resync {
				sweepC = time.After(wait)
				continue
			}
			sweepDue = time.Time{}
			a.startDrift(ctx) // drift.go: beside the loop
			if a.sweep(ctx) && soon == nil {
				soon = time.After(0) // a stage plugged ports: reconcile them
			}
		case res := <-a.driftDone:
			a.finishDrift(ctx, res)
		case <-probe.C:
			if a.pipelineLost(ctx) {
				a.log.Warn("the pipeline is gone from OVS (ovs-vswitchd restarted or flows flushed): reprogramming")
				reconcileNow(true)
			}
		case <-hb.C:
			a.heartbeat(ctx)
		}
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default: // one is pending already
	}
}

// watch follows the store from the last reconciled revision, queueing its events for
// the loop (drain) and waking it; when the watch ends for good (compaction), the loop
// is told (takeWatchEnded). A broken stream is resumed from the revision of the last
// event received (its transaction's events again, then what follows).
func (a *Agent) watch(ctx context.Context) func() {
	wctx, cancel := context.WithCancel(ctx)
	a.mu.Lock()
	from := a.rev
	a.mu.Unlock()
	go func() {
		ended := func() {
			if wctx.Err() != nil {
				return // stopped by the loop
			}
			a.evMu.Lock()
			a.watchEnded = true
			a.evMu.Unlock()
			signal(a.wake)
		}
		backoff := 100 * time.Millisecond
		for wctx.Err() == nil {
			events, werr, err := a.d.State.Watch(wctx, from)
			if err != nil {
				a.log.Warn("watch failed, retrying", zap.Int64("from", from), zap.Error(err))
				if errors.Is(err, controlplane.ErrCompacted) {
					ended()
					return
				}
				if !sleep(wctx, backoff) {
					return
				}
				backoff = min(backoff*2, 5*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
			for ev := range events {
				// resume from before this event's revision: the events of one
				// transaction share it, and a stream broken among them must not skip
				// the rest (the ones taken again are applied again, harmlessly, in order)
				from = max(from, ev.Revision-1)
				a.evMu.Lock()
				a.evq = append(a.evq, ev)
				a.evMu.Unlock()
				signal(a.wake)
				if o := a.d.Observer; o != nil {
					if head, err := a.d.State.Revision(wctx); err == nil {
						o.SetWatchLag(head - ev.Revision)
					}
				}
			}
			if err := werr(); err != nil && wctx.Err() == nil {
				a.log.Warn("watch ended", zap.Error(err))
				if errors.Is(err, controlplane.ErrCompacted) {
					ended()
					return
				}
			}
		}
	}()
	return cancel
}

func (a *Agent) takeWatchEnded() bool {
	a.evMu.Lock()
	defer a.evMu.Unlock()
	e := a.watchEnded
	a.watchEnded = false
	return e
}

// drain applies the queued store events to the cached desired state and reports whether
// any of them (or an OVS interface change) calls for a reconcile. A decode failure makes
// the next reconcile reload in full.
func (a *Agent) drain() bool {
	a.evMu.Lock()
	evs := a.evq
	a.evq = nil
	dirty := a.ovsKicked
	a.ovsKicked = false
	a.evMu.Unlock()
	if a.cache.st == nil {
		return dirty || len(evs) > 0 // no cache yet: the next reconcile loads in full
	}
	for _, ev := range evs {
		prev, err := a.cache.apply(ev)
		if err != nil {
			a.log.Warn("store event; reloading the state in full", zap.Error(err))
			a.needFull, dirty = true, true
			continue
		}
		if a.relevant(ev, prev) {
			dirty = true
			a.pend.note(ev, prev) // plan.go: for the next build
			if ev.Kind == controlplane.KindPort {
				a.cache.touch(ev.ID)
			}
		}
	}
	return dirty
}

// relevant drops the events the agent causes or that cannot change this node: its own
// heartbeats, other agents' heartbeats that keep their tunnel IP, and its own binding
// writes coming back (a port whose update changed only what the agent last wrote).
func (a *Agent) relevant(ev controlplane.Event, prev *controlplane.Port) bool {
	switch ev.Kind {
	case controlplane.KindAgent:
		if ev.Type == controlplane.EventDeleted {
			return true
		}
		var ag controlplane.Agent
		if err := json.Unmarshal(ev.Value, &ag); err != nil {
			return true
		}
		if ag.Host == a.cfg.Host {
			return false
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.vteps[ag.Host] != tunnelIP(ag)
	case controlplane.KindPort:
		if ev.Type != controlplane.EventUpdated {
			return true
		}
		cur := a.cache.port(ev.ID)
		w, ok := a.written[ev.ID]
		return !ok || !onlyBinding(prev, cur) || !controlplane.BindingHolds(cur, w)
	case controlplane.KindSecGroupRule:
		return false // its group's event comes with it
	}
	return true
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// retry runs fn until it succeeds or ctx ends, backing off from 200 ms to 10 s and
// logging each failure.
func (a *Agent) retry(ctx context.Context, what string, fn func() error) error {
	backoff := 200 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrRefused) {
			return fmt.Errorf("agent: %s: %w", what, err) // credentials do not heal
		}
		a.log.Warn(what+" failed, retrying", zap.Duration("in", backoff), zap.Error(err))
		if !sleep(ctx, backoff) {
			return fmt.Errorf("agent: %s: %w", what, err)
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func (a *Agent) tryReconcile(ctx context.Context, full bool) {
	if err := a.reconcile(ctx, full || a.needFull); err != nil {
		a.log.Warn("reconcile failed; the next one retries it in full", zap.Bool("full", full), zap.Error(err))
	}
}

// pipelineLost reports whether the integration bridge lacks the fixed pipeline's flows
// (a dump filtered by their cookie: cheap at any scale).
func (a *Agent) pipelineLost(ctx context.Context) bool {
	if a.layout.IntegrationBridge == "" {
		return false
	}
	if !a.d.OVS.Connected() {
		// OVSDB is gone, and ovs-vswitchd stops answering OpenFlow without it: report it
		// now (the reconcile fails fast) rather than after an OpenFlow dump times out
		return true
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	fl, err := a.d.OpenFlow.DumpFlows(pctx, a.layout.IntegrationBridge, offload.CookieFor(offload.KindNode, offload.PipelineOriginID), ^uint64(0), false)
	if err != nil {
		// vswitchd down or the bridge gone: a full reconcile re-lays the node out (and
		// fails, to be retried, while OVS is down)
		return ctx.Err() == nil
	}
	return len(fl) == 0
}

// heartbeat publishes this node in the agents registry with its tunnel endpoint.
func (a *Agent) heartbeat(ctx context.Context) {
	conf := map[string]any{"datapath_type": a.layout.Datapath, "integration_bridge": a.layout.IntegrationBridge}
	if a.cfg.TunnelIP.IsValid() {
		conf["tunneling_ip"] = a.cfg.TunnelIP.String()
		conf["tunnel_types"] = a.layout.TunnelTypes
	}
	if len(a.layout.PhysnetBridges) > 0 {
		conf["bridge_mappings"] = a.layout.PhysnetBridges
	}
	ag := controlplane.Agent{AgentType: controlplane.AgentTypeOVS, Binary: "offlane-agent", Host: a.cfg.Host,
		Topic: "N/A", Configurations: conf}
	if err := a.d.State.Heartbeat(ctx, ag); err != nil {
		a.log.Warn("heartbeat failed", zap.Error(err))
	}
}

// vtepsOf maps each other host to its published tunnel IP.
func vtepsOf(agents []controlplane.Agent, self string) map[string]netip.Addr {
	out := map[string]netip.Addr{}
	for _, ag := range agents {
		if ag.Host == self {
			continue
		}
		if ip := tunnelIP(ag); ip.IsValid() {
			out[ag.Host] = ip
		}
	}
	return out
}

func tunnelIP(ag controlplane.Agent) netip.Addr {
	s, _ := ag.Configurations["tunneling_ip"].(string)
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return ip
}

// bridgesOf lists a layout's bridges, the ones a full sync covers.
func bridgesOf(l offload.NodeLayout) []string {
	out := []string{l.IntegrationBridge}
	if l.TunnelBridge != "" {
		out = append(out, l.TunnelBridge)
	}
	phys := make([]string, 0, len(l.PhysnetBridges))
	for _, b := range l.PhysnetBridges {
		phys = append(phys, b)
	}
	sort.Strings(phys)
	out = append(out, phys...)
	if l.ExternalBridge != "" {
		out = append(out, l.ExternalBridge)
	}
	return out
}

func sameLayout(a, b offload.NodeLayout) bool { return reflect.DeepEqual(a, b) }
