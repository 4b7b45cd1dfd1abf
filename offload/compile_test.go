package offload

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/offlane/offlane/controlplane"
)

func TestCompileGolden(t *testing.T) {
	tests := []struct {
		name  string
		build func(t *testing.T) (*IR, *Plan, NodeLayout, []CompilerOption)
	}{
		{"two-tenants", func(t *testing.T) (*IR, *Plan, NodeLayout, []CompilerOption) {
			ir, plan := buildTwoTenants(t)
			return ir, plan, testLayout(), nil
		}},
		{"segment-types-chunked-flood", func(t *testing.T) (*IR, *Plan, NodeLayout, []CompilerOption) {
			ir, plan, l := segmentTypesScenario(t, testLayout())
			return ir, plan, l, []CompilerOption{WithFloodChunk(2)}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ir, plan, l, opts := tc.build(t)
			res, err := Compile(l, ir, plan, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Conflicts) > 0 {
				t.Errorf("conflicts: %v", res.Conflicts)
			}
			golden(t, tc.name+".flows", flowText(res.Flows))
			golden(t, tc.name+".plan", plan.String())
			for _, f := range res.Flows {
				if _, ok := res.Origins[f.Cookie]; !ok {
					t.Errorf("flow %s: cookie has no origin", f)
				}
				if !IsOfflaneCookie(f.Cookie) {
					t.Errorf("flow %s: cookie lacks the offlane marker", f)
				}
			}
		})
	}
}

// segmentTypesScenario: flat, geneve, gre and local networks (no port security), remote
// ports on geneve, gre and flat, five ports on the flat network to exercise flood
// chunking (with WithFloodChunk(2)).
func segmentTypesScenario(t testing.TB, l NodeLayout) (*IR, *Plan, NodeLayout) {
	t.Helper()
	snap := Snapshot{Networks: []controlplane.Network{
		network("flat", "t", SegFlat, "physnet1", 0),
		network("gen", "t", SegGeneve, "", 77),
		network("gre", "t", SegGRE, "", 78),
		network("loc", "t", SegLocal, "", 0),
	}}
	ofp := map[string]int{}
	for i, net := range []string{"flat", "flat", "flat", "flat", "flat", "gen", "gre", "loc", "loc"} {
		id := net + "-" + string(rune('a'+i))
		p := port(id, net, "node1", fmt.Sprintf("fa:16:3e:00:01:%02x", i), []string{fmt.Sprintf("10.1.0.%d", 10+i)})
		p.PortSecurityEnabled = false
		snap.Ports = append(snap.Ports, p)
		ofp[id] = 30 + i
	}
	snap.Ports = append(snap.Ports,
		port("gen-remote", "gen", "node3", "fa:16:3e:00:02:01", []string{"10.1.0.200", "2001:db8::200"}),
		port("gre-remote", "gre", "node3", "fa:16:3e:00:02:02", []string{"10.1.0.201"}),
		port("flat-remote", "flat", "node3", "fa:16:3e:00:02:03", []string{"10.1.0.202"}))
	ir, err := Build(BuildInput{Host: "node1", Snapshot: snap, OFPorts: ofp,
		VTEPs: map[string]netip.Addr{"node3": netip.MustParseAddr("192.0.2.3")}})
	if err != nil {
		t.Fatal(err)
	}
	return ir, PlanNode(ir, ovsNode(), l), l
}

// TestIsolationInvariants checks, over the two-tenant compile, what keeps networks
// apart: every flow after classification that forwards or answers is scoped by the
// network register or a port, and no flow sends one network's frames to another's.
func TestIsolationInvariants(t *testing.T) {
	ir, plan := buildTwoTenants(t)
	res, err := Compile(testLayout(), ir, plan)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Flows {
		if f.Bridge != "br-int" || CookieKind(f.Cookie) == KindNode {
			continue
		}
		switch f.Table {
		case TableL2, TableFlood, TableFloodMore, TableARPResponder, TableDeliver:
			if !strings.Contains(f.Match, "reg6=") {
				t.Errorf("%s: table %d flow not scoped by network (reg6)", f, f.Table)
			}
		case TableClassify:
			if !strings.Contains(f.Match, "in_port=") {
				t.Errorf("%s: classification without in_port", f)
			}
			if strings.Contains(f.Match, "dl_vlan=") {
				// a patch port's local VLAN must map to the same network register
				vlan := between(f.Match, "dl_vlan=", ",")
				if !strings.Contains(f.Actions, "set_field:0x"+hexOf(vlan)+"->reg6") {
					t.Errorf("%s: local VLAN %s mapped to another network", f, vlan)
				}
			}
		}
	}
	// The same MAC fa:16:3e:00:00:01 (a1, b1) has one L2 entry per network, to its own port.
	var entries []string
	for _, f := range res.Flows {
		if f.Table == TableL2 && strings.Contains(f.Match, "dl_dst=fa:16:3e:00:00:01") {
			entries = append(entries, f.Match+" "+f.Actions)
		}
	}
	want := []string{
		"reg6=0x1,dl_dst=fa:16:3e:00:00:01 set_field:0xb->reg7,goto_table:40",
		"reg6=0x3,dl_dst=fa:16:3e:00:00:01 set_field:0x15->reg7,goto_table:40",
	}
	if !slices.Equal(entries, want) {
		t.Errorf("L2 entries for the shared MAC: %q, want %q", entries, want)
	}
}

