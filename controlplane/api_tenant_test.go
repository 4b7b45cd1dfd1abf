package controlplane_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/offlane/offlane/controlplane"
)

func TestTenantIsolation(t *testing.T) {
	e := newEnv(t, controlplane.AuthToken)
	admin, a, b := e.client("tok-admin"), e.client("tok-a"), e.client("tok-b")
	ctx := t.Context()

	na := createNet(t, a, networks.CreateOpts{Name: "a-private"})
	sa := createSubnet(t, a, na.ID, "10.0.0.0/24")
	pa := createPort(t, a, ports.CreateOpts{NetworkID: na.ID})
	nb := createNet(t, b, networks.CreateOpts{Name: "b-private"})

	// B cannot see, use, update or delete A's resources: 404 everywhere.
	wantErr(t, networks.Get(ctx, b, na.ID).Err, 404, "NetworkNotFound")
	_, err := networks.Update(ctx, b, na.ID, networks.UpdateOpts{Name: ptr("stolen")}).Extract()
	wantErr(t, err, 404, "NetworkNotFound")
	wantErr(t, networks.Delete(ctx, b, na.ID).ExtractErr(), 404, "NetworkNotFound")
	_, err = ports.Create(ctx, b, ports.CreateOpts{NetworkID: na.ID}).Extract()
	wantErr(t, err, 404, "NetworkNotFound")
	_, err = subnets.Create(ctx, b, subnets.CreateOpts{NetworkID: na.ID, CIDR: "10.1.0.0/24", IPVersion: 4}).Extract()
	wantErr(t, err, 404, "NetworkNotFound")
	wantErr(t, subnets.Get(ctx, b, sa.ID).Err, 404, "SubnetNotFound")
	wantErr(t, ports.Get(ctx, b, pa.ID).Err, 404, "PortNotFound")
	wantErr(t, ports.Delete(ctx, b, pa.ID).ExtractErr(), 404, "PortNotFound")
	// A member cannot create in another project's name.
	_, err = networks.Create(ctx, b, networks.CreateOpts{Name: "x", ProjectID: "proj-a"}).Extract()
	wantErr(t, err, 400, "HTTPBadRequest")
	// Lists only show one's own.
	if l := listNets(t, b, nil); len(l) != 1 || l[0].ID != nb.ID {
		t.Fatalf("b's networks: %+v", l)
	}
	if l := listPorts(t, b, nil); len(l) != 0 {
		t.Fatalf("b sees ports: %+v", l)
	}
	// Nothing changed on A's side.
	if g, err := networks.Get(ctx, a, na.ID).Extract(); err != nil || g.Name != "a-private" {
		t.Fatalf("a's network: %v %+v", err, g)
	}
	// Admin sees everything.
	if l := listNets(t, admin, nil); len(l) != 2 {
		t.Fatalf("admin sees %d networks", len(l))
	}

	// A shared network (admin-created) is visible and usable by both; each project sees
	// its own ports on it, and the network owner sees all of them.
	shared := createNet(t, admin, networks.CreateOpts{Name: "shared", Shared: ptr(true), ProjectID: "proj-a"})
	ss := createSubnet(t, admin, shared.ID, "10.9.0.0/24")
	if l := listNets(t, b, networks.ListOpts{Shared: ptr(true)}); len(l) != 1 || l[0].ID != shared.ID {
		t.Fatalf("b lists shared networks: %+v", l)
	}
	if _, err := subnets.Get(ctx, b, ss.ID).Extract(); err != nil {
		t.Fatalf("b reads the shared network's subnet: %v", err)
	}
	pb := createPort(t, b, ports.CreateOpts{NetworkID: shared.ID})
	if pb.ProjectID != "proj-b" {
		t.Fatalf("b's port on the shared network: %+v", pb)
	}
	if _, err := ports.Get(ctx, a, pb.ID).Extract(); err != nil {
		t.Fatalf("the network owner sees b's port: %v", err)
	}
	// But b may not pick addresses there, nor change or delete the network.
	_, err = ports.Create(ctx, b, ports.CreateOpts{NetworkID: shared.ID, FixedIPs: []ports.IP{{IPAddress: "10.9.0.100"}}}).Extract()
	wantErr(t, err, 403, "PolicyNotAuthorized")
	_, err = networks.Update(ctx, b, shared.ID, networks.UpdateOpts{Name: ptr("mine")}).Extract()
	wantErr(t, err, 403, "PolicyNotAuthorized")
	wantErr(t, networks.Delete(ctx, b, shared.ID).ExtractErr(), 403, "PolicyNotAuthorized")
	_, err = subnets.Create(ctx, b, subnets.CreateOpts{NetworkID: shared.ID, CIDR: "10.10.0.0/24", IPVersion: 4}).Extract()
	wantErr(t, err, 403, "PolicyNotAuthorized")
	// Unsharing while b has a port there is refused.
	_, err = networks.Update(ctx, admin, shared.ID, networks.UpdateOpts{Shared: ptr(false)}).Extract()
	wantErr(t, err, 409, "InvalidSharedSetting")

	// Readers read, never write; unknown and missing tokens are 401.
	r := e.client("tok-reader")
	if l := listNets(t, r, nil); len(l) != 2 {
		t.Fatalf("reader sees %d networks", len(l))
	}
	_, err = networks.Create(ctx, r, networks.CreateOpts{Name: "x"}).Extract()
	wantErr(t, err, 403, "PolicyNotAuthorized")
	_, err = networks.Update(ctx, r, na.ID, networks.UpdateOpts{Name: ptr("x")}).Extract()
	wantErr(t, err, 403, "PolicyNotAuthorized")
	wantErr(t, networks.Delete(ctx, r, na.ID).ExtractErr(), 403, "PolicyNotAuthorized")
	_, err = networks.Create(ctx, e.client("nope"), networks.CreateOpts{Name: "x"}).Extract()
	wantErr(t, err, 401, "HTTPUnauthorized")
	st, body := e.raw("GET", "/v2.0/networks", "", "")
	if st != 401 || neutronType(body) != "HTTPUnauthorized" {
		t.Fatalf("missing token: %d %v", st, body)
	}
}

