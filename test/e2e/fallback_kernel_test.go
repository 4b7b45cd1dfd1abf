//go:build linux

package e2e_test

import (
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/kernellab"
	"github.com/offlane/offlane/test/lab"
)

// The fallback path of the design card, in the kernel lab's guest (Debian's kernel under
// qemu, which has the openvswitch module this machine's kernel lacks): a node whose NIC
// offloads nothing runs its ports on kernel OVS (bridges with datapath_type=system) and
// its routers as qrouter namespaces with nftables NAT (l3_backend: nftables). The
// scenarios are the host tier's own (runTenantIsolation, runSecurityGroups, runRouting,
// runNAT), run on the system datapath; each test then checks that the plan says why
// (system datapath, OVS conntrack, nftables) and that the kernel datapath, not the
// userspace one and not tc, forwarded the traffic. Two OVS "hosts" are two
// ovs-vswitchd in two network namespaces of one kernel: the openvswitch module keeps
// its datapaths (and the vxlan_sys_4789 device) per namespace, so they coexist.

// TestKernelFallback runs the four scenarios as parallel subtests (guest tests run one
// top-level test at a time; their waits — pings that must time out, captures — overlap).
func TestKernelFallback(t *testing.T) {
	kernellab.RequireGuest(t)
	t.Run("TenantIsolation", func(t *testing.T) { t.Parallel(); fallbackTenantIsolation(t) })
	t.Run("SecurityGroups", func(t *testing.T) { t.Parallel(); fallbackSecurityGroups(t) })
	t.Run("Routing", func(t *testing.T) { t.Parallel(); fallbackRouting(t) })
	t.Run("NAT", func(t *testing.T) { t.Parallel(); fallbackNAT(t) })
}

// fallbackTenantIsolation: two tenants with overlapping addresses and MACs, VLAN
// networks over a physnet cable and VXLAN networks over an underlay between two
// kernel-datapath hosts (runTenantIsolation: tags and VNIs on the wire, empty captures
// in the other networks, other networks unreachable).
func fallbackTenantIsolation(t *testing.T) {
	hosts := runTenantIsolation(t, dpSystem)
	for _, h := range hosts {
		assertFallbackPlan(t, h)
	}
	// The VXLAN tunnel port is the kernel's vxlan device, one per host namespace.
	for _, h := range hosts {
		out, err := lab.Run("ip", "-n", h.o.NS, "-d", "link", "show", "type", "vxlan")
		if err != nil || !strings.Contains(out, "vxlan_sys_4789") {
			t.Errorf("%s: no kernel vxlan device for the tunnel port: %v\n%s", h.name, err, out)
		}
	}
	assertKernelForwards(t, hosts["node1"], map[string]string{"av1": "10.0.0.2", "ax1": "10.0.0.2", "bv1": "10.0.0.2", "bx1": "10.0.0.2"},
		"av1", "ax1", "bv1", "bx1", "phys-node1")
}

// fallbackSecurityGroups: stateful security groups in OVS conntrack on the kernel
// datapath (runSecurityGroups: allow by CIDR and by group, deny otherwise, replies of
// established connections let in, a rule removed and put back), the connections read
// back from the kernel's conntrack.
func fallbackSecurityGroups(t *testing.T) {
	h := runSecurityGroups(t, dpSystem)
	assertFallbackPlan(t, h)
	// The kernel's conntrack holds the VMs' connections, in their network's zone.
	zone := "zone=" + strconv.Itoa(int(h.ir.Segments["net"].LocalVLAN))
	out, err := h.o.Appctl("dpctl/dump-conntrack")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool {
		return strings.HasPrefix(l, "tcp,") && strings.Contains(l, "src=10.0.0.5,dst=10.0.0.10,") && strings.Contains(l, "dport=22)") && strings.Contains(l, ","+zone+",")
	}) {
		t.Errorf("kernel conntrack has no TCP connection c1 → srv:22 in %s:\n%s", zone, out)
	}
	assertKernelForwards(t, h, map[string]string{"c1": "10.0.0.10"}, "srv", "c1")
}

// fallbackRouting: two subnets behind one router realised as qrouter namespaces with
// nftables on two kernel-datapath hosts joined by VXLAN (runRouting: same host and
// across hosts, one hop, TTL decremented once, traceroute).
func fallbackRouting(t *testing.T) {
	b := newNFTBackend()
	hosts := runRouting(t, dpSystem, b)
	for _, h := range hosts {
		assertNFTablesL3(t, b, h, "r1")
		assertFallbackPlan(t, h)
	}
	assertKernelForwards(t, hosts["node1"], map[string]string{"vx1": "10.2.0.5"}, "vx1", "vy1")
}

