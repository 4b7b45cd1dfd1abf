//go:build !linux

package sriov

import "go.uber.org/zap"

// NewLive returns ErrNotSupported: SR-IOV management needs Linux (sysfs, devlink,
// rtnetlink).
func NewLive(root string, ovs OVSPorts, log *zap.Logger) (*Manager, error) {
	return nil, ErrNotSupported
}
