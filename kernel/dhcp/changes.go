package dhcp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"

	"github.com/offlane/offlane/kernel"
	"github.com/offlane/offlane/offload"
)

// ReconcileChanges is Reconcile for what changed: ch names the IR objects added, removed
// or replaced since the IR of the manager's previous call (offload.DiffChanges; naming
// an unchanged object is harmless, leaving out a changed one leaves its network stale
// until the next full reconcile). It recomputes only the networks the change reaches:
// those of the ports and remote ports named (before and after), the segments named, and
// those whose subnets or DHCP port differ from the previous call's (Changes does not
// name subnets or DHCP ports, so the manager compares those two small maps itself). A
// network whose plug is unchanged only gets its new lease table; the others are ensured
// as by Reconcile. A change set that reaches no DHCP network costs no kernel call.
//
// With ch nil, on the first call, and on the first call after one that failed (or after
// Close), it is Reconcile: every network is plugged again and stale namespaces are swept
// (pruneStale runs only then).
func (m *Manager) ReconcileChanges(ctx context.Context, ir *offload.IR, ch *offload.Changes) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var err error
	if ch == nil || m.basis == nil {
		err = m.reconcileAll(ctx, ir)
	} else {
		err = m.reconcileSome(ctx, ir, ch)
	}
	if err != nil {
		m.basis = nil
	}
	return err
}

func (m *Manager) reconcileSome(ctx context.Context, ir *offload.IR, ch *offload.Changes) error {
	affected := m.basis.advance(ir, ch)
	var errs []error
	for _, netID := range sortedIDs(affected) {
		in, err := instanceOf(ir, netID, m.opts.LeaseTime, m.basis.idx, m.prefix())
		cur := m.running[netID]
		switch {
		case err != nil:
			if !errors.Is(err, ErrNothingToServe) {
				errs = append(errs, err)
			}
			if cur == nil {
				continue
			}
			if err := m.remove(ctx, netID); err != nil {
				errs = append(errs, fmt.Errorf("dhcp for network %s: remove: %w", netID, err))
			}
		case cur != nil && samePlug(cur.spec, in.Plug):
			// only leases changed: the port is as plugged (a full reconcile repairs drift)
			cur.srv.SetTable(in.Table)
		default:
			if err := m.ensure(ctx, in); err != nil {
				errs = append(errs, fmt.Errorf("dhcp for network %s: %w", netID, err))
			}
		}
	}
	return errors.Join(errs...)
}

// basis is what ReconcileChanges needs of the IR the manager last reconciled: the ports'
// networks (a change set names a removed port by ID only), the per-network index tables
// are built from, and the subnets and DHCP ports, which change sets do not cover.
type basis struct {
	idx                 byNetwork
	localNet, remoteNet map[string]string // port ID → network ID
	subnets             map[string]*offload.Subnet
	dhcpPorts           map[string]*offload.DHCPPort
}

func newBasis(ir *offload.IR) *basis {
	b := &basis{localNet: make(map[string]string, len(ir.Ports)), remoteNet: make(map[string]string, len(ir.RemotePorts)),
		subnets: maps.Clone(ir.Subnets), dhcpPorts: maps.Clone(ir.DHCPPorts)}
	b.idx = indexIR(ir, b.localNet, b.remoteNet)
	return b
}

