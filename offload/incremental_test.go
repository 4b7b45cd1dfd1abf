package offload

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
)

// The property: after any sequence of edits, the incrementally updated compiler holds
// exactly the flows (and origins and conflicts) of a full compile of the final model,
// and the deltas it returned, applied in order, reproduce them (what the applier does).

type world struct {
	r      *rand.Rand
	snap   Snapshot
	ofp    map[string]int
	vteps  map[string]netip.Addr
	vlans  map[string]uint16
	node   *hwdetect.Node
	nextID int
}

var hosts = []string{"node1", "node1", "node1", "node2", "node3", "node4"}

func (w *world) id(prefix string) string {
	w.nextID++
	return fmt.Sprintf("%s%d", prefix, w.nextID)
}

func (w *world) mac() string {
	// a small pool: the same MAC shows up on several networks (and now and then twice
	// on one, which the compiler must report the same way either path)
	return fmt.Sprintf("fa:16:3e:00:00:%02x", w.r.IntN(40))
}

func (w *world) ips() []controlplane.FixedIP {
	var out []controlplane.FixedIP
	for i := 0; i <= w.r.IntN(2); i++ {
		if w.r.IntN(4) == 0 {
			out = append(out, controlplane.FixedIP{IPAddress: fmt.Sprintf("2001:db8::%x", w.r.IntN(30))})
		} else {
			out = append(out, controlplane.FixedIP{IPAddress: fmt.Sprintf("10.0.0.%d", w.r.IntN(30))})
		}
	}
	return out
}

func (w *world) newNetwork(flatTaken bool) controlplane.Network {
	types := []string{SegVLAN, SegVXLAN, SegGeneve, SegGRE, SegLocal}
	if !flatTaken {
		types = append(types, SegFlat)
	}
	typ := types[w.r.IntN(len(types))]
	id := w.id("net")
	switch typ {
	case SegVLAN:
		return network(id, "t", typ, "physnet1", 100+w.nextID)
	case SegFlat:
		return network(id, "t", typ, "physnet1", 0)
	case SegLocal:
		return network(id, "t", typ, "", 0)
	}
	return network(id, "t", typ, "", 1000+w.nextID)
}

func (w *world) newRule(sgID string) controlplane.SecurityGroupRule {
	r := controlplane.SecurityGroupRule{ID: w.id("rule"), SecurityGroupID: sgID, Direction: []string{Ingress, Egress}[w.r.IntN(2)], EtherType: IPv4}
	v6 := w.r.IntN(4) == 0
	if v6 {
		r.EtherType = IPv6
	}
	switch w.r.IntN(6) {
	case 0:
	case 1, 2:
		r.Protocol = strp([]string{"tcp", "udp", "sctp"}[w.r.IntN(3)])
		lo := w.r.IntN(3000)
		r.PortRangeMin, r.PortRangeMax = intp(lo), intp(lo+w.r.IntN(300))
	case 3:
		r.Protocol = strp("icmp")
		if w.r.IntN(2) == 0 {
			r.PortRangeMin = intp(8)
		}
	case 4:
		r.Protocol = strp("47")
	case 5:
		r.Protocol = strp("tcp")
	}
	switch w.r.IntN(3) {
	case 0:
		if v6 {
			r.RemoteIPPrefix = strp("2001:db8::/64")
		} else {
			r.RemoteIPPrefix = strp(fmt.Sprintf("10.%d.0.0/16", w.r.IntN(3)))
		}
	case 1:
		if len(w.snap.SecurityGroups) > 0 {
			r.RemoteGroupID = strp(w.snap.SecurityGroups[w.r.IntN(len(w.snap.SecurityGroups))].ID)
		} else {
			r.RemoteGroupID = strp(sgID)
		}
	}
	return r
}

func (w *world) newSG() controlplane.SecurityGroup {
	g := controlplane.SecurityGroup{ID: w.id("sg"), TenantID: "t", Stateful: true}
	for i := 0; i < w.r.IntN(5); i++ {
		g.Rules = append(g.Rules, w.newRule(g.ID))
	}
	return g
}

func (w *world) sgs() []string {
	var out []string
	for _, g := range w.snap.SecurityGroups {
		if w.r.IntN(3) == 0 {
			out = append(out, g.ID)
		}
	}
	return out
}

