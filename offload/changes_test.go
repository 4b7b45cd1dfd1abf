package offload

import (
	"encoding/json"
	"slices"
	"testing"
)

// TestUpdateChangesScope shows the change set is what the compiler compares: a floating
// IP dropped from the IR but not named changes no flow; named, its flows go, and the
// result equals a full compile.
func TestUpdateChangesScope(t *testing.T) {
	ir0 := buildL3Fixture(t)
	node, lay := natNode("true"), testLayout()
	plan0 := PlanNode(ir0, node, lay)
	ir1 := ir0.Clone()
	delete(ir1.FloatingIPs, "fip1")
	plan1 := PlanNode(ir1, node, lay)

	ch := DiffChanges(ir0, ir1, plan0, plan1)
	if !slices.Equal(ch.FloatingIPs, []string{"fip1"}) || !slices.Equal(ch.PlanPorts, []string{"a2"}) || len(ch.Ports)+len(ch.Routers) != 0 {
		t.Fatalf("DiffChanges = %+v, want floating IP fip1 and the plan of port a2", ch)
	}

	// the incremental planner finds the one port the floating IP's removal re-plans
	inc := DiffChanges(ir0, ir1, nil, nil)
	if got := PlanNodeChanges(ir0, plan0, ir1, inc, node, lay); mustJSON(t, got) != mustJSON(t, plan1) {
		t.Fatalf("PlanNodeChanges differs from PlanNode:\n%s", lineDiff(mustJSON(t, plan1), mustJSON(t, got)))
	}
	if !slices.Equal(inc.PlanPorts, []string{"a2"}) {
		t.Fatalf("PlanNodeChanges recorded plan changes %v, want [a2]", inc.PlanPorts)
	}

	update := func(ch *Changes) (*Compiler, *Delta) {
		c, err := NewCompiler(lay)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Update(ir0, plan0); err != nil {
			t.Fatal(err)
		}
		d, err := c.UpdateChanges(ir1, plan1, ch)
		if err != nil {
			t.Fatal(err)
		}
		return c, d
	}
	if _, d := update(&Changes{}); !d.Empty() {
		t.Fatalf("an empty change set changed flows: %+v", d)
	}
	c, d := update(ch)
	fipFlows := 0
	for _, f := range d.Delete {
		if f.Cookie == CookieFor(KindFloatingIP, "fip1") {
			fipFlows++
		}
	}
	if fipFlows == 0 {
		t.Fatalf("naming the removed floating IP deleted none of its flows: %+v", d)
	}
	full, err := Compile(lay, ir1, plan1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := flowText(c.Flows()), flowText(full.Flows); got != want {
		t.Fatalf("scoped update differs from a full compile:\n%s", lineDiff(want, got))
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