// advance moves the basis to ir, of which ch names the changed ports and segments, and
// returns the networks whose DHCP server may differ.
func (b *basis) advance(ir *offload.IR, ch *offload.Changes) map[string]struct{} {
	affected := map[string]struct{}{}
	for _, id := range ch.Ports {
		var to string
		p := ir.Ports[id]
		if p != nil {
			to = p.NetworkID
		}
		move(b.idx.local, b.localNet, id, to, p != nil, affected)
	}
	for _, id := range ch.RemotePorts {
		var to string
		p := ir.RemotePorts[id]
		if p != nil {
			to = p.NetworkID
		}
		move(b.idx.remote, b.remoteNet, id, to, p != nil, affected)
	}
	for _, id := range ch.Segments {
		affected[id] = struct{}{}
	}

	// subnets and DHCP ports: Changes has no field for them; both maps are a few entries
	// per network, so compare them (by pointer first: an unchanged IR object is shared)
	sameRef, sameVal := diffMap(b.subnets, ir.Subnets, sameSubnet, func(_ string, o, n *offload.Subnet) {
		for _, sn := range []*offload.Subnet{o, n} {
			if sn != nil {
				affected[sn.NetworkID] = struct{}{}
			}
		}
	})
	if !sameVal {
		b.idx.subnets = indexSubnets(ir.Subnets)
	}
	if !sameRef {
		b.subnets = maps.Clone(ir.Subnets)
	}
	sameRef, _ = diffMap(b.dhcpPorts, ir.DHCPPorts, sameDHCPPort, func(netID string, _, _ *offload.DHCPPort) {
		affected[netID] = struct{}{} // keyed by network, as Desired reads them
	})
	if !sameRef {
		b.dhcpPorts = maps.Clone(ir.DHCPPorts)
	}
	return affected
}

// move records that port id is now on network to (on none when !present) in lists (port
// IDs by network, sorted) and nets (network by port ID), and marks both networks.
func move(lists map[string][]string, nets map[string]string, id, to string, present bool, affected map[string]struct{}) {
	from, had := nets[id]
	if present {
		affected[to] = struct{}{}
	}
	if had {
		affected[from] = struct{}{}
	}
	if had && present && from == to {
		return
	}
	if had {
		ids := lists[from]
		if i, ok := slices.BinarySearch(ids, id); ok {
			ids = slices.Delete(ids, i, i+1)
		}
		if len(ids) == 0 {
			delete(lists, from)
		} else {
			lists[from] = ids
		}
		delete(nets, id)
	}
	if present {
		ids := lists[to]
		if i, ok := slices.BinarySearch(ids, id); !ok {
			lists[to] = slices.Insert(ids, i, id)
		}
		nets[id] = to
	}
}

// diffMap calls changed(key, old, new) for each key whose value differs between old and cur
// (nil for a missing one) and reports whether every value was the same pointer, and
// whether every value was equal.
func diffMap[V comparable](old, cur map[string]V, equal func(a, b V) bool, changed func(id string, o, n V)) (sameRef, sameVal bool) {
	var zero V
	sameRef, sameVal = len(old) == len(cur), true
	for id, o := range old {
		n, ok := cur[id]
		switch {
		case ok && n == o:
			continue
		case ok && n != zero && o != zero && equal(o, n):
			sameRef = false
			continue
		}
		sameRef, sameVal = false, false
		changed(id, o, n)
	}
	for id, n := range cur {
		if _, ok := old[id]; !ok {
			sameRef, sameVal = false, false
			changed(id, zero, n)
		}
	}
	return sameRef, sameVal
}

// sameSubnet compares what a DHCP server takes from a subnet.
func sameSubnet(a, b *offload.Subnet) bool {
	return a.ID == b.ID && a.NetworkID == b.NetworkID && a.CIDR == b.CIDR && a.Gateway == b.Gateway &&
		a.EnableDHCP == b.EnableDHCP && slices.Equal(a.DNS, b.DNS) && slices.Equal(a.HostRoutes, b.HostRoutes)
}

// sameDHCPPort compares what a DHCP server takes from its port (not the OpenFlow port,
// which plugging it fills in).
func sameDHCPPort(a, b *offload.DHCPPort) bool {
	return a.PortID == b.PortID && a.NetworkID == b.NetworkID && a.MAC == b.MAC && slices.Equal(a.IPs, b.IPs)
}

// samePlug: every field, those added later too (it decides whether Plug may be skipped).
func samePlug(a, b kernel.PlugSpec) bool { return reflect.DeepEqual(a, b) }
