package metrics

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/offlane/offlane/ovsdpdk"
)

// Label names, the same on every metric that has them.
var (
	portLabels = []string{"port", "network", "project", "interface"}
	pmdLabels  = []string{"thread", "numa", "core"}
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// portCounter maps an OVS Interface statistics key to a metric.
type portCounter struct {
	key  string
	desc *prometheus.Desc
}

// portCounters are OVS's rx/tx counters; OVS counts from the switch's side (rx: from
// the VM into the switch).
var portCounters = []portCounter{
	{"rx_packets", desc("offlane_port_rx_packets_total", "Packets the switch received from the tenant port (OVS Interface statistics rx_packets).", portLabels...)},
	{"tx_packets", desc("offlane_port_tx_packets_total", "Packets the switch sent to the tenant port (OVS Interface statistics tx_packets).", portLabels...)},
	{"rx_bytes", desc("offlane_port_rx_bytes_total", "Bytes the switch received from the tenant port (rx_bytes).", portLabels...)},
	{"tx_bytes", desc("offlane_port_tx_bytes_total", "Bytes the switch sent to the tenant port (tx_bytes).", portLabels...)},
	{"rx_dropped", desc("offlane_port_rx_dropped_packets_total", "Packets from the tenant port dropped on receive (rx_dropped).", portLabels...)},
	{"tx_dropped", desc("offlane_port_tx_dropped_packets_total", "Packets to the tenant port dropped on transmit (tx_dropped).", portLabels...)},
	{"rx_errors", desc("offlane_port_rx_errors_total", "Receive errors on the tenant port (rx_errors).", portLabels...)},
	{"tx_errors", desc("offlane_port_tx_errors_total", "Transmit errors on the tenant port (tx_errors).", portLabels...)},
}

var (
	descLinkUp = desc("offlane_port_link_up", "1 when OVS reports the tenant port's link up, 0 when down (absent while not reported).", portLabels...)

	descFlows   = desc("offlane_flows_installed", "Flows the agent installed, per bridge, table and backend.", "bridge", "table", "backend")
	descDPFlows = desc("offlane_datapath_flows", "Datapath (megaflow) flows, by datapath (ovs, tc) and offload state (yes, partial, no).", "datapath", "offloaded")

	descPMDPackets = desc("offlane_pmd_packets_received_total", "Packets a datapath thread received (pmd-stats-show).", pmdLabels...)
	descPMDRecirc  = desc("offlane_pmd_recirculations_total", "Packet recirculations in a datapath thread.", pmdLabels...)
	descPMDHits    = desc("offlane_pmd_cache_hits_total", "Lookups a datapath thread answered, by stage: phwol, mfex_opt, simple_match, emc, smc, megaflow.", append(pmdLabels, "cache")...)
	descPMDMisses  = desc("offlane_pmd_misses_total", "Lookups that missed every cache and went to the slow path, by upcall result (success, failed).", append(pmdLabels, "upcall")...)
	descPMDCycles  = desc("offlane_pmd_cycles_total", "CPU cycles of a PMD thread, by state (idle, processing).", append(pmdLabels, "state")...)
	descPMDUtil    = desc("offlane_pmd_utilization_ratio", "Share of a PMD thread's cycles spent processing packets since its counters started (0..1).", pmdLabels...)
	descPMDCPP     = desc("offlane_pmd_cycles_per_packet", "Average cycles per packet of a PMD thread (idle and processing), since its counters started.", pmdLabels...)
	descPMDPCPP    = desc("offlane_pmd_processing_cycles_per_packet", "Average processing cycles per packet of a PMD thread, since its counters started.", pmdLabels...)

	descFeature = desc("offlane_feature_backend", "Ports whose feature runs on backend, for the planner's reason; one series per active decision.", "feature", "backend", "reason")
	descRouter  = desc("offlane_router_backend", "Routers whose routing and NAT run on backend, for the planner's reason.", "backend", "reason")
	descNIC     = desc("offlane_nic_info", "Always 1: an uplink-candidate NIC, its driver and the dataplane mode detection recommends.", "name", "driver", "mode")
	descOVSDBUp = desc("offlane_ovsdb_connected", "1 while the agent's OVSDB connection is up, 0 while it is down or not yet established.")

	descSourceUp  = desc("offlane_scrape_source_up", "1 when the last read of a scrape-time source (interfaces, datapath_flows, pmd) succeeded, 0 when it failed or timed out.", "source")
	descSourceDur = desc("offlane_scrape_source_duration_seconds", "How long the last read of a scrape-time source took.", "source")
)

// Scrape-time sources.
const (
	sourceInterfaces    = "interfaces"
	sourceDatapathFlows = "datapath_flows"
	sourcePMD           = "pmd"
)

// collector produces the series read at scrape time (from Sources) and those held as
// state (decisions, NICs), so a series that leaves the state leaves /metrics.
type collector struct{ m *Metrics }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, pc := range portCounters {
		ch <- pc.desc
	}
	for _, d := range []*prometheus.Desc{descLinkUp, descFlows, descDPFlows, descPMDPackets, descPMDRecirc, descPMDHits,
		descPMDMisses, descPMDCycles, descPMDUtil, descPMDCPP, descPMDPCPP, descFeature, descRouter, descNIC, descOVSDBUp,
		descSourceUp, descSourceDur} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	var wg sync.WaitGroup
	var ifs []ovsdpdk.InterfaceStats
	var dpf []DatapathFlowCount
	var pmd []ovsdpdk.PMDStats
	var errIf, errDP, errPMD error
	var tookIf, tookDP, tookPMD time.Duration
	if m.src != nil {
		wg.Add(3)
		go func() { defer wg.Done(); ifs, tookIf, errIf = read(ctx, m.src.InterfaceStats) }()
		go func() { defer wg.Done(); dpf, tookDP, errDP = read(ctx, m.src.DatapathFlows) }()
		go func() {
			defer wg.Done()
			pmd, tookPMD, errPMD = read(ctx, m.src.PMDStats)
			if errors.Is(errPMD, ovsdpdk.ErrNoNetdevDatapath) {
				pmd, errPMD = nil, nil
			}
		}()
	}

	// State series while the sources are read.
	m.mu.Lock()
	for k, n := range m.decisions {
		ch <- prometheus.MustNewConstMetric(descFeature, prometheus.GaugeValue, float64(n), k.feature, k.backend, k.reason)
	}
	for k, n := range m.routers {
		ch <- prometheus.MustNewConstMetric(descRouter, prometheus.GaugeValue, float64(n), k.backend, k.reason)
	}
	for _, n := range m.nics {
		ch <- prometheus.MustNewConstMetric(descNIC, prometheus.GaugeValue, 1, n.name, n.driver, n.mode)
	}
	m.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descOVSDBUp, prometheus.GaugeValue, b2f(m.ovsdbConnected()))
	if m.src == nil {
		return
	}
	for _, fc := range m.src.FlowCounts() {
		ch <- prometheus.MustNewConstMetric(descFlows, prometheus.GaugeValue, float64(fc.Flows), fc.Bridge, itoa(fc.Table), string(fc.Backend))
	}
	ports := map[string]PortInfo{}
	for _, p := range m.src.Ports() {
		ports[p.ID] = p
	}

	wg.Wait()
	c.sourceResult(ch, sourceInterfaces, errIf, tookIf)
	c.sourceResult(ch, sourceDatapathFlows, errDP, tookDP)
	c.sourceResult(ch, sourcePMD, errPMD, tookPMD)
	for i := range ifs {
		collectPort(ch, &ifs[i], ports[ifs[i].IfaceID])
	}
	for _, d := range dpf {
		ch <- prometheus.MustNewConstMetric(descDPFlows, prometheus.GaugeValue, float64(d.Flows), d.Datapath, d.Offloaded)
	}
	for i := range pmd {
		collectPMD(ch, &pmd[i])
	}
}

