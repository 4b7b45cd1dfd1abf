package dhcp

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/offlane/offlane/offload"
)

var (
	a   = netip.MustParseAddr
	pfx = netip.MustParsePrefix
)

// testIR: VXLAN network n1 (MTU 1450) with DHCP subnet s1 10.0.0.0/24 (gateway .1, DNS,
// a host route), non-DHCP subnet s2 10.0.1.0/24 and IPv6 DHCP subnet s6; DHCP port
// 10.0.0.2; a local VM (10.0.0.3 and 10.0.1.3), a remote VM (10.0.0.4), a VM with only a
// non-DHCP address, a router interface; network n2 (another DHCP port) is on no subnet
// of this node.
func testIR() *offload.IR {
	return &offload.IR{
		Segments: map[string]*offload.Segment{"n1": {NetworkID: "n1", Type: offload.SegVXLAN, MTU: 1450}},
		Subnets: map[string]*offload.Subnet{
			"s1": {ID: "s1", NetworkID: "n1", CIDR: pfx("10.0.0.0/24"), Gateway: a("10.0.0.1"), EnableDHCP: true,
				DNS: []netip.Addr{a("192.0.2.53"), a("2001:db8::53"), a("192.0.2.54")}, HostRoutes: []offload.SubnetRoute{{Destination: pfx("172.16.0.0/16"), NextHop: a("10.0.0.254")}}},
			"s2": {ID: "s2", NetworkID: "n1", CIDR: pfx("10.0.1.0/24"), Gateway: a("10.0.1.1")},
			"s6": {ID: "s6", NetworkID: "n1", CIDR: pfx("2001:db8:1::/64"), EnableDHCP: true},
		},
		DHCPPorts: map[string]*offload.DHCPPort{
			"n1": {PortID: "dhcp1", NetworkID: "n1", MAC: "fa:16:3e:00:00:d1", IPs: []netip.Addr{a("10.0.0.2"), a("2001:db8:1::2")}},
			"n2": {PortID: "dhcp2", NetworkID: "n2", MAC: "fa:16:3e:00:00:d2", IPs: []netip.Addr{a("10.5.0.2")}},
		},
		Ports: map[string]*offload.Port{
			"vm1":   {ID: "vm1", NetworkID: "n1", MAC: "fa:16:3e:00:00:01", IPs: []netip.Addr{a("10.0.0.3"), a("10.0.1.3"), a("2001:db8:1::3")}},
			"only2": {ID: "only2", NetworkID: "n1", MAC: "fa:16:3e:00:00:05", IPs: []netip.Addr{a("10.0.1.5")}},
			"rtr":   {ID: "rtr", NetworkID: "n1", MAC: "fa:16:3e:00:00:0f", IPs: []netip.Addr{a("10.0.0.1")}, DeviceOwner: "network:router_interface"},
			"dhcp1": {ID: "dhcp1", NetworkID: "n1", MAC: "fa:16:3e:00:00:d1", IPs: []netip.Addr{a("10.0.0.2")}, DeviceOwner: "network:dhcp"},
			"other": {ID: "other", NetworkID: "n3", MAC: "fa:16:3e:00:00:33", IPs: []netip.Addr{a("10.0.0.9")}},
		},
		RemotePorts: map[string]*offload.RemotePort{
			"vm2": {ID: "vm2", NetworkID: "n1", MAC: "fa:16:3e:00:00:02", IPs: []netip.Addr{a("10.0.0.4")}},
		},
	}
}

