package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gophercloud/gophercloud/v2"
)

// closedURL is an address nothing listens on: commands that reach the network fail with
// exit 1 there, so an exit 2 proves the command stopped before contacting the server.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestResourceUsageErrorsExit2BeforeContactingServer(t *testing.T) {
	url := closedURL(t)
	cases := []struct {
		name string
		args []string
		want []string // substrings of stderr
	}{
		{"fixed-ip without key", []string{"port", "create", "p", "--network", "n", "--fixed-ip", "10.0.0.5"},
			[]string{"--fixed-ip", "subnet=SUBNET,ip-address=10.0.0.5"}},
		{"fixed-ip unknown key", []string{"port", "create", "p", "--network", "n", "--fixed-ip", "ip=10.0.0.5"},
			[]string{"--fixed-ip", `unknown key "ip"`, "allowed: subnet, ip-address"}},
		{"fixed-ip bad address", []string{"port", "create", "p", "--network", "n", "--fixed-ip", "subnet=s,ip-address=10.0.0.300"},
			[]string{"--fixed-ip", "is not an IP address"}},
		{"vnic type", []string{"port", "create", "p", "--network", "n", "--vnic-type", "sriov"},
			[]string{"--vnic-type", "direct-physical", "vhost-user"}},
		{"port network missing", []string{"port", "create", "p"}, []string{"--network is required"}},
		{"allowed address", []string{"port", "update", "p", "--allowed-address", "ip-address=nope"},
			[]string{"--allowed-address", "neither an IP address nor a CIDR"}},
		{"binding profile", []string{"port", "create", "p", "--network", "n", "--binding-profile", "{bad"},
			[]string{"--binding-profile", "not a JSON object"}},
		{"mac", []string{"port", "create", "p", "--network", "n", "--mac-address", "zz:zz"},
			[]string{"--mac-address"}},
		{"port contradiction", []string{"port", "update", "p", "--security-group", "a", "--no-security-group"},
			[]string{"--security-group and --no-security-group contradict"}},
		{"network type", []string{"network", "create", "n", "--provider-network-type", "vlan4"},
			[]string{"--provider-network-type", "flat, vlan, vxlan, gre, geneve, local"}},
		{"segment not a number", []string{"network", "create", "n", "--provider-network-type", "vlan", "--provider-segment", "x"},
			[]string{"--provider-segment"}},
		{"segment without type", []string{"network", "create", "n", "--provider-segment", "100"},
			[]string{"--provider-segment needs --provider-network-type"}},
		{"share pair", []string{"network", "create", "n", "--share", "--no-share"},
			[]string{"--share and --no-share contradict"}},
		{"nothing to update", []string{"network", "update", "n"}, []string{"nothing to update"}},
		{"nothing to update with output flag", []string{"network", "update", "n", "-o", "json"}, []string{"nothing to update"}},
		{"output format", []string{"network", "list", "-o", "xml"}, []string{"--output", "table, json, yaml or value"}},
		{"column", []string{"network", "list", "-c", "id,name"}, []string{"--column", "one attribute name per flag"}},
		{"subnet range", []string{"subnet", "create", "s", "--network", "n", "--subnet-range", "10.0.0.0/33"},
			[]string{"--subnet-range", "CIDR"}},
		{"subnet ip version", []string{"subnet", "create", "s", "--network", "n", "--subnet-range", "10.0.0.0/24", "--ip-version", "6"},
			[]string{"--ip-version 6 does not match"}},
		{"gateway outside", []string{"subnet", "create", "s", "--network", "n", "--subnet-range", "10.0.0.0/24", "--gateway", "10.0.1.1"},
			[]string{"--gateway 10.0.1.1 is outside"}},
		{"pool order", []string{"subnet", "create", "s", "--network", "n", "--subnet-range", "10.0.0.0/24", "--allocation-pool", "start=10.0.0.20,end=10.0.0.10"},
			[]string{"--allocation-pool", "end must not come before start"}},
		{"host route", []string{"subnet", "create", "s", "--network", "n", "--subnet-range", "10.0.0.0/24", "--host-route", "destination=10.1.0.0/16"},
			[]string{"--host-route", "both destination and gateway are required"}},
		{"dns", []string{"subnet", "update", "s", "--dns-nameserver", "dns.example"}, []string{"--dns-nameserver"}},
		{"route", []string{"router", "update", "r", "--route", "destination=10.1.0.0/16,gateway=fe80::1"},
			[]string{"--route", "different IP versions"}},
		{"snat without gateway", []string{"router", "create", "r", "--disable-snat"}, []string{"need --external-gateway"}},
		{"interface needs one", []string{"router", "add-interface", "r"}, []string{"exactly one of --subnet or --port"}},
		{"interface not both", []string{"router", "remove-interface", "r", "--subnet", "s", "--port", "p"}, []string{"exactly one of --subnet or --port"}},
		{"fip fixed needs port", []string{"floatingip", "create", "public", "--fixed-ip-address", "10.0.0.5"},
			[]string{"--fixed-ip-address", "needs --port"}},
		{"fip no-port contradiction", []string{"floatingip", "update", "1.2.3.4", "--no-port", "--port", "p"}, []string{"--no-port contradicts"}},
		{"rule protocol", []string{"security-group-rule", "create", "g", "--protocol", "tcpp"}, []string{"--protocol", "icmpv6"}},
		{"rule port without protocol", []string{"security-group-rule", "create", "g", "--dst-port", "22"},
			[]string{"--dst-port needs --protocol tcp"}},
		{"rule port range", []string{"security-group-rule", "create", "g", "--protocol", "tcp", "--dst-port", "90:80"},
			[]string{"--dst-port", "LOW:HIGH"}},
		{"rule icmp on tcp", []string{"security-group-rule", "create", "g", "--protocol", "tcp", "--icmp-type", "8"},
			[]string{"--icmp-type and --icmp-code need --protocol icmp"}},
		{"rule remote exclusive", []string{"security-group-rule", "create", "g", "--remote-ip", "0.0.0.0/0", "--remote-group", "g"},
			[]string{"exclusive"}},
		{"rule ethertype mismatch", []string{"security-group-rule", "create", "g", "--remote-ip", "::/0", "--ethertype", "IPv4"},
			[]string{"does not match --ethertype"}},
		{"qos type", []string{"qos-policy", "rule", "create", "p", "--type", "bw"}, []string{"--type", "bandwidth-limit, dscp-marking, minimum-bandwidth"}},
		{"qos type missing", []string{"qos-policy", "rule", "create", "p"}, []string{"--type is required"}},
		{"qos dscp value", []string{"qos-policy", "rule", "create", "p", "--type", "dscp-marking", "--dscp-mark", "7"},
			[]string{"--dscp-mark 7", "26"}},
		{"qos foreign flag", []string{"qos-policy", "rule", "create", "p", "--type", "dscp-marking", "--dscp-mark", "26", "--max-kbps", "5"},
			[]string{"--max-kbps does not apply to a dscp-marking rule"}},
		{"qos max required", []string{"qos-policy", "rule", "create", "p", "--type", "bandwidth-limit"}, []string{"--max-kbps is required"}},
		{"project", []string{"network", "create", "n", "--project", "a b"}, []string{"--project"}},
		{"unknown flag", []string{"network", "list", "--bogus"}, []string{"unknown flag"}},
		{"unknown subcommand", []string{"network", "frobnicate"}, []string{"unknown command"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(append(c.args, "--url", url)...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr: %s", code, exitUsage, errOut)
			}
			if out != "" {
				t.Errorf("stdout not empty: %q", out)
			}
			for _, w := range c.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not contain %q", errOut, w)
				}
			}
			if strings.Contains(errOut, "goroutine") || strings.Count(errOut, "\n") > 1 {
				t.Errorf("stderr is not a one-line message: %q", errOut)
			}
		})
	}
}

