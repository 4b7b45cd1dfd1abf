package offload

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/controlplane"
)

// The property: after any sequence of input changes, BuildChanges from the previous IR
// returns exactly Build's IR (or Build's error), names at least what DiffChanges finds,
// leaves the previous IR and the input untouched, and its change set plans as PlanNode
// does. The random world is TestIncrementalEqualsFull's, with QoS policies, more
// compute-port edits (the common case the fast path is for) and some invalid ones.
func TestBuildChangesEqualsBuild(t *testing.T) {
	seeds, steps := 40, 30
	if testing.Short() {
		seeds = 10
	}
	why := map[string]int{}      // fallback reasons ("" = fast path)
	kinds := map[string][2]int{} // edit kind → [fast, all]
	total, errSteps := 0, 0
	var warned [2]int // fast-path steps with warnings, with changed warnings
	for seed := range seeds {
		w := newWorld(uint64(1000 + seed))
		w.addQoS()
		for range 20 + w.r.IntN(40) { // a node a bit more like a real one: more ports per network
			w.snap.Ports = append(w.snap.Ports, w.computePort())
		}
		w.fixL3()
		prevIn := deepCopy(w.input())
		prev, err := Build(prevIn)
		if err != nil {
			t.Fatal(err)
		}
		w.vlans = prev.LocalVLANs()
		prevPlan, prevNode := PlanNode(prev, w.node, testLayout()), w.node
		var history []string
		var undo func()
		for step := range steps {
			if undo != nil {
				undo()
				undo = nil
			}
			kind, what := w.changeEdit(&undo)
			w.fixL3()
			history = append(history, what)
			in := w.input()
			changed, all := inputChanges(prevIn, in)
			if ids := sortedKeys(prev.Ports); len(ids) > 0 && w.r.IntN(10) == 0 { // naming an unchanged port is allowed
				if id := ids[w.r.IntN(len(ids))]; changed[id] == nil {
					changed[id] = findPort(in.Snapshot.Ports, id)
				}
			}
			where := fmt.Sprintf("seed %d step %d after %q", seed, step, history[max(0, len(history)-4):])

			prevCopy, prevMaps, inCopy := deepCopy(prev), prev.Clone(), deepCopy(in)
			ir, ch, reason, err := buildChanges(prev, in, changed, all)
			want, wantErr := Build(in)
			if err := samePointers(prev, prevMaps); err != nil || !reflect.DeepEqual(prev, prevCopy) {
				t.Fatalf("%s: BuildChanges modified its prev IR (%v)", where, err)
			}
			if !reflect.DeepEqual(in, inCopy) {
				t.Fatalf("%s: BuildChanges modified its input", where)
			}
			total++
			why[reason]++
			k := kinds[kind]
			k[1]++
			if reason == "" {
				k[0]++
			}
			kinds[kind] = k
			if wantErr != nil || err != nil {
				if err == nil || wantErr == nil || err.Error() != wantErr.Error() {
					t.Fatalf("%s: BuildChanges error %v (fast path: %v), Build's %v", where, err, reason == "", wantErr)
				}
				errSteps++
				continue // prev stays the IR of prevIn
			}
			if !reflect.DeepEqual(ir, want) {
				t.Fatalf("%s: BuildChanges (fallback %q) differs from Build:\n%s", where, reason, lineDiff(mustJSON(t, want), mustJSON(t, ir)))
			}
			exact := DiffChanges(prev, want, nil, nil)
			if missing := notCovered(exact, ch); missing != "" {
				t.Fatalf("%s: BuildChanges (fallback %q) left out changed %s (named %+v)", where, reason, missing, *ch)
			}
			if len(ch.PlanPorts)+len(ch.PlanRouters) > 0 {
				t.Fatalf("%s: BuildChanges named plan entries: %+v", where, *ch)
			}
			plan := PlanNode(ir, w.node, testLayout())
			if w.node == prevNode {
				// the change set is what the incremental planner needs
				inc := PlanNodeChanges(prev, prevPlan, ir, ch, w.node, testLayout())
				if !reflect.DeepEqual(inc, plan) {
					t.Fatalf("%s: PlanNodeChanges with BuildChanges' change set differs from PlanNode:\n%s", where, lineDiff(mustJSON(t, plan), mustJSON(t, inc)))
				}
			}
			if reason == "" && len(ir.Warnings) > 0 {
				warned[0]++
				if !slices.Equal(ir.Warnings, prev.Warnings) {
					warned[1]++
				}
			}
			prev, prevIn, prevPlan, prevNode = ir, inCopy, plan, w.node
			w.vlans = ir.LocalVLANs()
		}
	}
	t.Logf("%d steps (%d Build errors); fast path %d; fallbacks %v", total, errSteps, why[""], why)
	t.Logf("fast/steps by edit kind: %v", kinds)
	t.Logf("fast path with warnings %d, with changed warnings %d", warned[0], warned[1])
	if warned[1] == 0 {
		t.Errorf("the fast path never changed the warnings (a port of a host without a VTEP): the world does not reach it")
	}
	if why[""]*3 < total {
		t.Errorf("the fast path served %d of %d steps: want at least a third", why[""], total)
	}
	if c := kinds["compute port"]; c[0]*2 < c[1] {
		t.Errorf("the fast path served %d of %d compute-port edits: want at least half", c[0], c[1])
	}
	for _, r := range []string{"all", "router, DHCP or floating IP port", "local network gained or lost", "security group new to the node",
		"security group no longer in use", "QoS policy new to the node", "QoS policy no longer in use", "local VLAN allocation differs", "port Build rejects"} {
		if why[r] == 0 {
			t.Errorf("no step fell back for %q: the random world does not reach it", r)
		}
	}
}

