package offload

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
)

// Feature is a piece of a port's dataplane that some backend must implement.
type Feature string

// Features, in the order plans list them.
const (
	FeatureL2             Feature = "l2"
	FeaturePortSecurity   Feature = "port_security"
	FeatureSecurityGroups Feature = "security_groups"
	FeatureRouting        Feature = "routing"     // the port's subnets routed by a router
	FeatureNAT            Feature = "nat"         // SNAT / floating IP of the port's traffic
	FeatureQoSEgress      Feature = "qos_egress"  // bandwidth limit from the VM
	FeatureQoSIngress     Feature = "qos_ingress" // bandwidth limit to the VM
	FeatureDSCP           Feature = "dscp"        // DSCP marking
	FeatureQoSMinimum     Feature = "qos_minimum" // minimum_bandwidth
)

// Features lists the features the planner decides, in plan order.
var Features = []Feature{FeatureL2, FeaturePortSecurity, FeatureSecurityGroups, FeatureRouting, FeatureNAT, FeatureQoSEgress, FeatureQoSIngress, FeatureDSCP, FeatureQoSMinimum}

// Backend implements a feature.
type Backend string

// Backends.
const (
	BackendOpenFlow Backend = "openflow" // flows on the OVS bridges (netdev or system datapath, or OVS hw-offload)
	BackendTC       Backend = "tc"       // tc flower on a switchdev representor (hw or sw)
	BackendNFTables Backend = "nftables" // netfilter in the kernel
	BackendVF       Backend = "vf"       // the SR-IOV VF itself (PF-driver settings: VLAN, spoofchk)
	BackendNone     Backend = "none"     // not implemented for this port; Reason says why
)

// Decision is one feature's backend for one port and why.
type Decision struct {
	Feature Feature `json:"feature"`
	Backend Backend `json:"backend"`
	Reason  string  `json:"reason"`
}

// PortPlan is one local port's decisions, one per feature in Features order.
type PortPlan struct {
	PortID    string     `json:"port_id"`
	NetworkID string     `json:"network_id"`
	VNICType  string     `json:"vnic_type"`
	Decisions []Decision `json:"decisions"`
}

// Backend returns the backend chosen for f (BackendNone when f was not planned).
func (pp *PortPlan) Backend(f Feature) Backend {
	for _, d := range pp.Decisions {
		if d.Feature == f {
			return d.Backend
		}
	}
	return BackendNone
}

// Plan is the planner's output for a node: data, sorted by port ID, so that it prints,
// diffs and serialises (JSON) stably.
type Plan struct {
	Host     string     `json:"host"`
	Datapath string     `json:"datapath"`
	Ports    []PortPlan `json:"ports"`
	// Routers are the routers' backends (openflow or nftables), sorted by router ID.
	Routers []RouterPlan `json:"routers,omitempty"`
}

// RouterPlan is where one router's routing and NAT run on this node, and why.
type RouterPlan struct {
	RouterID string  `json:"router_id"`
	Backend  Backend `json:"backend"`
	Reason   string  `json:"reason"`
}

// Port returns the plan of a port, nil when the plan has none.
func (p *Plan) Port(id string) *PortPlan {
	if p == nil {
		return nil
	}
	i := sort.Search(len(p.Ports), func(i int) bool { return p.Ports[i].PortID >= id })
	if i < len(p.Ports) && p.Ports[i].PortID == id {
		return &p.Ports[i]
	}
	return nil
}

// String prints the plan as a table: one line per port and feature.
func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "host %s, datapath %s\n", p.Host, p.Datapath)
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "PORT\tVNIC\tFEATURE\tBACKEND\tREASON")
	for _, pp := range p.Ports {
		for _, d := range pp.Decisions {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", pp.PortID, pp.VNICType, d.Feature, d.Backend, d.Reason)
		}
	}
	_ = w.Flush()
	for _, rp := range p.Routers {
		fmt.Fprintln(&b, rp) // plan_l3.go
	}
	return b.String()
}