func TestResourceBadURLIsUsageError(t *testing.T) {
	for _, u := range []string{"ftp://h:1", "127.0.0.1:9696", "http://", "http://h:1/?x=1"} {
		code, _, errOut := runCLI("network", "list", "--url", u)
		if code != exitUsage || !strings.Contains(errOut, "--url") || !strings.Contains(errOut, "http://HOST:PORT") {
			t.Errorf("--url %q: exit %d, stderr %q; want exit 2 naming --url and the form", u, code, errOut)
		}
	}
}

func TestResourceUnreachableServerExit1(t *testing.T) {
	url := closedURL(t)
	code, out, errOut := runCLI("network", "list", "--url", url)
	if code != exitFailure {
		t.Fatalf("exit %d, want 1; stderr %q", code, errOut)
	}
	if out != "" || !strings.Contains(errOut, "cannot reach the offlane API at "+url+"/") || !strings.Contains(errOut, "offlane serve") {
		t.Errorf("stderr %q: want the URL and the hint", errOut)
	}
}

func TestAPIBaseURL(t *testing.T) {
	env := map[string]string{}
	a := &apiOptions{getenv: func(k string) string { return env[k] }, output: "table", timeout: 1}
	cases := []struct{ flag, env, want string }{
		{"", "", "http://127.0.0.1:9696/"},
		{"", "https://api.example:443", "https://api.example:443/"},
		{"http://h:1", "https://ignored:1", "http://h:1/"},
		{"http://h:1/", "", "http://h:1/"},
		{"http://h:1/v2.0", "", "http://h:1/"},
		{"http://h:1/v2.0/", "", "http://h:1/"},
		{"http://h:1/neutron", "", "http://h:1/neutron/"},
	}
	for _, c := range cases {
		a.url, env[envAPIURL] = c.flag, c.env
		got, err := a.baseURL()
		if err != nil || got != c.want {
			t.Errorf("url %q env %q: got %q, %v; want %q", c.flag, c.env, got, err, c.want)
		}
	}
	a.url, env[envAPIURL] = "", "not a url"
	if _, err := a.baseURL(); err == nil || !strings.Contains(err.Error(), envAPIURL) {
		t.Errorf("bad %s: error %v should name the variable", envAPIURL, err)
	}
}

