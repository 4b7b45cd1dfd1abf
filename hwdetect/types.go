package hwdetect

import (
	"context"

	"go.uber.org/zap"
)

// The JSON keys of these types are the stable output of `offlane detect -o json` and are
// documented in the README ("offlane detect" section). Add keys; never rename or remove.

// Mode is the dataplane mode recommended for a NIC.
type Mode string

// Dataplane modes, fastest first.
const (
	// ModeSwitchdevOffload: SR-IOV VFs to the VNFs, representors on the host, tc flower /
	// OVS hw-offload in the NIC's eswitch.
	ModeSwitchdevOffload Mode = "switchdev-offload"
	// ModeOVSDPDK: the NIC is driven by a DPDK PMD inside ovs-vswitchd (netdev datapath),
	// VNFs attach over vhost-user.
	ModeOVSDPDK Mode = "ovs-dpdk"
	// ModeKernel: kernel OVS (system datapath) with taps/veths; always possible.
	ModeKernel Mode = "kernel"
)

// Eswitch modes as devlink reports them.
const (
	EswitchLegacy    = "legacy"
	EswitchSwitchdev = "switchdev"
	EswitchUnknown   = "unknown"
)

// Level says where a feature can run on a NIC.
type Level string

// Capability levels.
const (
	LevelHW   Level = "hw"   // offloaded to the NIC
	LevelSW   Level = "sw"   // done in software (kernel / OVS) on this node
	LevelNone Level = "none" // not available at all
)

// Kinds of network interfaces.
const (
	KindDevice      = "device"      // backed by its own PCI (or other bus) device: PF, plain NIC, virtio
	KindVF          = "vf"          // an SR-IOV virtual function's netdev on the host
	KindRepresentor = "representor" // a switchdev representor (uplink, VF, PF or SF port)
	KindVirtual     = "virtual"     // no device: lo, bridge, veth, tunnel, ... (only with All)
)

// Node is everything detection found on one node.
type Node struct {
	Hostname       string         `json:"hostname"`
	Kernel         string         `json:"kernel"`
	Source         string         `json:"source"` // "live" or the capture replayed (--from)
	CPUs           CPUs           `json:"cpus"`
	Hugepages      []HugepageSize `json:"hugepages"` // one entry per page size, ascending
	IOMMU          IOMMU          `json:"iommu"`
	OVS            *OVSInfo       `json:"ovs"`
	KernelFeatures KernelFeatures `json:"kernel_features"`
	NICs           []NIC          `json:"nics"` // sorted by name
}

// CPUs are the node's logical CPUs.
type CPUs struct {
	Online []int `json:"online"`
	// Isolated is the union of /sys/devices/system/cpu/isolated and the CPU list of
	// isolcpus= in /proc/cmdline (its flags such as "domain," or "managed_irq," dropped).
	Isolated []int `json:"isolated"`
	// NohzFull is /sys/devices/system/cpu/nohz_full (empty when absent).
	NohzFull []int `json:"nohz_full"`
	// NUMA lists, per NUMA node, its online and isolated CPUs. A machine without NUMA
	// information reads as a single node 0.
	NUMA []NUMANode `json:"numa"`
}

// NUMANode is one NUMA node's CPUs.
type NUMANode struct {
	ID       int   `json:"id"`
	CPUs     []int `json:"cpus"`     // online CPUs of the node
	Isolated []int `json:"isolated"` // the node's CPUs that are also in CPUs.Isolated
}

// HugepageSize is one hugepage size's pool.
type HugepageSize struct {
	SizeKB uint64          `json:"size_kb"` // 2048, 1048576, ...
	Total  uint64          `json:"total"`   // pages
	Free   uint64          `json:"free"`    // pages
	NUMA   []HugepageCount `json:"numa"`    // per NUMA node, when the node directories exist
}

// HugepageCount is one NUMA node's share of a hugepage pool.
type HugepageCount struct {
	Node  int    `json:"node"`
	Total uint64 `json:"total"`
	Free  uint64 `json:"free"`
}

