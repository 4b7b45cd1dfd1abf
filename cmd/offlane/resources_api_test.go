package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/offlane/offlane/controlplane"
	"go.uber.org/zap/zaptest"
	"sigs.k8s.io/yaml"
)

// These tests drive the resource commands in-process (run) against a real offlane API
// server (controlplane.NewServer over a bbolt file in a temp dir) served by httptest:
// every claim is read back from the server through the CLI itself.

type apiCLI struct {
	t       *testing.T
	url     string
	token   string
	project string // --os-project-id: the acting project on a noauth server
}

func startAPI(t *testing.T, cfg controlplane.ServerConfig) *apiCLI {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.Logger = zaptest.NewLogger(t)
	srv, err := controlplane.NewServer(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start API server: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	c := &apiCLI{t: t, url: hs.URL}
	if cfg.Auth == "" || cfg.Auth == controlplane.AuthNoAuth {
		c.project = "demo"
	}
	return c
}

func (c *apiCLI) as(token string) *apiCLI { return &apiCLI{t: c.t, url: c.url, token: token} }

func (c *apiCLI) run(args ...string) (int, string, string) {
	full := append(append([]string{}, args...), "--url", c.url)
	if c.token != "" {
		full = append(full, "--token", c.token)
	}
	if c.project != "" {
		full = append(full, "--os-project-id", c.project)
	}
	return runCLI(full...)
}

// ok runs a command that must succeed and returns its stdout.
func (c *apiCLI) ok(args ...string) string {
	c.t.Helper()
	code, out, errOut := c.run(args...)
	if code != exitOK {
		c.t.Fatalf("offlane %s: exit %d\nstderr: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// fail runs a command that must exit with code and returns its stderr.
func (c *apiCLI) fail(code int, args ...string) string {
	c.t.Helper()
	got, out, errOut := c.run(args...)
	if got != code {
		c.t.Fatalf("offlane %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), got, code, out, errOut)
	}
	if strings.Contains(errOut, "goroutine ") || strings.Contains(errOut, "panic") {
		c.t.Fatalf("offlane %s: stack trace on stderr:\n%s", strings.Join(args, " "), errOut)
	}
	return errOut
}

// obj runs a command with -o json and decodes the object it prints.
func (c *apiCLI) obj(args ...string) map[string]any {
	c.t.Helper()
	out := c.ok(append(args, "-o", "json")...)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		c.t.Fatalf("offlane %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
	return m
}

// list runs a list command with -o json and decodes the objects.
func (c *apiCLI) list(args ...string) []map[string]any {
	c.t.Helper()
	out := c.ok(append(args, "-o", "json")...)
	var l []map[string]any
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		c.t.Fatalf("offlane %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
	return l
}

func (c *apiCLI) id(args ...string) string {
	c.t.Helper()
	return s(c.obj(args...)["id"])
}

// s renders a decoded JSON scalar for comparisons.
func s(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case float64:
		b, _ := json.Marshal(t)
		return string(b)
	default:
		b, _ := json.Marshal(t)
		return string(b)
	}
}

func names(objs []map[string]any) []string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, s(o["name"]))
	}
	slices.Sort(out)
	return out
}

func want(t *testing.T, what string, got, exp any) {
	t.Helper()
	if s(got) != s(exp) {
		t.Errorf("%s = %s, want %s", what, s(got), s(exp))
	}
}

func wantIn(t *testing.T, what, text string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(text, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, text)
		}
	}
}

func within100(t *testing.T, what, text string) {
	t.Helper()
	for _, l := range strings.Split(text, "\n") {
		if n := utf8.RuneCountInString(l); n > tableWidth {
			t.Errorf("%s: line of %d columns: %q", what, n, l)
		}
	}
}

func firstIP(o map[string]any) string {
	l, _ := o["fixed_ips"].([]any)
	if len(l) == 0 {
		return ""
	}
	return s(l[0].(map[string]any)["ip_address"])
}

func TestResourceNetworkCommands(t *testing.T) {
	c := startAPI(t, controlplane.ServerConfig{})

	// Neutron's noauth needs to know the project: without one, a clear hint.
	errOut := (&apiCLI{t: t, url: c.url}).fail(exitFailure, "network", "create", "orphan")
	wantIn(t, "no project", errOut, "offlane: 400 ", "--os-project-id or OFFLANE_PROJECT, or --project")
	other := (&apiCLI{t: t, url: c.url}).obj("network", "create", "theirs", "--project", "other")
	want(t, "--project sets the owner", other["project_id"], "other")
	c.ok("network", "delete", "theirs")

	n := c.obj("network", "create", "net1", "--description", "first network")
	id := s(n["id"])
	want(t, "project from --os-project-id", n["project_id"], "demo")
	want(t, "name", n["name"], "net1")
	want(t, "description", n["description"], "first network")
	want(t, "admin_state_up", n["admin_state_up"], true)
	want(t, "shared", n["shared"], false)
	want(t, "router:external", n["router:external"], false)
	want(t, "provider:network_type", n["provider:network_type"], "vxlan")
	want(t, "mtu", n["mtu"], 1450)
	if seg, _ := n["provider:segmentation_id"].(float64); seg < 1 || seg > 65535 {
		t.Errorf("segmentation id %v: want a VNI in 1-65535", n["provider:segmentation_id"])
	}

	// show by name and by id give the same object; yaml parses back to the same object.
	byName, byID := c.obj("network", "show", "net1"), c.obj("network", "show", id)
	if s(byName) != s(byID) || s(byID["id"]) != id {
		t.Errorf("show by name %v != show by id %v", byName, byID)
	}
	var fromYAML map[string]any
	if err := yaml.Unmarshal([]byte(c.ok("network", "show", "net1", "-o", "yaml")), &fromYAML); err != nil {
		t.Fatalf("yaml output: %v", err)
	}
	if s(fromYAML) != s(byID) {
		t.Errorf("yaml %v\n!= json %v", fromYAML, byID)
	}
	if got := c.ok("network", "show", "net1", "-o", "value", "-c", "id", "-c", "mtu"); got != id+"\n1450\n" {
		t.Errorf("-o value -c id -c mtu = %q", got)
	}

	table := c.ok("network", "show", "net1")
	wantIn(t, "show table", table, "FIELD", "VALUE", "provider:network_type", "vxlan", id)
	within100(t, "show table", table)

	c.obj("network", "create", "public", "--external", "--provider-network-type", "flat", "--provider-physical-network", "physnet1")
	pub := c.obj("network", "show", "public")
	want(t, "public router:external", pub["router:external"], true)
	want(t, "public type", pub["provider:network_type"], "flat")
	want(t, "public physnet", pub["provider:physical_network"], "physnet1")
	want(t, "public mtu", pub["mtu"], 1500)

	v := c.obj("network", "create", "vlan100", "--provider-network-type", "vlan", "--provider-physical-network", "physnet1",
		"--provider-segment", "100", "--share", "--disable")
	want(t, "vlan segment", v["provider:segmentation_id"], 100)
	want(t, "vlan shared", v["shared"], true)
	want(t, "vlan admin state", v["admin_state_up"], false)
	errOut = c.fail(exitFailure, "network", "create", "vlan100b", "--provider-network-type", "vlan", "--provider-physical-network", "physnet1", "--provider-segment", "100")
	wantIn(t, "VLAN in use", errOut, "offlane: 409 ")
	errOut = c.fail(exitFailure, "network", "create", "vlan5000", "--provider-network-type", "vlan", "--provider-physical-network", "physnet1", "--provider-segment", "5000")
	wantIn(t, "VLAN out of range", errOut, "offlane: 400 ")

	list := c.ok("network", "list")
	wantIn(t, "list table", list, "ID", "NAME", "SEGMENT", "SUBNETS", id, "net1", "vxlan", "flat physnet1 external", "vlan physnet1:100")
	within100(t, "list table", list)
	if got := names(c.list("network", "list", "--external")); s(got) != s([]string{"public"}) {
		t.Errorf("list --external: %v", got)
	}
	if got := names(c.list("network", "list", "--share")); s(got) != s([]string{"vlan100"}) {
		t.Errorf("list --share: %v", got)
	}
	if got := c.ok("network", "list", "--name", "net1", "-o", "value"); got != id+"\n" {
		t.Errorf("list --name net1 -o value = %q", got)
	}

	u := c.obj("network", "update", "net1", "--name", "net-a", "--mtu", "1400", "--share", "--description", "")
	want(t, "updated name", u["name"], "net-a")
	want(t, "updated mtu", u["mtu"], 1400)
	want(t, "updated shared", u["shared"], true)
	want(t, "updated description", u["description"], "")
	if got := c.obj("network", "show", id); s(got["name"]) != "net-a" || s(got["mtu"]) != "1400" {
		t.Errorf("after update, show: %v", got)
	}
	if l := c.list("network", "list", "--name", "net1"); len(l) != 0 {
		t.Errorf("old name still listed: %v", l)
	}

	c.ok("network", "delete", "net-a")
	errOut = c.fail(exitFailure, "network", "show", id)
	wantIn(t, "deleted network", errOut, `offlane: network "`+id+`": no network has this id or name`, "offlane network list")

	// Several at once: each failure reported, the others done.
	errOut = c.fail(exitFailure, "network", "delete", "public", "nosuch", "vlan100")
	wantIn(t, "multi delete", errOut, `delete network "nosuch"`, "1 of 3 networks not deleted")
	if l := c.list("network", "list"); len(l) != 0 {
		t.Errorf("networks left after multi delete: %v", names(l))
	}
}

func TestResourceNameResolution(t *testing.T) {
	c := startAPI(t, controlplane.ServerConfig{})
	a := c.id("network", "create", "dup")
	b := c.id("network", "create", "dup")

	errOut := c.fail(exitFailure, "network", "show", "dup")
	wantIn(t, "ambiguous show", errOut, `network "dup": 2 networks match this name, use an id instead`, a, b)
	errOut = c.fail(exitFailure, "subnet", "create", "s", "--network", "dup", "--subnet-range", "10.0.0.0/24")
	wantIn(t, "ambiguous flag", errOut, `--network "dup": 2 networks match this name`, a, b)
	if l := c.list("subnet", "list"); len(l) != 0 {
		t.Errorf("a subnet was created despite the ambiguous --network: %v", l)
	}
	want(t, "show by id", c.obj("network", "show", a)["id"], a)

	// -v shows the resolution: a GET by id (404), then a list by name.
	c.id("network", "create", "uniq")
	code, _, errOut := c.run("network", "show", "uniq", "-v", "-o", "json")
	if code != exitOK {
		t.Fatalf("show -v: exit %d: %s", code, errOut)
	}
	byID, byName := strings.Index(errOut, `"url": "`+c.url+`/v2.0/networks/uniq", "status": 404`), strings.Index(errOut, `"url": "`+c.url+`/v2.0/networks?name=uniq", "status": 200`)
	if byID < 0 || byName < byID {
		t.Errorf("-v log does not show GET by id (404) then list by name:\n%s", errOut)
	}

	errOut = c.fail(exitFailure, "subnet", "create", "s", "--network", "nope", "--subnet-range", "10.0.0.0/24")
	wantIn(t, "not found flag", errOut, `--network "nope": no network has this id or name`)

	// An exact id wins over a name equal to it, as in the openstack CLI.
	c.ok("network", "create", a)
	want(t, "id before name", c.obj("network", "show", a)["name"], "dup")

	// Names with characters that must not reach the URL path are looked up by name only.
	odd := c.id("network", "create", "a/b?c d")
	want(t, "odd name", c.obj("network", "show", "a/b?c d")["id"], odd)
}

func TestResourceSubnetCommands(t *testing.T) {
	c := startAPI(t, controlplane.ServerConfig{})
	netID := c.id("network", "create", "net1")

	sub := c.obj("subnet", "create", "sub1", "--network", "net1", "--subnet-range", "10.0.0.0/24",
		"--dns-nameserver", "192.0.2.53", "--host-route", "destination=192.168.0.0/16,gateway=10.0.0.254",
		"--allocation-pool", "start=10.0.0.10,end=10.0.0.100")
	subID := s(sub["id"])
	want(t, "network_id", sub["network_id"], netID)
	want(t, "cidr", sub["cidr"], "10.0.0.0/24")
	want(t, "ip_version", sub["ip_version"], 4)
	want(t, "gateway_ip", sub["gateway_ip"], "10.0.0.1")
	want(t, "enable_dhcp", sub["enable_dhcp"], true)
	want(t, "allocation_pools", sub["allocation_pools"], []any{map[string]any{"start": "10.0.0.10", "end": "10.0.0.100"}})
	want(t, "dns_nameservers", sub["dns_nameservers"], []any{"192.0.2.53"})
	want(t, "host_routes", sub["host_routes"], []any{map[string]any{"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}})

	v6 := c.obj("subnet", "create", "sub6", "--network", netID, "--subnet-range", "2001:db8::/64", "--gateway", "none", "--no-dhcp")
	want(t, "v6 ip_version", v6["ip_version"], 6)
	want(t, "v6 gateway", v6["gateway_ip"], nil)
	want(t, "v6 dhcp", v6["enable_dhcp"], false)

	errOut := c.fail(exitFailure, "subnet", "create", "overlap", "--network", "net1", "--subnet-range", "10.0.0.128/25")
	wantIn(t, "overlap", errOut, "offlane: ")
	c.id("network", "create", "net2")
	c.obj("subnet", "create", "other", "--network", "net2", "--subnet-range", "10.0.0.0/24") // overlap across networks is fine

	u := c.obj("subnet", "update", "sub1", "--name", "sub-a", "--no-dns-nameservers", "--no-dhcp", "--gateway", "10.0.0.254",
		"--host-route", "destination=172.16.0.0/12,gateway=10.0.0.253")
	want(t, "updated name", u["name"], "sub-a")
	want(t, "updated dns", u["dns_nameservers"], []any{})
	want(t, "updated dhcp", u["enable_dhcp"], false)
	want(t, "updated gateway", u["gateway_ip"], "10.0.0.254")
	want(t, "updated routes", u["host_routes"], []any{map[string]any{"destination": "172.16.0.0/12", "nexthop": "10.0.0.253"}})
	want(t, "update read back", c.obj("subnet", "show", subID)["gateway_ip"], "10.0.0.254")

	if got := names(c.list("subnet", "list", "--network", "net1")); s(got) != s([]string{"sub-a", "sub6"}) {
		t.Errorf("subnet list --network net1: %v", got)
	}
	if got := names(c.list("subnet", "list", "--ip-version", "6")); s(got) != s([]string{"sub6"}) {
		t.Errorf("subnet list --ip-version 6: %v", got)
	}
	table := c.ok("subnet", "list", "--network", "net1")
	wantIn(t, "subnet table", table, "NETWORK", "CIDR", "GATEWAY", "sub-a", "net1", "10.0.0.0/24", "2001:db8::/64")
	within100(t, "subnet table", table)
	wantIn(t, "network table subnets", c.ok("network", "list", "--name", "net1"), "10.0.0.0/24", "2001:db8::/64")

	c.ok("subnet", "delete", "sub6", "sub-a")
	if l := c.list("subnet", "list", "--network", "net1"); len(l) != 0 {
		t.Errorf("subnets left: %v", names(l))
	}
}

func TestResourcePortCommands(t *testing.T) {
	c := startAPI(t, controlplane.ServerConfig{})
	netID := c.id("network", "create", "net1")
	subID := c.id("subnet", "create", "sub1", "--network", "net1", "--subnet-range", "10.0.0.0/24")
	webID := c.id("security-group", "create", "web")
	goldID := c.id("qos-policy", "create", "gold", "--share")

	p := c.obj("port", "create", "p1", "--network", "net1", "--fixed-ip", "subnet=sub1,ip-address=10.0.0.50",
		"--vnic-type", "direct", "--host", "compute-1", "--binding-profile", "pci_slot=0000:3b:02.1",
		"--security-group", "web", "--allowed-address", "ip-address=10.0.0.100", "--qos-policy", "gold",
		"--description", "vm1 eth0", "--device", "vm1", "--device-owner", "compute:nova")
	p1 := s(p["id"])
	mac := s(p["mac_address"])
	want(t, "network_id", p["network_id"], netID)
	want(t, "fixed_ips", p["fixed_ips"], []any{map[string]any{"subnet_id": subID, "ip_address": "10.0.0.50"}})
	want(t, "vnic_type", p["binding:vnic_type"], "direct")
	want(t, "host", p["binding:host_id"], "compute-1")
	want(t, "profile", p["binding:profile"], map[string]any{"pci_slot": "0000:3b:02.1"})
	want(t, "security_groups", p["security_groups"], []any{webID})
	want(t, "allowed_address_pairs", p["allowed_address_pairs"], []any{map[string]any{"ip_address": "10.0.0.100", "mac_address": mac}})
	want(t, "qos_policy_id", p["qos_policy_id"], goldID)
	want(t, "device_id", p["device_id"], "vm1")
	want(t, "device_owner", p["device_owner"], "compute:nova")
	want(t, "port_security_enabled", p["port_security_enabled"], true)
	if !strings.HasPrefix(mac, "fa:16:3e:") {
		t.Errorf("mac %q: want a generated fa:16:3e:... address", mac)
	}

	errOut := c.fail(exitFailure, "port", "create", "p2", "--network", "net1", "--fixed-ip", "ip-address=10.0.0.50")
	if !strings.HasPrefix(errOut, "offlane: 409 IpAddressInUse: ") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("IP in use: stderr %q, want one line starting with \"offlane: 409 IpAddressInUse: \"", errOut)
	}

	p3 := c.obj("port", "create", "p3", "--network", netID)
	ip3, _ := netip.ParseAddr(firstIP(p3))
	if !netip.MustParsePrefix("10.0.0.0/24").Contains(ip3) || ip3.String() == "10.0.0.50" || ip3.String() == "10.0.0.1" {
		t.Errorf("p3 got address %v: want a free address of 10.0.0.0/24", ip3)
	}
	defaultSG := c.list("security-group", "list", "--name", "default")
	if len(defaultSG) != 1 {
		t.Fatalf("default security groups: %v", defaultSG)
	}
	want(t, "p3 security_groups", p3["security_groups"], []any{defaultSG[0]["id"]})

	p4 := c.obj("port", "create", "p4", "--network", "net1", "--disable-port-security", "--no-security-group",
		"--no-fixed-ip", "--vnic-type", "vhost-user", "--mac-address", "FA:16:3E:00:00:04", "--disable")
	want(t, "p4 port security", p4["port_security_enabled"], false)
	want(t, "p4 security groups", p4["security_groups"], []any{})
	want(t, "p4 fixed ips", p4["fixed_ips"], []any{})
	want(t, "p4 vnic", p4["binding:vnic_type"], "vhost-user")
	want(t, "p4 mac", p4["mac_address"], "fa:16:3e:00:00:04")
	want(t, "p4 admin state", p4["admin_state_up"], false)

	u := c.obj("port", "update", "p1", "--name", "p1b", "--security-group", "default", "--no-allowed-address",
		"--no-qos-policy", "--host", "compute-2", "--fixed-ip", "subnet=sub1,ip-address=10.0.0.60", "--no-binding-profile")
	want(t, "updated name", u["name"], "p1b")
	want(t, "updated security_groups", u["security_groups"], []any{defaultSG[0]["id"]})
	want(t, "updated allowed pairs", u["allowed_address_pairs"], []any{})
	want(t, "updated qos", u["qos_policy_id"], nil)
	want(t, "updated host", u["binding:host_id"], "compute-2")
	want(t, "updated fixed ip", firstIP(u), "10.0.0.60")
	if prof, _ := u["binding:profile"].(map[string]any); len(prof) != 0 {
		t.Errorf("binding profile not cleared: %v", u["binding:profile"])
	}
	want(t, "update read back", firstIP(c.obj("port", "show", p1)), "10.0.0.60")
	c.obj("port", "create", "p5", "--network", "net1", "--fixed-ip", "ip-address=10.0.0.50") // .50 was freed

	got := names(c.list("port", "list", "--network", "net1"))
	for _, n := range []string{"p1b", "p3", "p4", "p5"} {
		if !slices.Contains(got, n) {
			t.Errorf("port list --network net1 lacks %s: %v", n, got)
		}
	}
	if got := names(c.list("port", "list", "--fixed-ip", "ip-address=10.0.0.60")); s(got) != s([]string{"p1b"}) {
		t.Errorf("port list --fixed-ip ip-address=10.0.0.60: %v", got)
	}
	if got := names(c.list("port", "list", "--security-group", "web")); len(got) != 0 {
		t.Errorf("ports still in web: %v", got)
	}
	if got := c.ok("port", "list", "--name", "p1b", "-o", "value", "-c", "id", "-c", "mac_address"); got != p1+" "+mac+"\n" {
		t.Errorf("-o value -c id -c mac_address = %q", got)
	}
	table := c.ok("port", "list", "--network", "net1")
	wantIn(t, "port table", table, "MAC ADDRESS", "FIXED IPS", "STATUS", p1, "p1b", mac, "10.0.0.60")
	within100(t, "port table", table)
	within100(t, "port show table", c.ok("port", "show", "p1b"))

	errOut = c.fail(exitFailure, "network", "delete", "net1")
	wantIn(t, "network in use", errOut, "offlane: 409 NetworkInUse: ")
	errOut = c.fail(exitFailure, "security-group", "delete", "default")
	wantIn(t, "default group in use", errOut, "offlane: 409 ")

	c.ok("port", "delete", "p1b", "p3", "p4", "p5")
	// what is left is the network's DHCP port, which the server owns (it goes with the
	// network)
	if l := c.list("port", "list", "--network", "net1"); len(l) != 1 || s(l[0]["device_owner"]) != "network:dhcp" {
		t.Errorf("ports left: %v", l)
	}
	c.ok("network", "delete", "net1")
}

func TestResourceRouterAndFloatingIPCommands(t *testing.T) {
	c := startAPI(t, controlplane.ServerConfig{})
	pubID := c.id("network", "create", "public", "--external", "--provider-network-type", "flat", "--provider-physical-network", "physnet1")
	c.id("subnet", "create", "pubsub", "--network", "public", "--subnet-range", "203.0.113.0/24", "--no-dhcp",
		"--allocation-pool", "start=203.0.113.10,end=203.0.113.100")
	c.id("network", "create", "net1")
	subID := c.id("subnet", "create", "sub1", "--network", "net1", "--subnet-range", "10.0.0.0/24")
	vm := c.obj("port", "create", "vm1", "--network", "net1")
	vmID, vmIP := s(vm["id"]), firstIP(vm)

	r := c.obj("router", "create", "r1", "--external-gateway", "public")
	rID := s(r["id"])
	gw, _ := r["external_gateway_info"].(map[string]any)
	want(t, "gateway network", gw["network_id"], pubID)
	want(t, "gateway snat", gw["enable_snat"], true)
	gwIPs, _ := gw["external_fixed_ips"].([]any)
	if len(gwIPs) != 1 || !netip.MustParsePrefix("203.0.113.0/24").Contains(netip.MustParseAddr(s(gwIPs[0].(map[string]any)["ip_address"]))) {
		t.Errorf("gateway addresses %v: want one in 203.0.113.0/24", gwIPs)
	}

	info := c.obj("router", "add-interface", "r1", "--subnet", "sub1")
	want(t, "interface subnet", info["subnet_id"], subID)
	want(t, "interface router", info["id"], rID)
	ifPort := c.obj("port", "show", s(info["port_id"]))
	want(t, "interface port device", ifPort["device_id"], rID)
	want(t, "interface port owner", ifPort["device_owner"], "network:router_interface")
	want(t, "interface port ip", firstIP(ifPort), "10.0.0.1")
	routerPorts := c.list("port", "list", "--router", "r1", "--device-owner", "network:router_interface")
	if len(routerPorts) != 1 || s(routerPorts[0]["id"]) != s(info["port_id"]) {
		t.Errorf("port list --router r1: %v", routerPorts)
	}
	errOut := c.fail(exitFailure, "router", "delete", "r1")
	wantIn(t, "router in use", errOut, "offlane: 409 RouterInUse: ")

	u := c.obj("router", "update", "r1", "--route", "destination=192.168.10.0/24,gateway=10.0.0.254", "--disable-snat")
	want(t, "routes", u["routes"], []any{map[string]any{"destination": "192.168.10.0/24", "nexthop": "10.0.0.254"}})
	gw, _ = u["external_gateway_info"].(map[string]any)
	want(t, "snat disabled", gw["enable_snat"], false)
	want(t, "gateway kept", gw["network_id"], pubID)
	table := c.ok("router", "list")
	wantIn(t, "router table", table, "EXTERNAL GATEWAY", "r1", "public 203.0.113.", "(no SNAT)")
	within100(t, "router table", table)
	want(t, "routes cleared", c.obj("router", "update", "r1", "--no-route", "--enable-snat")["routes"], []any{})

	f := c.obj("floatingip", "create", "public", "--port", "vm1")
	fID, fAddr := s(f["id"]), s(f["floating_ip_address"])
	if !netip.MustParsePrefix("203.0.113.0/24").Contains(netip.MustParseAddr(fAddr)) {
		t.Errorf("floating address %q: want one of 203.0.113.0/24", fAddr)
	}
	want(t, "fip network", f["floating_network_id"], pubID)
	want(t, "fip port", f["port_id"], vmID)
	want(t, "fip fixed", f["fixed_ip_address"], vmIP)
	want(t, "fip router", f["router_id"], rID)
	want(t, "fip by address", c.obj("floatingip", "show", fAddr)["id"], fID)
	if l := c.list("floatingip", "list", "--port", "vm1"); len(l) != 1 || s(l[0]["id"]) != fID {
		t.Errorf("floatingip list --port vm1: %v", l)
	}
	table = c.ok("floatingip", "list")
	wantIn(t, "fip table", table, "FLOATING IP", "FIXED IP", "PORT", fAddr, vmIP, "vm1")
	within100(t, "fip table", table)

	d := c.obj("floatingip", "update", fAddr, "--no-port")
	want(t, "disassociated port", d["port_id"], nil)
	want(t, "disassociated fixed", d["fixed_ip_address"], nil)
	want(t, "disassociated read back", c.obj("floatingip", "show", fID)["port_id"], nil)
	a := c.obj("floatingip", "update", fID, "--port", vmID, "--fixed-ip-address", vmIP)
	want(t, "reassociated port", a["port_id"], vmID)
	want(t, "reassociated router", a["router_id"], rID)

	errOut = c.fail(exitFailure, "floatingip", "create", "public", "--floating-ip-address", fAddr)
	wantIn(t, "fip address in use", errOut, "offlane: 409 ")
	c.ok("floatingip", "delete", fAddr)
	c.fail(exitFailure, "floatingip", "show", fID)

	c.ok("router", "remove-interface", "r1", "--subnet", "sub1")
	errOut = c.fail(exitFailure, "port", "show", s(info["port_id"]))
	wantIn(t, "interface port deleted", errOut, "no port has this id or name")

	// By port: the port becomes the router's interface.
	rp := c.id("port", "create", "rp", "--network", "net1", "--fixed-ip", "ip-address=10.0.0.254")
	c.id("router", "create", "r2")
	want(t, "add by port", c.obj("router", "add-interface", "r2", "--port", "rp")["port_id"], rp)
	want(t, "port owner", c.obj("port", "show", "rp")["device_owner"], "network:router_interface")
	c.ok("router", "remove-interface", "r2", "--port", "rp")

	g := c.obj("router", "update", "r1", "--no-external-gateway")
	if gi, _ := g["external_gateway_info"].(map[string]any); gi != nil && s(gi["network_id"]) != "" {
		t.Errorf("gateway not removed: %v", g["external_gateway_info"])
	}
	c.ok("router", "delete", "r1", "r2")
	if l := c.list("router", "list"); len(l) != 0 {
		t.Errorf("routers left: %v", names(l))
	}
}

func TestResourceSecurityGroupCommands(t *testing.T) {
	c := startAPI(t, controlplane.ServerConfig{})
	g := c.obj("security-group", "create", "web", "--description", "HTTP servers")
	gID := s(g["id"])
	want(t, "description", g["description"], "HTTP servers")
	if rules, _ := g["security_group_rules"].([]any); len(rules) != 2 {
		t.Errorf("new group rules %v: want the two default egress rules", g["security_group_rules"])
	}

	r80 := c.obj("security-group-rule", "create", "web", "--protocol", "tcp", "--dst-port", "80", "--remote-ip", "0.0.0.0/0")
	want(t, "direction", r80["direction"], "ingress")
	want(t, "ethertype", r80["ethertype"], "IPv4")
	want(t, "protocol", r80["protocol"], "tcp")
	want(t, "port min", r80["port_range_min"], 80)
	want(t, "port max", r80["port_range_max"], 80)
	want(t, "remote ip", r80["remote_ip_prefix"], "0.0.0.0/0")
	want(t, "group", r80["security_group_id"], gID)
	rg := c.obj("security-group-rule", "create", gID, "--protocol", "tcp", "--dst-port", "8000:8080", "--remote-group", "web")
	want(t, "remote group", rg["remote_group_id"], gID)
	want(t, "range max", rg["port_range_max"], 8080)
	icmp := c.obj("security-group-rule", "create", "web", "--protocol", "icmp", "--icmp-type", "0")
	want(t, "icmp type 0 kept", icmp["port_range_min"], 0)
	want(t, "icmp no code", icmp["port_range_max"], nil)
	e6 := c.obj("security-group-rule", "create", "web", "--egress", "--remote-ip", "2001:db8::/32", "--protocol", "udp", "--dst-port", "53")
	want(t, "egress", e6["direction"], "egress")
	want(t, "ethertype from remote ip", e6["ethertype"], "IPv6")
	i6 := c.obj("security-group-rule", "create", "web", "--ethertype", "ipv6", "--protocol", "icmpv6")
	want(t, "icmpv6", i6["protocol"], "ipv6-icmp")

	errOut := c.fail(exitFailure, "security-group-rule", "create", "web", "--protocol", "tcp", "--dst-port", "80", "--remote-ip", "0.0.0.0/0")
	wantIn(t, "duplicate rule", errOut, "offlane: 409 ")

	if l := c.list("security-group-rule", "list", "web"); len(l) != 7 {
		t.Errorf("rules of web: %d, want 2 default + 5", len(l))
	}
	if l := c.list("security-group-rule", "list", "web", "--ingress"); len(l) != 4 {
		t.Errorf("ingress rules of web: %d, want 4", len(l))
	}
	table := c.ok("security-group-rule", "list", "web")
	wantIn(t, "rule table", table, "DIRECTION", "ETHERTYPE", "PROTOCOL", "PORTS", "REMOTE", "8000:8080", "group web", "type 0", "0.0.0.0/0")
	within100(t, "rule table", table)

	want(t, "rule show", c.obj("security-group-rule", "show", s(r80["id"]))["port_range_min"], 80)
	c.ok("security-group-rule", "delete", s(r80["id"]))
	errOut = c.fail(exitFailure, "security-group-rule", "show", s(r80["id"]))
	wantIn(t, "deleted rule", errOut, "no security group rule with this id")

	u := c.obj("security-group", "update", "web", "--name", "web2", "--description", "")
	want(t, "renamed", u["name"], "web2")
	want(t, "description cleared", u["description"], "")
	table = c.ok("security-group", "list")
	wantIn(t, "group table", table, "RULES", "web2", "default")
	within100(t, "group table", table)

	c.id("network", "create", "net1")
	c.id("subnet", "create", "sub1", "--network", "net1", "--subnet-range", "10.0.0.0/24")
	errOut = c.fail(exitFailure, "port", "create", "p", "--network", "net1", "--security-group", "web2", "--no-fixed-ip")
	wantIn(t, "group on a port without address", errOut, "offlane: 400 PortSecurityAndIPRequiredForSecurityGroups: ")
	c.id("port", "create", "p", "--network", "net1", "--security-group", "web2")
	errOut = c.fail(exitFailure, "security-group", "delete", "web2")
	wantIn(t, "group in use", errOut, "offlane: 409 ")
	c.ok("port", "delete", "p")
	c.ok("security-group", "delete", "web2")
	c.fail(exitFailure, "security-group", "show", gID)
}

func TestResourceQoSCommands(t *testing.T) {
	c := startAPI(t, controlplane.ServerConfig{})
	p := c.obj("qos-policy", "create", "gold", "--share", "--description", "premium")
	pID := s(p["id"])
	want(t, "shared", p["shared"], true)

	bw := c.obj("qos-policy", "rule", "create", "gold", "--type", "bandwidth-limit", "--max-kbps", "10000", "--max-burst-kbits", "8000")
	want(t, "bw type", bw["type"], "bandwidth_limit")
	want(t, "max_kbps", bw["max_kbps"], 10000)
	want(t, "max_burst_kbps", bw["max_burst_kbps"], 8000)
	want(t, "bw direction", bw["direction"], "egress")
	bwIn := c.obj("qos-policy", "rule", "create", pID, "--type", "bandwidth-limit", "--max-kbps", "5000", "--ingress")
	want(t, "ingress", bwIn["direction"], "ingress")
	dscp := c.obj("qos-policy", "rule", "create", "gold", "--type", "dscp-marking", "--dscp-mark", "26")
	want(t, "dscp", dscp["dscp_mark"], 26)
	minbw := c.obj("qos-policy", "rule", "create", "gold", "--type", "minimum-bandwidth", "--min-kbps", "1000")
	want(t, "min_kbps", minbw["min_kbps"], 1000)

	rules := c.list("qos-policy", "rule", "list", "gold")
	var types []string
	for _, r := range rules {
		types = append(types, s(r["type"]))
	}
	if s(types) != s([]string{"bandwidth_limit", "bandwidth_limit", "dscp_marking", "minimum_bandwidth"}) {
		t.Errorf("rule types: %v", types)
	}
	if l := c.list("qos-policy", "rule", "list", "gold", "--type", "dscp-marking"); len(l) != 1 || s(l[0]["id"]) != s(dscp["id"]) {
		t.Errorf("rule list --type dscp-marking: %v", l)
	}
	table := c.ok("qos-policy", "rule", "list", "gold")
	wantIn(t, "rule table", table, "MAX KBPS", "DSCP MARK", "10000", "8000", "26", "ingress")
	within100(t, "rule table", table)
	if got, _ := c.obj("qos-policy", "show", "gold")["rules"].([]any); len(got) != 4 {
		t.Errorf("policy rules: %v", got)
	}
	wantIn(t, "policy table", c.ok("qos-policy", "list"), "gold", "bandwidth_limit 10000 kbps burst 8000 kbit", "dscp_marking mark 26")

	up := c.obj("qos-policy", "rule", "update", "gold", s(bw["id"]), "--max-kbps", "20000")
	want(t, "updated max_kbps", up["max_kbps"], 20000)
	want(t, "burst kept", up["max_burst_kbps"], 8000)
	want(t, "rule show", c.obj("qos-policy", "rule", "show", "gold", s(bw["id"]))["max_kbps"], 20000)
	errOut := c.fail(exitUsage, "qos-policy", "rule", "update", "gold", s(dscp["id"]), "--max-kbps", "1")
	wantIn(t, "foreign flag on update", errOut, "--max-kbps does not apply to a dscp-marking rule")
	want(t, "dscp unchanged", c.obj("qos-policy", "rule", "show", "gold", s(dscp["id"]))["dscp_mark"], 26)
	errOut = c.fail(exitFailure, "qos-policy", "rule", "create", "gold", "--type", "dscp-marking", "--dscp-mark", "10")
	wantIn(t, "second dscp rule", errOut, "offlane: 409 ")

	c.ok("qos-policy", "rule", "delete", "gold", s(dscp["id"]))
	errOut = c.fail(exitFailure, "qos-policy", "rule", "show", "gold", s(dscp["id"]))
	wantIn(t, "deleted rule", errOut, `QoS policy "gold" has no rule`)
	if l := c.list("qos-policy", "rule", "list", "gold"); len(l) != 3 {
		t.Errorf("rules after delete: %d, want 3", len(l))
	}

	n := c.obj("network", "create", "qn", "--qos-policy", "gold")
	want(t, "network qos", n["qos_policy_id"], pID)
	want(t, "network qos cleared", c.obj("network", "update", "qn", "--no-qos-policy")["qos_policy_id"], nil)
	errOut = c.fail(exitFailure, "network", "create", "qx", "--qos-policy", "silver")
	wantIn(t, "unknown policy", errOut, `--qos-policy "silver": no QoS policy has this id or name`)

	u := c.obj("qos-policy", "update", "gold", "--no-share", "--name", "silver")
	want(t, "unshared", u["shared"], false)
	want(t, "renamed", u["name"], "silver")
	c.ok("qos-policy", "delete", "silver")
	if l := c.list("qos-policy", "list"); len(l) != 0 {
		t.Errorf("policies left: %v", names(l))
	}
}

func TestResourceTokenAuthAndEnvironment(t *testing.T) {
	srv := startAPI(t, controlplane.ServerConfig{Auth: controlplane.AuthToken, Tokens: map[string]controlplane.Token{
		"tok-admin": {ProjectID: "proj-admin", Roles: []string{"admin"}},
		"tok-a":     {ProjectID: "proj-a", Roles: []string{"member"}},
		"tok-b":     {ProjectID: "proj-b", Roles: []string{"member"}},
	}})
	errOut := srv.fail(exitFailure, "network", "list")
	wantIn(t, "no token", errOut, "offlane: 401 ", "--token or OFFLANE_TOKEN")
	errOut = srv.as("wrong").fail(exitFailure, "network", "list")
	wantIn(t, "wrong token", errOut, "offlane: 401 ")

	admin, a, b := srv.as("tok-admin"), srv.as("tok-a"), srv.as("tok-b")
	netA := a.obj("network", "create", "neta")
	want(t, "project from token", netA["project_id"], "proj-a")
	errOut = b.fail(exitFailure, "network", "show", s(netA["id"]))
	wantIn(t, "other project's network", errOut, "no network has this id or name")
	errOut = b.fail(exitFailure, "port", "create", "p", "--network", s(netA["id"]))
	wantIn(t, "other project's network as --network", errOut, "--network")
	errOut = b.fail(exitFailure, "network", "delete", s(netA["id"]))
	wantIn(t, "other project's network on delete", errOut, "no network has this id or name")
	want(t, "neta still there", a.obj("network", "show", "neta")["id"], netA["id"])

	admin.obj("network", "create", "shared1", "--share")
	if got := names(b.list("network", "list")); s(got) != s([]string{"shared1"}) {
		t.Errorf("project b sees %v, want only shared1", got)
	}
	errOut = a.fail(exitFailure, "network", "create", "prov", "--provider-network-type", "vlan", "--provider-physical-network", "physnet1")
	wantIn(t, "provider attributes as member", errOut, "offlane: 403 ")

	// OFFLANE_URL and OFFLANE_TOKEN stand in for --url and --token.
	t.Setenv(envAPIURL, srv.url+"/v2.0")
	t.Setenv(envAPIToken, "tok-a")
	code, out, errOut := runCLI("network", "list", "-o", "value", "-c", "name")
	if code != exitOK || out != "neta\nshared1\n" && out != "shared1\nneta\n" {
		t.Errorf("with env: exit %d, out %q, err %q", code, out, errOut)
	}
	code, _, errOut = runCLI("network", "list", "--token", "wrong")
	if code != exitFailure || !strings.Contains(errOut, "401") {
		t.Errorf("--token overrides %s: exit %d, err %q", envAPIToken, code, errOut)
	}
}

func TestResourceHTTPSAndTimeout(t *testing.T) {
	srv, err := controlplane.NewServer(context.Background(), controlplane.ServerConfig{DataDir: t.TempDir(), Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	hs := httptest.NewTLSServer(srv.Handler())
	t.Cleanup(hs.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI("network", "create", "tls-net", "--url", hs.URL, "--cacert", ca, "--os-project-id", "demo", "-o", "value", "-c", "name")
	if code != exitOK || out != "tls-net\n" {
		t.Fatalf("over https with --cacert: exit %d, out %q, err %q", code, out, errOut)
	}
	code, _, errOut = runCLI("network", "list", "--url", hs.URL)
	if code != exitFailure || !strings.Contains(errOut, "cannot reach the offlane API") || !strings.Contains(errOut, "certificate") {
		t.Errorf("https without the CA: exit %d, err %q", code, errOut)
	}

	// A server that never answers: --timeout bounds the command.
	release := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(stuck.Close)
	t.Cleanup(func() { close(release) })
	code, _, errOut = runCLI("network", "list", "--url", stuck.URL, "--timeout", "200ms")
	if code != exitFailure || !strings.Contains(errOut, "no answer from the offlane API at "+stuck.URL+"/ within --timeout 200ms") {
		t.Errorf("stuck server: exit %d, err %q", code, errOut)
	}
}

func TestResourceColumnWarning(t *testing.T) {
	c := startAPI(t, controlplane.ServerConfig{})
	c.id("network", "create", "net1")
	code, out, errOut := c.run("network", "show", "net1", "-c", "name", "-c", "nosuch", "-o", "json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil || s(m) != s(map[string]any{"name": "net1", "nosuch": nil}) {
		t.Errorf("-c name -c nosuch: %s (%v)", out, err)
	}
	wantIn(t, "warning", errOut, `warning: the network has no attribute "nosuch"`, "provider:network_type")
}
