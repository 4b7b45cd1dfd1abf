package metrics

import (
	"cmp"
	"context"
	"slices"
	"strconv"

	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
)

// Sources is what the metrics read at scrape time. Each call gets a context bounded by
// Options.ScrapeTimeout; a method that fails makes its series absent from that scrape
// and sets offlane_scrape_source_up{source} to 0. Methods must be safe for concurrent
// use (scrapes run in parallel with the agent) and must not block beyond ctx.
type Sources interface {
	// Ports are the tenant ports the agent last compiled on this node, with the
	// network and project they belong to. Interfaces whose iface-id is not among them
	// are still reported, with empty network and project.
	Ports() []PortInfo
	// InterfaceStats reads the counters and link state of the node's tenant interfaces
	// (ovsdpdk.Client.InterfaceStats).
	InterfaceStats(ctx context.Context) ([]ovsdpdk.InterfaceStats, error)
	// FlowCounts are the flows the agent installed, per bridge, table and backend (see
	// CountFlows).
	FlowCounts() []FlowCount
	// DatapathFlows are the datapath (megaflow) flows, counted by datapath and offload
	// state, from `ovs-appctl dpctl/dump-flows -m`. nil, nil when not read on this node.
	DatapathFlows(ctx context.Context) ([]DatapathFlowCount, error)
	// PMDStats reads `dpif-netdev/pmd-stats-show` (ovsdpdk.Unixctl.PMDStats). Return
	// nil, nil on a node without a netdev datapath (ovsdpdk.ErrNoNetdevDatapath).
	PMDStats(ctx context.Context) ([]ovsdpdk.PMDStats, error)
}

// PortInfo is one tenant port as the agent compiled it.
type PortInfo struct {
	ID        string // the port id (the interface's external_ids:iface-id)
	NetworkID string
	ProjectID string
}

// FlowCount is the number of flows one backend has installed in one bridge's table.
type FlowCount struct {
	Bridge  string // the OVS bridge (for tc: the device)
	Table   int    // the OpenFlow table (for tc: the chain)
	Backend offload.Backend
	Flows   int
}

// DatapathFlowCount is the number of datapath flows in one datapath and offload state,
// as `dpctl/dump-flows -m` shows them.
type DatapathFlowCount struct {
	Datapath  string // its "dp:" field: "ovs" (software), "tc" or "dpdk" (rte_flow)
	Offloaded string // its "offloaded:" field: "yes", "partial", or "no" when absent
	Flows     int
}

// CountDatapathFlows counts parsed `dpctl/dump-flows -m` lines (ovsdpdk.Unixctl.DatapathFlows)
// by datapath layer and offload state, sorted; a flow without "dp:" counts as "ovs",
// without "offloaded:" as "no".
func CountDatapathFlows(flows []ovsdpdk.DatapathFlow) []DatapathFlowCount {
	type key struct{ dp, off string }
	n := map[key]int{}
	for i := range flows {
		k := key{flows[i].DP, flows[i].Offloaded}
		if k.dp == "" {
			k.dp = "ovs"
		}
		if k.off == "" {
			k.off = "no"
		}
		n[k]++
	}
	out := make([]DatapathFlowCount, 0, len(n))
	for k, c := range n {
		out = append(out, DatapathFlowCount{Datapath: k.dp, Offloaded: k.off, Flows: c})
	}
	slices.SortFunc(out, func(a, b DatapathFlowCount) int {
		return cmp.Or(cmp.Compare(a.Datapath, b.Datapath), cmp.Compare(a.Offloaded, b.Offloaded))
	})
	return out
}

// CountFlows counts compiled flows per bridge and table for one backend, sorted.
func CountFlows(backend offload.Backend, flows []offload.Flow) []FlowCount {
	type key struct {
		bridge string
		table  uint8
	}
	n := map[key]int{}
	for i := range flows {
		n[key{flows[i].Bridge, flows[i].Table}]++
	}
	out := make([]FlowCount, 0, len(n))
	for k, c := range n {
		out = append(out, FlowCount{Bridge: k.bridge, Table: int(k.table), Backend: backend, Flows: c})
	}
	slices.SortFunc(out, func(a, b FlowCount) int {
		return cmp.Or(cmp.Compare(a.Bridge, b.Bridge), cmp.Compare(a.Table, b.Table))
	})
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }

// SourceFuncs is a Sources assembled from functions, e.g. the agent's port view and
// compiled flows with ovsdpdk.Client.InterfaceStats and ovsdpdk.Unixctl.PMDStats. A nil
// function contributes nothing (its source reads as up and empty).
type SourceFuncs struct {
	PortsFunc          func() []PortInfo
	InterfaceStatsFunc func(context.Context) ([]ovsdpdk.InterfaceStats, error)
	FlowCountsFunc     func() []FlowCount
	DatapathFlowsFunc  func(context.Context) ([]DatapathFlowCount, error)
	PMDStatsFunc       func(context.Context) ([]ovsdpdk.PMDStats, error)
}

var _ Sources = SourceFuncs{}

// Ports implements Sources.
func (s SourceFuncs) Ports() []PortInfo {
	if s.PortsFunc == nil {
		return nil
	}
	return s.PortsFunc()
}

// InterfaceStats implements Sources.
func (s SourceFuncs) InterfaceStats(ctx context.Context) ([]ovsdpdk.InterfaceStats, error) {
	if s.InterfaceStatsFunc == nil {
		return nil, nil
	}
	return s.InterfaceStatsFunc(ctx)
}

// FlowCounts implements Sources.
func (s SourceFuncs) FlowCounts() []FlowCount {
	if s.FlowCountsFunc == nil {
		return nil
	}
	return s.FlowCountsFunc()
}

// DatapathFlows implements Sources.
func (s SourceFuncs) DatapathFlows(ctx context.Context) ([]DatapathFlowCount, error) {
	if s.DatapathFlowsFunc == nil {
		return nil, nil
	}
	return s.DatapathFlowsFunc(ctx)
}

// PMDStats implements Sources.
func (s SourceFuncs) PMDStats(ctx context.Context) ([]ovsdpdk.PMDStats, error) {
	if s.PMDStatsFunc == nil {
		return nil, nil
	}
	return s.PMDStatsFunc(ctx)
}