func TestNoAuth(t *testing.T) {
	e := newEnv(t, controlplane.AuthNoAuth)
	c := e.client("")
	n := createNet(t, c, networks.CreateOpts{Name: "n", ProjectID: "p1"})
	if n.ProjectID != "p1" || n.NetworkType != "vxlan" {
		t.Fatalf("noauth create: %+v", n)
	}
	// Subnets and ports default to the network's project.
	s := createSubnet(t, c, n.ID, "10.0.0.0/24")
	p := createPort(t, c, ports.CreateOpts{NetworkID: n.ID})
	if s.ProjectID != "p1" || p.ProjectID != "p1" || len(p.SecurityGroups) != 1 {
		t.Fatalf("noauth defaults: subnet %s port %s groups %v", s.ProjectID, p.ProjectID, p.SecurityGroups)
	}
	_, err := networks.Create(t.Context(), c, networks.CreateOpts{Name: "orphan"}).Extract()
	wantErr(t, err, 400, "HTTPBadRequest")
	// X-Project-Id names the project when the body does not.
	c.MoreHeaders = map[string]string{"X-Project-Id": "p2"}
	if n2 := createNet(t, c, networks.CreateOpts{Name: "n2"}); n2.ProjectID != "p2" {
		t.Fatalf("X-Project-Id: %+v", n2)
	}
}

