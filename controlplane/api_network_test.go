package controlplane_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/external"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsecurity"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/offlane/offlane/controlplane"
)

// netFull is a network with the extensions the server implements.
type netFull struct {
	networks.Network
	provider.NetworkProviderExt
	external.NetworkExternalExt
	portsecurity.PortSecurityExt
	MTUExt
	QoSExt
}

type MTUExt struct {
	MTU int `json:"mtu"`
}

type QoSExt struct {
	QoSPolicyID string `json:"qos_policy_id"`
}

type portFull struct {
	ports.Port
	portsbinding.PortsBindingExt
	portsecurity.PortSecurityExt
	QoSExt
}

func createNet(t *testing.T, c *gophercloud.ServiceClient, opts networks.CreateOptsBuilder) netFull {
	t.Helper()
	var n netFull
	if err := networks.Create(t.Context(), c, opts).ExtractInto(&n); err != nil {
		t.Fatalf("create network: %v", err)
	}
	return n
}

func createSubnet(t *testing.T, c *gophercloud.ServiceClient, netID, cidr string) *subnets.Subnet {
	t.Helper()
	v := gophercloud.IPv4
	if strings.Contains(cidr, ":") {
		v = gophercloud.IPv6
	}
	s, err := subnets.Create(t.Context(), c, subnets.CreateOpts{NetworkID: netID, CIDR: cidr, IPVersion: v}).Extract()
	if err != nil {
		t.Fatalf("create subnet %s: %v", cidr, err)
	}
	return s
}

func createPort(t *testing.T, c *gophercloud.ServiceClient, opts ports.CreateOptsBuilder) portFull {
	t.Helper()
	var p portFull
	if err := ports.Create(t.Context(), c, opts).ExtractInto(&p); err != nil {
		t.Fatalf("create port: %v", err)
	}
	return p
}

