package kernel

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"

	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

// The kernel lab: real namespaces, veths, Linux bridges standing in for br-int (the
// Switch), real nftables and real traffic. No OVS: test/e2e runs the same backend on
// real ovs-vswitchd.

// kl is one lab: a "switch" namespace with a Linux bridge per network, and a router
// backend whose namespaces carry a prefix of their own.
type kl struct {
	t      testing.TB
	id     string
	sw     string // the switch namespace
	bsw    *bridgeSwitch
	rs     *Routers
	prefix string
}

func newKL(t testing.TB) *kl {
	t.Helper()
	lab.Require(t, "ip", "nft", "ping")
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	k := &kl{t: t, id: hex.EncodeToString(b)}
	k.sw = k.ns("sw")
	k.bsw = &bridgeSwitch{ns: k.sw, bridgeOf: map[string]string{}}
	k.prefix = "olk" + k.id + "-qrouter-"
	k.rs = NewRouters(RoutersOptions{NamespacePrefix: k.prefix, HostNamespace: k.sw, Switch: k.bsw, Logger: lab.Logger(t)})
	t.Cleanup(func() {
		// Whatever a failed test left: every router namespace of this lab.
		nss, _ := nsList(k.prefix)
		for _, ns := range nss {
			_ = nsDelete(ns)
		}
	})
	return k
}

