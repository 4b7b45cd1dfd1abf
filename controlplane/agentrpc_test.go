package controlplane_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/offlane/offlane/controlplane"
)

func rpcMessage(m map[string]any) string {
	ne, _ := m["NeutronError"].(map[string]any)
	s, _ := ne["message"].(string)
	return s
}

func TestAgentRPCInputErrorsNameTheField(t *testing.T) {
	e := newEnv(t, controlplane.AuthToken)
	// a port bound to host-a to write bindings on
	code, body := e.raw("POST", "/v2.0/networks", "tok-admin", `{"network": {"name": "n"}}`)
	if code != http.StatusCreated {
		t.Fatalf("create network: %d %v", code, body)
	}
	netID := body["network"].(map[string]any)["id"].(string)
	code, body = e.raw("POST", "/v2.0/ports", "tok-admin", `{"port": {"network_id": "`+netID+`", "binding:host_id": "host-a"}}`)
	if code != http.StatusCreated {
		t.Fatalf("create port: %d %v", code, body)
	}
	portID := body["port"].(map[string]any)["id"].(string)

	for _, tc := range []struct {
		method, path, body, field string
	}{
		{"PUT", "/v2.0/offlane/bindings/" + portID, `{"status": "ACTIVE", "vif_type": "ovs"}`, "host"},
		{"PUT", "/v2.0/offlane/bindings/" + portID, `{"host": "host-a", "status": "UP", "vif_type": "ovs"}`, "status"},
		{"PUT", "/v2.0/offlane/bindings/" + portID, `{"host": "host-a", "status": "ACTIVE"}`, "vif_type"},
		{"PUT", "/v2.0/offlane/bindings/" + portID, `{"host": "host-a", "colour": "red"}`, "colour"},
		{"PUT", "/v2.0/offlane/bindings/" + portID, `not json`, "binding"},
		{"POST", "/v2.0/offlane/heartbeat", `{"agent_type": "Open vSwitch agent"}`, "host"},
		{"POST", "/v2.0/offlane/heartbeat", `{"host": "h"}`, "agent_type"},
		{"POST", "/v2.0/offlane/heartbeat", `{"id": "x", "host": "h", "agent_type": "Open vSwitch agent"}`, "id"},
		{"GET", "/v2.0/offlane/watch", ``, "from"},
		{"GET", "/v2.0/offlane/watch?from=abc", ``, "from"},
		{"GET", "/v2.0/offlane/watch?from=-1", ``, "from"},
	} {
		code, body := e.raw(tc.method, tc.path, "tok-admin", tc.body)
		if code != http.StatusBadRequest || !strings.Contains(rpcMessage(body), tc.field) {
			t.Errorf("%s %s %s: want 400 naming %q, got %d %q", tc.method, tc.path, tc.body, tc.field, code, rpcMessage(body))
		}
	}
	// nothing was half applied: the port is untouched, no agent registered
	code, body = e.raw("GET", "/v2.0/ports/"+portID, "tok-admin", "")
	if st := body["port"].(map[string]any)["status"]; code != 200 || st != "DOWN" {
		t.Fatalf("port after rejected bindings: %d status %v, want DOWN", code, st)
	}
	if code, body = e.raw("GET", "/v2.0/agents", "tok-admin", ""); code != 200 || len(body["agents"].([]any)) != 0 {
		t.Fatalf("agents after rejected heartbeats: %d %v", code, body)
	}

	// a good binding and heartbeat are applied and read back
	code, body = e.raw("PUT", "/v2.0/offlane/bindings/"+portID, "tok-admin", `{"host": "host-a", "status": "ACTIVE", "vif_type": "ovs", "vif_details": {"port_filter": true}}`)
	if code != 200 || body["written"] != true {
		t.Fatalf("binding: %d %v", code, body)
	}
	code, body = e.raw("GET", "/v2.0/ports/"+portID, "tok-admin", "")
	if p, _ := body["port"].(map[string]any); code != 200 || p["status"] != "ACTIVE" || p["binding:vif_type"] != "ovs" {
		t.Fatalf("port after binding: %d %v", code, body)
	}
	code, body = e.raw("PUT", "/v2.0/offlane/bindings/"+portID, "tok-admin", `{"host": "host-b", "status": "DOWN", "vif_type": "ovs"}`)
	if code != 200 || body["written"] != false {
		t.Fatalf("binding from another host: %d %v, want written=false", code, body)
	}
	if code, _ = e.raw("PUT", "/v2.0/offlane/bindings/no-such-port", "tok-admin", `{"host": "host-a", "status": "DOWN", "vif_type": "ovs"}`); code != 404 {
		t.Fatalf("binding of a missing port: %d, want 404", code)
	}
	code, body = e.raw("POST", "/v2.0/offlane/heartbeat", "tok-admin", `{"host": "host-a", "agent_type": "Open vSwitch agent", "configurations": {"tunneling_ip": "192.0.2.1"}}`)
	if code != 200 || body["id"] != controlplane.AgentID("host-a") {
		t.Fatalf("heartbeat: %d %v", code, body)
	}
	code, body = e.raw("GET", "/v2.0/agents/"+controlplane.AgentID("host-a"), "tok-admin", "")
	ag, _ := body["agent"].(map[string]any)
	if code != 200 || ag["alive"] != true || ag["host"] != "host-a" || ag["configurations"].(map[string]any)["tunneling_ip"] != "192.0.2.1" {
		t.Fatalf("agent: %d %v", code, body)
	}
	code, body = e.raw("GET", "/v2.0/offlane/state", "tok-admin", "")
	if code != 200 || len(body["Ports"].([]any)) != 1 || len(body["Agents"].([]any)) != 1 || body["Revision"].(float64) < 1 {
		t.Fatalf("state: %d %v", code, body)
	}
}

