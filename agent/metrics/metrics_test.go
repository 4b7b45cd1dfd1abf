package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/offlane/offlane/agent/metrics"
	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
)

// fakeNode is a Sources that holds a node's state: tenant interfaces whose counters grow
// with the traffic the test sends, the agent's compiled flows, the datapath flows and
// pmd-stats-show output (parsed by the real parser at every read).
type fakeNode struct {
	mu       sync.Mutex
	ports    []metrics.PortInfo
	ifaces   map[string]*ovsdpdk.InterfaceStats // by interface name
	flows    []offload.Flow
	dpFlows  []metrics.DatapathFlowCount
	pmdText  string
	ifErr    error
	hang     bool // InterfaceStats blocks until its context ends
	reads    int
	lastDead time.Time // the deadline InterfaceStats was given
}

func newFakeNode() *fakeNode { return &fakeNode{ifaces: map[string]*ovsdpdk.InterfaceStats{}} }

// plug attaches an interface for a port (as the agent's vif plug would) and, when
// network is set, records that the agent compiled the port.
func (f *fakeNode) plug(name, portID, network, project string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ifaces[name] = &ovsdpdk.InterfaceStats{Name: name, IfaceID: portID, LinkState: "down",
		Statistics: map[string]uint64{"rx_packets": 0, "tx_packets": 0, "rx_bytes": 0, "tx_bytes": 0, "rx_dropped": 0, "tx_dropped": 0, "rx_errors": 0, "tx_errors": 0}}
	if network != "" {
		f.ports = append(f.ports, metrics.PortInfo{ID: portID, NetworkID: network, ProjectID: project})
	}
}

func (f *fakeNode) unplug(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.ifaces[name].IfaceID
	delete(f.ifaces, name)
	for i, p := range f.ports {
		if p.ID == id {
			f.ports = append(f.ports[:i], f.ports[i+1:]...)
			break
		}
	}
}

func (f *fakeNode) link(name, state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ifaces[name].LinkState = state
}

// send moves n packets of size bytes from interface a's VM to b's VM: the switch
// receives them on a and transmits them on b; drops of them are lost on b.
func (f *fakeNode) send(a, b string, n, size, drops int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sa, sb := f.ifaces[a].Statistics, f.ifaces[b].Statistics
	sa["rx_packets"] += uint64(n)
	sa["rx_bytes"] += uint64(n * size)
	sb["tx_packets"] += uint64(n - drops)
	sb["tx_bytes"] += uint64((n - drops) * size)
	sb["tx_dropped"] += uint64(drops)
}

func (f *fakeNode) Ports() []metrics.PortInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]metrics.PortInfo(nil), f.ports...)
}

func (f *fakeNode) InterfaceStats(ctx context.Context) ([]ovsdpdk.InterfaceStats, error) {
	f.mu.Lock()
	f.reads++
	f.lastDead, _ = ctx.Deadline()
	hang, err := f.hang, f.ifErr
	var out []ovsdpdk.InterfaceStats
	for _, s := range f.ifaces {
		c := *s
		c.Statistics = map[string]uint64{}
		for k, v := range s.Statistics {
			c.Statistics[k] = v
		}
		out = append(out, c)
	}
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return out, err
}

func (f *fakeNode) FlowCounts() []metrics.FlowCount {
	f.mu.Lock()
	defer f.mu.Unlock()
	return metrics.CountFlows(offload.BackendOpenFlow, f.flows)
}

func (f *fakeNode) DatapathFlows(context.Context) ([]metrics.DatapathFlowCount, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]metrics.DatapathFlowCount(nil), f.dpFlows...), nil
}

func (f *fakeNode) PMDStats(context.Context) ([]ovsdpdk.PMDStats, error) {
	f.mu.Lock()
	text := f.pmdText
	f.mu.Unlock()
	if text == "" {
		return nil, fmt.Errorf("pmd stats: %w", ovsdpdk.ErrNoNetdevDatapath)
	}
	return ovsdpdk.ParsePMDStats(strings.NewReader(text))
}

