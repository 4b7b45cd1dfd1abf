package dhcp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/offlane/offlane/kernel"
	"github.com/offlane/offlane/offload"
)

// fakePlumber is an in-memory Plumber: namespaces holding plugged interfaces (by name,
// with the spec that plugged them) and the switch-side ends. Plug reports a change when
// it created something or the spec differs, as kernel.Plugger does. It counts calls by
// method and can fail a namespace's next Plugs.
type fakePlumber struct {
	mu       sync.Mutex
	ns       map[string]map[string]kernel.PlugSpec
	host     map[string]bool
	calls    map[string]int
	failPlug map[string]int // namespace → Plug calls left to fail
}

func newFakePlumber() *fakePlumber {
	return &fakePlumber{ns: map[string]map[string]kernel.PlugSpec{}, host: map[string]bool{}, calls: map[string]int{}, failPlug: map[string]int{}}
}

var errInjected = errors.New("injected plug failure")

func (f *fakePlumber) Plug(_ context.Context, spec kernel.PlugSpec) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["Plug"]++
	if f.failPlug[spec.Namespace] > 0 {
		f.failPlug[spec.Namespace]--
		return nil, fmt.Errorf("plug %s: %w", spec.Namespace, errInjected)
	}
	var changes []string
	links := f.ns[spec.Namespace]
	if links == nil {
		links = map[string]kernel.PlugSpec{}
		f.ns[spec.Namespace] = links
		changes = append(changes, "namespace created")
	}
	if old, ok := links[spec.IfName]; !ok || !reflect.DeepEqual(old, spec) {
		changes = append(changes, "link "+spec.IfName)
	}
	links[spec.IfName] = spec
	f.host[hostEnd(spec.IfName, spec.HostIfName)] = true
	return changes, nil
}

func hostEnd(ifName, hostIfName string) string {
	if hostIfName == "" {
		return ifName
	}
	return hostIfName
}

func (f *fakePlumber) Unplug(_ context.Context, namespace, ifName, hostIfName string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["Unplug"]++
	delete(f.ns[namespace], ifName)
	delete(f.host, hostEnd(ifName, hostIfName))
	return nil
}

func (f *fakePlumber) DeleteNamespace(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["DeleteNamespace"]++
	delete(f.ns, name)
	return nil
}

func (f *fakePlumber) Namespaces(prefix string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["Namespaces"]++
	var out []string
	for ns := range f.ns {
		if strings.HasPrefix(ns, prefix) {
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (f *fakePlumber) Links(namespace, prefix string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["Links"]++
	out := []string{"lo"}
	for l := range f.ns[namespace] {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out, nil
}

func (f *fakePlumber) HostLinks(prefix string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["HostLinks"]++
	var out []string
	for l := range f.host {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out, nil
}

// totalCalls is the number of Plumber calls so far; resetCalls zeroes the counts.
func (f *fakePlumber) totalCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

func (f *fakePlumber) resetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.calls)
}

// state is a text dump of the namespaces and interfaces, for comparing two fakes.
func (f *fakePlumber) state() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, ns := range sortedIDs(f.ns) {
		fmt.Fprintf(&b, "%s:", ns)
		for _, l := range sortedIDs(f.ns[ns]) {
			fmt.Fprintf(&b, " %s=%+v", l, f.ns[ns][l])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "host: %v\n", sortedIDs(f.host))
	return b.String()
}

func mustMAC(s string) net.HardwareAddr {
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return hw
}

// newTestManager is a Manager on f whose servers listen on loopback UDP sockets (they
// receive nothing: these tests look at what the manager set up, the lab tests at
// traffic).
func newTestManager(tb testing.TB, f *fakePlumber) *Manager {
	tb.Helper()
	m, err := NewManager(ManagerOptions{Plumber: f,
		Listen:  func(string, string) (net.PacketConn, error) { return net.ListenPacket("udp4", "127.0.0.1:0") },
		Prepare: func(string, string) error { return nil }})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close() })
	return m
}

// managerState is a text dump of a manager's servers: per network the plug spec and
// every lease of its table.
func managerState(m *Manager) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	for _, id := range sortedIDs(m.running) {
		cur := m.running[id]
		t := cur.srv.Table()
		fmt.Fprintf(&b, "%s: plug %+v; table %s lease time %s\n", id, cur.spec, t.NetworkID, t.LeaseTime)
		for _, l := range t.Leases() {
			fmt.Fprintf(&b, "  %+v\n", l)
		}
	}
	return b.String()
}

