package e2e_test

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/test/lab"
)

// IPv6 east-west routing, written once for both L3 backends (runRoutingV6): the router's
// IPv6 gateway and link-local addresses answered by neighbour discovery (the pipeline's
// ND responder, or the qrouter namespace's kernel), hop limit decremented once, on one
// host and across two hosts over VXLAN. No NAT for IPv6, as in Neutron.

// routingV6Snapshot is routingSnapshot made dual-stack: a-x also carries fd00:1::/64 and
// a-y fd00:2::/64 (gateways ::1 on r1's existing interface ports); vx1 is fd00:1::5, vy1
// fd00:2::5 (node1) and vy2 fd00:2::6 (node2). The security group also lets IPv6 in.
func routingV6Snapshot() offload.Snapshot {
	snap := routingSnapshot()
	snap.Subnets = append(snap.Subnets,
		controlplane.Subnet{ID: "sub6-a-x", Name: "sub6-a-x", NetworkID: "a-x", CIDR: "fd00:1::/64", GatewayIP: strp("fd00:1::1"), IPVersion: 6},
		controlplane.Subnet{ID: "sub6-a-y", Name: "sub6-a-y", NetworkID: "a-y", CIDR: "fd00:2::/64", GatewayIP: strp("fd00:2::1"), IPVersion: 6})
	v6 := map[string]string{"vx1": "fd00:1::5", "vy1": "fd00:2::5", "vy2": "fd00:2::6", "r1-x": "fd00:1::1", "r1-y": "fd00:2::1"}
	for i := range snap.Ports {
		p := &snap.Ports[i]
		if a := v6[p.ID]; a != "" {
			p.FixedIPs = append(p.FixedIPs, controlplane.FixedIP{SubnetID: "sub6-" + p.NetworkID, IPAddress: a})
		}
	}
	g := &snap.SecurityGroups[0]
	for _, dir := range []string{"ingress", "egress"} {
		g.Rules = append(g.Rules, controlplane.SecurityGroupRule{ID: g.ID + "-" + dir + "6", SecurityGroupID: g.ID, Direction: dir, EtherType: "IPv6", TenantID: g.TenantID})
	}
	return snap
}

// withIPv6 turns IPv6 back on in a lab VM (which starts with it off), statically: the
// address without duplicate address detection, no router advertisements or
// solicitations, and a default route via gw, the subnet's gateway address.
func withIPv6(t testing.TB, vm *lab.VM, addr, gw string) {
	t.Helper()
	for _, kv := range []string{"net.ipv6.conf.eth0.accept_ra=0", "net.ipv6.conf.eth0.router_solicitations=0",
		"net.ipv6.conf.eth0.accept_dad=0", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.eth0.disable_ipv6=0"} {
		if out, err := vm.Exec("sysctl", "-qw", kv); err != nil {
			t.Fatalf("%s: sysctl %s: %v: %s", vm, kv, err, out)
		}
	}
	for _, args := range [][]string{{"-6", "addr", "add", addr + "/64", "dev", "eth0", "nodad"}, {"-6", "route", "replace", "default", "via", gw, "dev", "eth0"}} {
		if out, err := vm.Exec("ip", args...); err != nil {
			t.Fatalf("%s: ip %v: %v: %s", vm, args, err, out)
		}
	}
}

// routerLL is the EUI-64 link-local address of a router port's MAC, the address the
// pipeline answers for it and the one a qrouter namespace's kernel gives its qr- port.
func routerLL(mac string) string {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		panic("routerLL: not a MAC: " + mac)
	}
	b := [16]byte{0: 0xfe, 1: 0x80, 8: hw[0] ^ 2, 9: hw[1], 10: hw[2], 11: 0xff, 12: 0xfe, 13: hw[3], 14: hw[4], 15: hw[5]}
	return netip.AddrFrom16(b).String()
}