// Diff lists what changed from p to q, one line per port and feature, sorted:
// "+ port feature backend (reason)" for new ports, "- ..." for ports gone, and
// "~ port feature old → new (reason)" for a changed backend or reason.
func (p *Plan) Diff(q *Plan) []string {
	var out []string
	old := map[string]*PortPlan{}
	for i := range p.Ports {
		old[p.Ports[i].PortID] = &p.Ports[i]
	}
	seen := map[string]bool{}
	for i := range q.Ports {
		np := &q.Ports[i]
		seen[np.PortID] = true
		op := old[np.PortID]
		for _, d := range np.Decisions {
			if op == nil {
				out = append(out, fmt.Sprintf("+ %s %s %s (%s)", np.PortID, d.Feature, d.Backend, d.Reason))
				continue
			}
			od := op.decision(d.Feature)
			if od == nil {
				out = append(out, fmt.Sprintf("+ %s %s %s (%s)", np.PortID, d.Feature, d.Backend, d.Reason))
			} else if *od != d {
				out = append(out, fmt.Sprintf("~ %s %s %s → %s (%s)", np.PortID, d.Feature, od.Backend, d.Backend, d.Reason))
			}
		}
	}
	for _, op := range p.Ports {
		if !seen[op.PortID] {
			for _, d := range op.Decisions {
				out = append(out, fmt.Sprintf("- %s %s %s", op.PortID, d.Feature, d.Backend))
			}
		}
	}
	sort.Strings(out)
	return out
}

func (pp *PortPlan) decision(f Feature) *Decision {
	for i := range pp.Decisions {
		if pp.Decisions[i].Feature == f {
			return &pp.Decisions[i]
		}
	}
	return nil
}

// PlanNode picks a backend per local port and feature from the node's capabilities
// (hwdetect) and layout, recording the reason. It is a pure function. node may be nil
// (nothing detected): then only what needs no hardware knowledge is planned, and ports
// that need OVS say that OVS was not probed.
func PlanNode(ir *IR, node *hwdetect.Node, layout NodeLayout) *Plan {
	pl := &Plan{Host: ir.Host, Datapath: layout.Datapath, Ports: make([]PortPlan, 0, len(ir.Ports))}
	l3 := newL3Index(ir) // plan_l3.go
	// Most reasons repeat from port to port (per network, or the same everywhere): keep
	// one copy of each (a 10,000-port plan holds 90,000 of them).
	reasons := map[string]string{}
	for _, id := range sortedKeys(ir.Ports) {
		pp, _ := planPort(ir, id, node, layout, l3)
		for i := range pp.Decisions {
			r := pp.Decisions[i].Reason
			if s, ok := reasons[r]; ok {
				pp.Decisions[i].Reason = s
			} else {
				reasons[r] = r
			}
		}
		pl.Ports = append(pl.Ports, pp)
	}
	pl.Routers = planRouters(ir, node, layout) // plan_l3.go
	return pl
}

// PlanPort plans one local port (false when ir has no such port): with Plan.With, the
// way to re-plan after a one-port change without planning the whole node.
func PlanPort(ir *IR, id string, node *hwdetect.Node, layout NodeLayout) (PortPlan, bool) {
	return planPort(ir, id, node, layout, nil)
}

func planPort(ir *IR, id string, node *hwdetect.Node, layout NodeLayout, l3 *l3Index) (PortPlan, bool) {
	p := ir.Ports[id]
	if p == nil {
		return PortPlan{}, false
	}
	pp := PortPlan{PortID: p.ID, NetworkID: p.NetworkID, VNICType: p.VNICType}
	l2 := planL2(p, ir.Segments[p.NetworkID], node, layout)
	ps := planPortSecurity(p, l2, layout)
	sg := planSecurityGroups(p, ir, l2, ps, node, layout)
	pp.Decisions = make([]Decision, 3, len(Features))
	pp.Decisions[0], pp.Decisions[1], pp.Decisions[2] = l2.Decision, ps, sg
	pp.Decisions = append(pp.Decisions, planL3(p, ir, l3, l2, node, layout)...) // plan_l3.go
	pp.Decisions = append(pp.Decisions, planQoS(p, ir, l2, node, layout)...)    // plan_qos.go
	return pp, true
}

