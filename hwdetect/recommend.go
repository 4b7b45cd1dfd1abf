package hwdetect

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// offloadState is the live state that decides whether a switchdev family's tc flower
// offload can run now.
type offloadState struct {
	switchdev bool
	hwTC      bool
	missing   string // what blocks offload now, "" when nothing
}

func liveOffload(n *NIC, m driverModel, kf KernelFeatures) offloadState {
	s := offloadState{switchdev: n.EswitchMode == EswitchSwitchdev, hwTC: n.Features.HWTCOffload != nil && *n.Features.HWTCOffload}
	switch {
	case !m.switchdev:
		s.missing = m.model + ": " + whyLegacyOnly
	case n.EswitchMode != EswitchSwitchdev:
		s.missing = "eswitch is " + n.EswitchMode + ", not switchdev"
	case !s.hwTC:
		s.missing = "hw-tc-offload is off"
		if n.Features.HWTCOffload == nil {
			s.missing = "hw-tc-offload state unknown"
		}
	case !kf.TCFlower.usable():
		s.missing = "kernel lacks tc flower (CONFIG_NET_CLS_FLOWER)"
	}
	return s
}

// capabilities combines the driver table with the live state.
func capabilities(n *NIC, m driverModel, kf KernelFeatures) Capabilities {
	live := liveOffload(n, m, kf)
	tcHW := func(f feature, extra FeatureState, extraName, sw string) Capability {
		if !m.has(f) {
			return Capability{LevelSW, m.whyNot(f) + "; " + sw}
		}
		if live.missing != "" {
			return Capability{LevelSW, m.model + " can offload it in switchdev mode, but " + live.missing + "; " + sw}
		}
		if !extra.usable() {
			return Capability{LevelSW, "kernel lacks " + extraName + "; " + sw}
		}
		return Capability{LevelHW, "tc flower offload on the " + m.model + " eswitch"}
	}
	var c Capabilities

	// VLAN: tag insert/strip works in legacy SR-IOV (VF VLAN) and switchdev alike.
	vlanFeat := n.Features.TxVLANOffload == nil || *n.Features.TxVLANOffload
	switch {
	case m.has(featVLAN) && vlanFeat:
		c.VLAN = Capability{LevelHW, "NIC inserts/strips VLAN tags (VF VLAN, tc vlan push/pop in switchdev)"}
	case m.has(featVLAN):
		c.VLAN = Capability{LevelSW, "tx-vlan-hw-insert is off; OVS/8021q tag in software"}
	default:
		c.VLAN = Capability{LevelSW, m.whyNot(featVLAN) + "; OVS tags in software"}
	}

	c.VXLANEncap = tcHW(featVXLAN, kf.VXLAN, "vxlan (CONFIG_VXLAN)", "OVS/kernel VXLAN in software")
	c.GeneveEncap = tcHW(featGeneve, kf.Geneve, "geneve (CONFIG_GENEVE)", "OVS/kernel Geneve in software")
	c.CTOffload = tcHW(featCT, kf.ActCT, "act_ct (CONFIG_NET_ACT_CT)", "OVS/netfilter conntrack in software")
	c.Police = tcHW(featPolice, FeatureLoaded, "", "OVS ingress policing / tc police in software")
	c.DSCPRewrite = tcHW(featDSCP, FeatureLoaded, "", "OVS set_field in software")

	switch {
	case n.SRIOV == nil || n.SRIOV.TotalVFs == 0:
		c.VFRateLimit = Capability{LevelNone, "no SR-IOV VFs"}
	case m.has(featVFRate):
		c.VFRateLimit = Capability{LevelHW, "ip link set " + n.Name + " vf N max_tx_rate (NIC rate limiter)"}
	default:
		c.VFRateLimit = Capability{LevelNone, m.whyNot(featVFRate)}
	}
	return c
}

