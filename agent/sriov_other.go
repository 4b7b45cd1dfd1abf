//go:build !linux

package agent

import (
	"context"
	"net/netip"

	"github.com/offlane/offlane/sriov"
)

// NetlinkDirectLinks is DirectLinks over rtnetlink: Linux only.
type NetlinkDirectLinks struct{}

// NewNetlinkDirectLinks returns sriov.ErrNotSupported off Linux.
func NewNetlinkDirectLinks() (*NetlinkDirectLinks, error) { return nil, sriov.ErrNotSupported }

// Close does nothing.
func (*NetlinkDirectLinks) Close() {}

// SetLink implements DirectLinks.
func (*NetlinkDirectLinks) SetLink(context.Context, string, bool) (bool, error) {
	return false, sriov.ErrNotSupported
}

// Neighbours implements DirectLinks.
func (*NetlinkDirectLinks) Neighbours(context.Context, []netip.Addr) (map[netip.Addr]string, error) {
	return nil, sriov.ErrNotSupported
}