func (k *kl) run(args ...string) string {
	k.t.Helper()
	out, err := lab.Run(args[0], args[1:]...)
	if err != nil {
		k.t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	return out
}

// ns creates a namespace named after the lab (deleted at cleanup) with lo up and no IPv6.
func (k *kl) ns(name string) string {
	k.t.Helper()
	ns := "olk" + k.id + "-" + name
	k.run("ip", "netns", "add", ns)
	k.t.Cleanup(func() { _, _ = lab.Run("ip", "netns", "del", ns) })
	k.run("ip", "-n", ns, "link", "set", "lo", "up")
	k.run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
	return ns
}

// bridge adds a Linux bridge to the switch namespace and maps tenant ports to it.
func (k *kl) bridge(name string, portIDs ...string) {
	k.t.Helper()
	if _, err := lab.Run("ip", "-n", k.sw, "link", "show", name); err != nil {
		k.run("ip", "-n", k.sw, "link", "add", name, "type", "bridge")
		k.run("ip", "-n", k.sw, "link", "set", name, "up")
	}
	for _, id := range portIDs {
		k.bsw.bridgeOf[id] = name
	}
}

// host is a namespace "VM" or server: eth0 on bridge br with addr and a default route.
func (k *kl) host(name, br, addr, gw string) string {
	k.t.Helper()
	ns := k.ns(name)
	hostEnd := "v" + k.id + name
	if len(hostEnd) > 15 {
		hostEnd = hostEnd[:15]
	}
	k.run("ip", "-n", k.sw, "link", "add", hostEnd, "type", "veth", "peer", "name", "eth0", "netns", ns)
	k.run("ip", "-n", k.sw, "link", "set", hostEnd, "master", br, "up")
	k.run("ip", "-n", ns, "addr", "add", addr, "dev", "eth0")
	k.run("ip", "-n", ns, "link", "set", "eth0", "up")
	if gw != "" {
		k.run("ip", "-n", ns, "route", "add", "default", "via", gw)
	}
	return ns
}

// bridgeSwitch is a Switch made of Linux bridges in one namespace: PortAdd enslaves the
// veth end to its network's bridge and keeps iface-id and MAC in the link's alias, so
// PortGet reads the state back from the kernel.
type bridgeSwitch struct {
	ns       string
	bridgeOf map[string]string // tenant port ID → bridge
	adds     int
}

func (s *bridgeSwitch) PortAdd(_ context.Context, ports ...ovsdpdk.Port) error {
	h, _, closer, err := handleAt(s.ns)
	if err != nil {
		return err
	}
	defer closer()
	for _, p := range ports {
		s.adds++
		br, ok := s.bridgeOf[p.IfaceID]
		if !ok {
			return fmt.Errorf("switch: no bridge for port %s", p.IfaceID)
		}
		l, err := h.LinkByName(p.Name)
		if err != nil {
			return err
		}
		b, err := h.LinkByName(br)
		if err != nil {
			return err
		}
		if err := h.LinkSetMaster(l, b); err != nil {
			return err
		}
		if err := h.LinkSetAlias(l, "iface-id="+p.IfaceID+" mac="+p.MAC); err != nil {
			return err
		}
	}
	return nil
}

func (s *bridgeSwitch) PortDel(_ context.Context, names ...string) error {
	h, _, closer, err := handleAt(s.ns)
	if err != nil {
		return err
	}
	defer closer()
	for _, n := range names {
		if l, err := h.LinkByName(n); err == nil {
			if err := h.LinkSetNoMaster(l); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *bridgeSwitch) PortGet(_ context.Context, name string) (*ovsdpdk.PortStatus, error) {
	h, _, closer, err := handleAt(s.ns)
	if err != nil {
		return nil, err
	}
	defer closer()
	l, err := h.LinkByName(name)
	if err != nil || l.Attrs().MasterIndex == 0 {
		return nil, fmt.Errorf("%s: %w", name, ovsdpdk.ErrPortNotFound)
	}
	st := &ovsdpdk.PortStatus{Name: name, Type: ovsdpdk.PortSystem}
	for _, f := range strings.Fields(l.Attrs().Alias) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "iface-id":
			st.IfaceID = v
		case "mac":
			st.MAC = v
		}
	}
	return st, nil
}

// --- traffic -------------------------------------------------------------------------

// server listens on TCP port in namespace ns and answers every connection with the
// source address it saw.
func server(t *testing.T, ns string, port int) {
	t.Helper()
	var ln net.Listener
	if err := inNS(ns, func() (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			_, _ = fmt.Fprintln(c, host)
			_ = c.Close()
		}
	}()
}

// seenFrom connects from namespace ns to dst:port and returns the source address the
// server saw; it retries for a while (neighbour resolution) and fails the test when no
// connection succeeds.
func seenFrom(t *testing.T, ns, dst string, port int) string {
	t.Helper()
	got, err := dialSeen(ns, dst, port, 20*time.Second)
	if err != nil {
		t.Fatalf("%s → %s:%d: %v", ns, dst, port, err)
	}
	return got
}

func dialSeen(ns, dst string, port int, within time.Duration) (string, error) {
	deadline := time.Now().Add(within)
	for {
		var line string
		err := inNS(ns, func() error {
			c, err := net.DialTimeout("tcp4", net.JoinHostPort(dst, fmt.Sprint(port)), time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			line, err = bufio.NewReader(c).ReadString('\n')
			return err
		})
		if err == nil {
			return strings.TrimSpace(line), nil
		}
		if time.Now().After(deadline) {
			return "", err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pingTTL pings dst from ns (retrying up to 20 s) and returns the reply's TTL.
func pingTTL(t testing.TB, ns, dst string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := lab.Run("ip", "netns", "exec", ns, "ping", "-n", "-c", "1", "-W", "1", dst)
		if err == nil {
			if i := strings.Index(out, "ttl="); i >= 0 {
				return strings.Fields(out[i+4:])[0]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s cannot ping %s: %v\n%s", ns, dst, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// --- the router of the tests ---------------------------------------------------------

// labRouter: tenant subnets A (10.0.1.0/24) and B (10.0.2.0/24), external 172.24.4.0/24
// with the upstream gateway .1, SNAT to .10, and an extra route 192.168.50.0/24 via
// 10.0.2.254.
func labRouter(id, ext string, extIP string) *offload.Router {
	return &offload.Router{
		ID: id, AdminStateUp: true,
		Interfaces: []offload.RouterInterface{
			{PortID: id + "-pa", NetworkID: id + "-na", SubnetID: id + "-sa", MAC: "fa:16:3e:00:01:01", IP: addr("10.0.1.1"), CIDR: pfx("10.0.1.0/24")},
			{PortID: id + "-pb", NetworkID: id + "-nb", SubnetID: id + "-sb", MAC: "fa:16:3e:00:01:02", IP: addr("10.0.2.1"), CIDR: pfx("10.0.2.0/24")},
		},
		Gateway: &offload.RouterGateway{PortID: id + "-pg", NetworkID: ext, MAC: "fa:16:3e:00:01:ff",
			IPs: []netip.Addr{addr(extIP)}, CIDRs: []netip.Prefix{pfx("172.24.4.0/24")}, NextHop: addr("172.24.4.1"), EnableSNAT: true},
		Routes: []offload.SubnetRoute{{Destination: pfx("192.168.50.0/24"), NextHop: addr("10.0.2.254")}},
	}
}

// nftJSONRules lists the rules of `nft -j list ruleset` inside ns as
// "chain|match addresses|action addr|comment".
func nftJSONRules(t *testing.T, ns string) []string {
	t.Helper()
	out, err := lab.Run("ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j: %v\n%s", err, out)
	}
	var rules []string
	for _, o := range doc.Nftables {
		raw, ok := o["rule"]
		if !ok {
			continue
		}
		var r struct {
			Family, Table, Chain, Comment string
			Expr                          []map[string]json.RawMessage
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		if r.Family != "ip" || r.Table != TableName {
			t.Errorf("a rule outside table ip %s: %s", TableName, raw)
		}
		var parts []string
		for _, e := range r.Expr {
			for k, v := range e {
				switch k {
				case "match":
					var m struct {
						Left  map[string]map[string]any `json:"left"`
						Right any                       `json:"right"`
					}
					_ = json.Unmarshal(v, &m)
					right := fmt.Sprint(m.Right)
					if p, ok := m.Right.(map[string]any); ok {
						if pf, ok := p["prefix"].(map[string]any); ok {
							right = fmt.Sprintf("%v/%v", pf["addr"], pf["len"])
						}
					}
					for kind, f := range m.Left {
						parts = append(parts, fmt.Sprintf("%s %v%v%v=%s", kind, f["protocol"], f["key"], f["field"], right))
					}
				case "snat", "dnat":
					var n struct{ Addr string }
					_ = json.Unmarshal(v, &n)
					parts = append(parts, k+" "+n.Addr)
				default:
					parts = append(parts, k+"?")
				}
			}
		}
		rules = append(rules, r.Chain+"|"+strings.Join(parts, " ")+"|"+r.Comment)
	}
	return rules
}

// wantJSONRules is nftJSONRules' form of a compiled ruleset.
func wantJSONRules(rs Ruleset) []string {
	var out []string
	for _, c := range []string{ChainPrerouting, ChainPostrouting} {
		for _, r := range rs.Chain(c) {
			var parts []string
			if r.OutIf != "" {
				parts = append(parts, "meta <nil>oifname<nil>="+r.OutIf)
			}
			if r.Src.IsValid() {
				parts = append(parts, "payload ip<nil>saddr="+nftPrefix(r.Src))
			}
			if r.Dst.IsValid() {
				parts = append(parts, "payload ip<nil>daddr="+nftPrefix(r.Dst))
			}
			parts = append(parts, r.Action+" "+r.To.String())
			out = append(out, c+"|"+strings.Join(parts, " ")+"|"+r.Comment)
		}
	}
	return out
}

// ruleHandles are the kernel's handles of the table's rules: a replaced table gets new ones.
func ruleHandles(t *testing.T, ns string) []uint64 {
	t.Helper()
	c, closer, err := nftConn(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer closer()
	var hs []uint64
	for _, name := range []string{ChainPrerouting, ChainPostrouting} {
		rules, err := c.GetRules(table(), &nftables.Chain{Name: name, Table: table()})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			hs = append(hs, r.Handle)
		}
	}
	return hs
}

// watchNetlink counts link, address and route notifications inside ns until stop.
func watchNetlink(t *testing.T, ns string) (stop func() []string) {
	t.Helper()
	h, nsh, closer, err := handleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	done := make(chan struct{})
	lc, ac, rc := make(chan netlink.LinkUpdate, 64), make(chan netlink.AddrUpdate, 64), make(chan netlink.RouteUpdate, 64)
	if err := errors.Join(netlink.LinkSubscribeAt(nsh, lc, done), netlink.AddrSubscribeAt(nsh, ac, done),
		netlink.RouteSubscribeAt(nsh, rc, done)); err != nil {
		t.Fatal(err)
	}
	return func() []string {
		time.Sleep(300 * time.Millisecond) // let late notifications arrive
		close(done)
		defer closer()
		var ev []string
		for {
			select {
			case u := <-lc:
				ev = append(ev, "link "+u.Link.Attrs().Name)
			case u := <-ac:
				ev = append(ev, "addr "+u.LinkAddress.String())
			case u := <-rc:
				ev = append(ev, "route "+u.Route.String())
			default:
				return ev
			}
		}
	}
}

// TestLabRouterNFTables realises a router with the nftables backend and proves it with
// the kernel's own state (netlink, nftables read back by the library and by `nft -j`)
// and with traffic: east-west routing with one hop, an extra route, SNAT seen by an
// external server, a floating IP both ways. Then: a second Ensure writes nothing; an
// update (floating IP moved, SNAT off, a subnet removed) converges; Delete cleans up.
func TestLabRouterNFTables(t *testing.T) {
	k := newKL(t)
	r := labRouter("r1", "ext", "172.24.4.10")
	k.bridge("br-a", "r1-pa")
	k.bridge("br-b", "r1-pb")
	k.bridge("br-ext", "r1-pg")
	vmA := k.host("vma", "br-a", "10.0.1.5/24", "10.0.1.1")
	vmB := k.host("vmb", "br-b", "10.0.2.5/24", "10.0.2.1")
	// The next hop of the extra route: 192.168.50.1 behind 10.0.2.254.
	nh := k.host("nh", "br-b", "10.0.2.254/24", "10.0.2.1")
	k.run("ip", "-n", nh, "addr", "add", "192.168.50.1/32", "dev", "lo")
	ext := k.host("ext", "br-ext", "172.24.4.1/24", "")
	server(t, ext, 8080)
	server(t, vmB, 8080)
	server(t, vmA, 8080)

	fips := []*offload.FloatingIP{{ID: "fip-b", RouterID: "r1", NetworkID: "ext", FloatingIP: addr("172.24.4.20"), FixedIP: addr("10.0.2.5")}}
	in := RouterInput{Router: r, FloatingIPs: fips, MTUs: map[string]int{"r1-nb": 1450}}
	ctx := context.Background()
	changes, err := k.rs.Ensure(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) == 0 {
		t.Fatal("the first Ensure reported no changes")
	}
	ns := k.rs.Namespace("r1")
	spec, err := Compile(in, ns)
	if err != nil {
		t.Fatal(err)
	}

	// State read back: nftables (library and nft -j), links, addresses, routes, sysctl.
	got, err := k.rs.Ruleset("r1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(spec.Ruleset) {
		t.Fatalf("ruleset read back:\n%s\nwant:\n%s", got, spec.Ruleset)
	}
	if j, w := nftJSONRules(t, ns), wantJSONRules(spec.Ruleset); !slices.Equal(j, w) {
		t.Fatalf("nft -j list ruleset:\n%s\nwant:\n%s", strings.Join(j, "\n"), strings.Join(w, "\n"))
	}
	if txt := k.run("ip", "netns", "exec", ns, "nft", "list", "table", "ip", TableName); txt != spec.Ruleset.String() {
		t.Errorf("nft list table:\n%s\nwant:\n%s", txt, spec.Ruleset)
	}
	addrs := k.run("ip", "-n", ns, "-o", "-4", "addr", "show")
	for _, want := range []string{"qr-r1-pa inet 10.0.1.1/24", "qr-r1-pb inet 10.0.2.1/24", "qg-r1-pg inet 172.24.4.10/24", "qg-r1-pg inet 172.24.4.20/32"} {
		f := strings.Fields(want)
		if !strings.Contains(addrs, f[0]+"    "+f[1]+" "+f[2]) {
			t.Errorf("namespace addresses lack %q:\n%s", want, addrs)
		}
	}
	if l := k.run("ip", "-n", ns, "-o", "link", "show", "qr-r1-pb"); !strings.Contains(l, "mtu 1450") || !strings.Contains(l, "fa:16:3e:00:01:02") {
		t.Errorf("qr-r1-pb: want mtu 1450 and the port's MAC: %s", l)
	}
	routes := k.run("ip", "-n", ns, "route", "show", "proto", "static")
	for _, want := range []string{"default via 172.24.4.1 dev qg-r1-pg", "192.168.50.0/24 via 10.0.2.254 dev qr-r1-pb"} {
		if !strings.Contains(routes, want) {
			t.Errorf("routes lack %q:\n%s", want, routes)
		}
	}
	if fwd := k.run("ip", "netns", "exec", ns, "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(fwd) != "1" {
		t.Errorf("ip_forward = %s", fwd)
	}
	for _, p := range []string{"qr-r1-pa", "qr-r1-pb", "qg-r1-pg"} {
		st, err := k.bsw.PortGet(ctx, p)
		if err != nil || !strings.HasPrefix(st.IfaceID, "r1-p") {
			t.Errorf("switch port %s: %+v %v", p, st, err)
		}
	}

	// Traffic.
	if ttl := pingTTL(t, vmA, "10.0.2.5"); ttl != "63" {
		t.Errorf("A → B: reply TTL %s, want 63 (one routed hop)", ttl)
	}
	if src := seenFrom(t, vmB, "10.0.1.5", 8080); src != "10.0.2.5" {
		t.Errorf("east-west must not be NATed: A saw %s, want 10.0.2.5", src)
	}
	pingTTL(t, vmA, "192.168.50.1") // the extra route
	if src := seenFrom(t, vmA, "172.24.4.1", 8080); src != "172.24.4.10" {
		t.Errorf("SNAT: the external server saw %s, want the router's 172.24.4.10", src)
	}
	if src := seenFrom(t, vmB, "172.24.4.1", 8080); src != "172.24.4.20" {
		t.Errorf("floating IP outbound: the external server saw %s, want the floating IP 172.24.4.20", src)
	}
	if src := seenFrom(t, ext, "172.24.4.20", 8080); src != "172.24.4.1" {
		t.Errorf("floating IP inbound: B saw %s, want the external server 172.24.4.1", src)
	}
	if _, err := dialSeen(ext, "172.24.4.10", 8080, 2*time.Second); err == nil {
		t.Error("the router's SNAT address must not forward inbound connections")
	}

	// Idempotence: nothing changes, nothing is written.
	handles := ruleHandles(t, ns)
	adds := k.bsw.adds
	stop := watchNetlink(t, ns)
	changes, err = k.rs.Ensure(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if ev := stop(); len(changes) > 0 || len(ev) > 0 {
		t.Errorf("a second Ensure changed %v; netlink saw %v", changes, ev)
	}
	if h := ruleHandles(t, ns); !slices.Equal(h, handles) || k.bsw.adds != adds {
		t.Errorf("a second Ensure replaced the table (handles %v → %v) or re-attached ports (%d → %d)", handles, h, adds, k.bsw.adds)
	}

	// Update: the floating IP moves to A, SNAT goes off, subnet B goes away.
	r2 := labRouter("r1", "ext", "172.24.4.10")
	r2.Gateway.EnableSNAT = false
	r2.Interfaces = r2.Interfaces[:1]
	r2.Routes = nil
	in2 := RouterInput{Router: r2, FloatingIPs: []*offload.FloatingIP{{ID: "fip-a", RouterID: "r1", FloatingIP: addr("172.24.4.21"), FixedIP: addr("10.0.1.5")}}}
	changes, err = k.rs.Ensure(ctx, in2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("update: %s", strings.Join(changes, "; "))
	if src := seenFrom(t, ext, "172.24.4.21", 8080); src != "172.24.4.1" {
		t.Errorf("new floating IP inbound: A saw %s", src)
	}
	if src := seenFrom(t, vmA, "172.24.4.1", 8080); src != "172.24.4.21" {
		t.Errorf("new floating IP outbound: the server saw %s, want 172.24.4.21", src)
	}
	if _, err := dialSeen(ext, "172.24.4.20", 8080, 2*time.Second); err == nil {
		t.Error("the old floating IP still forwards")
	}
	if l, err := lab.Run("ip", "-n", ns, "link", "show", "qr-r1-pb"); err == nil {
		t.Errorf("qr-r1-pb survived its interface's removal: %s", l)
	}
	if _, err := lab.Run("ip", "-n", k.sw, "link", "show", "qr-r1-pb"); err == nil {
		t.Error("qr-r1-pb's host end survived")
	}
	if routes := k.run("ip", "-n", ns, "route", "show", "proto", "static"); strings.Contains(routes, "192.168.50.0") {
		t.Errorf("the removed extra route stayed:\n%s", routes)
	}
	if got, _ := k.rs.Ruleset("r1"); len(got.Rules) != 2 {
		t.Errorf("enable_snat false: want only the floating IP's 2 rules:\n%s", got)
	}

	// Delete removes the namespace and the host ends.
	if err := k.rs.Delete(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if nsExists(ns) {
		t.Error("namespace survived Delete")
	}
	if out := k.run("ip", "-n", k.sw, "-o", "link", "show"); strings.Contains(out, "qr-") || strings.Contains(out, "qg-") {
		t.Errorf("router veths survived Delete:\n%s", out)
	}
	if err := k.rs.Delete(ctx, "r1"); err != nil {
		t.Errorf("Delete of a deleted router: %v", err)
	}
}

// TestLabRouterBadBatchChangesNothing: an nftables batch the kernel rejects (here, a rule
// jumping to a chain that does not exist, queued after the whole new table) leaves the
// old table exactly as it was: same rules, same handles.
func TestLabRouterBadBatchChangesNothing(t *testing.T) {
	k := newKL(t)
	k.bridge("br-a", "r1-pa")
	k.bridge("br-b", "r1-pb")
	k.bridge("br-ext", "r1-pg")
	in := RouterInput{Router: labRouter("r1", "ext", "172.24.4.10"),
		FloatingIPs: []*offload.FloatingIP{{ID: "f", RouterID: "r1", FloatingIP: addr("172.24.4.20"), FixedIP: addr("10.0.2.5")}}}
	if _, err := k.rs.Ensure(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	ns := k.rs.Namespace("r1")
	before, err := k.rs.Ruleset("r1")
	if err != nil {
		t.Fatal(err)
	}
	handles := ruleHandles(t, ns)
	txt := k.run("ip", "netns", "exec", ns, "nft", "list", "ruleset")

	c, closer, err := nftConn(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer closer()
	other := Ruleset{Rules: []NATRule{{Chain: ChainPostrouting, OutIf: "qg-r1-pg", Src: pfx("10.9.0.0/16"), Action: ActionSNAT, To: addr("172.24.4.99")}}}
	err = replaceRuleset(c, other, func(c *nftables.Conn) {
		c.AddRule(&nftables.Rule{Table: table(), Chain: &nftables.Chain{Name: ChainPostrouting, Table: table()},
			Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: "no-such-chain"}}})
	})
	if err == nil {
		t.Fatal("the kernel accepted a jump to a missing chain")
	}
	t.Logf("rejected as expected: %v", err)
	after, err := k.rs.Ruleset("r1")
	if err != nil {
		t.Fatal(err)
	}
	if !after.Equal(before) || !slices.Equal(ruleHandles(t, ns), handles) {
		t.Fatalf("a failed batch changed the table:\n%s\nwas:\n%s", after, before)
	}
	if now := k.run("ip", "netns", "exec", ns, "nft", "list", "ruleset"); now != txt {
		t.Fatalf("nft list ruleset changed:\n%s\nwas:\n%s", now, txt)
	}
	// Bad input never reaches the kernel: the router keeps its table and ports.
	bad := in
	bad.FloatingIPs = []*offload.FloatingIP{{ID: "f", RouterID: "r1", FloatingIP: addr("172.24.4.20"), FixedIP: addr("10.77.0.5")}}
	if _, err := k.rs.Ensure(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "fixed_ip_address 10.77.0.5") {
		t.Fatalf("bad floating IP: %v", err)
	}
	if now := k.run("ip", "netns", "exec", ns, "nft", "list", "ruleset"); now != txt {
		t.Fatal("bad input changed the ruleset")
	}
	// A table someone edited by hand is put back.
	k.run("ip", "netns", "exec", ns, "nft", "add", "rule", "ip", TableName, ChainPostrouting, "counter")
	if ch, err := k.rs.Ensure(context.Background(), in); err != nil || len(ch) != 1 {
		t.Fatalf("repair of a hand-edited table: %v %v", ch, err)
	}
	if got, _ := k.rs.Ruleset("r1"); !got.Equal(before) {
		t.Fatalf("after repair:\n%s", got)
	}
}

// TestLabRoutersTwoTenantsPrune: two tenants' routers with the same 10.0.1.0/24 behind
// them SNAT at the same time, each to its own external address; Prune removes the
// router not kept, and List follows.
func TestLabRoutersTwoTenantsPrune(t *testing.T) {
	k := newKL(t)
	k.bridge("br-ext", "t1-pg", "t2-pg")
	ext := k.host("ext", "br-ext", "172.24.4.1/24", "")
	server(t, ext, 8080)
	vms := map[string]string{}
	for i, id := range []string{"t1", "t2"} {
		k.bridge("br-"+id, id+"-pa", id+"-pb")
		vms[id] = k.host("vm"+id, "br-"+id, "10.0.1.5/24", "10.0.1.1")
		r := labRouter(id, "ext", fmt.Sprintf("172.24.4.%d", 11+i))
		r.Gateway.MAC = fmt.Sprintf("fa:16:3e:00:0%d:ff", i+2)
		r.Interfaces, r.Routes = r.Interfaces[:1], nil
		if _, err := k.rs.Ensure(context.Background(), RouterInput{Router: r}); err != nil {
			t.Fatal(err)
		}
	}
	type res struct{ id, src string }
	out := make(chan res, 2)
	for _, id := range []string{"t1", "t2"} {
		go func() {
			src, err := dialSeen(vms[id], "172.24.4.1", 8080, 20*time.Second)
			if err != nil {
				src = err.Error()
			}
			out <- res{id, src}
		}()
	}
	for range 2 {
		r := <-out
		want := map[string]string{"t1": "172.24.4.11", "t2": "172.24.4.12"}[r.id]
		if r.src != want {
			t.Errorf("tenant %s: the server saw %s, want %s", r.id, r.src, want)
		}
	}
	ids, err := k.rs.List()
	if err != nil || !slices.Equal(ids, []string{"t1", "t2"}) {
		t.Fatalf("List = %v, %v", ids, err)
	}
	gone, err := k.rs.Prune(context.Background(), []string{"t1"})
	if err != nil || !slices.Equal(gone, []string{"t2"}) {
		t.Fatalf("Prune = %v, %v", gone, err)
	}
	if nsExists(k.rs.Namespace("t2")) || !nsExists(k.rs.Namespace("t1")) {
		t.Error("Prune removed the wrong namespace")
	}
	if out := k.run("ip", "-n", k.sw, "-o", "link", "show"); strings.Contains(out, "t2-p") {
		t.Errorf("t2's veths survived Prune:\n%s", out)
	}
	if _, err := dialSeen(vms["t1"], "172.24.4.1", 8080, 5*time.Second); err != nil {
		t.Errorf("the kept router stopped forwarding: %v", err)
	}
}

// TestLabPlug: Plug creates, converges (MAC, MTU, addresses: add before delete) and is
// a no-op when nothing differs; Unplug removes both ends.
func TestLabPlug(t *testing.T) {
	k := newKL(t)
	k.bridge("br-x", "port-x")
	p := NewPlugger(PlugOptions{HostNamespace: k.sw, Switch: k.bsw})
	target := "olk" + k.id + "-plug"
	t.Cleanup(func() { _ = nsDelete(target) })
	spec := PlugSpec{Namespace: target, IfName: "tap-x", HostIfName: "tapx-host", MAC: "fa:16:3e:aa:bb:cc",
		Addrs: []netip.Prefix{pfx("10.5.0.2/24"), pfx("10.6.0.2/16")}, MTU: 1450, IfaceID: "port-x"}
	ctx := context.Background()
	ch, err := p.Plug(ctx, spec)
	if err != nil || len(ch) == 0 {
		t.Fatalf("Plug: %v %v", ch, err)
	}
	l := k.run("ip", "-n", target, "-o", "addr", "show", "dev", "tap-x")
	if !strings.Contains(l, "10.5.0.2/24") || !strings.Contains(l, "10.6.0.2/16") {
		t.Errorf("addresses: %s", l)
	}
	if l := k.run("ip", "-n", target, "-o", "link", "show", "tap-x"); !strings.Contains(l, "mtu 1450") || !strings.Contains(l, "fa:16:3e:aa:bb:cc") || !strings.Contains(l, "UP") {
		t.Errorf("link: %s", l)
	}
	if l := k.run("ip", "-n", k.sw, "-o", "link", "show", "tapx-host"); !strings.Contains(l, "master br-x") || !strings.Contains(l, "mtu 1450") {
		t.Errorf("host end: %s", l)
	}
	if ch, err := p.Plug(ctx, spec); err != nil || len(ch) != 0 {
		t.Errorf("second Plug: %v %v", ch, err)
	}
	spec.Addrs = []netip.Prefix{pfx("10.5.0.2/24"), pfx("10.7.0.2/24")}
	spec.MAC = "fa:16:3e:aa:bb:cd"
	ch, err = p.Plug(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"tap-x in " + target + ": MAC fa:16:3e:aa:bb:cd", "tap-x in " + target + ": address 10.7.0.2/24 added",
		"tap-x in " + target + ": address 10.6.0.2/16 deleted", "tapx-host: attached to the switch (iface-id port-x)"}
	if !slices.Equal(ch, want) {
		t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(ch, "\n"), strings.Join(want, "\n"))
	}
	if err := p.Unplug(ctx, target, "tap-x", "tapx-host"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Run("ip", "-n", k.sw, "link", "show", "tapx-host"); err == nil {
		t.Error("host end survived Unplug")
	}
	if err := p.Unplug(ctx, target, "tap-x", "tapx-host"); err != nil {
		t.Errorf("second Unplug: %v", err)
	}
	if err := p.DeleteNamespace(target); err != nil || nsExists(target) {
		t.Errorf("DeleteNamespace: %v", err)
	}
}