func TestBuildTable(t *testing.T) {
	tab, err := BuildTable(testIR(), "n1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if tab.LeaseTime != DefaultLeaseTime || !slices.Equal(tab.ServerIPs(), []netip.Addr{a("10.0.0.2")}) {
		t.Fatalf("table: %+v, server IPs %v", tab, tab.ServerIPs())
	}
	s1 := func(port, mac, ip string) Lease {
		return Lease{PortID: port, MAC: mac, IP: a(ip), SubnetID: "s1", Subnet: pfx("10.0.0.0/24"), Router: a("10.0.0.1"),
			DNS: []netip.Addr{a("192.0.2.53"), a("192.0.2.54")}, MTU: 1450, ServerID: a("10.0.0.2"),
			Routes: []offload.SubnetRoute{{Destination: pfx("172.16.0.0/16"), NextHop: a("10.0.0.254")}, {Destination: pfx("0.0.0.0/0"), NextHop: a("10.0.0.1")}}}
	}
	// Local and remote VMs and the router port get one; the DHCP port itself, a port with
	// only a non-DHCP address and a port of another network do not.
	want := []Lease{s1("vm1", "fa:16:3e:00:00:01", "10.0.0.3"), s1("vm2", "fa:16:3e:00:00:02", "10.0.0.4"), s1("rtr", "fa:16:3e:00:00:0f", "10.0.0.1")}
	got := tab.Leases()
	if len(got) != len(want) {
		t.Fatalf("leases %+v", got)
	}
	for i := range want {
		if !leaseEqual(got[i], want[i]) {
			t.Errorf("lease %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	if l := tab.Lookup(net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 0x05}); l != nil {
		t.Errorf("a port without a DHCP-subnet address has a lease: %+v", l)
	}
}

func leaseEqual(x, y Lease) bool {
	return x.PortID == y.PortID && x.MAC == y.MAC && x.IP == y.IP && x.SubnetID == y.SubnetID && x.Subnet == y.Subnet &&
		x.Router == y.Router && slices.Equal(x.DNS, y.DNS) && slices.Equal(x.Routes, y.Routes) && x.MTU == y.MTU && x.ServerID == y.ServerID
}

// TestBuildTableOptions: option 121 holds the default route only with host routes and
// a gateway, never twice; no gateway → no router; VLAN MTU 1500 passes through.
func TestBuildTableOptions(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(ir *offload.IR)
		router netip.Addr
		routes []offload.SubnetRoute
		mtu    int
	}{
		{"no host routes: no option 121", func(ir *offload.IR) { ir.Subnets["s1"].HostRoutes = nil }, a("10.0.0.1"), nil, 1450},
		{"no gateway: routes as given, no default", func(ir *offload.IR) { ir.Subnets["s1"].Gateway = netip.Addr{} }, netip.Addr{},
			[]offload.SubnetRoute{{Destination: pfx("172.16.0.0/16"), NextHop: a("10.0.0.254")}}, 1450},
		{"a host route is the default", func(ir *offload.IR) {
			ir.Subnets["s1"].HostRoutes = append(ir.Subnets["s1"].HostRoutes, offload.SubnetRoute{Destination: pfx("0.0.0.0/0"), NextHop: a("10.0.0.253")})
		}, a("10.0.0.1"), []offload.SubnetRoute{{Destination: pfx("172.16.0.0/16"), NextHop: a("10.0.0.254")}, {Destination: pfx("0.0.0.0/0"), NextHop: a("10.0.0.253")}}, 1450},
		{"vlan", func(ir *offload.IR) { ir.Segments["n1"].Type, ir.Segments["n1"].MTU = offload.SegVLAN, 1500 }, a("10.0.0.1"),
			[]offload.SubnetRoute{{Destination: pfx("172.16.0.0/16"), NextHop: a("10.0.0.254")}, {Destination: pfx("0.0.0.0/0"), NextHop: a("10.0.0.1")}}, 1500},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ir := testIR()
			c.edit(ir)
			tab, err := BuildTable(ir, "n1", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			l := tab.Lookup(net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 1})
			if l == nil || l.Router != c.router || !slices.Equal(l.Routes, c.routes) || l.MTU != c.mtu || tab.LeaseTime != time.Hour {
				t.Fatalf("lease %+v", l)
			}
		})
	}
}

func TestBuildTableNothingToServe(t *testing.T) {
	cases := map[string]func(ir *offload.IR) string{
		"no DHCP port":          func(ir *offload.IR) string { return "n9" },
		"not a segment":         func(ir *offload.IR) string { return "n2" },
		"no IPv4 DHCP subnet":   func(ir *offload.IR) string { ir.Subnets["s1"].EnableDHCP = false; return "n1" },
		"DHCP port off subnets": func(ir *offload.IR) string { ir.DHCPPorts["n1"].IPs = []netip.Addr{a("10.0.1.2")}; return "n1" },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			ir := testIR()
			if _, err := BuildTable(ir, edit(ir), 0); !errors.Is(err, ErrNothingToServe) {
				t.Fatalf("want ErrNothingToServe, got %v", err)
			}
		})
	}
	ir := testIR()
	ir.RemotePorts["dup"] = &offload.RemotePort{ID: "dup", NetworkID: "n1", MAC: "fa:16:3e:00:00:01", IPs: []netip.Addr{a("10.0.0.8")}}
	if _, err := BuildTable(ir, "n1", 0); err == nil || errors.Is(err, ErrNothingToServe) {
		t.Fatalf("two ports with one MAC: %v", err)
	}
	if _, err := BuildTable(testIR(), "n1", time.Second); err == nil {
		t.Fatal("a 1 s lease time was accepted")
	}
}

