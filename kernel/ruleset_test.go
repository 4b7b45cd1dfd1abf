package kernel

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/offlane/offlane/offload"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

// testRouter is a router with two subnets on one port pair, an external gateway and an
// extra route.
func testRouter() *offload.Router {
	return &offload.Router{
		ID: "r1", TenantID: "t1", AdminStateUp: true,
		Interfaces: []offload.RouterInterface{
			{PortID: "port-a-0123456789", NetworkID: "net-a", SubnetID: "sub-a", MAC: "fa:16:3e:00:00:01", IP: addr("10.0.1.1"), CIDR: pfx("10.0.1.0/24")},
			{PortID: "port-b-0123456789", NetworkID: "net-b", SubnetID: "sub-b", MAC: "fa:16:3e:00:00:02", IP: addr("10.0.2.1"), CIDR: pfx("10.0.2.0/24")},
			{PortID: "port-b-0123456789", NetworkID: "net-b", SubnetID: "sub-b6", MAC: "fa:16:3e:00:00:02", IP: addr("fd00::1"), CIDR: pfx("fd00::/64")},
		},
		Gateway: &offload.RouterGateway{PortID: "gw-port-0123456", NetworkID: "ext", MAC: "fa:16:3e:00:00:ff",
			IPs: []netip.Addr{addr("172.24.4.10")}, CIDRs: []netip.Prefix{pfx("172.24.4.0/24")}, NextHop: addr("172.24.4.1"), EnableSNAT: true},
		Routes: []offload.SubnetRoute{{Destination: pfx("192.168.50.0/24"), NextHop: addr("10.0.2.254")}},
	}
}

func testFIPs() []*offload.FloatingIP {
	return []*offload.FloatingIP{
		{ID: "fip-2", RouterID: "r1", FloatingIP: addr("172.24.4.21"), FixedIP: addr("10.0.2.5")},
		{ID: "fip-1", RouterID: "r1", FloatingIP: addr("172.24.4.20"), FixedIP: addr("10.0.1.5")},
	}
}

func TestCompileRouter(t *testing.T) {
	spec, err := Compile(RouterInput{Router: testRouter(), FloatingIPs: testFIPs(), MTUs: map[string]int{"net-b": 1450}}, "qrouter-r1")
	if err != nil {
		t.Fatal(err)
	}
	want := `table ip offlane {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr 172.24.4.20 dnat to 10.0.1.5 comment "fip fip-1"
		ip daddr 172.24.4.21 dnat to 10.0.2.5 comment "fip fip-2"
	}

	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "qg-port0123456" ip saddr 10.0.1.5 snat to 172.24.4.20 comment "fip fip-1"
		oifname "qg-port0123456" ip saddr 10.0.2.5 snat to 172.24.4.21 comment "fip fip-2"
		oifname "qg-port0123456" ip saddr 10.0.1.0/24 snat to 172.24.4.10 comment "snat sub-a"
		oifname "qg-port0123456" ip saddr 10.0.2.0/24 snat to 172.24.4.10 comment "snat sub-b"
	}
}
`
	if got := spec.Ruleset.String(); got != want {
		t.Errorf("ruleset:\n%s\nwant:\n%s", got, want)
	}
	var ports []string
	for _, p := range spec.Ports {
		ports = append(ports, p.IfName+" "+p.MAC+" "+p.IfaceID+" "+strings.Join(fmtPrefixes(p.Addrs), ",")+" mtu "+strconv.Itoa(p.MTU))
	}
	wantPorts := []string{
		"qr-a0123456789 fa:16:3e:00:00:01 port-a-0123456789 10.0.1.1/24 mtu 1500",
		"qr-b0123456789 fa:16:3e:00:00:02 port-b-0123456789 10.0.2.1/24,fd00::1/64 mtu 1450",
		"qg-port0123456 fa:16:3e:00:00:ff gw-port-0123456 172.24.4.10/24,172.24.4.20/32,172.24.4.21/32 mtu 1500",
	}
	if strings.Join(ports, "\n") != strings.Join(wantPorts, "\n") {
		t.Errorf("ports:\n%s\nwant:\n%s", strings.Join(ports, "\n"), strings.Join(wantPorts, "\n"))
	}
	var routes []string
	for _, r := range spec.Routes {
		routes = append(routes, r.String())
	}
	if got, want := strings.Join(routes, "; "), "0.0.0.0/0 via 172.24.4.1 dev qg-port0123456; 192.168.50.0/24 via 10.0.2.254"; got != want {
		t.Errorf("routes: %s, want %s", got, want)
	}
	if !spec.IPv6 {
		t.Error("a router with an IPv6 subnet must keep IPv6 on")
	}
	for _, p := range spec.Ports {
		if p.Namespace != "qrouter-r1" {
			t.Errorf("port %s in namespace %q", p.IfName, p.Namespace)
		}
	}
}