// dpdkInfo says whether a DPDK PMD can drive the NIC on this node.
func dpdkInfo(n *NIC, m driverModel, node *Node) DPDK {
	d := DPDK{PMD: m.pmd}
	switch {
	case m.pmd == "":
		d.Reason = "no DPDK poll-mode driver known for driver " + orUnknown(n.Driver)
		return d
	case m.bifurcated:
		d.Bifurcated, d.Bindable = true, true
		d.Reason = m.pmd + " is bifurcated: it runs beside " + n.Driver + " (needs rdma-core), no rebind"
		return d
	}
	d.NeedsVFIO = true
	switch {
	case !node.KernelFeatures.VFIOPCI.usable():
		d.Reason = m.pmd + " needs vfio-pci, which this kernel lacks (CONFIG_VFIO_PCI)"
	case n.IOMMUGroup == nil && !node.IOMMU.NoIOMMUMode:
		d.Reason = m.pmd + " needs vfio-pci and an IOMMU group; " + n.Name + " has none (enable the IOMMU: intel_iommu=on / amd_iommu=on, or vfio no-IOMMU mode)"
	default:
		d.Bindable = true
		d.Reason = m.pmd + " after binding " + n.PCIAddress + " to vfio-pci"
		if n.IOMMUGroup == nil {
			d.Reason += " (vfio no-IOMMU mode: unsafe, no DMA isolation)"
		}
	}
	return d
}

