//go:build linux

package hwdetect

import (
	"context"
	"fmt"
	"sync"

	"github.com/safchain/ethtool"
	"github.com/vishvananda/netlink"
)

// netlinkDevlink reads eswitch modes over devlink generic netlink.
type netlinkDevlink struct{}

func (netlinkDevlink) EswitchMode(ctx context.Context, pciAddress string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	dev, err := netlink.DevLinkGetDeviceByName("pci", pciAddress)
	if err != nil {
		return "", fmt.Errorf("devlink pci/%s: %w", pciAddress, err)
	}
	// netlink leaves Mode empty when the device answers no eswitch query (no eswitch).
	if dev.Attrs.Eswitch.Mode == "" {
		return "", fmt.Errorf("devlink pci/%s: no eswitch", pciAddress)
	}
	return dev.Attrs.Eswitch.Mode, nil
}

// ioctlEthtool reads driver info and features with the ethtool ioctls. One socket is
// opened on first use and kept until Close.
type ioctlEthtool struct {
	mu sync.Mutex
	e  *ethtool.Ethtool
}

func (t *ioctlEthtool) Ethtool(ctx context.Context, ifname string) (*EthtoolInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.e == nil {
		e, err := ethtool.NewEthtool()
		if err != nil {
			return nil, fmt.Errorf("ethtool socket: %w", err)
		}
		t.e = e
	}
	di, err := t.e.DriverInfo(ifname)
	if err != nil {
		return nil, fmt.Errorf("ethtool %s: driver info: %w", ifname, err)
	}
	info := &EthtoolInfo{Driver: di.Driver, DriverVersion: di.Version, FirmwareVersion: di.FwVersion, BusInfo: di.BusInfo}
	feats, err := t.e.Features(ifname)
	if err != nil {
		// Driver info without features is still worth reporting; features read unknown.
		return info, nil
	}
	info.Features = feats
	return info, nil
}

// Close releases the ethtool socket.
func (t *ioctlEthtool) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.e != nil {
		t.e.Close()
		t.e = nil
	}
	return nil
}

// liveSources returns the real devlink and ethtool readers.
func liveSources() (DevlinkReader, EthtoolReader, func()) {
	et := &ioctlEthtool{}
	return netlinkDevlink{}, et, func() { _ = et.Close() }
}
