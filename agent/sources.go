package agent

import (
	"github.com/offlane/offlane/agent/metrics"
	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
)

// What the agent knows for /metrics, kept after each reconcile (scrapes run on other
// goroutines and must not touch the compiler).

// MetricPorts returns this node's bound tenant ports with their network and project
// (metrics.Sources.Ports).
func (a *Agent) MetricPorts() []metrics.PortInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.portInfos
}

// MetricFlowCounts returns the installed flows per bridge table
// (metrics.Sources.FlowCounts).
func (a *Agent) MetricFlowCounts() []metrics.FlowCount {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.flowCounts
}

func portInfos(st *controlplane.State, host string) []metrics.PortInfo {
	var out []metrics.PortInfo
	for i := range st.Ports {
		if p := &st.Ports[i]; p.HostID == host {
			out = append(out, metrics.PortInfo{ID: p.ID, NetworkID: p.NetworkID, ProjectID: p.ProjectID})
		}
	}
	return out
}

func flowCounts(c *offload.Compiler) []metrics.FlowCount {
	tc := c.TableCounts()
	out := make([]metrics.FlowCount, len(tc))
	for i, t := range tc {
		out[i] = metrics.FlowCount{Bridge: t.Bridge, Table: int(t.Table), Backend: offload.BackendOpenFlow, Flows: t.Flows}
	}
	return out
}

// observeSync reports a full sync's per-bridge changes.
func (a *Agent) observeSync(res *ovsdpdk.SyncResult) {
	o := a.d.Observer
	if o == nil || res == nil {
		return
	}
	for _, b := range res.Bridges {
		o.ObserveFlowSync(metrics.FlowSync{Added: b.Added, Replaced: b.Replaced, Modified: b.Modified, Deleted: b.Deleted, Bundled: b.Bundled, Took: b.Took})
	}
}