func between(s, a, b string) string {
	_, s, _ = strings.Cut(s, a)
	s, _, _ = strings.Cut(s, b)
	return s
}

func hexOf(dec string) string {
	n, _ := strconv.Atoi(dec)
	return strconv.FormatInt(int64(n), 16)
}

func TestPortSecurityOffHasNoFiltering(t *testing.T) {
	ir, plan := buildTwoTenants(t)
	res, err := Compile(testLayout(), ir, plan)
	if err != nil {
		t.Fatal(err)
	}
	b2 := CookieFor(KindPort, "b2")
	var got []string
	for _, f := range res.Flows {
		if f.Cookie == b2 {
			got = append(got, f.String())
		}
	}
	want := []string{
		"table=0,priority=100,cookie=0x6f6c3607b54d8395,in_port=22,actions=set_field:0x3->reg6,goto_table:25",
		"table=30,priority=100,cookie=0x6f6c3607b54d8395,reg6=0x3,dl_dst=fa:16:3e:00:00:22,actions=set_field:0x16->reg7,goto_table:40",
		"table=40,priority=100,cookie=0x6f6c3607b54d8395,reg7=0x16,actions=goto_table:50",
	}
	if !slices.Equal(got, want) {
		t.Errorf("port without port security:\n got %q\nwant %q", got, want)
	}
}

func TestUnboundPortsWaitForOFPort(t *testing.T) {
	ofp := map[string]int{}
	for k, v := range twoTenantsOFPorts {
		ofp[k] = v
	}
	delete(ofp, "a2")
	ir, err := Build(BuildInput{Host: "node1", Snapshot: twoTenants(), OFPorts: ofp})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Compile(testLayout(), ir, PlanNode(ir, ovsNode(), testLayout()))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Unbound, []string{"a2"}) {
		t.Errorf("unbound = %v, want [a2]", res.Unbound)
	}
	for _, f := range res.Flows {
		if f.Cookie == CookieFor(KindPort, "a2") || strings.Contains(f.Actions, "set_field:0xc->reg7") {
			t.Errorf("flow for the unbound port a2: %s", f)
		}
	}
}

func TestConflictDuplicateMAC(t *testing.T) {
	snap := twoTenants()
	for i := range snap.Ports {
		if snap.Ports[i].ID == "a2" {
			snap.Ports[i].MACAddress = "fa:16:3e:00:00:01" // a1's MAC on the same network
		}
	}
	ir, err := Build(BuildInput{Host: "node1", Snapshot: snap, OFPorts: twoTenantsOFPorts})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Compile(testLayout(), ir, PlanNode(ir, ovsNode(), testLayout()))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range res.Conflicts {
		if c.Flow != nil && c.Flow.Table == TableL2 && slices.Contains(c.Origins, Origin{KindPort, "a1"}) && slices.Contains(c.Origins, Origin{KindPort, "a2"}) {
			found = true
		}
	}
	if !found {
		t.Errorf("duplicate MAC on one network not reported: %v", res.Conflicts)
	}
}

