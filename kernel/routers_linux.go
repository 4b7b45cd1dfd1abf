package kernel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Ensure makes the kernel realise router in.Router (with its floating IPs), diffing
// against what exists: it creates or completes the namespace, plugs the qr-/qg- ports,
// sets forwarding, syncs the routes it owns (protocol static), replaces the nftables
// table in one atomic batch only when the table read back differs, and then removes
// router ports that are no longer wanted (adding before deleting). It returns what it
// changed: nothing, and no netlink write, when the kernel already matches. A router
// with admin_state_up false is deleted, as Neutron's L3 agent does. Input errors are
// reported before anything is written; idempotent and safe to retry.
func (rs *Routers) Ensure(ctx context.Context, in RouterInput) ([]string, error) {
	if in.Router == nil {
		return nil, errors.New("router: no router")
	}
	ns := rs.Namespace(in.Router.ID)
	if !in.Router.AdminStateUp {
		existed := nsExists(ns)
		if err := rs.Delete(ctx, in.Router.ID); err != nil {
			return nil, err
		}
		if existed {
			return []string{"namespace " + ns + ": deleted (admin_state_up false)"}, nil
		}
		return nil, nil
	}
	spec, err := Compile(in, ns)
	if err != nil {
		return nil, err
	}
	changes, err := rs.ensure(ctx, spec)
	if len(changes) > 0 {
		rs.log.Debug("router ensured", zap.String("router", spec.ID), zap.Strings("changes", changes), zap.Error(err))
	}
	if err != nil {
		return changes, fmt.Errorf("router %s: %w", spec.ID, err)
	}
	return changes, nil
}

func (rs *Routers) ensure(ctx context.Context, spec *RouterSpec) ([]string, error) {
	var changes []string
	created, err := nsEnsure(spec.Namespace)
	if err != nil {
		return nil, err
	}
	if created {
		changes = append(changes, "namespace "+spec.Namespace+": created")
	}
	// Before the ports exist, so new interfaces inherit "default".
	v6off := "1"
	if spec.IPv6 {
		v6off = "0"
	}
	sysctls := [][2]string{
		{"net.ipv6.conf.default.disable_ipv6", v6off},
		{"net.ipv6.conf.all.disable_ipv6", v6off},
		{"net.ipv4.ip_forward", "1"},
	}
	if spec.IPv6 {
		sysctls = append(sysctls, [2]string{"net.ipv6.conf.all.forwarding", "1"})
	}
	for _, kv := range sysctls {
		ch, err := sysctl(spec.Namespace, kv[0], kv[1])
		if err != nil {
			return changes, err
		}
		if ch {
			changes = append(changes, "sysctl "+kv[0]+"="+kv[1])
		}
	}
	if ch, err := linkUp(spec.Namespace, "lo"); err != nil {
		return changes, err
	} else if ch {
		changes = append(changes, "lo: up")
	}
	for _, p := range spec.Ports {
		ch, err := rs.plug.Plug(ctx, p)
		changes = append(changes, ch...)
		if err != nil {
			return changes, err
		}
	}
	ch, err := syncRoutes(spec.Namespace, spec.Routes)
	changes = append(changes, ch...)
	if err != nil {
		return changes, err
	}
	ch, err = syncNeighbours(spec.Namespace, spec.Neighbours)
	changes = append(changes, ch...)
	if err != nil {
		return changes, err
	}
	ch, err = applyRuleset(spec.Namespace, spec.Ruleset)
	changes = append(changes, ch...)
	if err != nil {
		return changes, err
	}
	// Ports no longer wanted go last.
	have, err := routerIfs(spec.Namespace)
	if err != nil {
		return changes, err
	}
	for _, name := range have {
		if slices.ContainsFunc(spec.Ports, func(p PlugSpec) bool { return p.IfName == name }) {
			continue
		}
		if err := rs.plug.Unplug(ctx, spec.Namespace, name, name); err != nil {
			return changes, err
		}
		changes = append(changes, name+": unplugged")
	}
	return changes, nil
}

// Ruleset reads router id's nftables table back from the kernel.
func (rs *Routers) Ruleset(id string) (Ruleset, error) {
	c, closer, err := nftConn(rs.Namespace(id))
	if err != nil {
		return Ruleset{}, err
	}
	defer closer()
	return readRuleset(c)
}