// IOMMU is the node's IOMMU state.
type IOMMU struct {
	// Enabled is true when /sys/kernel/iommu_groups holds at least one group.
	Enabled bool `json:"enabled"`
	Groups  int  `json:"groups"`
	// Cmdline holds the IOMMU-related kernel parameters found in /proc/cmdline
	// (intel_iommu=, amd_iommu=, iommu=, iommu.passthrough=, vfio.*).
	Cmdline []string `json:"cmdline"`
	// Passthrough is true with iommu=pt or iommu.passthrough=1.
	Passthrough bool `json:"passthrough"`
	// NoIOMMUMode is true when vfio's enable_unsafe_noiommu_mode is on.
	NoIOMMUMode bool `json:"vfio_noiommu"`
}

// OVSInfo is what the local Open vSwitch reports over OVSDB (table Open_vSwitch).
type OVSInfo struct {
	Reachable bool   `json:"reachable"`
	Endpoint  string `json:"endpoint,omitempty"` // e.g. unix:/var/run/openvswitch/db.sock
	// Reason says why OVS is unreachable or was not probed; empty when reachable.
	Reason          string   `json:"reason,omitempty"`
	Version         string   `json:"version"`        // ovs_version
	DBVersion       string   `json:"db_version"`     // db_version
	DatapathTypes   []string `json:"datapath_types"` // e.g. ["netdev", "system"]
	IfaceTypes      []string `json:"iface_types"`    // e.g. ["dpdk", "dpdkvhostuserclient", ...]
	DPDKInitialized bool     `json:"dpdk_initialized"`
	DPDKVersion     string   `json:"dpdk_version"`
	HWOffload       bool     `json:"hw_offload"` // other_config:hw-offload
	// DatapathCapabilities are the Datapath table's capabilities per datapath type
	// (Open_vSwitch datapaths), e.g. "netdev" → {"ct_state_nat": "true", "ct_zone":
	// "true", ...}. ovs-vswitchd fills a Datapath row only once someone created it (OVN's
	// controller does; offlane node apply does not yet): absent then.
	DatapathCapabilities map[string]map[string]string `json:"datapath_capabilities,omitempty"`
}

// OVSProber reads the local OVS's capabilities. The ovsdpdk package implements it over
// libovsdb.
type OVSProber interface {
	// ProbeOVS connects, reads the Open_vSwitch row and disconnects. It changes nothing
	// and is safe to retry. When no server answers (socket absent, connection refused,
	// timeout) it returns an OVSInfo with Reachable=false and a Reason, and a nil error;
	// an error is returned only for unexpected failures (e.g. a schema without the
	// Open_vSwitch table).
	ProbeOVS(ctx context.Context) (*OVSInfo, error)
}

// FeatureState is whether a kernel feature is usable.
type FeatureState string

// Kernel feature states.
const (
	FeatureLoaded  FeatureState = "loaded"  // present in /sys/module (loaded module or built in)
	FeatureBuiltin FeatureState = "builtin" // =y in the kernel config
	FeatureModule  FeatureState = "module"  // =m in the kernel config, not loaded yet
	FeatureAbsent  FeatureState = "absent"  // not set in the kernel config
	FeatureUnknown FeatureState = "unknown" // no config found and not loaded
)

// KernelFeatures are the kernel pieces the dataplanes need. Each reads from /sys/module
// first, then the kernel config (/proc/config.gz or /boot/config-<release>).
type KernelFeatures struct {
	Config      string       `json:"config"`      // the kernel config file read, "" when none
	OVSDatapath FeatureState `json:"openvswitch"` // CONFIG_OPENVSWITCH
	TCFlower    FeatureState `json:"tc_flower"`   // CONFIG_NET_CLS_FLOWER
	ActCT       FeatureState `json:"act_ct"`      // CONFIG_NET_ACT_CT
	VLAN8021Q   FeatureState `json:"8021q"`       // CONFIG_VLAN_8021Q
	VXLAN       FeatureState `json:"vxlan"`       // CONFIG_VXLAN
	Geneve      FeatureState `json:"geneve"`      // CONFIG_GENEVE
	VFIOPCI     FeatureState `json:"vfio_pci"`    // CONFIG_VFIO_PCI
}

