package hwdetect

import "slices"

// feature indexes the capability matrix.
type feature int

const (
	featVLAN feature = iota
	featVXLAN
	featGeneve
	featCT
	featPolice
	featDSCP
	featVFRate
	numFeatures
)

var featureLabel = [numFeatures]string{
	featVLAN:   "VLAN push/pop",
	featVXLAN:  "VXLAN encap/decap",
	featGeneve: "Geneve encap/decap",
	featCT:     "conntrack (ct)",
	featPolice: "policing (tc police / meters)",
	featDSCP:   "DSCP rewrite (pedit)",
	featVFRate: "VF rate limit",
}

// driverModel is one row of the driver knowledge table: what a NIC family can do in
// hardware when the live state allows it (switchdev eswitch, hw-tc-offload on, the
// kernel modules present). Live state is combined with it in capabilities().
//
// The table is a conservative summary of these sources (offlane claims "hw" only where
// all agree, and firmware or kernel versions can add more):
//   - NVIDIA: "OVS Offload Using ASAP² Direct" (MLNX_OFED and DOCA docs,
//     docs.nvidia.com/networking): switchdev + tc flower on ConnectX-4 Lx and later;
//     VXLAN on all of them, Geneve and header rewrite from ConnectX-5, connection
//     tracking and meters (police) from ConnectX-6 Dx and BlueField-2.
//   - Linux kernel: Documentation/networking/device_drivers/ethernet/mellanox/mlx5/
//     switchdev.rst and kconfig.rst (mlx5 eswitch, representors, MLX5_TC_CT);
//     intel/ice.rst ("switchdev" mode, tc flower with VXLAN/Geneve/GRE tunnels, no
//     ct); intel/i40e.rst and intel/ixgbe.rst (legacy SR-IOV only: VF VLAN and
//     max_tx_rate, no switchdev); netronome/nfp.rst (flower firmware: switchdev, tunnel,
//     ct and police offload); broadcom bnxt_en (TruFlow: switchdev with VXLAN tunnels);
//     Documentation/networking/switchdev.rst and representors.rst.
//   - Open vSwitch: Documentation/howto/tc-offload.rst ("TC Flow Offload":
//     other_config:hw-offload, tc flower on representors) and
//     Documentation/topics/dpdk/phy.rst (PMDs, vfio-pci, mlx5 bifurcation).
//   - DPDK: doc.dpdk.org/guides/nics/ (mlx5.html: bifurcated, no rebind; ice, i40e,
//     ixgbe, bnxt, nfp, virtio need vfio-pci or uio) and linux_gsg/linux_drivers.html
//     (vfio-pci needs an IOMMU group, or vfio no-IOMMU mode).
type driverModel struct {
	driver    string
	deviceIDs []string // nil matches any device of the driver
	model     string
	vf        bool // a virtual function, not an uplink candidate
	switchdev bool // devlink eswitch switchdev mode with representors
	// hw lists the features the family executes in hardware: vlan and vf_rate_limit in
	// legacy SR-IOV already, the rest through tc flower in switchdev mode.
	hw         []feature
	pmd        string // DPDK poll-mode driver, "" when none
	bifurcated bool   // the PMD runs beside the kernel driver (no vfio-pci rebind)
	// why explains, per feature the family lacks in hardware, where that comes from.
	why map[feature]string
}

var (
	mlx5All = []feature{featVLAN, featVXLAN, featGeneve, featCT, featPolice, featDSCP, featVFRate}
	mlx5CX5 = []feature{featVLAN, featVXLAN, featGeneve, featDSCP, featVFRate}
	mlx5CX4 = []feature{featVLAN, featVXLAN, featVFRate}
	whyCX5  = map[feature]string{
		featCT:     "ct offload needs ConnectX-6 Dx or newer (NVIDIA ASAP² docs)",
		featPolice: "police/meter offload needs ConnectX-6 Dx or newer (NVIDIA ASAP² docs)",
	}
	whyCX4 = map[feature]string{
		featGeneve: "Geneve offload needs ConnectX-5 or newer (NVIDIA ASAP² docs)",
		featCT:     "ct offload needs ConnectX-6 Dx or newer (NVIDIA ASAP² docs)",
		featPolice: "police/meter offload needs ConnectX-6 Dx or newer (NVIDIA ASAP² docs)",
		featDSCP:   "header rewrite offload needs ConnectX-5 or newer (NVIDIA ASAP² docs)",
	}
	whyLegacyOnly = "the driver has no switchdev mode, so no tc flower offload of the vswitch"
)

