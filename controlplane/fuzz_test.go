package controlplane_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/offlane/offlane/controlplane"
)

// fuzzTarget is one place a body goes.
type fuzzTarget struct{ method, path string }

// fuzzFixture is a server with one object of each kind to PUT to.
func fuzzFixture(f *testing.F) (http.Handler, []fuzzTarget, []string) {
	srv, err := controlplane.NewServer(f.Context(), controlplane.ServerConfig{DataDir: f.TempDir(), Auth: controlplane.AuthNoAuth})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = srv.Close() })
	h := srv.Handler()
	do := func(method, path, body string) map[string]any {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		var m map[string]any
		if rec.Code/100 != 2 || json.Unmarshal(rec.Body.Bytes(), &m) != nil {
			f.Fatalf("fixture %s %s: %d %s", method, path, rec.Code, rec.Body)
		}
		return m
	}
	id := func(m map[string]any, k string) string { return m[k].(map[string]any)["id"].(string) }
	ext := id(do("POST", "/v2.0/networks", `{"network": {"name": "ext", "project_id": "p", "router:external": true}}`), "network")
	do("POST", "/v2.0/subnets", `{"subnet": {"network_id": "`+ext+`", "cidr": "203.0.113.0/24", "ip_version": 4}}`)
	net := id(do("POST", "/v2.0/networks", `{"network": {"name": "n", "project_id": "p"}}`), "network")
	sub := id(do("POST", "/v2.0/subnets", `{"subnet": {"network_id": "`+net+`", "cidr": "10.0.0.0/16", "ip_version": 4}}`), "subnet")
	port := id(do("POST", "/v2.0/ports", `{"port": {"network_id": "`+net+`"}}`), "port")
	router := id(do("POST", "/v2.0/routers", `{"router": {"name": "r", "project_id": "p", "external_gateway_info": {"network_id": "`+ext+`"}}}`), "router")
	fip := id(do("POST", "/v2.0/floatingips", `{"floatingip": {"floating_network_id": "`+ext+`", "project_id": "p"}}`), "floatingip")
	sg := id(do("POST", "/v2.0/security-groups", `{"security_group": {"name": "s", "project_id": "p"}}`), "security_group")
	pol := id(do("POST", "/v2.0/qos/policies", `{"policy": {"name": "q", "project_id": "p"}}`), "policy")
	rule := id(do("POST", "/v2.0/qos/policies/"+pol+"/bandwidth_limit_rules", `{"bandwidth_limit_rule": {"max_kbps": 1000}}`), "bandwidth_limit_rule")
	targets := []fuzzTarget{
		{"POST", "/v2.0/networks"}, {"POST", "/v2.0/subnets"}, {"POST", "/v2.0/ports"}, {"POST", "/v2.0/routers"},
		{"POST", "/v2.0/floatingips"}, {"POST", "/v2.0/security-groups"}, {"POST", "/v2.0/security-group-rules"},
		{"POST", "/v2.0/qos/policies"}, {"POST", "/v2.0/qos/policies/" + pol + "/bandwidth_limit_rules"},
		{"POST", "/v2.0/qos/policies/" + pol + "/dscp_marking_rules"}, {"POST", "/v2.0/qos/policies/" + pol + "/minimum_bandwidth_rules"},
		{"PUT", "/v2.0/networks/" + net}, {"PUT", "/v2.0/subnets/" + sub}, {"PUT", "/v2.0/ports/" + port},
		{"PUT", "/v2.0/routers/" + router}, {"PUT", "/v2.0/routers/" + router + "/add_router_interface"},
		{"PUT", "/v2.0/routers/" + router + "/remove_router_interface"}, {"PUT", "/v2.0/floatingips/" + fip},
		{"PUT", "/v2.0/security-groups/" + sg}, {"PUT", "/v2.0/qos/policies/" + pol},
		{"PUT", "/v2.0/qos/policies/" + pol + "/bandwidth_limit_rules/" + rule}, {"PUT", "/v2.0/networks/" + net + "/tags"},
	}
	seeds := []string{
		`{"network": {"name": "x", "project_id": "p", "provider:network_type": "vlan", "provider:physical_network": "ph", "provider:segmentation_id": 7}}`,
		`{"networks": [{"name": "a", "project_id": "p"}, {"name": "b", "project_id": "p", "segments": [{"provider:network_type": "flat", "provider:physical_network": "f"}]}]}`,
		`{"subnet": {"network_id": "` + net + `", "cidr": "2001:db8::/64", "ip_version": 6, "ipv6_address_mode": "slaac", "allocation_pools": [{"start": "2001:db8::5", "end": "2001:db8::9"}], "host_routes": [{"destination": "::/0", "nexthop": "2001:db8::1"}]}}`,
		`{"port": {"network_id": "` + net + `", "fixed_ips": [{"subnet_id": "` + sub + `", "ip_address": "10.0.3.4"}], "binding:vnic_type": "direct", "binding:profile": {"a": [1, {"b": null}]}, "allowed_address_pairs": [{"ip_address": "10.1.0.0/24"}]}}`,
		`{"router": {"name": "r", "project_id": "p", "routes": [{"destination": "0.0.0.0/0", "nexthop": "10.0.0.9"}], "external_gateway_info": {"network_id": "` + ext + `", "enable_snat": "false", "external_fixed_ips": [{"ip_address": "203.0.113.77"}]}}}`,
		`{"subnet_id": "` + sub + `"}`, `{"port_id": "` + port + `"}`,
		`{"floatingip": {"floating_network_id": "` + ext + `", "port_id": "` + port + `", "fixed_ip_address": "10.0.0.2", "project_id": "p"}}`,
		`{"security_group_rule": {"security_group_id": "` + sg + `", "direction": "ingress", "ethertype": "IPv6", "protocol": "58", "port_range_min": 128, "port_range_max": 0, "remote_ip_prefix": "::/0"}}`,
		`{"policy": {"name": "q", "shared": 1, "is_default": "True", "project_id": "p"}}`,
		`{"bandwidth_limit_rule": {"max_kbps": "12", "direction": "ingress"}}`, `{"dscp_marking_rule": {"dscp_mark": 46}}`,
		`{"minimum_bandwidth_rule": {"min_kbps": 1e3}}`, `{"tags": ["a", "b"]}`, `{"network": null}`, `[]`, `{"port": {"mac_address": 7}}`,
		"", "{", `{"network": {"name": "\ud800"}}`, `{"network": {"mtu": 99999999999999999999}}`,
	}
	return h, targets, seeds
}

