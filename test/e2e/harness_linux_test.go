package e2e_test

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

// host is one OVS "hypervisor" of a lab: a private ovsdb-server + ovs-vswitchd in its
// own network namespace, laid out by ovsdpdk's node apply, its tenant ports attached with
// ovsdpdk's Ports API, and the flows compiled by offload and installed by ovsdpdk.Flows,
// the way the agent will do it.
type host struct {
	t        testing.TB
	name     string // binding:host_id
	datapath string // the bridges' datapath type: dpNetdev or dpSystem
	o        *lab.OVS
	c        *ovsdpdk.Client
	ports    *ovsdpdk.Ports
	flows    *ovsdpdk.Flows
	hw       *hwdetect.Node
	comp     *offload.Compiler
	vlans    map[string]uint16 // local VLAN allocation, kept across reconciles
	vms      map[string]*lab.VM
	log      *zap.Logger
	// l3 realises the routers the plan gives a non-OpenFlow backend (l3_linux_test.go);
	// nil: nothing to realise.
	l3 l3Backend

	// Last reconcile: what explain reads.
	layout offload.NodeLayout
	ir     *offload.IR
	plan   *offload.Plan
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// The OVS datapaths the scenarios run on: the host tier's userspace datapath, and the
// kernel datapath of the fallback path (kernel OVS + netfilter, for a node whose NIC
// offloads nothing), which only the kernel lab's guest has (fallback_kernel_test.go).
const (
	dpNetdev = "netdev"
	dpSystem = "system"
)

// newHost starts the host's OVS for the userspace datapath (no layout yet: see apply).
func newHost(t testing.TB, name string) *host { return newHostOn(t, name, dpNetdev) }

// newHostOn starts the host's OVS for bridges of datapath type dp; with dpSystem the
// openvswitch kernel module is loaded first (or the test skips).
func newHostOn(t testing.TB, name, dp string) *host {
	t.Helper()
	return newHostOpts(t, name, dp, lab.Options{})
}

// newHostOpts is newHostOn with more of the lab's options (other_config such as
// userspace-tso-enable for the benchmarks).
func newHostOpts(t testing.TB, name, dp string, opts lab.Options) *host {
	t.Helper()
	lab.RequireOVS(t)
	lab.Require(t, "ovs-vsctl", "tcpdump", "busybox")
	opts.SystemDatapath = dp == dpSystem
	o := lab.StartOVS(t, opts)
	// No IPv6 in the host's namespace: the host-side ends of the VMs' veths and OVS's
	// internal ports would send router solicitations, noise in the VMs' captures.
	for _, k := range []string{"all", "default"} {
		if _, err := lab.Run("ip", "netns", "exec", o.NS, "sysctl", "-qw", "net.ipv6.conf."+k+".disable_ipv6=1"); err != nil {
			t.Fatal(err)
		}
	}
	log := lab.Logger(t).Named(name) // safe if libovsdb logs after Close
	c, err := ovsdpdk.Connect(ctxFor(t, 30*time.Second), ovsdpdk.Options{Endpoint: o.Endpoint, Logger: log.Named("ovsdb")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	of := ovsdpdk.NewOfctl(ovsdpdk.OfctlOptions{RunDir: o.Dir})
	return &host{t: t, name: name, datapath: dp, o: o, c: c, ports: ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{}),
		flows: ovsdpdk.NewFlows(of, ovsdpdk.FlowsOptions{Logger: log}), vlans: map[string]uint16{},
		vms: map[string]*lab.VM{}, log: log}
}

// nodeYAML is a node config: netdev datapath, br-int, physnet1 on br-phys1 (with the
// given uplink, or none), and a VXLAN tunnel bridge when tunnelCIDR is set.
func nodeYAML(uplink, tunnelCIDR string) string { return nodeYAMLOn(dpNetdev, uplink, tunnelCIDR) }

// nodeYAML is the node config of this host's datapath.
func (h *host) nodeYAML(uplink, tunnelCIDR string) string {
	return nodeYAMLOn(h.datapath, uplink, tunnelCIDR)
}

// nodeYAMLOn is nodeYAML with the datapath dp.
func nodeYAMLOn(dp, uplink, tunnelCIDR string) string {
	y := "datapath: " + dp + "\nintegration_bridge: br-int\nphysnets:\n  physnet1: {bridge: br-phys1"
	if uplink != "" {
		y += ", interface: " + uplink
	}
	y += "}\n"
	if tunnelCIDR != "" {
		y += "tunnel:\n  local_ip: " + tunnelCIDR + "\n  types: [vxlan]\n"
	}
	return y
}

// apply lays the node out (offlane node apply) and detects its capabilities (live, with
// the OVS probe on this host's OVS).
func (h *host) apply(yaml string) {
	t := h.t
	t.Helper()
	ctx := ctxFor(t, 2*time.Minute)
	cfg, err := ovsdpdk.ParseNodeConfig("node.yaml", strings.NewReader(yaml))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ovsdpdk.Resolve(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.ApplyNode(ctx, ovsdpdk.NodeLayout(spec), ovsdpdk.ApplyOptions{Wait: true}); err != nil {
		t.Fatal(err)
	}
	h.hw, err = hwdetect.Detect(ctx, hwdetect.Options{OVS: ovsdpdk.NewProber(h.o.Endpoint), Logger: h.log})
	if err != nil {
		t.Fatal(err)
	}
	if h.hw.OVS == nil || !h.hw.OVS.Reachable {
		t.Fatalf("hwdetect did not reach the lab OVS: %+v", h.hw.OVS)
	}
}

// attach creates the VM of a tenant port (a namespace with eth0 carrying the port's MAC
// and first fixed IP in a /24) and attaches it to br-int with ovsdpdk's Ports API
// (external_ids:iface-id = port ID), waiting until OVS gives it an OpenFlow port.
func (h *host) attach(p controlplane.Port, vmName string, mtu int) *lab.VM {
	t := h.t
	t.Helper()
	vm := h.o.AddVM(t, vmName, lab.VMOptions{IP: p.FixedIPs[0].IPAddress + "/24", MAC: p.MACAddress, MTU: mtu})
	ctx := ctxFor(t, time.Minute)
	if err := h.ports.PortAdd(ctx, ovsdpdk.Port{Name: vmName, Type: ovsdpdk.PortSystem, IfaceID: p.ID, MAC: p.MACAddress}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ports.PortWait(ctx, vmName, func(s *ovsdpdk.PortStatus) bool { return s.OFPort > 0 }); err != nil {
		t.Fatal(err)
	}
	h.vms[p.ID] = vm
	return vm
}

// compile runs the pipeline up to the flows: layout and ofports from OVSDB, Build, Plan,
// Compiler.Update. It fails the test on anything the tests do not expect (warnings,
// unbound ports, conflicts, ports without an OpenFlow backend).
func (h *host) compile(snap offload.Snapshot, vteps map[string]netip.Addr) *offload.Delta {
	t := h.t
	t.Helper()
	layout, ofports, err := h.c.FlowLayout(ctxFor(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if h.l3 != nil {
		layout, ofports = h.realiseL3(snap, vteps, layout, ofports) // l3_linux_test.go
	}
	ir, err := offload.Build(offload.BuildInput{Host: h.name, Snapshot: snap, VTEPs: vteps, OFPorts: ofports, LocalVLANs: h.vlans})
	if err != nil {
		t.Fatal(err)
	}
	if len(ir.Warnings) > 0 {
		t.Fatalf("%s: build warnings: %v", h.name, ir.Warnings)
	}
	h.vlans = ir.LocalVLANs()
	plan := offload.PlanNode(ir, h.hw, layout)
	for _, pp := range plan.Ports {
		if pp.Backend(offload.FeatureL2) != offload.BackendOpenFlow {
			t.Fatalf("%s: port %s not planned on OpenFlow:\n%s", h.name, pp.PortID, plan)
		}
	}
	if h.comp == nil {
		if h.comp, err = offload.NewCompiler(layout); err != nil {
			t.Fatal(err)
		}
	}
	delta, err := h.comp.Update(ir, plan)
	if err != nil {
		t.Fatal(err)
	}
	if u := h.comp.Unbound(); len(u) > 0 {
		t.Fatalf("%s: ports without an ofport: %v", h.name, u)
	}
	if cf := h.comp.Conflicts(); len(cf) > 0 {
		t.Fatalf("%s: compile conflicts: %v", h.name, cf)
	}
	h.layout, h.ir, h.plan = layout, ir, plan
	return delta
}

// bridges are the layout's bridges, the ones a sync covers.
func bridges(l offload.NodeLayout) []string {
	out := []string{l.IntegrationBridge}
	if l.TunnelBridge != "" {
		out = append(out, l.TunnelBridge)
	}
	for _, b := range l.PhysnetBridges {
		out = append(out, b)
	}
	if l.ExternalBridge != "" {
		out = append(out, l.ExternalBridge)
	}
	return out
}

// reconcile is a full reconcile: compile, then one full Sync (one bundle per bridge).
func (h *host) reconcile(snap offload.Snapshot, vteps map[string]netip.Addr) *ovsdpdk.SyncResult {
	h.t.Helper()
	h.compile(snap, vteps)
	res, err := h.flows.Sync(ctxFor(h.t, 5*time.Minute), bridges(h.layout), h.comp.Flows())
	if err != nil {
		h.t.Fatal(err)
	}
	return res
}

// update is an incremental reconcile: compile, then Flows.Update with the delta only.
func (h *host) update(snap offload.Snapshot, vteps map[string]netip.Addr) *offload.Delta {
	h.t.Helper()
	d := h.compile(snap, vteps)
	if err := h.flows.Update(ctxFor(h.t, 5*time.Minute), d); err != nil {
		h.t.Fatal(err)
	}
	return d
}

// --- tenant model values ---------------------------------------------------------------

func strp(s string) *string { return &s }
func intp(i int) *int       { return &i }

func network(id, tenant, typ string, seg int) controlplane.Network {
	n := controlplane.Network{ID: id, Name: id, TenantID: tenant, ProjectID: tenant, AdminStateUp: true, NetworkType: typ,
		MTU: 1500, PortSecurityEnabled: true, SegmentationID: intp(seg)}
	if typ == offload.SegVLAN || typ == offload.SegFlat {
		n.PhysicalNetwork = strp("physnet1")
	}
	if offload.IsTunnel(typ) {
		n.MTU = 1450
	}
	return n
}

func port(id, tenant, net, host, mac, ip string, sgs ...string) controlplane.Port {
	return controlplane.Port{ID: id, Name: id, TenantID: tenant, ProjectID: tenant, NetworkID: net, HostID: host,
		MACAddress: mac, AdminStateUp: true, PortSecurityEnabled: true, VNICType: controlplane.VNICNormal,
		SecurityGroups: sgs, FixedIPs: []controlplane.FixedIP{{SubnetID: "sub-" + net, IPAddress: ip}}}
}

type rule struct {
	id, dir, proto string
	min, max       int
	cidr, group    string
}

func secgroup(id, tenant string, rules ...rule) controlplane.SecurityGroup {
	g := controlplane.SecurityGroup{ID: id, Name: id, TenantID: tenant, ProjectID: tenant, Stateful: true}
	for _, r := range rules {
		cr := controlplane.SecurityGroupRule{ID: r.id, SecurityGroupID: id, Direction: r.dir, EtherType: "IPv4", TenantID: tenant}
		if r.proto != "" {
			cr.Protocol = strp(r.proto)
		}
		if r.min != 0 {
			cr.PortRangeMin, cr.PortRangeMax = intp(r.min), intp(r.max)
		}
		if r.cidr != "" {
			cr.RemoteIPPrefix = strp(r.cidr)
		}
		if r.group != "" {
			cr.RemoteGroupID = strp(r.group)
		}
		g.Rules = append(g.Rules, cr)
	}
	return g
}

// openGroup lets everything in and out: tests of L2 isolation use it so that only the
// network can keep traffic apart.
func openGroup(id, tenant string) controlplane.SecurityGroup {
	return secgroup(id, tenant, rule{id: id + "-in", dir: "ingress", cidr: "0.0.0.0/0"}, rule{id: id + "-out", dir: "egress"})
}

// --- traffic -----------------------------------------------------------------------------

// pingOK waits (polling, up to a minute: the first packets may wait for ARP, MAC
// learning or tunnel neighbour resolution on a loaded host) until from reaches dst, then
// requires 5 more pings without a loss.
func pingOK(t testing.TB, from *lab.VM, dst string, extra ...string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := ping(from, dst, 1, extra...)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s cannot reach %s: %v\n%s", from, dst, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, err := ping(from, dst, 5, extra...); err != nil {
		t.Fatalf("%s → %s lost packets: %v\n%s", from, dst, err, out)
	}
}

// pingFails requires that none of 3 pings from from to dst is answered.
func pingFails(t testing.TB, from *lab.VM, dst string, extra ...string) {
	t.Helper()
	out, err := ping(from, dst, 3, extra...)
	if err == nil || !strings.Contains(out, " 0 received") {
		t.Fatalf("%s reached %s, which it must not:\n%s", from, dst, out)
	}
}

func ping(from *lab.VM, dst string, n int, extra ...string) (string, error) {
	args := append([]string{"netns", "exec", from.NS, "ping", "-n", "-c", strconv.Itoa(n), "-i", "0.2", "-W", "1"}, extra...)
	args = append(args, dst)
	out, err := exec.Command("ip", args...).CombinedOutput()
	return string(out), err
}

// tcpConnect reports whether a TCP connection from from to dst:port is accepted (the
// listener answers "ok"; see listen).
func tcpConnect(from *lab.VM, dst string, port int) bool {
	out, _ := exec.Command("ip", "netns", "exec", from.NS, "busybox", "nc", "-w", "2", dst, strconv.Itoa(port)).CombinedOutput()
	return strings.Contains(string(out), "ok")
}

// listen runs a TCP listener on port inside the VM (busybox nc, persistent, answering
// "ok" to every connection) until cleanup.
func listen(t testing.TB, vm *lab.VM, port int) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", vm.NS, "busybox", "nc", "-ll", "-p", strconv.Itoa(port), "-e", "busybox", "echo", "ok")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// Ready when the socket listens.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := vm.Exec("busybox", "netstat", "-ltn")
		if strings.Contains(out, ":"+strconv.Itoa(port)+" ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("listener on %s:%d did not start: %s", vm, port, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pinStaticNeighbours gives every VM a permanent ARP entry for each other VM of its
// network, so that no VM sends ARP (neighbour probes) by itself: during a capture, the
// only traffic is what the test sends.
func pinStaticNeighbours(t *testing.T, snap offload.Snapshot, vms map[string]*lab.VM) {
	t.Helper()
	for _, p := range snap.Ports {
		for _, q := range snap.Ports {
			if p.ID == q.ID || p.NetworkID != q.NetworkID || vms[p.ID] == nil {
				continue
			}
			if _, err := vms[p.ID].Exec("ip", "neigh", "replace", q.FixedIPs[0].IPAddress, "lladdr", q.MACAddress, "dev", "eth0", "nud", "permanent"); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// eventually polls cond until it holds or a minute passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var tagRe = regexp.MustCompile(`\b(vni|vlan) (\d+)`)

// wireTags counts the VXLAN network identifiers ("vni 1001") and 802.1Q tags
// ("vlan 100") in tcpdump -e lines.
func wireTags(lines []string) map[string]int {
	out := map[string]int{}
	for _, l := range lines {
		for _, m := range tagRe.FindAllStringSubmatch(l, -1) {
			out[m[1]+" "+m[2]]++
		}
	}
	return out
}

func showLines(lines []string) string {
	if len(lines) > 20 {
		lines = append(lines[:20:20], fmt.Sprintf("... (%d more)", len(lines)-20))
	}
	return strings.Join(lines, "\n")
}
