package offload

import (
	"maps"
	"sort"

	"github.com/offlane/offlane/controlplane"
)

// maxFastPorts bounds the ports BuildChanges derives one by one: past it a full Build
// costs little more than the per-port checks.
const maxFastPorts = 64

// BuildChanges is Build(in) after a change of the input, starting from prev: the IR Build
// or BuildChanges returned for the previous input. It costs what changed where Build
// costs the whole node (≈ 1 ms instead of ≈ 35 ms for Build and DiffChanges at 10,000
// ports: BenchmarkBuildChanges10k).
//
// changed names the ports whose Snapshot entry or OFPorts entry may differ between the
// previous input and in (added, removed or changed), each with its Snapshot entry in the
// previous input: nil when it had none, the current entry when only its OFPorts entry
// changed. It takes these rather than the whole previous input because a caller that
// updates its snapshot in place (the agent's cache) keeps only these, and needs them
// because a port that was a router's, DHCP or floating IP port shaped parts of prev that
// do not carry its ID. When anything else may differ (networks, subnets, routers,
// floating IPs, security groups, QoS policies, VTEPs, the host) the caller passes all.
// in.LocalVLANs need not be accounted for: BuildChanges checks that it keeps prev's
// allocation. Ports may move within Snapshot.Ports (the agent's cache moves its last
// port into a deleted one's place): Build depends on their order only in warnings, which
// BuildChanges then derives again, and in tie-breaks of inconsistent models (two gateway
// ports of one router, two floating IP ports of one floating IP).
//
// The IR equals Build(in): the same maps and values, the warnings sorted as Build sorts
// them. prev and everything it points to are left untouched; the objects that did not
// change are shared with it. ch names every key DiffChanges(prev, ir, nil, nil) reports,
// exactly those on the fast path (PlanPorts and PlanRouters stay empty: PlanNodeChanges
// fills them). The fast path serves ordinary ports (VMs, bare ports: not device_owner
// network:*) added, removed, changed, moved between hosts or plugged, on networks that
// keep a local port, in groups and under QoS policies the node keeps in use. Anything
// else is a full Build and DiffChanges: all, no prev, a router, DHCP or floating IP port,
// a port a router or floating IP names, a local network, security group or QoS policy
// coming or going, another local VLAN allocation, a port Build rejects, more than 64
// ports. Errors are Build's.
func BuildChanges(prev *IR, in BuildInput, changed map[string]*controlplane.Port, all bool) (*IR, *Changes, error) {
	ir, ch, _, err := buildChanges(prev, in, changed, all)
	return ir, ch, err
}

// buildChanges is BuildChanges that also says why it built in full ("" when it did not).
func buildChanges(prev *IR, in BuildInput, changed map[string]*controlplane.Port, all bool) (*IR, *Changes, string, error) {
	var why string
	switch {
	case all:
		why = "all"
	case prev == nil:
		why = "no previous IR"
	case in.Host != prev.Host:
		why = "host changed"
	case len(changed) > maxFastPorts:
		why = "too many ports"
	default:
		var ir *IR
		var ch *Changes
		if ir, ch, why = portChanges(prev, in, changed); why == "" {
			return ir, ch, "", nil
		}
	}
	ir, err := Build(in)
	if err != nil {
		return nil, nil, why, err
	}
	return ir, DiffChanges(prev, ir, nil, nil), why, nil
}

