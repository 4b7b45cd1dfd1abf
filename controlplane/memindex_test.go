package controlplane

import (
	"slices"
	"testing"
)

func TestMemIndexSpans(t *testing.T) {
	m := newMemIndex()
	k := ixKey("ports", "net", "n1")
	m.add(k, "a", 1)
	m.add(k, "b", 2)
	m.remove(k, "a", 3)
	m.add(k, "a", 5) // back again later
	for rev, want := range map[int64][]string{0: nil, 1: {"a"}, 2: {"a", "b"}, 3: {"b"}, 4: {"b"}, 5: {"a", "b"}} {
		if got := m.ids(k, rev); !slices.Equal(got, want) {
			t.Errorf("rev %d: %v, want %v", rev, got, want)
		}
	}
	// Undo restores exactly: a rolled-back add and remove at revision 6.
	u1 := m.remove(k, "b", 6)
	u2 := m.add(k, "c", 6)
	if got := m.ids(k, 6); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("rev 6 before undo: %v", got)
	}
	u2()
	u1()
	if got := m.ids(k, 6); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("rev 6 after undo: %v", got)
	}
	// Remove then add in one revision (an update keeping the entry) changes nothing;
	// add then remove in one revision leaves nothing.
	m.remove(k, "b", 7)
	m.add(k, "b", 7)
	m.add(k, "d", 7)
	m.remove(k, "d", 7)
	if got := m.ids(k, 7); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("rev 7: %v", got)
	}
	// gc keeps what an active reader at revision 2 sees, then drops it once gone.
	m.readersMu.Lock()
	m.register(2)
	m.readersMu.Unlock()
	m.gc(7)
	if got := m.ids(k, 2); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("reader at 2 after gc: %v", got)
	}
	m.unregister(2)
	m.gc(7)
	if spans := m.sets[k]["a"]; len(spans) != 1 || spans[0] != (ixSpan{from: 5}) {
		t.Fatalf("a's spans after gc: %v", spans)
	}
	if len(m.pending) != 0 {
		t.Fatalf("pending after gc: %v", m.pending)
	}
	m.remove(k, "a", 8)
	m.remove(k, "b", 8)
	m.gc(8)
	if _, ok := m.sets[k]; ok || m.count(k, 8) != 0 {
		t.Fatalf("empty key not dropped: %v", m.sets)
	}
}
