package ovsdpdk

import (
	"sort"
	"strconv"
	"strings"
)

// Ownership tags. Every Bridge, Port and Interface row offlane creates carries
// external_ids:offlane-owner; rows without it are foreign and never touched. On the
// Open_vSwitch row, which offlane shares with everyone, the external_ids keys starting
// with "offlane-" are offlane's, and offlane-managed-other-config lists the other_config
// keys it set (so it can remove those the config no longer names, and only those).
const (
	KeyOwner   = "offlane-owner"   // OwnerNode (layout rows) or OwnerPort (tenant ports)
	KeyRole    = "offlane-role"    // what a layout row is for (RoleIntegration, ...)
	KeyPhysnet = "offlane-physnet" // the physnet a bridge serves

	OwnerNode = "node" // created by `offlane node apply`; pruned when the config drops it
	OwnerPort = "port" // created by the Ports API; node apply never prunes these

	KeyManagedOtherConfig = "offlane-managed-other-config"
	KeyBridgeMappings     = "offlane-bridge-mappings"
	KeyIntegrationBridge  = "offlane-integration-bridge"
	KeyVhostUserSocketDir = "offlane-vhostuser-socket-dir"
	KeyTunnelLocalIP      = "offlane-tunnel-local-ip"
	KeyL3Backend          = "offlane-l3-backend"

	ownedPrefix = "offlane-"
)

// Roles of layout rows (external_ids:offlane-role).
const (
	RoleIntegration = "integration"
	RoleTunnel      = "tunnel"
	RoleExternal    = "external"
	RolePhysnet     = "physnet"
	RoleLocal       = "local"       // a bridge's own internal port
	RolePatch       = "patch"       // patch port between two layout bridges
	RoleUplink      = "uplink"      // a physnet's physical port
	RoleTunnelPort  = "tunnel-port" // flow-based tunnel port on the tunnel bridge
)

// Layout is the desired OVS state of a node, computed from a NodeSpec by a pure function.
type Layout struct {
	// OtherConfig holds every Open_vSwitch other_config key offlane manages for this
	// config and its value.
	OtherConfig map[string]string
	// ExternalIDs holds the offlane-* keys of the Open_vSwitch row.
	ExternalIDs map[string]string
	Bridges     []BridgeSpec // sorted by name
}

// BridgeSpec is one bridge offlane owns.
type BridgeSpec struct {
	Name         string
	DatapathType string
	FailMode     string // standalone | secure
	ExternalIDs  map[string]string
	Ports        []PortSpec // sorted by name
}

// PortSpec is one Port row with its single Interface of the same name.
type PortSpec struct {
	Name        string
	Type        string // Interface type: "" (system), internal, patch, dpdk, vxlan, ...
	Options     map[string]string
	ExternalIDs map[string]string // on both the Port and the Interface row
}

// restartKeys are other_config keys ovs-vswitchd reads only at start (or, for
// dpdk-init, cannot undo): plan says so when they change.
var restartKeys = map[string]bool{
	"dpdk-socket-mem": true, "dpdk-socket-limit": true, "dpdk-lcore-mask": true, "dpdk-extra": true,
	"dpdk-hugepage-dir": true, "userspace-tso-enable": true, "hw-offload": true,
}

