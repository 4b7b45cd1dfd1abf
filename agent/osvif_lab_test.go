package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/offlane/offlane/agent"
	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/test/lab"
)

// TestLabAgentOSVIFPlug: an interface a hypervisor integration adds to the integration
// bridge itself, as os-vif does (`ovs-vsctl add-port br-int <dev> -- set Interface <dev>
// external_ids:iface-id=<port id>`, no offlane tag), is bound to that port: its flows go
// in, the port goes ACTIVE and passes traffic; removing the interface takes the flows out
// and the port DOWN.
func TestLabAgentOSVIFPlug(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	net, err := networks.Create(ctx, e.nc, networks.CreateOpts{Name: "net1"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := subnets.Create(ctx, e.nc, subnets.CreateOpts{NetworkID: net.ID, CIDR: "10.3.0.0/24", IPVersion: gophercloud.IPv4}).Extract(); err != nil {
		t.Fatal(err)
	}
	var vmPorts []*ports.Port
	for _, name := range []string{"vm1", "vm2"} {
		var p ports.Port
		if err := ports.Create(ctx, e.nc, portsbinding.CreateOptsExt{CreateOptsBuilder: ports.CreateOpts{NetworkID: net.ID, Name: name},
			HostID: host}).ExtractInto(&p); err != nil {
			t.Fatal(err)
		}
		vmPorts = append(vmPorts, &p)
	}
	e.start()
	eventually(t, "the agent laid the node out", 20*time.Second, func() bool { ok, _ := e.ag.Ready(); return ok })
	vm1 := e.plug(vmPorts[0], "vm1") // offlane's own plug (offlane vif plug's path)
	p2 := vmPorts[1]
	vm2 := e.o.AddVM(t, "vm2", lab.VMOptions{IP: p2.FixedIPs[0].IPAddress + "/24", MAC: p2.MACAddress})
	e.o.Vsctl(t, "add-port", "br-int", vm2.HostIf, "--", "set", "Interface", vm2.HostIf, "external_ids:iface-id="+p2.ID)

	e.waitStatus(vmPorts[0].ID, controlplane.PortStatusActive)
	b := e.waitStatus(p2.ID, controlplane.PortStatusActive)
	if b.VIFType != agent.VIFTypeOVS || b.VIFDetails["bridge_name"] != "br-int" {
		t.Fatalf("os-vif plugged port: vif_type %q details %v", b.VIFType, b.VIFDetails)
	}
	if e.flowsOf(offload.KindPort, p2.ID) == 0 {
		t.Fatal("the os-vif plugged port has no flows")
	}
	pingWorks(t, vm1, p2.FixedIPs[0].IPAddress)

	e.o.Vsctl(t, "del-port", "br-int", vm2.HostIf)
	e.waitStatus(p2.ID, controlplane.PortStatusDown)
	eventually(t, "the unplugged port's flows removed", 20*time.Second, func() bool { return e.flowsOf(offload.KindPort, p2.ID) == 0 })
	pingFails(t, vm1, p2.FixedIPs[0].IPAddress)
}
