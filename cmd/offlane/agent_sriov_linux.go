//go:build linux

package main

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/offlane/offlane/agent"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/sriov"
)

// directPorts builds the agent's direct-port component when the node has SR-IOV PFs
// (a device with sriov_numvfs, as `offlane sriov list` shows them); nil and no error
// on a node without, which then runs exactly as before. close releases its sockets.
func directPorts(ctx context.Context, ports *ovsdpdk.Ports, log *zap.Logger) (d *agent.DirectPorts, closeFn func(), err error) {
	links, err := sriov.NewNetlinkLinks()
	if err != nil {
		return nil, nil, fmt.Errorf("sriov: %w", err)
	}
	// No hwdetect inventory: the registry is rebuilt on every reconcile, and devlink and
	// sysfs name the representors without a full detection.
	m, err := sriov.New(sriov.Config{SysFS: sriov.DirFS{Root: "/"}, Devlink: sriov.NetlinkDevlink{}, Links: links,
		Ethtool: &sriov.IoctlEthtool{}, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	reg, err := m.Registry(ctx)
	if err != nil || len(reg.PFs) == 0 {
		if err != nil {
			log.Warn("no SR-IOV registry: direct ports are not realised", zap.Error(err))
		}
		return nil, func() {}, nil
	}
	tc, err := sriov.NewNetlinkTC()
	if err != nil {
		return nil, nil, err
	}
	dl, err := agent.NewNetlinkDirectLinks()
	if err != nil {
		_ = tc.Close()
		return nil, nil, err
	}
	log.Info("SR-IOV PFs found: direct ports are realised by the agent", zap.Int("pfs", len(reg.PFs)))
	return &agent.DirectPorts{SRIOV: m, Links: dl, TC: sriov.NewTCApplier(tc, log), OVS: ports, Logger: log.Named("direct")},
		func() { _ = tc.Close(); dl.Close() }, nil
}
