package ovsdpdk

import (
	"maps"
	"slices"
	"sync"

	"github.com/ovn-kubernetes/libovsdb/cache"
	"github.com/ovn-kubernetes/libovsdb/model"

	"github.com/offlane/offlane/ovsdpdk/vswitchd"
)

// tenantIndex follows the Bridge, Port and Interface rows through the cache's events, so
// that what a reconcile asks of OVS at every change — the OpenFlow port of each tenant
// interface on the integration bridge (FlowLayout) and the status of a few of them
// (AttachedIDs) — costs what changed instead of a pass over every row (20–30 ms at
// 10,000 ports). The rows it holds are read only. Its handler is registered before
// anyone else's (Connect), so whoever an interface change wakes finds the index past it.
//
// libovsdb runs the handlers on their own goroutine after it updated the cache, so a
// reader that saw a row in the cache (a port it waited for) could meet the index before
// the event. Readers therefore catch it up first (Client.index): in full (sync, by row
// pointer) when its row counts differ from the cache's — rows added or removed in flight,
// or a reconnect, which reloads the cache without delete events — and otherwise by
// re-reading the few tenant interfaces it holds without an OpenFlow port (an interface
// being numbered is the update readers wait for).
type tenantIndex struct {
	mu      sync.Mutex
	bridges map[string]*vswitchd.Bridge    // by UUID
	ports   map[string]*vswitchd.Port      // by UUID
	ifaces  map[string]*vswitchd.Interface // by UUID
	portBr  map[string]string              // port UUID → bridge UUID
	ifPort  map[string]string              // interface UUID → port UUID
	byID    map[string]map[string]struct{} // iface-id → interface UUIDs
	node    map[string]struct{}            // the layout's interfaces (offlane-owner=node)
	// unnumbered are the tenant interfaces (with an iface-id) that put nothing in the
	// tenant map: not numbered yet, or not on the integration bridge
	unnumbered map[string]struct{}

	intBr string // the integration bridge's UUID (offlane-role=integration)
	// tenant is iface-id → OpenFlow port of the tenant interfaces on the integration
	// bridge, contrib what each interface put there; shared is the last copy handed out
	// (nil once tenant changed)
	tenant  map[string]int
	contrib map[string]contribution
	shared  map[string]int
}

type contribution struct {
	id string
	of int
}

func newTenantIndex() *tenantIndex {
	x := &tenantIndex{}
	x.reset()
	return x
}

func (x *tenantIndex) reset() {
	x.bridges, x.ports, x.ifaces = map[string]*vswitchd.Bridge{}, map[string]*vswitchd.Port{}, map[string]*vswitchd.Interface{}
	x.portBr, x.ifPort, x.byID, x.node = map[string]string{}, map[string]string{}, map[string]map[string]struct{}{}, map[string]struct{}{}
	x.unnumbered = map[string]struct{}{}
	x.intBr, x.tenant, x.contrib, x.shared = "", map[string]int{}, map[string]contribution{}, nil
}

// handler is the cache event handler that keeps the index.
func (x *tenantIndex) handler() cache.EventHandler {
	put := func(table string, m model.Model) {
		x.mu.Lock()
		defer x.mu.Unlock()
		switch r := m.(type) {
		case *vswitchd.Bridge:
			x.putBridge(r)
		case *vswitchd.Port:
			x.putPort(r)
		case *vswitchd.Interface:
			x.putIface(r)
		}
	}
	del := func(table string, m model.Model) {
		x.mu.Lock()
		defer x.mu.Unlock()
		switch r := m.(type) {
		case *vswitchd.Bridge:
			x.delBridge(r.UUID)
		case *vswitchd.Port:
			x.delPort(r.UUID)
		case *vswitchd.Interface:
			x.delIface(r.UUID)
		}
	}
	return &cache.EventHandlerFuncs{
		AddFunc:    put,
		UpdateFunc: func(table string, _, cur model.Model) { put(table, cur) },
		DeleteFunc: del,
	}
}

func (x *tenantIndex) putBridge(b *vswitchd.Bridge) {
	if old := x.bridges[b.UUID]; old != nil {
		for _, pu := range old.Ports {
			if !slices.Contains(b.Ports, pu) && x.portBr[pu] == b.UUID {
				delete(x.portBr, pu)
				x.refreshPort(pu)
			}
		}
	}
	x.bridges[b.UUID] = b
	for _, pu := range b.Ports {
		if x.portBr[pu] != b.UUID {
			x.portBr[pu] = b.UUID
			x.refreshPort(pu)
		}
	}
	x.findIntegration()
}