func newMetrics(t *testing.T, src metrics.Sources, opts metrics.Options) (*metrics.Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.NoRuntimeCollectors = true
	return metrics.New(reg, src, opts), reg
}

func compare(t *testing.T, reg *prometheus.Registry, want string, names ...string) {
	t.Helper()
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

const portHelp = `# HELP offlane_port_rx_packets_total Packets the switch received from the tenant port (OVS Interface statistics rx_packets).
# TYPE offlane_port_rx_packets_total counter
`

func TestPortCounters(t *testing.T) {
	n := newFakeNode()
	n.plug("tap-a", "port-a", "net-1", "proj-1")
	n.plug("tap-b", "port-b", "net-1", "proj-1")
	n.plug("foreign", "port-x", "", "") // iface-id the agent has not compiled (yet)
	_, reg := newMetrics(t, n, metrics.Options{})

	n.send("tap-a", "tap-b", 10, 100, 2)
	n.send("tap-b", "tap-a", 8, 60, 0)
	n.link("tap-a", "up")
	compare(t, reg, portHelp+`offlane_port_rx_packets_total{interface="foreign",network="",port="port-x",project=""} 0
offlane_port_rx_packets_total{interface="tap-a",network="net-1",port="port-a",project="proj-1"} 10
offlane_port_rx_packets_total{interface="tap-b",network="net-1",port="port-b",project="proj-1"} 8
`, "offlane_port_rx_packets_total")
	compare(t, reg, `# HELP offlane_port_tx_dropped_packets_total Packets to the tenant port dropped on transmit (tx_dropped).
# TYPE offlane_port_tx_dropped_packets_total counter
offlane_port_tx_dropped_packets_total{interface="foreign",network="",port="port-x",project=""} 0
offlane_port_tx_dropped_packets_total{interface="tap-a",network="net-1",port="port-a",project="proj-1"} 0
offlane_port_tx_dropped_packets_total{interface="tap-b",network="net-1",port="port-b",project="proj-1"} 2
# HELP offlane_port_tx_bytes_total Bytes the switch sent to the tenant port (tx_bytes).
# TYPE offlane_port_tx_bytes_total counter
offlane_port_tx_bytes_total{interface="foreign",network="",port="port-x",project=""} 0
offlane_port_tx_bytes_total{interface="tap-a",network="net-1",port="port-a",project="proj-1"} 480
offlane_port_tx_bytes_total{interface="tap-b",network="net-1",port="port-b",project="proj-1"} 800
# HELP offlane_port_link_up 1 when OVS reports the tenant port's link up, 0 when down (absent while not reported).
# TYPE offlane_port_link_up gauge
offlane_port_link_up{interface="foreign",network="",port="port-x",project=""} 0
offlane_port_link_up{interface="tap-a",network="net-1",port="port-a",project="proj-1"} 1
offlane_port_link_up{interface="tap-b",network="net-1",port="port-b",project="proj-1"} 0
`, "offlane_port_tx_dropped_packets_total", "offlane_port_tx_bytes_total", "offlane_port_link_up")

	// More traffic: the counters grow. An unplugged port's series leave; a port whose
	// counter OVS does not keep has no series for it (not a 0).
	n.send("tap-a", "tap-b", 5, 100, 0)
	n.unplug("foreign")
	n.mu.Lock()
	delete(n.ifaces["tap-b"].Statistics, "rx_packets")
	n.mu.Unlock()
	compare(t, reg, portHelp+`offlane_port_rx_packets_total{interface="tap-a",network="net-1",port="port-a",project="proj-1"} 15
`, "offlane_port_rx_packets_total")
	compare(t, reg, `# HELP offlane_scrape_source_up 1 when the last read of a scrape-time source (interfaces, datapath_flows, pmd) succeeded, 0 when it failed or timed out.
# TYPE offlane_scrape_source_up gauge
offlane_scrape_source_up{source="datapath_flows"} 1
offlane_scrape_source_up{source="interfaces"} 1
offlane_scrape_source_up{source="pmd"} 1
`, "offlane_scrape_source_up")
}

// A failing or hanging source leaves its series out of the scrape, says so in
// offlane_scrape_source_up, and does not hold the scrape beyond ScrapeTimeout.
func TestSourceFailureAndTimeout(t *testing.T) {
	n := newFakeNode()
	n.plug("tap-a", "port-a", "net-1", "proj-1")
	n.ifErr = errors.New("ovsdb: connection refused")
	_, reg := newMetrics(t, n, metrics.Options{ScrapeTimeout: 200 * time.Millisecond})
	want := `# HELP offlane_scrape_source_up 1 when the last read of a scrape-time source (interfaces, datapath_flows, pmd) succeeded, 0 when it failed or timed out.
# TYPE offlane_scrape_source_up gauge
offlane_scrape_source_up{source="datapath_flows"} 1
offlane_scrape_source_up{source="interfaces"} 0
offlane_scrape_source_up{source="pmd"} 1
`
	compare(t, reg, want, "offlane_scrape_source_up")
	if c, err := testutil.GatherAndCount(reg, "offlane_port_rx_packets_total"); err != nil || c != 0 {
		t.Errorf("port series while OVSDB fails: %d %v", c, err)
	}

	n.mu.Lock()
	n.ifErr, n.hang = nil, true
	n.mu.Unlock()
	start := time.Now()
	compare(t, reg, want, "offlane_scrape_source_up")
	n.mu.Lock()
	dl := n.lastDead
	n.mu.Unlock()
	if dl.IsZero() || dl.Sub(start) > time.Second {
		t.Errorf("InterfaceStats got deadline %v after the scrape started, want the 200 ms scrape timeout", dl.Sub(start))
	}

	n.mu.Lock()
	n.hang = false
	n.mu.Unlock()
	if c, err := testutil.GatherAndCount(reg, "offlane_port_rx_packets_total"); err != nil || c != 1 {
		t.Errorf("port series after recovery: %d %v", c, err)
	}
}

func plan(ports ...offload.PortPlan) *offload.Plan {
	return &offload.Plan{Host: "node-1", Ports: ports}
}

func portPlan(id string, ds ...offload.Decision) offload.PortPlan {
	return offload.PortPlan{PortID: id, Decisions: ds}
}

func TestFeatureBackend(t *testing.T) {
	m, reg := newMetrics(t, nil, metrics.Options{})
	l2 := offload.Decision{Feature: offload.FeatureL2, Backend: offload.BackendOpenFlow, Reason: "vnic normal"}
	natSW := offload.Decision{Feature: offload.FeatureNAT, Backend: offload.BackendNFTables, Reason: "NIC cannot offload ct NAT"}
	natHW := offload.Decision{Feature: offload.FeatureNAT, Backend: offload.BackendTC, Reason: "switchdev ct offload"}
	m.SetPlan(&offload.Plan{Host: "node-1",
		Ports:   []offload.PortPlan{portPlan("p1", l2, natSW), portPlan("p2", l2, natSW), portPlan("p3", l2, natHW)},
		Routers: []offload.RouterPlan{{RouterID: "r1", Backend: offload.BackendNFTables, Reason: "l3_backend auto: no ct NAT offload"}}})
	compare(t, reg, `# HELP offlane_feature_backend Ports whose feature runs on backend, for the planner's reason; one series per active decision.
# TYPE offlane_feature_backend gauge
offlane_feature_backend{backend="nftables",feature="nat",reason="NIC cannot offload ct NAT"} 2
offlane_feature_backend{backend="openflow",feature="l2",reason="vnic normal"} 3
offlane_feature_backend{backend="tc",feature="nat",reason="switchdev ct offload"} 1
# HELP offlane_router_backend Routers whose routing and NAT run on backend, for the planner's reason.
# TYPE offlane_router_backend gauge
offlane_router_backend{backend="nftables",reason="l3_backend auto: no ct NAT offload"} 1
`, "offlane_feature_backend", "offlane_router_backend")

	// The fallback goes away: its series disappears from /metrics.
	m.SetPlan(plan(portPlan("p1", l2, natHW), portPlan("p3", l2, natHW)))
	compare(t, reg, `# HELP offlane_feature_backend Ports whose feature runs on backend, for the planner's reason; one series per active decision.
# TYPE offlane_feature_backend gauge
offlane_feature_backend{backend="openflow",feature="l2",reason="vnic normal"} 2
offlane_feature_backend{backend="tc",feature="nat",reason="switchdev ct offload"} 2
`, "offlane_feature_backend", "offlane_router_backend")

	// The same change by UpdatePlan (the ports that changed only) gives the same series.
	m2, reg2 := newMetrics(t, nil, metrics.Options{})
	before := &offload.Plan{Host: "node-1",
		Ports:   []offload.PortPlan{portPlan("p1", l2, natSW), portPlan("p2", l2, natSW), portPlan("p3", l2, natHW)},
		Routers: []offload.RouterPlan{{RouterID: "r1", Backend: offload.BackendNFTables, Reason: "l3_backend auto: no ct NAT offload"}}}
	m2.SetPlan(before)
	m2.UpdatePlan(before, plan(portPlan("p1", l2, natHW), portPlan("p3", l2, natHW)), []string{"p1", "p2", "p1"})
	if err := testutil.GatherAndCompare(reg2, strings.NewReader(`# HELP offlane_feature_backend Ports whose feature runs on backend, for the planner's reason; one series per active decision.
# TYPE offlane_feature_backend gauge
offlane_feature_backend{backend="openflow",feature="l2",reason="vnic normal"} 2
offlane_feature_backend{backend="tc",feature="nat",reason="switchdev ct offload"} 2
`), "offlane_feature_backend", "offlane_router_backend"); err != nil {
		t.Errorf("UpdatePlan: %v", err)
	}

	m.SetPlan(nil)
	if c, err := testutil.GatherAndCount(reg, "offlane_feature_backend"); err != nil || c != 0 {
		t.Errorf("after SetPlan(nil): %d series, %v", c, err)
	}
}

func TestFlows(t *testing.T) {
	n := newFakeNode()
	flow := func(br string, table uint8, prio uint16) offload.Flow {
		return offload.Flow{Bridge: br, Table: table, Priority: prio, Actions: "drop"}
	}
	n.flows = []offload.Flow{flow("br-int", 0, 1), flow("br-int", 0, 2), flow("br-int", 10, 1), flow("br-tun", 0, 1)}
	n.dpFlows = []metrics.DatapathFlowCount{{Datapath: "ovs", Offloaded: "no", Flows: 7}, {Datapath: "tc", Offloaded: "yes", Flows: 3}}
	_, reg := newMetrics(t, n, metrics.Options{})
	compare(t, reg, `# HELP offlane_flows_installed Flows the agent installed, per bridge, table and backend.
# TYPE offlane_flows_installed gauge
offlane_flows_installed{backend="openflow",bridge="br-int",table="0"} 2
offlane_flows_installed{backend="openflow",bridge="br-int",table="10"} 1
offlane_flows_installed{backend="openflow",bridge="br-tun",table="0"} 1
# HELP offlane_datapath_flows Datapath (megaflow) flows, by datapath (ovs, tc) and offload state (yes, partial, no).
# TYPE offlane_datapath_flows gauge
offlane_datapath_flows{datapath="ovs",offloaded="no"} 7
offlane_datapath_flows{datapath="tc",offloaded="yes"} 3
`, "offlane_flows_installed", "offlane_datapath_flows")

	n.mu.Lock()
	n.flows = n.flows[3:]
	n.mu.Unlock()
	compare(t, reg, `# HELP offlane_flows_installed Flows the agent installed, per bridge, table and backend.
# TYPE offlane_flows_installed gauge
offlane_flows_installed{backend="openflow",bridge="br-tun",table="0"} 1
`, "offlane_flows_installed")
}

// pmdCapture is a pmd-stats-show output captured from the real OVS 3.1 (see
// ovsdpdk's TestLabPMDStats*).
func pmdCapture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "ovsdpdk", "testdata", "pmdstats", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPMDSeries(t *testing.T) {
	n := newFakeNode()
	_, reg := newMetrics(t, n, metrics.Options{})
	// No netdev datapath: no PMD series, and the source is not failing.
	if c, err := testutil.GatherAndCount(reg, "offlane_pmd_packets_received_total"); err != nil || c != 0 {
		t.Fatalf("pmd series without a netdev datapath: %d %v", c, err)
	}
	if v := gaugeValue(t, reg, "offlane_scrape_source_up", map[string]string{"source": "pmd"}); v != 1 {
		t.Errorf("pmd source up = %v without a netdev datapath, want 1", v)
	}

	n.pmdText = pmdCapture(t, "ovs-3.1-dpdk-pmd.txt")
	want, err := ovsdpdk.ParsePMDStats(strings.NewReader(n.pmdText))
	if err != nil {
		t.Fatal(err)
	}
	pmd, mainThread := want[0], want[1] // OVS prints PMD threads first
	labels := map[string]string{"thread": "pmd", "numa": fmt.Sprint(pmd.NUMA), "core": fmt.Sprint(pmd.Core)}
	if v := gaugeValue(t, reg, "offlane_pmd_packets_received_total", labels); v != float64(pmd.PacketsReceived) || v == 0 {
		t.Errorf("pmd packets = %v, want %d (> 0)", v, pmd.PacketsReceived)
	}
	main := map[string]string{"thread": "main", "numa": "", "core": ""}
	if v := gaugeValue(t, reg, "offlane_pmd_packets_received_total", main); v != float64(mainThread.PacketsReceived) || !mainThread.Main {
		t.Errorf("main thread packets = %v, want %d", v, mainThread.PacketsReceived)
	}
	emc := map[string]string{"thread": "pmd", "numa": labels["numa"], "core": labels["core"], "cache": "emc"}
	if v := gaugeValue(t, reg, "offlane_pmd_cache_hits_total", emc); v != float64(pmd.EMCHits) {
		t.Errorf("emc hits = %v, want %d", v, pmd.EMCHits)
	}
	util := gaugeValue(t, reg, "offlane_pmd_utilization_ratio", labels)
	if wantU := float64(pmd.ProcessingCycles) / float64(pmd.IdleCycles+pmd.ProcessingCycles); util != wantU || util <= 0 || util >= 1 {
		t.Errorf("utilization = %v, want %v in (0, 1)", util, wantU)
	}
	if v := gaugeValue(t, reg, "offlane_pmd_cycles_per_packet", labels); v != pmd.AvgCyclesPerPacket || v == 0 {
		t.Errorf("cycles per packet = %v, want %v", v, pmd.AvgCyclesPerPacket)
	}
	// The main thread has no cycle counters: no utilisation series for it.
	if c, err := testutil.GatherAndCount(reg, "offlane_pmd_utilization_ratio"); err != nil || c != 1 {
		t.Errorf("utilization series: %d %v, want only the pmd thread's", c, err)
	}
}

// gaugeValue returns the value of the one series of name with exactly labels.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, mt := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range mt.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			if len(got) != len(labels) {
				continue
			}
			switch {
			case mt.Counter != nil:
				return mt.GetCounter().GetValue()
			case mt.Gauge != nil:
				return mt.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

type kindErr struct{}

func (kindErr) Error() string     { return "bundle rejected" }
func (kindErr) ErrorKind() string { return metrics.ErrorOpenFlow }

func TestControlPlane(t *testing.T) {
	now := time.Unix(1_700_000_000, 500_000_000)
	m, reg := newMetrics(t, nil, metrics.Options{Now: func() time.Time { return now }})
	m.ObserveReconcile(true, 120*time.Millisecond, 40, nil)
	m.ObserveReconcile(false, 3*time.Millisecond, 2, nil)
	m.ObserveReconcile(false, 2*time.Millisecond, 0, errors.New("store unavailable"))
	m.ObserveReconcile(false, 2*time.Millisecond, 0, fmt.Errorf("bridge br-int: %w", kindErr{}))
	m.ObserveError(metrics.ErrorWatch)
	m.ObserveFlowSync(metrics.FlowSync{Added: 30, Replaced: 2, Modified: 5, Deleted: 3, Bundled: true, Took: 7 * time.Millisecond})
	m.AddChanges(metrics.ChangeDelete, 1)
	m.ObserveOVSDB(4 * time.Millisecond)
	m.ObserveOVSDB(900 * time.Millisecond)
	m.SetWatchLag(12)
	compare(t, reg, `# HELP offlane_changes_applied_total Changes the agent applied to the dataplane, by kind (add, modify, delete).
# TYPE offlane_changes_applied_total counter
offlane_changes_applied_total{kind="add"} 32
offlane_changes_applied_total{kind="delete"} 4
offlane_changes_applied_total{kind="modify"} 5
# HELP offlane_errors_total Errors the agent met, by kind (reconcile, ovsdb, openflow, store, watch, binding, ...).
# TYPE offlane_errors_total counter
offlane_errors_total{kind="openflow"} 1
offlane_errors_total{kind="reconcile"} 1
offlane_errors_total{kind="watch"} 1
# HELP offlane_reconciles_total Reconciles run, by mode (full or incremental) and result (success or error).
# TYPE offlane_reconciles_total counter
offlane_reconciles_total{mode="full",result="success"} 1
offlane_reconciles_total{mode="incremental",result="error"} 2
offlane_reconciles_total{mode="incremental",result="success"} 1
# HELP offlane_watch_lag_revisions Store revisions the agent has not reconciled yet (the store's revision minus the last one applied).
# TYPE offlane_watch_lag_revisions gauge
offlane_watch_lag_revisions 12
# HELP offlane_last_successful_sync_timestamp_seconds Unix time of the last reconcile that succeeded (0: none yet).
# TYPE offlane_last_successful_sync_timestamp_seconds gauge
offlane_last_successful_sync_timestamp_seconds 1.7000000005e+09
`, "offlane_changes_applied_total", "offlane_errors_total", "offlane_reconciles_total", "offlane_watch_lag_revisions",
		"offlane_last_successful_sync_timestamp_seconds")

	// Histograms: counts and sums of what was observed, in the right buckets.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	hist := map[string]string{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			h := mt.GetHistogram()
			if h == nil {
				continue
			}
			key := mf.GetName()
			for _, lp := range mt.GetLabel() {
				key += "{" + lp.GetName() + "=" + lp.GetValue() + "}"
			}
			le10ms := uint64(0)
			for _, b := range h.GetBucket() {
				if b.GetUpperBound() >= 0.01 {
					le10ms = b.GetCumulativeCount()
					break
				}
			}
			hist[key] = fmt.Sprintf("n=%d sum=%.3f <=10ms:%d", h.GetSampleCount(), h.GetSampleSum(), le10ms)
		}
	}
	for k, want := range map[string]string{
		"offlane_reconcile_duration_seconds{mode=full}":        "n=1 sum=0.120 <=10ms:0",
		"offlane_reconcile_duration_seconds{mode=incremental}": "n=3 sum=0.007 <=10ms:3",
		"offlane_ovsdb_transaction_duration_seconds":           "n=2 sum=0.904 <=10ms:1",
		"offlane_openflow_bundle_duration_seconds":             "n=1 sum=0.007 <=10ms:1",
	} {
		if hist[k] != want {
			t.Errorf("%s: %q, want %q", k, hist[k], want)
		}
	}
}

