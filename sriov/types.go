package sriov

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"regexp"
	"strings"
)

// Eswitch modes (devlink).
const (
	ModeLegacy    = "legacy"
	ModeSwitchdev = "switchdev"
)

// VF driver choices for Spec.VFDriver.
const (
	// VFDriverKeep leaves the VFs on whatever driver they are bound to.
	VFDriverKeep = ""
	// VFDriverVFIO binds the VFs to vfio-pci (DPDK, passthrough to VMs).
	VFDriverVFIO = "vfio-pci"
	// VFDriverKernel binds the VFs to their kernel network driver (mlx5_core, iavf, …).
	VFDriverKernel = "kernel"
)

// Sentinel errors callers branch on. Errors returned by this package wrap them with
// the device and the reason.
var (
	// ErrNotSupported: the operation is not available on this platform.
	ErrNotSupported = errors.New("sriov: not supported on this platform")
	// ErrNoSRIOV: the device has no SR-IOV capability.
	ErrNoSRIOV = errors.New("no SR-IOV capability")
	// ErrNoDevice: no such PF, VF or netdev.
	ErrNoDevice = errors.New("no such device")
	// ErrUnsupported: the device cannot do what was asked (mode, VF count, driver).
	ErrUnsupported = errors.New("not supported by the device")
	// ErrInUse: VFs that would be destroyed or rebound are in use.
	ErrInUse = errors.New("VFs in use")
	// ErrInvalid: a bad request (field and fix named in the message).
	ErrInvalid = errors.New("invalid request")
)

// Device is a devlink device handle: bus and device name as devlink prints them,
// "pci/0000:3b:00.0" or "netdevsim/netdevsim1".
type Device struct {
	Bus  string `json:"bus"`
	Name string `json:"name"`
}

func (d Device) String() string { return d.Bus + "/" + d.Name }

var (
	rePCIFull  = regexp.MustCompile(`^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$`)
	rePCIShort = regexp.MustCompile(`^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$`)
	reBusName  = regexp.MustCompile(`^[a-z0-9_]+/[A-Za-z0-9:._-]+$`)
)

// VF is one virtual function as the PF's driver and the bus see it.
type VF struct {
	Index int `json:"index"`
	// PCIAddress, Driver, DriverOverride and Netdev describe the VF's own PCI function;
	// empty for VFs that are not bus devices (netdevsim).
	PCIAddress     string `json:"pci_address"`
	Driver         string `json:"driver"`
	DriverOverride string `json:"driver_override"`
	Netdev         string `json:"netdev"`
}

// PF is a physical function's SR-IOV state.
type PF struct {
	Device Device `json:"device"`
	// Netdev is the PF's netdev (the uplink representor in switchdev mode); "" when it
	// has none (e.g. bound to vfio-pci).
	Netdev string `json:"netdev"`
	Driver string `json:"driver"`
	// DevDir is the device's sysfs directory (root-relative, symlinks resolved).
	DevDir string `json:"-"`
	// TotalVFs is the most VFs the device can have, -1 when unknown; TotalVFsFrom says
	// where it was read ("sriov_totalvfs", "debugfs max_vfs").
	TotalVFs     int    `json:"total_vfs"`
	TotalVFsFrom string `json:"total_vfs_from,omitempty"`
	NumVFs       int    `json:"num_vfs"`
	// EswitchMode is legacy or switchdev; "" when the device has no devlink eswitch
	// (EswitchErr says why).
	EswitchMode string `json:"eswitch_mode"`
	EswitchErr  string `json:"eswitch_error,omitempty"`
	// HWTCOffload is the PF netdev's hw-tc-offload feature; nil when unknown.
	HWTCOffload *bool `json:"hw_tc_offload"`
	// DriversAutoprobe is sriov_drivers_autoprobe (PCI only); nil when absent.
	DriversAutoprobe *bool `json:"drivers_autoprobe"`
	VFs              []VF  `json:"vfs"`
}

// IsPCI reports a PCI PF (VFs are PCI functions with their own drivers).
func (p *PF) IsPCI() bool { return p.Device.Bus == "pci" }

// VFConfig is a VF's configuration as the PF's driver reports it over rtnetlink
// (IFLA_VFINFO_LIST), in legacy mode.
type VFConfig struct {
	Index     int              `json:"index"`
	MAC       net.HardwareAddr `json:"mac"`
	VLAN      int              `json:"vlan"`
	QoS       int              `json:"qos"`
	VLANProto uint16           `json:"vlan_proto"` // 0x8100 or 0x88a8; 0 when the driver does not say
	Trust     bool             `json:"trust"`
	SpoofChk  bool             `json:"spoofchk"`
	LinkState LinkState        `json:"link_state"`
	MinTxRate uint32           `json:"min_tx_rate"` // Mbit/s
	MaxTxRate uint32           `json:"max_tx_rate"` // Mbit/s, 0 = unlimited
}

// LinkState is a VF's administrative link state (IFLA_VF_LINK_STATE_*).
type LinkState uint32

// VF link states.
const (
	LinkStateAuto    LinkState = 0
	LinkStateEnable  LinkState = 1
	LinkStateDisable LinkState = 2
)

