package offload

import (
	"hash/maphash"
	"slices"
)

// The compiler's flow store, laid out for a node of 10,000 ports (about 175,000 flows):
// each flow is kept once, in its unit (cflow: 48 bytes and a share of the unit's match
// text), and the flow table maps a 64-bit hash of each key to the flow that holds it,
// so a flow costs no key copy and no per-key allocation.

// cflow is a Flow as the compiler keeps it: the bridge is an index into
// Compiler.bridges, the match a substring of its unit's text.
type cflow struct {
	match   string
	actions string
	cookie  uint64
	bridge  uint16
	prio    uint16
	table   uint8
	// multi marks the merge of several contributors (flowTable.multi holds them); a
	// unit's own flows never carry it.
	multi bool
	// shared: actions is the compiler's copy (Compiler.shared), counted per unit flow.
	shared bool
}

// flowKey is a cflow's identity (FlowKey with the bridge as an index).
type flowKey struct {
	match  string
	bridge uint16
	prio   uint16
	table  uint8
}

func (f *cflow) key() flowKey {
	return flowKey{match: f.match, bridge: f.bridge, prio: f.prio, table: f.table}
}

// multiFlow is a key that several unit flows claim (conjunctions of several rules,
// identical flows, conflicts): the table holds their merge.
type multiFlow struct {
	contribs []*cflow
	conflict bool
}

// flowTable maps each flow key to its flow: a unit's own flow when one unit claims the
// key, else the merge of the claimants (multi). Keys are found by a 64-bit hash; a key
// whose hash another key already holds goes to over, normally empty.
type flowTable struct {
	seed   maphash.Seed
	mask   uint64 // the hash bits kept: all, except in tests that force collisions
	byHash map[uint64]*cflow
	over   map[flowKey]*cflow
	multi  map[flowKey]*multiFlow
}

func newFlowTable(size int, mask uint64) flowTable {
	return flowTable{seed: maphash.MakeSeed(), mask: mask, byHash: make(map[uint64]*cflow, size),
		over: map[flowKey]*cflow{}, multi: map[flowKey]*multiFlow{}}
}

func (t *flowTable) hash(k flowKey) uint64 {
	small := uint64(k.bridge)<<32 | uint64(k.prio)<<8 | uint64(k.table)
	// small times an odd constant is a bijection: keys with one match never collide
	return (maphash.String(t.seed, k.match) ^ small*0x9e3779b97f4a7c15) & t.mask
}

func (t *flowTable) len() int { return len(t.byHash) + len(t.over) }

// get returns the flow of key k, nil if none.
func (t *flowTable) get(k flowKey) *cflow {
	f, _ := t.lookup(k)
	return f
}

// lookup returns the flow of key k (nil if none) and the key's hash.
func (t *flowTable) lookup(k flowKey) (*cflow, uint64) {
	h := t.hash(k)
	if f := t.byHash[h]; f != nil && f.key() == k {
		return f, h
	}
	if len(t.over) > 0 {
		return t.over[k], h
	}
	return nil, h
}

// put sets the flow of key k.
func (t *flowTable) put(k flowKey, f *cflow) { t.putHashed(k, t.hash(k), f) }

// putHashed is put for a key whose hash h is known.
func (t *flowTable) putHashed(k flowKey, h uint64, f *cflow) {
	cur, ok := t.byHash[h]
	switch {
	case !ok:
		t.byHash[h] = f
		if len(t.over) > 0 {
			delete(t.over, k) // k may have waited there for the key holding h
		}
	case cur.key() == k:
		t.byHash[h] = f
	default:
		t.over[k] = f
	}
}

// del removes key k.
func (t *flowTable) del(k flowKey) { t.delHashed(k, t.hash(k)) }

func (t *flowTable) delHashed(k flowKey, h uint64) {
	if f := t.byHash[h]; f != nil && f.key() == k {
		delete(t.byHash, h)
		return
	}
	delete(t.over, k)
}