// NIC is one network interface and what it can do.
type NIC struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"` // KindDevice, KindVF, KindRepresentor, KindVirtual
	MAC       string `json:"mac"`
	MTU       int    `json:"mtu"`
	OperState string `json:"operstate"`
	// SpeedMbps is -1 when unknown (link down, or the driver reports none, e.g. virtio).
	SpeedMbps  int    `json:"speed_mbps"`
	PCIAddress string `json:"pci_address"` // "" when not a PCI device
	VendorID   string `json:"vendor_id"`   // "15b3"
	DeviceID   string `json:"device_id"`   // "101d"
	VendorName string `json:"vendor_name"` // from the PCI ids database, "" when unknown
	DeviceName string `json:"device_name"`
	// Model is the family the capability table matched, e.g. "ConnectX-6 Dx".
	Model           string `json:"model"`
	Driver          string `json:"driver"`
	DriverVersion   string `json:"driver_version"`
	FirmwareVersion string `json:"firmware_version"`
	NUMANode        int    `json:"numa_node"`   // -1 when the device has no NUMA affinity
	IOMMUGroup      *int   `json:"iommu_group"` // null without an IOMMU group
	// SRIOV is null when the device has no SR-IOV capability.
	SRIOV        *SRIOV        `json:"sriov"`
	EswitchMode  string        `json:"eswitch_mode"` // legacy | switchdev | unknown
	Representors []Representor `json:"representors"` // ports of this PF's eswitch
	Features     Features      `json:"features"`
	DPDK         DPDK          `json:"dpdk"`
	Capabilities Capabilities  `json:"capabilities"`
	// PhysSwitchID and PhysPortName are the raw switchdev identity of the netdev.
	PhysSwitchID string `json:"phys_switch_id"`
	PhysPortName string `json:"phys_port_name"`
	// RecommendedMode is the fastest mode the node supports as it is now; "" for rows
	// that are not uplink candidates (VFs, representors, virtual interfaces).
	RecommendedMode Mode `json:"recommended_mode"`
	// PotentialMode is the fastest mode the hardware could reach once the fixes named
	// in Reasons are made (eswitch mode, hugepages, isolated CPUs, ...).
	PotentialMode Mode `json:"potential_mode"`
	// Reasons say why RecommendedMode, then what is missing for a faster mode.
	Reasons []string `json:"reasons"`
}

// SRIOV is a PF's SR-IOV state.
type SRIOV struct {
	TotalVFs int  `json:"total_vfs"`
	NumVFs   int  `json:"num_vfs"`
	VFs      []VF `json:"vfs"` // by index
}

// VF is one virtual function of a PF.
type VF struct {
	Index      int    `json:"index"`
	PCIAddress string `json:"pci_address"`
	Netdev     string `json:"netdev"` // "" when bound to vfio-pci or no driver
	MAC        string `json:"mac"`
	Driver     string `json:"driver"` // "" when unbound
	// Representor is the VF's representor netdev in switchdev mode, "" otherwise.
	Representor string `json:"representor"`
}

// Representor flavours (devlink port flavours).
const (
	FlavourUplink = "uplink"
	FlavourVF     = "vf"
	FlavourPF     = "pf"
	FlavourSF     = "sf"
)

// Representor is one switchdev port of a PF's eswitch.
type Representor struct {
	Netdev  string `json:"netdev"`
	Flavour string `json:"flavour"`  // uplink | vf | pf | sf
	PFIndex int    `json:"pf_index"` // controller PF number from phys_port_name
	// VFIndex is the VF (or SF) number; -1 for uplink and pf flavours.
	VFIndex int `json:"vf_index"`
}

// Features are the ethtool features that matter to the dataplane. Each is true (on),
// false (off, or fixed off) or null (unknown: no ethtool data).
type Features struct {
	HWTCOffload              *bool `json:"hw_tc_offload"`                // hw-tc-offload
	RxVLANOffload            *bool `json:"rx_vlan_offload"`              // rx-vlan-hw-parse
	TxVLANOffload            *bool `json:"tx_vlan_offload"`              // tx-vlan-hw-insert
	RxVLANFilter             *bool `json:"rx_vlan_filter"`               // rx-vlan-filter
	TxUDPTnlSegmentation     *bool `json:"tx_udp_tnl_segmentation"`      // tx-udp_tnl-segmentation
	TxUDPTnlCsumSegmentation *bool `json:"tx_udp_tnl_csum_segmentation"` // tx-udp_tnl-csum-segmentation
	RxChecksum               *bool `json:"rx_checksum"`                  // rx-checksum
	TxChecksum               *bool `json:"tx_checksum"`                  // tx-checksum-ip-generic or tx-checksum-ipv4
	TSO                      *bool `json:"tso"`                          // tx-tcp-segmentation
	GRO                      *bool `json:"gro"`                          // rx-gro
	RxHashing                *bool `json:"rx_hashing"`                   // rx-hashing
}