func listNets(t *testing.T, c *gophercloud.ServiceClient, opts networks.ListOptsBuilder) []netFull {
	t.Helper()
	pages, err := networks.List(c, opts).AllPages(t.Context())
	if err != nil {
		t.Fatalf("list networks: %v", err)
	}
	var out []netFull
	if err := networks.ExtractNetworksInto(pages, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func listPorts(t *testing.T, c *gophercloud.ServiceClient, opts ports.ListOptsBuilder) []portFull {
	t.Helper()
	pages, err := ports.List(c, opts).AllPages(t.Context())
	if err != nil {
		t.Fatalf("list ports: %v", err)
	}
	var out []portFull
	if err := ports.ExtractPortsInto(pages, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func TestNetworkCRUD(t *testing.T) {
	e := newEnv(t, controlplane.AuthToken)
	admin, a := e.client("tok-admin"), e.client("tok-a")
	ctx := t.Context()

	// Tenant network: VXLAN from the default range, MTU 1450 on the 1500 underlay.
	n := createNet(t, a, networks.CreateOpts{Name: "net-a", Description: "first"})
	if n.ProjectID != "proj-a" || n.TenantID != "proj-a" || n.Status != "ACTIVE" || !n.AdminStateUp || n.MTU != 1450 || !n.PortSecurityEnabled || n.Shared || n.External {
		t.Fatalf("created network: %+v", n)
	}
	if n.NetworkType != "" {
		t.Fatalf("member sees provider attributes: %+v", n.NetworkProviderExt)
	}
	var an netFull
	if err := networks.Get(ctx, admin, n.ID).ExtractInto(&an); err != nil {
		t.Fatal(err)
	}
	if an.NetworkType != "vxlan" || an.SegmentationID != "1" || an.PhysicalNetwork != "" {
		t.Fatalf("admin view of the tenant network: %+v", an.NetworkProviderExt)
	}
	n2 := createNet(t, a, networks.CreateOpts{Name: "net-a2"})
	if err := networks.Get(ctx, admin, n2.ID).ExtractInto(&an); err != nil || an.SegmentationID != "2" {
		t.Fatalf("second tenant network VNI: %v %+v", err, an.NetworkProviderExt)
	}

	// Update, If-Match revisions.
	up, err := networks.Update(ctx, a, n.ID, networks.UpdateOpts{Name: ptr("renamed"), AdminStateUp: ptr(false)}).Extract()
	if err != nil || up.Name != "renamed" || up.AdminStateUp || up.RevisionNumber != 2 {
		t.Fatalf("update: %v %+v", err, up)
	}
	_, err = networks.Update(ctx, a, n.ID, networks.UpdateOpts{Name: ptr("x"), RevisionNumber: ptr(1)}).Extract()
	wantErr(t, err, http.StatusPreconditionFailed, "RevisionNumberConstraintFailed")
	if _, err = networks.Update(ctx, a, n.ID, networks.UpdateOpts{Name: ptr("y"), RevisionNumber: ptr(2)}).Extract(); err != nil {
		t.Fatalf("update with matching revision: %v", err)
	}

	// List with filters.
	got := listNets(t, a, networks.ListOpts{Name: "y"})
	if len(got) != 1 || got[0].ID != n.ID {
		t.Fatalf("filter by name: %+v", got)
	}
	if got := listNets(t, a, networks.ListOpts{AdminStateUp: ptr(true)}); len(got) != 1 || got[0].ID != n2.ID {
		t.Fatalf("filter by admin_state_up: %+v", got)
	}
	if got := listNets(t, a, nil); len(got) != 2 {
		t.Fatalf("list all: %d networks", len(got))
	}
	// Filter by a provider attribute (admin).
	if got := listNets(t, admin, networks.ListOpts{}); len(got) != 2 {
		t.Fatalf("admin list: %d", len(got))
	}
	st, body := e.raw("GET", "/v2.0/networks?provider:segmentation_id=2", "tok-admin", "")
	if st != 200 || len(body["networks"].([]any)) != 1 {
		t.Fatalf("filter by segmentation id: %d %v", st, body)
	}

	// Delete; then 404.
	if err := networks.Delete(ctx, a, n2.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, networks.Get(ctx, a, n2.ID).Err, 404, "NetworkNotFound")
	wantErr(t, networks.Delete(ctx, a, n2.ID).ExtractErr(), 404, "NetworkNotFound")
	// The VNI is free again: the next tenant network gets 2.
	n3 := createNet(t, a, networks.CreateOpts{Name: "net-a3"})
	if err := networks.Get(ctx, admin, n3.ID).ExtractInto(&an); err != nil || an.SegmentationID != "2" {
		t.Fatalf("VNI not reused: %v %+v", err, an.NetworkProviderExt)
	}
}

func TestProviderNetworks(t *testing.T) {
	e := newEnv(t, controlplane.AuthToken)
	admin, a := e.client("tok-admin"), e.client("tok-a")
	seg := func(typ, phys string, id int) networks.CreateOptsBuilder {
		return provider.CreateOptsExt{CreateOptsBuilder: networks.CreateOpts{Name: typ}, Segments: []provider.Segment{{NetworkType: typ, PhysicalNetwork: phys, SegmentationID: id}}}
	}
	vlan := createNet(t, admin, seg("vlan", "physnet1", 100))
	if vlan.NetworkType != "vlan" || vlan.PhysicalNetwork != "physnet1" || vlan.SegmentationID != "100" || vlan.MTU != 1500 {
		t.Fatalf("vlan network: %+v mtu %d", vlan.NetworkProviderExt, vlan.MTU)
	}
	flat := createNet(t, admin, seg("flat", "anyname", 0))
	if flat.NetworkType != "flat" || flat.PhysicalNetwork != "anyname" || flat.SegmentationID != "" {
		t.Fatalf("flat network: %+v", flat.NetworkProviderExt)
	}
	vx := createNet(t, admin, seg("vxlan", "", 5000))
	if vx.SegmentationID != "5000" || vx.MTU != 1450 {
		t.Fatalf("vxlan provider network: %+v", vx.NetworkProviderExt)
	}
	// The same VLAN on another physnet is fine; on the same physnet it is in use.
	createNet(t, admin, seg("vlan", "physnet2", 100))
	_, err := networks.Create(t.Context(), admin, seg("vlan", "physnet1", 100)).Extract()
	wantErr(t, err, 409, "VlanIdInUse")
	_, err = networks.Create(t.Context(), admin, seg("vxlan", "", 5000)).Extract()
	wantErr(t, err, 409, "TunnelIdInUse")
	_, err = networks.Create(t.Context(), admin, seg("flat", "anyname", 0)).Extract()
	wantErr(t, err, 409, "FlatNetworkInUse")
	for _, id := range []int{4095, 5000, -1} {
		_, err = networks.Create(t.Context(), admin, seg("vlan", "physnet1", id)).Extract()
		wantErr(t, err, 400, "InvalidInput")
	}
	_, err = networks.Create(t.Context(), admin, seg("flat", "", 0)).Extract()
	wantErr(t, err, 400, "InvalidInput")
	_, err = networks.Create(t.Context(), admin, seg("bogus", "", 0)).Extract()
	wantErr(t, err, 400, "InvalidInput")
	// A tenant network after a provider VNI: allocation skips nothing it need not.
	tn := createNet(t, admin, networks.CreateOpts{Name: "tenant", ProjectID: "proj-a"})
	if tn.NetworkType != "vxlan" || tn.SegmentationID != "1" {
		t.Fatalf("tenant network: %+v", tn.NetworkProviderExt)
	}
	// Provider attributes are admin-only, and so is router:external.
	_, err = networks.Create(t.Context(), a, seg("vlan", "physnet1", 200)).Extract()
	wantErr(t, err, 403, "PolicyNotAuthorized")
	_, err = networks.Create(t.Context(), a, external.CreateOptsExt{CreateOptsBuilder: networks.CreateOpts{Name: "x"}, External: ptr(true)}).Extract()
	wantErr(t, err, 403, "PolicyNotAuthorized")
	_, err = networks.Create(t.Context(), a, networks.CreateOpts{Name: "x", Shared: ptr(true)}).Extract()
	wantErr(t, err, 403, "PolicyNotAuthorized")
	// The flat form with provider:* attributes (what the openstack CLI sends).
	st, body := e.raw("POST", "/v2.0/networks", "tok-admin", `{"network": {"name": "v", "provider:network_type": "vlan", "provider:physical_network": "physnet9"}}`)
	if st != 400 || neutronType(body) != "InvalidInput" || !strings.Contains(neutronMessage(body), "segmentation_id") {
		t.Fatalf("vlan without id on a physnet without ranges: %d %v", st, body)
	}
	st, body = e.raw("POST", "/v2.0/networks", "tok-admin", `{"network": {"name": "v", "provider:network_type": "vlan", "provider:physical_network": "physnet9", "provider:segmentation_id": 4094}}`)
	if st != 201 || body["network"].(map[string]any)["provider:segmentation_id"] != 4094.0 {
		t.Fatalf("vlan 4094 with provider:* attributes: %d %v", st, body)
	}
	st, body = e.raw("PUT", "/v2.0/networks/"+vlan.ID, "tok-admin", `{"network": {"provider:segmentation_id": 101}}`)
	if st != 400 || neutronType(body) != "InvalidInput" {
		t.Fatalf("update provider attrs: %d %v", st, body)
	}
}

func neutronType(body map[string]any) string {
	ne, _ := body["NeutronError"].(map[string]any)
	s, _ := ne["type"].(string)
	return s
}

func neutronMessage(body map[string]any) string {
	ne, _ := body["NeutronError"].(map[string]any)
	s, _ := ne["message"].(string)
	return s
}

func TestSegmentConfig(t *testing.T) {
	e := &testEnv{t: t, dir: t.TempDir(), ctx: t.Context()}
	e.cfg = controlplane.ServerConfig{DataDir: e.dir, Auth: controlplane.AuthNoAuth, SegmentConfig: controlplane.SegmentConfig{
		GlobalPhysnetMTU: 9000, TenantNetworkTypes: []string{"vlan", "vxlan"}, NetworkVLANRanges: []string{"physnet1:10:11"},
		VXLANVNIRanges: []string{"100:100"}, FlatNetworks: []string{},
	}}
	e.start()
	t.Cleanup(e.close)
	c := e.client("")
	var got []string
	for i := range 3 {
		n := createNet(t, c, networks.CreateOpts{Name: fmt.Sprint(i), ProjectID: "p"})
		got = append(got, fmt.Sprintf("%s/%s/%s/%d", n.NetworkType, n.PhysicalNetwork, n.SegmentationID, n.MTU))
	}
	want := []string{"vlan/physnet1/10/9000", "vlan/physnet1/11/9000", "vxlan//100/8950"}
	if !slices.Equal(got, want) {
		t.Fatalf("allocations %v, want %v", got, want)
	}
	_, err := networks.Create(t.Context(), c, networks.CreateOpts{Name: "4", ProjectID: "p"}).Extract()
	wantErr(t, err, 503, "NoNetworkAvailable")
	// VLAN on a physnet the config does not list; flat disabled by flat_networks: [].
	st, body := e.raw("POST", "/v2.0/networks", "", `{"network": {"project_id": "p", "provider:network_type": "vlan", "provider:physical_network": "other", "provider:segmentation_id": 5}}`)
	if st != 400 || !strings.Contains(neutronMessage(body), "physical_network 'other'") {
		t.Fatalf("unknown physnet: %d %v", st, body)
	}
	st, body = e.raw("POST", "/v2.0/networks", "", `{"network": {"project_id": "p", "provider:network_type": "flat", "provider:physical_network": "physnet1"}}`)
	if st != 400 {
		t.Fatalf("flat disabled: %d %v", st, body)
	}
	// Bad configs fail NewServer with a message naming the option.
	for _, bad := range []controlplane.SegmentConfig{
		{TenantNetworkTypes: []string{"vlan"}},
		{VXLANVNIRanges: []string{"5:1"}},
		{NetworkVLANRanges: []string{"p:0:5000"}},
		{TenantNetworkTypes: []string{"bogus"}},
	} {
		if _, err := controlplane.NewServer(t.Context(), controlplane.ServerConfig{DataDir: t.TempDir(), SegmentConfig: bad}); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
}

func TestSubnetCRUD(t *testing.T) {
	e := newEnv(t, controlplane.AuthToken)
	a := e.client("tok-a")
	ctx := t.Context()
	n := createNet(t, a, networks.CreateOpts{Name: "n"})

	s4 := createSubnet(t, a, n.ID, "10.1.0.0/24")
	if s4.GatewayIP != "10.1.0.1" || s4.IPVersion != 4 || !s4.EnableDHCP || len(s4.AllocationPools) != 1 ||
		s4.AllocationPools[0] != (subnets.AllocationPool{Start: "10.1.0.2", End: "10.1.0.254"}) || s4.ProjectID != "proj-a" {
		t.Fatalf("v4 subnet defaults: %+v", s4)
	}
	s6 := createSubnet(t, a, n.ID, "2001:db8::/64")
	if s6.GatewayIP != "2001:db8::1" || s6.AllocationPools[0] != (subnets.AllocationPool{Start: "2001:db8::2", End: "2001:db8::ffff:ffff:ffff:ffff"}) {
		t.Fatalf("v6 subnet defaults: %+v", s6)
	}
	got, _ := networks.Get(ctx, a, n.ID).Extract()
	if !slices.Equal(got.Subnets, []string{s4.ID, s6.ID}) {
		t.Fatalf("network subnets %v", got.Subnets)
	}
	// No gateway, explicit pools, DNS, host routes.
	sn, err := subnets.Create(ctx, a, subnets.CreateOpts{
		NetworkID: n.ID, CIDR: "192.168.5.0/24", IPVersion: 4, GatewayIP: ptr(""), Name: "nogw",
		AllocationPools: []subnets.AllocationPool{{Start: "192.168.5.100", End: "192.168.5.110"}},
		DNSNameservers:  []string{"8.8.8.8"}, HostRoutes: []subnets.HostRoute{{DestinationCIDR: "10.9.0.0/16", NextHop: "192.168.5.1"}},
		EnableDHCP: ptr(false),
	}).Extract()
	if err != nil || sn.GatewayIP != "" || sn.EnableDHCP || len(sn.DNSNameservers) != 1 || len(sn.HostRoutes) != 1 || sn.AllocationPools[0].Start != "192.168.5.100" {
		t.Fatalf("subnet with options: %v %+v", err, sn)
	}
	// Gateway in the middle splits the default pool.
	other := createNet(t, a, networks.CreateOpts{Name: "other"})
	mid, err := subnets.Create(ctx, a, subnets.CreateOpts{NetworkID: other.ID, CIDR: "10.1.0.0/29", IPVersion: 4, GatewayIP: ptr("10.1.0.3")}).Extract()
	if err != nil || len(mid.AllocationPools) != 2 || mid.AllocationPools[0].End != "10.1.0.2" || mid.AllocationPools[1].Start != "10.1.0.4" || mid.AllocationPools[1].End != "10.1.0.6" {
		t.Fatalf("split pools (overlap across networks is allowed): %v %+v", err, mid)
	}

	// Errors.
	cases := []struct {
		name   string
		opts   subnets.CreateOpts
		status int
		typ    string
	}{
		{"overlap in network", subnets.CreateOpts{NetworkID: n.ID, CIDR: "10.1.0.128/25", IPVersion: 4}, 409, "SubnetOverlap"},
		{"host bits", subnets.CreateOpts{NetworkID: n.ID, CIDR: "10.2.0.1/24", IPVersion: 4}, 400, "HTTPBadRequest"},
		{"not a cidr", subnets.CreateOpts{NetworkID: n.ID, CIDR: "banana", IPVersion: 4}, 400, "HTTPBadRequest"},
		{"version mismatch", subnets.CreateOpts{NetworkID: n.ID, CIDR: "10.3.0.0/24", IPVersion: 6}, 400, "InvalidInput"},
		{"gateway outside", subnets.CreateOpts{NetworkID: n.ID, CIDR: "10.4.0.0/24", IPVersion: 4, GatewayIP: ptr("10.5.0.1")}, 400, "InvalidInput"},
		{"pool outside", subnets.CreateOpts{NetworkID: n.ID, CIDR: "10.6.0.0/24", IPVersion: 4, AllocationPools: []subnets.AllocationPool{{Start: "10.6.0.10", End: "10.6.1.10"}}}, 400, "OutOfBoundsAllocationPool"},
		{"pool reversed", subnets.CreateOpts{NetworkID: n.ID, CIDR: "10.6.0.0/24", IPVersion: 4, AllocationPools: []subnets.AllocationPool{{Start: "10.6.0.10", End: "10.6.0.5"}}}, 400, "InvalidAllocationPool"},
		{"pools overlap", subnets.CreateOpts{NetworkID: n.ID, CIDR: "10.6.0.0/24", IPVersion: 4, AllocationPools: []subnets.AllocationPool{{Start: "10.6.0.10", End: "10.6.0.20"}, {Start: "10.6.0.15", End: "10.6.0.30"}}}, 409, "OverlappingAllocationPools"},
		{"gateway in pool", subnets.CreateOpts{NetworkID: n.ID, CIDR: "10.6.0.0/24", IPVersion: 4, GatewayIP: ptr("10.6.0.12"), AllocationPools: []subnets.AllocationPool{{Start: "10.6.0.10", End: "10.6.0.20"}}}, 409, "GatewayConflictWithAllocationPools"},
		{"slaac not /64", subnets.CreateOpts{NetworkID: n.ID, CIDR: "2001:db9::/80", IPVersion: 6, IPv6AddressMode: "slaac"}, 400, "InvalidInput"},
		{"bad dns", subnets.CreateOpts{NetworkID: n.ID, CIDR: "10.7.0.0/24", IPVersion: 4, DNSNameservers: []string{"nope"}}, 400, "HTTPBadRequest"},
		{"unknown network", subnets.CreateOpts{NetworkID: "nope", CIDR: "10.8.0.0/24", IPVersion: 4}, 404, "NetworkNotFound"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := subnets.Create(ctx, a, c.opts).Extract()
			wantErr(t, err, c.status, c.typ)
		})
	}
	// The failed creates wrote nothing: still three subnets on n.
	if got, _ := networks.Get(ctx, a, n.ID).Extract(); len(got.Subnets) != 3 {
		t.Fatalf("network subnets after failed creates: %v", got.Subnets)
	}
	st, body := e.raw("POST", "/v2.0/subnets", "tok-a", `{"subnet": {"network_id": "`+n.ID+`", "cidr": "10.10.0.0/24", "ip_version": 4, "enable_dhcp": "maybe"}}`)
	if st != 400 || !strings.Contains(neutronMessage(body), "enable_dhcp") {
		t.Fatalf("bad boolean names the attribute: %d %v", st, body)
	}

	// Update and list filters.
	up, err := subnets.Update(ctx, a, s4.ID, subnets.UpdateOpts{Name: ptr("web"), DNSNameservers: &[]string{"1.1.1.1", "9.9.9.9"}}).Extract()
	if err != nil || up.Name != "web" || len(up.DNSNameservers) != 2 {
		t.Fatalf("update subnet: %v %+v", err, up)
	}
	st, body = e.raw("PUT", "/v2.0/subnets/"+s4.ID, "tok-a", `{"subnet": {"cidr": "10.99.0.0/24"}}`)
	if st != 400 || !strings.Contains(neutronMessage(body), "cidr") {
		t.Fatalf("update cidr: %d %v", st, body)
	}
	pages, err := subnets.List(a, subnets.ListOpts{NetworkID: n.ID, IPVersion: 6}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l, _ := subnets.ExtractSubnets(pages)
	if len(l) != 1 || l[0].ID != s6.ID {
		t.Fatalf("filter subnets by network and version: %+v", l)
	}

	// A port holds an address: subnet in use; network in use.
	p := createPort(t, a, ports.CreateOpts{NetworkID: n.ID, FixedIPs: []ports.IP{{SubnetID: s4.ID}}})
	wantErr(t, subnets.Delete(ctx, a, s4.ID).ExtractErr(), 409, "SubnetInUse")
	wantErr(t, networks.Delete(ctx, a, n.ID).ExtractErr(), 409, "NetworkInUse")
	if err := ports.Delete(ctx, a, p.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if err := subnets.Delete(ctx, a, s4.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, subnets.Get(ctx, a, s4.ID).Err, 404, "SubnetNotFound")
	// Deleting the network takes its remaining subnets with it.
	if err := networks.Delete(ctx, a, n.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, subnets.Get(ctx, a, s6.ID).Err, 404, "SubnetNotFound")
}

func TestPortCRUD(t *testing.T) {
	e := newEnv(t, controlplane.AuthToken)
	admin, a := e.client("tok-admin"), e.client("tok-a")
	ctx := t.Context()
	n := createNet(t, a, networks.CreateOpts{Name: "n"})
	s4 := createSubnet(t, a, n.ID, "10.0.0.0/24")
	s6, err := subnets.Create(ctx, a, subnets.CreateOpts{NetworkID: n.ID, CIDR: "2001:db8:1::/64", IPVersion: 6, IPv6AddressMode: "slaac", IPv6RAMode: "slaac"}).Extract()
	if err != nil {
		t.Fatal(err)
	}

	p1 := createPort(t, a, ports.CreateOpts{NetworkID: n.ID, Name: "p1", DeviceID: "vm1", DeviceOwner: "compute:nova"})
	if !strings.HasPrefix(p1.MACAddress, "fa:16:3e:") || p1.Status != "DOWN" || !p1.PortSecurityEnabled || p1.VNICType != "normal" {
		t.Fatalf("port defaults: %+v", p1)
	}
	// One v4 address (next free: the network's DHCP port holds 10.0.0.2) plus the SLAAC
	// address from the MAC.
	if len(p1.FixedIPs) != 2 || p1.FixedIPs[0] != (ports.IP{SubnetID: s4.ID, IPAddress: "10.0.0.3"}) || p1.FixedIPs[1].SubnetID != s6.ID || !strings.HasPrefix(p1.FixedIPs[1].IPAddress, "2001:db8:1:0:f816:3eff:fe") {
		t.Fatalf("port addresses: %+v", p1.FixedIPs)
	}
	// Default security group assigned.
	if len(p1.SecurityGroups) != 1 {
		t.Fatalf("port security groups: %v", p1.SecurityGroups)
	}
	// Members do not see binding details; admins do.
	if p1.HostID != "" || p1.VIFType != "" {
		t.Fatalf("member sees binding details: %+v", p1.PortsBindingExt)
	}
	p2 := createPort(t, a, ports.CreateOpts{NetworkID: n.ID, FixedIPs: []ports.IP{{IPAddress: "10.0.0.50"}}, MACAddress: "fa:16:3e:00:00:01"})
	if p2.FixedIPs[0].IPAddress != "10.0.0.50" || p2.MACAddress != "fa:16:3e:00:00:01" {
		t.Fatalf("requested address and mac: %+v", p2)
	}
	p3 := createPort(t, a, ports.CreateOpts{NetworkID: n.ID, FixedIPs: []ports.IP{{SubnetID: s4.ID}}})
	if p3.FixedIPs[0].IPAddress != "10.0.0.4" {
		t.Fatalf("next free address: %+v", p3.FixedIPs)
	}
	// Errors, each writing nothing.
	errCases := []struct {
		name   string
		opts   ports.CreateOptsBuilder
		client *gophercloud.ServiceClient
		status int
		typ    string
	}{
		{"ip in use", ports.CreateOpts{NetworkID: n.ID, FixedIPs: []ports.IP{{IPAddress: "10.0.0.50"}}}, a, 409, "IpAddressInUse"},
		{"gateway ip", ports.CreateOpts{NetworkID: n.ID, FixedIPs: []ports.IP{{IPAddress: "10.0.0.1"}}}, a, 409, "IpAddressInUse"},
		{"mac in use", ports.CreateOpts{NetworkID: n.ID, MACAddress: "fa:16:3e:00:00:01"}, a, 409, "MacAddressInUse"},
		{"bad mac", ports.CreateOpts{NetworkID: n.ID, MACAddress: "zz:16:3e:00:00:01"}, a, 400, "HTTPBadRequest"},
		{"ip outside", ports.CreateOpts{NetworkID: n.ID, FixedIPs: []ports.IP{{IPAddress: "10.9.0.5"}}}, a, 400, "InvalidIpForNetwork"},
		{"broadcast", ports.CreateOpts{NetworkID: n.ID, FixedIPs: []ports.IP{{SubnetID: s4.ID, IPAddress: "10.0.0.255"}}}, a, 400, "InvalidIpForSubnet"},
		{"foreign subnet", ports.CreateOpts{NetworkID: n.ID, FixedIPs: []ports.IP{{SubnetID: "nope"}}}, a, 400, "InvalidInput"},
		{"unknown network", ports.CreateOpts{NetworkID: "nope"}, a, 404, "NetworkNotFound"},
		{"bad vnic", portsbinding.CreateOptsExt{CreateOptsBuilder: ports.CreateOpts{NetworkID: n.ID}, VNICType: "macvtap2"}, a, 400, "HTTPBadRequest"},
		{"host by member", portsbinding.CreateOptsExt{CreateOptsBuilder: ports.CreateOpts{NetworkID: n.ID}, HostID: "node1"}, a, 403, "PolicyNotAuthorized"},
		{"sg without port security", portsecurity.PortCreateOptsExt{CreateOptsBuilder: ports.CreateOpts{NetworkID: n.ID, SecurityGroups: &p1.SecurityGroups}, PortSecurityEnabled: ptr(false)}, a, 400, "PortSecurityAndIPRequiredForSecurityGroups"},
		{"pairs without port security", portsecurity.PortCreateOptsExt{CreateOptsBuilder: ports.CreateOpts{NetworkID: n.ID, SecurityGroups: &[]string{}, AllowedAddressPairs: []ports.AddressPair{{IPAddress: "10.0.0.200"}}}, PortSecurityEnabled: ptr(false)}, a, 409, "AddressPairAndPortSecurityRequired"},
		{"unknown sg", ports.CreateOpts{NetworkID: n.ID, SecurityGroups: &[]string{"nope"}}, a, 404, "SecurityGroupNotFound"},
	}
	for _, c := range errCases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ports.Create(ctx, c.client, c.opts).Extract()
			wantErr(t, err, c.status, c.typ)
		})
	}
	if l := listPorts(t, a, ports.ListOpts{NetworkID: n.ID}); len(l) != 4 { // p1-p3 and the DHCP port
		t.Fatalf("ports after failed creates: %d", len(l))
	}
	// Every vnic type, with binding details (admin).
	for _, vt := range []string{"normal", "direct", "direct-physical", "virtio-forwarder", "vdpa", "vhost-user"} {
		p := createPort(t, admin, portsbinding.CreateOptsExt{
			CreateOptsBuilder: ports.CreateOpts{NetworkID: n.ID, FixedIPs: []ports.IP{}},
			VNICType:          vt, HostID: "compute-1", Profile: map[string]any{"pci_slot": "0000:03:00.2"},
		})
		if p.VNICType != vt || p.HostID != "compute-1" || p.Profile["pci_slot"] != "0000:03:00.2" || p.VIFType != "unbound" || p.ProjectID != "admin-proj" {
			t.Fatalf("binding %s: %+v project %s", vt, p.PortsBindingExt, p.ProjectID)
		}
		if len(p.FixedIPs) != 0 || len(p.SecurityGroups) != 0 {
			t.Fatalf("port with fixed_ips []: %+v", p.Port)
		}
	}
	st, body := e.raw("GET", "/v2.0/ports?binding:host_id=compute-1&binding:vnic_type=vdpa", "tok-admin", "")
	if st != 200 || len(body["ports"].([]any)) != 1 {
		t.Fatalf("filter by binding: %d %v", st, body)
	}
	// Port security off, allowed address pairs, update.
	ps := createPort(t, a, portsecurity.PortCreateOptsExt{CreateOptsBuilder: ports.CreateOpts{NetworkID: n.ID}, PortSecurityEnabled: ptr(false)})
	if ps.PortSecurityEnabled || len(ps.SecurityGroups) != 0 {
		t.Fatalf("port security disabled: %+v", ps)
	}
	var up portFull
	err = ports.Update(ctx, a, p1.ID, ports.UpdateOpts{
		Name:                ptr("p1b"),
		AllowedAddressPairs: &[]ports.AddressPair{{IPAddress: "10.0.0.128/25"}, {IPAddress: "10.0.0.77", MACAddress: "fa:16:3e:aa:bb:cc"}},
		FixedIPs:            []ports.IP{{SubnetID: s4.ID, IPAddress: "10.0.0.3"}, {SubnetID: s4.ID, IPAddress: "10.0.0.60"}},
	}).ExtractInto(&up)
	if err != nil {
		t.Fatal(err)
	}
	if up.Name != "p1b" || len(up.AllowedAddressPairs) != 2 || up.AllowedAddressPairs[0].MACAddress != p1.MACAddress || len(up.FixedIPs) != 2 || up.FixedIPs[1].IPAddress != "10.0.0.60" {
		t.Fatalf("updated port: %+v", up.Port)
	}
	// The SLAAC address was dropped by the update and is free again; 10.0.0.60 is taken.
	_, err = ports.Create(ctx, a, ports.CreateOpts{NetworkID: n.ID, FixedIPs: []ports.IP{{IPAddress: "10.0.0.60"}}}).Extract()
	wantErr(t, err, 409, "IpAddressInUse")
	st, body = e.raw("PUT", "/v2.0/ports/"+p1.ID, "tok-a", `{"port": {"network_id": "x"}}`)
	if st != 400 || !strings.Contains(neutronMessage(body), "network_id") {
		t.Fatalf("update network_id: %d %v", st, body)
	}
	// Disabling port security with groups still attached is refused.
	_, err = ports.Update(ctx, a, p1.ID, portsecurity.PortUpdateOptsExt{UpdateOptsBuilder: ports.UpdateOpts{}, PortSecurityEnabled: ptr(false)}).Extract()
	wantErr(t, err, 409, "PortSecurityPortHasSecurityGroup")

	// Filters on fixed_ips and device_id.
	if l := listPorts(t, a, ports.ListOpts{FixedIPs: []ports.FixedIPOpts{{IPAddress: "10.0.0.50"}}}); len(l) != 1 || l[0].ID != p2.ID {
		t.Fatalf("filter by fixed ip: %+v", l)
	}
	if l := listPorts(t, a, ports.ListOpts{DeviceID: "vm1"}); len(l) != 1 || l[0].ID != p1.ID {
		t.Fatalf("filter by device_id: %+v", l)
	}
	// Delete releases the address for reuse.
	if err := ports.Delete(ctx, a, p2.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	p4 := createPort(t, a, ports.CreateOpts{NetworkID: n.ID, FixedIPs: []ports.IP{{IPAddress: "10.0.0.50"}}, MACAddress: "fa:16:3e:00:00:01"})
	if p4.FixedIPs[0].IPAddress != "10.0.0.50" {
		t.Fatalf("reused address: %+v", p4.FixedIPs)
	}
	wantErr(t, ports.Get(ctx, a, p2.ID).Err, 404, "PortNotFound")
}