// NodeLayout computes the desired layout: the Neutron-style bridges (integration, tunnel,
// external, one per physnet) with patch ports between the integration bridge and each
// other one, the tunnel ports and uplinks, and the Open_vSwitch settings.
//
// The integration bridge is fail_mode=standalone, so it switches (NORMAL) until an agent
// programs flows; the tunnel, external and physnet bridges are fail_mode=secure, so
// nothing reaches a tunnel or a physical network before flows allow it.
func NodeLayout(s *NodeSpec) *Layout {
	c := s.Config
	l := &Layout{OtherConfig: map[string]string{}, ExternalIDs: map[string]string{}}

	if d := c.DPDK; d != nil && d.Enabled {
		l.OtherConfig["dpdk-init"] = "true"
		if s.SocketMem != nil {
			l.OtherConfig["dpdk-socket-mem"] = joinInts(s.SocketMem)
		}
		if s.SocketLimit != nil {
			l.OtherConfig["dpdk-socket-limit"] = joinInts(s.SocketLimit)
		}
		if s.PMDCPUs != nil {
			l.OtherConfig["pmd-cpu-mask"] = cpuMask(s.PMDCPUs)
		}
		if s.LcoreCPUs != nil {
			l.OtherConfig["dpdk-lcore-mask"] = cpuMask(s.LcoreCPUs)
		}
		if d.Extra != "" {
			l.OtherConfig["dpdk-extra"] = d.Extra
		}
		if d.HugepageDir != "" {
			l.OtherConfig["dpdk-hugepage-dir"] = d.HugepageDir
		}
		if d.PMDMaxSleep != nil {
			l.OtherConfig["pmd-maxsleep"] = strconv.Itoa(*d.PMDMaxSleep)
		}
	}
	if c.HWOffload != nil {
		l.OtherConfig["hw-offload"] = strconv.FormatBool(*c.HWOffload)
		if c.TCPolicy != "" {
			l.OtherConfig["tc-policy"] = c.TCPolicy
		}
	}
	if c.UserspaceTSO != nil {
		l.OtherConfig["userspace-tso-enable"] = strconv.FormatBool(*c.UserspaceTSO)
	}

	l.ExternalIDs[KeyIntegrationBridge] = c.IntegrationBridge
	l.ExternalIDs[KeyVhostUserSocketDir] = c.VhostUserSocketDir
	if c.L3Backend != "" && c.L3Backend != "auto" {
		l.ExternalIDs[KeyL3Backend] = c.L3Backend
	}

	tags := func(role string) map[string]string {
		return map[string]string{KeyOwner: OwnerNode, KeyRole: role}
	}
	bridge := func(name, role, failMode string) BridgeSpec {
		return BridgeSpec{Name: name, DatapathType: c.Datapath, FailMode: failMode, ExternalIDs: tags(role),
			Ports: []PortSpec{{Name: name, Type: "internal", ExternalIDs: tags(RoleLocal)}}}
	}
	patch := func(name, peer string) PortSpec {
		return PortSpec{Name: name, Type: "patch", Options: map[string]string{"peer": peer}, ExternalIDs: tags(RolePatch)}
	}

	integ := bridge(c.IntegrationBridge, RoleIntegration, "standalone")
	var others []BridgeSpec
	if t := c.Tunnel; t != nil {
		br := bridge(t.Bridge, RoleTunnel, "secure")
		// Neutron's names: patch-tun on br-int, patch-int on br-tun.
		integ.Ports = append(integ.Ports, patch("patch-tun", "patch-int"))
		br.Ports = append(br.Ports, patch("patch-int", "patch-tun"))
		ip, _ := tunnelIP(t.LocalIP)
		for _, ty := range t.Types {
			// One flow-based port per type: remote and key come from the flows, so a
			// new peer node needs no new port. tos=inherit copies the inner DSCP (a QoS
			// dscp_marking) to the outer header, as Neutron's tunnels do.
			br.Ports = append(br.Ports, PortSpec{Name: "tun-" + ty, Type: ty,
				Options:     map[string]string{"local_ip": ip.String(), "remote_ip": "flow", "key": "flow", "tos": "inherit"},
				ExternalIDs: tags(RoleTunnelPort)})
		}
		l.ExternalIDs[KeyTunnelLocalIP] = ip.String()
		others = append(others, br)
	}
	if c.ExternalBridge != "" {
		br := bridge(c.ExternalBridge, RoleExternal, "secure")
		integ.Ports = append(integ.Ports, patch("int-"+c.ExternalBridge, "phy-"+c.ExternalBridge))
		br.Ports = append(br.Ports, patch("phy-"+c.ExternalBridge, "int-"+c.ExternalBridge))
		others = append(others, br)
	}
	var mappings []string
	for _, name := range sortedKeys(c.Physnets) {
		pn := c.Physnets[name]
		br := bridge(pn.Bridge, RolePhysnet, "secure")
		br.ExternalIDs[KeyPhysnet] = name
		// Neutron's names: int-<bridge> on br-int, phy-<bridge> on the physnet bridge.
		integ.Ports = append(integ.Ports, patch("int-"+pn.Bridge, "phy-"+pn.Bridge))
		br.Ports = append(br.Ports, patch("phy-"+pn.Bridge, "int-"+pn.Bridge))
		if pn.Interface != "" {
			up := PortSpec{Name: pn.Interface, ExternalIDs: tags(RoleUplink)}
			if pn.Devargs != "" {
				up.Type = "dpdk"
				up.Options = map[string]string{"dpdk-devargs": pn.Devargs}
			}
			up.ExternalIDs[KeyPhysnet] = name
			br.Ports = append(br.Ports, up)
		}
		mappings = append(mappings, name+":"+pn.Bridge)
		others = append(others, br)
	}
	if len(mappings) > 0 {
		l.ExternalIDs[KeyBridgeMappings] = strings.Join(mappings, ",")
	}

	l.Bridges = append([]BridgeSpec{integ}, others...)
	for i := range l.Bridges {
		sort.Slice(l.Bridges[i].Ports, func(a, b int) bool { return l.Bridges[i].Ports[a].Name < l.Bridges[i].Ports[b].Name })
	}
	sort.Slice(l.Bridges, func(a, b int) bool { return l.Bridges[a].Name < l.Bridges[b].Name })
	return l
}

// joinInts writes MB per NUMA node as OVS wants them ("1024,0").
func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}
