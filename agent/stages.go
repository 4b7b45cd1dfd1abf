package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/offlane/offlane/kernel"
	"github.com/offlane/offlane/kernel/dhcp"
	"github.com/offlane/offlane/offload"
)

// ChangeStage is a Stage that can use what changed since the IR it last saw: the agent
// calls RealiseChanges instead of Realise between full reconciles, with the change set
// from that IR to ir (offload.DiffChanges); ch is nil when anything may have changed (a
// full reconcile, the first one, one after an error), and the stage then does all of
// Realise's work.
type ChangeStage interface {
	Stage
	RealiseChanges(ctx context.Context, ir *offload.IR, plan *offload.Plan, ch *offload.Changes) (changed bool, err error)
}

// DHCPStage runs the node's DHCP servers (package kernel/dhcp): a qdhcp namespace per
// network with a DHCP port, plugged into the integration bridge.
type DHCPStage struct{ Manager *dhcp.Manager }

// Name implements Stage.
func (DHCPStage) Name() string { return "dhcp" }

// Realise implements Stage: changed when a DHCP port had no OpenFlow port yet (the
// manager may just have plugged it).
func (s DHCPStage) Realise(ctx context.Context, ir *offload.IR, plan *offload.Plan) (bool, error) {
	return s.RealiseChanges(ctx, ir, plan, nil)
}

// RealiseChanges implements ChangeStage (dhcp.Manager.ReconcileChanges: only the
// networks ch reaches, nothing at all when it reaches none); changed as Realise.
func (s DHCPStage) RealiseChanges(ctx context.Context, ir *offload.IR, _ *offload.Plan, ch *offload.Changes) (bool, error) {
	unplugged := false
	for _, dp := range ir.DHCPPorts {
		unplugged = unplugged || dp.OFPort == 0
	}
	return unplugged, s.Manager.ReconcileChanges(ctx, ir, ch)
}

var _ ChangeStage = DHCPStage{}

// RouterStage realises the routers the plan puts on nftables (package kernel): a
// qrouter namespace each, with qr-/qg- ports on the integration bridge and one atomic
// nftables ruleset; routers no longer planned there are removed. Floating IPs of ports
// bound to other hosts are left to those hosts (NAT is distributed).
type RouterStage struct {
	Routers *kernel.Routers
	Host    string
}

// Name implements Stage.
func (RouterStage) Name() string { return "routers" }

// Realise implements Stage: changed when any router namespace, port or rule changed.
func (s RouterStage) Realise(ctx context.Context, ir *offload.IR, plan *offload.Plan) (bool, error) {
	changed := false
	var keep []string
	var errs []error
	for _, rp := range plan.Routers {
		if rp.Backend != offload.BackendNFTables {
			continue
		}
		keep = append(keep, rp.RouterID)
		in, err := kernel.InputFromIR(ir, rp.RouterID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		in.FloatingIPs = slices.DeleteFunc(in.FloatingIPs, func(f *offload.FloatingIP) bool { return f.Host != "" && f.Host != s.Host })
		ch, err := s.Routers.Ensure(ctx, in)
		if err != nil {
			errs = append(errs, fmt.Errorf("router %s: %w", rp.RouterID, err))
		}
		changed = changed || len(ch) > 0
	}
	pruned, err := s.Routers.Prune(ctx, keep)
	if err != nil {
		errs = append(errs, err)
	}
	return changed || len(pruned) > 0, errors.Join(errs...)
}