// FuzzAPIBodies sends arbitrary bytes as the body of every create, update and action:
// the answer is a 2xx with JSON or a 4xx NeutronError, never a 5xx or a panic.
func FuzzAPIBodies(f *testing.F) {
	h, targets, seeds := fuzzFixture(f)
	for i, s := range seeds {
		// Each seed body on its own target and on a few others.
		for j := range targets {
			if j%len(seeds) == i%len(targets) || i == j {
				f.Add(uint8(j), []byte(s))
			}
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		tg := targets[int(which)%len(targets)]
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(tg.method, tg.path, bytes.NewReader(body))
		h.ServeHTTP(rec, req)
		checkAnswer(t, tg.method+" "+tg.path, body, rec)
	})
}

// FuzzAPIQueries sends arbitrary query strings to the list endpoints.
func FuzzAPIQueries(f *testing.F) {
	h, _, _ := fuzzFixture(f)
	cols := []string{"networks", "subnets", "ports", "routers", "floatingips", "security-groups", "security-group-rules", "qos/policies"}
	for i, q := range []string{"limit=2&sort_key=name&sort_dir=desc&page_reverse=True", "fields=id&name=n", "fixed_ips=ip_address%3D10.0.0.2",
		"marker=x&limit=1", "admin_state_up=yes&mtu=1450", "tags-any=a,b&not-tags=c", "sort_key=id&sort_key=name&sort_dir=asc"} {
		f.Add(uint8(i), q)
	}
	f.Fuzz(func(t *testing.T, which uint8, q string) {
		path := "/v2.0/" + cols[int(which)%len(cols)]
		req := httptest.NewRequest("GET", path, nil)
		req.URL.RawQuery = q
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, "GET "+path+"?"+q, nil, rec)
	})
}

func checkAnswer(t *testing.T, what string, body []byte, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("%s with %q: %d %s", what, body, rec.Code, rec.Body)
	}
	if rec.Code == http.StatusNoContent || rec.Code == http.StatusCreated && rec.Body.Len() == 0 {
		return
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("%s with %q: %d body not JSON: %s", what, body, rec.Code, rec.Body)
	}
	if rec.Code >= 400 {
		var e struct{ Type, Message string }
		if err := json.Unmarshal(m["NeutronError"], &e); err != nil || e.Type == "" || e.Message == "" {
			t.Fatalf("%s with %q: %d without a NeutronError: %s", what, body, rec.Code, rec.Body)
		}
	}
}