// TestCompileNeighbours: remote ports on the router's subnets become permanent
// neighbours of the matching qr- port; others are ignored.
func TestCompileNeighbours(t *testing.T) {
	in := RouterInput{Router: testRouter(), Neighbours: []Neighbour{
		{NetworkID: "net-b", IP: addr("10.0.2.9"), MAC: "FA:16:3E:00:09:09"},
		{NetworkID: "net-a", IP: addr("10.0.1.9"), MAC: "fa:16:3e:00:09:01"},
		{NetworkID: "net-a", IP: addr("10.0.2.77"), MAC: "fa:16:3e:00:09:02"}, // not a subnet of net-a
		{NetworkID: "other", IP: addr("10.0.1.10"), MAC: "fa:16:3e:00:09:03"},
	}}
	spec, err := Compile(in, "ns")
	if err != nil {
		t.Fatal(err)
	}
	want := []NeighbourSpec{{"qr-a0123456789", addr("10.0.1.9"), "fa:16:3e:00:09:01"}, {"qr-b0123456789", addr("10.0.2.9"), "fa:16:3e:00:09:09"}}
	if !slices.Equal(spec.Neighbours, want) {
		t.Errorf("neighbours %v, want %v", spec.Neighbours, want)
	}
	in.Neighbours[0].MAC = "zz"
	if _, err := Compile(in, "ns"); err == nil || !strings.Contains(err.Error(), `MAC "zz"`) {
		t.Errorf("bad neighbour MAC: %v", err)
	}
}

