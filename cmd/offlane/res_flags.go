package main

import (
	"encoding/json"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// Parsing and checking of the resource commands' flag values. Everything here runs
// before the server is contacted; a mistake is a usage error (exit 2) naming the flag
// and showing the expected form.

// parseKV parses "k1=v1,k2=v2" with keys from allowed. Values may not be empty and a key
// may not repeat.
func parseKV(flag, val string, allowed []string, example string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range strings.Split(val, ",") {
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, usageErrorf("%s %q: want comma-separated key=value pairs, e.g. %s %s", flag, val, flag, example)
		}
		if !slices.Contains(allowed, k) {
			return nil, usageErrorf("%s %q: unknown key %q (allowed: %s), e.g. %s %s", flag, val, k, strings.Join(allowed, ", "), flag, example)
		}
		if v == "" {
			return nil, usageErrorf("%s %q: key %q has no value, e.g. %s %s", flag, val, k, flag, example)
		}
		if _, dup := out[k]; dup {
			return nil, usageErrorf("%s %q: key %q given twice", flag, val, k)
		}
		out[k] = v
	}
	return out, nil
}

// fixedIPSpec is one --fixed-ip: a subnet (name or id, resolved later) and/or an address.
type fixedIPSpec struct {
	subnet string
	ip     string
}

const fixedIPExample = "subnet=SUBNET,ip-address=10.0.0.5"

func parseFixedIPs(flag string, vals []string) ([]fixedIPSpec, error) {
	var out []fixedIPSpec
	for _, v := range vals {
		kv, err := parseKV(flag, v, []string{"subnet", "ip-address"}, fixedIPExample)
		if err != nil {
			return nil, err
		}
		if ip := kv["ip-address"]; ip != "" {
			a, err := netip.ParseAddr(ip)
			if err != nil || a.Zone() != "" {
				return nil, usageErrorf("%s %q: ip-address %q is not an IP address, e.g. %s %s", flag, v, ip, flag, fixedIPExample)
			}
			kv["ip-address"] = a.String()
		}
		out = append(out, fixedIPSpec{subnet: kv["subnet"], ip: kv["ip-address"]})
	}
	return out, nil
}

// addressPairSpec is one --allowed-address.
type addressPairSpec struct {
	ip  string // address or CIDR
	mac string
}

func parseAllowedAddresses(flag string, vals []string) ([]addressPairSpec, error) {
	const ex = "ip-address=10.0.0.100[,mac-address=fa:16:3e:00:00:01]"
	var out []addressPairSpec
	for _, v := range vals {
		kv, err := parseKV(flag, v, []string{"ip-address", "mac-address"}, ex)
		if err != nil {
			return nil, err
		}
		ip := kv["ip-address"]
		if ip == "" {
			return nil, usageErrorf("%s %q: ip-address is required, e.g. %s %s", flag, v, flag, ex)
		}
		if _, err := netip.ParsePrefix(ip); err != nil {
			if _, err := netip.ParseAddr(ip); err != nil {
				return nil, usageErrorf("%s %q: ip-address %q is neither an IP address nor a CIDR, e.g. %s %s", flag, v, ip, flag, ex)
			}
		}
		if m := kv["mac-address"]; m != "" {
			if hw, err := net.ParseMAC(m); err != nil || len(hw) != 6 {
				return nil, usageErrorf("%s %q: mac-address %q is not a MAC address like fa:16:3e:00:00:01", flag, v, m)
			}
		}
		out = append(out, addressPairSpec{ip: ip, mac: kv["mac-address"]})
	}
	return out, nil
}

// routeSpec is one --route / --host-route: destination CIDR via a gateway address.
type routeSpec struct {
	destination string
	gateway     string
}