func TestParseAPIError(t *testing.T) {
	cases := []struct {
		status int
		body   string
		want   string
	}{
		{409, `{"NeutronError": {"type": "IpAddressInUse", "message": "Unable to complete operation for network n. The IP address 10.0.0.5 is in use.", "detail": ""}}`,
			"409 IpAddressInUse: Unable to complete operation for network n. The IP address 10.0.0.5 is in use."},
		{400, `{"NeutronError": {"type": "HTTPBadRequest", "message": "Invalid input for cidr.", "detail": "more"}}`,
			"400 HTTPBadRequest: Invalid input for cidr. (more)"},
		{404, `{"NeutronError": {"message": "Network x could not be found."}}`, "404 NotFound: Network x could not be found."},
		{502, `<html>bad gateway</html>`, "502 BadGateway: <html>bad gateway</html>"},
		{500, ``, "500 InternalServerError: (empty body)"},
		{401, `{"NeutronError": {"type": "Unauthorized", "message": "no token"}}`, "401 Unauthorized: no token (pass a valid token with --token or OFFLANE_TOKEN)"},
	}
	for _, c := range cases {
		if got := parseAPIError(c.status, []byte(c.body)).Error(); got != c.want {
			t.Errorf("%d %s:\n got %q\nwant %q", c.status, c.body, got, c.want)
		}
	}
}

func TestParseFixedIPs(t *testing.T) {
	got, err := parseFixedIPs("--fixed-ip", []string{"subnet=sub1,ip-address=10.0.0.5", "ip-address=2001:db8::05", "subnet=s2"})
	want := []fixedIPSpec{{"sub1", "10.0.0.5"}, {"", "2001:db8::5"}, {"s2", ""}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"", "subnet", "subnet=", "=x", "subnet=a,subnet=b", "ip-address=10.0.0.1%eth0"} {
		_, err := parseFixedIPs("--fixed-ip", []string{bad})
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--fixed-ip") {
			t.Errorf("%q: error %v, want a usage error naming --fixed-ip", bad, err)
		}
	}
}