func TestBuildAndNICInfo(t *testing.T) {
	node := &hwdetect.Node{NICs: []hwdetect.NIC{
		{Name: "ens1f0", Driver: "mlx5_core", RecommendedMode: hwdetect.ModeSwitchdevOffload},
		{Name: "ens1f0v0", Driver: "mlx5_core", Kind: hwdetect.KindVF}, // not an uplink candidate
		{Name: "eth0", Driver: "virtio_net", RecommendedMode: hwdetect.ModeKernel},
	}}
	m, reg := newMetrics(t, nil, metrics.Options{Version: "v1.2.3", Node: node})
	compare(t, reg, `# HELP offlane_build_info Always 1; the labels say which offlane build runs.
# TYPE offlane_build_info gauge
offlane_build_info{go_version="`+runtime.Version()+`",version="v1.2.3"} 1
# HELP offlane_nic_info Always 1: an uplink-candidate NIC, its driver and the dataplane mode detection recommends.
# TYPE offlane_nic_info gauge
offlane_nic_info{driver="mlx5_core",mode="switchdev-offload",name="ens1f0"} 1
offlane_nic_info{driver="virtio_net",mode="kernel",name="eth0"} 1
`, "offlane_build_info", "offlane_nic_info")
	m.SetNode(&hwdetect.Node{NICs: node.NICs[2:]})
	if c, err := testutil.GatherAndCount(reg, "offlane_nic_info"); err != nil || c != 1 {
		t.Errorf("nic_info after SetNode: %d %v", c, err)
	}
}

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestHealthAndReadiness(t *testing.T) {
	connected := true
	var mu sync.Mutex
	m, _ := newMetrics(t, newFakeNode(), metrics.Options{OVSDBConnected: func() bool { mu.Lock(); defer mu.Unlock(); return connected }})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	check := func(path string, code int, body string) {
		t.Helper()
		gc, gb := get(t, srv, path)
		if gc != code || strings.TrimSpace(gb) != body {
			t.Errorf("GET %s = %d %q, want %d %q", path, gc, gb, code, body)
		}
	}
	check("/healthz", 200, "ok")
	check("/readyz", 503, "not ready: no successful sync yet")
	m.ObserveReconcile(true, time.Millisecond, 0, errors.New("ovsdb unreachable"))
	check("/readyz", 503, "not ready: no successful sync yet")
	m.ObserveReconcile(true, time.Millisecond, 3, nil)
	check("/readyz", 200, "ok")
	mu.Lock()
	connected = false // the live probe (e.g. ovsdpdk.Client.Connected) says it dropped
	mu.Unlock()
	check("/readyz", 503, "not ready: OVSDB is disconnected")
	mu.Lock()
	connected = true
	mu.Unlock()
	m.SetOVSDBConnected(false)
	check("/readyz", 503, "not ready: OVSDB is disconnected")
	check("/healthz", 200, "ok")
	m.SetOVSDBConnected(true)
	check("/readyz", 200, "ok")
	code, body := get(t, srv, "/metrics")
	if code != 200 || !strings.Contains(body, "offlane_ovsdb_connected 1") || !strings.Contains(body, "offlane_reconciles_total") {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
}

func TestCountFlows(t *testing.T) {
	got := metrics.CountFlows(offload.BackendOpenFlow, []offload.Flow{
		{Bridge: "br-tun", Table: 3}, {Bridge: "br-int", Table: 20}, {Bridge: "br-int", Table: 3}, {Bridge: "br-int", Table: 20}})
	want := []metrics.FlowCount{{"br-int", 3, offload.BackendOpenFlow, 1}, {"br-int", 20, offload.BackendOpenFlow, 2}, {"br-tun", 3, offload.BackendOpenFlow, 1}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("CountFlows = %v, want %v", got, want)
	}
}

func TestCountDatapathFlows(t *testing.T) {
	const dump = `ufid:1, recirc_id(0),in_port(2),eth_type(0x0800), packets:3, bytes:294, used:0.5s, dp:ovs, actions:3
ufid:2, recirc_id(0),in_port(3),eth_type(0x0800), packets:3, bytes:294, used:0.5s, offloaded:yes, dp:tc, actions:2
ufid:3, recirc_id(0),in_port(3),eth_type(0x0806), packets:1, bytes:42, used:0.5s, offloaded:yes, dp:tc, actions:2
ufid:4, recirc_id(0),in_port(4),eth_type(0x0806), packets:1, bytes:42, used:never, actions:drop
`
	flows, err := ovsdpdk.ParseDatapathFlows(strings.NewReader(dump))
	if err != nil {
		t.Fatal(err)
	}
	got := metrics.CountDatapathFlows(flows)
	want := []metrics.DatapathFlowCount{{Datapath: "ovs", Offloaded: "no", Flows: 2}, {Datapath: "tc", Offloaded: "yes", Flows: 2}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("CountDatapathFlows = %v, want %v", got, want)
	}
}
