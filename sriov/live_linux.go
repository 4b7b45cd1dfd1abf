//go:build linux

package sriov

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/safchain/ethtool"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/offlane/offlane/hwdetect"
)

// NewLive returns a Manager on the live node: sysfs at root ("" = "/"), devlink and
// rtnetlink over netlink, ethtool ioctls, hwdetect for the inventory. ovs may be nil.
func NewLive(root string, ovs OVSPorts, log *zap.Logger) (*Manager, error) {
	if root == "" {
		root = "/"
	}
	if log == nil {
		log = zap.NewNop()
	}
	links, err := NewNetlinkLinks()
	if err != nil {
		return nil, err
	}
	return New(Config{
		SysFS:     DirFS{Root: root},
		Devlink:   NetlinkDevlink{},
		Links:     links,
		Ethtool:   &IoctlEthtool{},
		Inventory: hwdetect.New(hwdetect.Options{Root: root, Logger: log}),
		OVS:       ovs,
		Logger:    log,
	})
}

// NetlinkDevlink is Devlink over generic netlink (vishvananda/netlink).
type NetlinkDevlink struct{}

// EswitchMode implements Devlink.
func (NetlinkDevlink) EswitchMode(ctx context.Context, dev Device) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	d, err := netlink.DevLinkGetDeviceByName(dev.Bus, dev.Name)
	if err != nil {
		if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) {
			return "", fmt.Errorf("%w: devlink %s: %w", ErrNoDevice, dev, err)
		}
		return "", fmt.Errorf("devlink %s: %w", dev, err)
	}
	// The library leaves Mode empty when the eswitch query fails (no eswitch ops).
	if d.Attrs.Eswitch.Mode == "" {
		return "", fmt.Errorf("%w: devlink %s reports no eswitch", ErrUnsupported, dev)
	}
	return d.Attrs.Eswitch.Mode, nil
}

// SetEswitchMode implements Devlink.
func (NetlinkDevlink) SetEswitchMode(ctx context.Context, dev Device, mode string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d := &netlink.DevlinkDevice{BusName: dev.Bus, DeviceName: dev.Name}
	if err := netlink.DevLinkSetEswitchMode(d, mode); err != nil {
		return fmt.Errorf("devlink %s: set eswitch mode %s: %w", dev, mode, err)
	}
	return nil
}

var flavourNames = map[uint16]string{
	nl.DEVLINK_PORT_FLAVOUR_PHYSICAL: FlavourPhysical,
	nl.DEVLINK_PORT_FLAVOUR_CPU:      FlavourCPU,
	nl.DEVLINK_PORT_FLAVOUR_DSA:      FlavourDSA,
	nl.DEVLINK_PORT_FLAVOUR_PCI_PF:   FlavourPCIPF,
	nl.DEVLINK_PORT_FLAVOUR_PCI_VF:   FlavourPCIVF,
	nl.DEVLINK_PORT_FLAVOUR_VIRTUAL:  FlavourVirtual,
	nl.DEVLINK_PORT_FLAVOUR_UNUSED:   FlavourUnused,
	nl.DEVLINK_PORT_FLAVOUR_PCI_SF:   FlavourPCISF,
}

// Ports implements Devlink.
func (NetlinkDevlink) Ports(ctx context.Context) ([]DevlinkPort, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ps, err := netlink.DevLinkGetAllPortList()
	if err != nil {
		return nil, fmt.Errorf("devlink port list: %w", err)
	}
	out := make([]DevlinkPort, 0, len(ps))
	for _, p := range ps {
		dp := DevlinkPort{Device: Device{Bus: p.BusName, Name: p.DeviceName}, Index: p.PortIndex, Netdev: p.NetdeviceName, PF: -1, VF: -1}
		dp.Flavour = flavourNames[p.PortFlavour]
		if dp.Flavour == "" {
			dp.Flavour = fmt.Sprintf("flavour(%d)", p.PortFlavour)
		}
		if p.PfNumber != nil {
			dp.PF = int(*p.PfNumber)
		}
		if p.VfNumber != nil {
			dp.VF = int(*p.VfNumber)
		}
		if p.External != nil {
			dp.External = *p.External
		}
		out = append(out, dp)
	}
	return out, nil
}

// NetlinkLinks is Links over rtnetlink (vishvananda/netlink) on its own handle.
type NetlinkLinks struct{ h *netlink.Handle }

// NewNetlinkLinks opens an rtnetlink handle in the current network namespace. The
// handle asks for VF info (RTEXT_FILTER_VF); the library's package-level functions do
// not, and would list no VFs.
func NewNetlinkLinks() (*NetlinkLinks, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("rtnetlink handle: %w", err)
	}
	return &NetlinkLinks{h: h}, nil
}