func (w *world) newPort() controlplane.Port {
	n := w.snap.Networks[w.r.IntN(len(w.snap.Networks))]
	p := controlplane.Port{ID: w.id("port"), NetworkID: n.ID, HostID: hosts[w.r.IntN(len(hosts))], MACAddress: w.mac(),
		FixedIPs: w.ips(), AdminStateUp: w.r.IntN(10) > 0, PortSecurityEnabled: w.r.IntN(5) > 0,
		VNICType: controlplane.VNICNormal, SecurityGroups: w.sgs()}
	if w.r.IntN(6) == 0 {
		p.VNICType = controlplane.VNICVhostUser
	}
	if w.r.IntN(8) == 0 {
		p.DeviceOwner = controlplane.OwnerRouterInterface
	} else if w.r.IntN(10) == 0 {
		p.DeviceOwner = controlplane.OwnerDHCP // a plugged one floods only locally on tunnels
	}
	if w.r.IntN(5) == 0 {
		p.AllowedAddressPairs = []controlplane.AddressPair{{IPAddress: fmt.Sprintf("10.0.%d.0/24", w.r.IntN(3))}}
		if w.r.IntN(2) == 0 {
			p.AllowedAddressPairs[0].MACAddress = w.mac()
		}
	}
	if w.r.IntN(6) > 0 {
		w.ofp[p.ID] = 100 + w.nextID
	}
	return p
}

func newWorld(seed uint64) *world {
	w := &world{r: rand.New(rand.NewPCG(seed, 42)), ofp: map[string]int{}, node: ovsNode(),
		vteps: map[string]netip.Addr{"node2": netip.MustParseAddr("192.0.2.2"), "node3": netip.MustParseAddr("192.0.2.3")}}
	flat := false
	for i := 0; i < 3+w.r.IntN(4); i++ {
		n := w.newNetwork(flat)
		flat = flat || n.NetworkType == SegFlat
		w.snap.Networks = append(w.snap.Networks, n)
	}
	for i := 0; i < 1+w.r.IntN(4); i++ {
		w.snap.SecurityGroups = append(w.snap.SecurityGroups, w.newSG())
	}
	for i := 0; i < 5+w.r.IntN(20); i++ {
		w.snap.Ports = append(w.snap.Ports, w.newPort())
	}
	return w
}

