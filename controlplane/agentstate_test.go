package controlplane_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/offlane/offlane/controlplane"
)

func TestAgentStateBindingAndHeartbeat(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, filepath.Join(t.TempDir(), "s.db"), controlplane.BoltOptions{})
	for id, host := range map[string]string{"p1": "node1", "p2": "node2"} {
		b, _ := json.Marshal(controlplane.Port{ID: id, NetworkID: "n1", HostID: host, Status: "DOWN", VIFType: "unbound"})
		put(t, st, controlplane.KindPort, id, string(b))
	}
	want := controlplane.PortBinding{Status: controlplane.PortStatusActive, VIFType: "ovs", VIFDetails: map[string]any{"port_filter": true, "mtu": 1450}}
	wrote, err := controlplane.SetPortBinding(ctx, st, "node1", "p1", want)
	if err != nil || !wrote {
		t.Fatalf("first write: %v %v", wrote, err)
	}
	rev := st.Revision()
	// The same binding again (numbers come back as float64 from the store): no write.
	if wrote, err := controlplane.SetPortBinding(ctx, st, "node1", "p1", want); err != nil || wrote || st.Revision() != rev {
		t.Fatalf("repeat wrote=%v err=%v revision %d→%d", wrote, err, rev, st.Revision())
	}
	// A port bound to another host is not this agent's to write.
	if wrote, err := controlplane.SetPortBinding(ctx, st, "node1", "p2", want); err != nil || wrote {
		t.Fatalf("other host's port: wrote=%v err=%v", wrote, err)
	}
	if _, err := controlplane.SetPortBinding(ctx, st, "node1", "gone", want); err == nil {
		t.Fatal("missing port: no error")
	}
	s, err := controlplane.LoadState(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	var p1 controlplane.Port
	for _, p := range s.Ports {
		if p.ID == "p1" {
			p1 = p
		}
	}
	if p1.Status != "ACTIVE" || p1.VIFType != "ovs" || p1.VIFDetails["mtu"] != float64(1450) || p1.RevisionNumber != 1 {
		t.Fatalf("stored port: %+v", p1)
	}
	// What an agent checks before writing: the stored port holds the binding it wrote,
	// and not one that differs in status or details.
	if !controlplane.BindingHolds(&p1, want) {
		t.Error("BindingHolds: the stored port does not hold the binding just written")
	}
	if controlplane.BindingHolds(&p1, controlplane.PortBinding{Status: "DOWN", VIFType: "ovs", VIFDetails: want.VIFDetails}) ||
		controlplane.BindingHolds(&p1, controlplane.PortBinding{Status: "ACTIVE", VIFType: "ovs", VIFDetails: map[string]any{"mtu": 1500}}) {
		t.Error("BindingHolds: a different binding is held")
	}

	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	a := controlplane.Agent{Host: "node1", AgentType: controlplane.AgentTypeOVS, Configurations: map[string]any{"tunneling_ip": "192.0.2.1"}}
	if err := controlplane.Heartbeat(ctx, st, a, now); err != nil {
		t.Fatal(err)
	}
	if err := controlplane.Heartbeat(ctx, st, a, now.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	s, err = controlplane.LoadState(ctx, st)
	if err != nil || len(s.Agents) != 1 {
		t.Fatalf("agents: %+v %v", s.Agents, err)
	}
	got := s.Agents[0]
	if got.ID != controlplane.AgentID("node1") || got.RevisionNumber != 2 || got.StartedAt != "2026-11-22 10:00:00" ||
		got.HeartbeatTimestamp != "2026-11-22 10:00:30" || got.Configurations["tunneling_ip"] != "192.0.2.1" {
		t.Fatalf("agent: %+v", got)
	}
	if !controlplane.AgentAlive(got, now.Add(60*time.Second), time.Minute) || controlplane.AgentAlive(got, now.Add(3*time.Minute), time.Minute) {
		t.Fatal("AgentAlive disagrees with the heartbeat timestamp")
	}
	if err := controlplane.Heartbeat(ctx, st, controlplane.Agent{}, now); err == nil {
		t.Fatal("heartbeat without a host: no error")
	}
}
