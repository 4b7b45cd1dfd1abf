package e2e_test

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/kernel"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

// The nftables router backend on real OVS hosts: the routers the planner gives nftables
// become qrouter namespaces (kernel.Routers), their qr-/qg- veths plugged into the
// host's br-int with iface-id = the router port, which the next compile turns into
// ordinary local ports of the L2 pipeline.

// nftBackend realises the plan's nftables routers on each host (the l3Backend of the
// shared L3 scenarios).
type nftBackend struct {
	routers map[*host]*kernel.Routers
}

func newNFTBackend() *nftBackend { return &nftBackend{routers: map[*host]*kernel.Routers{}} }

func (b *nftBackend) name() string { return "nftables" }

// of is the host's router backend: its namespaces are named after the host's lab (so the
// lab sweeper knows them) and its veths' host ends live in the host's OVS namespace.
func (b *nftBackend) of(t testing.TB, h *host) *kernel.Routers {
	if rs := b.routers[h]; rs != nil {
		return rs
	}
	rs := kernel.NewRouters(kernel.RoutersOptions{NamespacePrefix: "ol" + h.o.ID + "-qrouter-",
		HostNamespace: h.o.NS, Switch: h.ports, Logger: h.log})
	t.Cleanup(func() {
		if _, err := rs.Prune(context.Background(), nil); err != nil {
			t.Errorf("%s: prune routers: %v", h.name, err)
		}
	})
	b.routers[h] = rs
	return rs
}

// realise ensures every router the plan put on nftables (with the floating IPs of ports
// bound to this host or unbound: a floating IP lives on its port's host, as in the
// OpenFlow backend), prunes the others, and waits until OVS gave every router port an
// OpenFlow port. The caller compiles again so the router ports join the L2 pipeline.
func (b *nftBackend) realise(t testing.TB, h *host, ir *offload.IR, plan *offload.Plan) {
	t.Helper()
	rs := b.of(t, h)
	ctx := ctxFor(t, 2*time.Minute)
	var keep, names []string
	for _, rp := range plan.Routers {
		if rp.Backend != offload.BackendNFTables {
			continue
		}
		in, err := kernel.InputFromIR(ir, rp.RouterID)
		if err != nil {
			t.Fatal(err)
		}
		in.FloatingIPs = slices.DeleteFunc(in.FloatingIPs, func(f *offload.FloatingIP) bool { return f.Host != "" && f.Host != h.name })
		changes, err := rs.Ensure(ctx, in)
		if err != nil {
			t.Fatalf("%s: %v", h.name, err)
		}
		if len(changes) > 0 {
			t.Logf("%s: router %s: %d changes (%s)", h.name, rp.RouterID, len(changes), rp.Reason)
		}
		keep = append(keep, rp.RouterID)
		spec, err := kernel.Compile(in, rs.Namespace(rp.RouterID))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range spec.Ports {
			names = append(names, p.IfName)
		}
	}
	if _, err := rs.Prune(ctx, keep); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if _, err := h.ports.PortWait(ctx, n, func(s *ovsdpdk.PortStatus) bool { return s.OFPort > 0 }); err != nil {
			t.Fatalf("%s: router port %s: %v", h.name, n, err)
		}
	}
}

// --- the tenant model of the tests -----------------------------------------------------

// nftL3World is one or more tenants, each with a router between its subnets and the
// shared flat external network "ext" (172.24.4.0/24, upstream gateway .1 = the external
// server).
type nftL3World struct {
	snap offload.Snapshot
}

func (w *nftL3World) subnet(net, tenant, cidr, gw string) {
	w.snap.Subnets = append(w.snap.Subnets, controlplane.Subnet{ID: "sub-" + net, Name: net, TenantID: tenant, ProjectID: tenant,
		NetworkID: net, IPVersion: 4, CIDR: cidr, GatewayIP: strp(gw)})
}

func newNFTL3World() *nftL3World {
	w := &nftL3World{}
	ext := network("ext", "admin", offload.SegFlat, 0)
	ext.SegmentationID = nil
	ext.External = true
	w.snap.Networks = append(w.snap.Networks, ext)
	w.subnet("ext", "admin", "172.24.4.0/24", "172.24.4.1")
	return w
}

