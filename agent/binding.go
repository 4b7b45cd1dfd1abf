package agent

import (
	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/kernel"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
)

// Port binding, as Neutron's mechanism drivers report it: binding:vif_type and
// binding:vif_details tell the hypervisor how to plug the VM; status says whether the
// port forwards.

// VIF types (Neutron's portbindings constants).
const (
	VIFTypeOVS           = "ovs"
	VIFTypeVhostUser     = "vhostuser"
	VIFTypeHwVeb         = "hw_veb"
	VIFTypeBindingFailed = "binding_failed"
)

// vhostUserName is the OVS port (and socket file) name of a vhost-user tenant port:
// "vhu" + 11 characters of the port ID (kernel.IfName), as Neutron's OVS agent names them.
func vhostUserName(portID string) string { return kernel.IfName("vhu", portID) }

// portView is what the agent knows about one bound port when it writes its binding.
type portView struct {
	port   *controlplane.Port
	plan   *offload.PortPlan // nil when the port is not in the IR (build skipped it)
	status *ovsdpdk.PortStatus
	// flowsIn is true when the port's flows are installed (the last apply succeeded and
	// the compiler bound the port: it has an OpenFlow port).
	flowsIn bool
}

// binding computes a bound port's binding details and status.
func (a *Agent) binding(v portView) controlplane.PortBinding {
	b := controlplane.PortBinding{VIFDetails: map[string]any{}}
	if v.plan != nil && v.port.AdminStateUp {
		// (an admin-down port is planned to no backend — it passes nothing — but it is
		// bound as usual and DOWN, as in Neutron; not a binding failure)
		if l2 := v.plan.Backend(offload.FeatureL2); l2 == offload.BackendNone {
			reason := ""
			for _, d := range v.plan.Decisions {
				if d.Feature == offload.FeatureL2 {
					reason = d.Reason
				}
			}
			b.Status, b.VIFType = controlplane.PortStatusError, VIFTypeBindingFailed
			b.VIFDetails["reason"] = reason
			return b
		}
	}
	vnic := v.port.VNICType
	switch vnic {
	case controlplane.VNICVhostUser:
		b.VIFType = VIFTypeVhostUser
		path := ""
		if v.status != nil {
			path = v.status.SocketPath
		}
		b.VIFDetails["vhostuser_socket"] = path
		// OVS is the vhost-user client (dpdkvhostuserclient): the VM side is the server.
		b.VIFDetails["vhostuser_mode"] = "server"
		b.VIFDetails["vhostuser_ovs_plug"] = true
	case controlplane.VNICDirect, controlplane.VNICDirectPhysical:
		b.VIFType = VIFTypeHwVeb
		if v.plan != nil && v.plan.Backend(offload.FeatureL2) != offload.BackendVF {
			// switchdev: the VF's representor is an OVS port
			b.VIFType = VIFTypeOVS
		}
	default:
		b.VIFType = VIFTypeOVS
		b.VIFDetails["ovs_hybrid_plug"] = false
	}
	b.VIFDetails["port_filter"] = true
	b.VIFDetails["bridge_name"] = a.layout.IntegrationBridge
	b.VIFDetails["datapath_type"] = a.layout.Datapath
	switch {
	case v.status != nil && v.status.Error != "":
		b.Status = controlplane.PortStatusError
		b.VIFDetails["reason"] = v.status.Error
	case v.port.AdminStateUp && v.status != nil && v.status.OFPort > 0 && v.status.LinkState == "up" && v.flowsIn:
		b.Status = controlplane.PortStatusActive
	default:
		b.Status = controlplane.PortStatusDown
	}
	if a.d.Direct != nil && isDirect(vnic) {
		a.d.Direct.amend(v, &b) // agent/sriov.go
	}
	return b
}