// applyRuleset replaces the namespace's table with want in one batch unless the table
// read back already equals want, then reads it back again and checks it.
func applyRuleset(ns string, want Ruleset) ([]string, error) {
	c, closer, err := nftConn(ns)
	if err != nil {
		return nil, err
	}
	defer closer()
	have, err := readRuleset(c)
	if err == nil && have.Equal(want) {
		return nil, nil
	}
	why := "differs"
	if err != nil {
		why = err.Error()
	}
	if err := replaceRuleset(c, want, nil); err != nil {
		return nil, err
	}
	got, err := readRuleset(c)
	if err != nil {
		return nil, fmt.Errorf("table %s: read back: %w", TableName, err)
	}
	if !got.Equal(want) {
		return nil, fmt.Errorf("table %s: the kernel holds\n%s\nnot\n%s", TableName, got, want)
	}
	return []string{fmt.Sprintf("table ip %s: replaced (%d rules; was: %s)", TableName, len(want.Rules), why)}, nil
}

// replaceRuleset sends the atomic replacement of the table, with extra (tests only)
// queued into the same batch.
func replaceRuleset(c *nftables.Conn, want Ruleset, extra func(*nftables.Conn)) error {
	if err := queueRuleset(c, want); err != nil {
		return err
	}
	if extra != nil {
		extra(c)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("table %s: apply batch: %w", TableName, err)
	}
	return nil
}

// syncRoutes makes the namespace's routes with protocol static (the ones this backend
// owns; connected routes are the kernel's) exactly want.
func syncRoutes(ns string, want []Route) ([]string, error) {
	h, _, closer, err := handleAt(ns)
	if err != nil {
		return nil, err
	}
	defer closer()
	have, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	byDst := map[netip.Prefix]netlink.Route{}
	for _, r := range have {
		byDst[routeDst(r)] = r
	}
	var changes []string
	wanted := map[netip.Prefix]bool{}
	for _, w := range want {
		wanted[w.Dst] = true
		nr := netlink.Route{Dst: ipNet(w.Dst), Gw: w.Via.AsSlice(), Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC}
		if w.Dev != "" {
			l, err := h.LinkByName(w.Dev)
			if err != nil {
				return changes, fmt.Errorf("route %s: %w", w, err)
			}
			nr.LinkIndex = l.Attrs().Index
		}
		if hr, ok := byDst[w.Dst]; ok {
			gw, _ := netip.AddrFromSlice(hr.Gw)
			if gw.Unmap() == w.Via && (nr.LinkIndex == 0 || nr.LinkIndex == hr.LinkIndex) && len(hr.MultiPath) == 0 {
				continue
			}
		}
		if err := h.RouteReplace(&nr); err != nil {
			return changes, fmt.Errorf("route %s: %w", w, err)
		}
		changes = append(changes, "route "+w.String())
	}
	var gone []netip.Prefix
	for dst := range byDst {
		if !wanted[dst] {
			gone = append(gone, dst)
		}
	}
	sort.Slice(gone, func(i, j int) bool { return cmpPrefix(gone[i], gone[j]) < 0 })
	for _, dst := range gone {
		r := byDst[dst]
		if err := h.RouteDel(&r); err != nil {
			return changes, fmt.Errorf("delete route %s: %w", dst, err)
		}
		changes = append(changes, "route "+dst.String()+" deleted")
	}
	return changes, nil
}