// router adds tenant's router with one interface per (network, gateway IP) and a
// gateway port on ext with extIP, SNAT on.
func (w *nftL3World) router(id, tenant, extIP string, ifs ...[2]string) {
	for i, nf := range ifs {
		p := controlplane.Port{ID: id + "-if" + fmt.Sprint(i), TenantID: tenant, ProjectID: tenant, NetworkID: nf[0], AdminStateUp: true,
			MACAddress: fmt.Sprintf("fa:16:3e:%02x:01:%02x", len(w.snap.Routers)+1, i+1), DeviceOwner: controlplane.OwnerRouterInterface, DeviceID: id,
			FixedIPs: []controlplane.FixedIP{{SubnetID: "sub-" + nf[0], IPAddress: nf[1]}}}
		w.snap.Ports = append(w.snap.Ports, p)
	}
	gw := controlplane.Port{ID: id + "-gw", TenantID: tenant, NetworkID: "ext", AdminStateUp: true,
		MACAddress: fmt.Sprintf("fa:16:3e:%02x:01:ff", len(w.snap.Routers)+1), DeviceOwner: controlplane.OwnerRouterGateway, DeviceID: id,
		FixedIPs: []controlplane.FixedIP{{SubnetID: "sub-ext", IPAddress: extIP}}}
	w.snap.Ports = append(w.snap.Ports, gw)
	w.snap.Routers = append(w.snap.Routers, controlplane.Router{ID: id, Name: id, TenantID: tenant, ProjectID: tenant, AdminStateUp: true,
		ExternalGatewayInfo: &controlplane.GatewayInfo{NetworkID: "ext", EnableSNAT: true,
			ExternalFixedIPs: []controlplane.FixedIP{{SubnetID: "sub-ext", IPAddress: extIP}}}, GatewayPortID: gw.ID})
}

// vmPort adds a VM port on net (open security group) bound to host.
func (w *nftL3World) vmPort(id, tenant, net, host, mac, ip string) controlplane.Port {
	if !slices.ContainsFunc(w.snap.SecurityGroups, func(g controlplane.SecurityGroup) bool { return g.ID == "open-"+tenant }) {
		w.snap.SecurityGroups = append(w.snap.SecurityGroups, openGroup("open-"+tenant, tenant))
	}
	p := port(id, tenant, net, host, mac, ip, "open-"+tenant)
	w.snap.Ports = append(w.snap.Ports, p)
	return p
}

func (w *nftL3World) floatingIP(id, tenant, router, fip, portID, fixed string) {
	w.snap.FloatingIPs = append(w.snap.FloatingIPs, controlplane.FloatingIP{ID: id, TenantID: tenant, ProjectID: tenant,
		FloatingNetworkID: "ext", FloatingIPAddress: fip, PortID: strp(portID), FixedIPAddress: strp(fixed), RouterID: strp(router)})
}

// nftExternal makes the external server: a namespace VM whose host end is the physnet
// uplink of br-phys1, so the flat external network reaches it untagged.
func nftExternal(t *testing.T, h *host) *lab.VM {
	t.Helper()
	return h.o.AddVM(t, "extsrv", lab.VMOptions{IP: "172.24.4.1/24"})
}

// nftBring compiles, realises the nftables routers, and compiles and syncs again (the
// router ports are local ports now); it returns the router plans.
func nftBring(t *testing.T, b *nftBackend, h *host, snap offload.Snapshot, vteps map[string]netip.Addr) {
	t.Helper()
	h.compile(snap, vteps)
	if len(h.plan.Routers) == 0 {
		t.Fatalf("%s: the plan has no routers", h.name)
	}
	for _, rp := range h.plan.Routers {
		if rp.Backend != offload.BackendNFTables {
			t.Fatalf("%s: router %s planned on %s (%s), want nftables (l3_backend nftables)", h.name, rp.RouterID, rp.Backend, rp.Reason)
		}
	}
	b.realise(t, h, h.ir, h.plan)
	h.reconcile(snap, vteps)
	for _, p := range snap.Ports {
		if strings.HasPrefix(p.DeviceOwner, "network:router") && h.plan.Port(p.ID) == nil {
			t.Fatalf("%s: router port %s is plugged but not a local port of the plan", h.name, p.ID)
		}
	}
}