func (x *tenantIndex) delBridge(u string) {
	b := x.bridges[u]
	delete(x.bridges, u)
	if b != nil {
		for _, pu := range b.Ports {
			if x.portBr[pu] == u {
				delete(x.portBr, pu)
				x.refreshPort(pu)
			}
		}
	}
	x.findIntegration()
}

// findIntegration finds the integration bridge; when it moved, every interface's
// contribution is recomputed (rare: node apply).
func (x *tenantIndex) findIntegration() {
	found := ""
	for u, b := range x.bridges {
		if b.ExternalIDs[KeyOwner] == OwnerNode && b.ExternalIDs[KeyRole] == RoleIntegration && (found == "" || b.Name < x.bridges[found].Name) {
			found = u
		}
	}
	if found == x.intBr {
		return
	}
	x.intBr = found
	for iu := range x.ifaces {
		x.refreshIface(iu)
	}
}

func (x *tenantIndex) putPort(p *vswitchd.Port) {
	if old := x.ports[p.UUID]; old != nil {
		for _, iu := range old.Interfaces {
			if !slices.Contains(p.Interfaces, iu) && x.ifPort[iu] == p.UUID {
				delete(x.ifPort, iu)
				x.refreshIface(iu)
			}
		}
	}
	x.ports[p.UUID] = p
	for _, iu := range p.Interfaces {
		x.ifPort[iu] = p.UUID
		x.refreshIface(iu)
	}
}

func (x *tenantIndex) delPort(u string) {
	p := x.ports[u]
	delete(x.ports, u)
	if p != nil {
		for _, iu := range p.Interfaces {
			if x.ifPort[iu] == u {
				delete(x.ifPort, iu)
				x.refreshIface(iu)
			}
		}
	}
}

func (x *tenantIndex) refreshPort(pu string) {
	if p := x.ports[pu]; p != nil {
		for _, iu := range p.Interfaces {
			x.refreshIface(iu)
		}
	}
}

func (x *tenantIndex) putIface(i *vswitchd.Interface) {
	if old := x.ifaces[i.UUID]; old != nil {
		if id := old.ExternalIDs[KeyIfaceID]; id != "" && id != i.ExternalIDs[KeyIfaceID] {
			x.unlinkID(id, i.UUID)
		}
	}
	x.ifaces[i.UUID] = i
	if i.ExternalIDs[KeyOwner] == OwnerNode {
		x.node[i.UUID] = struct{}{}
	} else {
		delete(x.node, i.UUID)
	}
	if id := i.ExternalIDs[KeyIfaceID]; id != "" {
		if x.byID[id] == nil {
			x.byID[id] = map[string]struct{}{}
		}
		x.byID[id][i.UUID] = struct{}{}
	}
	x.refreshIface(i.UUID)
}

func (x *tenantIndex) delIface(u string) {
	if old := x.ifaces[u]; old != nil {
		if id := old.ExternalIDs[KeyIfaceID]; id != "" {
			x.unlinkID(id, u)
		}
	}
	delete(x.ifaces, u)
	delete(x.node, u)
	x.refreshIface(u)
}

func (x *tenantIndex) unlinkID(id, u string) {
	delete(x.byID[id], u)
	if len(x.byID[id]) == 0 {
		delete(x.byID, id)
	}
}

// refreshIface recomputes what interface iu puts in the tenant map: its iface-id and
// OpenFlow port when it is a numbered tenant interface (offlane's own, or anyone's with
// an iface-id, as with os-vif: never a layout row) on the integration bridge.
func (x *tenantIndex) refreshIface(iu string) {
	var now contribution
	i := x.ifaces[iu]
	tenant := i != nil && i.ExternalIDs[KeyOwner] != OwnerNode && i.ExternalIDs[KeyIfaceID] != ""
	if tenant && x.intBr != "" && x.portBr[x.ifPort[iu]] == x.intBr && i.Ofport != nil && *i.Ofport > 0 {
		now = contribution{id: i.ExternalIDs[KeyIfaceID], of: *i.Ofport}
	}
	if tenant && now.id == "" {
		x.unnumbered[iu] = struct{}{}
	} else {
		delete(x.unnumbered, iu)
	}
	old, had := x.contrib[iu]
	if had && old == now {
		return
	}
	if had {
		delete(x.contrib, iu)
		if x.tenant[old.id] == old.of {
			delete(x.tenant, old.id)
			// another interface with the same iface-id may still stand for it
			for _, c := range x.contrib {
				if c.id == old.id {
					x.tenant[c.id] = c.of
					break
				}
			}
		}
	}
	if now.id != "" {
		x.contrib[iu] = now
		x.tenant[now.id] = now.of
	}
	x.shared = nil
}