// l2Choice is the L2 decision plus what the later features need to know.
type l2Choice struct {
	Decision
	nic *hwdetect.NIC // the NIC an SR-IOV port's VF belongs to
}

func none(f Feature, format string, a ...any) Decision {
	r := format
	if len(a) > 0 || strings.Contains(format, "%") {
		r = fmt.Sprintf(format, a...)
	}
	return Decision{Feature: f, Backend: BackendNone, Reason: r}
}

func planL2(p *Port, seg *Segment, node *hwdetect.Node, lay NodeLayout) l2Choice {
	f := FeatureL2
	if seg == nil {
		return l2Choice{Decision: none(f, "network %s is not in the IR", p.NetworkID)}
	}
	if !p.AdminStateUp {
		return l2Choice{Decision: none(f, "admin_state_up is false: the port is down and passes no traffic")}
	}
	if why := segmentUnsupported(seg, node, lay); why != "" {
		return l2Choice{Decision: none(f, "%s", why)}
	}
	var ovs *hwdetect.OVSInfo
	if node != nil {
		ovs = node.OVS
	}
	ovsProblem := func() string {
		switch {
		case node == nil:
			return "node capabilities not detected (run offlane detect)"
		case ovs == nil || !ovs.Reachable:
			why := "not probed"
			if ovs != nil && ovs.Reason != "" {
				why = ovs.Reason
			}
			return "Open vSwitch not reachable: " + why
		case len(ovs.DatapathTypes) > 0 && !slices.Contains(ovs.DatapathTypes, lay.Datapath):
			return fmt.Sprintf("OVS %s has no %s datapath (has %s)", ovs.Version, lay.Datapath, strings.Join(ovs.DatapathTypes, ", "))
		case lay.Datapath == "system" && node.KernelFeatures.OVSDatapath == hwdetect.FeatureAbsent:
			return "datapath system needs the openvswitch kernel module (CONFIG_OPENVSWITCH is not set): use datapath netdev"
		}
		return ""
	}
	switch p.VNICType {
	case controlplane.VNICNormal:
		if why := ovsProblem(); why != "" {
			return l2Choice{Decision: none(f, "vnic normal needs OVS: %s", why)}
		}
		return l2Choice{Decision: Decision{f, BackendOpenFlow, fmt.Sprintf("vnic normal: tap/veth on %s (%s datapath), %s", lay.IntegrationBridge, lay.Datapath, segmentHow(seg))}}
	case controlplane.VNICVhostUser, controlplane.VNICVirtioForwarder:
		if why := ovsProblem(); why != "" {
			return l2Choice{Decision: none(f, "vnic %s needs OVS-DPDK: %s", p.VNICType, why)}
		}
		if lay.Datapath != "netdev" {
			return l2Choice{Decision: none(f, "vnic %s needs datapath netdev (OVS-DPDK), the node runs %s", p.VNICType, lay.Datapath)}
		}
		if len(ovs.IfaceTypes) > 0 && !slices.Contains(ovs.IfaceTypes, "dpdkvhostuserclient") {
			return l2Choice{Decision: none(f, "vnic %s: OVS %s has no dpdkvhostuserclient interface type (not the DPDK build)", p.VNICType, ovs.Version)}
		}
		return l2Choice{Decision: Decision{f, BackendOpenFlow, fmt.Sprintf("vnic %s: dpdkvhostuserclient port on %s (netdev datapath), %s", p.VNICType, lay.IntegrationBridge, segmentHow(seg))}}
	case controlplane.VNICDirect, controlplane.VNICVDPA, controlplane.VNICDirectPhysical:
		nic, how := findNIC(p, seg, node, lay)
		if nic == nil {
			return l2Choice{Decision: none(f, "vnic %s: %s", p.VNICType, how)}
		}
		return planSRIOV(p, seg, nic, how, ovs, ovsProblem, lay)
	}
	return l2Choice{Decision: none(f, "vnic type %q is not supported (normal, vhost-user, virtio-forwarder, direct, vdpa, direct-physical)", p.VNICType)}
}