func TestAgentRPCAdminOnly(t *testing.T) {
	e := newEnv(t, controlplane.AuthToken)
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/v2.0/offlane/state", ""},
		{"GET", "/v2.0/offlane/watch?from=0", ""},
		{"PUT", "/v2.0/offlane/bindings/p1", `{"host": "h", "status": "ACTIVE", "vif_type": "ovs"}`},
		{"POST", "/v2.0/offlane/heartbeat", `{"host": "h", "agent_type": "Open vSwitch agent"}`},
		{"GET", "/v2.0/agents", ""},
	} {
		for _, tok := range []string{"tok-a", "tok-reader"} {
			if code, body := e.raw(tc.method, tc.path, tok, tc.body); code != http.StatusForbidden {
				t.Errorf("%s %s as %s: %d %v, want 403", tc.method, tc.path, tok, code, body)
			}
		}
		if code, _ := e.raw(tc.method, tc.path, "", tc.body); code != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d, want 401", tc.method, tc.path, code)
		}
	}
	if code, body := e.raw("GET", "/v2.0/agents", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("agents without token: %d %v", code, body)
	}
	// noauth is admin
	n := newEnv(t, controlplane.AuthNoAuth)
	if code, body := n.raw("GET", "/v2.0/offlane/state", "", ""); code != 200 {
		t.Fatalf("state on noauth: %d %v", code, body)
	}
}

func TestAgentRPCWatch(t *testing.T) {
	dir := t.TempDir()
	st, err := controlplane.OpenBolt(context.Background(), filepath.Join(dir, "offlane.db"), controlplane.BoltOptions{EventRetention: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	srv, err := controlplane.NewServer(context.Background(), controlplane.ServerConfig{Store: st, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	post := func(name string) {
		resp, err := http.Post(hs.URL+"/v2.0/networks", "application/json", strings.NewReader(`{"network": {"name": "`+name+`", "project_id": "p1"}}`))
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("create network %s: %v %v", name, err, resp)
		}
		resp.Body.Close()
	}

	// live: a watch from now streams the next creation as one JSON line, with its value
	rev := st.Revision()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", hs.URL+"/v2.0/offlane/watch?from="+itoa(rev), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("watch: %v %v", err, resp)
	}
	post("live")
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() {
		t.Fatalf("watch stream ended: %v", sc.Err())
	}
	var ev controlplane.WireEvent
	if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
		t.Fatalf("event line %q: %v", sc.Bytes(), err)
	}
	var n controlplane.Network
	if err := json.Unmarshal(ev.Value, &n); err != nil || ev.Kind != controlplane.KindNetwork || ev.Type != controlplane.EventCreated ||
		ev.Revision != rev+1 || n.Name != "live" || ev.Head < ev.Revision {
		t.Fatalf("event %+v (network %+v, %v)", ev, n, err)
	}
	cancel()
	resp.Body.Close()

	// compacted: enough writes push revision 0 out of the log → 410 Gone
	for i := 0; i < 20; i++ {
		post("n" + itoa(int64(i)))
	}
	r2, err := http.Get(hs.URL + "/v2.0/offlane/watch?from=1")
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(r2.Body).Decode(&body)
	if r2.StatusCode != http.StatusGone || !strings.Contains(rpcMessage(body), "compacted") {
		t.Fatalf("watch from a compacted revision: %d %v, want 410 compacted", r2.StatusCode, body)
	}
}

func itoa(i int64) string { b, _ := json.Marshal(i); return string(b) }