// portChanges derives the IR of in from prev when only the ports changed names differ
// and each keeps to what its own entries of Ports, RemotePorts and Members show; else it
// returns why not. It reads prev and never writes to it.
func portChanges(prev *IR, in BuildInput, changed map[string]*controlplane.Port) (*IR, *Changes, string) {
	// The allocation Build would make is prev's when in.LocalVLANs gives every segment
	// its VLAN in prev (those are distinct and in range: AllocateLocalVLANs keeps them).
	for id, seg := range prev.Segments {
		if v, ok := in.LocalVLANs[id]; !ok || v != seg.LocalVLAN {
			return nil, nil, "local VLAN allocation differs"
		}
	}
	if why := referencedPorts(prev, in, changed); why != "" {
		return nil, nil, why
	}
	cur, why := currentPorts(in.Snapshot.Ports, changed)
	if why != "" {
		return nil, nil, why
	}
	for id, old := range changed {
		if old != nil && trusted(old.DeviceOwner) || cur[id] != nil && trusted(cur[id].DeviceOwner) ||
			prev.Ports[id] != nil && trusted(prev.Ports[id].DeviceOwner) {
			return nil, nil, "router, DHCP or floating IP port"
		}
	}

	ir := cloneIR(prev) // without prev's warnings: the same unless warn below
	// addRemote's view: prev's segments, the new remote ports and members
	view := &IR{Segments: prev.Segments, RemotePorts: ir.RemotePorts, Members: ir.Members}
	referenced := referencedGroups(prev.SecurityGroups)
	// What the set of local networks, groups and QoS policies gains and loses: each must
	// stay as it was (segments, routers, groups and policies follow from them).
	gainNet, lostNet := map[string]bool{}, map[string]bool{}
	gainGroup, lostGroup := map[string]bool{}, map[string]bool{}
	gainQoS, lostQoS := map[string]bool{}, map[string]bool{}
	for id := range changed {
		delete(ir.Ports, id)
		delete(ir.RemotePorts, id)
		delete(ir.Members, id)
		if op := prev.Ports[id]; op != nil {
			lostNet[op.NetworkID] = true
			for _, g := range op.SecurityGroups {
				lostGroup[g] = true
			}
			if op.QoSPolicyID != "" {
				lostQoS[op.QoSPolicyID] = true
			}
		}
		cp := cur[id]
		if cp == nil {
			continue
		}
		if boundHere(cp, in) {
			p, err := buildPort(cp, in.OFPorts[id])
			if err != nil {
				return nil, nil, "port Build rejects"
			}
			n := findNetwork(in.Snapshot.Networks, cp.NetworkID)
			if n == nil || prev.Segments[cp.NetworkID] == nil {
				return nil, nil, "port on a network without a segment"
			}
			gainNet[cp.NetworkID] = true
			for _, g := range p.SecurityGroups {
				if prev.SecurityGroups[g] == nil {
					return nil, nil, "security group new to the node"
				}
				gainGroup[g] = true
			}
			netQoS := ""
			if n.QoSPolicyID != nil {
				netQoS = *n.QoSPolicyID
			}
			if p.QoSPolicyID, _ = portQoSPolicy(cp, netQoS); p.QoSPolicyID != "" {
				if prev.QoSPolicies[p.QoSPolicyID] == nil {
					return nil, nil, "QoS policy new to the node"
				}
				gainQoS[p.QoSPolicyID] = true
			}
			ir.Ports[id] = p
		}
		if err := addRemote(cp, in, view, referenced); err != nil {
			return nil, nil, "port Build rejects"
		}
	}
	// A network, group or policy only gained was in use before (prev holds it; for
	// networks: a local port is on it); one only lost must stay in use: both need an
	// unchanged local port.
	needNet, needGroup, needQoS := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for n := range gainNet {
		if !lostNet[n] {
			needNet[n] = true
		}
	}
	for n := range lostNet {
		if !gainNet[n] {
			needNet[n] = true
		}
	}
	for g := range lostGroup {
		if !gainGroup[g] {
			needGroup[g] = true
		}
	}
	for q := range lostQoS {
		if !gainQoS[q] {
			needQoS[q] = true
		}
	}
	if len(needNet)+len(needGroup)+len(needQoS) > 0 {
		for id, p := range prev.Ports {
			if _, ok := changed[id]; ok {
				continue
			}
			delete(needNet, p.NetworkID)
			for _, g := range p.SecurityGroups {
				delete(needGroup, g)
			}
			delete(needQoS, p.QoSPolicyID)
			if len(needNet)+len(needGroup)+len(needQoS) == 0 {
				break
			}
		}
		switch {
		case len(needNet) > 0:
			return nil, nil, "local network gained or lost"
		case len(needGroup) > 0:
			return nil, nil, "security group no longer in use"
		case len(needQoS) > 0:
			return nil, nil, "QoS policy no longer in use"
		}
	}

	ch := &Changes{}
	warn := len(prev.Warnings) > 0
	for id := range changed {
		ch.Ports = nameChanged(ch.Ports, id, prev.Ports, ir.Ports, (*Port).equal)
		ch.RemotePorts = nameChanged(ch.RemotePorts, id, prev.RemotePorts, ir.RemotePorts, (*RemotePort).equal)
		ch.Members = nameChanged(ch.Members, id, prev.Members, ir.Members, (*Member).equal)
		if rp := ir.RemotePorts[id]; rp != nil && !rp.VTEP.IsValid() && IsTunnel(prev.Segments[rp.NetworkID].Type) {
			warn = true // a port of a host without a VTEP: vtepWarnings may name it
		}
	}
	if warn {
		// Build's warnings that follow Snapshot order, again: a host's first port without
		// a VTEP, and the DHCP ports of a network (which did not change: prev's segments).
		d := &IR{Segments: prev.Segments, DHCPPorts: map[string]*DHCPPort{}}
		if errs := buildDHCP(in, d); len(errs) > 0 {
			return nil, nil, "DHCP port Build rejects"
		}
		if ws := append(vtepWarnings(in, prev.Segments), d.Warnings...); len(ws) > 0 {
			sort.Strings(ws)
			ir.Warnings = ws
		}
	}
	sort.Strings(ch.Ports)
	sort.Strings(ch.RemotePorts)
	sort.Strings(ch.Members)
	return ir, ch, ""
}

