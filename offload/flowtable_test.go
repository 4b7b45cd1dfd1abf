package offload

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/offlane/offlane/controlplane"
)

// TestFlowTableCollisions runs random puts and deletes on a flow table whose hashes
// keep 3 bits (most keys collide) against a plain map.
func TestFlowTableCollisions(t *testing.T) {
	for _, bits := range []uint{0, 3, 64} {
		r := rand.New(rand.NewPCG(uint64(bits), 7))
		tb := newFlowTable(0, 1<<bits-1)
		if bits == 64 {
			tb.mask = ^uint64(0)
		}
		want := map[flowKey]*cflow{}
		for i := 0; i < 5000; i++ {
			f := &cflow{match: fmt.Sprintf("m%d", r.IntN(40)), table: uint8(r.IntN(3)), prio: uint16(r.IntN(2)), actions: fmt.Sprint(i)}
			k := f.key()
			if r.IntN(3) == 0 {
				tb.del(k)
				delete(want, k)
			} else {
				tb.put(k, f)
				want[k] = f
			}
			if got := tb.get(k); got != want[k] {
				t.Fatalf("bits %d step %d: get %+v = %v, want %v", bits, i, k, got, want[k])
			}
			if tb.len() != len(want) {
				t.Fatalf("bits %d step %d: len %d, want %d", bits, i, tb.len(), len(want))
			}
		}
		n := 0
		for f := range tb.all {
			if want[f.key()] != f {
				t.Fatalf("bits %d: all yields %+v, not in the table", bits, f)
			}
			n++
		}
		if n != len(want) {
			t.Fatalf("bits %d: all yields %d flows, want %d", bits, n, len(want))
		}
		if bits == 3 && len(tb.over) == 0 {
			t.Fatalf("3-bit hashes and no key in the overflow map: the collision path went untested")
		}
	}
}

// TestIncrementalEqualsFullCollidingHashes is the incremental property with flow-key
// hashes cut to 4 bits: nearly every key shares its hash with others.
func TestIncrementalEqualsFullCollidingHashes(t *testing.T) {
	for seed := 0; seed < 8; seed++ {
		w := newWorld(uint64(1000 + seed))
		c, err := NewCompiler(testLayout(), WithFloodChunk(3), withHashBits(4))
		if err != nil {
			t.Fatal(err)
		}
		mirror := map[FlowKey]Flow{}
		var history []string
		for step := 0; step <= 20; step++ {
			if step > 0 {
				history = append(history, w.edit())
			}
			ir, plan := w.build(t)
			d, err := c.Update(ir, plan)
			if err != nil {
				t.Fatal(err)
			}
			applyDelta(t, mirror, d)
			full, err := Compile(testLayout(), ir, plan, WithFloodChunk(3))
			if err != nil {
				t.Fatal(err)
			}
			want := flowText(full.Flows)
			if got := flowText(c.Flows()); got != want {
				t.Fatalf("seed %d step %d: incremental differs from full after %q:\n%s", seed, step, history, lineDiff(want, got))
			}
			if m := flowText(mirrorFlows(mirror)); m != want {
				t.Fatalf("seed %d step %d: deltas applied in order differ from full after %q:\n%s", seed, step, history, lineDiff(want, m))
			}
			if a, b := fmt.Sprint(c.Conflicts()), fmt.Sprint(full.Conflicts); a != b {
				t.Fatalf("seed %d step %d: conflicts %s, full %s", seed, step, a, b)
			}
		}
		if len(c.flows.over) == 0 {
			t.Fatalf("seed %d: 4-bit hashes and no key in the overflow map", seed)
		}
	}
}

// TestConjIDCollisionRebuilds: two groups whose conjunctions hash to one ID. The one
// in use first holds the ID; when the other (lower in key order) arrives, the first
// one's ID moves, so the compiler recompiles everything (rebuild) and must return the
// delta from the previous flows.
func TestConjIDCollisionRebuilds(t *testing.T) {
	const a, b = "sg-1211800", "sg-262335" // FNV-32a of "<id>\x00ingress\x00" collide
	ka, kb := conjKey{sg: a, dir: Ingress}, conjKey{sg: b, dir: Ingress}
	ids := allocateConjIDs(map[string][]conjKey{a: {ka}, b: {kb}})
	if ids[kb] != ids[ka]+1 {
		t.Fatalf("conjunction IDs %d and %d: the fixture's groups no longer collide", ids[ka], ids[kb])
	}
	alone := allocateConjIDs(map[string][]conjKey{b: {kb}})[kb] // b's ID before a exists
	if alone != ids[ka] {
		t.Fatalf("group %s alone gets conjunction ID %d, want %d", b, alone, ids[ka])
	}
	snap := Snapshot{
		Networks:       []controlplane.Network{network("n1", "t", SegVLAN, "physnet1", 100)},
		SecurityGroups: []controlplane.SecurityGroup{secgroup(b, "t", ruleSpec{id: "rb", dir: Ingress, proto: "tcp", min: 22, max: 22})},
		Ports:          []controlplane.Port{port("p1", "n1", "node1", "fa:16:3e:00:00:01", []string{"10.0.0.1"}, b)},
	}
	ofp := map[string]int{"p1": 10, "p2": 11}
	build := func() (*IR, *Plan) {
		ir, err := Build(BuildInput{Host: "node1", Snapshot: snap, OFPorts: ofp})
		if err != nil {
			t.Fatal(err)
		}
		return ir, PlanNode(ir, ovsNode(), testLayout())
	}
	c, err := NewCompiler(testLayout())
	if err != nil {
		t.Fatal(err)
	}
	mirror := map[FlowKey]Flow{}
	for step, wantID := range []uint32{alone, ids[kb]} {
		if step == 1 {
			snap.SecurityGroups = append(snap.SecurityGroups, secgroup(a, "t", ruleSpec{id: "ra", dir: Ingress, proto: "tcp", min: 80, max: 80}))
			snap.Ports = append(snap.Ports, port("p2", "n1", "node1", "fa:16:3e:00:00:02", []string{"10.0.0.2"}, a))
		}
		ir, plan := build()
		d, err := c.Update(ir, plan)
		if err != nil {
			t.Fatal(err)
		}
		applyDelta(t, mirror, d)
		full, err := Compile(testLayout(), ir, plan)
		if err != nil {
			t.Fatal(err)
		}
		want := flowText(full.Flows)
		if got := flowText(c.Flows()); got != want {
			t.Fatalf("step %d: incremental differs from full:\n%s", step, lineDiff(want, got))
		}
		if m := flowText(mirrorFlows(mirror)); m != want {
			t.Fatalf("step %d: deltas applied in order differ from full:\n%s", step, lineDiff(want, m))
		}
		if !strings.Contains(want, fmt.Sprintf("conj_id=%d,", wantID)) {
			t.Fatalf("step %d: no flow matches conj_id=%d (group %s):\n%s", step, wantID, b, want)
		}
		if step == 1 && len(d.Modify) == 0 {
			t.Fatalf("step 1: %s's conjunction ID moved and the delta modifies no flow: %+v", b, d)
		}
	}
}
