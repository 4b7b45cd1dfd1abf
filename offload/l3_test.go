package offload

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
)

// l3Snapshot: tenant A with two VXLAN networks (10.1.0.0/24, 10.2.0.0/24) behind router
// ra with a gateway on the flat external network (172.16.0.0/24, upstream 172.16.0.1),
// an extra route and a floating IP; tenant B with the same 10.1.0.0/24 behind router rb
// (its own SNAT address); a third router rc only on a network without local ports (not
// on this node).
func l3Snapshot() Snapshot {
	ext := network("ext", "admin", SegFlat, "physnet1", 0)
	ext.External = true
	subnet := func(id, net, cidr, gw string) controlplane.Subnet {
		return controlplane.Subnet{ID: id, NetworkID: net, CIDR: cidr, GatewayIP: strp(gw), IPVersion: 4}
	}
	rport := func(id, owner, router, net, mac, sub, ip string) controlplane.Port {
		return controlplane.Port{ID: id, NetworkID: net, MACAddress: mac, AdminStateUp: true, DeviceOwner: owner, DeviceID: router,
			FixedIPs: []controlplane.FixedIP{{SubnetID: sub, IPAddress: ip}}}
	}
	withSub := func(p controlplane.Port, sub string) controlplane.Port {
		for i := range p.FixedIPs {
			p.FixedIPs[i].SubnetID = sub
		}
		return p
	}
	gw := func(net, sub, ip string, snat bool) *controlplane.GatewayInfo {
		return &controlplane.GatewayInfo{NetworkID: net, EnableSNAT: snat, ExternalFixedIPs: []controlplane.FixedIP{{SubnetID: sub, IPAddress: ip}}}
	}
	return Snapshot{
		Networks: []controlplane.Network{
			network("a-x", "tenant-a", SegVXLAN, "", 1001), network("a-y", "tenant-a", SegVXLAN, "", 1002),
			network("b-x", "tenant-b", SegVXLAN, "", 2001), network("c-x", "tenant-c", SegVXLAN, "", 3001), ext,
		},
		Subnets: []controlplane.Subnet{
			subnet("sa-x", "a-x", "10.1.0.0/24", "10.1.0.1"), subnet("sa-y", "a-y", "10.2.0.0/24", "10.2.0.1"),
			subnet("sb-x", "b-x", "10.1.0.0/24", "10.1.0.1"), subnet("sc-x", "c-x", "10.9.0.0/24", "10.9.0.1"),
			subnet("s-ext", "ext", "172.16.0.0/24", "172.16.0.1"),
		},
		Ports: []controlplane.Port{
			withSub(port("a1", "a-x", "node1", "fa:16:3e:00:01:01", []string{"10.1.0.5"}, "sg"), "sa-x"),
			withSub(port("a2", "a-x", "node1", "fa:16:3e:00:01:02", []string{"10.1.0.6"}, "sg"), "sa-x"),
			withSub(port("ay", "a-y", "node2", "fa:16:3e:00:02:01", []string{"10.2.0.5"}, "sg"), "sa-y"),
			withSub(port("b1", "b-x", "node1", "fa:16:3e:00:01:01", []string{"10.1.0.5"}, "sg"), "sb-x"),
			withSub(port("c1", "c-x", "node2", "fa:16:3e:00:03:01", []string{"10.9.0.5"}, "sg"), "sc-x"),
			rport("ra-x", controlplane.OwnerRouterInterface, "ra", "a-x", "fa:16:3e:aa:00:01", "sa-x", "10.1.0.1"),
			rport("ra-y", controlplane.OwnerRouterInterface, "ra", "a-y", "fa:16:3e:aa:00:02", "sa-y", "10.2.0.1"),
			rport("ra-gw", controlplane.OwnerRouterGateway, "ra", "ext", "fa:16:3e:aa:00:ff", "s-ext", "172.16.0.10"),
			rport("rb-x", controlplane.OwnerRouterInterface, "rb", "b-x", "fa:16:3e:bb:00:01", "sb-x", "10.1.0.1"),
			rport("rb-gw", controlplane.OwnerRouterGateway, "rb", "ext", "fa:16:3e:bb:00:ff", "s-ext", "172.16.0.20"),
			rport("rc-x", controlplane.OwnerRouterInterface, "rc", "c-x", "fa:16:3e:cc:00:01", "sc-x", "10.9.0.1"),
			rport("fip1-port", controlplane.OwnerFloatingIP, "fip1", "ext", "fa:16:3e:f1:00:50", "s-ext", "172.16.0.50"),
		},
		SecurityGroups: []controlplane.SecurityGroup{secgroup("sg", "t", ruleSpec{id: "in", dir: Ingress}, ruleSpec{id: "out", dir: Egress})},
		Routers: []controlplane.Router{
			{ID: "ra", TenantID: "tenant-a", AdminStateUp: true, ExternalGatewayInfo: gw("ext", "s-ext", "172.16.0.10", true),
				Routes: []controlplane.Route{{Destination: "192.168.50.0/24", NextHop: "10.2.0.254"}}},
			{ID: "rb", TenantID: "tenant-b", AdminStateUp: true, ExternalGatewayInfo: gw("ext", "s-ext", "172.16.0.20", true)},
			{ID: "rc", TenantID: "tenant-c", AdminStateUp: true},
		},
		FloatingIPs: []controlplane.FloatingIP{
			{ID: "fip1", TenantID: "tenant-a", FloatingNetworkID: "ext", FloatingIPAddress: "172.16.0.50", PortID: strp("a2"), FixedIPAddress: strp("10.1.0.6"), RouterID: strp("ra")},
			{ID: "fip-unassoc", TenantID: "tenant-a", FloatingNetworkID: "ext", FloatingIPAddress: "172.16.0.51"},
		},
	}
}

