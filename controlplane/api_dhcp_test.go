package controlplane_test

import (
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/offlane/offlane/controlplane"
)

// dhcpPorts lists a network's DHCP ports as the admin sees them (binding included).
func dhcpPorts(t *testing.T, e *testEnv, netID string) []portFull {
	t.Helper()
	return listPorts(t, e.client("tok-admin"), ports.ListOpts{NetworkID: netID, DeviceOwner: controlplane.OwnerDHCP})
}

// ipsOf is a port's fixed IPs as subnet → address.
func ipsOf(p portFull) map[string]string {
	out := map[string]string{}
	for _, f := range p.FixedIPs {
		out[f.SubnetID] = f.IPAddress
	}
	return out
}

// TestDHCPPortLifecycle: the server keeps one network:dhcp port per network with a DHCP
// subnet, in the subnet change's own transaction: created with the first DHCP subnet
// (the pool's first free address, port security off, unbound), an address per DHCP
// subnet as enable_dhcp flips and subnets come and go, gone with the last DHCP subnet
// and with the network; it cannot be deleted through the port API; a DHCP subnet
// without a free address for it is refused with nothing written.
func TestDHCPPortLifecycle(t *testing.T) {
	e := newEnv(t, controlplane.AuthToken)
	a := e.client("tok-a")
	ctx := t.Context()
	n := createNet(t, a, networks.CreateOpts{Name: "n"})
	if l := dhcpPorts(t, e, n.ID); len(l) != 0 {
		t.Fatalf("DHCP port before any subnet: %+v", l)
	}

	// First DHCP subnet: the port appears in the same revision as the subnet.
	rev := e.srv.Store().Revision()
	s1 := createSubnet(t, a, n.ID, "10.0.0.0/24")
	if r := e.srv.Store().Revision(); r != rev+1 {
		t.Fatalf("subnet create moved the revision by %d, want 1 (one transaction)", r-rev)
	}
	l := dhcpPorts(t, e, n.ID)
	if len(l) != 1 {
		t.Fatalf("DHCP ports after the first DHCP subnet: %+v", l)
	}
	dp := l[0]
	if dp.DeviceID != controlplane.DHCPDeviceID(n.ID) || dp.DeviceID != "dhcp-"+n.ID || dp.PortSecurityEnabled ||
		len(dp.SecurityGroups) != 0 || dp.HostID != "" || dp.ProjectID != "proj-a" || !dp.AdminStateUp {
		t.Fatalf("DHCP port attributes: %+v %+v %+v", dp.Port, dp.PortsBindingExt, dp.PortSecurityExt)
	}
	if got := ipsOf(dp); len(got) != 1 || got[s1.ID] != "10.0.0.2" {
		t.Fatalf("DHCP port addresses %v, want 10.0.0.2 on %s", got, s1.ID)
	}
	// The network's owner sees it; the next VM port gets the next address.
	if l := listPorts(t, a, ports.ListOpts{NetworkID: n.ID}); len(l) != 1 || l[0].ID != dp.ID {
		t.Fatalf("owner's port list: %+v", l)
	}
	vm := createPort(t, a, ports.CreateOpts{NetworkID: n.ID, DeviceOwner: "compute:nova"})
	if vm.FixedIPs[0].IPAddress != "10.0.0.3" {
		t.Fatalf("VM port address %+v", vm.FixedIPs)
	}

	// A subnet without DHCP leaves the port alone; enabling DHCP on it adds an address
	// (its pool's first free), in place.
	s2, err := subnets.Create(ctx, a, subnets.CreateOpts{NetworkID: n.ID, CIDR: "10.0.1.0/24", IPVersion: 4, EnableDHCP: ptr(false),
		AllocationPools: []subnets.AllocationPool{{Start: "10.0.1.100", End: "10.0.1.200"}}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if got := ipsOf(dhcpPorts(t, e, n.ID)[0]); len(got) != 1 {
		t.Fatalf("a non-DHCP subnet changed the DHCP port: %v", got)
	}
	if _, err := subnets.Update(ctx, a, s2.ID, subnets.UpdateOpts{EnableDHCP: ptr(true)}).Extract(); err != nil {
		t.Fatal(err)
	}
	l = dhcpPorts(t, e, n.ID)
	if len(l) != 1 || l[0].ID != dp.ID || len(l[0].FixedIPs) != 2 || l[0].FixedIPs[0] != (ports.IP{SubnetID: s1.ID, IPAddress: "10.0.0.2"}) ||
		l[0].FixedIPs[1] != (ports.IP{SubnetID: s2.ID, IPAddress: "10.0.1.100"}) || l[0].MACAddress != dp.MACAddress {
		t.Fatalf("DHCP port after enabling DHCP on %s: %+v", s2.ID, l)
	}
	// Disabling DHCP on the first subnet releases its address for anyone.
	if _, err := subnets.Update(ctx, a, s1.ID, subnets.UpdateOpts{EnableDHCP: ptr(false)}).Extract(); err != nil {
		t.Fatal(err)
	}
	if got := ipsOf(dhcpPorts(t, e, n.ID)[0]); len(got) != 1 || got[s2.ID] != "10.0.1.100" {
		t.Fatalf("DHCP port after disabling DHCP on %s: %v", s1.ID, got)
	}
	taker := createPort(t, a, ports.CreateOpts{NetworkID: n.ID, FixedIPs: []ports.IP{{IPAddress: "10.0.0.2"}}})

	// The port API cannot delete it.
	wantErr(t, ports.Delete(ctx, a, dp.ID).ExtractErr(), 409, "DHCPPortInUse")

	// Deleting the last DHCP subnet deletes the port (its address alone does not keep
	// the subnet in use).
	if err := subnets.Delete(ctx, a, s2.ID).ExtractErr(); err != nil {
		t.Fatalf("delete the last DHCP subnet: %v", err)
	}
	if l := dhcpPorts(t, e, n.ID); len(l) != 0 {
		t.Fatalf("DHCP port after its last subnet: %+v", l)
	}
	wantErr(t, ports.Get(ctx, a, dp.ID).Err, 404, "PortNotFound")

	// Re-enabling brings a new port with the first free address (.2 is taken now).
	if _, err := subnets.Update(ctx, a, s1.ID, subnets.UpdateOpts{EnableDHCP: ptr(true)}).Extract(); err != nil {
		t.Fatal(err)
	}
	l = dhcpPorts(t, e, n.ID)
	if len(l) != 1 || l[0].ID == dp.ID || ipsOf(l[0])[s1.ID] != "10.0.0.4" {
		t.Fatalf("DHCP port re-created: %+v", l)
	}
	dp = l[0]

	// The network is in use by the VM ports, not by its DHCP port; a refused delete
	// keeps everything.
	wantErr(t, networks.Delete(ctx, a, n.ID).ExtractErr(), 409, "NetworkInUse")
	if l := dhcpPorts(t, e, n.ID); len(l) != 1 || l[0].ID != dp.ID {
		t.Fatalf("DHCP port after a refused network delete: %+v", l)
	}
	for _, id := range []string{vm.ID, taker.ID} {
		if err := ports.Delete(ctx, a, id).ExtractErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := networks.Delete(ctx, a, n.ID).ExtractErr(); err != nil {
		t.Fatalf("delete a network with only its DHCP port: %v", err)
	}
	wantErr(t, ports.Get(ctx, a, dp.ID).Err, 404, "PortNotFound")
	if l := listPorts(t, e.client("tok-admin"), nil); len(l) != 0 {
		t.Fatalf("ports left after the network: %+v", l)
	}
}

// TestDHCPPortNoAddress: enabling DHCP on a subnet whose pool is full is refused (409
// IpAddressGenerationFailure naming the fix) and writes nothing; so is a new DHCP
// subnet with an empty pool.
func TestDHCPPortNoAddress(t *testing.T) {
	e := newEnv(t, controlplane.AuthToken)
	a := e.client("tok-a")
	ctx := t.Context()
	n := createNet(t, a, networks.CreateOpts{Name: "tiny"})
	sn, err := subnets.Create(ctx, a, subnets.CreateOpts{NetworkID: n.ID, CIDR: "10.9.0.0/29", IPVersion: 4, EnableDHCP: ptr(false),
		AllocationPools: []subnets.AllocationPool{{Start: "10.9.0.2", End: "10.9.0.2"}}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	createPort(t, a, ports.CreateOpts{NetworkID: n.ID})
	rev := e.srv.Store().Revision()
	_, err = subnets.Update(ctx, a, sn.ID, subnets.UpdateOpts{EnableDHCP: ptr(true)}).Extract()
	wantErr(t, err, 409, "IpAddressGenerationFailure")
	if r := e.srv.Store().Revision(); r != rev {
		t.Fatalf("refused update wrote revision %d (was %d)", r, rev)
	}
	got, err := subnets.Get(ctx, a, sn.ID).Extract()
	if err != nil || got.EnableDHCP || got.RevisionNumber != sn.RevisionNumber {
		t.Fatalf("subnet after the refused update: %v %+v", err, got)
	}
	if l := dhcpPorts(t, e, n.ID); len(l) != 0 {
		t.Fatalf("DHCP port from a refused update: %+v", l)
	}

	// /32: no gateway, one address; a DHCP subnet there takes it for the DHCP port.
	n2 := createNet(t, a, networks.CreateOpts{Name: "host"})
	s32 := createSubnet(t, a, n2.ID, "10.9.1.7/32")
	if l := dhcpPorts(t, e, n2.ID); len(l) != 1 || ipsOf(l[0])[s32.ID] != "10.9.1.7" {
		t.Fatalf("DHCP port on a /32: %+v", l)
	}
	// A DHCP subnet with no pool at all: refused, nothing written.
	n3 := createNet(t, a, networks.CreateOpts{Name: "nopool"})
	rev = e.srv.Store().Revision()
	st, body := e.raw("POST", "/v2.0/subnets", "tok-a", `{"subnet": {"network_id": "`+n3.ID+`", "cidr": "10.9.2.0/24", "ip_version": 4, "allocation_pools": []}}`)
	if st != 409 || body["NeutronError"].(map[string]any)["type"] != "IpAddressGenerationFailure" ||
		!strings.Contains(neutronMessage(body), "enable_dhcp=false") {
		t.Fatalf("DHCP subnet without a pool: %d %v", st, body)
	}
	if r := e.srv.Store().Revision(); r != rev {
		t.Fatalf("refused subnet create wrote revision %d (was %d)", r, rev)
	}
	if l := listNets(t, a, networks.ListOpts{ID: n3.ID}); len(l) != 1 || len(l[0].Subnets) != 0 {
		t.Fatalf("network after the refused subnet: %+v", l)
	}
}