func planSRIOV(p *Port, seg *Segment, nic *hwdetect.NIC, how string, ovs *hwdetect.OVSInfo, ovsProblem func() string, lay NodeLayout) l2Choice {
	f := FeatureL2
	tunnel := IsTunnel(seg.Type)
	encap := encapCapability(nic, seg.Type)
	if p.VNICType == controlplane.VNICDirectPhysical {
		if tunnel || seg.Type == SegLocal {
			return l2Choice{Decision: none(f, "vnic direct-physical passes the whole PF %s to the guest: it can join flat and vlan networks only, not %s", nic.Name, seg.Type)}
		}
		return l2Choice{Decision{f, BackendVF, fmt.Sprintf("vnic direct-physical: PF %s (%s) passed through, the physical network reaches the guest directly", nic.Name, how)}, nic}
	}
	if nic.EswitchMode == hwdetect.EswitchSwitchdev {
		if ovs != nil && ovs.HWOffload && ovsProblem() == "" {
			r := fmt.Sprintf("vnic %s: VF representor on %s, OVS hw-offload=true pushes its datapath flows into NIC %s (%s)", p.VNICType, lay.IntegrationBridge, nic.Name, how)
			if tunnel && encap.Level != hwdetect.LevelHW {
				r += fmt.Sprintf("; %s encap not offloadable (%s): tunnel traffic stays in software", seg.Type, levelWhy(encap))
			}
			return l2Choice{Decision{f, BackendOpenFlow, r}, nic}
		}
		if tunnel && encap.Level == hwdetect.LevelNone {
			return l2Choice{Decision: none(f, "vnic %s on switchdev NIC %s: no %s encap in tc (%s) and OVS hw-offload is off", p.VNICType, nic.Name, seg.Type, levelWhy(encap))}
		}
		r := fmt.Sprintf("vnic %s: switchdev NIC %s (%s), tc flower on the VF representor", p.VNICType, nic.Name, how)
		if tunnel {
			r += fmt.Sprintf(", %s encap %s", seg.Type, encap.Level)
		} else if seg.Type == SegVLAN {
			r += fmt.Sprintf(", vlan push/pop %s", nic.Capabilities.VLAN.Level)
		}
		return l2Choice{Decision{f, BackendTC, r}, nic}
	}
	if p.VNICType == controlplane.VNICVDPA {
		return l2Choice{Decision: none(f, "vnic vdpa needs NIC %s in switchdev mode (eswitch %s): devlink dev eswitch set ... mode switchdev", nic.Name, nic.EswitchMode)}
	}
	if tunnel || seg.Type == SegLocal {
		return l2Choice{Decision: none(f, "vnic direct on NIC %s in %s eswitch mode: a legacy VF cannot join a %s network; switch the NIC to switchdev", nic.Name, nic.EswitchMode, seg.Type)}
	}
	r := fmt.Sprintf("vnic direct: legacy SR-IOV VF of %s (%s)", nic.Name, how)
	if seg.Type == SegVLAN {
		r += fmt.Sprintf(", VLAN %d set on the VF by the PF driver", seg.SegmentationID)
	}
	return l2Choice{Decision{f, BackendVF, r}, nic}
}

func levelWhy(c hwdetect.Capability) string {
	if c.Reason != "" {
		return string(c.Level) + ": " + c.Reason
	}
	return string(c.Level)
}

func encapCapability(nic *hwdetect.NIC, segType string) hwdetect.Capability {
	switch segType {
	case SegVXLAN:
		return nic.Capabilities.VXLANEncap
	case SegGeneve:
		return nic.Capabilities.GeneveEncap
	case SegGRE:
		// hwdetect has no GRE row: GRE is done in software by tc/OVS.
		return hwdetect.Capability{Level: hwdetect.LevelSW, Reason: "no GRE encap offload is tracked"}
	}
	return nic.Capabilities.VLAN
}