// netUUID is the test network n's ID (UUID-shaped: the stale sweep only touches those).
func netUUID(n int) string { return fmt.Sprintf("0000000%d-0000-4000-8000-000000000000", n) }

// irGen makes random IRs and random changes to them over a small universe (4 networks,
// 2 subnets each, 16 port IDs, local or remote), so that changes collide: ports move
// between networks and between local and remote, subnets toggle DHCP and move, DHCP
// ports are re-created, MACs are sometimes shared (a per-network error), and objects are
// replaced by equal copies or by copies differing only in what DHCP ignores (OFPort).
type irGen struct{ r *rand.Rand }

func (g irGen) mac(port int) string {
	if g.r.IntN(30) == 0 {
		return "fa:16:3e:00:00:99" // shared: a network holding two of these cannot be served
	}
	return fmt.Sprintf("fa:16:3e:00:%02x:%02x", port, g.r.IntN(3))
}

func (g irGen) ips(n int) []netip.Addr {
	var out []netip.Addr
	for range g.r.IntN(3) {
		net := n
		if g.r.IntN(5) == 0 {
			net = g.r.IntN(4) // an address on another network's subnet
		}
		out = append(out, netip.AddrFrom4([4]byte{10, byte(net), byte(g.r.IntN(2)), byte(3 + g.r.IntN(20))}))
	}
	if g.r.IntN(6) == 0 {
		out = append(out, netip.MustParseAddr(fmt.Sprintf("2001:db8:%d::%d", n, 3+g.r.IntN(20))))
	}
	return out
}

func (g irGen) port(i int) *offload.Port {
	n := g.r.IntN(4)
	return &offload.Port{ID: fmt.Sprintf("x%02d", i), NetworkID: netUUID(n), MAC: g.mac(i), IPs: g.ips(n), OFPort: g.r.IntN(3)}
}

func (g irGen) remote(i int) *offload.RemotePort {
	n := g.r.IntN(4)
	return &offload.RemotePort{ID: fmt.Sprintf("x%02d", i), NetworkID: netUUID(n), Host: "h2", MAC: g.mac(32 + i), IPs: g.ips(n)}
}

func (g irGen) segment(n int) *offload.Segment {
	return &offload.Segment{NetworkID: netUUID(n), Type: offload.SegVXLAN, SegmentationID: 100 + n, MTU: 1400 + 50*g.r.IntN(3)}
}

func (g irGen) subnet(n, k int) *offload.Subnet {
	on := n
	if g.r.IntN(12) == 0 {
		on = g.r.IntN(4)
	}
	c := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(n), byte(k), 0}), 24)
	sn := &offload.Subnet{ID: fmt.Sprintf("s%d%d", n, k), NetworkID: netUUID(on), CIDR: c, EnableDHCP: g.r.IntN(4) != 0}
	if g.r.IntN(3) != 0 {
		sn.Gateway = c.Addr().Next()
	}
	if g.r.IntN(2) == 0 {
		sn.DNS = []netip.Addr{netip.AddrFrom4([4]byte{192, 0, 2, byte(g.r.IntN(3))})}
	}
	if g.r.IntN(3) == 0 {
		sn.HostRoutes = []offload.SubnetRoute{{Destination: netip.MustParsePrefix("172.16.0.0/16"), NextHop: c.Addr().Next().Next()}}
	}
	return sn
}

func (g irGen) dhcpPort(n int) *offload.DHCPPort {
	var ips []netip.Addr
	for k := range 2 {
		if g.r.IntN(6) != 0 {
			ips = append(ips, netip.AddrFrom4([4]byte{10, byte(n), byte(k), 2}))
		}
	}
	return &offload.DHCPPort{PortID: fmt.Sprintf("dhcp%d-%d", n, g.r.IntN(2)), NetworkID: netUUID(n),
		MAC: fmt.Sprintf("fa:16:3e:dd:00:%02x", n), IPs: ips, OFPort: g.r.IntN(2)}
}

func (g irGen) initial() *offload.IR {
	ir := &offload.IR{Segments: map[string]*offload.Segment{}, Subnets: map[string]*offload.Subnet{}, DHCPPorts: map[string]*offload.DHCPPort{},
		Ports: map[string]*offload.Port{}, RemotePorts: map[string]*offload.RemotePort{}}
	for n := range 4 {
		ir.Segments[netUUID(n)] = g.segment(n)
		for k := range 2 {
			sn := g.subnet(n, k)
			ir.Subnets[sn.ID] = sn
		}
		ir.DHCPPorts[netUUID(n)] = g.dhcpPort(n)
	}
	for i := range 10 {
		p := g.port(i)
		ir.Ports[p.ID] = p
	}
	for i := 10; i < 14; i++ {
		p := g.remote(i)
		ir.RemotePorts[p.ID] = p
	}
	return ir
}