// driverTable is matched top to bottom: first row whose driver matches and whose
// deviceIDs (if any) hold the device id.
var driverTable = []driverModel{
	// NVIDIA/Mellanox (vendor 15b3), mlx5_core; PCI ids from pci.ids.
	{driver: "mlx5_core", deviceIDs: []string{"1015"}, model: "ConnectX-4 Lx", switchdev: true, hw: mlx5CX4, pmd: "net_mlx5", bifurcated: true, why: whyCX4},
	{driver: "mlx5_core", deviceIDs: []string{"1017", "1019"}, model: "ConnectX-5", switchdev: true, hw: mlx5CX5, pmd: "net_mlx5", bifurcated: true, why: whyCX5},
	{driver: "mlx5_core", deviceIDs: []string{"101b"}, model: "ConnectX-6", switchdev: true, hw: mlx5CX5, pmd: "net_mlx5", bifurcated: true, why: whyCX5},
	{driver: "mlx5_core", deviceIDs: []string{"101d"}, model: "ConnectX-6 Dx", switchdev: true, hw: mlx5All, pmd: "net_mlx5", bifurcated: true},
	{driver: "mlx5_core", deviceIDs: []string{"101f"}, model: "ConnectX-6 Lx", switchdev: true, hw: mlx5All, pmd: "net_mlx5", bifurcated: true},
	{driver: "mlx5_core", deviceIDs: []string{"1021", "1023"}, model: "ConnectX-7", switchdev: true, hw: mlx5All, pmd: "net_mlx5", bifurcated: true},
	{driver: "mlx5_core", deviceIDs: []string{"a2d2"}, model: "BlueField", switchdev: true, hw: mlx5CX5, pmd: "net_mlx5", bifurcated: true, why: whyCX5},
	{driver: "mlx5_core", deviceIDs: []string{"a2d6", "a2dc"}, model: "BlueField-2/3", switchdev: true, hw: mlx5All, pmd: "net_mlx5", bifurcated: true},
	{driver: "mlx5_core", deviceIDs: []string{"1016", "1018", "101a", "101c", "101e", "a2d3"}, model: "ConnectX VF", vf: true, hw: []feature{featVLAN}, pmd: "net_mlx5", bifurcated: true},
	{driver: "mlx5_core", model: "ConnectX (unlisted mlx5)", switchdev: true, hw: mlx5CX4, pmd: "net_mlx5", bifurcated: true, why: whyCX4},
	// Intel E810 (ice): switchdev since Linux 5.14, tunnels in tc flower; no ct/police offload.
	{driver: "ice", model: "E810", switchdev: true, hw: []feature{featVLAN, featVXLAN, featGeneve, featVFRate}, pmd: "net_ice", why: map[feature]string{
		featCT:     "ice does not offload conntrack (kernel intel/ice.rst)",
		featPolice: "ice does not offload tc police on representors (kernel intel/ice.rst)",
		featDSCP:   "ice does not offload header rewrite (kernel intel/ice.rst)",
	}},
	{driver: "iavf", model: "Intel AVF VF", vf: true, hw: []feature{featVLAN}, pmd: "net_iavf"},
	// Intel X710/XL710 (i40e) and 82599/X5xx (ixgbe): legacy SR-IOV only.
	{driver: "i40e", model: "X710/XL710", hw: []feature{featVLAN, featVFRate}, pmd: "net_i40e"},
	{driver: "ixgbe", model: "82599/X5xx", hw: []feature{featVLAN, featVFRate}, pmd: "net_ixgbe"},
	{driver: "ixgbevf", model: "82599 VF", vf: true, hw: []feature{featVLAN}, pmd: "net_ixgbe_vf"},
	// Broadcom NetXtreme-E (bnxt_en): switchdev with VXLAN tunnel offload (TruFlow).
	{driver: "bnxt_en", model: "NetXtreme-E", switchdev: true, hw: []feature{featVLAN, featVXLAN, featVFRate}, pmd: "net_bnxt", why: map[feature]string{
		featGeneve: "bnxt_en offloads VXLAN tunnels only",
		featCT:     "bnxt_en does not offload conntrack",
		featPolice: "bnxt_en does not offload tc police",
		featDSCP:   "bnxt_en does not offload header rewrite",
	}},
	// Netronome Agilio (nfp) with flower firmware.
	{driver: "nfp", model: "Agilio (flower firmware)", switchdev: true, hw: mlx5All, pmd: "net_nfp"},
	// Paravirtual NIC of a VM.
	{driver: "virtio_net", model: "virtio-net", pmd: "net_virtio", why: map[feature]string{
		featVLAN: "virtio-net tags VLANs in the guest kernel or OVS",
	}},
}

// unknownModel is used for drivers the table does not know: nothing in hardware.
var unknownModel = driverModel{model: "", why: map[feature]string{}}

// lookupModel finds the table row for a driver and PCI device id.
func lookupModel(driver, deviceID string) driverModel {
	for _, m := range driverTable {
		if m.driver != driver {
			continue
		}
		if m.deviceIDs == nil || slices.Contains(m.deviceIDs, deviceID) {
			return m
		}
	}
	u := unknownModel
	u.driver = driver
	return u
}

func (m driverModel) has(f feature) bool { return slices.Contains(m.hw, f) }

// whyNot says why the family lacks f in hardware.
func (m driverModel) whyNot(f feature) string {
	if s, ok := m.why[f]; ok {
		return s
	}
	switch {
	case m.driver == "":
		return "no driver bound"
	case m.model == "":
		return "driver " + m.driver + " is not in offlane's driver table: nothing assumed in hardware"
	case !m.switchdev && f != featVLAN && f != featVFRate:
		return m.model + ": " + whyLegacyOnly
	}
	return m.model + " does not offload " + featureLabel[f]
}
