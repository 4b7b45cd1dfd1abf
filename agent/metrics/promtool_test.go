package metrics_test

import (
	"bytes"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/offlane/offlane/agent/metrics"
	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/offload"
)

// needBinary returns the path of a tool a test needs; it skips when the tool is missing,
// except under CI=true, where the tool is part of the environment and its absence fails.
func needBinary(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found under CI=true: deploy/install-deps.sh installs Debian package %s", name, pkg)
	}
	t.Skipf("%s not found: install Debian package %s (deploy/install-deps.sh) to run this test", name, pkg)
	return ""
}

// fullMetrics is a Metrics with every series populated from a stateful fake node.
func fullMetrics(t *testing.T) (*metrics.Metrics, *prometheus.Registry) {
	t.Helper()
	n := newFakeNode()
	n.plug("tap-a", "port-a", "net-1", "proj-1")
	n.plug("vhu-b", "port-b", "net-2", "proj-2")
	n.send("tap-a", "vhu-b", 100, 1000, 3)
	n.link("tap-a", "up")
	n.flows = []offload.Flow{{Bridge: "br-int", Table: 0}, {Bridge: "br-int", Table: 60}}
	n.dpFlows = []metrics.DatapathFlowCount{{Datapath: "ovs", Offloaded: "no", Flows: 4}}
	n.pmdText = pmdCapture(t, "ovs-3.1-dpdk-pmd.txt")
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, n, metrics.Options{Version: "v0.0.0-test", Node: &hwdetect.Node{NICs: []hwdetect.NIC{
		{Name: "eth0", Driver: "virtio_net", RecommendedMode: hwdetect.ModeKernel}}}})
	m.SetPlan(&offload.Plan{Ports: []offload.PortPlan{{PortID: "port-a", Decisions: []offload.Decision{
		{Feature: offload.FeatureL2, Backend: offload.BackendOpenFlow, Reason: `vnic normal: "tap" on br-int`}}}},
		Routers: []offload.RouterPlan{{RouterID: "r1", Backend: offload.BackendOpenFlow, Reason: "l3 in OpenFlow"}}})
	m.ObserveReconcile(true, 50*time.Millisecond, 10, nil)
	m.ObserveReconcile(false, 5*time.Millisecond, 0, os.ErrDeadlineExceeded)
	m.ObserveFlowSync(metrics.FlowSync{Added: 3, Modified: 1, Deleted: 2, Bundled: true, Took: 4 * time.Millisecond})
	m.ObserveOVSDB(2 * time.Millisecond)
	m.SetWatchLag(0)
	m.SetOVSDBConnected(true)
	return m, reg
}

// TestPromtoolCheckMetrics runs Prometheus's own linter on a real scrape of /metrics.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool := needBinary(t, "promtool", "prometheus")
	m, _ := fullMetrics(t)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	code, body := get(t, srv, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, name := range []string{"offlane_port_rx_packets_total", "offlane_feature_backend", "offlane_pmd_utilization_ratio",
		"offlane_reconcile_duration_seconds_bucket", "offlane_build_info", "offlane_nic_info", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("scrape lacks %s", name)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
	t.Logf("promtool check metrics: ok (%d bytes, %d lines)", len(body), strings.Count(body, "\n"))
}