func (n *NetlinkLinks) link(ctx context.Context, pf string) (netlink.Link, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l, err := n.h.LinkByName(pf)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("%w: netdev %s", ErrNoDevice, pf)
		}
		return nil, fmt.Errorf("netdev %s: %w", pf, err)
	}
	return l, nil
}

// VFConfigs implements Links.
func (n *NetlinkLinks) VFConfigs(ctx context.Context, pf string) ([]VFConfig, error) {
	l, err := n.link(ctx, pf)
	if err != nil {
		return nil, err
	}
	vfs := l.Attrs().Vfs
	out := make([]VFConfig, 0, len(vfs))
	for _, v := range vfs {
		out = append(out, VFConfig{
			Index: v.ID, MAC: v.Mac, VLAN: v.Vlan, QoS: v.Qos, VLANProto: uint16(v.VlanProto),
			Trust: v.Trust != 0, SpoofChk: v.Spoofchk, LinkState: LinkState(v.LinkState),
			MinTxRate: v.MinTxRate, MaxTxRate: v.MaxTxRate,
		})
	}
	return out, nil
}

// SetVFMAC implements Links.
func (n *NetlinkLinks) SetVFMAC(ctx context.Context, pf string, vf int, mac net.HardwareAddr) error {
	l, err := n.link(ctx, pf)
	if err != nil {
		return err
	}
	return n.h.LinkSetVfHardwareAddr(l, vf, mac)
}

// SetVFVLAN implements Links.
func (n *NetlinkLinks) SetVFVLAN(ctx context.Context, pf string, vf, vlan, qos int, proto uint16) error {
	l, err := n.link(ctx, pf)
	if err != nil {
		return err
	}
	if proto == 0 || proto == VLANProto8021Q {
		// IFLA_VF_VLAN: every driver takes it; the kernel fills in 802.1Q.
		return n.h.LinkSetVfVlanQos(l, vf, vlan, qos)
	}
	return n.h.LinkSetVfVlanQosProto(l, vf, vlan, qos, int(proto))
}

// SetVFTrust implements Links.
func (n *NetlinkLinks) SetVFTrust(ctx context.Context, pf string, vf int, on bool) error {
	l, err := n.link(ctx, pf)
	if err != nil {
		return err
	}
	return n.h.LinkSetVfTrust(l, vf, on)
}

// SetVFSpoofChk implements Links.
func (n *NetlinkLinks) SetVFSpoofChk(ctx context.Context, pf string, vf int, on bool) error {
	l, err := n.link(ctx, pf)
	if err != nil {
		return err
	}
	return n.h.LinkSetVfSpoofchk(l, vf, on)
}

// SetVFLinkState implements Links.
func (n *NetlinkLinks) SetVFLinkState(ctx context.Context, pf string, vf int, state LinkState) error {
	l, err := n.link(ctx, pf)
	if err != nil {
		return err
	}
	return n.h.LinkSetVfState(l, vf, uint32(state))
}

// SetVFRate implements Links.
func (n *NetlinkLinks) SetVFRate(ctx context.Context, pf string, vf int, minMbps, maxMbps uint32) error {
	l, err := n.link(ctx, pf)
	if err != nil {
		return err
	}
	return n.h.LinkSetVfRate(l, vf, int(minMbps), int(maxMbps))
}

// IoctlEthtool is Ethtool over the ethtool ioctls (safchain/ethtool); one socket, opened
// on first use, kept until Close.
type IoctlEthtool struct {
	mu sync.Mutex
	e  *ethtool.Ethtool
}

func (t *IoctlEthtool) get() (*ethtool.Ethtool, error) {
	if t.e == nil {
		e, err := ethtool.NewEthtool()
		if err != nil {
			return nil, fmt.Errorf("ethtool socket: %w", err)
		}
		t.e = e
	}
	return t.e, nil
}

// Features implements Ethtool.
func (t *IoctlEthtool) Features(ctx context.Context, ifname string) (map[string]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, err := t.get()
	if err != nil {
		return nil, err
	}
	f, err := e.Features(ifname)
	if err != nil {
		return nil, fmt.Errorf("ethtool %s: features: %w", ifname, err)
	}
	return f, nil
}

// SetFeature implements Ethtool.
func (t *IoctlEthtool) SetFeature(ctx context.Context, ifname, feature string, on bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, err := t.get()
	if err != nil {
		return err
	}
	if err := e.Change(ifname, map[string]bool{feature: on}); err != nil {
		return fmt.Errorf("ethtool -K %s %s %v: %w", ifname, feature, onOff(on), err)
	}
	return nil
}

// Close releases the ethtool socket.
func (t *IoctlEthtool) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.e != nil {
		t.e.Close()
		t.e = nil
	}
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