// DPDK says whether and how a DPDK PMD can drive the NIC.
type DPDK struct {
	// Bindable: a DPDK PMD exists for the device and the node allows it (for vfio: an
	// IOMMU group or no-IOMMU mode).
	Bindable bool `json:"bindable"`
	// NeedsVFIO: the kernel driver must be replaced by vfio-pci (all but bifurcated).
	NeedsVFIO bool `json:"needs_vfio"`
	// Bifurcated: the PMD works next to the kernel driver (mlx5): no rebind.
	Bifurcated bool   `json:"bifurcated"`
	PMD        string `json:"pmd"` // DPDK driver name, e.g. "net_mlx5", "net_ice"; "" when none
	Reason     string `json:"reason"`
}

// Capability is one feature's level on a NIC and why.
type Capability struct {
	Level  Level  `json:"level"`
	Reason string `json:"reason"`
}

// Capabilities is a NIC's per-feature capability matrix (driver knowledge combined with
// the live state: eswitch mode, hw-tc-offload, kernel modules).
type Capabilities struct {
	VLAN        Capability `json:"vlan"`
	VXLANEncap  Capability `json:"vxlan_encap"`
	GeneveEncap Capability `json:"geneve_encap"`
	CTOffload   Capability `json:"ct_offload"`
	Police      Capability `json:"police"`
	DSCPRewrite Capability `json:"dscp_rewrite"`
	VFRateLimit Capability `json:"vf_rate_limit"`
}

// Options control Detect.
type Options struct {
	// Root is the directory holding sys/ and proc/ on a live read ("" means "/"). Live
	// sources (devlink, ethtool, OVS) are queried only when From is empty.
	Root string
	// From replays a capture: a directory or a .tar.gz written by Capture. No live
	// netlink, ethtool or OVS call is made; missing pieces read as unknown.
	From string
	// All also reports interfaces without a device (lo, bridges, veth, tunnels), VF
	// netdevs and representors as their own rows.
	All bool
	// OVS probes the local OVS on a live read; nil reports ovs.reachable=false with a
	// reason.
	OVS OVSProber
	// Devlink and Ethtool override the live netlink sources (nil: the real ones on
	// Linux). Ignored with From.
	Devlink DevlinkReader
	Ethtool EthtoolReader
	// Logger receives debug detail (nil: no logs).
	Logger *zap.Logger
}

// DevlinkInfo is what devlink reports for one PCI device; it is also the value type of
// the capture file offlane/devlink.json (keyed by PCI address).
type DevlinkInfo struct {
	EswitchMode string `json:"eswitch_mode"`
}

// DevlinkReader reads devlink state (live: generic netlink).
type DevlinkReader interface {
	// EswitchMode returns "legacy" or "switchdev" for the PCI device (bus "pci"). It
	// returns an error when devlink has no such device or the device has no eswitch.
	EswitchMode(ctx context.Context, pciAddress string) (string, error)
}

// EthtoolInfo is what ethtool reports for one interface; it is also the format of the
// capture file offlane/ethtool/<ifname>.json.
type EthtoolInfo struct {
	Driver          string          `json:"driver"`
	DriverVersion   string          `json:"driver_version"`
	FirmwareVersion string          `json:"firmware_version"`
	BusInfo         string          `json:"bus_info,omitempty"`
	Features        map[string]bool `json:"features"` // kernel feature names: "hw-tc-offload", ...
}

// EthtoolReader reads ethtool state (live: the ethtool ioctl / netlink).
type EthtoolReader interface {
	// Ethtool returns the driver info and features of ifname; an error when the
	// interface does not exist or the driver does not answer.
	Ethtool(ctx context.Context, ifname string) (*EthtoolInfo, error)
}