// change applies one random change to ir (a clone: maps are replaced entries, objects
// never edited).
func (g irGen) change(ir *offload.IR) {
	n := g.r.IntN(4)
	switch g.r.IntN(13) {
	case 0, 1: // a local port added or replaced, or bound here now (no longer remote)
		p := g.port(g.r.IntN(16))
		ir.Ports[p.ID] = p
		if g.r.IntN(2) == 0 {
			delete(ir.RemotePorts, p.ID)
		}
	case 2: // a local port deleted
		delete(ir.Ports, fmt.Sprintf("x%02d", g.r.IntN(16)))
	case 3: // a remote port added or replaced, or bound elsewhere now (no longer local)
		p := g.remote(g.r.IntN(16))
		ir.RemotePorts[p.ID] = p
		if g.r.IntN(2) == 0 {
			delete(ir.Ports, p.ID)
		}
	case 4:
		delete(ir.RemotePorts, fmt.Sprintf("x%02d", g.r.IntN(16)))
	case 5: // segment changed (MTU), removed or back
		if _, ok := ir.Segments[netUUID(n)]; ok && g.r.IntN(5) == 0 {
			delete(ir.Segments, netUUID(n))
		} else {
			ir.Segments[netUUID(n)] = g.segment(n)
		}
	case 6: // subnet replaced (DHCP toggled, gateway, DNS, routes, network) or removed
		k := g.r.IntN(2)
		id := fmt.Sprintf("s%d%d", n, k)
		if _, ok := ir.Subnets[id]; ok && g.r.IntN(4) == 0 {
			delete(ir.Subnets, id)
		} else {
			ir.Subnets[id] = g.subnet(n, k)
		}
	case 7: // DHCP port re-created, re-addressed or removed
		if _, ok := ir.DHCPPorts[netUUID(n)]; ok && g.r.IntN(5) == 0 {
			delete(ir.DHCPPorts, netUUID(n))
		} else {
			ir.DHCPPorts[netUUID(n)] = g.dhcpPort(n)
		}
	case 8: // the DHCP port plugged: only its OpenFlow port changes
		if dp := ir.DHCPPorts[netUUID(n)]; dp != nil {
			c := *dp
			c.OFPort++
			ir.DHCPPorts[c.NetworkID] = &c
		}
	case 9: // a local port's OpenFlow port changes
		for _, id := range sortedIDs(ir.Ports) {
			c := *ir.Ports[id]
			c.OFPort++
			ir.Ports[id] = &c
			break
		}
	case 10: // equal copies (a snapshot rebuilt from scratch shares no pointers)
		for id, sn := range ir.Subnets {
			c := *sn
			ir.Subnets[id] = &c
		}
		for id, dp := range ir.DHCPPorts {
			c := *dp
			ir.DHCPPorts[id] = &c
		}
	case 11: // nothing
	case 12: // a local port takes another port's MAC (that network cannot be served) or
		// drops it
		ids := sortedIDs(ir.Ports)
		if len(ids) < 2 {
			return
		}
		src, dst := *ir.Ports[ids[g.r.IntN(len(ids))]], *ir.Ports[ids[g.r.IntN(len(ids))]]
		if src.ID == dst.ID {
			return
		}
		dst.MAC, dst.NetworkID, dst.IPs = src.MAC, src.NetworkID, src.IPs
		if g.r.IntN(2) == 0 {
			dst.MAC = g.mac(40 + g.r.IntN(10))
		}
		ir.Ports[dst.ID] = &dst
	}
}

