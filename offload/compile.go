package offload

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strings"
)

// Compiler turns an IR and a Plan into the OpenFlow flows of one node, incrementally:
// each object (node pipeline, network, local port, remote port, security group, address
// set member) compiles to its own unit of flows, and Update recompiles only the units
// whose inputs changed, then merges the units' flows (flows with the same key from
// several units: conjunction actions are united, identical ones deduplicated). The
// result of any sequence of Updates equals one Update from scratch (property-tested).
//
// A Compiler is not safe for concurrent use.
type Compiler struct {
	layout NodeLayout
	chunk  int

	ir         *IR
	plan       *Plan
	portIdx    map[string]portIndex // compiled local ports: mode, place in the indexes below
	netAll     map[string]set       // network → local ports
	netPorts   map[string]set       // network → compiled local ports
	netRemotes map[string]set       // network → remote ports
	sgPorts    map[string]set       // security group → compiled ports it filters
	groupMems  map[string]set       // remote group → members
	sgKeys     map[string][]conjKey // security group in use → its conjunctions
	groupKeys  map[string][]conjKey // remote group → conjunctions naming it
	conjIDs    map[conjKey]uint32
	qos        *qosState // units_qos.go
	l3         *l3State  // units_l3.go

	units    map[unitKey]unitState
	flows    flowTable // flowtable.go
	bridges  []string  // cflow.bridge → name
	shared   map[string]*sharedActions
	hashMask uint64 // flowTable.mask
	origins  map[uint64]originRef
	clashes  map[uint64][]Origin // further origins of a cookie (hash collisions)
	started  bool

	// During an Update: what to compare (changes.go); scoped false compares everything.
	ch     *Changes
	scoped bool
}

type set = map[string]struct{}

func setAdd(m map[string]set, k, v string) {
	s := m[k]
	if s == nil {
		s = set{}
		m[k] = s
	}
	s[v] = struct{}{}
}