func orUnknown(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// freeHugepages returns the free hugepages on NUMA node numa (all nodes when numa < 0
// or the pool has no per-node split), by size.
func freeHugepages(hp []HugepageSize, numa int) (free uint64, sizes []string) {
	for _, h := range hp {
		f := h.Free
		if numa >= 0 && len(h.NUMA) > 0 {
			f = 0
			for _, c := range h.NUMA {
				if c.Node == numa {
					f = c.Free
				}
			}
		}
		if f > 0 {
			free += f
			sizes = append(sizes, strconv.FormatUint(f, 10)+"×"+sizeLabel(h.SizeKB))
		}
	}
	return free, sizes
}

// sizeLabel prints a hugepage size: 2048 → "2M", 1048576 → "1G".
func sizeLabel(kb uint64) string {
	switch {
	case kb >= 1<<20 && kb%(1<<20) == 0:
		return strconv.FormatUint(kb>>20, 10) + "G"
	case kb >= 1<<10 && kb%(1<<10) == 0:
		return strconv.FormatUint(kb>>10, 10) + "M"
	}
	return strconv.FormatUint(kb, 10) + "K"
}

func isolatedOn(c CPUs, numa int) []int {
	if numa < 0 {
		return c.Isolated
	}
	for _, n := range c.NUMA {
		if n.ID == numa {
			return n.Isolated
		}
	}
	// No NUMA information for that node: judge by the whole machine.
	return c.Isolated
}

func onNode(numa int) string {
	if numa < 0 {
		return ""
	}
	return " on NUMA node " + strconv.Itoa(numa)
}

// recommend picks the fastest mode the node supports now for a device NIC and says
// why, and what is missing for a faster one. It also returns the fastest mode the
// hardware could reach once the listed fixes are made.
func recommend(n *NIC, m driverModel, node *Node) (Mode, Mode, []string) {
	var sw []string // blockers of switchdev-offload
	switch {
	case n.SRIOV == nil:
		sw = append(sw, "no SR-IOV capability")
	case n.SRIOV.TotalVFs == 0:
		sw = append(sw, "SR-IOV disabled in firmware (sriov_totalvfs is 0)")
	}
	if !m.switchdev {
		if m.model != "" {
			sw = append(sw, m.model+" ("+n.Driver+") has no switchdev mode: no vswitch offload")
		} else {
			sw = append(sw, "driver "+orUnknown(n.Driver)+" is not known to support switchdev")
		}
	} else if n.SRIOV != nil && n.SRIOV.TotalVFs > 0 {
		dev := "pci/" + n.PCIAddress
		switch n.EswitchMode {
		case EswitchSwitchdev:
		case EswitchLegacy:
			sw = append(sw, "eswitch in legacy mode: switch with `devlink dev eswitch set "+dev+" mode switchdev`")
		default:
			sw = append(sw, "eswitch mode unknown (no devlink answer): check with `devlink dev eswitch show "+dev+"`")
		}
		if n.SRIOV.NumVFs == 0 {
			sw = append(sw, "no VFs created: `echo N > /sys/bus/pci/devices/"+n.PCIAddress+"/sriov_numvfs` (up to "+strconv.Itoa(n.SRIOV.TotalVFs)+")")
		}
		switch {
		case n.Features.HWTCOffload == nil:
			sw = append(sw, "hw-tc-offload unknown (no ethtool data)")
		case !*n.Features.HWTCOffload:
			sw = append(sw, "hw-tc-offload off: enable with `ethtool -K "+n.Name+" hw-tc-offload on`")
		}
		if !node.KernelFeatures.TCFlower.usable() {
			sw = append(sw, "kernel lacks tc flower (CONFIG_NET_CLS_FLOWER)")
		}
	}

	var dp []string // blockers of ovs-dpdk
	if !n.DPDK.Bindable {
		dp = append(dp, "no DPDK: "+n.DPDK.Reason)
	}
	free, sizes := freeHugepages(node.Hugepages, n.NUMANode)
	if free == 0 {
		dp = append(dp, "no free 2M/1G hugepages"+onNode(n.NUMANode))
	}
	iso := isolatedOn(node.CPUs, n.NUMANode)
	if len(iso) == 0 {
		dp = append(dp, "no isolated CPUs"+onNode(n.NUMANode)+" (isolcpus=)")
	}
	if o := node.OVS; o != nil && o.Reachable && !slices.Contains(o.IfaceTypes, "dpdk") {
		dp = append(dp, "ovs-vswitchd has no DPDK support (iface_types lacks dpdk): install openvswitch-switch-dpdk")
	}

	potential := ModeKernel
	switch {
	case m.switchdev && n.SRIOV != nil && n.SRIOV.TotalVFs > 0:
		potential = ModeSwitchdevOffload
	case m.pmd != "":
		potential = ModeOVSDPDK
	}

	var reasons []string
	var mode Mode
	switch {
	case len(sw) == 0:
		mode = ModeSwitchdevOffload
		reasons = append(reasons, fmt.Sprintf("switchdev eswitch with hw-tc-offload on and %d VFs: VNF traffic is switched in the NIC", n.SRIOV.NumVFs))
	case len(dp) == 0:
		mode = ModeOVSDPDK
		reasons = append(reasons, fmt.Sprintf("DPDK-ready: %s, %s free hugepages and isolated CPUs %s%s",
			n.DPDK.PMD, strings.Join(sizes, "+"), formatCPUList(iso), onNode(n.NUMANode)))
		if n.DPDK.NeedsVFIO && n.SRIOV != nil && n.SRIOV.NumVFs > 0 {
			reasons = append(reasons, fmt.Sprintf("binding %s to vfio-pci removes its %d VFs", n.PCIAddress, n.SRIOV.NumVFs))
		}
		reasons = append(reasons, sw...)
	default:
		mode = ModeKernel
		kr := "kernel datapath: no faster mode is ready"
		if !node.KernelFeatures.OVSDatapath.usable() {
			kr += "; the openvswitch kernel module is absent (CONFIG_OPENVSWITCH), so OVS runs its userspace (netdev) datapath"
		}
		reasons = append(reasons, kr)
		reasons = append(reasons, sw...)
		reasons = append(reasons, dp...)
	}
	if o := node.OVS; mode != ModeKernel && o != nil && !o.Reachable {
		reasons = append(reasons, "OVS support not confirmed: "+o.Reason)
	}
	return mode, potential, reasons
}