func parseRoutes(flag string, vals []string) ([]routeSpec, error) {
	const ex = "destination=192.168.10.0/24,gateway=10.0.0.254"
	var out []routeSpec
	for _, v := range vals {
		kv, err := parseKV(flag, v, []string{"destination", "gateway"}, ex)
		if err != nil {
			return nil, err
		}
		d, gw := kv["destination"], kv["gateway"]
		if d == "" || gw == "" {
			return nil, usageErrorf("%s %q: both destination and gateway are required, e.g. %s %s", flag, v, flag, ex)
		}
		p, err := netip.ParsePrefix(d)
		if err != nil {
			return nil, usageErrorf("%s %q: destination %q is not a CIDR, e.g. %s %s", flag, v, d, flag, ex)
		}
		a, err := netip.ParseAddr(gw)
		if err != nil {
			return nil, usageErrorf("%s %q: gateway %q is not an IP address, e.g. %s %s", flag, v, gw, flag, ex)
		}
		if p.Addr().Is4() != a.Is4() {
			return nil, usageErrorf("%s %q: destination and gateway are of different IP versions", flag, v)
		}
		out = append(out, routeSpec{destination: p.String(), gateway: a.String()})
	}
	return out, nil
}

// poolSpec is one --allocation-pool.
type poolSpec struct {
	start, end string
}

func parsePools(flag string, vals []string) ([]poolSpec, error) {
	const ex = "start=10.0.0.10,end=10.0.0.99"
	var out []poolSpec
	for _, v := range vals {
		kv, err := parseKV(flag, v, []string{"start", "end"}, ex)
		if err != nil {
			return nil, err
		}
		s, e := kv["start"], kv["end"]
		if s == "" || e == "" {
			return nil, usageErrorf("%s %q: both start and end are required, e.g. %s %s", flag, v, flag, ex)
		}
		sa, err1 := netip.ParseAddr(s)
		ea, err2 := netip.ParseAddr(e)
		if err1 != nil || err2 != nil {
			return nil, usageErrorf("%s %q: start and end must be IP addresses, e.g. %s %s", flag, v, flag, ex)
		}
		if sa.Is4() != ea.Is4() || ea.Less(sa) {
			return nil, usageErrorf("%s %q: end must not come before start, in the same IP version", flag, v)
		}
		out = append(out, poolSpec{start: sa.String(), end: ea.String()})
	}
	return out, nil
}

// parseBindingProfile merges --binding-profile values: each is a JSON object or
// key=value (the value taken as JSON when it parses as such, else as a string).
func parseBindingProfile(flag string, vals []string) (map[string]any, error) {
	out := map[string]any{}
	for _, v := range vals {
		if strings.HasPrefix(strings.TrimSpace(v), "{") {
			var m map[string]any
			if err := json.Unmarshal([]byte(v), &m); err != nil {
				return nil, usageErrorf("%s %q: not a JSON object: %v", flag, v, err)
			}
			for k, x := range m {
				out[k] = x
			}
			continue
		}
		k, val, ok := strings.Cut(v, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, usageErrorf("%s %q: want key=value or a JSON object, e.g. %s pci_slot=0000:3b:02.1", flag, v, flag)
		}
		var x any
		if err := json.Unmarshal([]byte(val), &x); err != nil {
			x = val
		}
		out[strings.TrimSpace(k)] = x
	}
	return out, nil
}

// boolPair reads a pair of opposite switches (--share/--no-share): nil when neither is
// given, an error when both are.
func boolPair(cmd *cobra.Command, on, off string) (*bool, error) {
	f := cmd.Flags()
	a, b := f.Changed(on), f.Changed(off)
	switch {
	case a && b:
		return nil, usageErrorf("--%s and --%s contradict each other: pass one", on, off)
	case a:
		return ptr(true), nil
	case b:
		return ptr(false), nil
	}
	return nil, nil
}

func addBoolPair(cmd *cobra.Command, on, onUsage, off, offUsage string) {
	cmd.Flags().Bool(on, false, onUsage)
	cmd.Flags().Bool(off, false, offUsage)
}

func ptr[T any](v T) *T { return &v }

// changedString returns a pointer to the flag's value if it was given.
func changedString(cmd *cobra.Command, name, val string) *string {
	if cmd.Flags().Changed(name) {
		return &val
	}
	return nil
}