// TestBuildChangesFastPath pins the common case on a small node: a VM port added,
// plugged, changed, moved to a host without a VTEP and back, and removed, each served
// without a full Build, naming exactly the objects that changed and sharing the
// previous IR's unchanged ones.
func TestBuildChangesFastPath(t *testing.T) {
	s, ofp := benchSnapshotSmall()
	in := BuildInput{Host: "node1", Snapshot: s, OFPorts: ofp, VTEPs: map[string]netip.Addr{"node2": netip.MustParseAddr("192.0.2.2")}}
	prev, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	in.LocalVLANs = prev.LocalVLANs()
	vm := port("vm", "net-a", "node1", "fa:16:3e:00:0a:99", []string{"10.0.0.99"}, "sg")
	last := func() *controlplane.Port { return &in.Snapshot.Ports[len(in.Snapshot.Ports)-1] }
	noVTEP := "host node9 has ports on vxlan network net-a but no known VTEP: its ports are unreachable over the overlay"
	for _, tc := range []struct {
		name                    string
		edit                    func() *controlplane.Port // returns the previous entry
		ports, remotes, members []string
		warnings                []string
	}{
		{"add", func() *controlplane.Port { in.Snapshot.Ports = append(slices.Clone(in.Snapshot.Ports), vm); return nil },
			[]string{"vm"}, nil, []string{"vm"}, nil},
		{"plug", func() *controlplane.Port {
			in.OFPorts = map[string]int{"a1": 11, "a2": 12, "b1": 21, "vm": 99}
			return last()
		},
			[]string{"vm"}, nil, nil, nil},
		{"change IP", func() *controlplane.Port {
			old := *last()
			last().FixedIPs = []controlplane.FixedIP{{IPAddress: "10.0.0.98"}}
			return &old
		}, []string{"vm"}, nil, []string{"vm"}, nil},
		{"move to a host without a VTEP", func() *controlplane.Port { old := *last(); last().HostID = "node9"; return &old },
			[]string{"vm"}, []string{"vm"}, nil, []string{noVTEP}},
		{"move back", func() *controlplane.Port { old := *last(); last().HostID = "node1"; return &old },
			[]string{"vm"}, []string{"vm"}, nil, nil},
		{"remove", func() *controlplane.Port {
			old := *last()
			in.Snapshot.Ports = in.Snapshot.Ports[:len(in.Snapshot.Ports)-1]
			return &old
		}, []string{"vm"}, nil, []string{"vm"}, nil},
	} {
		ir, ch, why, err := buildChanges(prev, in, map[string]*controlplane.Port{"vm": tc.edit()}, false)
		if err != nil || why != "" {
			t.Fatalf("%s: fell back (%q) or failed: %v", tc.name, why, err)
		}
		if want, _ := Build(in); !reflect.DeepEqual(ir, want) {
			t.Fatalf("%s: differs from Build:\n%s", tc.name, lineDiff(mustJSON(t, want), mustJSON(t, ir)))
		}
		if !slices.Equal(ch.Ports, tc.ports) || !slices.Equal(ch.RemotePorts, tc.remotes) || !slices.Equal(ch.Members, tc.members) ||
			len(ch.Segments)+len(ch.SecurityGroups)+len(ch.QoSPolicies) > 0 {
			t.Errorf("%s: changes %+v, want ports %v remote ports %v members %v", tc.name, *ch, tc.ports, tc.remotes, tc.members)
		}
		if !slices.Equal(ir.Warnings, tc.warnings) {
			t.Errorf("%s: warnings %q, want %q", tc.name, ir.Warnings, tc.warnings)
		}
		if ir.Ports["a1"] != prev.Ports["a1"] || ir.Members["a1"] != prev.Members["a1"] || ir.Segments["net-a"] != prev.Segments["net-a"] {
			t.Errorf("%s: an unchanged object was replaced", tc.name)
		}
		prev = ir
	}
	if prev.Ports["vm"] != nil || prev.Members["vm"] != nil {
		t.Fatal("the removed port is still in the IR")
	}
}

