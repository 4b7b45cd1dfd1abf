package offload

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
)

// BackendOVSQoS is OVS's own per-interface QoS, configured in OVSDB rather than in
// flows: ingress policing (Interface ingress_policing_rate/burst), the egress-policer
// QoS type of OVS-DPDK and the linux-htb QoS type of kernel devices.
const BackendOVSQoS Backend = "ovs-qos"

// QoSMechanism is how one direction of a port's QoS is realised; it follows from the
// decision's backend, the port's kind and the direction (see PortQoSMechanism).
type QoSMechanism string

// QoS mechanisms.
const (
	QoSMechNone           QoSMechanism = ""
	QoSMechMeter          QoSMechanism = "meter"            // OpenFlow meter (kbps, burst)
	QoSMechIngressPolicer QoSMechanism = "ingress-policing" // Interface ingress_policing_rate/burst
	QoSMechEgressPolicer  QoSMechanism = "egress-policer"   // QoS type egress-policer (OVS-DPDK)
	QoSMechLinuxHTB       QoSMechanism = "linux-htb"        // QoS type linux-htb, queue 0
	QoSMechVF             QoSMechanism = "vf"               // VF max_tx_rate / min_tx_rate (package sriov)
	QoSMechTCPolice       QoSMechanism = "tc-police"        // tc police on the representor (package sriov)
)

// qosPortKind is what a port is as far as QoS goes.
type qosPortKind int

const (
	qosNoL2        qosPortKind = iota
	qosKernel                  // tap/veth on OVS (vnic normal)
	qosVhost                   // dpdkvhostuserclient (vnic vhost-user, virtio-forwarder)
	qosVFLegacy                // legacy SR-IOV VF
	qosVFTC                    // switchdev VF, tc on the representor
	qosVFOVS                   // switchdev VF, representor on OVS with hw-offload
	qosPassthrough             // direct-physical: the whole PF
)

func qosKindOf(p *Port, l2 Backend) qosPortKind {
	switch {
	case l2 == BackendNone:
		return qosNoL2
	case p.VNICType == controlplane.VNICDirectPhysical:
		return qosPassthrough
	case l2 == BackendVF:
		return qosVFLegacy
	case l2 == BackendTC:
		return qosVFTC
	case p.VNICType == controlplane.VNICDirect || p.VNICType == controlplane.VNICVDPA:
		return qosVFOVS
	case p.VNICType == controlplane.VNICVhostUser || p.VNICType == controlplane.VNICVirtioForwarder:
		return qosVhost
	}
	return qosKernel
}

// PortQoSMechanism is the mechanism behind a port's QoS decision for a bandwidth limit
// (dir egress = from the VM, ingress = to the VM) or a minimum (QoSMinimumBandwidth).
func PortQoSMechanism(p *Port, pp *PortPlan, ruleType, dir string) QoSMechanism {
	if p == nil || pp == nil {
		return QoSMechNone
	}
	f := FeatureQoSEgress
	switch {
	case ruleType == QoSMinimumBandwidth:
		f = FeatureQoSMinimum
	case dir == Ingress:
		f = FeatureQoSIngress
	}
	b := pp.Backend(f)
	kind := qosKindOf(p, pp.Backend(FeatureL2))
	switch b {
	case BackendOpenFlow:
		return QoSMechMeter
	case BackendVF:
		return QoSMechVF
	case BackendTC:
		return QoSMechTCPolice
	case BackendOVSQoS:
		switch {
		case ruleType == QoSMinimumBandwidth:
			if dir == Ingress && kind == qosKernel {
				return QoSMechLinuxHTB
			}
		case dir == Egress:
			return QoSMechIngressPolicer
		case kind == qosVhost:
			return QoSMechEgressPolicer
		default:
			return QoSMechLinuxHTB
		}
	}
	return QoSMechNone
}

