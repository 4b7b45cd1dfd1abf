package e2e_test

import (
	"net/netip"
	"testing"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/test/lab"
)

// twoTenantsSnapshot: tenants A and B, each with a VLAN network and a VXLAN network, all
// four on 10.0.0.0/24, with the same MACs reused across tenants; VMs on two hosts. Every
// port's security group lets everything in and out, so only the networks keep traffic
// apart.
func twoTenantsSnapshot() (offload.Snapshot, map[string]string) {
	snap := offload.Snapshot{
		Networks: []controlplane.Network{
			network("a-vlan", "tenant-a", offload.SegVLAN, 100),
			network("a-vx", "tenant-a", offload.SegVXLAN, 1001),
			network("b-vlan", "tenant-b", offload.SegVLAN, 200),
			network("b-vx", "tenant-b", offload.SegVXLAN, 1002),
		},
		Ports: []controlplane.Port{
			port("av1", "tenant-a", "a-vlan", "node1", "fa:16:3e:00:00:01", "10.0.0.1", "open-a"),
			port("av3", "tenant-a", "a-vlan", "node1", "fa:16:3e:00:00:03", "10.0.0.3", "open-a"),
			port("av2", "tenant-a", "a-vlan", "node2", "fa:16:3e:00:00:02", "10.0.0.2", "open-a"),
			port("ax1", "tenant-a", "a-vx", "node1", "fa:16:3e:00:00:11", "10.0.0.1", "open-a"),
			port("ax2", "tenant-a", "a-vx", "node2", "fa:16:3e:00:00:12", "10.0.0.2", "open-a"),
			// Tenant B reuses tenant A's MACs and addresses.
			port("bv1", "tenant-b", "b-vlan", "node1", "fa:16:3e:00:00:01", "10.0.0.1", "open-b"),
			port("bv2", "tenant-b", "b-vlan", "node2", "fa:16:3e:00:00:02", "10.0.0.2", "open-b"),
			port("bx1", "tenant-b", "b-vx", "node1", "fa:16:3e:00:00:11", "10.0.0.1", "open-b"),
			port("bx2", "tenant-b", "b-vx", "node2", "fa:16:3e:00:00:12", "10.0.0.2", "open-b"),
		},
		SecurityGroups: []controlplane.SecurityGroup{openGroup("open-a", "tenant-a"), openGroup("open-b", "tenant-b")},
	}
	// VM (and host-side interface) names.
	names := map[string]string{}
	for _, p := range snap.Ports {
		names[p.ID] = p.ID
	}
	return snap, names
}

// twoHosts brings up node1 and node2 on datapath dp: a physnet1 cable between their
// physnet bridges (VLAN networks) and an IP underlay 10.99.0.0/24 for VXLAN, laid out by
// node apply; the VMs of snap attached on their hosts; flows compiled and fully synced on
// both.
func twoHosts(t *testing.T, snap offload.Snapshot, dp string) (map[string]*host, *lab.Underlay, map[string]*lab.VM) {
	t.Helper()
	h1, h2 := newHostOn(t, "node1", dp), newHostOn(t, "node2", dp)
	lab.LinkOVS(t, h1.o, h2.o, "phys-node1", "phys-node2", 1600)
	u := lab.ConnectUnderlay(t, h1.o, h2.o, "10.99.0.1/24", "10.99.0.2/24")
	h1.apply(h1.nodeYAML("phys-node1", "10.99.0.1/24"))
	h2.apply(h2.nodeYAML("phys-node2", "10.99.0.2/24"))
	hosts := map[string]*host{"node1": h1, "node2": h2}
	mtu := map[string]int{}
	for _, n := range snap.Networks {
		mtu[n.ID] = n.MTU
	}
	vms := map[string]*lab.VM{}
	for _, p := range snap.Ports {
		vms[p.ID] = hosts[p.HostID].attach(p, p.ID, mtu[p.NetworkID])
	}
	vteps := map[string]netip.Addr{"node1": netip.MustParseAddr("10.99.0.1"), "node2": netip.MustParseAddr("10.99.0.2")}
	for _, h := range []*host{h1, h2} {
		res := h.reconcile(snap, vteps)
		if res.Changes() == 0 {
			t.Fatalf("%s: the first sync installed nothing", h.name)
		}
		// Read back, the compiled flows equal what OVS holds: a second reconcile sends
		// nothing.
		if res := h.reconcile(snap, vteps); res.Changes() != 0 {
			t.Fatalf("%s: a second reconcile without changes sent %d flow mods: %+v", h.name, res.Changes(), res.Bridges)
		}
	}
	return hosts, u, vms
}

// TestLabTenantIsolation: two tenants, each with a VLAN and a VXLAN network on the same
// 10.0.0.0/24 (and the same MACs), VMs on two OVS hosts. VMs of the same network reach
// each other across hosts (VLAN over the physnet cable, tagged with the network's VLAN;
// VXLAN over the underlay, with the network's VNI); VMs of other networks and of the
// other tenant never see a packet (tcpdump on them stays empty) and cannot be reached.
func TestLabTenantIsolation(t *testing.T) {
	runTenantIsolation(t, dpNetdev)
}