func vmRoute(t *testing.T, vm *lab.VM, gw string) {
	t.Helper()
	if _, err := vm.Exec("ip", "route", "replace", "default", "via", gw); err != nil {
		t.Fatal(err)
	}
}

// nftListenWho runs a TCP listener on port inside vm that answers every connection with
// `netstat -tn` run inside the VM: the connection's own line shows the source address
// the server really saw.
func nftListenWho(t *testing.T, vm *lab.VM, port int) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", vm.NS, "busybox", "nc", "-ll", "-p", fmt.Sprint(port), "-e", "busybox", "netstat", "-tn")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	eventually(t, fmt.Sprintf("listener on %s:%d", vm, port), func() bool {
		out, _ := vm.Exec("busybox", "netstat", "-ltn")
		return strings.Contains(out, fmt.Sprintf(":%d ", port))
	})
}

// nftSourceOf connects from vm to dst:port (a nftListenWho listener, retrying up to a
// minute) and returns the source address the listener saw for that connection.
func nftSourceOf(t *testing.T, from *lab.VM, dst string, port int) string {
	t.Helper()
	var src string
	eventually(t, fmt.Sprintf("%s connects to %s:%d", from, dst, port), func() bool {
		out, _ := from.Exec("busybox", "nc", "-w", "2", dst, fmt.Sprint(port))
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			// tcp 0 0 172.24.4.1:8080 172.24.4.10:38834 ESTABLISHED (or CLOSE_WAIT: the
			// client's stdin is empty, so it may have sent its FIN before netstat runs)
			if len(f) >= 6 && strings.HasSuffix(f[3], fmt.Sprintf(":%d", port)) && (f[5] == "ESTABLISHED" || f[5] == "CLOSE_WAIT") {
				src = strings.TrimPrefix(f[4][:strings.LastIndex(f[4], ":")], "::ffff:") // busybox nc listens on IPv6
				return true
			}
		}
		return false
	})
	return src
}

// nftTTL pings dst once from vm (after pingOK) and returns the reply's TTL.
func nftTTL(t *testing.T, from *lab.VM, dst string) string {
	t.Helper()
	pingOK(t, from, dst)
	out, err := ping(from, dst, 1)
	if err != nil {
		t.Fatal(err)
	}
	if i := strings.Index(out, "ttl="); i >= 0 {
		return strings.Fields(out[i+4:])[0]
	}
	t.Fatalf("no TTL in %s", out)
	return ""
}

// TestLabL3NFTablesOneHost: two subnets of one tenant behind a router realised by the
// nftables backend on one OVS host, with the external network on br-phys1's uplink:
// routing with one hop, SNAT to the router's address seen by the external server, a
// floating IP both ways (seen as the source of the VM's own connections, and reaching
// the VM from outside with the server's address intact).
func TestLabL3NFTablesOneHost(t *testing.T) {
	w := newNFTL3World()
	w.snap.Networks = append(w.snap.Networks, network("na", "t1", offload.SegVLAN, 101), network("nb", "t1", offload.SegVLAN, 102))
	w.subnet("na", "t1", "10.0.1.0/24", "10.0.1.1")
	w.subnet("nb", "t1", "10.0.2.0/24", "10.0.2.1")
	w.router("r1", "t1", "172.24.4.10", [2]string{"na", "10.0.1.1"}, [2]string{"nb", "10.0.2.1"})
	pa := w.vmPort("pa", "t1", "na", "h1", "fa:16:3e:0a:00:05", "10.0.1.5")
	pb := w.vmPort("pb", "t1", "nb", "h1", "fa:16:3e:0b:00:05", "10.0.2.5")
	w.floatingIP("fip-b", "t1", "r1", "172.24.4.20", "pb", "10.0.2.5")

	h := newHost(t, "h1")
	ext := nftExternal(t, h)
	h.apply(nodeYAML(ext.HostIf, "") + "l3_backend: nftables\n")
	va, vb := h.attach(pa, "va", 0), h.attach(pb, "vb", 0)
	vmRoute(t, va, "10.0.1.1")
	vmRoute(t, vb, "10.0.2.1")
	b := newNFTBackend()
	nftBring(t, b, h, w.snap, nil)
	t.Logf("plan:\n%s", h.plan)

	if ttl := nftTTL(t, va, "10.0.2.5"); ttl != "63" {
		t.Errorf("va → vb: reply TTL %s, want 63 (one routed hop)", ttl)
	}
	nftListenWho(t, ext, 8080)
	if src := nftSourceOf(t, va, "172.24.4.1", 8080); src != "172.24.4.10" {
		t.Errorf("SNAT: the external server saw %s, want the router's 172.24.4.10", src)
	}
	if src := nftSourceOf(t, vb, "172.24.4.1", 8080); src != "172.24.4.20" {
		t.Errorf("floating IP outbound: the external server saw %s, want 172.24.4.20", src)
	}
	nftListenWho(t, vb, 8081)
	if src := nftSourceOf(t, ext, "172.24.4.20", 8081); src != "172.24.4.1" {
		t.Errorf("floating IP inbound: vb saw %s, want the external server 172.24.4.1", src)
	}
	pingOK(t, ext, "172.24.4.20")

	// The router's ports are L2 ports of the pipeline now; nothing changes on a resync.
	rs := b.of(t, h)
	if ids, err := rs.List(); err != nil || !slices.Equal(ids, []string{"r1"}) {
		t.Fatalf("routers on h1: %v %v", ids, err)
	}
	b.realise(t, h, h.ir, h.plan)
	if res := h.reconcile(w.snap, nil); res.Changes() != 0 {
		t.Errorf("a resync after realise changed %d flows", res.Changes())
	}
}

