package controlplane

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Network types (provider:network_type).
const (
	NetTypeFlat   = "flat"
	NetTypeVLAN   = "vlan"
	NetTypeVXLAN  = "vxlan"
	NetTypeGRE    = "gre"
	NetTypeGeneve = "geneve"
	NetTypeLocal  = "local"
)

// SegmentConfig is the `serve --config` file: which segments tenant networks get and
// which provider networks admins may create, after Neutron's ML2 options. A nil list
// means the default; an empty list (`[]`) means none.
//
//	global_physnet_mtu: 1500            # underlay MTU (default 1500)
//	tenant_network_types: [vxlan]       # tried in order (default [vxlan])
//	vxlan_vni_ranges: ["1:65535"]       # default when vxlan is a tenant type
//	geneve_vni_ranges: ["1:1000"]
//	gre_tunnel_id_ranges: ["1:1000"]
//	network_vlan_ranges: ["physnet1:100:199", "physnet2"]   # physnet alone: provider only
//	flat_networks: ["*"]                # physnets for flat networks; "*" any (default)
type SegmentConfig struct {
	GlobalPhysnetMTU   int      `json:"global_physnet_mtu,omitempty"`
	TenantNetworkTypes []string `json:"tenant_network_types,omitempty"`
	VXLANVNIRanges     []string `json:"vxlan_vni_ranges,omitempty"`
	GeneveVNIRanges    []string `json:"geneve_vni_ranges,omitempty"`
	GRETunnelIDRanges  []string `json:"gre_tunnel_id_ranges,omitempty"`
	// NetworkVLANRanges: when nil, VLAN provider networks may use any physnet name (no
	// tenant VLANs); when set, only the listed physnets.
	NetworkVLANRanges []string `json:"network_vlan_ranges,omitempty"`
	FlatNetworks      []string `json:"flat_networks"`
}

// LoadSegmentConfig reads a SegmentConfig from a YAML file, refusing unknown keys.
func LoadSegmentConfig(path string) (SegmentConfig, error) {
	var c SegmentConfig
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if _, err := c.plan(); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Maximum segmentation ids per type.
const (
	maxVLAN   = 4094
	maxTunnel = 1<<24 - 1 // VXLAN/Geneve VNI; GRE keys are 32-bit but Neutron caps alike
)

type idRange struct{ lo, hi int }

// segmentPlan is a validated SegmentConfig.
type segmentPlan struct {
	mtu          int
	tenantTypes  []string
	tunnelRanges map[string][]idRange // vxlan, geneve, gre
	vlanRanges   map[string][]idRange // physnet → tenant ranges (may be empty)
	vlanAny      bool                 // any physnet for VLAN provider networks
	flatAny      bool
	flatNets     map[string]bool
}

func (c SegmentConfig) plan() (segmentPlan, error) {
	p := segmentPlan{mtu: c.GlobalPhysnetMTU, tunnelRanges: map[string][]idRange{}, vlanRanges: map[string][]idRange{}, flatNets: map[string]bool{}}
	if p.mtu == 0 {
		p.mtu = 1500
	}
	if p.mtu < 68 || p.mtu > 65535 {
		return p, fmt.Errorf("global_physnet_mtu %d: want 68..65535", p.mtu)
	}
	p.tenantTypes = c.TenantNetworkTypes
	if p.tenantTypes == nil {
		p.tenantTypes = []string{NetTypeVXLAN}
	}
	for _, t := range p.tenantTypes {
		switch t {
		case NetTypeVXLAN, NetTypeGeneve, NetTypeGRE, NetTypeVLAN, NetTypeLocal:
		default:
			return p, fmt.Errorf("tenant_network_types: %q is not one of vxlan, geneve, gre, vlan, local", t)
		}
	}
	for typ, rs := range map[string][]string{NetTypeVXLAN: c.VXLANVNIRanges, NetTypeGeneve: c.GeneveVNIRanges, NetTypeGRE: c.GRETunnelIDRanges} {
		if rs == nil && typ == NetTypeVXLAN && slices.Contains(p.tenantTypes, NetTypeVXLAN) {
			rs = []string{"1:65535"}
		}
		for _, r := range rs {
			lo, hi, err := parseRange(r, maxTunnel)
			if err != nil {
				return p, fmt.Errorf("%s ranges: %w", typ, err)
			}
			p.tunnelRanges[typ] = append(p.tunnelRanges[typ], idRange{lo, hi})
		}
	}
	p.vlanAny = c.NetworkVLANRanges == nil
	for _, r := range c.NetworkVLANRanges {
		physnet, rest, hasRange := strings.Cut(r, ":")
		if physnet == "" {
			return p, fmt.Errorf("network_vlan_ranges %q: want physnet or physnet:min:max", r)
		}
		if _, ok := p.vlanRanges[physnet]; !ok {
			p.vlanRanges[physnet] = nil
		}
		if !hasRange {
			continue
		}
		lo, hi, err := parseRange(rest, maxVLAN)
		if err != nil {
			return p, fmt.Errorf("network_vlan_ranges %q: %w", r, err)
		}
		p.vlanRanges[physnet] = append(p.vlanRanges[physnet], idRange{lo, hi})
	}
	flat := c.FlatNetworks
	if flat == nil {
		flat = []string{"*"}
	}
	for _, f := range flat {
		if f == "*" {
			p.flatAny = true
		} else if f != "" {
			p.flatNets[f] = true
		}
	}
	for _, t := range p.tenantTypes {
		switch t {
		case NetTypeVXLAN, NetTypeGeneve, NetTypeGRE:
			if len(p.tunnelRanges[t]) == 0 {
				return p, fmt.Errorf("tenant network type %s has no id ranges (set %s)", t, rangeOption(t))
			}
		case NetTypeVLAN:
			n := 0
			for _, rs := range p.vlanRanges {
				n += len(rs)
			}
			if n == 0 {
				return p, errors.New("tenant network type vlan has no ranges (set network_vlan_ranges: [physnet:min:max])")
			}
		}
	}
	return p, nil
}

func rangeOption(t string) string {
	switch t {
	case NetTypeGeneve:
		return "geneve_vni_ranges"
	case NetTypeGRE:
		return "gre_tunnel_id_ranges"
	}
	return "vxlan_vni_ranges"
}

func parseRange(s string, max int) (int, int, error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, fmt.Errorf("range %q: want min:max", s)
	}
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || lo < 1 || hi > max || lo > hi {
		return 0, 0, fmt.Errorf("range %q: want min:max with 1 <= min <= max <= %d", s, max)
	}
	return lo, hi, nil
}

// mtuFor is the largest MTU a network of type typ gets on the underlay (Neutron's type
// drivers: IPv4 underlay header 20 bytes + VXLAN/Geneve 30, GRE 22).
func (p segmentPlan) mtuFor(typ string) int {
	switch typ {
	case NetTypeVXLAN, NetTypeGeneve:
		return p.mtu - 50
	case NetTypeGRE:
		return p.mtu - 42
	}
	return p.mtu
}

// segmentKey is the claim key of a segment: type/physnet/id (id zero-padded so keys
// sort numerically; flat networks have no id).
func segmentKey(typ, physnet string, id int) string {
	if typ == NetTypeFlat {
		return typ + "/" + physnet + "/"
	}
	return fmt.Sprintf("%s/%s/%08d", typ, physnet, id)
}