// TestReconcileChangesMatchesReconcile: over random sequences of IR changes, a manager
// given only each change set (offload.DiffChanges from the previous IR) runs exactly the
// servers a full Reconcile of every IR runs: same networks, same plugs, same lease
// tables, and leaves the same namespaces and interfaces (the two fake Plumbers' states
// compared). Plug failures are injected into the incremental manager now and then: the
// call after a failed one is complete again. Most steps must really be incremental (no
// namespace listing), or the comparison would prove nothing.
func TestReconcileChangesMatchesReconcile(t *testing.T) {
	ctx := t.Context()
	withErrors := 0
	for seed := range uint64(12) {
		g := irGen{rand.New(rand.NewPCG(seed, 7))}
		fi, fr := newFakePlumber(), newFakePlumber()
		inc, ref := newTestManager(t, fi), newTestManager(t, fr)
		ir := g.initial()
		if err := inc.ReconcileChanges(ctx, ir, nil); err != nil && !strings.Contains(err.Error(), "share MAC") {
			t.Fatalf("seed %d: first call: %v", seed, err)
		}
		_ = ref.Reconcile(ctx, ir)
		incremental, withPlugs, injected, failed, servers := 0, 0, 0, 0, 0
		for step := range 150 {
			prev := ir
			ir = prev.Clone()
			for range 1 + g.r.IntN(3) {
				g.change(ir)
			}
			inject := g.r.IntN(15) == 0
			if inject {
				fi.failPlug[Namespace(netUUID(g.r.IntN(4)))] = 1
			}
			fi.resetCalls()
			errInc := inc.ReconcileChanges(ctx, ir, offload.DiffChanges(prev, ir, nil, nil))
			errRef := ref.Reconcile(ctx, ir)
			if fi.calls["Namespaces"] == 0 {
				incremental++
				if fi.calls["Plug"]+fi.calls["Unplug"] > 0 {
					withPlugs++
				}
			}
			clear(fi.failPlug)
			if errors.Is(errInc, errInjected) {
				injected++
				continue // compared after the next call, which must be complete
			}
			servers += len(ref.Networks())
			if errRef != nil {
				failed++
			}
			if (errInc == nil) != (errRef == nil) {
				t.Fatalf("seed %d step %d: ReconcileChanges error %v, Reconcile error %v", seed, step, errInc, errRef)
			}
			if got, want := managerState(inc), managerState(ref); got != want {
				t.Fatalf("seed %d step %d: servers differ from a full Reconcile's\n got:\n%s\nwant:\n%s", seed, step, got, want)
			}
			if got, want := fi.state(), fr.state(); got != want {
				t.Fatalf("seed %d step %d: namespaces differ from a full Reconcile's\n got:\n%s\nwant:\n%s", seed, step, got, want)
			}
		}
		t.Logf("seed %d: %d of 150 calls incremental (%d of them plugged or unplugged), %d injected failures, %d with per-network errors, %.1f servers on average",
			seed, incremental, withPlugs, injected, failed, float64(servers)/150)
		if servers < 75 {
			t.Fatalf("seed %d: fewer than half a server on average: the generator tests little", seed)
		}
		withErrors += failed
		if incremental < 75 || withPlugs == 0 {
			t.Fatalf("seed %d: only %d of 150 calls were incremental, %d of them with plugs", seed, incremental, withPlugs)
		}
	}
	if withErrors == 0 {
		t.Fatal("no call failed on a network's data (shared MACs): the generator misses that path")
	}
}

