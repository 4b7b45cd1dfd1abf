package dhcp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/offlane/offlane/kernel"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// bridgeSwitch is a kernel.Switch on a Linux bridge br0 in a namespace (kernel.Switch
// says a test may use one): it enslaves the host ends and remembers what it attached.
type bridgeSwitch struct {
	ns    string
	mu    sync.Mutex
	ports map[string]ovsdpdk.Port
}

func (b *bridgeSwitch) PortAdd(_ context.Context, ports ...ovsdpdk.Port) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range ports {
		if out, err := exec.Command("ip", "-n", b.ns, "link", "set", p.Name, "master", "br0").CombinedOutput(); err != nil {
			return &exec.ExitError{Stderr: out}
		}
		b.ports[p.Name] = p
	}
	return nil
}

func (b *bridgeSwitch) PortDel(_ context.Context, names ...string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range names {
		delete(b.ports, n)
	}
	return nil
}

func (b *bridgeSwitch) PortGet(_ context.Context, name string) (*ovsdpdk.PortStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.ports[name]
	if !ok {
		return nil, ovsdpdk.ErrPortNotFound
	}
	return &ovsdpdk.PortStatus{Name: p.Name, Type: p.Type, IfaceID: p.IfaceID, MAC: p.MAC}, nil
}

func nsExists(name string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", name))
	return err == nil
}