// TestBuildChangesFallbacks pins port changes that shape more than the port's own IR
// entries on the L3 fixture: each must build in full, for its reason, and equal Build.
func TestBuildChangesFallbacks(t *testing.T) {
	for _, tc := range []struct {
		name, port, why string
		edit            func(p *controlplane.Port)
	}{
		// the floating IP's MAC came from this port: nothing in the IR carries its ID
		{"floating IP port handed to a VM", "fip1-port", "router, DHCP or floating IP port",
			func(p *controlplane.Port) { p.DeviceOwner, p.DeviceID = "compute:nova", "" }},
		{"port of a floating IP", "a2", "floating IP port", func(p *controlplane.Port) { p.AdminStateUp = false }},
		{"router interface", "ra-x", "router interface port", func(p *controlplane.Port) { p.MACAddress = "fa:16:3e:aa:00:09" }},
		// a-y is a segment here (router ra) without a local port: a VM there makes it local
		{"VM on a router's network", "ay", "local network gained or lost", func(p *controlplane.Port) { p.HostID = "node1" }},
		{"VM on a network new here", "c1", "port on a network without a segment", func(p *controlplane.Port) { p.HostID = "node1" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := BuildInput{Host: "node1", Snapshot: l3Snapshot(), OFPorts: l3OFPorts,
				VTEPs: map[string]netip.Addr{"node1": netip.MustParseAddr("192.0.2.1"), "node2": netip.MustParseAddr("192.0.2.2")}}
			prev, err := Build(in)
			if err != nil {
				t.Fatal(err)
			}
			in.LocalVLANs = prev.LocalVLANs()
			in.Snapshot.Ports = slices.Clone(in.Snapshot.Ports)
			i := slices.IndexFunc(in.Snapshot.Ports, func(p controlplane.Port) bool { return p.ID == tc.port })
			old := in.Snapshot.Ports[i]
			tc.edit(&in.Snapshot.Ports[i])
			ir, ch, why, err := buildChanges(prev, in, map[string]*controlplane.Port{tc.port: &old}, false)
			if err != nil || why != tc.why {
				t.Fatalf("fallback %q (%v), want %q", why, err, tc.why)
			}
			want, _ := Build(in)
			if !reflect.DeepEqual(ir, want) {
				t.Fatalf("differs from Build:\n%s", lineDiff(mustJSON(t, want), mustJSON(t, ir)))
			}
			if exact := DiffChanges(prev, want, nil, nil); !reflect.DeepEqual(ch, exact) {
				t.Errorf("changes %+v, want DiffChanges' %+v", *ch, *exact)
			}
		})
	}
}