func request(t *testing.T, mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(hw)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	// Through the wire format, as the server gets it.
	m, err = dhcpv4.FromBytes(m.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestReply: the DHCP exchange against the table, through the wire format.
func TestReply(t *testing.T) {
	tab, err := BuildTable(testIR(), "n1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	vm1 := "fa:16:3e:00:00:01"
	prl := dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionInterfaceMTU, dhcpv4.OptionClasslessStaticRoute)

	// DISCOVER → OFFER with every option.
	disc := request(t, vm1, dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), prl)
	off, why := tab.Reply(disc)
	if off == nil {
		t.Fatalf("no OFFER: %s", why)
	}
	if off.MessageType() != dhcpv4.MessageTypeOffer || off.OpCode != dhcpv4.OpcodeBootReply || off.TransactionID != disc.TransactionID ||
		!off.YourIPAddr.Equal(net.ParseIP("10.0.0.3")) || !off.ServerIdentifier().Equal(net.ParseIP("10.0.0.2")) ||
		off.SubnetMask().String() != "ffffff00" || !slices.EqualFunc(off.Router(), []net.IP{net.ParseIP("10.0.0.1")}, net.IP.Equal) ||
		!slices.EqualFunc(off.DNS(), []net.IP{net.ParseIP("192.0.2.53"), net.ParseIP("192.0.2.54")}, net.IP.Equal) ||
		!off.BroadcastAddress().Equal(net.ParseIP("10.0.0.255")) || off.IPAddressLeaseTime(0) != time.Hour {
		t.Fatalf("OFFER:\n%s", off.Summary())
	}
	if mtu := off.GetOneOption(dhcpv4.OptionInterfaceMTU); !slices.Equal(mtu, []byte{0x05, 0xaa}) {
		t.Fatalf("option 26 = %x, want 05aa (1450)", mtu)
	}
	var routes []string
	for _, r := range off.ClasslessStaticRoute() {
		routes = append(routes, r.String())
	}
	if !slices.Equal(routes, []string{"route to 172.16.0.0/16 via 10.0.0.254", "route to 0.0.0.0/0 via 10.0.0.1"}) {
		t.Fatalf("option 121: %q", routes)
	}
	// Option 121 only when asked for (a client without a PRL asks for everything).
	plain, _ := tab.Reply(request(t, vm1, dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover), dhcpv4.WithRequestedOptions(dhcpv4.OptionRouter)))
	if plain == nil || plain.Options.Has(dhcpv4.OptionClasslessStaticRoute) || !plain.Options.Has(dhcpv4.OptionInterfaceMTU) {
		t.Fatalf("OFFER without a PRL:\n%s", plain.Summary())
	}

	// REQUEST (SELECTING) for the offered address → ACK.
	req := request(t, vm1, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), prl,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.3"))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.0.0.2"))))
	if ack, why := tab.Reply(req); ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(net.ParseIP("10.0.0.3")) {
		t.Fatalf("ACK: %v %s", ack, why)
	}
	// RENEWING: ciaddr, no option 50 → ACK.
	renew := request(t, vm1, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.ParseIP("10.0.0.3")))
	if ack, why := tab.Reply(renew); ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("renew: %v %s", ack, why)
	}
	// A wrong address (INIT-REBOOT after a move, or a renew of a stale one) → NAK,
	// broadcast, no address.
	for _, wrong := range []*dhcpv4.DHCPv4{
		request(t, vm1, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.77")))),
		request(t, vm1, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.ParseIP("10.0.1.3"))),
	} {
		nak, why := tab.Reply(wrong)
		if nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak || !nak.YourIPAddr.IsUnspecified() || !nak.IsBroadcast() ||
			!nak.ServerIdentifier().Equal(net.ParseIP("10.0.0.2")) || nak.Options.Has(dhcpv4.OptionRouter) || why == "" {
			t.Fatalf("NAK: %v %q", nak, why)
		}
	}
	// INFORM → ACK with options, no address and no lease time.
	inf, _ := tab.Reply(request(t, vm1, dhcpv4.WithMessageType(dhcpv4.MessageTypeInform), dhcpv4.WithClientIP(net.ParseIP("10.0.0.3"))))
	if inf == nil || inf.MessageType() != dhcpv4.MessageTypeAck || !inf.YourIPAddr.IsUnspecified() || inf.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || !inf.Options.Has(dhcpv4.OptionRouter) {
		t.Fatalf("INFORM: %v", inf)
	}

	// No answer: unknown MAC, another server chosen, RELEASE, a BOOTREPLY, no address.
	silent := map[string]*dhcpv4.DHCPv4{
		"unknown MAC":    request(t, "fa:16:3e:99:99:99", dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover)),
		"other server":   request(t, vm1, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.3"))), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.0.0.99")))),
		"release":        request(t, vm1, dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithClientIP(net.ParseIP("10.0.0.3"))),
		"decline":        request(t, vm1, dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline)),
		"reply":          request(t, vm1, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer), dhcpv4.WithReply(disc)),
		"request no ip":  request(t, vm1, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest)),
		"DHCP port self": request(t, "fa:16:3e:00:00:d1", dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover)),
	}
	for name, m := range silent {
		if r, why := tab.Reply(m); r != nil || why == "" {
			t.Errorf("%s: answered %v (why %q)", name, r, why)
		}
	}
}