func TestParseOtherKeyValueFlags(t *testing.T) {
	pairs, err := parseAllowedAddresses("--allowed-address", []string{"ip-address=10.0.0.100", "ip-address=10.0.1.0/24,mac-address=fa:16:3e:00:00:01"})
	if err != nil || !reflect.DeepEqual(pairs, []addressPairSpec{{"10.0.0.100", ""}, {"10.0.1.0/24", "fa:16:3e:00:00:01"}}) {
		t.Errorf("allowed addresses: %+v %v", pairs, err)
	}
	if _, err := parseAllowedAddresses("--allowed-address", []string{"mac-address=fa:16:3e:00:00:01"}); err == nil {
		t.Error("allowed address without ip-address accepted")
	}
	routes, err := parseRoutes("--route", []string{"destination=192.168.10.0/24,gateway=10.0.0.254", "gateway=2001:db8::1,destination=2001:db8:1::/64"})
	if err != nil || !reflect.DeepEqual(routes, []routeSpec{{"192.168.10.0/24", "10.0.0.254"}, {"2001:db8:1::/64", "2001:db8::1"}}) {
		t.Errorf("routes: %+v %v", routes, err)
	}
	if _, err := parseRoutes("--route", []string{"destination=192.168.10.1,gateway=10.0.0.254"}); err == nil {
		t.Error("route with an address as destination accepted")
	}
	pools, err := parsePools("--allocation-pool", []string{"start=10.0.0.10,end=10.0.0.10"})
	if err != nil || !reflect.DeepEqual(pools, []poolSpec{{"10.0.0.10", "10.0.0.10"}}) {
		t.Errorf("pools: %+v %v", pools, err)
	}
	if _, err := parsePools("--allocation-pool", []string{"start=10.0.0.10,end=2001:db8::1"}); err == nil {
		t.Error("mixed-version pool accepted")
	}
	prof, err := parseBindingProfile("--binding-profile", []string{"pci_slot=0000:3b:02.1", `{"physical_network": "physnet1", "pci_vendor_info": "15b3:1018"}`, "trusted=true", "capabilities=[\"switchdev\"]"})
	want := map[string]any{"pci_slot": "0000:3b:02.1", "physical_network": "physnet1", "pci_vendor_info": "15b3:1018",
		"trusted": true, "capabilities": []any{"switchdev"}}
	if err != nil || !reflect.DeepEqual(prof, want) {
		t.Errorf("binding profile: %#v %v", prof, err)
	}
}

func TestParseProtocolAndPorts(t *testing.T) {
	for in, want := range map[string]string{"TCP": "tcp", "icmpv6": "ipv6-icmp", "any": "", "6": "6", "vrrp": "vrrp"} {
		if got, err := parseProtocol(in); err != nil || got != want {
			t.Errorf("protocol %q: %q %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"256", "-1", "tcpx"} {
		if _, err := parseProtocol(bad); err == nil {
			t.Errorf("protocol %q accepted", bad)
		}
	}
	if lo, hi, err := parsePortRange("8000:8080"); err != nil || lo != 8000 || hi != 8080 {
		t.Errorf("range: %d %d %v", lo, hi, err)
	}
	if lo, hi, err := parsePortRange("22"); err != nil || lo != 22 || hi != 22 {
		t.Errorf("port: %d %d %v", lo, hi, err)
	}
	for _, bad := range []string{"0", "65536", "1:", ":2", "a", "5:4"} {
		if _, _, err := parsePortRange(bad); err == nil {
			t.Errorf("port range %q accepted", bad)
		}
	}
}

func TestCellValue(t *testing.T) {
	obj, err := rawObject([]byte(`{"fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.5"}, {"subnet_id": "s2", "ip_address": "2001:db8::5"}],
		"mtu": 1450, "shared": false, "qos_policy_id": null, "tags": ["a", "b"],
		"external_gateway_info": {"network_id": "n1", "enable_snat": true, "external_fixed_ips": [{"ip_address": "203.0.113.5"}]},
		"big": 16777215}`))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"fixed_ips":             "ip_address='10.0.0.5', subnet_id='s1'\nip_address='2001:db8::5', subnet_id='s2'",
		"mtu":                   "1450",
		"big":                   "16777215",
		"shared":                "false",
		"qos_policy_id":         "",
		"tags":                  "a\nb",
		"external_gateway_info": `enable_snat='true', external_fixed_ips=[{ip_address='203.0.113.5'}], network_id='n1'`,
	}
	for k, want := range cases {
		if got := cellValue(obj[k]); got != want {
			t.Errorf("%s: got %q, want %q", k, got, want)
		}
	}
	if got := plainValue(obj["tags"]); got != "a b" {
		t.Errorf("plain tags: %q", got)
	}
	if got := plainValue(obj["fixed_ips"]); got != `{"ip_address":"10.0.0.5","subnet_id":"s1"} {"ip_address":"2001:db8::5","subnet_id":"s2"}` {
		t.Errorf("plain fixed_ips: %q", got)
	}
}

func TestWriteTableAlignsAndWraps(t *testing.T) {
	var b bytes.Buffer
	err := writeTable(&b, []string{"ID", "NAME", "FIXED IPS"}, [][]string{
		{"a1", "web", "10.0.0.5\n10.0.0.6"},
		{"b22", "database-server", ""},
	}, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID   NAME             FIXED IPS\n" +
		"a1   web              10.0.0.5\n" +
		"                      10.0.0.6\n" +
		"b22  database-server\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}

	b.Reset()
	long := strings.Repeat("ip_address='10.0.0.5', subnet_id='0b3a8c9e-2f44-4a51-9d7e-0c5d2c1f8e11', ", 3)
	if err := writeTable(&b, []string{"FIELD", "VALUE"}, [][]string{{"fixed_ips", long}, {"id", "6f1e0b5a-1c1b-4a55-8f2e-3a9b8f0d6c44"}}, 100); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) < 4 {
		t.Fatalf("long value not wrapped:\n%s", b.String())
	}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > 100 {
			t.Errorf("line of %d columns: %q", n, l)
		}
	}
	// Nothing is lost by wrapping.
	var joined strings.Builder
	for _, l := range lines[1 : len(lines)-1] {
		joined.WriteString(strings.TrimSpace(strings.TrimPrefix(l, "fixed_ips")))
	}
	if strings.ReplaceAll(joined.String(), " ", "") != strings.ReplaceAll(long, " ", "") {
		t.Errorf("wrapped text differs:\n%s", joined.String())
	}
	if !strings.HasPrefix(lines[len(lines)-1], "id         6f1e0b5a-") {
		t.Errorf("last row misaligned: %q", lines[len(lines)-1])
	}
}