// benchSnapshotSmall: two networks with ports here and one elsewhere, a group that is its
// own remote group (every port a member).
func benchSnapshotSmall() (Snapshot, map[string]int) {
	s := Snapshot{
		Networks:       []controlplane.Network{network("net-a", "t", SegVXLAN, "", 100), network("net-b", "t", SegVLAN, "physnet1", 200)},
		SecurityGroups: []controlplane.SecurityGroup{secgroup("sg", "t", ruleSpec{id: "r1", dir: Ingress, group: "sg"}, ruleSpec{id: "r2", dir: Egress})},
		Ports: []controlplane.Port{
			port("a1", "net-a", "node1", "fa:16:3e:00:0a:01", []string{"10.0.0.1"}, "sg"),
			port("a2", "net-a", "node1", "fa:16:3e:00:0a:02", []string{"10.0.0.2"}, "sg"),
			port("b1", "net-b", "node1", "fa:16:3e:00:0b:01", []string{"10.0.1.1"}, "sg"),
			port("r1", "net-a", "node2", "fa:16:3e:00:0c:01", []string{"10.0.0.3"}, "sg"),
		},
	}
	return s, map[string]int{"a1": 11, "a2": 12, "b1": 21}
}

func (w *world) input() BuildInput {
	return BuildInput{Host: "node1", Snapshot: w.snap, OFPorts: w.ofp, VTEPs: w.vteps, LocalVLANs: w.vlans}
}

// addQoS gives the world two QoS policies, one of them on a network.
func (w *world) addQoS() {
	w.snap.QoSPolicies = []controlplane.QoSPolicy{
		{ID: "q-bw", TenantID: "t", Rules: []controlplane.QoSRule{{ID: "q-bw-r", Type: QoSBandwidthLimit, MaxKbps: intp(10000)}}},
		{ID: "q-dscp", TenantID: "t", Rules: []controlplane.QoSRule{{ID: "q-dscp-r", Type: QoSDSCPMarking, DSCPMark: intp(26)}}},
	}
	w.snap.Networks[0].QoSPolicyID = strp("q-dscp")
}

// computePort is an ordinary VM port (device_owner compute:nova), mostly bound here and
// plugged.
func (w *world) computePort() controlplane.Port {
	p := w.newPort()
	p.DeviceOwner = "compute:nova"
	if w.r.IntN(4) > 0 {
		p.HostID = "node1"
	}
	return p
}

// pickCompute picks a port that is neither a router's nor a network:* one (-1: none).
func (w *world) pickCompute() int {
	for range 50 {
		i := w.r.IntN(len(w.snap.Ports))
		if !trusted(w.snap.Ports[i].DeviceOwner) {
			return i
		}
	}
	return -1
}

