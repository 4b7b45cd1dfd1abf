//go:build !linux

package sriov

// NetlinkTC is TCKernel over rtnetlink; it needs Linux.
type NetlinkTC struct{}

// NewNetlinkTC returns ErrNotSupported: tc needs Linux.
func NewNetlinkTC() (*NetlinkTC, error) { return nil, ErrNotSupported }

// Close implements io.Closer.
func (*NetlinkTC) Close() error { return nil }