// TestLabRoutingNFTables runs the shared routing scenario (runRouting) with the routers
// realised as qrouter namespaces, and checks the namespaces' state.
func TestLabRoutingNFTables(t *testing.T) {
	b := newNFTBackend()
	hosts := runRouting(t, dpNetdev, b)
	for _, h := range hosts {
		assertNFTablesL3(t, b, h, "r1")
	}
}

// TestLabNATNFTables runs the shared NAT scenario (runNAT: two tenants with the same
// CIDR SNATing at once, a floating IP both ways) on the nftables backend.
func TestLabNATNFTables(t *testing.T) {
	b := newNFTBackend()
	n := runNAT(t, dpNetdev, b)
	assertNFTablesL3(t, b, n.h, "ra", "rb")
}

// assertNFTablesL3: every router is planned on nftables and realised: its namespace
// exists, its table read back from the kernel is what the IR compiles to, and its ports
// are attached to br-int with their OpenFlow ports.
func assertNFTablesL3(t *testing.T, b *nftBackend, h *host, routers ...string) {
	t.Helper()
	rs := b.of(t, h)
	ids, err := rs.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range routers {
		rp := h.plan.Router(id)
		if rp == nil || rp.Backend != offload.BackendNFTables {
			t.Fatalf("%s: router %s plan %+v, want nftables", h.name, id, rp)
		}
		if !slices.Contains(ids, id) {
			t.Fatalf("%s: router %s has no namespace (have %v)", h.name, id, ids)
		}
		in, err := kernel.InputFromIR(h.ir, id)
		if err != nil {
			t.Fatal(err)
		}
		in.FloatingIPs = slices.DeleteFunc(in.FloatingIPs, func(f *offload.FloatingIP) bool { return f.Host != "" && f.Host != h.name })
		spec, err := kernel.Compile(in, rs.Namespace(id))
		if err != nil {
			t.Fatal(err)
		}
		got, err := rs.Ruleset(id)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(spec.Ruleset) {
			t.Errorf("%s: router %s table read back:\n%s\nwant:\n%s", h.name, id, got, spec.Ruleset)
		}
		for _, p := range spec.Ports {
			st, err := h.ports.PortGet(ctxFor(t, 10*time.Second), p.IfName)
			if err != nil || st.IfaceID != p.IfaceID || st.OFPort <= 0 {
				t.Errorf("%s: router port %s on br-int: %+v %v", h.name, p.IfName, st, err)
			}
		}
		t.Logf("%s: router %s (%s):\n%s", h.name, id, rp.Reason, got)
	}
}