// changeEdit makes one random change: mostly a compute port's (what the agent sees most:
// a VM port created, plugged, changed, deleted), else any edit of TestIncrementalEqualsFull,
// a QoS change, or an invalid port (undone before the next edit). It returns the kind of
// edit and what it did.
func (w *world) changeEdit(undo *func()) (kind, what string) {
	r := w.r.IntN(20)
	i := -1
	if len(w.snap.Ports) > 0 {
		i = w.pickCompute()
	}
	if r >= 10 || i < 0 {
		switch {
		case r == 10:
			n := &w.snap.Networks[w.r.IntN(len(w.snap.Networks))]
			if n.QoSPolicyID == nil {
				n.QoSPolicyID = strp([]string{"q-bw", "q-dscp"}[w.r.IntN(2)])
			} else {
				n.QoSPolicyID = nil
			}
			return "qos network", "network " + n.ID + " qos policy"
		case r == 12:
			g := w.newSG()
			w.snap.SecurityGroups = append(w.snap.SecurityGroups, g)
			return "other", "add group " + g.ID
		case r == 13 || r == 14:
			return "lone", w.loneEdit(r == 13)
		case r == 15:
			// a floating IP's port is handed to a VM (Neutron lets device_owner change):
			// the floating IP answers with the router's MAC from then on
			if j := slices.IndexFunc(w.snap.Ports, func(q controlplane.Port) bool { return q.DeviceOwner == controlplane.OwnerFloatingIP }); j >= 0 {
				q := &w.snap.Ports[j]
				q.DeviceOwner, q.DeviceID = "compute:nova", ""
				return "owner", "port " + q.ID + " no longer a floating IP port"
			}
		case r == 11 && i >= 0:
			p := &w.snap.Ports[i]
			saved := *p
			if w.r.IntN(2) == 0 {
				p.MACAddress = "fa:16:3e:zz:00:01"
			} else {
				p.FixedIPs = []controlplane.FixedIP{{IPAddress: "10.0.0.300"}}
			}
			*undo = func() {
				if j := slices.IndexFunc(w.snap.Ports, func(q controlplane.Port) bool { return q.ID == saved.ID }); j >= 0 {
					w.snap.Ports[j] = saved
				}
			}
			return "invalid port", "port " + p.ID + " invalid"
		}
		return "other", w.edit()
	}
	p := &w.snap.Ports[i]
	switch w.r.IntN(10) {
	case 9: // every VM of one network here moves away (a network leaves the node, unless a router keeps it)
		moved := 0
		for j := range w.snap.Ports {
			if q := &w.snap.Ports[j]; q.NetworkID == p.NetworkID && q.HostID == "node1" && !trusted(q.DeviceOwner) {
				q.HostID = "node2"
				moved++
			}
		}
		return "evacuate", fmt.Sprintf("%d ports of %s moved to node2", moved, p.NetworkID)
	case 0, 1:
		w.snap.Ports = append(w.snap.Ports, w.computePort())
		return "compute port", "add compute port"
	case 2:
		if w.ofp[p.ID] == 0 {
			w.ofp[p.ID] = 700 + w.nextID
			w.nextID++
			return "compute port", "plug " + p.ID
		}
		delete(w.ofp, p.ID)
		return "compute port", "unplug " + p.ID
	case 3: // as the agent's cache deletes: the last port moves into the hole
		id, last := p.ID, len(w.snap.Ports)-1
		delete(w.ofp, id)
		w.snap.Ports[i] = w.snap.Ports[last]
		w.snap.Ports = w.snap.Ports[:last]
		return "compute port", "delete " + id
	case 4:
		p.FixedIPs, p.MACAddress = w.ips(), w.mac()
		return "compute port", "port " + p.ID + " addresses"
	case 5:
		p.SecurityGroups = w.sgs()
		return "compute port", "port " + p.ID + " groups"
	case 6:
		// node5 has no VTEP: its first port on a tunnel network makes a warning
		p.HostID = []string{"node1", "node1", "node2", "node4", "node5", "node5", ""}[w.r.IntN(7)]
		return "compute port", "port " + p.ID + " host " + p.HostID
	case 7:
		if p.QoSPolicyID == nil {
			p.QoSPolicyID = strp([]string{"q-bw", "q-dscp"}[w.r.IntN(2)])
		} else {
			p.QoSPolicyID = nil
		}
		return "compute port", "port " + p.ID + " qos policy"
	default:
		p.AdminStateUp = !p.AdminStateUp
		return "compute port", "port " + p.ID + " admin state"
	}
}

// loneEdit gives a group (or QoS policy) no local VM port has to one of them, or takes
// it from all of them but one (the next time: from the last one): the node gains it or
// loses it, unless a router or DHCP port here keeps it.
func (w *world) loneEdit(group bool) string {
	users := map[string][]int{}
	var local []int
	for j := range w.snap.Ports {
		q := &w.snap.Ports[j]
		if q.HostID != "node1" || trusted(q.DeviceOwner) {
			continue
		}
		local = append(local, j)
		if group {
			for _, g := range q.SecurityGroups {
				users[g] = append(users[g], j)
			}
		} else if q.QoSPolicyID != nil {
			users[*q.QoSPolicyID] = append(users[*q.QoSPolicyID], j)
		}
	}
	ids := []string{"q-bw", "q-dscp"}
	if group {
		ids = nil
		for _, g := range w.snap.SecurityGroups {
			ids = append(ids, g.ID)
		}
	}
	if len(local) == 0 || len(ids) == 0 {
		return "(no local port or group)"
	}
	id := ids[w.r.IntN(len(ids))]
	u := users[id]
	switch {
	case len(u) == 0:
		q := &w.snap.Ports[local[w.r.IntN(len(local))]]
		if group {
			q.SecurityGroups = append(slices.Clone(q.SecurityGroups), id)
		} else {
			q.QoSPolicyID = strp(id)
		}
		return "port " + q.ID + " gets " + id
	case len(u) > 1:
		u = u[1:] // all but one drop it: the next lone edit of id finds one
	}
	for _, j := range u {
		q := &w.snap.Ports[j]
		if group {
			q.SecurityGroups = slices.DeleteFunc(slices.Clone(q.SecurityGroups), func(g string) bool { return g == id })
		} else {
			q.QoSPolicyID = nil
		}
	}
	return fmt.Sprintf("%d ports drop %s", len(u), id)
}