func TestCompileNoSNATNoGateway(t *testing.T) {
	r := testRouter()
	r.Gateway.EnableSNAT = false
	spec, err := Compile(RouterInput{Router: r, FloatingIPs: testFIPs()[:1]}, "ns")
	if err != nil {
		t.Fatal(err)
	}
	// The floating IP stays (DNAT + float-snat); no router SNAT.
	if got := len(spec.Ruleset.Rules); got != 2 {
		t.Errorf("enable_snat false: %d rules, want 2 (the floating IP's):\n%s", got, spec.Ruleset)
	}
	r.Gateway = nil
	spec, err = Compile(RouterInput{Router: r}, "ns")
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Ruleset.Rules) != 0 || len(spec.Ports) != 2 || len(spec.Routes) != 1 {
		t.Errorf("no gateway: rules %d ports %d routes %d, want 0, 2 (qr- only), 1 (the extra route)", len(spec.Ruleset.Rules), len(spec.Ports), len(spec.Routes))
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*RouterInput)
		want string
	}{
		{"fixed ip outside the router", func(in *RouterInput) { in.FloatingIPs[0].FixedIP = addr("10.9.9.9") }, "fixed_ip_address 10.9.9.9 is on none"},
		{"fip of another router", func(in *RouterInput) { in.FloatingIPs[0].RouterID = "r2" }, "belongs to router r2"},
		{"fip without gateway", func(in *RouterInput) { in.Router.Gateway = nil }, "has no external gateway"},
		{"duplicate fip", func(in *RouterInput) { in.FloatingIPs[1].FloatingIP = in.FloatingIPs[0].FloatingIP }, "have the same address"},
		{"duplicate fixed ip", func(in *RouterInput) { in.FloatingIPs[1].FixedIP = in.FloatingIPs[0].FixedIP }, "map the same fixed_ip_address"},
		{"ipv6 fip", func(in *RouterInput) { in.FloatingIPs[0].FloatingIP = addr("2001:db8::1") }, "must be IPv4"},
		{"route nexthop unreachable", func(in *RouterInput) { in.Router.Routes[0].NextHop = addr("10.7.0.1") }, "nexthop 10.7.0.1 is on none"},
		{"route family mix", func(in *RouterInput) { in.Router.Routes[0].NextHop = addr("fd00::9") }, "same family"},
		{"default route twice", func(in *RouterInput) {
			in.Router.Routes = append(in.Router.Routes, offload.SubnetRoute{Destination: pfx("0.0.0.0/0"), NextHop: addr("10.0.1.254")})
		}, "conflicts with the default route"},
		{"duplicate route", func(in *RouterInput) {
			in.Router.Routes = append(in.Router.Routes, offload.SubnetRoute{Destination: pfx("192.168.50.0/24"), NextHop: addr("10.0.1.254")})
		}, "two routes to 192.168.50.0/24"},
		{"ip outside cidr", func(in *RouterInput) { in.Router.Interfaces[0].IP = addr("10.0.9.1") }, "is not inside its subnet"},
		{"two MACs on one port", func(in *RouterInput) { in.Router.Interfaces[2].MAC = "fa:16:3e:00:00:09" }, "has two MACs"},
		{"bad MAC", func(in *RouterInput) { in.Router.Interfaces[0].MAC = "nope" }, `MAC "nope"`},
		{"colliding names", func(in *RouterInput) { in.Router.Interfaces[1].PortID = "x-port-a-0123456789" }, "share the last 11 characters"},
		{"gateway ips/cidrs", func(in *RouterInput) { in.Router.Gateway.CIDRs = nil }, "one external subnet CIDR per external_fixed_ip"},
		{"nexthop off subnet", func(in *RouterInput) { in.Router.Gateway.NextHop = addr("198.51.100.1") }, "gateway_ip 198.51.100.1 is on none"},
		{"snat without ipv4", func(in *RouterInput) {
			in.FloatingIPs = nil
			in.Router.Gateway.IPs, in.Router.Gateway.CIDRs, in.Router.Gateway.NextHop = []netip.Addr{addr("2001:db8::5")}, []netip.Prefix{pfx("2001:db8::/64")}, netip.Addr{}
		}, "enable_snat needs an IPv4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := RouterInput{Router: testRouter(), FloatingIPs: testFIPs()}
			tc.edit(&in)
			_, err := Compile(in, "qrouter-r1")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestInputFromIR(t *testing.T) {
	f := testFIPs()
	ir := &offload.IR{
		Routers:     map[string]*offload.Router{"r1": testRouter()},
		FloatingIPs: map[string]*offload.FloatingIP{f[0].ID: f[0], f[1].ID: f[1], "other": {ID: "other", RouterID: "r9"}},
		Segments:    map[string]*offload.Segment{"net-b": {NetworkID: "net-b", MTU: 1450}},
	}
	in, err := InputFromIR(ir, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if len(in.FloatingIPs) != 2 || in.FloatingIPs[0].ID != "fip-1" || in.MTUs["net-b"] != 1450 {
		t.Errorf("input: %d fips (first %s), mtu %d", len(in.FloatingIPs), in.FloatingIPs[0].ID, in.MTUs["net-b"])
	}
	if _, err := InputFromIR(ir, "nope"); err == nil {
		t.Error("a router not in the IR must be an error")
	}
}

func TestIfName(t *testing.T) {
	for in, want := range map[[2]string]string{
		{"qr-", "0123456789abcdef"}:                     "qr-56789abcdef",
		{"qg-", "short"}:                                "qg-short",
		{"qr-", "r1-pa"}:                                "qr-r1-pa",
		{"tap", "01a201b7-fb25-72a6-8977-11c2f9ca9d45"}: "tap1c2f9ca9d45",
		{"tap", "01a201b7-fb25-72a6-8977-22c2f9ca9d45"}: "tap2c2f9ca9d45", // same first 11
	} {
		if got := IfName(in[0], in[1]); got != want || len(got) > 15 {
			t.Errorf("IfName(%q, %q) = %q, want %q", in[0], in[1], got, want)
		}
	}
}

func TestPlugSpecValidate(t *testing.T) {
	ok := PlugSpec{Namespace: "ns1", IfName: "qr-x", MAC: "fa:16:3e:00:00:01", Addrs: []netip.Prefix{pfx("10.0.0.1/24")}, MTU: 1450}
	if err := ok.validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		edit func(*PlugSpec)
		want string
	}{
		{func(s *PlugSpec) { s.Namespace = "a/b" }, "namespace name"},
		{func(s *PlugSpec) { s.IfName = "0123456789abcdef" }, "interface name"},
		{func(s *PlugSpec) { s.HostIfName = "bad name" }, "interface name"},
		{func(s *PlugSpec) { s.MAC = "01:00:5e:00:00:01" }, "not a unicast"},
		{func(s *PlugSpec) { s.MTU = 20 }, "MTU 20"},
		{func(s *PlugSpec) { s.Addrs = []netip.Prefix{{}} }, "invalid address"},
	} {
		s := ok
		tc.edit(&s)
		if err := s.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", s, err, tc.want)
		}
	}
}

func fmtPrefixes(ps []netip.Prefix) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}