// read runs one source call, returning when it does or when ctx ends (a source that
// ignores ctx is abandoned; its late result is dropped).
func read[T any](ctx context.Context, f func(context.Context) ([]T, error)) ([]T, time.Duration, error) {
	start := time.Now()
	type res struct {
		v   []T
		err error
	}
	done := make(chan res, 1)
	go func() {
		v, err := f(ctx)
		done <- res{v, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, time.Since(start), r.err // a partial answer is no answer
		}
		return r.v, time.Since(start), nil
	case <-ctx.Done():
		return nil, time.Since(start), fmt.Errorf("timed out: %w", ctx.Err())
	}
}

// sourceResult emits a source's up and duration series and logs when a source starts
// or stops failing (not at every scrape).
func (c *collector) sourceResult(ch chan<- prometheus.Metric, source string, err error, took time.Duration) {
	ch <- prometheus.MustNewConstMetric(descSourceUp, prometheus.GaugeValue, b2f(err == nil), source)
	ch <- prometheus.MustNewConstMetric(descSourceDur, prometheus.GaugeValue, took.Seconds(), source)
	m := c.m
	m.mu.Lock()
	was, seen := m.sourceOK[source]
	m.sourceOK[source] = err == nil
	m.mu.Unlock()
	switch {
	case err != nil && (was || !seen):
		m.log.Warn("metrics source failing; its series are absent until it recovers", zap.String("source", source), zap.Error(err))
	case err == nil && seen && !was:
		m.log.Info("metrics source recovered", zap.String("source", source))
	}
}

