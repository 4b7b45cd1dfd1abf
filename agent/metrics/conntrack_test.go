package metrics_test

import (
	"testing"

	"github.com/offlane/offlane/agent/metrics"
)

func TestConntrackFlushes(t *testing.T) {
	m, reg := newMetrics(t, nil, metrics.Options{})
	compare(t, reg, `# HELP offlane_conntrack_flushes_total Conntrack flushes applied after security group changes: one per removed permission and port address, cutting the connections it had allowed (failures count in offlane_errors_total{kind="conntrack"}).
# TYPE offlane_conntrack_flushes_total counter
offlane_conntrack_flushes_total 0
`, "offlane_conntrack_flushes_total")
	m.AddConntrackFlushes(3)
	m.AddConntrackFlushes(0)
	m.AddConntrackFlushes(2)
	m.ObserveError(metrics.ErrorConntrack)
	compare(t, reg, `# HELP offlane_conntrack_flushes_total Conntrack flushes applied after security group changes: one per removed permission and port address, cutting the connections it had allowed (failures count in offlane_errors_total{kind="conntrack"}).
# TYPE offlane_conntrack_flushes_total counter
offlane_conntrack_flushes_total 5
# HELP offlane_errors_total Errors the agent met, by kind (reconcile, ovsdb, openflow, store, watch, binding, ...).
# TYPE offlane_errors_total counter
offlane_errors_total{kind="conntrack"} 1
`, "offlane_conntrack_flushes_total", "offlane_errors_total")
}