func TestVersionDiscovery(t *testing.T) {
	e := newEnv(t, controlplane.AuthToken)
	st, body := e.raw("GET", "/", "", "")
	v := body["versions"].([]any)[0].(map[string]any)
	if st != 200 || v["id"] != "v2.0" || v["status"] != "CURRENT" {
		t.Fatalf("GET /: %d %v", st, body)
	}
	st, body = e.raw("GET", "/v2.0", "tok-a", "")
	var names []string
	for _, r := range body["resources"].([]any) {
		names = append(names, r.(map[string]any)["collection"].(string))
	}
	slices.Sort(names)
	want := []string{"floatingips", "networks", "policies", "ports", "routers", "security_group_rules", "security_groups", "subnets"}
	if st != 200 || !slices.Equal(names, want) {
		t.Fatalf("GET /v2.0: %d %v", st, names)
	}
	pages, err := extensions.List(e.client("tok-a")).AllPages(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	exts, err := extensions.ExtractExtensions(pages)
	if err != nil {
		t.Fatal(err)
	}
	var aliases []string
	for _, x := range exts {
		aliases = append(aliases, x.Alias)
	}
	for _, need := range []string{"provider", "external-net", "router", "extraroute", "security-group", "port-security", "allowed-address-pairs", "binding", "qos", "qos-bw-limit-direction", "standard-attr-description", "project-id"} {
		if !slices.Contains(aliases, need) {
			t.Errorf("extension %s not listed (have %v)", need, aliases)
		}
	}
	x, err := extensions.Get(t.Context(), e.client("tok-a"), "router").Extract()
	if err != nil || x.Alias != "router" {
		t.Fatalf("get extension: %v %+v", err, x)
	}
	wantErr(t, extensions.Get(t.Context(), e.client("tok-a"), "nope").Err, 404, "HTTPNotFound")
	st, body = e.raw("GET", "/v2.0/bogus", "tok-a", "")
	if st != 404 || neutronType(body) != "HTTPNotFound" {
		t.Fatalf("unknown collection: %d %v", st, body)
	}
	st, body = e.raw("PATCH", "/v2.0/networks", "tok-a", "")
	if st != 405 {
		t.Fatalf("PATCH: %d %v", st, body)
	}
}

func TestListSortPaginateFields(t *testing.T) {
	e := newEnv(t, controlplane.AuthToken)
	a := e.client("tok-a")
	var ids []string
	for i, name := range []string{"delta", "alpha", "echo", "charlie", "bravo", "golf", "foxtrot"} {
		n := createNet(t, a, networks.CreateOpts{Name: name, AdminStateUp: ptr(i%2 == 0)})
		ids = append(ids, n.ID)
	}
	// gophercloud follows networks_links page by page.
	var pageNames [][]string
	err := networks.List(a, networks.ListOpts{Limit: 3, SortKey: "name", SortDir: "desc"}).EachPage(t.Context(), func(_ context.Context, p pagination.Page) (bool, error) {
		l, err := networks.ExtractNetworks(p)
		var names []string
		for _, n := range l {
			names = append(names, n.Name)
		}
		pageNames = append(pageNames, names)
		return true, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(pageNames) != "[[golf foxtrot echo] [delta charlie bravo] [alpha]]" {
		t.Fatalf("pages: %v", pageNames)
	}
	// Links, marker and page_reverse by hand.
	st, body := e.raw("GET", "/v2.0/networks?limit=2&sort_key=name&sort_dir=asc", "tok-a", "")
	if st != 200 {
		t.Fatal(st, body)
	}
	got := names(body["networks"])
	links := body["networks_links"].([]any)
	if fmt.Sprint(got) != "[alpha bravo]" || len(links) != 1 || links[0].(map[string]any)["rel"] != "next" {
		t.Fatalf("first page: %v %v", got, links)
	}
	next := links[0].(map[string]any)["href"].(string)
	if !strings.Contains(next, "marker=") || !strings.HasPrefix(next, e.url+"/v2.0/networks?") {
		t.Fatalf("next link %s", next)
	}
	st, body = e.raw("GET", strings.TrimPrefix(next, e.url), "tok-a", "")
	got = names(body["networks"])
	if st != 200 || fmt.Sprint(got) != "[charlie delta]" || len(body["networks_links"].([]any)) != 2 {
		t.Fatalf("second page: %d %v %v", st, got, body["networks_links"])
	}
	var prev string
	for _, l := range body["networks_links"].([]any) {
		if l.(map[string]any)["rel"] == "previous" {
			prev = l.(map[string]any)["href"].(string)
		}
	}
	st, body = e.raw("GET", strings.TrimPrefix(prev, e.url), "tok-a", "")
	if got := names(body["networks"]); st != 200 || fmt.Sprint(got) != "[alpha bravo]" {
		t.Fatalf("previous page (page_reverse): %d %v", st, got)
	}
	// Sort by two keys, filter, fields.
	st, body = e.raw("GET", "/v2.0/networks?sort_key=admin_state_up&sort_dir=desc&sort_key=name&sort_dir=asc&fields=name&fields=admin_state_up", "tok-a", "")
	if got := names(body["networks"]); st != 200 || fmt.Sprint(got) != "[bravo delta echo foxtrot alpha charlie golf]" {
		t.Fatalf("two sort keys: %d %v", st, got)
	}
	if n := body["networks"].([]any)[0].(map[string]any); len(n) != 2 {
		t.Fatalf("fields: %v", n)
	}
	st, body = e.raw("GET", "/v2.0/networks?name=alpha&name=golf&fields=id", "tok-a", "")
	if l := body["networks"].([]any); st != 200 || len(l) != 2 || len(l[0].(map[string]any)) != 1 {
		t.Fatalf("filter with two values and fields=id: %d %v", st, body)
	}
	st, body = e.raw("GET", "/v2.0/networks/"+ids[0]+"?fields=name", "tok-a", "")
	if n := body["network"].(map[string]any); st != 200 || len(n) != 1 || n["name"] != "delta" {
		t.Fatalf("show with fields: %d %v", st, body)
	}
	// Errors name the parameter.
	for q, want := range map[string]string{
		"bogus=1":                   "bogus",
		"sort_key=nope":             "nope",
		"sort_key=name&sort_dir=up": "sort_dir",
		"limit=-1":                  "Limit",
		"admin_state_up=perhaps":    "admin_state_up",
		"marker=00000000-0000-0000-0000-000000000000": "could not be found",
	} {
		st, body := e.raw("GET", "/v2.0/networks?"+q, "tok-a", "")
		if st/100 != 4 || !strings.Contains(neutronMessage(body), want) {
			t.Errorf("?%s: %d %v (want 4xx naming %q)", q, st, body, want)
		}
	}
	st, _ = e.raw(http.MethodGet, "/v2.0/networks?tags=x", "tok-a", "")
	if st != 200 {
		t.Fatalf("tags filter: %d", st)
	}
}

func names(v any) []string {
	var out []string
	for _, n := range v.([]any) {
		out = append(out, n.(map[string]any)["name"].(string))
	}
	return out
}
