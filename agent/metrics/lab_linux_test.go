package metrics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/offlane/offlane/agent/metrics"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

// TestLabPrometheusScrape: a real Prometheus server (Debian's prometheus) scrapes the
// metrics handler of a real OVS lab where two netns VMs exchange pings; PromQL over its
// HTTP API returns offlane_build_info, the planner's decisions, and the tenant port's
// rx/tx packet counters, which grow by at least the pings sent.
func TestLabPrometheusScrape(t *testing.T) {
	lab.Require(t, "prometheus")
	o := lab.StartOVS(t, lab.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	c, err := ovsdpdk.Connect(ctx, ovsdpdk.Options{Endpoint: o.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg, err := ovsdpdk.ParseNodeConfig("node.yaml", strings.NewReader("datapath: netdev\nintegration_bridge: br-int\n"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ovsdpdk.Resolve(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApplyNode(ctx, ovsdpdk.NodeLayout(spec), ovsdpdk.ApplyOptions{Wait: true}); err != nil {
		t.Fatal(err)
	}
	if out, err := o.Ofctl("add-flow", "br-int", "priority=1,actions=NORMAL"); err != nil {
		t.Fatal(out, err)
	}
	vm1 := o.AddVM(t, "vm1", lab.VMOptions{IP: "10.0.0.1/24"})
	vm2 := o.AddVM(t, "vm2", lab.VMOptions{IP: "10.0.0.2/24"})
	if err := ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{}).PortAdd(ctx,
		ovsdpdk.Port{Name: "vm1", Type: ovsdpdk.PortSystem, IfaceID: "port-1", MAC: vm1.MAC},
		ovsdpdk.Port{Name: "vm2", Type: ovsdpdk.PortSystem, IfaceID: "port-2", MAC: vm2.MAC}); err != nil {
		t.Fatal(err)
	}

	// The agent's side: what it compiled, and the real OVS readers.
	ports := []metrics.PortInfo{{ID: "port-1", NetworkID: "net-1", ProjectID: "proj-1"}, {ID: "port-2", NetworkID: "net-1", ProjectID: "proj-1"}}
	unixctl := ovsdpdk.NewUnixctl(ovsdpdk.UnixctlOptions{Target: filepath.Join(o.Dir, "ovs-vswitchd.ctl"), RunDir: o.Dir})
	src := metrics.SourceFuncs{
		PortsFunc:          func() []metrics.PortInfo { return ports },
		InterfaceStatsFunc: c.InterfaceStats,
		PMDStatsFunc:       unixctl.PMDStats,
	}
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, src, metrics.Options{Version: "lab", OVSDBConnected: c.Connected})
	m.SetPlan(&offload.Plan{Ports: []offload.PortPlan{
		{PortID: "port-1", Decisions: []offload.Decision{{Feature: offload.FeatureL2, Backend: offload.BackendOpenFlow, Reason: "vnic normal"}}},
		{PortID: "port-2", Decisions: []offload.Decision{{Feature: offload.FeatureL2, Backend: offload.BackendOpenFlow, Reason: "vnic normal"}}}}})
	m.ObserveReconcile(true, 20*time.Millisecond, 2, nil)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	if code, body := httpGet(t, "http://"+ln.Addr().String()+"/readyz"); code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}

	prom := startPrometheus(t, ln.Addr().String())
	// Prometheus has scraped once the target's up is 1.
	waitQuery(t, prom, `up{job="offlane"}`, func(v float64) bool { return v == 1 })
	waitQuery(t, prom, `offlane_build_info{version="lab"}`, func(v float64) bool { return v == 1 })
	waitQuery(t, prom, `offlane_feature_backend{feature="l2",backend="openflow",reason="vnic normal"}`, func(v float64) bool { return v == 2 })
	waitQuery(t, prom, `offlane_pmd_packets_received_total{thread="main"}`, func(v float64) bool { return v >= 0 })

	rx := `offlane_port_rx_packets_total{port="port-1",network="net-1",project="proj-1",interface="vm1"}`
	tx := `offlane_port_tx_packets_total{port="port-2",network="net-1",project="proj-1",interface="vm2"}`
	rx0 := waitQuery(t, prom, rx, func(float64) bool { return true })
	tx0 := waitQuery(t, prom, tx, func(float64) bool { return true })
	const pings = 10
	if out, err := vm1.Ping(vm2.IP, pings); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	// ovs-vswitchd writes statistics into OVSDB every 5 s; Prometheus scrapes every 1 s.
	rx1 := waitQuery(t, prom, rx, func(v float64) bool { return v >= rx0+pings })
	tx1 := waitQuery(t, prom, tx, func(v float64) bool { return v >= tx0+pings })
	waitQuery(t, prom, `offlane_port_link_up{port="port-1"}`, func(v float64) bool { return v == 1 })
	t.Logf("PromQL after %d pings: %s %v -> %v; %s %v -> %v", pings, rx, rx0, rx1, tx, tx0, tx1)
}

// startPrometheus runs the prometheus server on 127.0.0.1 with a temporary config and
// storage, scraping target every second; it is stopped by PID at cleanup. It returns
// the server's base URL.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: offlane\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// A free port for the server's own listener.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("prometheus", "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr,
		"--web.console.templates="+dir, "--web.console.libraries="+dir, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("prometheus (pid %d) log:\n%s", cmd.Process.Pid, b)
		}
	})
	base := "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		select {
		case <-done:
			t.Fatal("prometheus exited at start (log below)")
		default:
		}
		if code, _ := httpGetErr(base + "/-/ready"); code == 200 {
			return base
		}
		if time.Now().After(deadline) {
			t.Fatal("prometheus not ready after 30 s")
		}
	}
}

// waitQuery runs an instant PromQL query until it returns exactly one sample whose value
// satisfies ok (30 s at most), and returns that value.
func waitQuery(t *testing.T, base, query string, ok func(float64) bool) float64 {
	t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		code, body := httpGetErr(base + "/api/v1/query?query=" + url.QueryEscape(query))
		last = fmt.Sprintf("%d %s", code, body)
		if code != 200 {
			continue
		}
		var r struct {
			Status string `json:"status"`
			Data   struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("query %s: %v: %s", query, err, body)
		}
		if r.Status != "success" || len(r.Data.Result) != 1 {
			continue
		}
		s, _ := r.Data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err == nil && ok(v) {
			return v
		}
	}
	t.Fatalf("PromQL %s: no matching sample within 30 s; last answer: %s", query, last)
	return 0
}

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	code, body := httpGetErr(u)
	if code == 0 {
		t.Fatalf("GET %s: %s", u, body)
	}
	return code, body
}

func httpGetErr(u string) (int, string) {
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}