// edit makes one random change to the model and says what it did.
func (w *world) edit() string {
	ports := w.snap.Ports
	pick := func() *controlplane.Port {
		i := w.pickPort() // l3_test.go: never a router's or floating IP's own port
		return &ports[i]
	}
	if len(ports) == 0 {
		w.snap.Ports = append(w.snap.Ports, w.newPort())
		return "add first port"
	}
	op := w.r.IntN(22)
	if (op == 11 || op == 12) && len(w.snap.SecurityGroups) == 0 {
		op = 10
	}
	switch op {
	case 0:
		p := pick()
		p.FixedIPs = w.ips()
		return "port " + p.ID + " ips"
	case 1:
		p := pick()
		p.MACAddress = w.mac()
		return "port " + p.ID + " mac"
	case 2:
		p := pick()
		p.SecurityGroups = w.sgs()
		return "port " + p.ID + " groups"
	case 3:
		p := pick()
		p.NetworkID = w.snap.Networks[w.r.IntN(len(w.snap.Networks))].ID
		return "port " + p.ID + " network"
	case 4:
		p := pick()
		p.PortSecurityEnabled = !p.PortSecurityEnabled
		return "port " + p.ID + " port security"
	case 5:
		p := pick()
		p.HostID = hosts[w.r.IntN(len(hosts))]
		return "port " + p.ID + " host " + p.HostID
	case 6:
		p := pick()
		if p.AllowedAddressPairs == nil {
			p.AllowedAddressPairs = []controlplane.AddressPair{{IPAddress: "10.0.1.7", MACAddress: w.mac()}}
		} else {
			p.AllowedAddressPairs = nil
		}
		return "port " + p.ID + " pairs"
	case 7:
		p := pick()
		if w.ofp[p.ID] == 0 {
			w.ofp[p.ID] = 500 + w.nextID
			w.nextID++
		} else {
			delete(w.ofp, p.ID)
		}
		return "port " + p.ID + " ofport"
	case 8:
		i := w.pickPort()
		id := ports[i].ID
		w.snap.Ports = slices.Delete(ports, i, i+1)
		return "delete port " + id
	case 9:
		w.snap.Ports = append(w.snap.Ports, w.newPort())
		return "add port"
	case 10:
		if len(w.snap.SecurityGroups) == 0 {
			w.snap.SecurityGroups = append(w.snap.SecurityGroups, w.newSG())
			return "add group"
		}
		g := &w.snap.SecurityGroups[w.r.IntN(len(w.snap.SecurityGroups))]
		g.Rules = append(slices.Clone(g.Rules), w.newRule(g.ID))
		return "group " + g.ID + " add rule"
	case 11:
		g := &w.snap.SecurityGroups[w.r.IntN(len(w.snap.SecurityGroups))]
		if len(g.Rules) == 0 {
			return "group " + g.ID + " (no rule to remove)"
		}
		i := w.r.IntN(len(g.Rules))
		g.Rules = slices.Delete(slices.Clone(g.Rules), i, i+1)
		return "group " + g.ID + " remove rule"
	case 12:
		// delete a group (and its uses, as the API does)
		i := w.r.IntN(len(w.snap.SecurityGroups))
		id := w.snap.SecurityGroups[i].ID
		w.snap.SecurityGroups = slices.Delete(w.snap.SecurityGroups, i, i+1)
		for j := range w.snap.Ports {
			w.snap.Ports[j].SecurityGroups = slices.DeleteFunc(slices.Clone(w.snap.Ports[j].SecurityGroups), func(s string) bool { return s == id })
		}
		for j := range w.snap.SecurityGroups {
			g := &w.snap.SecurityGroups[j]
			g.Rules = slices.DeleteFunc(slices.Clone(g.Rules), func(r controlplane.SecurityGroupRule) bool {
				return r.RemoteGroupID != nil && *r.RemoteGroupID == id
			})
		}
		return "delete group " + id
	case 13:
		n := &w.snap.Networks[w.r.IntN(len(w.snap.Networks))]
		if n.SegmentationID != nil {
			n.SegmentationID = intp(*n.SegmentationID + 1)
		}
		return "network " + n.ID + " segmentation id"
	case 14:
		if _, ok := w.vteps["node3"]; ok {
			delete(w.vteps, "node3")
		} else {
			w.vteps["node3"] = netip.MustParseAddr("192.0.2.33")
		}
		return "node3 vtep"
	case 15:
		// capabilities change: OVS without vhost-user (plan changes, IR does not)
		n := ovsNode()
		if slices.Contains(w.node.OVS.IfaceTypes, "dpdkvhostuserclient") {
			n.OVS.IfaceTypes = []string{"geneve", "gre", "internal", "patch", "system", "tap", "vxlan"}
		}
		w.node = n
		return "node vhost-user toggled"
	case 16:
		// the allocation was lost (say, a fresh agent): local VLANs get reshuffled
		ids := sortedKeys(w.vlans)
		w.vlans = map[string]uint16{}
		for i, j := range w.r.Perm(len(ids)) {
			w.vlans[ids[i]] = uint16(j + 1)
		}
		return "local VLANs reshuffled"
	case 18, 19, 20, 21:
		return w.editL3() // l3_test.go: routers, floating IPs, subnets
	default:
		p := pick()
		p.AdminStateUp = !p.AdminStateUp
		return "port " + p.ID + " admin state"
	}
}

func (w *world) build(t *testing.T) (*IR, *Plan) {
	t.Helper()
	w.fixL3() // l3_test.go
	ir, err := Build(BuildInput{Host: "node1", Snapshot: w.snap, OFPorts: w.ofp, VTEPs: w.vteps, LocalVLANs: w.vlans})
	if err != nil {
		t.Fatal(err)
	}
	w.vlans = ir.LocalVLANs()
	return ir, PlanNode(ir, w.node, testLayout())
}

func applyDelta(t *testing.T, mirror map[FlowKey]Flow, d *Delta) {
	t.Helper()
	for _, f := range d.Add {
		if _, ok := mirror[f.Key()]; ok {
			t.Fatalf("delta adds an existing flow %s", f)
		}
		mirror[f.Key()] = f
	}
	for _, f := range d.Modify {
		if _, ok := mirror[f.Key()]; !ok {
			t.Fatalf("delta modifies a missing flow %s", f)
		}
		mirror[f.Key()] = f
	}
	for _, f := range d.Delete {
		if g, ok := mirror[f.Key()]; !ok || g != f {
			t.Fatalf("delta deletes a flow that is not there as given: %s", f)
		}
		delete(mirror, f.Key())
	}
}

