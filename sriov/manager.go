package sriov

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/offlane/offlane/hwdetect"
)

// Inventory reads the node's NICs as `offlane detect` does (hwdetect.Detector on the
// live node). The registry takes PCI models and the sysfs view of representors
// (phys_switch_id, phys_port_name) from it.
type Inventory interface {
	Detect(ctx context.Context) (*hwdetect.Node, error)
}

// Config holds a Manager's dependencies. SysFS, Devlink, Links and Ethtool are
// required; Inventory and OVS are optional (the registry then lacks PCI models and
// OVS ports, and says so).
type Config struct {
	SysFS     SysFS
	Devlink   Devlink
	Links     Links
	Ethtool   Ethtool
	Inventory Inventory
	OVS       OVSPorts
	Logger    *zap.Logger
	// Settle bounds how long Configure waits for the kernel to finish what a step
	// started (VF drivers probing, representors appearing); default 20 s.
	Settle time.Duration
}

// Manager configures SR-IOV PFs and VFs and keeps no state of its own between calls:
// every call reads the system first. Safe for concurrent reads; configuration calls on
// the same PF must not overlap (the kernel serialises the writes but the plans would
// race).
type Manager struct {
	sys    SysFS
	dl     Devlink
	links  Links
	eth    Ethtool
	inv    Inventory
	ovs    OVSPorts
	log    *zap.Logger
	settle time.Duration
}

// New returns a Manager over the given dependencies.
func New(c Config) (*Manager, error) {
	if c.SysFS == nil || c.Devlink == nil || c.Links == nil || c.Ethtool == nil {
		return nil, errors.New("sriov.New: SysFS, Devlink, Links and Ethtool are required")
	}
	log := c.Logger
	if log == nil {
		log = zap.NewNop()
	}
	settle := c.Settle
	if settle <= 0 {
		settle = 20 * time.Second
	}
	return &Manager{sys: c.SysFS, dl: c.Devlink, links: c.Links, eth: c.Ethtool, inv: c.Inventory, ovs: c.OVS, log: log.Named("sriov"), settle: settle}, nil
}
