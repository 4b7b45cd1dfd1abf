package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/offlane/offlane/kernel"
	"github.com/offlane/offlane/offload"
)

// Plumber creates the DHCP namespaces and their ports on the integration bridge.
// *kernel.Plugger implements it.
type Plumber interface {
	// Plug makes spec true idempotently (namespace, veth pair, MAC, addresses, MTU, the
	// switch port with iface-id) and returns what it changed; safe to retry.
	Plug(ctx context.Context, spec kernel.PlugSpec) ([]string, error)
	// Unplug removes a namespace port and its switch port; missing ones are no error.
	Unplug(ctx context.Context, namespace, ifName, hostIfName string) error
	// DeleteNamespace deletes a namespace; a missing one is no error.
	DeleteNamespace(name string) error
	// Namespaces lists the namespaces whose names start with prefix.
	Namespaces(prefix string) ([]string, error)
	// Links lists the interfaces in a namespace whose names start with prefix.
	Links(namespace, prefix string) ([]string, error)
	// HostLinks lists the interfaces whose names start with prefix in the namespace
	// where the switch ends of plugged ports live.
	HostLinks(prefix string) ([]string, error)
}

// Instance is the desired DHCP server of one network on this node.
type Instance struct {
	NetworkID string
	Plug      kernel.PlugSpec // the qdhcp namespace and the DHCP port's interface in it
	Table     *Table
}

// Desired computes the DHCP servers a node's IR asks for (pure): one per network with a
// DHCP port on an IPv4 DHCP subnet, in namespace qdhcp-<network>, on interface
// tap<port id[:11]> with the DHCP port's MAC, its addresses (with their subnets' prefix
// lengths) and the segment's MTU, attached with iface-id = the DHCP port's ID. Networks
// it cannot serve are reported and left out; the others are still returned.
func Desired(ir *offload.IR, leaseTime time.Duration) (map[string]Instance, error) {
	return desired(ir, leaseTime, indexIR(ir, nil, nil), NamespacePrefix)
}

func desired(ir *offload.IR, leaseTime time.Duration, idx byNetwork, prefix string) (map[string]Instance, error) {
	out := map[string]Instance{}
	var errs []error
	for _, netID := range sortedIDs(ir.DHCPPorts) {
		in, err := instanceOf(ir, netID, leaseTime, idx, prefix)
		if errors.Is(err, ErrNothingToServe) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[netID] = in
	}
	return out, errors.Join(errs...)
}

// instanceOf is the desired server of one network, in namespace prefix+netID
// (ErrNothingToServe when the IR gives it none).
func instanceOf(ir *offload.IR, netID string, leaseTime time.Duration, idx byNetwork, prefix string) (Instance, error) {
	t, err := buildTable(ir, netID, leaseTime, idx)
	if err != nil {
		return Instance{}, err
	}
	dp := ir.DHCPPorts[netID]
	spec := kernel.PlugSpec{Namespace: prefix + netID, IfName: kernel.IfName(kernel.PrefixTap, dp.PortID),
		MAC: dp.MAC, MTU: ir.Segments[netID].MTU, IfaceID: dp.PortID}
	for _, ip := range dp.IPs {
		for _, sn := range idx.subnets[netID] {
			if sn.CIDR.Contains(ip) {
				spec.Addrs = append(spec.Addrs, netip.PrefixFrom(ip, sn.CIDR.Bits()))
				break
			}
		}
	}
	return Instance{NetworkID: netID, Plug: spec, Table: t}, nil
}

// ManagerOptions configure a Manager.
type ManagerOptions struct {
	Plumber Plumber // required
	// Listen opens a server socket in a namespace; nil = Listen.
	Listen func(namespace, ifName string) (net.PacketConn, error)
	// Prepare readies the plugged interface before the server listens on it; nil =
	// TxChecksumOff.
	Prepare   func(namespace, ifName string) error
	LeaseTime time.Duration // 0 = DefaultLeaseTime
	Logger    *zap.Logger   // nil = no logs
	// NamespacePrefix names the namespaces ("" = NamespacePrefix, qdhcp-). Only a lab
	// that runs several nodes in one kernel needs another, per node.
	NamespacePrefix string
}