func (s LinkState) String() string {
	switch s {
	case LinkStateAuto:
		return "auto"
	case LinkStateEnable:
		return "enable"
	case LinkStateDisable:
		return "disable"
	}
	return fmt.Sprintf("linkstate(%d)", uint32(s))
}

// ParseLinkState parses "auto", "enable" or "disable".
func ParseLinkState(s string) (LinkState, error) {
	switch strings.ToLower(s) {
	case "auto":
		return LinkStateAuto, nil
	case "enable":
		return LinkStateEnable, nil
	case "disable":
		return LinkStateDisable, nil
	}
	return 0, fmt.Errorf("%w: link state %q: want auto, enable or disable", ErrInvalid, s)
}

// MarshalText writes the state's name.
func (s LinkState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// DevlinkPort is one devlink port.
type DevlinkPort struct {
	Device Device `json:"device"`
	Index  uint32 `json:"index"`
	// Flavour: physical, pcipf, pcivf, pcisf, virtual, cpu, dsa, unused.
	Flavour string `json:"flavour"`
	Netdev  string `json:"netdev"`
	// PF and VF are the controller-local PF and VF numbers; -1 when not reported.
	PF int `json:"pf"`
	VF int `json:"vf"`
	// External is true for ports of an external controller (SmartNIC host PFs).
	External bool `json:"external"`
}

// Devlink port flavours (uapi DEVLINK_PORT_FLAVOUR_*).
const (
	FlavourPhysical = "physical"
	FlavourCPU      = "cpu"
	FlavourDSA      = "dsa"
	FlavourPCIPF    = "pcipf"
	FlavourPCIVF    = "pcivf"
	FlavourVirtual  = "virtual"
	FlavourUnused   = "unused"
	FlavourPCISF    = "pcisf"
)

// SysFS is the part of sysfs (and debugfs) the package reads and writes. Names are
// slash-separated and relative to the root ("sys/bus/pci/devices/0000:3b:00.0/sriov_numvfs").
type SysFS interface {
	ReadFile(name string) ([]byte, error)
	// WriteFile writes an existing attribute in one write, like `echo v > attr`; the
	// kernel's answer (EBUSY, EINVAL, …) is the error.
	WriteFile(name string, data []byte) error
	Readlink(name string) (string, error)
	// ReadDir returns the entries sorted by name.
	ReadDir(name string) ([]fs.DirEntry, error)
}

// Devlink is the devlink generic-netlink calls the package makes.
type Devlink interface {
	// EswitchMode returns legacy or switchdev. It returns an error wrapping
	// ErrUnsupported when the device has no eswitch, ErrNoDevice when devlink does not
	// know the device. Read-only; safe to retry.
	EswitchMode(ctx context.Context, dev Device) (string, error)
	// SetEswitchMode sets the mode; setting the current mode is a no-op for the kernel.
	// Not safe to call while VFs are being created or destroyed.
	SetEswitchMode(ctx context.Context, dev Device, mode string) error
	// Ports lists every devlink port of every device. Read-only.
	Ports(ctx context.Context) ([]DevlinkPort, error)
}

// Links is the rtnetlink calls for VF settings (legacy mode) the package makes. Each
// setter is idempotent: setting the current value succeeds and changes nothing.
type Links interface {
	// VFConfigs returns the PF netdev's VFs (IFLA_VFINFO_LIST), by index. ErrNoDevice
	// when the netdev does not exist.
	VFConfigs(ctx context.Context, pf string) ([]VFConfig, error)
	SetVFMAC(ctx context.Context, pf string, vf int, mac net.HardwareAddr) error
	// SetVFVLAN sets the VF's port VLAN (0 = none), its 802.1p priority and the VLAN
	// protocol (0x8100, 0x88a8).
	SetVFVLAN(ctx context.Context, pf string, vf, vlan, qos int, proto uint16) error
	SetVFTrust(ctx context.Context, pf string, vf int, on bool) error
	SetVFSpoofChk(ctx context.Context, pf string, vf int, on bool) error
	SetVFLinkState(ctx context.Context, pf string, vf int, state LinkState) error
	// SetVFRate sets the VF's min and max tx rate in Mbit/s (0 = no limit).
	SetVFRate(ctx context.Context, pf string, vf int, minMbps, maxMbps uint32) error
}

// Ethtool is the ethtool calls the package makes.
type Ethtool interface {
	// Features returns the netdev's features by kernel name ("hw-tc-offload"). Read-only.
	Features(ctx context.Context, ifname string) (map[string]bool, error)
	// SetFeature sets one feature; setting its current value is a no-op.
	SetFeature(ctx context.Context, ifname, feature string, on bool) error
}

// OVSInterface is an OVS interface that may be a representor or a VF netdev, with the
// tenant port bound to it (external_ids:iface-id, Neutron's convention).
type OVSInterface struct {
	Bridge  string `json:"bridge"`
	Port    string `json:"port"`
	Name    string `json:"name"` // the netdev
	IfaceID string `json:"iface_id"`
}

// OVSPorts lists the local OVS's interfaces. The ovsdpdk package provides one over
// OVSDB; cmd/offlane wires it.
type OVSPorts interface {
	// Interfaces lists every interface of every bridge. Read-only.
	Interfaces(ctx context.Context) ([]OVSInterface, error)
}