// TestReconcileChangesScope: an empty change set, or one that reaches no DHCP network,
// makes no Plumber call; a port added to a DHCP network only swaps that network's table
// (no Plumber call; the other tables are not rebuilt); a DHCP port's MAC changed re-plugs
// that network only; after a failed call the next one does everything again, stale
// namespace sweep included.
func TestReconcileChangesScope(t *testing.T) {
	ctx := t.Context()
	f := newFakePlumber()
	m := newTestManager(t, f)
	ir := &offload.IR{Segments: map[string]*offload.Segment{}, Subnets: map[string]*offload.Subnet{}, DHCPPorts: map[string]*offload.DHCPPort{},
		Ports: map[string]*offload.Port{}, RemotePorts: map[string]*offload.RemotePort{}}
	for n := range 3 {
		id := netUUID(n)
		ir.Segments[id] = &offload.Segment{NetworkID: id, Type: offload.SegVXLAN, MTU: 1450}
		c := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(n), 0, 0}), 24)
		ir.Subnets[fmt.Sprintf("s%d", n)] = &offload.Subnet{ID: fmt.Sprintf("s%d", n), NetworkID: id, CIDR: c, Gateway: c.Addr().Next(), EnableDHCP: true}
		ir.DHCPPorts[id] = &offload.DHCPPort{PortID: fmt.Sprintf("dhcp%d", n), NetworkID: id, MAC: fmt.Sprintf("fa:16:3e:dd:00:%02x", n),
			IPs: []netip.Addr{c.Addr().Next().Next()}}
		ir.Ports[fmt.Sprintf("vm%d", n)] = &offload.Port{ID: fmt.Sprintf("vm%d", n), NetworkID: id, MAC: fmt.Sprintf("fa:16:3e:00:00:%02x", n),
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(n), 0, 5})}}
	}
	// a network without DHCP
	ir.Segments[netUUID(7)] = &offload.Segment{NetworkID: netUUID(7), Type: offload.SegVXLAN, MTU: 1450}
	if err := m.ReconcileChanges(ctx, ir, nil); err != nil {
		t.Fatal(err)
	}
	if len(m.Networks()) != 3 || f.calls["Namespaces"] != 1 || f.calls["Plug"] != 3 {
		t.Fatalf("first call: servers %v, calls %v", m.Networks(), f.calls)
	}
	tables := map[string]*Table{}
	for _, id := range m.Networks() {
		tables[id] = m.Table(id)
	}

	step := func(name string, next *offload.IR, ch *offload.Changes) {
		t.Helper()
		f.resetCalls()
		if err := m.ReconcileChanges(ctx, next, ch); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ir = next
	}
	step("empty change set", ir, &offload.Changes{})
	if n := f.totalCalls(); n != 0 {
		t.Fatalf("an empty change set made %d Plumber calls: %v", n, f.calls)
	}

	next := ir.Clone()
	next.Ports["other"] = &offload.Port{ID: "other", NetworkID: netUUID(7), MAC: "fa:16:3e:00:07:01", IPs: []netip.Addr{a("10.7.0.5")}}
	next.Segments[netUUID(7)] = &offload.Segment{NetworkID: netUUID(7), Type: offload.SegVXLAN, MTU: 1400}
	step("a port and a segment of a network without DHCP", next, offload.DiffChanges(ir, next, nil, nil))
	if n := f.totalCalls(); n != 0 {
		t.Fatalf("a change on a network without DHCP made %d Plumber calls: %v", n, f.calls)
	}

	next = ir.Clone()
	next.Ports["new"] = &offload.Port{ID: "new", NetworkID: netUUID(1), MAC: "fa:16:3e:00:01:01", IPs: []netip.Addr{a("10.1.0.9")}}
	step("a port added", next, offload.DiffChanges(ir, next, nil, nil))
	if n := f.totalCalls(); n != 0 {
		t.Fatalf("a port added made %d Plumber calls: %v", n, f.calls)
	}
	if l := m.Table(netUUID(1)).Lookup(mustMAC("fa:16:3e:00:01:01")); l == nil || l.IP != a("10.1.0.9") {
		t.Fatalf("the new port's lease: %+v", l)
	}
	if m.Table(netUUID(0)) != tables[netUUID(0)] || m.Table(netUUID(2)) != tables[netUUID(2)] {
		t.Fatal("a port added on one network rebuilt the tables of the others")
	}

	next = ir.Clone()
	dp := *next.DHCPPorts[netUUID(2)]
	dp.MAC = "fa:16:3e:dd:00:ee"
	next.DHCPPorts[netUUID(2)] = &dp
	step("a DHCP port's MAC changed", next, offload.DiffChanges(ir, next, nil, nil)) // DiffChanges names no DHCP port
	if f.calls["Plug"] != 1 || f.totalCalls() != 1 {
		t.Fatalf("a DHCP port's MAC changed: calls %v, want one Plug", f.calls)
	}
	if got := f.ns[Namespace(netUUID(2))][kernel.IfName(kernel.PrefixTap, "dhcp2")].MAC; got != dp.MAC {
		t.Fatalf("the DHCP port's interface has MAC %s, want %s", got, dp.MAC)
	}

	// a failed call, then an empty change set: everything again, sweep included
	next = ir.Clone()
	next.Segments[netUUID(0)] = &offload.Segment{NetworkID: netUUID(0), Type: offload.SegVXLAN, MTU: 1400}
	f.failPlug[Namespace(netUUID(0))] = 1
	f.resetCalls()
	if err := m.ReconcileChanges(ctx, next, offload.DiffChanges(ir, next, nil, nil)); !errors.Is(err, errInjected) {
		t.Fatalf("the injected failure was not reported: %v", err)
	}
	if f.calls["Namespaces"] != 0 || f.calls["Plug"] != 1 {
		t.Fatalf("an MTU change of one network: calls %v, want one Plug", f.calls)
	}
	step("after a failure", next, &offload.Changes{})
	if f.calls["Namespaces"] != 1 || f.calls["Plug"] != 3 {
		t.Fatalf("the call after a failure: calls %v, want a full reconcile (3 Plugs and the sweep)", f.calls)
	}
	if got := f.ns[Namespace(netUUID(0))][kernel.IfName(kernel.PrefixTap, "dhcp0")].MTU; got != 1400 {
		t.Fatalf("after the retry, network 0's DHCP port has MTU %d, want 1400", got)
	}
	step("empty again", ir, &offload.Changes{})
	if n := f.totalCalls(); n != 0 {
		t.Fatalf("an empty change set after recovery made %d Plumber calls: %v", n, f.calls)
	}
}