// runTenantIsolation is TestLabTenantIsolation's scenario on datapath dp; it returns the
// hosts (their last plans) for datapath-specific checks.
func runTenantIsolation(t *testing.T, dp string) map[string]*host {
	snap, _ := twoTenantsSnapshot()
	hosts, u, vm := twoHosts(t, snap, dp)

	// Same network, same host and across hosts, VLAN and VXLAN, both tenants.
	for _, p := range [][2]string{{"av1", "10.0.0.3"}, {"av1", "10.0.0.2"}, {"ax1", "10.0.0.2"}, {"bv1", "10.0.0.2"}, {"bx1", "10.0.0.2"}} {
		pingOK(t, vm[p[0]], p[1])
	}
	// From now on no VM sends anything by itself: captures see only the test's traffic.
	pinStaticNeighbours(t, snap, vm)

	// Each network's traffic stays in it: while one VM pings its peer (10.0.0.2 exists in
	// all four networks), the 10.0.0.2 of every other network sees nothing at all, the
	// peer sees the pings, and the wire carries the network's own VLAN tag or VNI.
	type wire struct {
		ns, ifname string
		want       string // the tag/VNI the wire must show
		notWant    []string
	}
	physA := wire{ns: hosts["node1"].o.NS, ifname: "phys-node1"}
	ulA := wire{ns: u.A.OVS.NS, ifname: u.A.Link}
	cases := []struct {
		from, peer string
		others     []string
		wire       wire
	}{
		{"av1", "av2", []string{"ax2", "bv2", "bx2"}, wire{physA.ns, physA.ifname, "vlan 100", []string{"vlan 200"}}},
		{"bv1", "bv2", []string{"av2", "ax2", "bx2"}, wire{physA.ns, physA.ifname, "vlan 200", []string{"vlan 100"}}},
		{"ax1", "ax2", []string{"av2", "bv2", "bx2"}, wire{ulA.ns, ulA.ifname, "vni 1001", []string{"vni 1002"}}},
		{"bx1", "bx2", []string{"av2", "bv2", "ax2"}, wire{ulA.ns, ulA.ifname, "vni 1002", []string{"vni 1001"}}},
	}
	for _, tc := range cases {
		t.Run(tc.from+"→"+tc.peer, func(t *testing.T) {
			from := vm[tc.from]
			// Forget the peer's MAC so the ping starts with a broadcast ARP request: the
			// flood must stay in the network too. Pinned again afterwards, so this VM
			// sends no neighbour probes during the next case.
			if _, err := from.Exec("ip", "neigh", "del", "10.0.0.2", "dev", "eth0"); err != nil {
				t.Fatal(err)
			}
			defer pinStaticNeighbours(t, snap, vm)
			peerCap := lab.StartCapture(t, vm[tc.peer].NS, "eth0", "icmp", "or", "arp")
			var others []*lab.Capture
			for _, o := range tc.others {
				others = append(others, lab.StartCapture(t, vm[o].NS, "eth0"))
			}
			wireCap := lab.StartCapture(t, tc.wire.ns, tc.wire.ifname)
			pingOK(t, from, "10.0.0.2")
			wireLines := wireCap.Stop()
			peerLines := peerCap.Stop()
			if len(peerLines) == 0 {
				t.Fatalf("%s saw none of the pings (the capture is broken)", tc.peer)
			}
			for i, c := range others {
				if lines := c.Stop(); len(lines) > 0 {
					t.Errorf("%s (another network) saw %d packets while %s pinged %s:\n%s", tc.others[i], len(lines), tc.from, tc.peer, showLines(lines))
				}
			}
			tags := wireTags(wireLines)
			if tags[tc.wire.want] == 0 {
				t.Errorf("%s on %s does not show %q:\n%s", tc.wire.ifname, tc.wire.ns, tc.wire.want, showLines(wireLines))
			}
			for _, bad := range tc.wire.notWant {
				if tags[bad] > 0 {
					t.Errorf("%s shows %q while only %s's network talked:\n%s", tc.wire.ifname, bad, tc.from, showLines(wireLines))
				}
			}
			t.Logf("%s: %d packets, tags %v", tc.wire.ifname, len(wireLines), tags)
		})
	}

	// 10.0.0.3 exists only in tenant A's VLAN network: no VM of another network reaches
	// it, and it sees none of their attempts.
	t.Run("other networks unreachable", func(t *testing.T) {
		target := lab.StartCapture(t, vm["av3"].NS, "eth0")
		for _, from := range []string{"ax1", "bv1", "bx1", "ax2", "bv2", "bx2"} {
			pingFails(t, vm[from], "10.0.0.3")
		}
		if lines := target.Stop(); len(lines) > 0 {
			t.Fatalf("av3 saw %d packets from other networks:\n%s", len(lines), showLines(lines))
		}
		// The same target is reachable from its own network on both hosts.
		pingOK(t, vm["av2"], "10.0.0.3")
	})
	return hosts
}