var l3OFPorts = map[string]int{"a1": 11, "a2": 12, "b1": 21}

// natNode is ovsNode with the Datapath capabilities OVS 3.1's userspace datapath
// publishes (read from a real ovs-vswitchd: see the lab test).
func natNode(ctNAT string) *hwdetect.Node {
	n := ovsNode()
	n.OVS.DatapathCapabilities = map[string]map[string]string{"netdev": {"ct_state": "true", "ct_zone": "true", "ct_state_nat": ctNAT, "ct_clear": "true"}}
	return n
}

func buildL3Fixture(t testing.TB) *IR {
	t.Helper()
	ir, err := Build(BuildInput{Host: "node1", Snapshot: l3Snapshot(), OFPorts: l3OFPorts,
		VTEPs: map[string]netip.Addr{"node1": netip.MustParseAddr("192.0.2.1"), "node2": netip.MustParseAddr("192.0.2.2")}})
	if err != nil {
		t.Fatal(err)
	}
	return ir
}

func TestBuildL3(t *testing.T) {
	ir := buildL3Fixture(t)
	// ra and rb have interfaces on networks with local ports; rc does not.
	if got := sortedKeys(ir.Routers); !slices.Equal(got, []string{"ra", "rb"}) {
		t.Fatalf("routers %v, want [ra rb]", got)
	}
	// DVR: a-y (no local port) and the external network are segments because ra is here.
	if got := sortedKeys(ir.Segments); !slices.Equal(got, []string{"a-x", "a-y", "b-x", "ext"}) {
		t.Fatalf("segments %v", got)
	}
	if !ir.Segments["ext"].External || ir.Segments["a-x"].External {
		t.Errorf("External: ext %v, a-x %v", ir.Segments["ext"].External, ir.Segments["a-x"].External)
	}
	if ir.RemotePorts["ay"] == nil || ir.RemotePorts["c1"] != nil {
		t.Errorf("remote ports: ay (on a-y via ra) must be there, c1 (c-x, not here) must not: %v", sortedKeys(ir.RemotePorts))
	}
	if got := sortedKeys(ir.Subnets); !slices.Equal(got, []string{"s-ext", "sa-x", "sa-y", "sb-x"}) {
		t.Errorf("subnets %v", got)
	}
	ra := ir.Routers["ra"]
	if len(ra.Interfaces) != 2 || ra.Interfaces[0].PortID != "ra-x" || ra.Interfaces[0].CIDR.String() != "10.1.0.0/24" || ra.Interfaces[1].IP.String() != "10.2.0.1" {
		t.Errorf("ra interfaces %+v", ra.Interfaces)
	}
	g := ra.Gateway
	if g == nil || g.SNATAddr().String() != "172.16.0.10" || g.NextHop.String() != "172.16.0.1" || !g.EnableSNAT || g.MAC != "fa:16:3e:aa:00:ff" {
		t.Errorf("ra gateway %+v", g)
	}
	if len(ra.Routes) != 1 || ra.Routes[0].Destination.String() != "192.168.50.0/24" {
		t.Errorf("ra routes %+v", ra.Routes)
	}
	f := ir.FloatingIPs["fip1"]
	want := FloatingIP{ID: "fip1", TenantID: "tenant-a", RouterID: "ra", NetworkID: "ext", FloatingIP: netip.MustParseAddr("172.16.0.50"),
		PortID: "a2", FixedIP: netip.MustParseAddr("10.1.0.6"), PortNetworkID: "a-x", Host: "node1", MAC: "fa:16:3e:f1:00:50"}
	if f == nil || *f != want {
		t.Errorf("fip1 = %+v\nwant %+v", f, want)
	}
	if len(ir.FloatingIPs) != 1 {
		t.Errorf("unassociated floating IPs must be left out: %v", sortedKeys(ir.FloatingIPs))
	}
}