// syncNeighbours makes the permanent neighbour entries on the namespace's qr- ports
// exactly want (entries the kernel learned are left alone).
func syncNeighbours(ns string, want []NeighbourSpec) ([]string, error) {
	h, _, closer, err := handleAt(ns)
	if err != nil {
		return nil, err
	}
	defer closer()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	index := map[string]int{}
	name := map[int]string{}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, PrefixRouterInterface) {
			index[l.Attrs().Name] = l.Attrs().Index
			name[l.Attrs().Index] = l.Attrs().Name
		}
	}
	type key struct {
		dev string
		ip  netip.Addr
	}
	have := map[key]netlink.Neigh{}
	for idx := range name {
		ns, err := h.NeighList(idx, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("list neighbours of %s: %w", name[idx], err)
		}
		for _, n := range ns {
			ip, ok := netip.AddrFromSlice(n.IP)
			if ok && n.State&netlink.NUD_PERMANENT != 0 {
				have[key{name[idx], ip.Unmap()}] = n
			}
		}
	}
	var changes []string
	wanted := map[key]bool{}
	for _, w := range want {
		k := key{w.Dev, w.IP}
		wanted[k] = true
		if n, ok := have[k]; ok && strings.EqualFold(n.HardwareAddr.String(), w.MAC) {
			continue
		}
		idx, ok := index[w.Dev]
		if !ok {
			return changes, fmt.Errorf("neighbour %s: no device %s", w.IP, w.Dev)
		}
		mac, _ := net.ParseMAC(w.MAC)
		fam := netlink.FAMILY_V4
		if w.IP.Is6() {
			fam = netlink.FAMILY_V6
		}
		if err := h.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: fam, State: netlink.NUD_PERMANENT, IP: w.IP.AsSlice(), HardwareAddr: mac}); err != nil {
			return changes, fmt.Errorf("neighbour %s lladdr %s dev %s: %w", w.IP, w.MAC, w.Dev, err)
		}
		changes = append(changes, fmt.Sprintf("neighbour %s lladdr %s dev %s", w.IP, w.MAC, w.Dev))
	}
	for k, n := range have {
		if wanted[k] {
			continue
		}
		if err := h.NeighDel(&n); err != nil {
			return changes, fmt.Errorf("delete neighbour %s dev %s: %w", k.ip, k.dev, err)
		}
		changes = append(changes, fmt.Sprintf("neighbour %s dev %s deleted", k.ip, k.dev))
	}
	return changes, nil
}

func routeDst(r netlink.Route) netip.Prefix {
	if p, ok := prefixOf(r.Dst); ok {
		return p
	}
	if r.Family == unix.AF_INET6 {
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
}

// linkUp brings a link of the namespace up unless it is; it reports whether it wrote.
func linkUp(ns, name string) (bool, error) {
	h, _, closer, err := handleAt(ns)
	if err != nil {
		return false, err
	}
	defer closer()
	l, err := h.LinkByName(name)
	if err != nil {
		return false, fmt.Errorf("%s in %s: %w", name, ns, err)
	}
	if l.Attrs().Flags&net.FlagUp != 0 {
		return false, nil
	}
	if err := h.LinkSetUp(l); err != nil {
		return false, fmt.Errorf("%s in %s: set up: %w", name, ns, err)
	}
	return true, nil
}

// routerIfs lists the router port interfaces (qr-*, qg-*) inside a namespace, sorted.
func routerIfs(ns string) ([]string, error) {
	h, _, closer, err := handleAt(ns)
	if err != nil {
		return nil, err
	}
	defer closer()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("namespace %s: list links: %w", ns, err)
	}
	var out []string
	for _, l := range links {
		if isRouterIf(l.Attrs().Name) {
			out = append(out, l.Attrs().Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Delete removes router id from the node: its ports from the switch and its namespace
// (with the veths). A router that does not exist is not an error; safe to retry.
func (rs *Routers) Delete(ctx context.Context, id string) error {
	ns := rs.Namespace(id)
	if !nsExists(ns) {
		return nil
	}
	names, err := routerIfs(ns)
	if err != nil {
		return fmt.Errorf("router %s: %w", id, err)
	}
	var errs []error
	for _, n := range names {
		if err := rs.plug.Unplug(ctx, ns, n, n); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("router %s: %w", id, err)
	}
	if err := nsDelete(ns); err != nil {
		return fmt.Errorf("router %s: %w", id, err)
	}
	return nil
}

// List returns the IDs of the routers this node has namespaces for, sorted.
func (rs *Routers) List() ([]string, error) {
	nss, err := nsList(rs.prefix)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, ns := range nss {
		if id := rs.routerID(ns); id != "" {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// Prune deletes every router of this node not in keep and returns their IDs.
func (rs *Routers) Prune(ctx context.Context, keep []string) ([]string, error) {
	ids, err := rs.List()
	if err != nil {
		return nil, err
	}
	var gone []string
	var errs []error
	for _, id := range ids {
		if slices.Contains(keep, id) {
			continue
		}
		if err := rs.Delete(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		gone = append(gone, id)
	}
	return gone, errors.Join(errs...)
}