// fallbackNAT: SNAT of two tenants with the same 10.0.0.0/24 at once, each seen by the
// external server as its router's address, and a floating IP both ways (runNAT), with
// the routers as qrouter namespaces (nftables NAT) on a kernel-datapath host.
func fallbackNAT(t *testing.T) {
	b := newNFTBackend()
	n := runNAT(t, dpSystem, b)
	assertNFTablesL3(t, b, n.h, "ra", "rb")
	assertFallbackPlan(t, n.h)
	for port, want := range map[string]string{"a1": "SNAT to 172.16.0.10 (router ra", "b1": "SNAT to 172.16.0.20 (router rb", "a2": "floating IP 172.16.0.50"} {
		if d := decision(t, n.h.plan, port, offload.FeatureNAT); d.Backend != offload.BackendNFTables || !strings.Contains(d.Reason, want) {
			t.Errorf("%s's NAT decision %+v: want nftables with %q", port, d, want)
		}
	}
	assertKernelForwards(t, n.h, map[string]string{"a1": "172.16.0.1", "b1": "172.16.0.1"}, "a1", "b1", "extsrv")
}

// assertFallbackPlan: the host's last plan runs on the system datapath and records why
// for each feature: the VM ports' L2 on tap/veth of the kernel datapath, their security
// groups in OVS conntrack, their routing (and every router) in nftables because the node
// config chose it.
func assertFallbackPlan(t *testing.T, h *host) {
	t.Helper()
	p := h.plan
	if p.Datapath != dpSystem || h.layout.Datapath != dpSystem {
		t.Fatalf("%s: plan datapath %q, layout %q: want system", h.name, p.Datapath, h.layout.Datapath)
	}
	vmPorts := 0
	for i := range p.Ports {
		pp := &p.Ports[i]
		if h.vms[pp.PortID] == nil {
			continue // a router's own port
		}
		vmPorts++
		want := map[offload.Feature]string{
			offload.FeatureL2:             "tap/veth on br-int (system datapath)",
			offload.FeatureSecurityGroups: "stateful, OVS conntrack zone",
		}
		if len(p.Routers) > 0 { // the L3 scenarios: every VM is on a routed subnet
			want[offload.FeatureRouting] = "l3_backend nftables (configured)"
		}
		for f, reason := range want {
			d := decision(t, p, pp.PortID, f)
			wantBackend := offload.BackendOpenFlow
			if f == offload.FeatureRouting {
				wantBackend = offload.BackendNFTables
			}
			if d.Backend != wantBackend || !strings.Contains(d.Reason, reason) {
				t.Errorf("%s: port %s %s: %+v, want %s because %q", h.name, pp.PortID, f, d, wantBackend, reason)
			}
		}
	}
	if vmPorts == 0 {
		t.Fatalf("%s: the plan has no VM port:\n%s", h.name, p)
	}
	for _, rp := range p.Routers {
		if rp.Backend != offload.BackendNFTables || !strings.Contains(rp.Reason, "l3_backend nftables (configured): qrouter-"+rp.RouterID+" namespace, nftables NAT") {
			t.Errorf("%s: router %s: %s (%s), want nftables because the node config chose it", h.name, rp.RouterID, rp.Backend, rp.Reason)
		}
	}
	t.Logf("%s plan:\n%s", h.name, p)
}

var dpPortRe = regexp.MustCompile(`(?m)^\s*port \d+: (\S+)`)

// assertKernelForwards: the host's bridges are in the kernel's datapath (dpctl/show:
// system@ovs-system, each port in touched one of its vports), and while the VMs send the
// pings (from VM → destination) the kernel datapath holds flows in or out of every port
// in touched, all of them dp:ovs: neither tc (no hw-offload) nor the userspace datapath.
func assertKernelForwards(t *testing.T, h *host, pings map[string]string, touched ...string) {
	t.Helper()
	show, err := h.o.Appctl("dpctl/show")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(show, "system@ovs-system:") || strings.Contains(show, "netdev@") {
		t.Fatalf("%s: dpctl/show: want only the kernel datapath system@ovs-system:\n%s", h.name, show)
	}
	vports := map[string]bool{}
	for _, m := range dpPortRe.FindAllStringSubmatch(show, -1) {
		vports[m[1]] = true
	}
	for _, v := range touched {
		if !vports[v] {
			t.Errorf("%s: %s is not a vport of the kernel datapath:\n%s", h.name, v, show)
		}
	}
	// Datapath flows expire after 10 s without traffic: send some, then read them back
	// from the kernel.
	var flows []ovsdpdk.DatapathFlow
	var raw string
	eventually(t, h.name+": kernel datapath flows for "+strings.Join(touched, ", "), func() bool {
		for from, dst := range pings {
			_, _ = ping(h.vms[from], dst, 1)
		}
		if raw, err = h.o.Appctl("dpctl/dump-flows", "-m"); err != nil {
			t.Fatal(err)
		}
		if flows, err = ovsdpdk.ParseDatapathFlows(strings.NewReader(raw)); err != nil {
			t.Fatal(err)
		}
		for _, v := range touched {
			if !slices.ContainsFunc(flows, func(f ovsdpdk.DatapathFlow) bool { return f.Touches(v) }) {
				return false
			}
		}
		return true
	})
	for _, f := range flows {
		if f.DP != "ovs" {
			t.Errorf("%s: datapath flow not in the kernel datapath (dp:%q): %+v", h.name, f.DP, f)
		}
	}
	t.Logf("%s: %d kernel datapath flows; vports %v", h.name, len(flows), slices.Sorted(maps.Keys(vports)))
}