// planQoS decides the port's four QoS features: the bandwidth limits from and to the
// VM, DSCP marking and the minimum bandwidth.
func planQoS(p *Port, ir *IR, l2 l2Choice, node *hwdetect.Node, lay NodeLayout) []Decision {
	feats := []Feature{FeatureQoSEgress, FeatureQoSIngress, FeatureDSCP, FeatureQoSMinimum}
	all := func(format string, a ...any) []Decision {
		out := make([]Decision, len(feats))
		why := none(feats[0], format, a...).Reason // formatted once: the same reason for all
		for i, f := range feats {
			out[i] = Decision{Feature: f, Backend: BackendNone, Reason: why}
		}
		return out
	}
	switch {
	case trusted(p.DeviceOwner):
		return all("device owner %s is infrastructure: QoS policies do not apply (as Neutron)", p.DeviceOwner)
	case p.QoSPolicyID == "":
		return all("no QoS policy on the port or its network")
	}
	q := ir.QoSPolicies[p.QoSPolicyID]
	if q == nil {
		return all("QoS policy %s is not in the IR", p.QoSPolicyID)
	}
	if l2.Backend == BackendNone {
		return all("no L2 backend")
	}
	kind := qosKindOf(p, l2.Backend)
	return []Decision{
		planLimit(FeatureQoSEgress, q, kind, l2, lay),
		planLimit(FeatureQoSIngress, q, kind, l2, lay),
		planDSCP(p, q, kind, ir, lay),
		planMinimum(q, kind, l2),
	}
}

func kbit(n int) string {
	switch {
	case n >= 1000000 && n%1000000 == 0:
		return strconv.Itoa(n/1000000) + " Gbit/s"
	case n >= 1000 && n%1000 == 0:
		return strconv.Itoa(n/1000) + " Mbit/s"
	}
	return strconv.Itoa(n) + " kbit/s"
}

// vfMbps is a rate as the VF's Mbit/s setting: rounded up, at least 1.
func vfMbps(kbps int) int { return max(1, (kbps+999)/1000) }

func planLimit(f Feature, q *QoSPolicy, kind qosPortKind, l2 l2Choice, lay NodeLayout) Decision {
	dir, who := Egress, "from the VM"
	if f == FeatureQoSIngress {
		dir, who = Ingress, "to the VM"
	}
	r := q.Rule(QoSBandwidthLimit, dir)
	if r == nil {
		return none(f, "policy %s has no %s bandwidth_limit rule", q.ID, dir)
	}
	lim := fmt.Sprintf("%s %s, burst %d kbit", kbit(r.MaxKbps), who, r.BurstKb())
	meter := Decision{f, BackendOpenFlow, ""}
	switch kind {
	case qosKernel:
		if dir == Ingress {
			return Decision{f, BackendOVSQoS, fmt.Sprintf("%s: linux-htb QoS on the tap/veth (max-rate %d bit/s): the kernel's htb shapes what OVS sends to the VM", lim, r.MaxKbps*1000)}
		}
		meter.Reason = fmt.Sprintf("%s: OpenFlow meter in %s table %d, run by the %s datapath; ingress policing unavailable: on a tap/veth it needs the kernel's tc cls_basic/act_police (absent from kernels without modules, not probed); using meter",
			lim, lay.IntegrationBridge, TableQoS, lay.Datapath)
		return meter
	case qosVhost:
		if dir == Egress {
			return Decision{f, BackendOVSQoS, fmt.Sprintf("%s: OVS-DPDK ingress policing on the dpdkvhostuserclient interface (ingress_policing_rate %d kbit/s; counts bytes without the Ethernet header)", lim, r.MaxKbps)}
		}
		return Decision{f, BackendOVSQoS, fmt.Sprintf("%s: egress-policer QoS on the dpdkvhostuserclient port (cir %d bytes/s, cbs %d bytes; counts bytes without the Ethernet header)", lim, r.MaxKbps*125, r.BurstKb()*125)}
	case qosPassthrough:
		return none(f, "whole-PF passthrough: the host cannot limit the guest's traffic")
	case qosVFLegacy, qosVFTC, qosVFOVS:
		nic := "the NIC"
		if l2.nic != nil {
			nic = l2.nic.Name
		}
		if dir == Egress {
			return Decision{f, BackendVF, fmt.Sprintf("%s: VF max_tx_rate %d Mbit/s on %s (set by the SR-IOV backend; the NIC's burst)", lim, vfMbps(r.MaxKbps), nic)}
		}
		switch kind {
		case qosVFLegacy:
			return none(f, "not enforced: a legacy VF's traffic to the VM is switched by NIC %s, which has no receive limit (as Neutron's SR-IOV agent)", nic)
		case qosVFTC:
			return Decision{f, BackendTC, fmt.Sprintf("%s: tc police on the VF representor's egress (set by the SR-IOV backend)", lim)}
		}
		meter.Reason = fmt.Sprintf("%s: OpenFlow meter in %s table %d before delivery to the representor (OVS hw-offload may offload it as tc police)", lim, lay.IntegrationBridge, TableDeliver)
		return meter
	}
	return none(f, "no bandwidth limit implementation for this port")
}

