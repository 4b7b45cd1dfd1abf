package agent

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
)

func TestPersistedRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, StateFileName)
	p, err := loadPersisted(path, "h1")
	if err != nil || p.Revision != 0 || len(p.LocalVLANs) != 0 {
		t.Fatalf("fresh state: %+v %v", p, err)
	}
	p.Revision, p.LocalVLANs = 42, map[string]uint16{"net-a": 3, "net-b": 7}
	if err := p.save(path); err != nil {
		t.Fatal(err)
	}
	q, err := loadPersisted(path, "h1")
	if err != nil || q.Revision != 42 || q.LocalVLANs["net-b"] != 7 || len(q.LocalVLANs) != 2 {
		t.Fatalf("reloaded: %+v %v", q, err)
	}
	if _, err := loadPersisted(path, "h2"); err == nil || !strings.Contains(err.Error(), "--state-dir") {
		t.Fatalf("another host's state file: %v", err)
	}
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadPersisted(path, "h1"); err == nil || !strings.Contains(err.Error(), "move it away") {
		t.Fatalf("corrupt state file: %v", err)
	}
}

func TestBinding(t *testing.T) {
	a := &Agent{layout: offload.NodeLayout{IntegrationBridge: "br-int", Datapath: "netdev"}}
	up := &ovsdpdk.PortStatus{OFPort: 5, LinkState: "up"}
	l2 := func(b offload.Backend, why string) *offload.PortPlan {
		return &offload.PortPlan{Decisions: []offload.Decision{{Feature: offload.FeatureL2, Backend: b, Reason: why}}}
	}
	cases := []struct {
		name       string
		vnic       string
		admin      bool
		plan       *offload.PortPlan
		status     *ovsdpdk.PortStatus
		flowsIn    bool
		wantStatus string
		wantVIF    string
		wantDetail string // key=value that must be in vif_details
	}{
		{"active", "normal", true, l2(offload.BackendOpenFlow, ""), up, true, "ACTIVE", VIFTypeOVS, "bridge_name=br-int"},
		{"not plugged", "normal", true, l2(offload.BackendOpenFlow, ""), nil, false, "DOWN", VIFTypeOVS, "datapath_type=netdev"},
		{"link down", "normal", true, l2(offload.BackendOpenFlow, ""), &ovsdpdk.PortStatus{OFPort: 5, LinkState: "down"}, true, "DOWN", VIFTypeOVS, ""},
		{"admin down", "normal", false, l2(offload.BackendOpenFlow, ""), up, true, "DOWN", VIFTypeOVS, ""},
		// what the planner really gives an admin-down port: no backend (it passes nothing);
		// still bound, DOWN, not a binding failure
		{"admin down planned none", "normal", false, l2(offload.BackendNone, "admin_state_up is false"), up, false, "DOWN", VIFTypeOVS, "bridge_name=br-int"},
		{"admin down vhost-user", "vhost-user", false, l2(offload.BackendNone, "admin_state_up is false"), nil, false, "DOWN", VIFTypeVhostUser, "vhostuser_mode=server"},
		{"flows not in", "normal", true, l2(offload.BackendOpenFlow, ""), up, false, "DOWN", VIFTypeOVS, ""},
		{"no backend", "normal", true, l2(offload.BackendNone, "no tunnel bridge"), up, true, "ERROR", VIFTypeBindingFailed, "reason=no tunnel bridge"},
		{"ovs error", "vhost-user", true, l2(offload.BackendOpenFlow, ""), &ovsdpdk.PortStatus{OFPort: -1, Error: "could not open"}, false, "ERROR", VIFTypeVhostUser, "reason=could not open"},
		{"vhost-user", "vhost-user", true, l2(offload.BackendOpenFlow, ""), &ovsdpdk.PortStatus{OFPort: 3, LinkState: "up", SocketPath: "/run/vhu1"}, true, "ACTIVE", VIFTypeVhostUser, "vhostuser_socket=/run/vhu1"},
		{"vhost-user mode", "vhost-user", true, l2(offload.BackendOpenFlow, ""), nil, false, "DOWN", VIFTypeVhostUser, "vhostuser_mode=server"},
		{"sriov legacy", "direct", true, l2(offload.BackendVF, ""), up, true, "ACTIVE", VIFTypeHwVeb, ""},
		{"sriov switchdev", "direct", true, l2(offload.BackendTC, ""), up, true, "ACTIVE", VIFTypeOVS, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := a.binding(portView{port: &controlplane.Port{VNICType: c.vnic, AdminStateUp: c.admin}, plan: c.plan, status: c.status, flowsIn: c.flowsIn})
			if b.Status != c.wantStatus || b.VIFType != c.wantVIF {
				t.Fatalf("got %s/%s, want %s/%s (details %v)", b.Status, b.VIFType, c.wantStatus, c.wantVIF, b.VIFDetails)
			}
			if c.wantDetail != "" {
				k, v, _ := strings.Cut(c.wantDetail, "=")
				if got, _ := b.VIFDetails[k].(string); got != v {
					t.Fatalf("vif_details[%s] = %v, want %s", k, b.VIFDetails[k], v)
				}
			}
		})
	}
}