// FuzzReply: any packet the parser accepts gets a well-formed answer or none, never a
// panic; an answer always goes to a known MAC with its own address or none.
func FuzzReply(f *testing.F) {
	tab, err := BuildTable(testIR(), "n1", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	hw, _ := net.ParseMAC("fa:16:3e:00:00:01")
	for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform} {
		m, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(mt), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.3"))))
		f.Add(m.ToBytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		r, _ := tab.Reply(m)
		if r == nil {
			return
		}
		l := tab.Lookup(m.ClientHWAddr)
		if l == nil || (!r.YourIPAddr.IsUnspecified() && !r.YourIPAddr.Equal(l.IP.AsSlice())) {
			t.Fatalf("answer %v to %s (lease %+v)", r.Summary(), m.ClientHWAddr, l)
		}
		if _, err := dhcpv4.FromBytes(r.ToBytes()); err != nil {
			t.Fatalf("answer does not parse: %v", err)
		}
	})
}

// TestDesired: one server per servable network, in qdhcp-<network>, on the DHCP port's
// tap interface with its MAC, addresses (subnet prefix lengths) and the segment MTU.
func TestDesired(t *testing.T) {
	ir := testIR()
	ir.Segments["n4"] = &offload.Segment{NetworkID: "n4", Type: offload.SegVLAN, MTU: 1500}
	ir.Subnets["s4"] = &offload.Subnet{ID: "s4", NetworkID: "n4", CIDR: pfx("10.4.0.0/24")} // no DHCP
	ir.DHCPPorts["n4"] = &offload.DHCPPort{PortID: "dhcp4", NetworkID: "n4", MAC: "fa:16:3e:00:00:d4", IPs: []netip.Addr{a("10.4.0.2")}}
	got, err := Desired(ir, 0)
	if err != nil {
		t.Fatal(err)
	}
	in, ok := got["n1"]
	if len(got) != 1 || !ok || in.Table == nil || in.Table.Len() != 3 {
		t.Fatalf("desired %+v", got)
	}
	p := in.Plug
	if p.Namespace != "qdhcp-n1" || p.IfName != "tapdhcp1" || p.MAC != "fa:16:3e:00:00:d1" || p.MTU != 1450 || p.IfaceID != "dhcp1" ||
		!slices.Equal(p.Addrs, []netip.Prefix{pfx("10.0.0.2/24"), pfx("2001:db8:1::2/64")}) {
		t.Fatalf("plug spec %+v", p)
	}
	// A broken network is reported; the others are still there.
	ir.RemotePorts["dup"] = &offload.RemotePort{ID: "dup", NetworkID: "n1", MAC: "fa:16:3e:00:00:01", IPs: []netip.Addr{a("10.0.0.8")}}
	ir.Subnets["s4"].EnableDHCP = true
	got, err = Desired(ir, 0)
	if err == nil || len(got) != 1 || got["n4"].Plug.Namespace != "qdhcp-n4" {
		t.Fatalf("desired with a broken network: %v %+v", err, got)
	}
}