func collectPort(ch chan<- prometheus.Metric, s *ovsdpdk.InterfaceStats, p PortInfo) {
	lv := []string{s.IfaceID, p.NetworkID, p.ProjectID, s.Name}
	for _, pc := range portCounters {
		if v, ok := s.Statistics[pc.key]; ok {
			ch <- prometheus.MustNewConstMetric(pc.desc, prometheus.CounterValue, float64(v), lv...)
		}
	}
	switch s.LinkState {
	case "up":
		ch <- prometheus.MustNewConstMetric(descLinkUp, prometheus.GaugeValue, 1, lv...)
	case "down":
		ch <- prometheus.MustNewConstMetric(descLinkUp, prometheus.GaugeValue, 0, lv...)
	}
}

func collectPMD(ch chan<- prometheus.Metric, s *ovsdpdk.PMDStats) {
	lv := []string{"main", "", ""}
	if !s.Main {
		lv = []string{"pmd", itoa(s.NUMA), itoa(s.Core)}
	}
	counter := func(d *prometheus.Desc, v uint64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append(lv[:3:3], extra...)...)
	}
	counter(descPMDPackets, s.PacketsReceived)
	counter(descPMDRecirc, s.Recirculations)
	counter(descPMDHits, s.PHWOLHits, "phwol")
	counter(descPMDHits, s.MFEXOptHits, "mfex_opt")
	counter(descPMDHits, s.SimpleMatchHits, "simple_match")
	counter(descPMDHits, s.EMCHits, "emc")
	counter(descPMDHits, s.SMCHits, "smc")
	counter(descPMDHits, s.MegaflowHits, "megaflow")
	counter(descPMDMisses, s.MissUpcallOK, "success")
	counter(descPMDMisses, s.MissUpcallFailed, "failed")
	if !s.HasCycles {
		return
	}
	counter(descPMDCycles, s.IdleCycles, "idle")
	counter(descPMDCycles, s.ProcessingCycles, "processing")
	ch <- prometheus.MustNewConstMetric(descPMDUtil, prometheus.GaugeValue, s.Utilization(), lv...)
	ch <- prometheus.MustNewConstMetric(descPMDCPP, prometheus.GaugeValue, s.AvgCyclesPerPacket, lv...)
	ch <- prometheus.MustNewConstMetric(descPMDPCPP, prometheus.GaugeValue, s.AvgProcessingCyclesPerPacket, lv...)
}