// runRoutingV6: the shared IPv6 scenario. Each VM resolves its gateway by neighbour
// discovery: the advertisement carries a good ICMPv6 checksum, the Router, Solicited and
// Override flags and the router's MAC, and the VM's kernel takes it (a "router" neighbour
// entry with that MAC). The link-local address answers too. Pings cross the router on
// one host and over VXLAN to the other host, with the hop limit decremented once.
func runRoutingV6(t *testing.T, dp string, be l3Backend) map[string]*host {
	snap := routingV6Snapshot()
	h1, h2, hosts, vteps := twoL3Hosts(t, dp, be)
	gw4 := map[string]string{"a-x": "10.1.0.1", "a-y": "10.2.0.1"}
	gw6 := map[string]string{"a-x": "fd00:1::1", "a-y": "fd00:2::1"}
	routerMAC := map[string]string{"a-x": "fa:16:3e:a1:00:01", "a-y": "fa:16:3e:a1:00:02"}
	vm := map[string]*lab.VM{}
	for _, p := range snap.Ports {
		if p.HostID == "" {
			continue
		}
		vm[p.ID] = hosts[p.HostID].attach(p, p.ID, 1450)
		withRoute(t, vm[p.ID], gw4[p.NetworkID])
		withIPv6(t, vm[p.ID], p.FixedIPs[1].IPAddress, gw6[p.NetworkID])
	}
	for _, h := range []*host{h1, h2} {
		h.l3 = be
		h.routedReconcile(snap, vteps)
	}

	// Neighbour discovery of the gateway, watched on the wire at the VM: vx1 on node1
	// and vy2 on node2 each ask their own host's router.
	for _, c := range []struct{ vm, net string }{{"vx1", "a-x"}, {"vy2", "a-y"}} {
		v, gw, mac := vm[c.vm], gw6[c.net], routerMAC[c.net]
		na := lab.StartCapture(t, v.NS, "eth0", "-vv", "icmp6 and ip6[40] == 136")
		pingOK(t, v, gw) // the router's own address answers echo
		lines := na.Stop()
		all := strings.Join(lines, "\n")
		for _, want := range []string{"[icmp6 sum ok]", "neighbor advertisement", "tgt is " + gw, "Flags [router, solicited, override]",
			"destination link-address option (2), length 8 (1): " + mac} {
			if !strings.Contains(all, want) {
				t.Errorf("%s: %s: the advertisement for %s lacks %q:\n%s", be.name(), c.vm, gw, want, showLines(lines))
			}
		}
		if strings.Contains(all, "cksum") { // tcpdump: "[bad icmp6 cksum 0x... -> 0x...!]"
			t.Errorf("%s: %s: bad ICMPv6 checksum in the advertisement:\n%s", be.name(), c.vm, showLines(lines))
		}
		out, err := v.Exec("ip", "-6", "neigh", "show", gw, "dev", "eth0")
		if err != nil || !strings.Contains(out, "lladdr "+mac+" router") || !containsAny(out, "REACHABLE", "STALE", "DELAY", "PROBE") {
			t.Errorf("%s: %s's kernel did not take the advertisement: neighbour entry %q (%v), want lladdr %s router, reachable or stale", be.name(), c.vm, out, err, mac)
		}
		t.Logf("%s: %s: advertisement seen:\n%s\nneighbour: %s", be.name(), c.vm, showLines(lines), out)
		// The router's link-local address (EUI-64 of its MAC) answers too.
		pingOK(t, v, routerLL(mac)+"%eth0")
	}

	pingOK(t, vm["vx1"], "fd00:2::5") // routed, same host
	pingOK(t, vm["vx1"], "fd00:2::6") // routed on node1, then over VXLAN to node2
	pingOK(t, vm["vy2"], "fd00:1::5") // routed on node2, back over VXLAN
	pingOK(t, vm["vy1"], "fd00:1::5") // routed on node1, the other way
	pingOK(t, vm["vy1"], "fd00:2::6") // same subnet across hosts: switched over VXLAN, not routed

	// One routing hop: the request reaches vy1 with hop limit 63, and each reply comes
	// back with 63 too (routed once, on the replying VM's host).
	c := lab.StartCapture(t, vm["vy1"].NS, "eth0", "-v", "icmp6 and ip6[40] == 128")
	if out, err := ping(vm["vx1"], "fd00:2::5", 3); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	lines := c.Stop()
	all := strings.Join(lines, "\n")
	t.Logf("%s: echo requests at vy1:\n%s", be.name(), showLines(lines))
	if !strings.Contains(all, "hlim 63") || strings.Contains(all, "hlim 64") || !strings.Contains(all, "fd00:1::5 > fd00:2::5") {
		t.Errorf("%s: routed echo requests at vy1 must carry hlim 63 (one hop):\n%s", be.name(), showLines(lines))
	}
	for _, c := range [][2]string{{"vx1", "fd00:2::5"}, {"vx1", "fd00:2::6"}, {"vy2", "fd00:1::5"}} {
		if hl := hopLimit(t, vm[c[0]], c[1]); hl != "63" {
			t.Errorf("%s: %s → %s: reply hop limit %s, want 63 (one routed hop)", be.name(), c[0], c[1], hl)
		}
	}
	// Same subnet, not routed: the hop limit stays.
	if hl := hopLimit(t, vm["vy1"], "fd00:2::6"); hl != "64" {
		t.Errorf("%s: vy1 → vy2 (same subnet, across hosts): hop limit %s, want 64", be.name(), hl)
	}

	// Routed IPv6 still meets the destination's security groups: without the IPv6
	// ingress rule new routed pings die at vy1's ingress, while IPv4 passes.
	g := &snap.SecurityGroups[0]
	g.Rules = slices.DeleteFunc(slices.Clone(g.Rules), func(r controlplane.SecurityGroupRule) bool { return r.ID == g.ID+"-ingress6" })
	for _, h := range []*host{h1, h2} {
		h.reconcile(snap, vteps)
	}
	pingFails(t, vm["vx1"], "fd00:2::5")
	pingOK(t, vm["vx1"], "10.2.0.5")
	return hosts
}