// udhcpc runs busybox udhcpc on eth0 in the VM namespace with the testdata script
// (asking for options 26 and 121), at most tries DISCOVERs one second apart; it returns
// the script's record and whether a lease was obtained.
func udhcpc(t *testing.T, vmNS string, tries int) (string, bool) {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "udhcpc.script")
	b, err := os.ReadFile("testdata/udhcpc.script")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, b, 0o755); err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(dir, "lease")
	ctx, cancel := context.WithTimeout(t.Context(), time.Duration(tries+10)*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", vmNS, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n",
		"-t", strconv.Itoa(tries), "-T", "1", "-A", "1", "-s", script, "-O", "mtu", "-O", "staticroutes")
	cmd.Env = append(os.Environ(), "OFFLANE_DHCP_OUT="+rec)
	out, err := cmd.CombinedOutput()
	t.Logf("udhcpc: %v\n%s", err, out)
	got, _ := os.ReadFile(rec)
	return string(got), err == nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TestLabDHCPServer: the Manager plugs a qdhcp namespace (kernel.Plugger, the DHCP
// port's MAC, address and MTU) into a Linux bridge shared with a VM namespace; busybox
// udhcpc in the VM gets the port's address, the MTU (option 26: 1450, the VM's link
// started at 1500), the host route and the default route (option 121), read back with
// ip addr/link/route in the VM. An unknown MAC gets nothing (udhcpc gives up; the server
// logged why). A changed IR swaps the lease table without restarting the server, and the
// VM gets its new address. An IR without the DHCP port removes the namespace.
// labSwitch makes the lab's switch namespace (a Linux bridge br0 standing in for br-int)
// and a VM namespace whose eth0 is plugged into it (its MAC is the returned one, not yet
// set); both go at cleanup.
func labSwitch(t *testing.T, id string) (swNS, vmNS, vmMAC string) {
	t.Helper()
	swNS, vmNS = "oldhcp-sw-"+id, "oldhcp-vm-"+id
	t.Cleanup(func() {
		for _, ns := range []string{swNS, vmNS} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	run(t, "ip", "netns", "add", swNS)
	run(t, "ip", "netns", "add", vmNS)
	run(t, "ip", "-n", swNS, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", swNS, "link", "set", "br0", "up")
	run(t, "ip", "-n", swNS, "link", "add", "vm1", "type", "veth", "peer", "name", "eth0", "netns", vmNS)
	run(t, "ip", "-n", swNS, "link", "set", "vm1", "master", "br0", "up")
	return swNS, vmNS, "fa:16:3e:" + id[0:2] + ":" + id[2:4] + ":01"
}

// labManager is a Manager plugging into swNS's bridge, with its own namespace prefix;
// at cleanup it removes its servers and namespaces.
func labManager(t *testing.T, swNS, prefix string, log *zap.Logger) *Manager {
	t.Helper()
	plugger := kernel.NewPlugger(kernel.PlugOptions{HostNamespace: swNS, Switch: &bridgeSwitch{ns: swNS, ports: map[string]ovsdpdk.Port{}}})
	m, err := NewManager(ManagerOptions{Plumber: plugger, Logger: log, NamespacePrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Reconcile(context.Background(), &offload.IR{}); err != nil {
			t.Errorf("cleanup reconcile: %v", err)
		}
	})
	return m
}

func TestLabDHCPServer(t *testing.T) {
	lab.Require(t, "ip", "busybox")
	id := randHex(3)
	netID := "labnet-" + id
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", "ol"+id+"-qdhcp-"+netID).Run() })
	swNS, vmNS, vmMAC := labSwitch(t, id)
	run(t, "ip", "-n", vmNS, "link", "set", "eth0", "address", vmMAC, "mtu", "1500", "up")
	run(t, "ip", "-n", vmNS, "link", "set", "lo", "up")

	dhcpPortID := "dp" + id + "-0000-4000-8000-000000000001"
	ir := &offload.IR{
		Segments: map[string]*offload.Segment{netID: {NetworkID: netID, Type: offload.SegVXLAN, SegmentationID: 77, MTU: 1450}},
		Subnets: map[string]*offload.Subnet{"s1": {ID: "s1", NetworkID: netID, CIDR: pfx("10.20.0.0/24"), Gateway: a("10.20.0.1"), EnableDHCP: true,
			DNS: []netip.Addr{a("192.0.2.53")}, HostRoutes: []offload.SubnetRoute{{Destination: pfx("172.16.0.0/16"), NextHop: a("10.20.0.254")}}}},
		DHCPPorts:   map[string]*offload.DHCPPort{netID: {PortID: dhcpPortID, NetworkID: netID, MAC: "fa:16:3e:" + id[0:2] + ":" + id[2:4] + ":d1", IPs: []netip.Addr{a("10.20.0.2")}}},
		Ports:       map[string]*offload.Port{"vm1": {ID: "vm1", NetworkID: netID, MAC: vmMAC, IPs: []netip.Addr{a("10.20.0.5")}}},
		RemotePorts: map[string]*offload.RemotePort{"vm2": {ID: "vm2", NetworkID: netID, MAC: "fa:16:3e:00:00:02", IPs: []netip.Addr{a("10.20.0.6")}}},
	}

	core, logs := observer.New(zapcore.DebugLevel)
	// its own prefix: a default-prefix manager sweeps every qdhcp-<uuid> namespace it
	// does not run, e.g. those of a demo on the same kernel
	prefix := "ol" + id + "-qdhcp-"
	m := labManager(t, swNS, prefix, zap.New(core))
	ctx := t.Context()
	if err := m.Reconcile(ctx, ir); err != nil {
		t.Fatal(err)
	}
	ns := prefix + netID
	tap := kernel.IfName(kernel.PrefixTap, dhcpPortID)
	if l := run(t, "ip", "-n", ns, "-o", "addr", "show", "dev", tap); !strings.Contains(l, "inet 10.20.0.2/24") {
		t.Fatalf("%s in %s: %s", tap, ns, l)
	}
	if l := run(t, "ip", "-n", ns, "-o", "link", "show", "dev", tap); !strings.Contains(l, "mtu 1450") || !strings.Contains(l, ir.DHCPPorts[netID].MAC) {
		t.Fatalf("%s in %s: %s", tap, ns, l)
	}

	rec, ok := udhcpc(t, vmNS, 5)
	if !ok {
		t.Fatal("udhcpc got no lease")
	}
	if l := run(t, "ip", "-n", vmNS, "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(l, "inet 10.20.0.5/24") {
		t.Fatalf("VM address: %s", l)
	}
	if l := run(t, "ip", "-n", vmNS, "-o", "link", "show", "dev", "eth0"); !strings.Contains(l, "mtu 1450") {
		t.Fatalf("VM MTU (option 26): %s", l)
	}
	routes := run(t, "ip", "-n", vmNS, "-4", "route", "show")
	for _, r := range []string{"default via 10.20.0.1 dev eth0", "172.16.0.0/16 via 10.20.0.254 dev eth0"} {
		if !strings.Contains(routes, r) {
			t.Fatalf("VM routes (option 121) lack %q:\n%s", r, routes)
		}
	}
	if !strings.Contains(rec, "dns=192.0.2.53 ") || !strings.Contains(rec, "serverid=10.20.0.2 ") || !strings.Contains(rec, "lease=86400 ") {
		t.Fatalf("lease record: %q", rec)
	}

	// An unknown MAC: no answer at all; the server heard it and said why.
	run(t, "ip", "-n", vmNS, "addr", "flush", "dev", "eth0")
	run(t, "ip", "-n", vmNS, "link", "set", "eth0", "address", "fa:16:3e:ee:ee:ee")
	if _, ok := udhcpc(t, vmNS, 2); ok {
		t.Fatal("udhcpc got a lease for an unknown MAC")
	}
	if l := run(t, "ip", "-n", vmNS, "-4", "-o", "addr", "show", "dev", "eth0"); strings.Contains(l, "inet ") {
		t.Fatalf("unknown MAC got an address: %s", l)
	}
	if n := logs.FilterMessage("dhcp: no answer").FilterField(zap.String("mac", "fa:16:3e:ee:ee:ee")).Len(); n == 0 {
		t.Fatal("the server did not log the unknown MAC's requests: did they reach it?")
	}

	// Hot update: vm1 moves to 10.20.0.9; same server, new table.
	before := m.running[netID].srv
	ir2 := *ir
	ir2.Ports = map[string]*offload.Port{"vm1": {ID: "vm1", NetworkID: netID, MAC: vmMAC, IPs: []netip.Addr{a("10.20.0.9")}}}
	if err := m.Reconcile(ctx, &ir2); err != nil {
		t.Fatal(err)
	}
	if m.running[netID].srv != before {
		t.Fatal("a lease change restarted the server")
	}
	if l := m.Table(netID).Lookup(mustMAC(vmMAC)); l == nil || l.IP != a("10.20.0.9") {
		t.Fatalf("table after the update: %+v", l)
	}
	run(t, "ip", "-n", vmNS, "link", "set", "eth0", "address", vmMAC, "mtu", "1500")
	if _, ok := udhcpc(t, vmNS, 5); !ok {
		t.Fatal("udhcpc got no lease after the update")
	}
	if l := run(t, "ip", "-n", vmNS, "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(l, "inet 10.20.0.9/24") {
		t.Fatalf("VM address after the update: %s", l)
	}

	// No DHCP port any more: server, port and namespace gone.
	ir3 := ir2
	ir3.DHCPPorts = nil
	if err := m.Reconcile(ctx, &ir3); err != nil {
		t.Fatal(err)
	}
	if nsExists(ns) || len(m.Networks()) != 0 {
		t.Fatalf("after removal: namespace %s exists=%v, servers %v", ns, nsExists(ns), m.Networks())
	}
}

// TestLabDHCPStaleNamespaces: the namespaces a previous agent process left (its servers
// died with it; a network was deleted while it was down) are swept by the next process's
// first Reconcile: the DHCP interface is detached from the switch and the namespace
// deleted, while the desired network's namespace is taken over. A namespace with the
// prefix but not a network ID's shape, or holding a foreign interface, is left alone.
func TestLabDHCPStaleNamespaces(t *testing.T) {
	lab.Require(t, "ip")
	id := randHex(3)
	swNS, prefix := "oldhcp-sw-"+id, "ol"+id+"-qdhcp-"
	keepNet, goneNet := "a"+id+"a-0000-4000-8000-000000000001", "b"+id+"b-0000-4000-8000-000000000002"
	odd, foreign := prefix+"not-a-network", prefix+"c"+id+"c-0000-4000-8000-000000000003"
	// another agent's: its tap's switch end is in another switch namespace
	otherSw, otherAgents := "oldhcp-sw2-"+id, prefix+"d"+id+"d-0000-4000-8000-000000000004"
	t.Cleanup(func() {
		for _, ns := range []string{swNS, prefix + keepNet, prefix + goneNet, odd, foreign, otherSw, otherAgents} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	run(t, "ip", "netns", "add", swNS)
	run(t, "ip", "-n", swNS, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "netns", "add", odd)
	run(t, "ip", "netns", "add", foreign)
	run(t, "ip", "-n", foreign, "link", "add", "other0", "type", "veth", "peer", "name", "other1")
	run(t, "ip", "netns", "add", otherSw)
	run(t, "ip", "netns", "add", otherAgents)
	run(t, "ip", "-n", otherSw, "link", "add", "tap"+id+"ddddd", "type", "veth", "peer", "name", "tap"+id+"ddddd", "netns", otherAgents)

	ir := &offload.IR{Segments: map[string]*offload.Segment{}, Subnets: map[string]*offload.Subnet{}, DHCPPorts: map[string]*offload.DHCPPort{},
		Ports: map[string]*offload.Port{}}
	for i, n := range []string{keepNet, goneNet} {
		sub := fmt.Sprintf("10.%d.0", 30+i)
		ir.Segments[n] = &offload.Segment{NetworkID: n, Type: offload.SegVXLAN, SegmentationID: 80 + i, MTU: 1450}
		ir.Subnets["s"+n] = &offload.Subnet{ID: "s" + n, NetworkID: n, CIDR: pfx(sub + ".0/24"), Gateway: a(sub + ".1"), EnableDHCP: true}
		ir.DHCPPorts[n] = &offload.DHCPPort{PortID: fmt.Sprintf("dp%s-0000-4000-8000-00000000000%d", id, i), NetworkID: n,
			MAC: fmt.Sprintf("fa:16:3e:%s:%s:%02x", id[0:2], id[2:4], i), IPs: []netip.Addr{a(sub + ".2")}}
		ir.Ports["vm"+n] = &offload.Port{ID: "vm" + n, NetworkID: n, MAC: fmt.Sprintf("fa:16:3e:%s:%s:%02x", id[0:2], id[2:4], 0x10+i), IPs: []netip.Addr{a(sub + ".5")}}
	}
	sw := &bridgeSwitch{ns: swNS, ports: map[string]ovsdpdk.Port{}}
	plugger := kernel.NewPlugger(kernel.PlugOptions{HostNamespace: swNS, Switch: sw})
	newManager := func() *Manager {
		m, err := NewManager(ManagerOptions{Plumber: plugger, Logger: lab.Logger(t), NamespacePrefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ctx := t.Context()
	first := newManager()
	if err := first.Reconcile(ctx, ir); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil { // the process ends: servers stop, namespaces stay
		t.Fatal(err)
	}
	goneTap := kernel.IfName(kernel.PrefixTap, ir.DHCPPorts[goneNet].PortID)
	if !nsExists(prefix+goneNet) || len(sw.ports) != 2 {
		t.Fatalf("before the restart: namespace %v, switch ports %v", nsExists(prefix+goneNet), sw.ports)
	}

	// goneNet was deleted while no agent ran
	ir2 := *ir
	ir2.DHCPPorts = map[string]*offload.DHCPPort{keepNet: ir.DHCPPorts[keepNet]}
	second := newManager()
	t.Cleanup(func() { _ = second.Reconcile(context.Background(), &offload.IR{}) })
	if err := second.Reconcile(ctx, &ir2); err != nil {
		t.Fatal(err)
	}
	if nsExists(prefix + goneNet) {
		t.Fatalf("stale namespace %s survived the sweep", prefix+goneNet)
	}
	if _, ok := sw.ports[goneTap]; ok {
		t.Fatalf("stale DHCP port %s still on the switch: %v", goneTap, sw.ports)
	}
	if out, err := exec.Command("ip", "-n", swNS, "link", "show", goneTap).CombinedOutput(); err == nil {
		t.Fatalf("the stale veth's host end %s is still there: %s", goneTap, out)
	}
	if !nsExists(prefix+keepNet) || !slices.Equal(second.Networks(), []string{keepNet}) {
		t.Fatalf("the desired network's server: namespace %v, servers %v", nsExists(prefix+keepNet), second.Networks())
	}
	for _, ns := range []string{odd, foreign, otherAgents} {
		if !nsExists(ns) {
			t.Fatalf("%s is not a stale DHCP namespace of this agent and was deleted", ns)
		}
	}
}

// TestLabDHCPReconcileChanges: after a full Reconcile, change sets alone bring the real
// kernel along: a VM port added to the served network (only the table swapped, the
// server not restarted) and busybox udhcpc in the VM then gets its address; a second
// network's DHCP port appearing (change sets do not name DHCP ports: the manager sees
// it itself) plugs its namespace with the port's address; its removal deletes the
// namespace again; an empty change set touches nothing.
func TestLabDHCPReconcileChanges(t *testing.T) {
	lab.Require(t, "ip", "busybox")
	id := randHex(3)
	net1, net2 := "a"+id+"a-0000-4000-8000-000000000001", "b"+id+"b-0000-4000-8000-000000000002"
	prefix := "ol" + id + "-qdhcp-"
	t.Cleanup(func() {
		for _, ns := range []string{prefix + net1, prefix + net2} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	swNS, vmNS, vmMAC := labSwitch(t, id)
	run(t, "ip", "-n", vmNS, "link", "set", "eth0", "address", vmMAC, "up")

	ir0 := &offload.IR{
		Segments: map[string]*offload.Segment{net1: {NetworkID: net1, Type: offload.SegVXLAN, SegmentationID: 91, MTU: 1450},
			net2: {NetworkID: net2, Type: offload.SegVXLAN, SegmentationID: 92, MTU: 1450}},
		Subnets: map[string]*offload.Subnet{
			"s1": {ID: "s1", NetworkID: net1, CIDR: pfx("10.41.0.0/24"), Gateway: a("10.41.0.1"), EnableDHCP: true},
			"s2": {ID: "s2", NetworkID: net2, CIDR: pfx("10.42.0.0/24"), Gateway: a("10.42.0.1"), EnableDHCP: true}},
		DHCPPorts: map[string]*offload.DHCPPort{net1: {PortID: "dp" + id + "-0000-4000-8000-000000000001", NetworkID: net1,
			MAC: "fa:16:3e:" + id[0:2] + ":" + id[2:4] + ":d1", IPs: []netip.Addr{a("10.41.0.2")}}},
		Ports:       map[string]*offload.Port{},
		RemotePorts: map[string]*offload.RemotePort{"vm9": {ID: "vm9", NetworkID: net1, MAC: "fa:16:3e:00:00:09", IPs: []netip.Addr{a("10.41.0.9")}}},
	}
	m := labManager(t, swNS, prefix, lab.Logger(t))
	ctx := t.Context()
	if err := m.ReconcileChanges(ctx, ir0, nil); err != nil {
		t.Fatal(err)
	}
	srv := m.running[net1].srv

	// the VM's port arrives
	ir1 := ir0.Clone()
	ir1.Ports["vm1"] = &offload.Port{ID: "vm1", NetworkID: net1, MAC: vmMAC, IPs: []netip.Addr{a("10.41.0.5")}}
	if err := m.ReconcileChanges(ctx, ir1, offload.DiffChanges(ir0, ir1, nil, nil)); err != nil {
		t.Fatal(err)
	}
	if m.running[net1].srv != srv {
		t.Fatal("a port added restarted the network's server")
	}
	if _, ok := udhcpc(t, vmNS, 5); !ok {
		t.Fatal("udhcpc got no lease for the port the change set added")
	}
	if l := run(t, "ip", "-n", vmNS, "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(l, "inet 10.41.0.5/24") {
		t.Fatalf("VM address: %s", l)
	}

	// net2 gets a DHCP port: its namespace, interface and address appear
	ir2 := ir1.Clone()
	dp2 := &offload.DHCPPort{PortID: "dp" + id + "-0000-4000-8000-000000000002", NetworkID: net2,
		MAC: "fa:16:3e:" + id[0:2] + ":" + id[2:4] + ":d2", IPs: []netip.Addr{a("10.42.0.2")}}
	ir2.DHCPPorts[net2] = dp2
	if err := m.ReconcileChanges(ctx, ir2, offload.DiffChanges(ir1, ir2, nil, nil)); err != nil {
		t.Fatal(err)
	}
	tap2 := kernel.IfName(kernel.PrefixTap, dp2.PortID)
	if l := run(t, "ip", "-n", prefix+net2, "-o", "addr", "show", "dev", tap2); !strings.Contains(l, "inet 10.42.0.2/24") {
		t.Fatalf("%s in %s: %s", tap2, prefix+net2, l)
	}
	if !slices.Equal(m.Networks(), []string{net1, net2}) {
		t.Fatalf("servers %v", m.Networks())
	}

	// an empty change set, with the namespace of net2 deleted behind the manager's back:
	// nothing is touched (a full reconcile would re-create it)
	run(t, "ip", "netns", "del", prefix+net2)
	if err := m.ReconcileChanges(ctx, ir2, &offload.Changes{}); err != nil {
		t.Fatal(err)
	}
	if nsExists(prefix + net2) {
		t.Fatal("an empty change set plugged a namespace")
	}
	if err := m.ReconcileChanges(ctx, ir2, nil); err != nil {
		t.Fatal(err)
	}
	if !nsExists(prefix + net2) {
		t.Fatal("a full reconcile did not repair the deleted namespace")
	}

	// net2's DHCP port goes: its server and namespace go
	ir3 := ir2.Clone()
	delete(ir3.DHCPPorts, net2)
	if err := m.ReconcileChanges(ctx, ir3, offload.DiffChanges(ir2, ir3, nil, nil)); err != nil {
		t.Fatal(err)
	}
	if nsExists(prefix+net2) || !slices.Equal(m.Networks(), []string{net1}) {
		t.Fatalf("after the DHCP port's removal: namespace %v, servers %v", nsExists(prefix+net2), m.Networks())
	}
	if !nsExists(prefix + net1) {
		t.Fatal("removing net2's DHCP port removed net1's namespace")
	}
}
