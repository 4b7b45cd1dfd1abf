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

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/offlane/offlane/ovsdpdk"
)

// Plug makes spec true, idempotently: it creates the namespace if needed, the veth pair
// (replacing a half-gone one), sets the inner end's MAC, addresses (adding missing ones,
// removing others; IPv6 link-local ones are the kernel's) and both ends' MTU, brings both
// up, and attaches the host end to the switch with spec.IfaceID and spec.MAC. It returns
// what it changed (nothing when everything already held). Safe to retry after an error.
func (p *Plugger) Plug(ctx context.Context, spec PlugSpec) ([]string, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	if p.sw != nil && spec.IfaceID == "" {
		return nil, fmt.Errorf("plug %s: IfaceID (the tenant port ID) is required to attach it", spec.IfName)
	}
	var changes []string
	note := func(format string, a ...any) { changes = append(changes, fmt.Sprintf(format, a...)) }
	created, err := nsEnsure(spec.Namespace)
	if err != nil {
		return nil, err
	}
	if created {
		note("namespace %s: created", spec.Namespace)
	}
	in, inNS, closeIn, err := handleAt(spec.Namespace)
	if err != nil {
		return changes, err
	}
	defer closeIn()
	host, _, closeHost, err := handleAt(p.hostNS)
	if err != nil {
		return changes, err
	}
	defer closeHost()
	hostName := spec.hostName()
	mtu := spec.MTU
	if mtu == 0 {
		mtu = 1500
	}
	var mac net.HardwareAddr
	if spec.MAC != "" {
		mac, _ = net.ParseMAC(spec.MAC)
	}
	where := fmt.Sprintf("%s in %s", spec.IfName, spec.Namespace)

	link, err := in.LinkByName(spec.IfName)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		// A host end without its peer is a leftover of an interrupted Plug: replace it.
		if old, err := host.LinkByName(hostName); err == nil {
			if old.Type() != "veth" {
				return changes, fmt.Errorf("plug %s: %s exists in the switch namespace and is a %s, not a veth: remove it", where, hostName, old.Type())
			}
			if err := host.LinkDel(old); err != nil {
				return changes, fmt.Errorf("plug %s: delete stale %s: %w", where, hostName, err)
			}
			note("%s: deleted a stale host end", hostName)
		}
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: hostName, MTU: mtu},
			PeerName:      spec.IfName,
			PeerNamespace: netlink.NsFd(inNS),
			PeerMTU:       uint32(mtu),
		}
		if mac != nil {
			veth.PeerHardwareAddr = mac
		}
		if err := host.LinkAdd(veth); err != nil {
			return changes, fmt.Errorf("plug %s: add veth %s: %w", where, hostName, err)
		}
		note("%s: veth to %s created", where, hostName)
		if link, err = in.LinkByName(spec.IfName); err != nil {
			return changes, fmt.Errorf("plug %s: %w", where, err)
		}
	case err != nil:
		return changes, fmt.Errorf("plug %s: %w", where, err)
	case link.Type() != "veth":
		return changes, fmt.Errorf("plug %s: exists and is a %s, not a veth: remove it", where, link.Type())
	}
	hlink, err := host.LinkByName(hostName)
	if err != nil {
		return changes, fmt.Errorf("plug %s: its host end %s: %w", where, hostName, err)
	}

	a := link.Attrs()
	if mac != nil && !slices.Equal(a.HardwareAddr, mac) {
		if err := in.LinkSetHardwareAddr(link, mac); err != nil {
			return changes, fmt.Errorf("plug %s: set MAC %s: %w", where, mac, err)
		}
		note("%s: MAC %s", where, mac)
	}
	for _, l := range []struct {
		h    *netlink.Handle
		link netlink.Link
		what string
	}{{in, link, where}, {host, hlink, hostName}} {
		if l.link.Attrs().MTU != mtu {
			if err := l.h.LinkSetMTU(l.link, mtu); err != nil {
				return changes, fmt.Errorf("plug %s: set MTU %d: %w", l.what, mtu, err)
			}
			note("%s: MTU %d", l.what, mtu)
		}
	}
	ac, err := syncAddrs(in, link, spec.Addrs)
	if err != nil {
		return changes, fmt.Errorf("plug %s: %w", where, err)
	}
	for _, c := range ac {
		note("%s: %s", where, c)
	}
	for _, l := range []struct {
		h    *netlink.Handle
		link netlink.Link
		what string
	}{{in, link, where}, {host, hlink, hostName}} {
		if l.link.Attrs().Flags&net.FlagUp == 0 {
			if err := l.h.LinkSetUp(l.link); err != nil {
				return changes, fmt.Errorf("plug %s: set up: %w", l.what, err)
			}
			note("%s: up", l.what)
		}
	}
	if spec.Gateway.IsValid() {
		changed, err := ensureDefaultRoute(in, link, spec.Gateway)
		if err != nil {
			return changes, fmt.Errorf("plug %s: %w", where, err)
		}
		if changed {
			note("%s: default route via %s", where, spec.Gateway)
		}
	}
	if spec.NoTxChecksum {
		if err := TxChecksumOff(spec.Namespace, spec.IfName); err != nil {
			return changes, fmt.Errorf("plug %s: %w", where, err)
		}
	}
	if p.sw != nil {
		want := ovsdpdk.Port{Name: hostName, Type: ovsdpdk.PortSystem, IfaceID: spec.IfaceID, MAC: strings.ToLower(spec.MAC), MTU: 0}
		st, err := p.sw.PortGet(ctx, hostName)
		if err != nil && !errors.Is(err, ovsdpdk.ErrPortNotFound) {
			return changes, fmt.Errorf("plug %s: switch port %s: %w", where, hostName, err)
		}
		if err != nil || st.IfaceID != want.IfaceID || st.MAC != want.MAC || st.Type != ovsdpdk.PortSystem {
			if err := p.sw.PortAdd(ctx, want); err != nil {
				return changes, fmt.Errorf("plug %s: attach %s: %w", where, hostName, err)
			}
			note("%s: attached to the switch (iface-id %s)", hostName, spec.IfaceID)
		}
	}
	return changes, nil
}