func mirrorFlows(m map[FlowKey]Flow) []Flow {
	out := make([]Flow, 0, len(m))
	for _, f := range m {
		out = append(out, f)
	}
	sortFlows(out)
	return out
}

func TestIncrementalEqualsFull(t *testing.T) {
	seeds, steps := 60, 25
	if testing.Short() {
		seeds = 10
	}
	v6 := map[string]int{} // IPv6 L3 flows the random world reached (l3_test.go's dual-stack routers)
	defer func() {
		t.Logf("IPv6 L3 flows compiled along the way: %v", v6)
		if !t.Failed() && (v6["nd"] == 0 || v6["route"] == 0 || v6["neigh"] == 0) {
			t.Errorf("the random world compiled no IPv6 ND responder, route or next hop: %v", v6)
		}
	}()
	for seed := 0; seed < seeds; seed++ {
		w := newWorld(uint64(seed))
		c, err := NewCompiler(testLayout(), WithFloodChunk(3))
		if err != nil {
			t.Fatal(err)
		}
		mirror := map[FlowKey]Flow{}
		var history []string
		var prevPlan *Plan
		var prevNode *hwdetect.Node
		for step := 0; step <= steps; step++ {
			if step > 0 {
				history = append(history, w.edit())
			}
			ir, plan := w.build(t)
			if step > 0 && w.r.IntN(4) == 0 {
				// The pointer-sharing path: unchanged objects keep their pointers.
				prev := c.IR().Clone()
				for id, p := range ir.Ports {
					if old := prev.Ports[id]; old != nil && old.equal(p) {
						ir.Ports[id] = old
					}
				}
				for id, r := range ir.Routers {
					if old := prev.Routers[id]; old != nil && old.equal(r) {
						ir.Routers[id] = old
					}
				}
				for id, g := range ir.SecurityGroups {
					if old := prev.SecurityGroups[id]; old != nil && old.equal(g) {
						ir.SecurityGroups[id] = old
					}
				}
			}
			var d *Delta
			if step > 0 && w.r.IntN(2) == 0 {
				// The change-set path: only what DiffChanges names is compared, plus
				// unchanged names (harmless by contract).
				ch := DiffChanges(c.IR(), ir, prevPlan, plan)
				if w.node == prevNode {
					// and the incremental planner: re-plan what the IR changes reach
					inc := DiffChanges(c.IR(), ir, nil, nil)
					incPlan := PlanNodeChanges(c.IR(), prevPlan, ir, inc, w.node, testLayout())
					if a, b := mustJSON(t, incPlan), mustJSON(t, plan); a != b {
						t.Fatalf("seed %d step %d: PlanNodeChanges differs from PlanNode after %q:\n%s", seed, step, history, lineDiff(b, a))
					}
					if !slices.Equal(inc.PlanPorts, ch.PlanPorts) || !slices.Equal(inc.PlanRouters, ch.PlanRouters) {
						t.Fatalf("seed %d step %d: PlanNodeChanges recorded ports %v routers %v, the plans differ in %v %v", seed, step, inc.PlanPorts, inc.PlanRouters, ch.PlanPorts, ch.PlanRouters)
					}
					plan, ch = incPlan, inc
				}
				for id := range ir.Ports {
					if w.r.IntN(8) == 0 {
						ch.Ports = append(ch.Ports, id)
						ch.PlanPorts = append(ch.PlanPorts, id)
					}
				}
				d, err = c.UpdateChanges(ir, plan, ch)
			} else {
				d, err = c.Update(ir, plan)
			}
			if err != nil {
				t.Fatal(err)
			}
			prevPlan, prevNode = plan, w.node
			applyDelta(t, mirror, d)
			full, err := Compile(testLayout(), ir, plan, WithFloodChunk(3))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range full.Flows {
				switch {
				case f.Table == TableL3NA && f.Priority > 0:
					v6["nd"]++
				case f.Table == TableL3Route && strings.Contains(f.Actions, "XXREG"):
					v6["route"]++
				case f.Table == TableL3Neigh && strings.Contains(f.Match, "ipv6"):
					v6["neigh"]++
				}
			}
			if err := checkCTMatches(full.Flows); err != nil {
				t.Fatalf("seed %d step %d after %q: %v", seed, step, history, err)
			}
			got, want := flowText(c.Flows()), flowText(full.Flows)
			if got != want {
				t.Fatalf("seed %d step %d: incremental differs from full after %q:\n%s", seed, step, history, lineDiff(want, got))
			}
			if m := flowText(mirrorFlows(mirror)); m != want {
				t.Fatalf("seed %d step %d: deltas applied in order differ from full after %q:\n%s", seed, step, history, lineDiff(want, m))
			}
			for _, f := range full.Flows {
				if o, _ := c.Origin(f.Cookie); o != full.Origins[f.Cookie] {
					t.Fatalf("seed %d step %d: origin of %#x: %v, full says %v", seed, step, f.Cookie, o, full.Origins[f.Cookie])
				}
			}
			if a, b := fmt.Sprint(c.Conflicts()), fmt.Sprint(full.Conflicts); a != b {
				t.Fatalf("seed %d step %d: conflicts %s, full %s", seed, step, a, b)
			}
			if !slices.Equal(c.Unbound(), full.Unbound) {
				t.Fatalf("seed %d step %d: unbound %v, full %v", seed, step, c.Unbound(), full.Unbound)
			}
		}
	}
}

