package offload

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/offlane/offlane/controlplane"
)

func TestBuildTwoTenants(t *testing.T) {
	ir, _ := buildTwoTenants(t)
	if got := sortedKeys(ir.Segments); !slices.Equal(got, []string{"net-a-vlan", "net-a-vx", "net-b-vlan", "net-b-vx"}) {
		t.Errorf("segments %v", got)
	}
	if got := ir.LocalVLANs(); got["net-a-vlan"] != 1 || got["net-a-vx"] != 2 || got["net-b-vlan"] != 3 || got["net-b-vx"] != 4 {
		t.Errorf("local VLANs %v, want 1..4 in network ID order", got)
	}
	if got := sortedKeys(ir.Ports); !slices.Equal(got, []string{"a1", "a2", "a3", "b1", "b2", "b3"}) {
		t.Errorf("local ports %v", got)
	}
	ax := ir.RemotePorts["ax"]
	if ax == nil || ax.VTEP != netip.MustParseAddr("192.0.2.2") || ax.MAC != "fa:16:3e:00:00:09" || len(ir.RemotePorts) != 1 {
		t.Errorf("remote ports %+v", ir.RemotePorts)
	}
	// sg-a names itself as remote group: its members (a1, a2, a3 here, ax on node2) form
	// the address set; sg-b is referenced by no rule, so its ports are no members.
	if got := sortedKeys(ir.Members); !slices.Equal(got, []string{"a1", "a2", "a3", "ax"}) {
		t.Errorf("members %v", got)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("10.0.0.2/32"), netip.MustParsePrefix("10.0.0.3/32"), netip.MustParsePrefix("10.0.0.9/32")}
	if got := ir.AddressSet("sg-a"); !slices.Equal(got, want) {
		t.Errorf("address set of sg-a %v, want %v", got, want)
	}
	b3 := ir.Ports["b3"]
	if len(b3.AllowedPairs) != 1 || b3.AllowedPairs[0] != (AddressPair{MAC: "fa:16:3e:00:00:23", Prefix: netip.MustParsePrefix("10.0.0.100/32")}) {
		t.Errorf("b3 allowed pairs %+v", b3.AllowedPairs)
	}
	// Per-port expansion: a1's rules with the remote group resolved.
	var icmp *ExpandedRule
	rules := ir.PortRules("a1")
	for i := range rules {
		if rules[i].ID == "a-icmp" {
			icmp = &rules[i]
		}
	}
	if len(rules) != 4 || icmp == nil || !slices.Equal(icmp.Remote, want) || icmp.Protocol != ProtoICMP {
		t.Errorf("expanded rules of a1: %+v", rules)
	}
	if rules[0].Direction != Egress || rules[len(rules)-1].Direction != Ingress {
		t.Errorf("expanded rules not sorted by direction: %+v", rules)
	}
}

