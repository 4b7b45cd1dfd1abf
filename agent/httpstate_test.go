package agent_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/offlane/offlane/agent"
	"github.com/offlane/offlane/controlplane"
)

// httpServer is a real API server on a bbolt file with a short event log.
func httpServer(t *testing.T, auth controlplane.AuthMode) (*controlplane.Server, *httptest.Server, controlplane.Store) {
	t.Helper()
	st, err := controlplane.OpenBolt(context.Background(), filepath.Join(t.TempDir(), "offlane.db"), controlplane.BoltOptions{EventRetention: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cfg := controlplane.ServerConfig{Store: st, Auth: auth, Logger: zaptest.NewLogger(t)}
	if auth == controlplane.AuthToken {
		cfg.Tokens = map[string]controlplane.Token{"adm": {ProjectID: "p", Roles: []string{"admin"}}, "mem": {ProjectID: "p", Roles: []string{"member"}}}
	}
	srv, err := controlplane.NewServer(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return srv, hs, st
}

func createNetwork(t *testing.T, url, token, name string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/v2.0/networks", strings.NewReader(`{"network": {"name": "`+name+`", "project_id": "p"}}`))
	req.Header.Set("X-Auth-Token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create network %s: %v %v", name, err, resp)
	}
	resp.Body.Close()
}

func TestHTTPStateAgainstServer(t *testing.T) {
	_, hs, st := httpServer(t, controlplane.AuthToken)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h, err := agent.NewHTTPState(hs.URL+"/v2.0", hs.Client(), "adm")
	if err != nil {
		t.Fatal(err)
	}
	createNetwork(t, hs.URL, "adm", "n1")
	s, err := h.Load(ctx)
	if err != nil || len(s.Networks) != 1 || s.Networks[0].Name != "n1" || s.Revision != st.Revision() {
		t.Fatalf("Load: %+v %v (store at %d)", s, err, st.Revision())
	}

	// watch: the next change arrives as a store event with its value; Revision follows
	events, werr, err := h.Watch(ctx, s.Revision)
	if err != nil {
		t.Fatal(err)
	}
	createNetwork(t, hs.URL, "adm", "n2")
	ev := <-events
	if ev.Kind != controlplane.KindNetwork || ev.Type != controlplane.EventCreated || ev.Revision != s.Revision+1 || !strings.Contains(string(ev.Value), `"n2"`) {
		t.Fatalf("event %+v value %s", ev, ev.Value)
	}
	if rev, _ := h.Revision(ctx); rev != ev.Revision {
		t.Fatalf("Revision %d, want %d", rev, ev.Revision)
	}

	// heartbeat, then bindings: a missing port is ErrNotFound (the agent skips it)
	if err := h.Heartbeat(ctx, controlplane.Agent{AgentType: controlplane.AgentTypeOVS, Host: "h1",
		Configurations: map[string]any{"tunneling_ip": "192.0.2.7"}}); err != nil {
		t.Fatal(err)
	}
	if s, err = h.Load(ctx); err != nil || len(s.Agents) != 1 || s.Agents[0].Configurations["tunneling_ip"] != "192.0.2.7" {
		t.Fatalf("agents after heartbeat: %+v %v", s, err)
	}
	if _, err := h.SetPortBinding(ctx, "h1", "nope", controlplane.PortBinding{Status: "ACTIVE", VIFType: "ovs"}); !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("binding of a missing port: %v, want ErrNotFound", err)
	}

	// the history moves on: an old revision is 410 Gone → ErrCompacted (the agent resyncs)
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		createNetwork(t, hs.URL, "adm", n)
	}
	if _, _, err := h.Watch(ctx, 1); !errors.Is(err, controlplane.ErrCompacted) {
		t.Fatalf("watch from a compacted revision: %v, want ErrCompacted", err)
	}

	// a non-admin token is refused with the server's message
	m, _ := agent.NewHTTPState(hs.URL, hs.Client(), "mem")
	if _, err := m.Load(ctx); err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "disallowed by policy") {
		t.Fatalf("member Load: %v, want 403 disallowed by policy", err)
	}

	// the server going away ends the stream with an error (the agent then reconnects
	// with backoff and reconciles in full)
	drained := make(chan struct{})
	go func() {
		for range events {
		}
		close(drained)
	}()
	hs.CloseClientConnections()
	select {
	case <-drained:
	case <-ctx.Done():
		t.Fatal("watch stream did not end when the server dropped it")
	}
	if werr() == nil {
		t.Fatal("ended watch reports no error")
	}
	if _, err := agent.NewHTTPState("ftp://x", nil, ""); err == nil {
		t.Fatal("NewHTTPState accepted an ftp URL")
	}
}