func TestBuildL3Errors(t *testing.T) {
	cases := []struct {
		name string
		edit func(s *Snapshot)
		want string
	}{
		{"route nexthop off-link", func(s *Snapshot) { s.Routers[0].Routes[0].NextHop = "10.77.0.1" },
			"router ra: routes[0].nexthop 10.77.0.1 is not on a subnet of the router"},
		{"route destination", func(s *Snapshot) { s.Routers[0].Routes[0].Destination = "banana" },
			`router ra: routes[0]: destination "banana" is not a CIDR`},
		{"gateway on internal network", func(s *Snapshot) {
			for i := range s.Networks {
				if s.Networks[i].ID == "ext" {
					s.Networks[i].External = false
				}
			}
		}, "router ra: external_gateway_info.network_id ext is not router:external"},
		{"fip fixed ip", func(s *Snapshot) { s.FloatingIPs[0].FixedIPAddress = strp("10.99.0.6") },
			"floating IP fip1: fixed_ip_address 10.99.0.6 of port a2 is not on a subnet attached to router ra"},
		{"fip address", func(s *Snapshot) { s.FloatingIPs[0].FloatingIPAddress = "2001:db8::1" },
			`floating IP fip1: floating_ip_address "2001:db8::1" is not an IPv4 address`},
		{"subnet cidr", func(s *Snapshot) { s.Subnets[0].CIDR = "10.1.0.0/33" }, `subnet sa-x: cidr "10.1.0.0/33" is not a CIDR`},
		{"interface ip outside subnet", func(s *Snapshot) { s.Ports[5].FixedIPs[0].IPAddress = "10.3.0.1" },
			"router ra: interface port ra-x: fixed_ips[0] 10.3.0.1 is not in subnet sa-x"},
		{"gateway port missing", func(s *Snapshot) {
			s.Ports = slices.DeleteFunc(s.Ports, func(p controlplane.Port) bool { return p.ID == "ra-gw" })
		},
			"router ra: external_gateway_info: no gateway port"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := l3Snapshot()
			tc.edit(&s)
			_, err := Build(BuildInput{Host: "node1", Snapshot: s, OFPorts: l3OFPorts})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestPlanL3(t *testing.T) {
	ir := buildL3Fixture(t)
	cases := []struct {
		name    string
		node    *hwdetect.Node
		backend string
		want    Backend
		reason  string
	}{
		{"auto with ct nat", natNode("true"), "", BackendOpenFlow, "auto: OVS 3.1.0 datapath netdev has conntrack NAT (Datapath capabilities ct_state_nat, ct_zone, ct_clear)"},
		{"auto without ct nat", natNode("false"), "auto", BackendNFTables, `auto: OVS 3.1.0 datapath netdev lacks conntrack NAT (Datapath capabilities ct_state_nat="false"): qrouter-ra namespace`},
		{"auto, no Datapath row", ovsNode(), "", BackendOpenFlow, "userspace datapath (netdev): its conntrack has NAT since OVS 2.8"},
		{"auto, not detected", nil, "", BackendNFTables, "node capabilities not detected"},
		{"configured nftables", natNode("true"), "nftables", BackendNFTables, "l3_backend nftables (configured)"},
		{"configured openflow without nat", natNode("false"), "openflow", BackendNone, "l3_backend openflow is configured, but OVS 3.1.0 datapath netdev lacks conntrack NAT"},
		{"bad value", natNode("true"), "vpp", BackendNone, `l3_backend "vpp" is not auto, openflow or nftables`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lay := testLayout()
			lay.L3Backend = tc.backend
			plan := PlanNode(ir, tc.node, lay)
			rp := plan.Router("ra")
			if rp == nil || rp.Backend != tc.want || !strings.Contains(rp.Reason, tc.reason) {
				t.Fatalf("router ra: %+v, want %s with %q", rp, tc.want, tc.reason)
			}
			if len(plan.Routers) != 2 || plan.Routers[1].RouterID != "rb" {
				t.Fatalf("plan routers %+v", plan.Routers)
			}
		})
	}
	plan := PlanNode(ir, natNode("true"), testLayout())
	dec := func(port string, f Feature) Decision {
		for _, d := range plan.Port(port).Decisions {
			if d.Feature == f {
				return d
			}
		}
		t.Fatalf("port %s has no %s decision", port, f)
		return Decision{}
	}
	for _, tc := range []struct {
		port   string
		f      Feature
		want   Backend
		reason string
	}{
		{"a1", FeatureRouting, BackendOpenFlow, "router ra, gateway 10.1.0.0/24: auto: OVS 3.1.0 datapath netdev has conntrack NAT"},
		{"a1", FeatureNAT, BackendOpenFlow, "SNAT to 172.16.0.10 (router ra gateway on ext)"},
		{"a2", FeatureNAT, BackendOpenFlow, "floating IP 172.16.0.50 ↔ 10.1.0.6 (router ra): 1:1 DNAT + SNAT, before the router's SNAT"},
		{"b1", FeatureNAT, BackendOpenFlow, "SNAT to 172.16.0.20 (router rb gateway on ext)"},
	} {
		if d := dec(tc.port, tc.f); d.Backend != tc.want || !strings.Contains(d.Reason, tc.reason) {
			t.Errorf("%s %s: %+v, want %s with %q", tc.port, tc.f, d, tc.want, tc.reason)
		}
	}
	if s := plan.String(); !strings.Contains(s, "router ra: openflow (auto: ") {
		t.Errorf("plan text lacks the router line:\n%s", s)
	}
}

// TestCompileL3Golden pins the L3 flows of the fixture (testdata/l3.flows); the lab
// tests prove them with traffic.
func TestCompileL3Golden(t *testing.T) {
	ir := buildL3Fixture(t)
	res, err := Compile(testLayout(), ir, PlanNode(ir, natNode("true"), testLayout()))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Conflicts) > 0 {
		t.Fatalf("conflicts: %v", res.Conflicts)
	}
	var l3 []Flow
	for _, f := range res.Flows {
		if k := CookieKind(f.Cookie); k == KindRouter || k == KindFloatingIP || f.Table >= TableL3Commit && f.Table <= TableL3Deliver ||
			f.Cookie == CookieFor(KindNode, L3PipelineOriginID) || f.Table == TableClassify && strings.Contains(f.Actions, "learn(") {
			l3 = append(l3, f)
		}
	}
	golden(t, "l3.flows", flowText(l3))

	// Zones: distinct, above the networks' 1..4094.
	c, _ := NewCompiler(testLayout())
	if _, err := c.Update(ir, PlanNode(ir, natNode("true"), testLayout())); err != nil {
		t.Fatal(err)
	}
	z := c.RouterZones()
	if len(z) != 2 || z["ra"] == z["rb"] || z["ra"] < 4096 || z["rb"] < 4096 {
		t.Errorf("router zones %v", z)
	}
	probes := c.NeighbourProbes()
	if len(probes) != 2 || probes[0].Target.String() != "172.16.0.1" || probes[0].SenderIP.String() != "172.16.0.10" || probes[1].SenderMAC != "fa:16:3e:bb:00:ff" {
		t.Errorf("probes %+v", probes)
	}
	// nftables routers get no L3 flows in the pipeline: only br-tun's acceptance of their
	// networks from the VTEPs of every host carrying them (those hosts route into them).
	lay := testLayout()
	lay.L3Backend = L3NFTables
	res2, err := Compile(testLayout(), ir, PlanNode(ir, natNode("true"), lay))
	if err != nil {
		t.Fatal(err)
	}
	ingress := 0
	for _, f := range res2.Flows {
		k := CookieKind(f.Cookie)
		if k == KindRouter && f.Bridge == testLayout().TunnelBridge && f.Table == TableTunFromTunnel {
			ingress++
			continue
		}
		if k == KindRouter || k == KindFloatingIP || f.Table >= TableL3Commit && f.Table <= TableL3Deliver {
			t.Fatalf("nftables plan compiled an L3 flow: %s", f)
		}
	}
	if ingress == 0 {
		t.Error("nftables routers: no tunnel ingress for their networks from the hosts carrying them")
	}
	// explain: a2's origins include its router and floating IP.
	if o := fmt.Sprint(c.PortOrigins("a2")); !strings.Contains(o, "router ra") || !strings.Contains(o, "floating-ip fip1") {
		t.Errorf("PortOrigins(a2) = %s", o)
	}
}

// The L3 part of TestIncrementalEqualsFull's random model.

// pickPort picks an ordinary port (not one a router or floating IP owns: the control
// plane edits those, and the generator keeps them consistent itself).
func (w *world) pickPort() int {
	for range 50 {
		i := w.r.IntN(len(w.snap.Ports))
		if w.snap.Ports[i].DeviceID == "" {
			return i
		}
	}
	return 0
}

// ensureL3 adds the external network and a subnet per network (10.<k>.0.0/16 holds
// every 10.0.0.x the generator hands out... all networks share 10.0.0.0/24, as tenants do).
func (w *world) ensureL3() {
	if !slices.ContainsFunc(w.snap.Networks, func(n controlplane.Network) bool { return n.ID == "ext" }) {
		ext := network("ext", "admin", SegVLAN, "physnet1", 4000)
		ext.External = true
		w.snap.Networks = append(w.snap.Networks, ext)
	}
	for _, n := range w.snap.Networks {
		if !slices.ContainsFunc(w.snap.Subnets, func(s controlplane.Subnet) bool { return s.ID == "sub-"+n.ID }) {
			cidr, gw := "10.0.0.0/24", "10.0.0.254"
			if n.ID == "ext" {
				cidr, gw = "172.16.0.0/24", "172.16.0.1"
			}
			w.snap.Subnets = append(w.snap.Subnets, controlplane.Subnet{ID: "sub-" + n.ID, NetworkID: n.ID, CIDR: cidr, GatewayIP: strp(gw), IPVersion: 4})
		}
		// Tenant networks are dual-stack: 2001:db8::/64 holds every IPv6 address w.ips hands out.
		if n.ID != "ext" && !slices.ContainsFunc(w.snap.Subnets, func(s controlplane.Subnet) bool { return s.ID == "sub6-"+n.ID }) {
			w.snap.Subnets = append(w.snap.Subnets, controlplane.Subnet{ID: "sub6-" + n.ID, NetworkID: n.ID, CIDR: "2001:db8::/64", GatewayIP: strp("2001:db8::fe"), IPVersion: 6})
		}
	}
}

// routerInterface is a router interface port on net: IPv4 (v4), dual-stack or IPv6 only
// (v6), as Neutron puts a network's IPv6 subnets on one router port.
func (w *world) routerInterface(dev, net, v4, v6 string) controlplane.Port {
	p := w.routerPort(controlplane.OwnerRouterInterface, dev, net, v4)
	switch w.r.IntN(4) {
	case 0:
		p.FixedIPs = append(p.FixedIPs, controlplane.FixedIP{SubnetID: "sub6-" + net, IPAddress: v6})
	case 1:
		p.FixedIPs = []controlplane.FixedIP{{SubnetID: "sub6-" + net, IPAddress: v6}}
	}
	return p
}

// hasFamily reports whether router r has an interface address of the family of prefix
// ("10." or "2001:").
func (w *world) hasFamily(r, prefix string) bool {
	return slices.ContainsFunc(w.snap.Ports, func(p controlplane.Port) bool {
		return p.DeviceID == r && p.DeviceOwner == controlplane.OwnerRouterInterface &&
			slices.ContainsFunc(p.FixedIPs, func(f controlplane.FixedIP) bool { return strings.HasPrefix(f.IPAddress, prefix) })
	})
}

func (w *world) routerPort(owner, dev, net, ip string) controlplane.Port {
	return controlplane.Port{ID: w.id("rp"), NetworkID: net, MACAddress: w.mac(), AdminStateUp: true, DeviceOwner: owner, DeviceID: dev,
		FixedIPs: []controlplane.FixedIP{{SubnetID: "sub-" + net, IPAddress: ip}}}
}

func (w *world) editL3() string {
	w.ensureL3()
	var tenantNets []string
	for _, n := range w.snap.Networks {
		if n.ID != "ext" {
			tenantNets = append(tenantNets, n.ID)
		}
	}
	routers := w.snap.Routers
	switch op := w.r.IntN(8); {
	case op <= 1 || len(routers) == 0: // add a router on 1-2 networks, with a gateway half the time
		r := controlplane.Router{ID: w.id("router"), TenantID: "t", AdminStateUp: true}
		for _, i := range w.r.Perm(len(tenantNets))[:1+w.r.IntN(2)] {
			w.snap.Ports = append(w.snap.Ports, w.routerInterface(r.ID, tenantNets[i], "10.0.0.254", "2001:db8::fe"))
		}
		if w.r.IntN(2) == 0 {
			w.setGateway(&r)
		}
		if w.r.IntN(3) == 0 && w.hasFamily(r.ID, "10.") {
			r.Routes = append(r.Routes, controlplane.Route{Destination: "192.168.7.0/24", NextHop: "10.0.0.7"})
		}
		if w.r.IntN(3) == 0 && w.hasFamily(r.ID, "2001:") {
			r.Routes = append(r.Routes, controlplane.Route{Destination: "2001:db8:7::/48", NextHop: "2001:db8::7"})
		}
		w.snap.Routers = append(w.snap.Routers, r)
		return "add router " + r.ID
	case op == 2: // toggle SNAT or admin state
		r := &routers[w.r.IntN(len(routers))]
		if r.ExternalGatewayInfo != nil && w.r.IntN(2) == 0 {
			g := *r.ExternalGatewayInfo
			g.EnableSNAT = !g.EnableSNAT
			r.ExternalGatewayInfo = &g
			return "router " + r.ID + " snat"
		}
		r.AdminStateUp = !r.AdminStateUp
		return "router " + r.ID + " admin state"
	case op == 3: // gateway on/off (off only without floating IPs, as the API insists)
		r := &routers[w.r.IntN(len(routers))]
		if r.ExternalGatewayInfo == nil {
			w.setGateway(r)
			return "router " + r.ID + " gateway set"
		}
		if slices.ContainsFunc(w.snap.FloatingIPs, func(f controlplane.FloatingIP) bool { return *f.RouterID == r.ID }) {
			return "router " + r.ID + " (gateway in use)"
		}
		w.dropPorts(func(p controlplane.Port) bool { return p.ID == r.GatewayPortID })
		r.ExternalGatewayInfo, r.GatewayPortID = nil, ""
		r.Routes = slices.DeleteFunc(slices.Clone(r.Routes), func(rt controlplane.Route) bool { return strings.HasPrefix(rt.NextHop, "172.16.") })
		return "router " + r.ID + " gateway cleared"
	case op == 4: // add or remove an interface
		r := &routers[w.r.IntN(len(routers))]
		if w.r.IntN(2) == 0 {
			w.snap.Ports = append(w.snap.Ports, w.routerInterface(r.ID, tenantNets[w.r.IntN(len(tenantNets))], "10.0.0.253", "2001:db8::fd"))
			return "router " + r.ID + " add interface"
		}
		w.dropPorts(func(p controlplane.Port) bool {
			return p.DeviceID == r.ID && p.DeviceOwner == controlplane.OwnerRouterInterface
		})
		w.snap.FloatingIPs = slices.DeleteFunc(w.snap.FloatingIPs, func(f controlplane.FloatingIP) bool {
			if *f.RouterID == r.ID {
				w.dropPorts(func(p controlplane.Port) bool { return p.DeviceID == f.ID })
				return true
			}
			return false
		})
		r.Routes = slices.DeleteFunc(slices.Clone(r.Routes), func(rt controlplane.Route) bool { return !strings.HasPrefix(rt.NextHop, "172.16.") })
		return "router " + r.ID + " interfaces removed"
	case op == 5: // delete a router with everything on it
		i := w.r.IntN(len(routers))
		id := routers[i].ID
		w.dropPorts(func(p controlplane.Port) bool { return p.DeviceID == id })
		w.snap.FloatingIPs = slices.DeleteFunc(w.snap.FloatingIPs, func(f controlplane.FloatingIP) bool {
			if *f.RouterID == id {
				w.dropPorts(func(p controlplane.Port) bool { return p.DeviceID == f.ID })
				return true
			}
			return false
		})
		w.snap.Routers = slices.Delete(routers, i, i+1)
		return "delete router " + id
	case op == 6: // associate a floating IP (or disassociate one)
		if len(w.snap.FloatingIPs) > 0 && w.r.IntN(2) == 0 {
			i := w.r.IntN(len(w.snap.FloatingIPs))
			id := w.snap.FloatingIPs[i].ID
			w.dropPorts(func(p controlplane.Port) bool { return p.DeviceID == id })
			w.snap.FloatingIPs = slices.Delete(w.snap.FloatingIPs, i, i+1)
			return "delete floating IP " + id
		}
		r := routers[w.r.IntN(len(routers))]
		if r.ExternalGatewayInfo == nil {
			return "router " + r.ID + " (no gateway for a floating IP)"
		}
		for _, p := range w.snap.Ports {
			if p.DeviceID != "" || len(p.FixedIPs) == 0 || !strings.HasPrefix(p.FixedIPs[0].IPAddress, "10.0.0.") {
				continue
			}
			if !slices.ContainsFunc(w.snap.Ports, func(q controlplane.Port) bool { return isV4Interface(q, r.ID, p.NetworkID) }) {
				continue // a floating IP needs an IPv4 interface on the port's network
			}
			f := controlplane.FloatingIP{ID: w.id("fip"), TenantID: "t", FloatingNetworkID: "ext", PortID: strp(p.ID),
				FixedIPAddress: strp(p.FixedIPs[0].IPAddress), RouterID: strp(r.ID)}
			f.FloatingIPAddress = fmt.Sprintf("172.16.0.%d", 100+w.nextID%100)
			if w.r.IntN(3) > 0 {
				fp := w.routerPort(controlplane.OwnerFloatingIP, f.ID, "ext", f.FloatingIPAddress)
				w.snap.Ports = append(w.snap.Ports, fp)
			}
			w.snap.FloatingIPs = append(w.snap.FloatingIPs, f)
			return "add floating IP " + f.ID
		}
		return "router " + r.ID + " (no port for a floating IP)"
	default: // the node's datapath gains or loses ct NAT: routers move between backends
		caps := map[string]string{"ct_state": "true", "ct_zone": "true", "ct_clear": "true", "ct_state_nat": "true"}
		if c := w.node.OVS.DatapathCapabilities["netdev"]; c != nil && c["ct_state_nat"] == "true" {
			caps["ct_state_nat"] = "false"
		}
		n := *w.node
		o := *n.OVS
		o.DatapathCapabilities = map[string]map[string]string{"netdev": caps}
		n.OVS = &o
		w.node = &n
		return "ct_state_nat " + caps["ct_state_nat"]
	}
}

func (w *world) setGateway(r *controlplane.Router) {
	gp := w.routerPort(controlplane.OwnerRouterGateway, r.ID, "ext", fmt.Sprintf("172.16.0.%d", 2+w.nextID%90))
	w.snap.Ports = append(w.snap.Ports, gp)
	r.GatewayPortID = gp.ID
	r.ExternalGatewayInfo = &controlplane.GatewayInfo{NetworkID: "ext", EnableSNAT: w.r.IntN(3) > 0, ExternalFixedIPs: gp.FixedIPs}
	if w.r.IntN(3) == 0 {
		r.Routes = append(slices.Clone(r.Routes), controlplane.Route{Destination: "198.51.100.0/24", NextHop: "172.16.0.1"})
	}
}

func (w *world) dropPorts(del func(controlplane.Port) bool) {
	for _, p := range w.snap.Ports {
		if del(p) {
			delete(w.ofp, p.ID)
		}
	}
	w.snap.Ports = slices.DeleteFunc(w.snap.Ports, del)
}

// fixL3 drops the floating IPs whose port is gone or left the router's networks (the
// control plane refuses those edits or disassociates).
func (w *world) fixL3() {
	w.snap.FloatingIPs = slices.DeleteFunc(w.snap.FloatingIPs, func(f controlplane.FloatingIP) bool {
		i := slices.IndexFunc(w.snap.Ports, func(p controlplane.Port) bool { return p.ID == *f.PortID })
		ok := i >= 0 && slices.ContainsFunc(w.snap.Ports, func(q controlplane.Port) bool {
			return isV4Interface(q, *f.RouterID, w.snap.Ports[i].NetworkID)
		})
		if !ok {
			w.dropPorts(func(p controlplane.Port) bool { return p.DeviceID == f.ID })
		}
		return !ok
	})
}

// isV4Interface: q is router r's interface on net with an IPv4 address.
func isV4Interface(q controlplane.Port, r, net string) bool {
	return q.DeviceID == r && q.DeviceOwner == controlplane.OwnerRouterInterface && q.NetworkID == net &&
		slices.ContainsFunc(q.FixedIPs, func(f controlplane.FixedIP) bool { return strings.HasPrefix(f.IPAddress, "10.") })
}