// TestIncrementalTouchesOnlyDependents checks that a one-port change recompiles a
// handful of units, not the node: the delta of changing one port's IP is small.
func TestIncrementalTouchesOnlyDependents(t *testing.T) {
	ir, plan := buildTwoTenants(t)
	c, err := NewCompiler(testLayout())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Update(ir, plan); err != nil {
		t.Fatal(err)
	}
	ir2 := ir.Clone()
	a2 := *ir2.Ports["a2"]
	a2.IPs = []netip.Addr{netip.MustParseAddr("10.0.0.22")}
	ir2.Ports["a2"] = &a2
	m := *ir2.Members["a2"]
	m.Addresses = []netip.Prefix{netip.MustParsePrefix("10.0.0.22/32")}
	ir2.Members["a2"] = &m
	d, err := c.Update(ir2, plan)
	if err != nil {
		t.Fatal(err)
	}
	// a2's IP flow and ARP flow in port security, its address in sg-a's address set.
	var got []string
	for _, set := range [][]Flow{d.Add, d.Modify, d.Delete} {
		for _, f := range set {
			got = append(got, f.Match)
		}
	}
	slices.Sort(got)
	want := []string{
		"arp,in_port=12,dl_src=fa:16:3e:00:00:02,arp_spa=10.0.0.2,arp_sha=fa:16:3e:00:00:02",
		"arp,in_port=12,dl_src=fa:16:3e:00:00:02,arp_spa=10.0.0.22,arp_sha=fa:16:3e:00:00:02",
		"ip,in_port=12,dl_src=fa:16:3e:00:00:02,nw_src=10.0.0.2",
		"ip,in_port=12,dl_src=fa:16:3e:00:00:02,nw_src=10.0.0.22",
		"ip,nw_src=10.0.0.2", "ip,nw_src=10.0.0.22",
	}
	if !slices.Equal(got, want) {
		t.Errorf("delta of a2's IP change:\n got %q\nwant %q", got, want)
	}
}

// checkCTMatches: OVS refuses a bundle holding a flow whose actions use conntrack (ct)
// without an IP match (OFPBAC_MATCH_INCONSISTENT), and with it every other flow of the
// bundle: every such flow must match IPv4 or IPv6.
func checkCTMatches(fs []Flow) error {
	for _, f := range fs {
		if !strings.Contains(f.Actions, "ct(") {
			continue
		}
		ok := false
		for _, k := range strings.Split(f.Match, ",") {
			switch k {
			case "ip", "ipv6", "tcp", "tcp6", "udp", "udp6", "icmp", "icmp6", "sctp", "sctp6", "dl_type=0x0800", "dl_type=0x86dd":
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("flow uses conntrack without an IP match (OVS refuses it, and its bundle): %s", f.String())
		}
	}
	return nil
}