// findNIC finds the NIC an SR-IOV port uses: by binding:profile pci_slot (the VF), else
// the uplink of the segment's physnet.
func findNIC(p *Port, seg *Segment, node *hwdetect.Node, lay NodeLayout) (*hwdetect.NIC, string) {
	if node == nil {
		return nil, "node capabilities not detected (run offlane detect)"
	}
	if p.PCISlot != "" {
		for i := range node.NICs {
			n := &node.NICs[i]
			if n.PCIAddress == p.PCISlot && p.VNICType == controlplane.VNICDirectPhysical {
				return n, "pci_slot " + p.PCISlot
			}
			if n.SRIOV == nil {
				continue
			}
			for _, vf := range n.SRIOV.VFs {
				if vf.PCIAddress == p.PCISlot {
					return n, fmt.Sprintf("pci_slot %s is VF %d", p.PCISlot, vf.Index)
				}
			}
		}
		return nil, fmt.Sprintf("binding:profile pci_slot %s is not a VF (or PF) of any detected NIC", p.PCISlot)
	}
	if up := lay.PhysnetUplinks[seg.PhysicalNetwork]; up != "" {
		for i := range node.NICs {
			if node.NICs[i].Name == up {
				return &node.NICs[i], "uplink of physnet " + seg.PhysicalNetwork
			}
		}
	}
	return nil, "no binding:profile pci_slot and no detected uplink NIC for the network: set pci_slot"
}

// segmentUnsupported says why this node cannot carry the segment ("" when it can).
func segmentUnsupported(seg *Segment, node *hwdetect.Node, lay NodeLayout) string {
	switch {
	case IsTunnel(seg.Type):
		if lay.TunnelBridge == "" {
			return fmt.Sprintf("network %s is %s but the node has no tunnel bridge (node config tunnel:)", seg.NetworkID, seg.Type)
		}
		if !slices.Contains(lay.TunnelTypes, seg.Type) {
			return fmt.Sprintf("network %s is %s but the node has no %s tunnel port (node config tunnel.types)", seg.NetworkID, seg.Type, seg.Type)
		}
		if node != nil && node.OVS != nil && len(node.OVS.IfaceTypes) > 0 && !slices.Contains(node.OVS.IfaceTypes, seg.Type) {
			return fmt.Sprintf("network %s is %s but OVS %s has no %s interface type", seg.NetworkID, seg.Type, node.OVS.Version, seg.Type)
		}
		if node != nil && lay.Datapath == "system" {
			st := hwdetect.FeatureUnknown
			switch seg.Type {
			case SegVXLAN:
				st = node.KernelFeatures.VXLAN
			case SegGeneve:
				st = node.KernelFeatures.Geneve
			}
			if st == hwdetect.FeatureAbsent {
				return fmt.Sprintf("network %s is %s: the system datapath needs the kernel's %s module, which this kernel lacks (use datapath netdev)", seg.NetworkID, seg.Type, seg.Type)
			}
		}
	case seg.Type == SegFlat || seg.Type == SegVLAN:
		if lay.PhysnetBridges[seg.PhysicalNetwork] == "" {
			return fmt.Sprintf("network %s is on physnet %s, which has no bridge on this node (node config physnets)", seg.NetworkID, seg.PhysicalNetwork)
		}
	case seg.Type == SegLocal:
	default:
		return fmt.Sprintf("network %s has unknown type %q", seg.NetworkID, seg.Type)
	}
	return ""
}

func segmentHow(seg *Segment) string {
	switch seg.Type {
	case SegVLAN:
		return fmt.Sprintf("local VLAN %d ↔ VLAN %d on physnet %s", seg.LocalVLAN, seg.SegmentationID, seg.PhysicalNetwork)
	case SegFlat:
		return fmt.Sprintf("local VLAN %d ↔ untagged on physnet %s", seg.LocalVLAN, seg.PhysicalNetwork)
	case SegLocal:
		return fmt.Sprintf("local VLAN %d, this node only", seg.LocalVLAN)
	}
	return fmt.Sprintf("local VLAN %d ↔ %s VNI %d", seg.LocalVLAN, seg.Type, seg.SegmentationID)
}