func setDel(m map[string]set, k, v string) {
	if s := m[k]; s != nil {
		delete(s, v)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}

// portMode is how a local port is compiled.
type portMode struct {
	compiled bool // L2 by OpenFlow, ofport known, segment present
	filtered bool // port security by OpenFlow
	sg       bool // security groups by OpenFlow
	qos      bool // egress QoS (meter, DSCP) in TableQoS
}

type portIndex struct {
	net  string
	sgs  []string
	mode portMode
}

// conjKey names one conjunctive match: a security group's rules of one direction
// with one remote group ("" for the rules with a CIDR or no remote).
type conjKey struct{ sg, dir, group string }

type unitKey struct {
	kind Kind
	id   string
}

type unitState struct {
	flows   []cflow
	origins []Origin // nil: the unit's own object only (unitKey.origin)
}

func (u unitKey) origin() Origin { return Origin{Kind: u.kind, ID: u.id} }

type originRef struct {
	o Origin
	n int // units naming it
}

// CompilerOption tunes a Compiler.
type CompilerOption func(*Compiler)

// WithFloodChunk sets how many ports one flood flow lists before continuing in the
// next chunk (default 128); tests use small values to exercise chunking.
func WithFloodChunk(n int) CompilerOption {
	return func(c *Compiler) {
		if n > 0 {
			c.chunk = n
		}
	}
}

// NewCompiler checks the layout and returns an empty compiler for it. Every patch,
// tunnel and uplink port the layout implies must have an OpenFlow port number.
func NewCompiler(layout NodeLayout, opts ...CompilerOption) (*Compiler, error) {
	if err := layout.validate(); err != nil {
		return nil, err
	}
	c := &Compiler{layout: layout, chunk: floodChunk, hashMask: ^uint64(0)}
	for _, o := range opts {
		o(c)
	}
	c.reset()
	return c, nil
}

func (c *Compiler) reset() {
	c.ir = &IR{}
	c.plan = &Plan{}
	c.portIdx = map[string]portIndex{}
	c.netAll, c.netPorts, c.netRemotes = map[string]set{}, map[string]set{}, map[string]set{}
	c.sgPorts, c.groupMems = map[string]set{}, map[string]set{}
	c.sgKeys, c.groupKeys = map[string][]conjKey{}, map[string][]conjKey{}
	c.conjIDs = map[conjKey]uint32{}
	c.qos = newQoSState()
	c.l3 = newL3State()
	c.units = map[unitKey]unitState{}
	c.flows = newFlowTable(0, c.hashMask)
	c.shared = map[string]*sharedActions{}
	c.origins = map[uint64]originRef{}
	c.clashes = map[uint64][]Origin{}
	c.started = false
}

func (l NodeLayout) validate() error {
	var errs []error
	need := func(name, bridge string) {
		if l.OFPorts[name] <= 0 {
			errs = append(errs, fmt.Errorf("node layout: no ofport for %s on %s: run `offlane node apply` and read the ports back from OVSDB", name, bridge))
		}
	}
	if l.IntegrationBridge == "" {
		errs = append(errs, errors.New("node layout: integration_bridge is empty"))
	}
	if l.Datapath != "netdev" && l.Datapath != "system" {
		errs = append(errs, fmt.Errorf("node layout: datapath %q: want netdev or system", l.Datapath))
	}
	if l.TunnelBridge != "" {
		need(PatchTun, l.IntegrationBridge)
		need(PatchInt, l.TunnelBridge)
		for _, t := range l.TunnelTypes {
			if !IsTunnel(t) {
				errs = append(errs, fmt.Errorf("node layout: tunnel type %q: want vxlan, geneve or gre", t))
				continue
			}
			need(TunnelPort(t), l.TunnelBridge)
		}
		if !l.TunnelLocalIP.IsValid() {
			errs = append(errs, errors.New("node layout: tunnel bridge without tunnel_local_ip"))
		}
	}
	for _, pn := range sortedKeys(l.PhysnetBridges) {
		br := l.PhysnetBridges[pn]
		need(IntPatch(br), l.IntegrationBridge)
		need(PhyPatch(br), br)
		if up := l.PhysnetUplinks[pn]; up != "" {
			need(up, br)
		}
	}
	return errors.Join(errs...)
}

// Result is a full compile: the flows sorted by bridge, table, priority (highest
// first) and match, the origin of every cookie, the ports waiting for an ofport, and
// the conflicts found.
type Result struct {
	Flows     []Flow            `json:"flows"`
	Origins   map[uint64]Origin `json:"-"`
	Unbound   []string          `json:"unbound"`
	Conflicts []Conflict        `json:"conflicts"`
}

// Compile is a one-shot full compile.
func Compile(layout NodeLayout, ir *IR, plan *Plan, opts ...CompilerOption) (*Result, error) {
	c, err := NewCompiler(layout, opts...)
	if err != nil {
		return nil, err
	}
	if _, err := c.Update(ir, plan); err != nil {
		return nil, err
	}
	return &Result{Flows: c.Flows(), Origins: c.Origins(), Unbound: c.Unbound(), Conflicts: c.Conflicts()}, nil
}

// Update brings the compiled flows to (ir, plan) and returns what changed; the first
// Update compiles everything (Delta.Add holds every flow). ir and plan are kept (not
// copied) until the next Update: don't change them in place (IR.Clone, Plan.With).
// On error nothing changes.
func (c *Compiler) Update(ir *IR, plan *Plan) (*Delta, error) {
	return c.UpdateChanges(ir, plan, nil)
}

// UpdateChanges is Update for a caller that knows what changed since the last Update
// (changes.go): only the objects and plan entries ch names are compared, so a small
// change on a large node costs what it touches. ch nil compares everything, as Update.
// The first Update of a Compiler always compiles everything.
func (c *Compiler) UpdateChanges(ir *IR, plan *Plan, ch *Changes) (*Delta, error) {
	if ir == nil {
		return nil, errors.New("compile: nil IR")
	}
	if plan == nil {
		plan = &Plan{}
	}
	if plan != c.plan {
		if err := checkPlanOrder(plan); err != nil {
			return nil, err
		}
	}
	d := newDirty()
	if !c.started {
		ch = nil // everything is new
		d.unit(unitKey{KindNode, nodeOriginID})
		c.started = true
		// about 18 flows per local port, 2 per address-set member: size the maps once
		c.flows = newFlowTable(18*len(ir.Ports)+2*len(ir.Members)+64, c.hashMask)
		c.units = make(map[unitKey]unitState, len(ir.Ports)+len(ir.RemotePorts)+len(ir.Members)+len(ir.Segments)+len(ir.SecurityGroups)+1)
	}
	old, oldPlan := c.ir, c.plan
	c.ir, c.plan = ir, plan
	scoped := ch != nil
	if !scoped {
		ch = &Changes{}
	}
	c.ch, c.scoped = ch, scoped
	defer func() { c.ch, c.scoped = nil, false }()

	modeCheck := set{}
	diffIn(scoped, ch.Segments, old.Segments, ir.Segments, (*Segment).equal, func(id string, o, n *Segment) {
		d.unit(unitKey{KindNetwork, id})
		for pid := range c.netAll[id] {
			modeCheck[pid] = struct{}{}
			d.unit(unitKey{KindPort, pid})
		}
		for rid := range c.netRemotes[id] {
			d.unit(unitKey{KindRemotePort, rid})
		}
	})
	diffIn(scoped, ch.Ports, old.Ports, ir.Ports, (*Port).equal, func(id string, o, n *Port) {
		modeCheck[id] = struct{}{}
		d.unit(unitKey{KindPort, id})
		if o != nil {
			setDel(c.netAll, o.NetworkID, id)
		}
		if n != nil {
			setAdd(c.netAll, n.NetworkID, id)
		}
	})
	if plan != oldPlan {
		if scoped {
			planPortsIn(ch.PlanPorts, oldPlan, plan, func(id string) { modeCheck[id] = struct{}{} })
		} else {
			planChanges(oldPlan, plan, func(id string) { modeCheck[id] = struct{}{} })
		}
	}
	c.qosUpdate(old, modeCheck, d) // units_qos.go
	sgUse := set{}
	for id := range modeCheck {
		c.reindexPort(id, d, sgUse)
	}
	diffIn(scoped, ch.RemotePorts, old.RemotePorts, ir.RemotePorts, (*RemotePort).equal, func(id string, o, n *RemotePort) {
		d.unit(unitKey{KindRemotePort, id})
		if o != nil {
			setDel(c.netRemotes, o.NetworkID, id)
			d.unit(unitKey{KindNetwork, o.NetworkID})
		}
		if n != nil {
			setAdd(c.netRemotes, n.NetworkID, id)
			d.unit(unitKey{KindNetwork, n.NetworkID})
		}
	})
	diffIn(scoped, ch.SecurityGroups, old.SecurityGroups, ir.SecurityGroups, (*SecurityGroup).equal, func(id string, o, n *SecurityGroup) {
		sgUse[id] = struct{}{}
		d.unit(unitKey{KindSecurityGroup, id})
	})
	diffIn(scoped, ch.Members, old.Members, ir.Members, (*Member).equal, func(id string, o, n *Member) {
		d.unit(unitKey{KindAddress, id})
		if o != nil {
			for _, g := range o.Groups {
				setDel(c.groupMems, g, id)
			}
		}
		if n != nil {
			for _, g := range n.Groups {
				setAdd(c.groupMems, g, id)
			}
		}
	})

	c.l3Update(old, oldPlan, d) // units_l3.go

	// Conjunctions of the groups whose rules or use changed.
	keysChanged := false
	for sg := range sgUse {
		var nk []conjKey
		if g := ir.SecurityGroups[sg]; g != nil && len(c.sgPorts[sg]) > 0 {
			nk = groupConjKeys(g)
		}
		ok := c.sgKeys[sg]
		if slices.Equal(ok, nk) {
			continue
		}
		keysChanged = true
		d.unit(unitKey{KindSecurityGroup, sg})
		for pid := range c.sgPorts[sg] {
			d.unit(unitKey{KindPort, pid})
		}
		for _, k := range ok {
			if k.group != "" {
				c.groupKeys[k.group] = slices.DeleteFunc(c.groupKeys[k.group], func(x conjKey) bool { return x == k })
				if len(c.groupKeys[k.group]) == 0 {
					delete(c.groupKeys, k.group)
				}
				for m := range c.groupMems[k.group] {
					d.unit(unitKey{KindAddress, m})
				}
			}
		}
		for _, k := range nk {
			if k.group != "" {
				c.groupKeys[k.group] = append(c.groupKeys[k.group], k)
				slices.SortFunc(c.groupKeys[k.group], compareConjKey)
				for m := range c.groupMems[k.group] {
					d.unit(unitKey{KindAddress, m})
				}
			}
		}
		if nk == nil {
			delete(c.sgKeys, sg)
		} else {
			c.sgKeys[sg] = nk
		}
	}
	if keysChanged {
		ids := allocateConjIDs(c.sgKeys)
		for k, id := range c.conjIDs {
			if nid, ok := ids[k]; ok && nid != id {
				// A hash collision moved a surviving conjunction's ID: rare; recompile all.
				return c.rebuild(ir, plan), nil
			}
		}
		c.conjIDs = ids
	}
	return c.apply(d), nil
}

// reindexPort re-evaluates a local port's mode and its place in the indexes.
func (c *Compiler) reindexPort(id string, d *dirty, sgUse set) {
	prev := c.portIdx[id]
	if prev.mode.compiled {
		setDel(c.netPorts, prev.net, id)
		d.unit(unitKey{KindNetwork, prev.net})
	}
	for _, sg := range prev.sgs {
		setDel(c.sgPorts, sg, id)
		sgUse[sg] = struct{}{}
	}
	p := c.ir.Ports[id]
	m := c.mode(p)
	if m != prev.mode {
		d.unit(unitKey{KindPort, id})
	}
	if !m.compiled {
		delete(c.portIdx, id)
		return
	}
	idx := portIndex{net: p.NetworkID, mode: m}
	setAdd(c.netPorts, p.NetworkID, id)
	d.unit(unitKey{KindNetwork, p.NetworkID})
	if m.sg {
		idx.sgs = p.SecurityGroups
		for _, sg := range p.SecurityGroups {
			setAdd(c.sgPorts, sg, id)
			sgUse[sg] = struct{}{}
		}
	}
	c.portIdx[id] = idx
}

func (c *Compiler) mode(p *Port) portMode {
	if p == nil || p.OFPort <= 0 || c.ir.Segments[p.NetworkID] == nil {
		return portMode{}
	}
	pp := c.plan.Port(p.ID)
	if pp == nil || pp.Backend(FeatureL2) != BackendOpenFlow {
		return portMode{}
	}
	m := portMode{compiled: true, filtered: pp.Backend(FeaturePortSecurity) == BackendOpenFlow}
	m.sg = m.filtered && pp.Backend(FeatureSecurityGroups) == BackendOpenFlow
	m.qos = c.qosEgress(p)
	return m
}

// groupConjKeys are the conjunctions of a group's rules, sorted.
func groupConjKeys(g *SecurityGroup) []conjKey {
	var out []conjKey
	for _, r := range g.Rules {
		out = append(out, conjKey{sg: g.ID, dir: r.Direction, group: r.RemoteGroupID})
	}
	slices.SortFunc(out, compareConjKey)
	return slices.Compact(out)
}

func compareConjKey(a, b conjKey) int {
	if c := strings.Compare(a.sg, b.sg); c != 0 {
		return c
	}
	if c := strings.Compare(a.dir, b.dir); c != 0 {
		return c
	}
	return strings.Compare(a.group, b.group)
}

// allocateConjIDs gives each conjunction a 32-bit ID: a hash of its key, probing
// upwards on collision in key order, so IDs depend only on the set of keys.
func allocateConjIDs(sgKeys map[string][]conjKey) map[conjKey]uint32 {
	var keys []conjKey
	for _, ks := range sgKeys {
		keys = append(keys, ks...)
	}
	slices.SortFunc(keys, compareConjKey)
	out := make(map[conjKey]uint32, len(keys))
	used := make(map[uint32]bool, len(keys))
	for _, k := range keys {
		h := fnv.New32a()
		_, _ = h.Write([]byte(k.sg + "\x00" + k.dir + "\x00" + k.group))
		id := h.Sum32()
		for id == 0 || used[id] {
			id++
		}
		used[id] = true
		out[k] = id
	}
	return out
}

// dirty is the set of units to recompile.
type dirty struct{ units map[unitKey]struct{} }

func newDirty() *dirty { return &dirty{units: map[unitKey]struct{}{}} }

func (d *dirty) unit(u unitKey) { d.units[u] = struct{}{} }

// diffMaps calls fn for every key whose value was added, removed or changed.
func diffMaps[V comparable](old, cur map[string]V, equal func(V, V) bool, fn func(id string, o, n V)) {
	var zero V
	added := false
	for id, n := range cur {
		o, ok := old[id]
		if !ok {
			added = true
			fn(id, zero, n)
		} else if o != n && !equal(o, n) {
			fn(id, o, n)
		}
	}
	if !added && len(old) == len(cur) {
		return // every old key is still there
	}
	for id, o := range old {
		if _, ok := cur[id]; !ok {
			fn(id, o, zero)
		}
	}
}

func checkPlanOrder(p *Plan) error {
	for i := 1; i < len(p.Ports); i++ {
		if p.Ports[i-1].PortID >= p.Ports[i].PortID {
			return fmt.Errorf("compile: plan ports not sorted by port_id at %q: build plans with PlanNode / Plan.With", p.Ports[i].PortID)
		}
	}
	return nil
}

// planChanges calls fn for each port whose plan differs between a and b (both sorted).
func planChanges(a, b *Plan, fn func(id string)) {
	i, j := 0, 0
	for i < len(a.Ports) || j < len(b.Ports) {
		switch {
		case j >= len(b.Ports) || i < len(a.Ports) && a.Ports[i].PortID < b.Ports[j].PortID:
			fn(a.Ports[i].PortID)
			i++
		case i >= len(a.Ports) || b.Ports[j].PortID < a.Ports[i].PortID:
			fn(b.Ports[j].PortID)
			j++
		default:
			if !slices.Equal(a.Ports[i].Decisions, b.Ports[j].Decisions) || a.Ports[i].NetworkID != b.Ports[j].NetworkID {
				fn(a.Ports[i].PortID)
			}
			i++
			j++
		}
	}
}

// apply recompiles the dirty units and merges their flows, returning the delta.
func (c *Compiler) apply(d *dirty) *Delta {
	t := &c.flows
	// was holds each key the apply touches with its flow before (nil: none). When the
	// table starts empty every flow is new: no need to remember anything.
	fresh := t.len() == 0
	var was map[flowKey]*cflow
	if !fresh {
		was = make(map[flowKey]*cflow, 16*len(d.units))
	}
	for u := range d.units {
		var em *emitter
		switch u.kind {
		case KindNode:
			em = c.nodeFlows()
		case KindNetwork:
			em = c.segmentFlows(u.id)
		case KindPort:
			em = c.portFlows(u.id)
		case KindRemotePort:
			em = c.remoteFlows(u.id)
		case KindSecurityGroup:
			em = c.sgFlows(u.id)
		case KindAddress:
			em = c.memberFlows(u.id)
		case KindQoS:
			em = c.qosFlows(u.id)
		case KindRouter, KindFloatingIP, kindL3Neigh, kindL3Net, kindL3Pipeline:
			em = c.l3Flows(u) // units_l3.go
		}
		if old, ok := c.units[u]; ok {
			for i := range old.flows {
				f := &old.flows[i]
				k := f.key()
				cur, h := t.lookup(k)
				if _, ok := was[k]; !ok && !fresh {
					was[k] = cur
				}
				t.unclaim(k, h, cur, f)
				if f.shared {
					c.unshare(f.actions)
				}
			}
			if old.origins == nil {
				c.originDel(u.origin())
			}
			for _, o := range old.origins {
				c.originDel(o)
			}
			delete(c.units, u)
		}
		if em == nil || len(em.flows) == 0 {
			continue
		}
		st := unitState{flows: c.unitFlows(em), origins: em.origins}
		for _, o := range st.origins {
			c.originAdd(o)
		}
		if len(st.origins) == 1 && st.origins[0] == u.origin() {
			st.origins = nil
		} else if st.origins == nil {
			st.origins = []Origin{} // none: not the unit's own
		}
		c.units[u] = st
		for i := range st.flows {
			f := &st.flows[i]
			k := f.key()
			cur, h := t.lookup(k)
			if !fresh {
				if _, ok := was[k]; !ok {
					was[k] = cur
				}
			}
			t.claim(k, h, cur, f)
		}
	}
	delta := &Delta{}
	if fresh {
		for k := range t.multi {
			t.settle(k)
		}
		delta.Add = make([]Flow, 0, t.len())
		for f := range t.all {
			delta.Add = append(delta.Add, c.flow(f))
		}
		return delta
	}
	for k, w := range was {
		now := t.get(k)
		if now != nil && now.multi {
			now = t.settle(k)
		}
		switch {
		case w == nil && now != nil:
			delta.Add = append(delta.Add, c.flow(now))
		case w != nil && now == nil:
			delta.Delete = append(delta.Delete, c.flow(w))
		case w != nil && now != nil && (w.cookie != now.cookie || w.actions != now.actions):
			delta.Modify = append(delta.Modify, c.flow(now))
		}
	}
	return delta
}

// rebuild recompiles everything from scratch and returns the delta from the previous
// flows.
func (c *Compiler) rebuild(ir *IR, plan *Plan) *Delta {
	prev := c.flows
	c.reset()
	_, _ = c.Update(ir, plan) // cannot fail: ir and plan were checked
	delta := &Delta{}
	for f := range c.flows.all {
		k := f.key()
		if p := prev.get(k); p == nil {
			delta.Add = append(delta.Add, c.flow(f))
		} else {
			if p.cookie != f.cookie || p.actions != f.actions {
				delta.Modify = append(delta.Modify, c.flow(f))
			}
			prev.del(k)
		}
	}
	for f := range prev.all {
		delta.Delete = append(delta.Delete, c.flow(f))
	}
	sortFlows(delta.Add)
	sortFlows(delta.Modify)
	sortFlows(delta.Delete)
	return delta
}

// merge combines the flows several units produced with one key: conjunction clauses
// are united (OVS wants one flow per match and priority), identical flows deduplicated.
// Anything else is a conflict (e.g. two ports with one MAC on one network): the flow
// with the lowest cookie wins, deterministically. The result is a new cflow marked
// multi.
func merge(fs []*cflow) (*cflow, bool) {
	best := fs[0]
	allConj, same := true, true
	for _, f := range fs {
		if f.cookie < best.cookie || f.cookie == best.cookie && f.actions < best.actions {
			best = f
		}
		if !strings.HasPrefix(f.actions, "conjunction(") {
			allConj = false
		}
		if f.actions != fs[0].actions {
			same = false
		}
	}
	m := *best
	m.multi, m.shared = true, false
	if same {
		return &m, false
	}
	if !allConj {
		return &m, true
	}
	var acts []string
	for _, f := range fs {
		acts = append(acts, splitConj(f.actions)...)
	}
	m.actions = joinActions(sortConj(acts)...)
	return &m, false
}

// splitConj splits "conjunction(1,1/2),conjunction(7,1/3)" into its actions.
func splitConj(s string) []string {
	var out []string
	for s != "" {
		i := strings.Index(s, ")")
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i+1])
		s = strings.TrimPrefix(s[i+1:], ",")
	}
	return out
}