// referencedPorts reports why a changed port shapes more than its own IR entries through
// a reference to it by ID: a router's gateway port, a floating IP's port or floating IP
// port, a router interface, gateway or DHCP port in prev ("" when none is).
func referencedPorts(prev *IR, in BuildInput, changed map[string]*controlplane.Port) string {
	named := func(id string) bool {
		_, ok := changed[id]
		return ok && id != ""
	}
	for i := range in.Snapshot.Routers {
		if named(in.Snapshot.Routers[i].GatewayPortID) {
			return "router gateway port"
		}
	}
	for i := range in.Snapshot.FloatingIPs {
		f := &in.Snapshot.FloatingIPs[i]
		if f.PortID != nil && named(*f.PortID) || named(f.FloatingPortID) {
			return "floating IP port"
		}
	}
	for _, r := range prev.Routers {
		for _, ri := range r.Interfaces {
			if named(ri.PortID) {
				return "router interface port"
			}
		}
		if r.Gateway != nil && named(r.Gateway.PortID) {
			return "router gateway port"
		}
	}
	for _, f := range prev.FloatingIPs {
		if named(f.PortID) {
			return "floating IP port"
		}
	}
	for _, d := range prev.DHCPPorts {
		if named(d.PortID) {
			return "DHCP port"
		}
	}
	return ""
}

// currentPorts finds the changed ports' entries in ports (absent: removed).
func currentPorts(ports []controlplane.Port, changed map[string]*controlplane.Port) (map[string]*controlplane.Port, string) {
	cur := make(map[string]*controlplane.Port, len(changed))
	var one string // the common case: compare strings, no map lookup per port
	if len(changed) == 1 {
		for id := range changed {
			one = id
		}
	}
	for i := range ports {
		cp := &ports[i]
		if len(changed) == 1 {
			if cp.ID != one {
				continue
			}
		} else if _, ok := changed[cp.ID]; !ok {
			continue
		}
		if cur[cp.ID] != nil {
			return nil, "port ID twice in the snapshot"
		}
		cur[cp.ID] = cp
	}
	return cur, ""
}

// findNetwork is the network id of networks, the last of that ID as Build's maps keep it.
func findNetwork(networks []controlplane.Network, id string) *controlplane.Network {
	for i := len(networks) - 1; i >= 0; i-- {
		if networks[i].ID == id {
			return &networks[i]
		}
	}
	return nil
}

// nameChanged names id in list when its object differs in value between prev and next.
// (An equal one stays the new object: equal ignores nil versus empty slices, which Build
// keeps as the snapshot has them.)
func nameChanged[V comparable](list []string, id string, prev, next map[string]V, equal func(V, V) bool) []string {
	o, inPrev := prev[id]
	n, inNext := next[id]
	if inPrev == inNext && (!inPrev || equal(o, n)) {
		return list
	}
	return append(list, id)
}

// cloneIR is IR.Clone without the warnings, with the runtime's map copy and empty maps
// where prev has nil ones, as Build makes them.
func cloneIR(prev *IR) *IR {
	return &IR{Host: prev.Host,
		Segments: cloneOrMake(prev.Segments), Ports: cloneOrMake(prev.Ports), RemotePorts: cloneOrMake(prev.RemotePorts),
		SecurityGroups: cloneOrMake(prev.SecurityGroups), Members: cloneOrMake(prev.Members), Subnets: cloneOrMake(prev.Subnets),
		Routers: cloneOrMake(prev.Routers), FloatingIPs: cloneOrMake(prev.FloatingIPs), QoSPolicies: cloneOrMake(prev.QoSPolicies),
		DHCPPorts: cloneOrMake(prev.DHCPPorts)}
}

func cloneOrMake[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return maps.Clone(m)
}