// inputChanges is what a caller of BuildChanges knows: the ports whose entry or OFPort
// differs, with their previous entries, and whether anything else differs (the local
// VLANs left out: BuildChanges checks those itself).
func inputChanges(prev, cur BuildInput) (map[string]*controlplane.Port, bool) {
	a, b := prev.Snapshot, cur.Snapshot
	all := prev.Host != cur.Host || !reflect.DeepEqual(prev.VTEPs, cur.VTEPs) ||
		!reflect.DeepEqual(a.Networks, b.Networks) || !reflect.DeepEqual(a.SecurityGroups, b.SecurityGroups) ||
		!reflect.DeepEqual(a.Subnets, b.Subnets) || !reflect.DeepEqual(a.Routers, b.Routers) ||
		!reflect.DeepEqual(a.FloatingIPs, b.FloatingIPs) || !reflect.DeepEqual(a.QoSPolicies, b.QoSPolicies)
	changed := map[string]*controlplane.Port{}
	was := map[string]*controlplane.Port{}
	for i := range a.Ports {
		was[a.Ports[i].ID] = &a.Ports[i]
	}
	for i := range b.Ports {
		p := &b.Ports[i]
		o := was[p.ID]
		if o == nil || !reflect.DeepEqual(o, p) || prev.OFPorts[p.ID] != cur.OFPorts[p.ID] {
			changed[p.ID] = o
		}
		delete(was, p.ID)
	}
	for id, o := range was {
		changed[id] = o
	}
	return changed, all
}

func findPort(ports []controlplane.Port, id string) *controlplane.Port {
	for i := range ports {
		if ports[i].ID == id {
			return &ports[i]
		}
	}
	return nil
}

// notCovered names a key exact has and ch does not ("" when ch covers exact).
func notCovered(exact, ch *Changes) string {
	lists := []struct {
		name      string
		want, got []string
	}{
		{"segment", exact.Segments, ch.Segments}, {"port", exact.Ports, ch.Ports}, {"remote port", exact.RemotePorts, ch.RemotePorts},
		{"security group", exact.SecurityGroups, ch.SecurityGroups}, {"member", exact.Members, ch.Members},
		{"router", exact.Routers, ch.Routers}, {"floating IP", exact.FloatingIPs, ch.FloatingIPs}, {"QoS policy", exact.QoSPolicies, ch.QoSPolicies},
	}
	for _, l := range lists {
		for _, id := range l.want {
			if !slices.Contains(l.got, id) {
				return l.name + " " + id
			}
		}
	}
	return ""
}

// samePointers checks that ir's maps hold exactly the objects of was (a Clone of ir
// taken earlier): no entry added, removed or replaced.
func samePointers(ir, was *IR) error {
	var changed []string
	for name, same := range map[string]bool{
		"segments": mapsSame(ir.Segments, was.Segments), "ports": mapsSame(ir.Ports, was.Ports),
		"remote ports": mapsSame(ir.RemotePorts, was.RemotePorts), "groups": mapsSame(ir.SecurityGroups, was.SecurityGroups),
		"members": mapsSame(ir.Members, was.Members), "subnets": mapsSame(ir.Subnets, was.Subnets),
		"routers": mapsSame(ir.Routers, was.Routers), "floating IPs": mapsSame(ir.FloatingIPs, was.FloatingIPs),
		"QoS policies": mapsSame(ir.QoSPolicies, was.QoSPolicies), "DHCP ports": mapsSame(ir.DHCPPorts, was.DHCPPorts),
		"warnings": slices.Equal(ir.Warnings, was.Warnings),
	} {
		if !same {
			changed = append(changed, name)
		}
	}
	if len(changed) > 0 {
		slices.Sort(changed)
		return fmt.Errorf("%s changed", strings.Join(changed, ", "))
	}
	return nil
}

