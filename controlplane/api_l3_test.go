package controlplane_test

import (
	"net/http"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/external"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/offlane/offlane/controlplane"
)

func TestRoutersAndFloatingIPs(t *testing.T) {
	e := newEnv(t, controlplane.AuthToken)
	admin, a, b := e.client("tok-admin"), e.client("tok-a"), e.client("tok-b")
	ctx := t.Context()

	ext := createNet(t, admin, external.CreateOptsExt{CreateOptsBuilder: networks.CreateOpts{Name: "public"}, External: ptr(true)})
	extSub, err := subnets.Create(ctx, admin, subnets.CreateOpts{NetworkID: ext.ID, CIDR: "203.0.113.0/24", IPVersion: 4, EnableDHCP: ptr(false),
		AllocationPools: []subnets.AllocationPool{{Start: "203.0.113.10", End: "203.0.113.20"}}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	// The external network is visible to every project.
	if got := listNets(t, b, networks.ListOpts{Name: "public"}); len(got) != 1 || !got[0].External {
		t.Fatalf("external network seen by another project: %+v", got)
	}
	n := createNet(t, a, networks.CreateOpts{Name: "private"})
	sn := createSubnet(t, a, n.ID, "10.0.0.0/24")
	sn2 := createSubnet(t, a, createNet(t, a, networks.CreateOpts{Name: "private2"}).ID, "10.0.1.0/24")

	// Router with a gateway: an address from the external pool, SNAT on.
	r, err := routers.Create(ctx, a, routers.CreateOpts{Name: "r1", GatewayInfo: &routers.GatewayInfo{NetworkID: ext.ID}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	gi := r.GatewayInfo
	if gi.NetworkID != ext.ID || gi.EnableSNAT == nil || !*gi.EnableSNAT || len(gi.ExternalFixedIPs) != 1 ||
		gi.ExternalFixedIPs[0] != (routers.ExternalFixedIP{SubnetID: extSub.ID, IPAddress: "203.0.113.10"}) || r.Status != "ACTIVE" {
		t.Fatalf("router gateway: %+v", r)
	}
	// SNAT and fixed gateway addresses are admin-only.
	_, err = routers.Create(ctx, a, routers.CreateOpts{Name: "r2", GatewayInfo: &routers.GatewayInfo{NetworkID: ext.ID, EnableSNAT: ptr(false)}}).Extract()
	wantErr(t, err, 403, "PolicyNotAuthorized")
	_, err = routers.Create(ctx, a, routers.CreateOpts{Name: "r2", GatewayInfo: &routers.GatewayInfo{NetworkID: n.ID}}).Extract()
	wantErr(t, err, 400, "HTTPBadRequest")

	// Interfaces by subnet (gets the gateway address) and by port.
	ifc, err := routers.AddInterface(ctx, a, r.ID, routers.AddInterfaceOpts{SubnetID: sn.ID}).Extract()
	if err != nil || ifc.SubnetID != sn.ID || ifc.ID != r.ID || ifc.TenantID != "proj-a" {
		t.Fatalf("add interface by subnet: %v %+v", err, ifc)
	}
	rp, err := ports.Get(ctx, a, ifc.PortID).Extract()
	if err != nil || rp.DeviceOwner != "network:router_interface" || rp.DeviceID != r.ID || rp.FixedIPs[0].IPAddress != "10.0.0.1" {
		t.Fatalf("router interface port: %v %+v", err, rp)
	}
	_, err = routers.AddInterface(ctx, a, r.ID, routers.AddInterfaceOpts{SubnetID: sn.ID}).Extract()
	wantErr(t, err, 400, "HTTPBadRequest")
	up := createPort(t, a, ports.CreateOpts{NetworkID: sn2.NetworkID, FixedIPs: []ports.IP{{SubnetID: sn2.ID, IPAddress: "10.0.1.254"}}})
	ifc2, err := routers.AddInterface(ctx, a, r.ID, routers.AddInterfaceOpts{PortID: up.ID}).Extract()
	if err != nil || ifc2.PortID != up.ID || ifc2.SubnetID != sn2.ID {
		t.Fatalf("add interface by port: %v %+v", err, ifc2)
	}
	_, err = routers.AddInterface(ctx, a, r.ID, routers.AddInterfaceOpts{PortID: up.ID}).Extract()
	wantErr(t, err, 409, "PortInUse")

	// Extra routes: the nexthop must be on a connected subnet.
	rr, err := routers.Update(ctx, a, r.ID, routers.UpdateOpts{Routes: &[]routers.Route{{DestinationCIDR: "172.16.0.0/16", NextHop: "10.0.0.5"}}}).Extract()
	if err != nil || len(rr.Routes) != 1 || rr.Routes[0].NextHop != "10.0.0.5" {
		t.Fatalf("routes: %v %+v", err, rr)
	}
	_, err = routers.Update(ctx, a, r.ID, routers.UpdateOpts{Routes: &[]routers.Route{{DestinationCIDR: "172.17.0.0/16", NextHop: "192.0.2.1"}}}).Extract()
	wantErr(t, err, 400, "InvalidRoutes")

	// Router ports cannot be deleted through the port API; their subnet is in use.
	wantErr(t, ports.Delete(ctx, a, ifc.PortID).ExtractErr(), 409, "L3PortInUse")
	wantErr(t, subnets.Delete(ctx, a, sn.ID).ExtractErr(), 409, "SubnetInUse")
	wantErr(t, routers.Delete(ctx, a, r.ID).ExtractErr(), 409, "RouterInUse")

	// Floating IPs: allocate, associate (router derived), refuse a second on the same
	// fixed IP, disassociate.
	vm := createPort(t, a, ports.CreateOpts{NetworkID: n.ID, Name: "vm"})
	fip, err := floatingips.Create(ctx, a, floatingips.CreateOpts{FloatingNetworkID: ext.ID, PortID: vm.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if fip.FloatingIP != "203.0.113.11" || fip.PortID != vm.ID || fip.FixedIP != vm.FixedIPs[0].IPAddress || fip.RouterID != r.ID || fip.ProjectID != "proj-a" {
		t.Fatalf("floating ip: %+v", fip)
	}
	_, err = floatingips.Create(ctx, a, floatingips.CreateOpts{FloatingNetworkID: ext.ID, PortID: vm.ID}).Extract()
	wantErr(t, err, 409, "FloatingIPPortAlreadyAssociated")
	_, err = floatingips.Create(ctx, a, floatingips.CreateOpts{FloatingNetworkID: n.ID}).Extract()
	wantErr(t, err, 400, "HTTPBadRequest")
	_, err = floatingips.Create(ctx, a, floatingips.CreateOpts{FloatingNetworkID: ext.ID, FloatingIP: "203.0.113.15"}).Extract()
	wantErr(t, err, 403, "PolicyNotAuthorized")
	// A port on a network no router connects to the external network.
	lonely := createNet(t, a, networks.CreateOpts{Name: "lonely"})
	createSubnet(t, a, lonely.ID, "10.5.0.0/24")
	lp := createPort(t, a, ports.CreateOpts{NetworkID: lonely.ID})
	fip2, err := floatingips.Create(ctx, a, floatingips.CreateOpts{FloatingNetworkID: ext.ID}).Extract()
	if err != nil || fip2.PortID != "" || fip2.RouterID != "" {
		t.Fatalf("unassociated floating ip: %v %+v", err, fip2)
	}
	_, err = floatingips.Update(ctx, a, fip2.ID, floatingips.UpdateOpts{PortID: &lp.ID}).Extract()
	wantErr(t, err, 404, "ExternalGatewayForFloatingIPNotFound")
	// Filters.
	pages, err := floatingips.List(a, floatingips.ListOpts{PortID: vm.ID}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := floatingips.ExtractFloatingIPs(pages); len(l) != 1 || l[0].ID != fip.ID {
		t.Fatalf("filter floating ips by port: %+v", l)
	}
	// The interface and the gateway are needed by the floating IP.
	_, err = routers.RemoveInterface(ctx, a, r.ID, routers.RemoveInterfaceOpts{SubnetID: sn.ID}).Extract()
	wantErr(t, err, 409, "RouterInterfaceInUseByFloatingIP")
	_, err = routers.Update(ctx, a, r.ID, routers.UpdateOpts{GatewayInfo: &routers.GatewayInfo{}}).Extract()
	wantErr(t, err, 409, "RouterExternalGatewayInUseByFloatingIp")
	wantErr(t, networks.Delete(ctx, admin, ext.ID).ExtractErr(), 409, "NetworkInUse")
	// Disassociate by PUT port_id null.
	d, err := floatingips.Update(ctx, a, fip.ID, floatingips.UpdateOpts{PortID: new(string)}).Extract()
	if err != nil || d.PortID != "" || d.FixedIP != "" || d.RouterID != "" {
		t.Fatalf("disassociate: %v %+v", err, d)
	}
	// Re-associate, then deleting the port disassociates.
	if _, err := floatingips.Update(ctx, a, fip.ID, floatingips.UpdateOpts{PortID: &vm.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	if err := ports.Delete(ctx, a, vm.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if g, err := floatingips.Get(ctx, a, fip.ID).Extract(); err != nil || g.PortID != "" {
		t.Fatalf("floating ip after port delete: %v %+v", err, g)
	}
	// Routes need the interface they go through.
	_, err = routers.RemoveInterface(ctx, a, r.ID, routers.RemoveInterfaceOpts{SubnetID: sn.ID}).Extract()
	wantErr(t, err, 409, "RouterInterfaceInUseByRoute")
	if _, err := routers.Update(ctx, a, r.ID, routers.UpdateOpts{Routes: &[]routers.Route{}}).Extract(); err != nil {
		t.Fatal(err)
	}
	rm, err := routers.RemoveInterface(ctx, a, r.ID, routers.RemoveInterfaceOpts{SubnetID: sn.ID}).Extract()
	if err != nil || rm.PortID != ifc.PortID {
		t.Fatalf("remove interface: %v %+v", err, rm)
	}
	wantErr(t, ports.Get(ctx, a, ifc.PortID).Err, 404, "PortNotFound")
	_, err = routers.RemoveInterface(ctx, a, r.ID, routers.RemoveInterfaceOpts{SubnetID: sn.ID}).Extract()
	wantErr(t, err, 404, "RouterInterfaceNotFoundForSubnet")
	if _, err := routers.RemoveInterface(ctx, a, r.ID, routers.RemoveInterfaceOpts{PortID: up.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	// Floating IPs go, then the gateway can be cleared, then the router deleted.
	for _, id := range []string{fip.ID, fip2.ID} {
		if err := floatingips.Delete(ctx, a, id).ExtractErr(); err != nil {
			t.Fatal(err)
		}
	}
	if g, err := routers.Update(ctx, a, r.ID, routers.UpdateOpts{GatewayInfo: &routers.GatewayInfo{}}).Extract(); err != nil || g.GatewayInfo.NetworkID != "" {
		t.Fatalf("clear gateway: %v %+v", err, g)
	}
	if err := routers.Delete(ctx, a, r.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, routers.Get(ctx, a, r.ID).Err, 404, "RouterNotFound")
	// Everything on the external network was released.
	if l := listPorts(t, admin, ports.ListOpts{NetworkID: ext.ID}); len(l) != 0 {
		t.Fatalf("ports left on the external network: %+v", l)
	}
	if err := networks.Delete(ctx, admin, ext.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	// An admin may pick the gateway address.
	ext2 := createNet(t, admin, external.CreateOptsExt{CreateOptsBuilder: networks.CreateOpts{Name: "public2"}, External: ptr(true)})
	es2 := createSubnet(t, admin, ext2.ID, "198.51.100.0/24")
	r2, err := routers.Create(ctx, admin, routers.CreateOpts{Name: "r2", ProjectID: "proj-a", GatewayInfo: &routers.GatewayInfo{
		NetworkID: ext2.ID, EnableSNAT: ptr(false), ExternalFixedIPs: []routers.ExternalFixedIP{{SubnetID: es2.ID, IPAddress: "198.51.100.77"}}}}).Extract()
	if err != nil || *r2.GatewayInfo.EnableSNAT || r2.GatewayInfo.ExternalFixedIPs[0].IPAddress != "198.51.100.77" {
		t.Fatalf("admin gateway: %v %+v", err, r2)
	}
	st, body := e.raw(http.MethodPut, "/v2.0/routers/"+r2.ID+"/add_router_interface", "tok-a", `{"subnet_id": "x", "port_id": "y"}`)
	if st != 400 {
		t.Fatalf("both subnet and port: %d %v", st, body)
	}
}