// tenantPorts returns the tenant map (shared, read only: a new copy after each change).
func (x *tenantIndex) tenantPorts() map[string]int {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.shared == nil {
		x.shared = maps.Clone(x.tenant)
	}
	return x.shared
}

// layoutState is a State of the layout's rows only: every bridge, with the ports and
// interfaces offlane's node config made (offlane-owner=node), for FlowLayoutFrom.
func (x *tenantIndex) layoutState() *State {
	x.mu.Lock()
	defer x.mu.Unlock()
	st := &State{Bridges: map[string]*vswitchd.Bridge{}, Ports: map[string]*vswitchd.Port{}, Interfaces: map[string]*vswitchd.Interface{}}
	keep := map[string][]string{} // bridge UUID → its ports with node interfaces
	for iu := range x.node {
		i := x.ifaces[iu]
		pu := x.ifPort[iu]
		p := x.ports[pu]
		if p == nil {
			continue
		}
		st.Interfaces[iu] = i
		if _, ok := st.Ports[pu]; !ok {
			st.Ports[pu] = p
			keep[x.portBr[pu]] = append(keep[x.portBr[pu]], pu)
		}
	}
	for u, b := range x.bridges {
		cp := *b
		cp.Ports = keep[u]
		st.Bridges[b.Name] = &cp
	}
	return st
}

// statuses returns the status of the ports whose interfaces carry the iface-ids ids.
func (x *tenantIndex) statuses(ids map[string]struct{}) map[string]PortStatus {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make(map[string]PortStatus, len(ids))
	for id := range ids {
		for iu := range x.byID[id] {
			pu := x.ifPort[iu]
			p, b := x.ports[pu], x.bridges[x.portBr[pu]]
			if p == nil || b == nil {
				continue // not (or not yet) on a bridge
			}
			st := &State{Interfaces: map[string]*vswitchd.Interface{}}
			for _, u := range p.Interfaces {
				if i := x.ifaces[u]; i != nil {
					st.Interfaces[u] = i
				}
			}
			s := statusOf(st, p, b.Name)
			if cur, dup := out[id]; !dup || s.Name > cur.Name {
				out[id] = s // two interfaces with one iface-id: the last by name, as Attached orders them
			}
		}
	}
	return out
}

// sync brings the index to the cache's rows as they are now, by pointer (a row the
// events brought is the cache's own or a copy of it: recomputed, harmlessly).
func (x *tenantIndex) sync(tc *cache.TableCache) {
	bs, ps, is := shallowRows(tc, vswitchd.BridgeTable), shallowRows(tc, vswitchd.PortTable), shallowRows(tc, vswitchd.InterfaceTable)
	x.mu.Lock()
	defer x.mu.Unlock()
	syncTable(is, x.ifaces, x.putIface, x.delIface)
	syncTable(ps, x.ports, x.putPort, x.delPort)
	syncTable(bs, x.bridges, x.putBridge, x.delBridge)
}

// syncTable puts the rows of one table that differ from have (by pointer) and deletes
// the ones the cache no longer has.
func syncTable[T any](rows map[string]model.Model, have map[string]*T, put func(*T), del func(string)) {
	for u, m := range rows {
		if r, ok := m.(*T); ok && have[u] != r {
			put(r)
		}
	}
	for u := range have {
		if _, ok := rows[u]; !ok {
			del(u)
		}
	}
}

// catchUp re-reads the unnumbered tenant interfaces from the cache and takes the ones
// whose OpenFlow port or external_ids moved on (an event still in flight).
func (x *tenantIndex) catchUp(tc *cache.TableCache) {
	rc := tc.Table(vswitchd.InterfaceTable)
	if rc == nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for u := range x.unnumbered {
		m, ok := rc.Row(u).(*vswitchd.Interface)
		if !ok {
			continue // deleted: the counts tell
		}
		if old := x.ifaces[u]; old == nil || !equalPtr(old.Ofport, m.Ofport) || !maps.Equal(old.ExternalIDs, m.ExternalIDs) {
			x.putIface(m)
		}
	}
}

// counts are the index's row counts per table.
func (x *tenantIndex) counts() (bridges, ports, ifaces int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.bridges), len(x.ports), len(x.ifaces)
}

func shallowRows(tc *cache.TableCache, table string) map[string]model.Model {
	if rc := tc.Table(table); rc != nil {
		return rc.RowsShallow()
	}
	return nil
}
