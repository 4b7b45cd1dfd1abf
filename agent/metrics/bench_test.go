package metrics_test

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/offlane/offlane/agent/metrics"
)

// BenchmarkGather10kPorts: one scrape (Gather) of a node with 10,000 tenant ports, the
// issue's scale target. Baseline: the same port series held in ordinary CounterVecs
// (what a collector that mirrored OVS's counters into client_golang state would serve).
func BenchmarkGather10kPorts(b *testing.B) {
	const ports = 10000
	n := newFakeNode()
	for i := range ports {
		n.plug(fmt.Sprintf("tap%d", i), fmt.Sprintf("port-%d", i), fmt.Sprintf("net-%d", i%50), "proj-1")
	}
	reg := prometheus.NewRegistry()
	metrics.New(reg, n, metrics.Options{NoRuntimeCollectors: true})

	base := prometheus.NewRegistry()
	names := []string{"rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped_packets", "tx_dropped_packets", "rx_errors", "tx_errors"}
	for _, nm := range names {
		cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "base_port_" + nm + "_total", Help: "x"}, []string{"port", "network", "project", "interface"})
		for i := range ports {
			cv.WithLabelValues(fmt.Sprintf("port-%d", i), fmt.Sprintf("net-%d", i%50), "proj-1", fmt.Sprintf("tap%d", i)).Add(1)
		}
		base.MustRegister(cv)
	}
	var baseNs float64
	b.Run("baseline-countervec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := base.Gather(); err != nil {
				b.Fatal(err)
			}
		}
		baseNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("offlane", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := reg.Gather(); err != nil {
				b.Fatal(err)
			}
		}
		if baseNs > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/baseNs, "x-baseline")
		}
	})
}