// oneOf checks an enumerated flag value.
func oneOf(flag, val string, allowed ...string) error {
	if slices.Contains(allowed, val) {
		return nil
	}
	return usageErrorf("--%s %q: want one of %s", flag, val, strings.Join(allowed, ", "))
}

var (
	networkTypes = []string{"flat", "vlan", "vxlan", "gre", "geneve", "local"}
	vnicTypes    = []string{"normal", "direct", "direct-physical", "virtio-forwarder", "vdpa", "vhost-user"}
	// validDSCPMarks are the DSCP values Neutron accepts (neutron_lib VALID_DSCP_MARKS).
	validDSCPMarks = []int{0, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 46, 48, 56}
	// ipProtocols are the protocol names Neutron accepts in security group rules.
	ipProtocols = []string{"ah", "dccp", "egp", "esp", "gre", "hopopt", "icmp", "igmp", "ipip", "ipv6-encap",
		"ipv6-frag", "ipv6-icmp", "ipv6-nonxt", "ipv6-opts", "ipv6-route", "ospf", "pgm", "rsvp", "sctp",
		"tcp", "udp", "udplite", "vrrp"}
)

// parseProtocol normalises --protocol: a name, "icmpv6" (as the openstack CLI spells
// ipv6-icmp), "any" (no protocol) or a number 0-255.
func parseProtocol(val string) (string, error) {
	v := strings.ToLower(strings.TrimSpace(val))
	switch {
	case v == "any" || v == "":
		return "", nil
	case v == "icmpv6" || v == "ipv6-icmp":
		return "ipv6-icmp", nil
	case slices.Contains(ipProtocols, v):
		return v, nil
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 && n <= 255 {
		return v, nil
	}
	return "", usageErrorf("--protocol %q: want a protocol name (tcp, udp, icmp, icmpv6, ...), a number 0-255, or any", val)
}

// parsePortRange parses --dst-port "22" or "8000:8080".
func parsePortRange(val string) (lo, hi int, err error) {
	bad := usageErrorf("--dst-port %q: want a port 1-65535 or a range LOW:HIGH such as 8000:8080", val)
	a, b, isRange := strings.Cut(val, ":")
	lo, err1 := strconv.Atoi(a)
	hi = lo
	var err2 error
	if isRange {
		hi, err2 = strconv.Atoi(b)
	}
	if err1 != nil || err2 != nil || lo < 1 || hi > 65535 || hi < lo {
		return 0, 0, bad
	}
	return lo, hi, nil
}

// parseCIDROrAddr accepts a CIDR or a bare address (taken as a host prefix).
func parseCIDROrAddr(flag, val string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(val); err == nil {
		return p, nil
	}
	if a, err := netip.ParseAddr(val); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, usageErrorf("--%s %q: want a CIDR such as 192.0.2.0/24 or an IP address", flag, val)
}

// checkProject checks a --project value: offlane has no identity service, so projects
// are given by id.
func checkProject(val string) error {
	if val != "" && !idLike.MatchString(val) {
		return usageErrorf("--project %q: want a project id (letters, digits, '-', '_')", val)
	}
	return nil
}

// noChange reports an update command given no attribute flag at all (only the shared
// connection and output flags).
func noChange(cmd *cobra.Command) bool {
	n := 0
	for _, name := range []string{"url", "token", "cacert", "os-project-id", "timeout", "output", "column", "verbose"} {
		if f := cmd.Flags().Lookup(name); f != nil && f.Changed {
			n++
		}
	}
	return cmd.Flags().NFlag() == n
}

// errNothingToUpdate is the usage error of an update without any change.
func errNothingToUpdate(noun string) error {
	return usageErrorf("nothing to update: pass at least one attribute flag (see \"offlane %s update --help\")", noun)
}

func intInRange(flag string, v int, lo, hi int) error {
	if v < lo || v > hi {
		return usageErrorf("--%s %d: want %d-%d", flag, v, lo, hi)
	}
	return nil
}

// fmtList joins enumerated values for help texts.
func fmtList(vals []string) string { return strings.Join(vals, ", ") }