func planDSCP(p *Port, q *QoSPolicy, kind qosPortKind, ir *IR, lay NodeLayout) Decision {
	f := FeatureDSCP
	r := q.Rule(QoSDSCPMarking, "")
	if r == nil {
		return none(f, "policy %s has no dscp_marking rule", q.ID)
	}
	switch kind {
	case qosKernel, qosVhost, qosVFOVS:
		why := fmt.Sprintf("DSCP %d on IPv4/IPv6 from the VM: set_field:%d->ip_dscp in %s table %d", r.DSCPMark, r.DSCPMark, lay.IntegrationBridge, TableQoS)
		if seg := ir.Segments[p.NetworkID]; seg != nil && IsTunnel(seg.Type) {
			why += fmt.Sprintf("; the %s tunnel port copies it to the outer header (options:tos=inherit)", seg.Type)
		}
		return Decision{f, BackendOpenFlow, why}
	case qosVFLegacy:
		return none(f, "not enforced: a legacy VF's traffic bypasses the host, nothing can rewrite its DSCP (as Neutron's SR-IOV agent)")
	case qosVFTC:
		return none(f, "not enforced: DSCP rewriting by tc pedit on the representor is not implemented")
	}
	return none(f, "not enforced: whole-PF passthrough")
}

func planMinimum(q *QoSPolicy, kind qosPortKind, l2 l2Choice) Decision {
	f := FeatureQoSMinimum
	eg, in := q.Rule(QoSMinimumBandwidth, Egress), q.Rule(QoSMinimumBandwidth, Ingress)
	if eg == nil && in == nil {
		return none(f, "policy %s has no minimum_bandwidth rule", q.ID)
	}
	var done, not []string
	backend := BackendNone
	if in != nil {
		if kind == qosKernel {
			backend = BackendOVSQoS
			done = append(done, fmt.Sprintf("%s to the VM: linux-htb min-rate %d bit/s on the tap/veth's queue", kbit(in.MinKbps), in.MinKbps*1000))
		} else {
			not = append(not, fmt.Sprintf("%s to the VM not enforced: only a kernel tap/veth has an htb queue to carry a min-rate", kbit(in.MinKbps)))
		}
	}
	if eg != nil {
		switch kind {
		case qosVFLegacy, qosVFTC, qosVFOVS:
			backend = BackendVF
			nic := "the NIC"
			if l2.nic != nil {
				nic = l2.nic.Name
			}
			done = append(done, fmt.Sprintf("%s from the VM: VF min_tx_rate %d Mbit/s on %s (set by the SR-IOV backend)", kbit(eg.MinKbps), vfMbps(eg.MinKbps), nic))
		default:
			not = append(not, fmt.Sprintf("%s from the VM not enforced: a minimum for traffic from the VM needs queues on the uplink, which offlane does not configure (stored only)", kbit(eg.MinKbps)))
		}
	}
	if backend == BackendNone {
		return none(f, "%s", strings.Join(not, "; "))
	}
	return Decision{f, backend, strings.Join(append(done, not...), "; ")}
}