// hopLimit pings dst once from vm (a path already proved by pingOK) and returns the
// reply's hop limit.
func hopLimit(t *testing.T, from *lab.VM, dst string) string {
	t.Helper()
	out, err := ping(from, dst, 1)
	if i := strings.Index(out, "ttl="); err == nil && i >= 0 {
		return strings.Fields(out[i+4:])[0]
	}
	t.Fatalf("%s → %s: no reply hop limit: %v\n%s", from, dst, err, out)
	return ""
}

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

// TestLabRoutingIPv6OpenFlow: IPv6 east-west routing in the OpenFlow pipeline (see
// runRoutingV6), its ND responder, route and next-hop flows read back from OVS under the
// router's and the ports' cookies, and explain's view of vx1 showing them with their
// origins.
func TestLabRoutingIPv6OpenFlow(t *testing.T) {
	hosts := runRoutingV6(t, dpNetdev, openflowL3{})
	for name, h := range hosts {
		assertOpenFlowL3(t, h, "r1")
		fl, err := h.flows.Installed(ctxFor(t, 30*time.Second), h.layout.IntegrationBridge)
		if err != nil {
			t.Fatal(err)
		}
		ck := offload.CookieFor(offload.KindRouter, "r1")
		found := map[string]bool{}
		for _, f := range fl {
			switch {
			case f.Cookie == ck && f.Table == offload.TableL2 && strings.Contains(f.Match, "icmp_type=135,nd_target=fd00:"):
				found["nd"] = true
			case f.Cookie == ck && f.Table == offload.TableL3NA && strings.Contains(f.Actions, "->nd_tll"):
				found["na"] = true
			case f.Cookie == ck && f.Table == offload.TableL3Route && strings.Contains(f.Match, "ipv6_dst=fd00:2::/64") && strings.Contains(f.Actions, "dec_ttl"):
				found["route"] = true
			case f.Table == offload.TableL3Neigh && strings.Contains(f.Match, "ipv6") && strings.Contains(f.Actions, "fa:16:3e:02:00:06"):
				found["neigh vy2"] = true
			}
		}
		for _, k := range []string{"nd", "na", "route", "neigh vy2"} {
			if !found[k] {
				t.Errorf("%s: no installed IPv6 %s flow", name, k)
			}
		}
		if name != "node1" {
			continue
		}
		var ex []string
		for _, f := range h.comp.FlowsFrom(h.comp.PortOrigins("vx1")...) {
			if o, _ := h.comp.Origin(f.Cookie); o.Kind == offload.KindRouter && (strings.Contains(f.Match, "ipv6") || strings.Contains(f.Match, "icmp6")) {
				ex = append(ex, f.String())
			}
		}
		if len(ex) == 0 || !strings.Contains(strings.Join(ex, "\n"), "nd_target=fd00:1::1") {
			t.Errorf("explain for vx1 shows no IPv6 router flows with origin router r1:\n%s", strings.Join(ex, "\n"))
		}
		for _, pp := range h.plan.Ports {
			if pp.PortID != "vx1" {
				continue
			}
			for _, d := range pp.Decisions {
				if d.Feature == offload.FeatureRouting && !strings.HasSuffix(d.Reason, "IPv4 and IPv6 routed, IPv6 not NATed") {
					t.Errorf("vx1 routing reason %q does not name IPv6", d.Reason)
				}
			}
		}
	}
}

// TestLabRoutingIPv6NFTables runs the same IPv6 scenario with r1 realised as qrouter
// namespaces (the kernel answers neighbour discovery and routes).
func TestLabRoutingIPv6NFTables(t *testing.T) {
	b := newNFTBackend()
	hosts := runRoutingV6(t, dpNetdev, b)
	for _, h := range hosts {
		assertNFTablesL3(t, b, h, "r1")
	}
}