func mapsSame[V comparable](a, b map[string]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// deepCopy copies v and everything it reaches through pointers, slices, maps and
// interfaces (struct fields that are not exported are copied as they are: netip.Addr's
// are immutable).
func deepCopy[T any](v T) T {
	return deepValue(reflect.ValueOf(&v).Elem()).Interface().(T)
}

func deepValue(v reflect.Value) reflect.Value {
	out := reflect.New(v.Type()).Elem()
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			p := reflect.New(v.Type().Elem())
			p.Elem().Set(deepValue(v.Elem()))
			out.Set(p)
		}
	case reflect.Slice:
		if !v.IsNil() {
			s := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
			for i := range v.Len() {
				s.Index(i).Set(deepValue(v.Index(i)))
			}
			out.Set(s)
		}
	case reflect.Map:
		if !v.IsNil() {
			m := reflect.MakeMapWithSize(v.Type(), v.Len())
			for it := v.MapRange(); it.Next(); {
				m.SetMapIndex(deepValue(it.Key()), deepValue(it.Value()))
			}
			out.Set(m)
		}
	case reflect.Interface:
		if !v.IsNil() {
			out.Set(deepValue(v.Elem()))
		}
	case reflect.Struct:
		out.Set(v)
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				out.Field(i).Set(deepValue(v.Field(i)))
			}
		}
	default:
		out.Set(v)
	}
	return out
}

// BenchmarkBuildChanges10k is the agent's IR step for a VM port on the 10,000-port
// benchmark node: the port is created bound here, then plugged (its OpenFlow port
// appears), then deleted; each op is one of these changes. build+diff is what the agent
// did before (Build from the whole snapshot, DiffChanges against the previous IR), the
// baseline; buildchanges is BuildChanges (its fast path: the benchmark fails if it falls
// back), reported as a ratio of the baseline measured in the same run.
func BenchmarkBuildChanges10k(b *testing.B) {
	var base time.Duration
	for _, mode := range []string{"build+diff", "buildchanges"} {
		b.Run(mode, func(b *testing.B) {
			per := buildChanges10k(b, mode == "buildchanges")
			b.ReportMetric(float64(per)/1e6, "ms/change")
			if mode == "build+diff" {
				base = per
			} else if base > 0 {
				b.ReportMetric(float64(per)/float64(base), "x-of-build+diff")
				b.ReportMetric(float64(base)/float64(per), "speedup")
			}
		})
	}
}

func buildChanges10k(b *testing.B, fast bool) time.Duration {
	s, ofp := benchSnapshot()
	in := BuildInput{Host: "node1", Snapshot: s, OFPorts: ofp,
		VTEPs: map[string]netip.Addr{"node2": netip.MustParseAddr("192.0.2.2"), "node3": netip.MustParseAddr("192.0.2.3")}}
	prev, err := Build(in)
	if err != nil {
		b.Fatal(err)
	}
	// a VM port on a VXLAN network with 50 ports here, in a group that is its own
	// remote group (an address-set member)
	vm := port("vm-new", "net001", "node1", "fa:16:3e:99:00:01", []string{"10.0.1.99"}, "sg07")
	var gone controlplane.Port
	step := func(i int) {
		in.LocalVLANs = prev.LocalVLANs()
		var changed map[string]*controlplane.Port
		switch i % 3 {
		case 0: // created, bound here, not plugged yet
			in.Snapshot.Ports = append(in.Snapshot.Ports, vm)
			changed = map[string]*controlplane.Port{vm.ID: nil}
		case 1: // plugged
			in.OFPorts[vm.ID] = 20000
			changed = map[string]*controlplane.Port{vm.ID: &in.Snapshot.Ports[len(in.Snapshot.Ports)-1]}
		case 2: // deleted
			gone = in.Snapshot.Ports[len(in.Snapshot.Ports)-1]
			in.Snapshot.Ports = in.Snapshot.Ports[:len(in.Snapshot.Ports)-1]
			delete(in.OFPorts, vm.ID)
			changed = map[string]*controlplane.Port{vm.ID: &gone}
		}
		var ir *IR
		var ch *Changes
		if fast {
			var why string
			if ir, ch, why, err = buildChanges(prev, in, changed, false); why != "" {
				b.Fatalf("BuildChanges fell back: %s", why)
			}
		} else if ir, err = Build(in); err == nil {
			ch = DiffChanges(prev, ir, nil, nil)
		}
		if err != nil {
			b.Fatal(err)
		}
		if !slices.Equal(ch.Ports, []string{vm.ID}) {
			b.Fatalf("change %d named ports %v", i%3, ch.Ports)
		}
		prev = ir
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		step(i)
		i++
	}
	return b.Elapsed() / time.Duration(b.N)
}