func (c *Compiler) originAdd(o Origin) {
	ck := CookieFor(o.Kind, o.ID)
	r, ok := c.origins[ck]
	if !ok {
		c.origins[ck] = originRef{o: o, n: 1}
		return
	}
	if r.o != o && !slices.Contains(c.clashes[ck], o) {
		c.clashes[ck] = append(c.clashes[ck], o)
	}
	r.n++
	c.origins[ck] = r
}

func (c *Compiler) originDel(o Origin) {
	ck := CookieFor(o.Kind, o.ID)
	r, ok := c.origins[ck]
	if !ok {
		return
	}
	if r.n--; r.n <= 0 {
		delete(c.origins, ck)
		delete(c.clashes, ck)
		return
	}
	c.origins[ck] = r
}

// Flows returns every flow, sorted by bridge, table, priority (highest first), match.
func (c *Compiler) Flows() []Flow {
	out := make([]Flow, 0, c.flows.len())
	for f := range c.flows.all {
		out = append(out, c.flow(f))
	}
	sortFlows(out)
	return out
}

// Len is the number of flows.
func (c *Compiler) Len() int { return c.flows.len() }

// SortFlows sorts flows by bridge, table, priority (highest first) and match, the
// order of Compiler.Flows and of `ovs-ofctl dump-flows` per table.
func SortFlows(fs []Flow) { slices.SortFunc(fs, compareFlows) }

