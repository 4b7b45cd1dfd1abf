package e2e_test

import (
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

// Routing and NAT proofs, written once for every L3 backend: the scenarios (runRouting,
// runNAT) check only traffic and what the external server sees; each backend's own
// state is checked apart (assertOpenFlowL3 here, the nftables tests beside).

// l3Backend realises the routers a plan gives its backend on one host.
type l3Backend interface {
	name() string // "openflow" | "nftables"
	// realise is called on host h after each snapshot change, before h.compile: it
	// plugs/unplugs what the backend needs (qrouter namespaces) for the routers the
	// plan gave it. The openflow backend does nothing.
	realise(t testing.TB, h *host, ir *offload.IR, plan *offload.Plan)
}

type openflowL3 struct{}

func (openflowL3) name() string                                          { return "openflow" }
func (openflowL3) realise(testing.TB, *host, *offload.IR, *offload.Plan) {}

// realiseL3 is the build → plan → realise step before a compile: the backend plugs its
// ports, then the layout and OpenFlow ports are read again.
func (h *host) realiseL3(snap offload.Snapshot, vteps map[string]netip.Addr, layout offload.NodeLayout, ofports map[string]int) (offload.NodeLayout, map[string]int) {
	t := h.t
	t.Helper()
	ir, err := offload.Build(offload.BuildInput{Host: h.name, Snapshot: snap, VTEPs: vteps, OFPorts: ofports, LocalVLANs: h.vlans})
	if err != nil {
		t.Fatal(err)
	}
	h.l3.realise(t, h, ir, offload.PlanNode(ir, h.hw, layout))
	layout, ofports, err = h.c.FlowLayout(ctxFor(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return layout, ofports
}

// routedReconcile is a full reconcile followed by what the agent does after one: probe
// the external next hops of OpenFlow routers (ARP from the gateway, learned by the
// pipeline). A second reconcile must find nothing to change.
func (h *host) routedReconcile(snap offload.Snapshot, vteps map[string]netip.Addr) {
	t := h.t
	t.Helper()
	if res := h.reconcile(snap, vteps); res.Changes() == 0 {
		t.Fatalf("%s: the first sync installed nothing", h.name)
	}
	if res := h.reconcile(snap, vteps); res.Changes() != 0 {
		t.Fatalf("%s: a second reconcile without changes sent %d flow mods: %+v", h.name, res.Changes(), res.Bridges)
	}
	of := ovsdpdk.NewOfctl(ovsdpdk.OfctlOptions{RunDir: h.o.Dir})
	if err := ovsdpdk.ProbeNeighbours(ctxFor(t, 30*time.Second), of, h.comp.NeighbourProbes()); err != nil {
		t.Fatal(err)
	}
}

// publishDatapath waits until ovs-vswitchd has filled the Datapath row of the host's
// datapath type (which `offlane node apply` creates, as OVN's controller does) with the
// datapath's capabilities (ct_state_nat, ...), detecting the host again: the planner
// then decides from what the real datapath reports.
func publishDatapath(t testing.TB, h *host) {
	t.Helper()
	eventually(t, "ovs-vswitchd publishes the "+h.datapath+" datapath's capabilities", func() bool {
		hw, err := hwdetect.Detect(ctxFor(t, time.Minute), hwdetect.Options{OVS: ovsdpdk.NewProber(h.o.Endpoint), Logger: h.log})
		if err != nil {
			t.Fatal(err)
		}
		h.hw = hw
		return hw.OVS != nil && hw.OVS.DatapathCapabilities[h.datapath]["ct_state_nat"] == "true"
	})
}

// l3NodeYAML is nodeYAML (netdev datapath) with the L3 backend chosen.
func l3NodeYAML(be l3Backend, uplink, tunnelCIDR string) string {
	return nodeYAML(uplink, tunnelCIDR) + "l3_backend: " + be.name() + "\n"
}

// l3NodeYAML is the host's nodeYAML (its datapath) with the L3 backend chosen.
func (h *host) l3NodeYAML(be l3Backend, uplink, tunnelCIDR string) string {
	return h.nodeYAML(uplink, tunnelCIDR) + "l3_backend: " + be.name() + "\n"
}

func subnet(id, net, cidr, gw string) controlplane.Subnet {
	return controlplane.Subnet{ID: id, Name: id, NetworkID: net, CIDR: cidr, GatewayIP: strp(gw), IPVersion: 4, EnableDHCP: false}
}

// routerPort is a router's (or floating IP's) own port, unbound, as the control plane
// creates it.
func routerPort(id, tenant, owner, device, net, mac, ip string) controlplane.Port {
	return controlplane.Port{ID: id, Name: id, TenantID: tenant, ProjectID: tenant, NetworkID: net, MACAddress: mac,
		AdminStateUp: true, DeviceOwner: owner, DeviceID: device, VNICType: controlplane.VNICNormal,
		FixedIPs: []controlplane.FixedIP{{SubnetID: "sub-" + net, IPAddress: ip}}}
}

// withRoute gives a VM a default route through its subnet's gateway.
func withRoute(t testing.TB, vm *lab.VM, gw string) {
	t.Helper()
	if out, err := vm.Exec("ip", "route", "replace", "default", "via", gw); err != nil {
		t.Fatalf("%s: default route: %v: %s", vm, err, out)
	}
}

// routingSnapshot: tenant A's networks a-x (10.1.0.0/24) and a-y (10.2.0.0/24), both
// VXLAN, joined by router r1; vx1 on a-x and vy1 on a-y on node1, vy2 on a-y on node2.
func routingSnapshot() offload.Snapshot {
	return offload.Snapshot{
		Networks: []controlplane.Network{network("a-x", "tenant-a", offload.SegVXLAN, 1001), network("a-y", "tenant-a", offload.SegVXLAN, 1002)},
		Subnets:  []controlplane.Subnet{subnet("sub-a-x", "a-x", "10.1.0.0/24", "10.1.0.1"), subnet("sub-a-y", "a-y", "10.2.0.0/24", "10.2.0.1")},
		Ports: []controlplane.Port{
			port("vx1", "tenant-a", "a-x", "node1", "fa:16:3e:01:00:05", "10.1.0.5", "open-a"),
			port("vy1", "tenant-a", "a-y", "node1", "fa:16:3e:02:00:05", "10.2.0.5", "open-a"),
			port("vy2", "tenant-a", "a-y", "node2", "fa:16:3e:02:00:06", "10.2.0.6", "open-a"),
			routerPort("r1-x", "tenant-a", controlplane.OwnerRouterInterface, "r1", "a-x", "fa:16:3e:a1:00:01", "10.1.0.1"),
			routerPort("r1-y", "tenant-a", controlplane.OwnerRouterInterface, "r1", "a-y", "fa:16:3e:a1:00:02", "10.2.0.1"),
		},
		SecurityGroups: []controlplane.SecurityGroup{openGroup("open-a", "tenant-a")},
		Routers:        []controlplane.Router{{ID: "r1", Name: "r1", TenantID: "tenant-a", ProjectID: "tenant-a", AdminStateUp: true}},
	}
}

// runRouting: VMs of two subnets behind one router reach each other on one host and
// across two hosts over VXLAN; the router answers for its gateway address; a routed
// packet arrives with its TTL decremented once, and traceroute finds the destination
// at the second hop. The hosts run datapath dp.
// twoL3Hosts are node1 and node2 on datapath dp with routers on backend be, joined by
// an underlay (10.99.0.1 and .2 are their VTEPs), their Datapath rows published.
func twoL3Hosts(t *testing.T, dp string, be l3Backend) (h1, h2 *host, hosts map[string]*host, vteps map[string]netip.Addr) {
	t.Helper()
	h1, h2 = newHostOn(t, "node1", dp), newHostOn(t, "node2", dp)
	lab.ConnectUnderlay(t, h1.o, h2.o, "10.99.0.1/24", "10.99.0.2/24")
	h1.apply(h1.l3NodeYAML(be, "", "10.99.0.1/24"))
	h2.apply(h2.l3NodeYAML(be, "", "10.99.0.2/24"))
	publishDatapath(t, h1)
	publishDatapath(t, h2)
	hosts = map[string]*host{"node1": h1, "node2": h2}
	vteps = map[string]netip.Addr{"node1": netip.MustParseAddr("10.99.0.1"), "node2": netip.MustParseAddr("10.99.0.2")}
	return h1, h2, hosts, vteps
}

func runRouting(t *testing.T, dp string, be l3Backend) map[string]*host {
	snap := routingSnapshot()
	h1, h2, hosts, vteps := twoL3Hosts(t, dp, be)
	vm := map[string]*lab.VM{}
	for _, p := range snap.Ports {
		if p.HostID == "" {
			continue
		}
		vm[p.ID] = hosts[p.HostID].attach(p, p.ID, 1450)
		gw := "10.1.0.1"
		if p.NetworkID == "a-y" {
			gw = "10.2.0.1"
		}
		withRoute(t, vm[p.ID], gw)
	}
	for _, h := range []*host{h1, h2} {
		h.l3 = be
		h.routedReconcile(snap, vteps)
	}

	pingOK(t, vm["vx1"], "10.1.0.1") // the router's own address on a-x
	pingOK(t, vm["vx1"], "10.2.0.5") // routed, same host
	pingOK(t, vm["vx1"], "10.2.0.6") // routed, then over VXLAN to node2
	pingOK(t, vm["vy2"], "10.1.0.5") // routed on node2, back over VXLAN

	// One routing hop: the TTL arrives decremented once (64 → 63) ...
	c := lab.StartCapture(t, vm["vy1"].NS, "eth0", "-v", "icmp[icmptype] == icmp-echo")
	if out, err := ping(vm["vx1"], "10.2.0.5", 3); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	lines := c.Stop()
	all := strings.Join(lines, "\n")
	if !strings.Contains(all, "ttl 63") || strings.Contains(all, "ttl 64") || !strings.Contains(all, "10.1.0.5 > 10.2.0.5") {
		t.Errorf("routed echo requests at vy1 must carry ttl 63 (one hop):\n%s", showLines(lines))
	}
	// ... and traceroute reaches the destination at hop 2 (hop 1 is the router: it
	// answers "time exceeded" in the nftables backend, stays silent in OpenFlow, which
	// cannot build ICMP errors).
	out, err := vm["vx1"].Exec("busybox", "traceroute", "-n", "-q", "1", "-w", "1", "-m", "4", "10.2.0.6")
	if err != nil {
		t.Fatalf("traceroute: %v\n%s", err, out)
	}
	hops := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && (f[0] == "1" || f[0] == "2") {
			hops[f[0]] = f[1]
		}
	}
	if hops["2"] != "10.2.0.6" || hops["1"] == "10.2.0.6" || hops["1"] == "" {
		t.Errorf("traceroute must reach 10.2.0.6 at hop 2, after one router hop:\n%s", out)
	}
	t.Logf("%s traceroute:\n%s", be.name(), out)
	return hosts
}

// natSnapshot: tenants A and B, each with a local network on the same 10.0.0.0/24 (even
// the same VM MAC and address, 10.0.0.5), each behind its own router with a gateway on
// the flat external network 172.16.0.0/24 (router A SNATs to 172.16.0.10, router B to
// 172.16.0.20; the external subnet's gateway 172.16.0.1 is the external server); A's
// a2 (10.0.0.6) has floating IP 172.16.0.50.
func natSnapshot() offload.Snapshot {
	ext := network("ext", "admin", offload.SegFlat, 0)
	ext.External = true
	gw := func(ip string) *controlplane.GatewayInfo {
		return &controlplane.GatewayInfo{NetworkID: "ext", EnableSNAT: true, ExternalFixedIPs: []controlplane.FixedIP{{SubnetID: "sub-ext", IPAddress: ip}}}
	}
	return offload.Snapshot{
		Networks: []controlplane.Network{network("a-net", "tenant-a", offload.SegLocal, 0), network("b-net", "tenant-b", offload.SegLocal, 0), ext},
		Subnets: []controlplane.Subnet{subnet("sub-a-net", "a-net", "10.0.0.0/24", "10.0.0.1"), subnet("sub-b-net", "b-net", "10.0.0.0/24", "10.0.0.1"),
			subnet("sub-ext", "ext", "172.16.0.0/24", "172.16.0.1")},
		Ports: []controlplane.Port{
			port("a1", "tenant-a", "a-net", "node1", "fa:16:3e:00:00:05", "10.0.0.5", "open-a"),
			port("a2", "tenant-a", "a-net", "node1", "fa:16:3e:00:00:06", "10.0.0.6", "open-a"),
			port("b1", "tenant-b", "b-net", "node1", "fa:16:3e:00:00:05", "10.0.0.5", "open-b"),
			routerPort("ra-if", "tenant-a", controlplane.OwnerRouterInterface, "ra", "a-net", "fa:16:3e:aa:00:01", "10.0.0.1"),
			routerPort("ra-gw", "", controlplane.OwnerRouterGateway, "ra", "ext", "fa:16:3e:aa:00:ff", "172.16.0.10"),
			routerPort("rb-if", "tenant-b", controlplane.OwnerRouterInterface, "rb", "b-net", "fa:16:3e:bb:00:01", "10.0.0.1"),
			routerPort("rb-gw", "", controlplane.OwnerRouterGateway, "rb", "ext", "fa:16:3e:bb:00:ff", "172.16.0.20"),
			routerPort("fip-a2-port", "", controlplane.OwnerFloatingIP, "fip-a2", "ext", "fa:16:3e:f1:00:50", "172.16.0.50"),
		},
		SecurityGroups: []controlplane.SecurityGroup{openGroup("open-a", "tenant-a"), openGroup("open-b", "tenant-b")},
		Routers: []controlplane.Router{
			{ID: "ra", Name: "ra", TenantID: "tenant-a", ProjectID: "tenant-a", AdminStateUp: true, ExternalGatewayInfo: gw("172.16.0.10"), GatewayPortID: "ra-gw"},
			{ID: "rb", Name: "rb", TenantID: "tenant-b", ProjectID: "tenant-b", AdminStateUp: true, ExternalGatewayInfo: gw("172.16.0.20"), GatewayPortID: "rb-gw"},
		},
		FloatingIPs: []controlplane.FloatingIP{{ID: "fip-a2", TenantID: "tenant-a", ProjectID: "tenant-a", FloatingNetworkID: "ext",
			FloatingIPAddress: "172.16.0.50", PortID: strp("a2"), FixedIPAddress: strp("10.0.0.6"), RouterID: strp("ra"), FloatingPortID: "fip-a2-port"}},
	}
}

// natLab is the NAT scenario's host: the external server is a namespace on br-phys1's
// uplink (the flat external network), holding 172.16.0.1 (the external subnet's
// gateway) and 203.0.113.10 (a host beyond it).
type natLab struct {
	h   *host
	ext *lab.VM
	vm  map[string]*lab.VM
}

func startNAT(t *testing.T, dp string, be l3Backend) *natLab {
	snap := natSnapshot()
	h := newHostOn(t, "node1", dp)
	ext := h.o.AddVM(t, "extsrv", lab.VMOptions{IP: "172.16.0.1/24"})
	if out, err := ext.Exec("ip", "addr", "add", "203.0.113.10/32", "dev", "lo"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	h.apply(h.l3NodeYAML(be, "extsrv", ""))
	publishDatapath(t, h)
	vm := map[string]*lab.VM{}
	for _, p := range snap.Ports {
		if p.HostID == "node1" {
			vm[p.ID] = h.attach(p, p.ID, 1500)
			withRoute(t, vm[p.ID], "10.0.0.1")
		}
	}
	h.l3 = be
	h.routedReconcile(snap, nil)
	return &natLab{h: h, ext: ext, vm: vm}
}

// serverSees captures ICMP or TCP at the external server while fn runs and returns the
// lines.
func (n *natLab) serverSees(t *testing.T, filter string, fn func()) string {
	t.Helper()
	c := lab.StartCapture(t, n.ext.NS, "eth0", filter)
	fn()
	time.Sleep(200 * time.Millisecond)
	return strings.Join(c.Stop(), "\n")
}

// runNAT: SNAT of two tenants with the same 10.0.0.0/24 at the same time, each seen by
// the external server as its router's address; a floating IP reachable from outside,
// the source of its replies and of its VM's own connections, winning over the SNAT. The
// host runs datapath dp.
func runNAT(t *testing.T, dp string, be l3Backend) *natLab {
	n := startNAT(t, dp, be)
	vm, ext := n.vm, n.ext
	pingOK(t, vm["a1"], "10.0.0.1") // the gateway answers
	// Warm up: the first packets may wait for the next hop's MAC.
	pingOK(t, vm["a1"], "172.16.0.1")
	pingOK(t, vm["b1"], "172.16.0.1")
	pingOK(t, vm["a1"], "203.0.113.10") // beyond the next hop: the default route

	// SNAT, both tenants at once (same inner address 10.0.0.5, same MAC).
	seen := n.serverSees(t, "icmp", func() {
		var wg sync.WaitGroup
		errs := make([]string, 2)
		for i, id := range []string{"a1", "b1"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if out, err := ping(vm[id], "172.16.0.1", 10); err != nil {
					errs[i] = id + ": " + err.Error() + "\n" + out
				}
			}()
		}
		wg.Wait()
		if errs[0]+errs[1] != "" {
			t.Errorf("concurrent SNAT pings lost packets: %s", errs[0]+errs[1])
		}
	})
	for _, want := range []string{"172.16.0.10 > 172.16.0.1: ICMP echo request", "172.16.0.20 > 172.16.0.1: ICMP echo request"} {
		if !strings.Contains(seen, want) {
			t.Errorf("the server did not see %q:\n%s", want, seen)
		}
	}
	if strings.Contains(seen, "10.0.0.5 >") {
		t.Errorf("an internal address left the router:\n%s", seen)
	}
	// ... and TCP, concurrently, seen by the server as the two router addresses.
	listen(t, ext, 8080)
	seen = n.serverSees(t, "tcp port 8080 and tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0", func() {
		var wg sync.WaitGroup
		ok := make([]bool, 2)
		for i, id := range []string{"a1", "b1"} {
			wg.Add(1)
			go func() { defer wg.Done(); ok[i] = tcpConnect(vm[id], "172.16.0.1", 8080) }()
		}
		wg.Wait()
		if !ok[0] || !ok[1] {
			t.Errorf("TCP through SNAT: a1 %v, b1 %v", ok[0], ok[1])
		}
	})
	for _, want := range []string{"172.16.0.10.", "172.16.0.20."} {
		if !strings.Contains(seen, want) {
			t.Errorf("the server saw no SYN from %s*:\n%s", want, seen)
		}
	}
	seen = n.serverSees(t, "icmp", func() { pingOK(t, vm["a1"], "203.0.113.10") })
	if !strings.Contains(seen, "172.16.0.10 > 203.0.113.10: ICMP echo request") {
		t.Errorf("SNAT via the next hop: the server did not see 172.16.0.10:\n%s", seen)
	}

	// Floating IP: reachable from outside, replies come from it.
	seen = n.serverSees(t, "icmp", func() { pingOK(t, ext, "172.16.0.50") })
	if !strings.Contains(seen, "172.16.0.50 > 172.16.0.1: ICMP echo reply") {
		t.Errorf("floating IP replies must come from 172.16.0.50:\n%s", seen)
	}
	listen(t, vm["a2"], 8081)
	if !tcpConnect(ext, "172.16.0.50", 8081) {
		t.Errorf("the server cannot open TCP to the floating IP 172.16.0.50:8081")
	}
	// The VM's own new connections leave as the floating IP, not the router's SNAT.
	seen = n.serverSees(t, "icmp or tcp port 8080", func() {
		pingOK(t, vm["a2"], "172.16.0.1")
		if !tcpConnect(vm["a2"], "172.16.0.1", 8080) {
			t.Errorf("a2 → server TCP failed")
		}
	})
	if !strings.Contains(seen, "172.16.0.50 > 172.16.0.1: ICMP echo request") || !strings.Contains(seen, "172.16.0.50.") {
		t.Errorf("a2's own traffic must leave as 172.16.0.50:\n%s", seen)
	}
	if strings.Contains(seen, "172.16.0.10") {
		t.Errorf("a2's traffic used the router SNAT instead of its floating IP:\n%s", seen)
	}
	return n
}

// TestLabRoutingOpenFlow: east-west routing in the OpenFlow pipeline on one host and
// across two hosts over VXLAN (see runRouting), and the router's flows read back from
// OVS with its cookie.
func TestLabRoutingOpenFlow(t *testing.T) {
	hosts := runRouting(t, dpNetdev, openflowL3{})
	for _, h := range hosts {
		assertOpenFlowL3(t, h, "r1")
	}
}

// TestLabNATOpenFlow: SNAT of two overlapping tenants at once and a floating IP, in
// OpenFlow with conntrack NAT (see runNAT); the planner chose OpenFlow because the
// datapath has ct NAT.
func TestLabNATOpenFlow(t *testing.T) {
	n := runNAT(t, dpNetdev, openflowL3{})
	assertOpenFlowL3(t, n.h, "ra", "rb")
	z := n.h.comp.RouterZones()
	if z["ra"] == z["rb"] || z["ra"] <= offload.MaxLocalVLAN || z["rb"] <= offload.MaxLocalVLAN {
		t.Errorf("router zones %v must differ and stay above the networks' 1..4094", z)
	}
	// Each router's connections sit in its own zone: the server-side address in ra's
	// zone is 172.16.0.10, in rb's 172.16.0.20.
	for id, addr := range map[string]string{"ra": "172.16.0.10", "rb": "172.16.0.20"} {
		out, err := n.h.o.Appctl("dpctl/dump-conntrack", "zone="+strconv.Itoa(int(z[id])))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "dst="+addr) {
			t.Errorf("zone %d (router %s) has no connection translated to %s:\n%s", z[id], id, addr, out)
		}
	}
}

// assertOpenFlowL3 reads br-int back from OVS: every router planned on OpenFlow has its
// entry, route and (with a gateway) NAT flows installed under its cookie, and the plan
// says why OpenFlow.
func assertOpenFlowL3(t *testing.T, h *host, routers ...string) {
	t.Helper()
	fl, err := h.flows.Installed(ctxFor(t, 30*time.Second), h.layout.IntegrationBridge)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range routers {
		rp := h.plan.Router(id)
		if rp == nil || rp.Backend != offload.BackendOpenFlow || !strings.Contains(rp.Reason, "has conntrack NAT (Datapath capabilities ct_state_nat") {
			t.Fatalf("%s: router %s plan %+v, want openflow for its conntrack NAT", h.name, id, rp)
		}
		ck := offload.CookieFor(offload.KindRouter, id)
		tables := map[uint8]int{}
		for _, f := range fl {
			if f.Cookie == ck {
				tables[f.Table]++
			}
		}
		if tables[offload.TableL2] == 0 || tables[offload.TableL3Route] == 0 {
			t.Errorf("%s: router %s flows by table %v: want router MAC entries (30) and routes (63)", h.name, id, tables)
		}
		if r := h.ir.Routers[id]; r != nil && r.Gateway != nil && (tables[offload.TableL3In] == 0 || tables[offload.TableL3SNAT] == 0) {
			t.Errorf("%s: router %s with a gateway has no NAT flows: %v", h.name, id, tables)
		}
	}
}
