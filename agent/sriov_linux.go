//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/offlane/offlane/sriov"
)

// NetlinkDirectLinks is DirectLinks over rtnetlink in the agent's network namespace.
type NetlinkDirectLinks struct{ h *netlink.Handle }

// NewNetlinkDirectLinks opens an rtnetlink handle in the current network namespace.
func NewNetlinkDirectLinks() (*NetlinkDirectLinks, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("rtnetlink handle: %w", err)
	}
	return &NetlinkDirectLinks{h: h}, nil
}

// Close releases the handle (its sockets' close errors say nothing actionable).
func (n *NetlinkDirectLinks) Close() { _ = n.h.Close() }

// SetLink implements DirectLinks.
func (n *NetlinkDirectLinks) SetLink(ctx context.Context, name string, up bool) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	l, err := n.h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return false, fmt.Errorf("%w: netdev %s", sriov.ErrNoDevice, name)
		}
		return false, fmt.Errorf("netdev %s: %w", name, err)
	}
	isUp := l.Attrs().Flags&unix.IFF_UP != 0
	if isUp != up {
		set := n.h.LinkSetDown
		if up {
			set = n.h.LinkSetUp
		}
		if err := set(l); err != nil {
			return false, fmt.Errorf("netdev %s: set %s: %w", name, map[bool]string{true: "up", false: "down"}[up], err)
		}
		if l, err = n.h.LinkByName(name); err != nil {
			return false, fmt.Errorf("netdev %s: %w", name, err)
		}
	}
	a := l.Attrs()
	// Drivers without carrier reporting (netdevsim) stay in operstate unknown while
	// running: running is what counts.
	oper := a.OperState == netlink.OperUp || (a.OperState == netlink.OperUnknown && a.RawFlags&unix.IFF_RUNNING != 0)
	return a.Flags&unix.IFF_UP != 0 && oper, nil
}

// Neighbours implements DirectLinks.
func (n *NetlinkDirectLinks) Neighbours(ctx context.Context, addrs []netip.Addr) (map[netip.Addr]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	want := map[netip.Addr]bool{}
	for _, a := range addrs {
		want[a.Unmap()] = true
	}
	var out map[netip.Addr]string
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		ns, err := n.h.NeighList(0, fam)
		if err != nil {
			return out, fmt.Errorf("neighbour table: %w", err)
		}
		for _, e := range ns {
			a, ok := netip.AddrFromSlice(e.IP)
			if !ok || !want[a.Unmap()] || len(e.HardwareAddr) != 6 ||
				e.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE|netlink.NUD_NOARP) != 0 || e.State == netlink.NUD_NONE {
				continue
			}
			if out == nil {
				out = map[netip.Addr]string{}
			}
			out[a.Unmap()] = e.HardwareAddr.String()
		}
	}
	return out, nil
}