func sortFlows(fs []Flow) { SortFlows(fs) }

// compareFlows orders by bridge, table, priority (highest first), match.
func compareFlows(a, b Flow) int {
	if c := strings.Compare(a.Bridge, b.Bridge); c != 0 {
		return c
	}
	if a.Table != b.Table {
		return int(a.Table) - int(b.Table)
	}
	if a.Priority != b.Priority {
		return int(b.Priority) - int(a.Priority)
	}
	return strings.Compare(a.Match, b.Match)
}

// Origin returns the object a cookie stands for.
func (c *Compiler) Origin(cookie uint64) (Origin, bool) {
	r, ok := c.origins[cookie]
	return r.o, ok
}

// Origins returns the cookie → origin table of the current flows (for explain).
func (c *Compiler) Origins() map[uint64]Origin {
	out := make(map[uint64]Origin, len(c.origins))
	for k, r := range c.origins {
		out[k] = r.o
	}
	return out
}

// Unbound lists the local ports planned for OpenFlow that have no ofport yet (sorted):
// they get flows once the applier reports their ofport.
func (c *Compiler) Unbound() []string {
	var out []string
	for id, p := range c.ir.Ports {
		if p.OFPort <= 0 {
			if pp := c.plan.Port(id); pp != nil && pp.Backend(FeatureL2) == BackendOpenFlow {
				out = append(out, id)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Conflict is a flow key several objects claimed with different actions (the lowest
// cookie won), or a cookie two objects hash to.
type Conflict struct {
	Flow    *FlowKey `json:"flow,omitempty"`
	Cookie  uint64   `json:"cookie,omitempty"`
	Origins []Origin `json:"origins"`
}

func (cf Conflict) String() string {
	var names []string
	for _, o := range cf.Origins {
		names = append(names, o.String())
	}
	if cf.Flow != nil {
		return fmt.Sprintf("%s table %d priority %d %q claimed by %s", cf.Flow.Bridge, cf.Flow.Table, cf.Flow.Priority, cf.Flow.Match, strings.Join(names, ", "))
	}
	return fmt.Sprintf("cookie %#x shared by %s", cf.Cookie, strings.Join(names, ", "))
}

// Conflicts lists the conflicts of the current flows, sorted.
func (c *Compiler) Conflicts() []Conflict {
	var out []Conflict
	for k, m := range c.flows.multi {
		if !m.conflict {
			continue
		}
		cf := Conflict{Flow: &FlowKey{Bridge: c.bridges[k.bridge], Table: k.table, Priority: k.prio, Match: k.match}}
		for _, f := range m.contribs {
			if o, ok := c.Origin(f.cookie); ok && !slices.Contains(cf.Origins, o) {
				cf.Origins = append(cf.Origins, o)
			}
		}
		slices.SortFunc(cf.Origins, func(a, b Origin) int {
			if a.Kind != b.Kind {
				return int(a.Kind) - int(b.Kind)
			}
			return strings.Compare(a.ID, b.ID)
		})
		out = append(out, cf)
	}
	for ck, more := range c.clashes {
		out = append(out, Conflict{Cookie: ck, Origins: append([]Origin{c.origins[ck].o}, more...)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// FlowsFrom returns the current flows whose cookie is one of the origins', sorted (a
// scan of every flow: for explain, not for hot paths). A flow merged from several
// objects carries the lowest cookie among them, so it is listed under that one only.
func (c *Compiler) FlowsFrom(origins ...Origin) []Flow {
	want := make(map[uint64]bool, len(origins))
	for _, o := range origins {
		want[CookieFor(o.Kind, o.ID)] = true
	}
	var out []Flow
	for f := range c.flows.all {
		if want[f.cookie] {
			out = append(out, c.flow(f))
		}
	}
	SortFlows(out)
	return out
}

// PortOrigins are the objects whose flows make up a local port's dataplane: the port,
// its network, its security groups and their rules (for explain).
func (c *Compiler) PortOrigins(id string) []Origin {
	p := c.ir.Ports[id]
	if p == nil {
		return nil
	}
	out := []Origin{{KindPort, id}, {KindNetwork, p.NetworkID}}
	if p.QoSPolicyID != "" {
		out = append(out, Origin{KindQoS, id}) // units_qos.go
	}
	out = append(out, c.l3Origins(p)...) // units_l3.go
	for _, sg := range p.SecurityGroups {
		out = append(out, Origin{KindSecurityGroup, sg})
		if g := c.ir.SecurityGroups[sg]; g != nil {
			for _, r := range g.Rules {
				out = append(out, Origin{KindRule, r.ID})
			}
		}
	}
	return out
}

// IR returns the IR of the last Update.
func (c *Compiler) IR() *IR { return c.ir }

// Layout returns the compiler's node layout.
func (c *Compiler) Layout() NodeLayout { return c.layout }

// With returns a copy of the plan with pp added or replaced (kept sorted).
func (p *Plan) With(pp PortPlan) *Plan {
	n := &Plan{Host: p.Host, Datapath: p.Datapath, Routers: p.Routers, Ports: make([]PortPlan, 0, len(p.Ports)+1)}
	i := sort.Search(len(p.Ports), func(i int) bool { return p.Ports[i].PortID >= pp.PortID })
	n.Ports = append(n.Ports, p.Ports[:i]...)
	n.Ports = append(n.Ports, pp)
	if i < len(p.Ports) && p.Ports[i].PortID == pp.PortID {
		i++
	}
	n.Ports = append(n.Ports, p.Ports[i:]...)
	return n
}

// Without returns a copy of the plan without the port.
func (p *Plan) Without(id string) *Plan {
	n := &Plan{Host: p.Host, Datapath: p.Datapath, Routers: p.Routers, Ports: make([]PortPlan, 0, len(p.Ports))}
	for _, pp := range p.Ports {
		if pp.PortID != id {
			n.Ports = append(n.Ports, pp)
		}
	}
	return n
}