// trusted reports whether a device owner is Neutron infrastructure (router, DHCP, ...),
// which Neutron's firewalls never filter.
func trusted(deviceOwner string) bool { return strings.HasPrefix(deviceOwner, "network:") }

func planPortSecurity(p *Port, l2 l2Choice, lay NodeLayout) Decision {
	f := FeaturePortSecurity
	switch {
	case l2.Backend == BackendNone:
		return none(f, "no L2 backend")
	case !p.PortSecurity:
		return none(f, "port_security_enabled is false: no anti-spoofing and no security groups (as Neutron)")
	case trusted(p.DeviceOwner):
		return none(f, "device owner %s is infrastructure: trusted, not filtered (as Neutron)", p.DeviceOwner)
	}
	switch l2.Backend {
	case BackendOpenFlow:
		return Decision{f, BackendOpenFlow, fmt.Sprintf("MAC/IP/ARP/ND anti-spoofing flows in %s table %d", lay.IntegrationBridge, TablePortSecurity)}
	case BackendTC:
		return Decision{f, BackendTC, "flower rules on the representor drop frames from other MACs and IPs"}
	case BackendVF:
		if p.VNICType == controlplane.VNICDirectPhysical {
			return none(f, "whole-PF passthrough: the host sees no traffic to filter")
		}
		return Decision{f, BackendVF, fmt.Sprintf("VF spoofchk on %s: MAC anti-spoofing only, the NIC does not check IP or ARP", l2.nic.Name)}
	}
	return none(f, "no port-security implementation for backend %s", l2.Backend)
}

func planSecurityGroups(p *Port, ir *IR, l2 l2Choice, ps Decision, node *hwdetect.Node, lay NodeLayout) Decision {
	f := FeatureSecurityGroups
	if ps.Backend == BackendNone {
		return none(f, "not filtered: %s", ps.Reason)
	}
	stateless := ""
	for _, id := range p.SecurityGroups {
		if g := ir.SecurityGroups[id]; g != nil && !g.Stateful {
			stateless = "; group " + id + " is stateless but enforced statefully (stateless groups are not implemented)"
			break
		}
	}
	switch ps.Backend {
	case BackendOpenFlow:
		seg := ir.Segments[p.NetworkID]
		r := fmt.Sprintf("stateful, OVS conntrack zone %d; rules as conjunctive matches in %s tables %d/%d", seg.LocalVLAN, lay.IntegrationBridge, TableEgressSG, TableIngressSG)
		if l2.nic != nil {
			r += fmt.Sprintf("; conntrack offload on %s: %s", l2.nic.Name, levelWhy(l2.nic.Capabilities.CTOffload))
		}
		return Decision{f, BackendOpenFlow, r + stateless}
	case BackendTC:
		ct := l2.nic.Capabilities.CTOffload
		if ct.Level == hwdetect.LevelHW {
			return Decision{f, BackendTC, fmt.Sprintf("stateful, tc flower ct offloaded by NIC %s", l2.nic.Name) + stateless}
		}
		if node != nil && node.KernelFeatures.ActCT != hwdetect.FeatureAbsent {
			return Decision{f, BackendTC, fmt.Sprintf("stateful, tc ct action in software (NIC %s ct offload %s)", l2.nic.Name, levelWhy(ct)) + stateless}
		}
		return none(f, "no conntrack for tc: NIC %s ct offload %s and the kernel lacks act_ct; enable OVS hw-offload to use OpenFlow", l2.nic.Name, ct.Level)
	case BackendVF:
		return none(f, "a legacy VF's traffic bypasses the host: security groups cannot be enforced (as Neutron's SR-IOV agent); use switchdev mode")
	}
	return none(f, "no security-group implementation for backend %s", ps.Backend)
}
