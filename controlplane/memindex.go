package controlplane

import (
	"slices"
	"sync"
)

// memIndex holds the store's secondary indexes in memory, versioned by revision so a
// read transaction sees exactly the entries of its snapshot. They are derived data: each
// object record carries its index entries, and OpenBolt rebuilds the indexes by scanning
// the records. Keeping them out of the bbolt file means a port create dirties (and
// fsyncs) two B+tree pages fewer per commit.
//
// Each (index key, object id) has a list of spans [from, to): the revisions at which the
// entry is visible (to == 0: still present). The single writer adds and closes spans at
// its tentative revision, with undo functions for a rolled-back Update; closed spans are
// dropped once no reader can still see them.
type memIndex struct {
	mu      sync.RWMutex
	sets    map[string]map[string][]ixSpan // kind\x00name\x00value → id → spans
	pending []ixRef                        // closed spans awaiting gc

	readersMu sync.Mutex
	readers   map[int64]int // snapshot revision → active read transactions
}

type ixSpan struct{ from, to int64 }

type ixRef struct {
	key, id string
	to      int64
}

func newMemIndex() *memIndex {
	return &memIndex{sets: map[string]map[string][]ixSpan{}, readers: map[int64]int{}}
}

func ixKey(kind, name, value string) string { return kind + "\x00" + name + "\x00" + value }

func (s ixSpan) visible(rev int64) bool { return s.from <= rev && (s.to == 0 || s.to > rev) }

// add makes id visible under key from rev on; the returned func undoes it.
func (m *memIndex) add(key, id string, rev int64) func() {
	m.mu.Lock()
	defer m.mu.Unlock()
	set := m.sets[key]
	if set == nil {
		set = map[string][]ixSpan{}
		m.sets[key] = set
	}
	spans := set[id]
	n := len(spans)
	switch {
	case n > 0 && spans[n-1].to == 0:
		return func() {} // already present
	case n > 0 && spans[n-1].to == rev:
		// Removed earlier in this same revision: reopen.
		spans[n-1].to = 0
		return func() { m.setLastTo(key, id, rev) }
	}
	set[id] = append(spans, ixSpan{from: rev})
	return func() { m.dropLast(key, id) }
}

// remove hides id under key from rev on; the returned func undoes it.
func (m *memIndex) remove(key, id string, rev int64) func() {
	m.mu.Lock()
	defer m.mu.Unlock()
	spans := m.sets[key][id]
	n := len(spans)
	if n == 0 || spans[n-1].to != 0 {
		return func() {}
	}
	last := spans[n-1]
	if last.from == rev {
		// Added in this same revision: no reader ever saw it.
		m.dropLastLocked(key, id)
		return func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			set := m.sets[key]
			if set == nil {
				set = map[string][]ixSpan{}
				m.sets[key] = set
			}
			set[id] = append(set[id], last)
		}
	}
	spans[n-1].to = rev
	m.pending = append(m.pending, ixRef{key: key, id: id, to: rev})
	return func() { m.setLastTo(key, id, 0) }
}

func (m *memIndex) setLastTo(key, id string, to int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if spans := m.sets[key][id]; len(spans) > 0 {
		spans[len(spans)-1].to = to
	}
}

func (m *memIndex) dropLast(key, id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dropLastLocked(key, id)
}

func (m *memIndex) dropLastLocked(key, id string) {
	set := m.sets[key]
	spans := set[id]
	if len(spans) <= 1 {
		delete(set, id)
		if len(set) == 0 {
			delete(m.sets, key)
		}
		return
	}
	set[id] = spans[:len(spans)-1]
}

// ids returns the ids visible under key at rev, sorted.
func (m *memIndex) ids(key string, rev int64) []string {
	m.mu.RLock()
	var out []string
	for id, spans := range m.sets[key] {
		if slices.ContainsFunc(spans, func(s ixSpan) bool { return s.visible(rev) }) {
			out = append(out, id)
		}
	}
	m.mu.RUnlock()
	slices.Sort(out)
	return out
}

func (m *memIndex) count(key string, rev int64) int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := 0
	for _, spans := range m.sets[key] {
		if slices.ContainsFunc(spans, func(s ixSpan) bool { return s.visible(rev) }) {
			n++
		}
	}
	return n
}

// register and unregister track the snapshots readers hold.
func (m *memIndex) register(rev int64) {
	m.readers[rev]++ // caller holds readersMu
}

func (m *memIndex) unregister(rev int64) {
	m.readersMu.Lock()
	defer m.readersMu.Unlock()
	if m.readers[rev]--; m.readers[rev] <= 0 {
		delete(m.readers, rev)
	}
}

// gc drops closed spans no reader can see: those closed at or before the oldest active
// snapshot (or the committed revision when nobody reads).
func (m *memIndex) gc(committed int64) {
	m.readersMu.Lock()
	min := committed
	for r := range m.readers {
		if r < min {
			min = r
		}
	}
	m.readersMu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	keep := m.pending[:0]
	for _, p := range m.pending {
		if p.to > min {
			keep = append(keep, p)
			continue
		}
		set := m.sets[p.key]
		spans := slices.DeleteFunc(set[p.id], func(s ixSpan) bool { return s.to != 0 && s.to <= min })
		if len(spans) == 0 {
			delete(set, p.id)
			if len(set) == 0 {
				delete(m.sets, p.key)
			}
		} else {
			set[p.id] = spans
		}
	}
	m.pending = keep
}