func TestNewCompilerRejectsIncompleteLayout(t *testing.T) {
	l := testLayout()
	delete(l.OFPorts, PatchTun)
	delete(l.OFPorts, "eth1")
	_, err := NewCompiler(l)
	if err == nil {
		t.Fatal("layout without ofports accepted")
	}
	for _, want := range []string{"no ofport for patch-tun on br-int", "no ofport for eth1 on br-phys1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestCookies(t *testing.T) {
	c := CookieFor(KindPort, "a1")
	if c&CookieMarkerMask != CookieMarker || CookieKind(c) != KindPort {
		t.Errorf("cookie %#x: marker or kind wrong", c)
	}
	if CookieFor(KindPort, "a1") != c || CookieFor(KindNetwork, "a1") == c || CookieFor(KindPort, "a2") == c {
		t.Error("cookies not deterministic or not distinct per kind and id")
	}
	if CookieKind(0x1234) != 0 || IsOfflaneCookie(0x1234) {
		t.Error("foreign cookie taken for offlane's")
	}
}

func TestFlowJSONAndBundleLines(t *testing.T) {
	f := Flow{Bridge: "br-int", Table: 30, Priority: 100, Cookie: CookieFor(KindPort, "x"), Match: "reg6=0x1,dl_dst=fa:16:3e:00:00:01", Actions: "drop"}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"cookie":"0x6f6c3`) {
		t.Errorf("cookie not in hex: %s", b)
	}
	var back Flow
	if err := json.Unmarshal(b, &back); err != nil || back != f {
		t.Errorf("round trip: %v %+v", err, back)
	}
	d := &Delta{Add: []Flow{f}, Delete: []Flow{{Bridge: "br-int", Table: 0, Priority: 0, Cookie: 0x6f6c100000000001, Actions: "drop"}}}
	want := []string{
		"add table=30,priority=100,cookie=" + hexCookie(f.Cookie) + ",reg6=0x1,dl_dst=fa:16:3e:00:00:01,actions=drop",
		"delete_strict table=0,priority=0,cookie=0x6f6c100000000001/-1",
	}
	if got := d.BundleLines("br-int"); !slices.Equal(got, want) {
		t.Errorf("bundle lines %q, want %q", got, want)
	}
	if got := d.BundleLines("br-tun"); len(got) != 0 {
		t.Errorf("lines for another bridge: %q", got)
	}
}

func hexCookie(c uint64) string { return fmt.Sprintf("%#x", c) }

func TestPortBlocksCoverExactly(t *testing.T) {
	for _, r := range [][2]int{{0, 65535}, {1, 65535}, {22, 22}, {8000, 8080}, {1024, 2047}, {0, 0}, {65535, 65535}, {3, 1000}} {
		checkBlocks(t, r[0], r[1])
	}
	if b := portBlocks(8000, 8080); len(b) != 3 {
		t.Errorf("8000-8080: %d blocks, want 3 (0x1f40/0xffc0, 0x1f80/0xfff0, 8080)", len(b))
	}
}

// contains reports whether port p falls in block b.
func (b portBlock) contains(p int) bool { return uint16(p)&b.mask == b.value }

func checkBlocks(t testing.TB, lo, hi int) {
	bs := portBlocks(lo, hi)
	for p := 0; p <= 65535; p++ {
		n := 0
		for _, b := range bs {
			if b.contains(p) {
				n++
			}
		}
		in := p >= lo && p <= hi
		if in && n != 1 || !in && n != 0 {
			t.Fatalf("range %d-%d: port %d matched by %d blocks %v", lo, hi, p, n, bs)
		}
	}
}

func FuzzPortBlocks(f *testing.F) {
	f.Add(uint16(22), uint16(22))
	f.Add(uint16(8000), uint16(8080))
	f.Add(uint16(1), uint16(65535))
	f.Fuzz(func(t *testing.T, a, b uint16) {
		lo, hi := int(min(a, b)), int(max(a, b))
		checkBlocks(t, lo, hi)
		if n := len(portBlocks(lo, hi)); n > 30 {
			t.Fatalf("range %d-%d: %d blocks (at most 30 for 16 bits)", lo, hi, n)
		}
	})
}

func TestExplainHelpers(t *testing.T) {
	ir, plan := buildTwoTenants(t)
	c, err := NewCompiler(testLayout())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Update(ir, plan); err != nil {
		t.Fatal(err)
	}
	origins := c.PortOrigins("b3")
	want := []Origin{{KindPort, "b3"}, {KindNetwork, "net-b-vx"}, {KindSecurityGroup, "sg-b"}, {KindRule, "b-eg4"}, {KindRule, "b-web"}}
	if !slices.Equal(origins, want) {
		t.Errorf("origins of b3: %v, want %v", origins, want)
	}
	flows := c.FlowsFrom(origins...)
	tables := map[uint8]bool{}
	for _, f := range flows {
		o, ok := c.Origin(f.Cookie)
		if !ok || !slices.Contains(origins, o) {
			t.Errorf("flow %s from %v, not one of b3's origins", f, o)
		}
		tables[f.Table] = true
	}
	for _, tb := range []uint8{TableClassify, TablePortSecurity, TableEgressSG, TableL2, TableFlood, TableIngress, TableIngressSG, TableDeliver} {
		if !tables[tb] {
			t.Errorf("b3's explain has no flow in table %d", tb)
		}
	}
	// Re-planning one port equals planning the node.
	pp, ok := PlanPort(ir, "b3", ovsNode(), testLayout())
	if !ok || !slices.Equal(pp.Decisions, plan.Port("b3").Decisions) {
		t.Errorf("PlanPort(b3) = %+v, want %+v", pp, plan.Port("b3"))
	}
	if p2 := plan.Without("b3").With(pp); p2.String() != plan.String() {
		t.Error("Without + With did not restore the plan")
	}
}