// FuzzResourceFlagParsers feeds arbitrary flag values to every key=value parser: they
// must never panic, and every rejection must be a usage error naming the flag.
func FuzzResourceFlagParsers(f *testing.F) {
	for _, s := range []string{"subnet=s,ip-address=10.0.0.5", "ip-address=::1", "destination=10.0.0.0/8,gateway=10.0.0.1",
		"start=10.0.0.1,end=10.0.0.9", `{"a": 1}`, "k=v", "=,=,", "ip-address=10.0.0.0/33,mac-address=fa:16:3e:00:00:01", "8000:8080"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		check := func(name string, err error) {
			if err == nil {
				return
			}
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("%s(%q): %v is not a usage error", name, s, err)
			}
		}
		_, err := parseFixedIPs("--fixed-ip", []string{s})
		check("fixed-ip", err)
		_, err = parseAllowedAddresses("--allowed-address", []string{s})
		check("allowed-address", err)
		_, err = parseRoutes("--route", []string{s})
		check("route", err)
		_, err = parsePools("--allocation-pool", []string{s})
		check("allocation-pool", err)
		_, err = parseBindingProfile("--binding-profile", []string{s})
		check("binding-profile", err)
		_, err = parseProtocol(s)
		check("protocol", err)
		_, _, err = parsePortRange(s)
		check("dst-port", err)
	})
}

// Every answer is decoded by gophercloud into its own types as well: a shape gophercloud
// users could not decode is an error, not a silently odd table.
func TestDecodeObjectChecksGophercloudTypes(t *testing.T) {
	good := gophercloud.Result{Body: map[string]any{"network": map[string]any{"id": "n1", "mtu": 1450.0, "provider:segmentation_id": 100.0}}}
	obj, err := decodeObject(networkKind, good)
	if err != nil || obj["mtu"] != json.Number("1450") || obj["id"] != "n1" {
		t.Fatalf("good answer: %v, %v", obj, err)
	}
	bad := gophercloud.Result{Body: map[string]any{"network": map[string]any{"id": "n1", "mtu": "big"}}}
	if _, err := decodeObject(networkKind, bad); err == nil || !strings.Contains(err.Error(), "does not decode into gophercloud's") {
		t.Errorf("mtu as a string: error %v", err)
	}
	badTime := gophercloud.Result{Body: map[string]any{"policy": map[string]any{"id": "p", "created_at": "yesterday"}}}
	if _, err := decodeObject(qosPolicyKind, badTime); err == nil {
		t.Error("policy with an unparsable created_at accepted")
	}
	if _, err := decodeObject(portKind, good); err == nil || !strings.Contains(err.Error(), `has no "port" object`) {
		t.Errorf("network answer for a port: error %v", err)
	}
}