// Manager runs a node's DHCP servers: Reconcile makes them match an IR, ReconcileChanges
// does so for what changed since the IR of the previous call.
type Manager struct {
	opts    ManagerOptions
	log     *zap.Logger
	mu      sync.Mutex
	running map[string]*instance // by network ID
	// basis is the IR of the last call as ReconcileChanges needs it; nil until a call
	// succeeded and after a failed one (the next call then does everything).
	basis *basis
}

type instance struct {
	spec kernel.PlugSpec
	srv  *Server
}

// NewManager returns a Manager with no servers.
func NewManager(opts ManagerOptions) (*Manager, error) {
	if opts.Plumber == nil {
		return nil, errors.New("dhcp manager: Plumber is required (a *kernel.Plugger)")
	}
	if opts.Listen == nil {
		opts.Listen = Listen
	}
	if opts.Prepare == nil {
		opts.Prepare = TxChecksumOff
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Manager{opts: opts, log: opts.Logger.Named("dhcp"), running: map[string]*instance{}}, nil
}

// Reconcile makes the node's DHCP servers those of ir (Desired): it plugs each desired
// network's namespace port (idempotent), starts its server or swaps in the new lease
// table (no restart unless the port was re-plugged), and then removes the servers,
// ports and namespaces of networks no longer desired, and the namespaces a previous
// process left (pruneStale). Errors are per network and joined; the other networks are
// still reconciled. Safe to call again after an error.
func (m *Manager) Reconcile(ctx context.Context, ir *offload.IR) error {
	return m.ReconcileChanges(ctx, ir, nil)
}

// reconcileAll is Reconcile; it leaves the basis of the next ReconcileChanges.
func (m *Manager) reconcileAll(ctx context.Context, ir *offload.IR) error {
	b := newBasis(ir)
	want, err := desired(ir, m.opts.LeaseTime, b.idx, m.prefix())
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, netID := range sortedIDs(want) {
		if err := m.ensure(ctx, want[netID]); err != nil {
			errs = append(errs, fmt.Errorf("dhcp for network %s: %w", netID, err))
		}
	}
	for _, netID := range sortedIDs(m.running) {
		if _, ok := want[netID]; ok {
			continue
		}
		if err := m.remove(ctx, netID); err != nil {
			errs = append(errs, fmt.Errorf("dhcp for network %s: remove: %w", netID, err))
		}
	}
	if err := m.pruneStale(ctx, want); err != nil {
		errs = append(errs, err)
	}
	m.basis = b
	return errors.Join(errs...)
}

// pruneStale removes the DHCP namespaces no server of this process runs in and no
// desired network needs: those of networks deleted while the agent was down (a previous
// process's servers are gone with it, their namespaces and switch ports are not). Each
// namespace's DHCP interfaces are detached from the switch first, then it is deleted.
func (m *Manager) pruneStale(ctx context.Context, want map[string]Instance) error {
	prefix := m.prefix()
	nss, err := m.opts.Plumber.Namespaces(prefix)
	if err != nil {
		return fmt.Errorf("dhcp: list namespaces: %w", err)
	}
	keep := map[string]bool{}
	for _, in := range want {
		keep[in.Plug.Namespace] = true
	}
	for _, cur := range m.running {
		keep[cur.spec.Namespace] = true
	}
	var errs []error
	var ours []string // the switch ends on this agent's side: a stale namespace's taps are among them
	if len(nss) > 0 {
		if ours, err = m.opts.Plumber.HostLinks(kernel.PrefixTap); err != nil {
			return fmt.Errorf("dhcp: list switch-side interfaces: %w", err)
		}
	}
	for _, ns := range nss {
		if keep[ns] || !isNetworkID(strings.TrimPrefix(ns, prefix)) {
			continue // not one this manager names (e.g. another node's in a lab)
		}
		all, err := m.opts.Plumber.Links(ns, "")
		if err != nil {
			errs = append(errs, fmt.Errorf("dhcp: stale namespace %s: %w", ns, err))
			continue
		}
		var links []string
		foreign := false
		for _, l := range all {
			switch {
			case strings.HasPrefix(l, kernel.PrefixTap) && slices.Contains(ours, l):
				links = append(links, l)
			case l != "lo":
				foreign = true
			}
		}
		if foreign {
			// other interfaces, or a tap whose switch end is not on this agent's side (an
			// agent on another switch of the same kernel, e.g. a lab or demo)
			m.log.Warn("namespace named like a DHCP namespace holds interfaces that are not this agent's: left alone", zap.String("namespace", ns), zap.Strings("interfaces", all))
			continue
		}
		var uerr error
		for _, l := range links {
			uerr = errors.Join(uerr, m.opts.Plumber.Unplug(ctx, ns, l, l))
		}
		if err := errors.Join(uerr, m.opts.Plumber.DeleteNamespace(ns)); err != nil {
			errs = append(errs, fmt.Errorf("dhcp: stale namespace %s: %w", ns, err))
			continue
		}
		m.log.Info("stale dhcp namespace removed", zap.String("namespace", ns), zap.Strings("interfaces", links))
	}
	return errors.Join(errs...)
}

// isNetworkID reports whether s has the shape of the network IDs the API issues (a
// UUID: 8-4-4-4-12 hex digits): the stale-namespace sweep touches only those.
func isNetworkID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

func (m *Manager) prefix() string {
	if m.opts.NamespacePrefix != "" {
		return m.opts.NamespacePrefix
	}
	return NamespacePrefix
}

func (m *Manager) ensure(ctx context.Context, in Instance) error {
	cur := m.running[in.NetworkID]
	if cur != nil && cur.spec.IfName != in.Plug.IfName {
		// A new DHCP port (the old one was deleted and re-created): its own interface.
		if err := m.stop(cur); err != nil {
			return err
		}
		if err := m.opts.Plumber.Unplug(ctx, cur.spec.Namespace, cur.spec.IfName, cur.spec.HostIfName); err != nil {
			return err
		}
		delete(m.running, in.NetworkID)
		cur = nil
	}
	changes, err := m.opts.Plumber.Plug(ctx, in.Plug)
	if err != nil {
		return err
	}
	if cur != nil && len(changes) == 0 {
		cur.spec = in.Plug
		cur.srv.SetTable(in.Table)
		return nil
	}
	if cur != nil {
		// The interface may have been re-created: a socket bound to the old one hears
		// nothing, so listen again.
		if err := m.stop(cur); err != nil {
			return err
		}
		delete(m.running, in.NetworkID)
	}
	if err := m.opts.Prepare(in.Plug.Namespace, in.Plug.IfName); err != nil {
		return err
	}
	conn, err := m.opts.Listen(in.Plug.Namespace, in.Plug.IfName)
	if err != nil {
		return err
	}
	srv, err := NewServer(conn, in.Table, m.log)
	if err != nil {
		_ = conn.Close()
		return err
	}
	m.running[in.NetworkID] = &instance{spec: in.Plug, srv: srv}
	m.log.Info("dhcp server running", zap.String("network", in.NetworkID), zap.String("namespace", in.Plug.Namespace),
		zap.String("interface", in.Plug.IfName), zap.Int("leases", in.Table.Len()), zap.Strings("plug", changes))
	return nil
}

func (m *Manager) stop(cur *instance) error {
	if err := cur.srv.Close(); err != nil {
		return fmt.Errorf("stop server in %s: %w", cur.spec.Namespace, err)
	}
	return nil
}

func (m *Manager) remove(ctx context.Context, netID string) error {
	cur := m.running[netID]
	if err := m.stop(cur); err != nil {
		return err
	}
	delete(m.running, netID)
	err := m.opts.Plumber.Unplug(ctx, cur.spec.Namespace, cur.spec.IfName, cur.spec.HostIfName)
	if err := errors.Join(err, m.opts.Plumber.DeleteNamespace(cur.spec.Namespace)); err != nil {
		return err
	}
	m.log.Info("dhcp server removed", zap.String("network", netID), zap.String("namespace", cur.spec.Namespace))
	return nil
}

// Networks returns the networks with a running server, sorted.
func (m *Manager) Networks() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(func(yield func(string) bool) {
		for id := range m.running {
			if !yield(id) {
				return
			}
		}
	})
}

// Table returns the lease table a network's server uses, or nil.
func (m *Manager) Table(networkID string) *Table {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur := m.running[networkID]; cur != nil {
		return cur.srv.Table()
	}
	return nil
}

// Close stops every server; namespaces and ports stay (the next Reconcile, in this
// process or the next, takes them over or removes them; the next ReconcileChanges does
// everything).
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.basis = nil
	var errs []error
	for id, cur := range m.running {
		errs = append(errs, m.stop(cur))
		delete(m.running, id)
	}
	return errors.Join(errs...)
}