// ensureDefaultRoute makes the namespace's default route (of gw's family) go via gw on
// link; it reports whether it changed anything.
func ensureDefaultRoute(h *netlink.Handle, link netlink.Link, gw netip.Addr) (bool, error) {
	family := netlink.FAMILY_V4
	dst := &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
	if gw.Is6() {
		family, dst = netlink.FAMILY_V6, &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	routes, err := h.RouteListFiltered(family, &netlink.Route{Dst: nil}, netlink.RT_FILTER_DST)
	if err != nil {
		return false, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.LinkIndex == link.Attrs().Index && r.Gw != nil && r.Gw.Equal(gw.AsSlice()) {
			return false, nil
		}
	}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: gw.AsSlice()}
	if err := h.RouteReplace(r); err != nil {
		return false, fmt.Errorf("default route via %s: %w", gw, err)
	}
	return true, nil
}

// syncAddrs makes link's addresses want (IPv6 link-local ones are left to the kernel) and
// returns what it changed.
func syncAddrs(h *netlink.Handle, link netlink.Link, want []netip.Prefix) ([]string, error) {
	have, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	wantSet := map[netip.Prefix]bool{}
	for _, p := range want {
		wantSet[p] = true
	}
	haveSet := map[netip.Prefix]bool{}
	var changes []string
	var stale []netlink.Addr
	for _, a := range have {
		p, ok := prefixOf(a.IPNet)
		if !ok || p.Addr().IsLinkLocalUnicast() {
			continue
		}
		haveSet[p] = true
		if !wantSet[p] {
			stale = append(stale, a)
		}
	}
	// Add before deleting: an address moving from /24 to /25 keeps answering.
	for _, p := range want {
		if haveSet[p] {
			continue
		}
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, a); err != nil {
			return changes, fmt.Errorf("add address %s: %w", p, err)
		}
		haveSet[p] = true
		changes = append(changes, "address "+p.String()+" added")
	}
	for _, a := range stale {
		if err := h.AddrDel(link, &a); err != nil {
			return changes, fmt.Errorf("delete address %s: %w", a.IPNet, err)
		}
		changes = append(changes, "address "+a.IPNet.String()+" deleted")
	}
	return changes, nil
}

// Unplug removes a namespace port, idempotently: the veth pair (from whichever end still
// exists) and the switch port. A missing namespace or interface is not an error.
func (p *Plugger) Unplug(ctx context.Context, namespace, ifName, hostIfName string) error {
	if hostIfName == "" {
		hostIfName = ifName
	}
	var errs []error
	if nsExists(namespace) {
		if err := delLink(namespace, ifName); err != nil {
			errs = append(errs, err)
		}
	}
	if err := delLink(p.hostNS, hostIfName); err != nil {
		errs = append(errs, err)
	}
	if p.sw != nil {
		if err := p.sw.PortDel(ctx, hostIfName); err != nil {
			errs = append(errs, fmt.Errorf("unplug %s: detach %s: %w", ifName, hostIfName, err))
		}
	}
	return errors.Join(errs...)
}

// DeleteNamespace deletes a namespace and with it every interface inside (a veth's host
// end goes with its peer); a missing namespace is not an error. Switch ports are the
// caller's to detach (Unplug).
func (p *Plugger) DeleteNamespace(name string) error { return nsDelete(name) }

// Namespaces lists the named namespaces whose names start with prefix, sorted.
func (p *Plugger) Namespaces(prefix string) ([]string, error) {
	out, err := nsList(prefix)
	sort.Strings(out)
	return out, err
}

// HostLinks lists the interfaces in the host namespace (where the switch ends of
// plugged ports live) whose names start with prefix, sorted.
func (p *Plugger) HostLinks(prefix string) ([]string, error) { return p.Links(p.hostNS, prefix) }

// Links lists the interfaces in namespace whose names start with prefix, sorted.
func (p *Plugger) Links(namespace, prefix string) ([]string, error) {
	h, _, closer, err := handleAt(namespace)
	if err != nil {
		return nil, err
	}
	defer closer()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("namespace %s: list links: %w", namespace, err)
	}
	var out []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			out = append(out, l.Attrs().Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

func delLink(ns, name string) error {
	h, _, closer, err := handleAt(ns)
	if err != nil {
		return err
	}
	defer closer()
	l, err := h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s in %q: %w", name, ns, err)
	}
	if err := h.LinkDel(l); err != nil {
		return fmt.Errorf("%s in %q: delete: %w", name, ns, err)
	}
	return nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