func TestVTEPsAndRelevance(t *testing.T) {
	ag := func(host, ip string) controlplane.Agent {
		return controlplane.Agent{Host: host, Configurations: map[string]any{"tunneling_ip": ip}}
	}
	v := vtepsOf([]controlplane.Agent{ag("me", "192.0.2.1"), ag("h2", "192.0.2.2"), ag("h3", "not-an-ip")}, "me")
	if len(v) != 1 || v["h2"] != netip.MustParseAddr("192.0.2.2") {
		t.Fatalf("vteps: %v", v)
	}
	a := &Agent{cfg: Config{Host: "me"}, vteps: v, last: Result{IR: &offload.IR{}}, written: map[string]controlplane.PortBinding{}}
	// the cached port p1, bound here, whose binding the agent wrote as ACTIVE
	p1 := controlplane.Port{ID: "p1", HostID: "me", MACAddress: "fa:16:3e:00:00:01", Status: "DOWN"}
	a.cache.reset(&controlplane.State{Ports: []controlplane.Port{p1}})
	wrote := controlplane.PortBinding{Status: "ACTIVE", VIFType: "ovs", VIFDetails: map[string]any{"port_filter": true}}
	a.written["p1"] = wrote
	encPort := func(p controlplane.Port) []byte {
		b, _ := json.Marshal(p)
		return b
	}
	own := p1
	own.Status, own.VIFType, own.VIFDetails, own.RevisionNumber = wrote.Status, wrote.VIFType, wrote.VIFDetails, 2
	moved := own
	moved.MACAddress = "fa:16:3e:00:00:02"
	other := own
	other.Status = "DOWN" // someone else's status write: the agent must correct it
	for _, c := range []struct {
		p    controlplane.Port
		want bool
	}{{own, false}, {moved, true}, {other, true}} {
		ev := controlplane.Event{Kind: controlplane.KindPort, Type: controlplane.EventUpdated, ID: "p1", Value: encPort(c.p)}
		prev, err := a.cache.apply(ev)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.relevant(ev, prev); got != c.want {
			t.Errorf("port update %+v: relevant = %v, want %v", c.p, got, c.want)
		}
		if _, err := a.cache.apply(controlplane.Event{Kind: controlplane.KindPort, Type: controlplane.EventUpdated, ID: "p1", Value: encPort(p1)}); err != nil {
			t.Fatal(err)
		}
	}
	enc := func(x controlplane.Agent) []byte {
		b, _ := json.Marshal(x)
		return b
	}
	for _, c := range []struct {
		ev   controlplane.Event
		want bool
	}{
		{controlplane.Event{Kind: controlplane.KindPort, Type: controlplane.EventCreated}, true},
		{controlplane.Event{Kind: controlplane.KindSecGroupRule, Type: controlplane.EventCreated}, false}, // its group's event comes too
		{controlplane.Event{Kind: controlplane.KindAgent, Value: enc(ag("me", "192.0.2.9"))}, false},      // own heartbeat
		{controlplane.Event{Kind: controlplane.KindAgent, Value: enc(ag("h2", "192.0.2.2"))}, false},      // same VTEP
		{controlplane.Event{Kind: controlplane.KindAgent, Value: enc(ag("h2", "192.0.2.20"))}, true},      // moved
		{controlplane.Event{Kind: controlplane.KindAgent, Value: enc(ag("h4", "192.0.2.4"))}, true},       // new node
	} {
		if got := a.relevant(c.ev, nil); got != c.want {
			t.Errorf("relevant(%s %s) = %v, want %v", c.ev.Kind, c.ev.Value, got, c.want)
		}
	}
}

func TestVhostUserName(t *testing.T) {
	// time-ordered IDs share their first characters: the name takes the random end
	if got := vhostUserName("01a201b7-fb25-72a6-8977-11c2f9ca9d45"); got != "vhu1c2f9ca9d45" {
		t.Fatalf("got %q", got)
	}
}