func TestBuildWarnsAboutHostsWithoutVTEP(t *testing.T) {
	ir, err := Build(BuildInput{Host: "node1", Snapshot: twoTenants(), OFPorts: twoTenantsOFPorts})
	if err != nil {
		t.Fatal(err)
	}
	if len(ir.Warnings) != 1 || !strings.Contains(ir.Warnings[0], "host node2 has ports on vxlan network net-a-vx but no known VTEP") {
		t.Errorf("warnings %q", ir.Warnings)
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(s *Snapshot)
		want   []string
	}{
		{"bad MAC", func(s *Snapshot) { s.Ports[0].MACAddress = "fa:16:3e:zz:00:01" }, []string{"port a1: mac_address: \"fa:16:3e:zz:00:01\" is not an Ethernet MAC address"}},
		{"multicast MAC", func(s *Snapshot) { s.Ports[0].MACAddress = "01:00:5e:00:00:01" }, []string{"port a1: mac_address", "multicast"}},
		{"bad fixed IP", func(s *Snapshot) { s.Ports[1].FixedIPs[0].IPAddress = "10.0.0.300" }, []string{"port a2: fixed_ips[0].ip_address \"10.0.0.300\" is not an IP address"}},
		{"unknown network", func(s *Snapshot) { s.Ports[0].NetworkID = "nope" }, []string{"port a1: network_id nope is not in the snapshot"}},
		{"unknown group", func(s *Snapshot) { s.Ports[0].SecurityGroups = []string{"sg-x"} }, []string{"port a1: security group sg-x is not in the snapshot"}},
		{"bad pair", func(s *Snapshot) {
			s.Ports[0].AllowedAddressPairs = []controlplane.AddressPair{{IPAddress: "10.0.0.0/33"}}
		}, []string{"port a1: allowed_address_pairs[0].ip_address: \"10.0.0.0/33\" is not a CIDR"}},
		{"vlan without segmentation id", func(s *Snapshot) { s.Networks[0].SegmentationID = nil }, []string{"network net-a-vlan: vlan needs provider:physical_network and provider:segmentation_id 1..4094"}},
		{"unknown network type", func(s *Snapshot) { s.Networks[1].NetworkType = "stt" }, []string{"network net-a-vx: provider:network_type \"stt\""}},
		{"port range on gre", func(s *Snapshot) {
			s.SecurityGroups[0].Rules[0].Protocol = strp("gre")
		}, []string{"security group sg-a rule a-ssh: port range on protocol 47"}},
		{"prefix of the wrong family", func(s *Snapshot) {
			s.SecurityGroups[0].Rules[0].RemoteIPPrefix = strp("2001:db8::/64")
		}, []string{"security group sg-a rule a-ssh: remote_ip_prefix 2001:db8::/64 does not match ethertype IPv4"}},
		{"bad protocol", func(s *Snapshot) { s.SecurityGroups[1].Rules[0].Protocol = strp("tcpp") }, []string{"security group sg-b rule b-web: protocol \"tcpp\""}},
		{"bad direction", func(s *Snapshot) { s.SecurityGroups[1].Rules[1].Direction = "out" }, []string{"security group sg-b rule b-eg4: direction \"out\""}},
		{"two problems at once", func(s *Snapshot) {
			s.Ports[0].MACAddress = "x"
			s.Ports[1].FixedIPs[0].IPAddress = "y"
		}, []string{"port a1: mac_address", "port a2: fixed_ips[0]"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := twoTenants()
			tc.mutate(&s)
			ir, err := Build(BuildInput{Host: "node1", Snapshot: s})
			if err == nil {
				t.Fatalf("no error (IR %v)", ir != nil)
			}
			if ir != nil {
				t.Error("an IR came back with the error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := Build(BuildInput{Snapshot: twoTenants()}); err == nil || !strings.Contains(err.Error(), "host is empty") {
		t.Errorf("empty host: %v", err)
	}
}

func TestAllocateLocalVLANsIsStable(t *testing.T) {
	got, err := AllocateLocalVLANs(nil, []string{"c", "a", "b"})
	if err != nil || got["a"] != 1 || got["b"] != 2 || got["c"] != 3 {
		t.Fatalf("fresh allocation %v %v", got, err)
	}
	// "b" goes, "aa" and "d" come: a and c keep theirs, the newcomers take 2 then 4.
	got, err = AllocateLocalVLANs(got, []string{"a", "aa", "c", "d"})
	if err != nil || got["a"] != 1 || got["c"] != 3 || got["aa"] != 2 || got["d"] != 4 || len(got) != 4 {
		t.Fatalf("after churn %v %v", got, err)
	}
	// An out-of-range or duplicated previous VLAN is reallocated.
	got, err = AllocateLocalVLANs(map[string]uint16{"a": 5000, "b": 7, "c": 7}, []string{"a", "b", "c"})
	if err != nil || got["b"] != 7 || got["a"] != 1 || got["c"] != 2 {
		t.Fatalf("repair %v %v", got, err)
	}
	many := make([]string, MaxLocalVLAN+1)
	for i := range many {
		many[i] = "n" + strconv.Itoa(i)
	}
	if _, err := AllocateLocalVLANs(nil, many); err == nil || !strings.Contains(err.Error(), "at most 4094") {
		t.Errorf("4095 networks: %v", err)
	}
}

func TestBuildKeepsLocalVLANsAcrossRebuilds(t *testing.T) {
	ir, _ := buildTwoTenants(t)
	prev := ir.LocalVLANs()
	s := twoTenants()
	s.Ports = slices.DeleteFunc(s.Ports, func(p controlplane.Port) bool { return p.NetworkID == "net-a-vx" })
	ir2, err := Build(BuildInput{Host: "node1", Snapshot: s, LocalVLANs: prev})
	if err != nil {
		t.Fatal(err)
	}
	got := ir2.LocalVLANs()
	if len(got) != 3 || got["net-a-vlan"] != 1 || got["net-b-vlan"] != 3 || got["net-b-vx"] != 4 {
		t.Errorf("after net-a-vx left the node: %v, want the others unchanged", got)
	}
}

// FuzzBuildRule feeds arbitrary rule attributes to the normalisation Build applies: it
// must reject or produce a rule whose compiled matches are well formed.
func FuzzBuildRule(f *testing.F) {
	f.Add("ingress", "IPv4", "tcp", 22, 22, "10.0.0.0/8", "")
	f.Add("egress", "IPv6", "icmp", 128, -1, "2001:db8::/32", "")
	f.Add("ingress", "IPv4", "47", -1, -1, "", "sg")
	f.Add("ingress", "", "udp", 0, 65535, "0.0.0.0/0", "")
	f.Fuzz(func(t *testing.T, dir, eth, proto string, lo, hi int, prefix, group string) {
		cr := controlplane.SecurityGroupRule{ID: "r", Direction: dir, EtherType: eth, Protocol: &proto,
			PortRangeMin: &lo, PortRangeMax: &hi, RemoteIPPrefix: &prefix, RemoteGroupID: &group}
		r, err := buildRule("sg", &cr)
		if err != nil {
			if !strings.Contains(err.Error(), "security group sg rule r: ") {
				t.Fatalf("error does not name the rule: %v", err)
			}
			return
		}
		if r.RemotePrefix.IsValid() && r.RemotePrefix.Addr().Is4() != (r.EtherType == IPv4) {
			t.Fatalf("prefix %s with ethertype %s", r.RemotePrefix, r.EtherType)
		}
		ms := ruleMatches(r)
		if len(ms) == 0 || len(ms) > 32 {
			t.Fatalf("%d matches for %+v", len(ms), r)
		}
		for _, m := range ms {
			s := m.String()
			if !strings.HasPrefix(s, "ip") && !strings.HasPrefix(s, "tcp") && !strings.HasPrefix(s, "udp") &&
				!strings.HasPrefix(s, "sctp") && !strings.HasPrefix(s, "icmp") {
				t.Fatalf("match %q does not start with its protocol", s)
			}
		}
	})
}