// all yields every flow.
func (t *flowTable) all(yield func(*cflow) bool) {
	for _, f := range t.byHash {
		if !yield(f) {
			return
		}
	}
	for _, f := range t.over {
		if !yield(f) {
			return
		}
	}
}

// claim adds unit flow f to key k (hash h), whose flow is cur (nil: none). A key
// claimed twice holds a placeholder until settle merges it.
func (t *flowTable) claim(k flowKey, h uint64, cur, f *cflow) {
	switch {
	case cur == nil:
		t.putHashed(k, h, f)
	case cur.multi:
		m := t.multi[k]
		m.contribs = append(m.contribs, f)
	default:
		t.multi[k] = &multiFlow{contribs: []*cflow{cur, f}}
		p := *cur
		p.multi = true
		t.putHashed(k, h, &p)
	}
}

// unclaim removes unit flow f from key k (hash h), whose flow is cur.
func (t *flowTable) unclaim(k flowKey, h uint64, cur, f *cflow) {
	if !cur.multi {
		t.delHashed(k, h)
		return
	}
	m := t.multi[k]
	m.contribs = slices.DeleteFunc(m.contribs, func(x *cflow) bool { return x == f })
	if len(m.contribs) == 0 {
		t.delHashed(k, h)
		delete(t.multi, k)
	}
}

// settle merges a multi key's claimants after an apply and returns its flow. The merge
// is always a new cflow: the one it replaces may be an apply's "was".
func (t *flowTable) settle(k flowKey) *cflow {
	m := t.multi[k]
	if len(m.contribs) == 1 {
		f := m.contribs[0]
		delete(t.multi, k)
		t.put(k, f)
		return f
	}
	f, conflict := merge(m.contribs)
	m.conflict = conflict
	t.put(k, f)
	return f
}

// bridgeIndex is the index of a bridge name in c.bridges (added on first use).
func (c *Compiler) bridgeIndex(name string) uint16 {
	for i, b := range c.bridges {
		if b == name {
			return uint16(i)
		}
	}
	c.bridges = append(c.bridges, name)
	return uint16(len(c.bridges) - 1)
}

// flow is f as a Flow.
func (c *Compiler) flow(f *cflow) Flow {
	return Flow{Bridge: c.bridges[f.bridge], Table: f.table, Priority: f.prio, Cookie: f.cookie, Match: f.match, Actions: f.actions}
}

// unitFlows turns a unit's emitted flows into the cflows it keeps: exactly sized, the
// match texts sharing one string, shared actions deduplicated.
func (c *Compiler) unitFlows(em *emitter) []cflow {
	text := string(em.text)
	out := make([]cflow, len(em.flows))
	br, bi := "", uint16(0)
	for i, e := range em.flows {
		if i == 0 || e.bridge != br {
			br, bi = e.bridge, c.bridgeIndex(e.bridge)
		}
		out[i] = cflow{match: text[e.off:e.end], actions: e.actions, cookie: e.cookie, bridge: bi, prio: e.prio, table: e.table, shared: e.shared}
		if e.shared {
			out[i].actions = c.share(e.actions)
		}
	}
	return out
}

// sharedActions is one copy of actions that many flows repeat, and how many unit flows
// hold it.
type sharedActions struct {
	s string
	n int
}

// share returns the compiler's copy of a, counting one more holder.
func (c *Compiler) share(a string) string {
	r := c.shared[a]
	if r == nil {
		r = &sharedActions{s: a}
		c.shared[a] = r
	}
	r.n++
	return r.s
}

// unshare drops one holder of a shared copy.
func (c *Compiler) unshare(a string) {
	if r := c.shared[a]; r != nil {
		if r.n--; r.n <= 0 {
			delete(c.shared, a)
		}
	}
}

// withHashBits keeps only n bits of the flow table's key hashes, so that keys collide
// (tests of the collision path).
func withHashBits(n uint) CompilerOption {
	return func(c *Compiler) { c.hashMask = 1<<n - 1 }
}
