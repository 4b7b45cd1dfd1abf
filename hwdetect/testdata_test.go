package hwdetect

import (
	"context"
	"flag"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/ trees from testtree_test.go")

// snapshotDir describes every entry of a tree: "d", "l <target>" or "f <content>".
func snapshotDir(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "l " + t
		case d.IsDir():
			// Directories are implied by what they hold: git keeps no empty directory, so
			// a clean checkout lacks the builder's empty ones (sys/kernel/iommu_groups of a
			// node without an IOMMU), and detection reads a missing directory as empty.
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = "f " + string(b)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestTestdataTrees keeps testdata/<tree> equal to what testtree_test.go builds
// (`go test ./hwdetect -run TestTestdataTrees -update` rewrites them).
func TestTestdataTrees(t *testing.T) {
	for _, name := range slices.Sorted(maps.Keys(testdataTrees)) {
		t.Run(name, func(t *testing.T) {
			dst := filepath.Join("testdata", name)
			if *update {
				if err := os.RemoveAll(dst); err != nil {
					t.Fatal(err)
				}
				buildTree(t, name, dst)
				return
			}
			want := t.TempDir()
			buildTree(t, name, want)
			got, exp := snapshotDir(t, dst), snapshotDir(t, want)
			for _, p := range slices.Sorted(maps.Keys(exp)) {
				if got[p] != exp[p] {
					t.Errorf("testdata/%s/%s = %.60q, builder makes %.60q (run with -update)", name, p, got[p], exp[p])
				}
			}
			for p := range got {
				if _, ok := exp[p]; !ok {
					t.Errorf("testdata/%s/%s is not made by the builder (run with -update)", name, p)
				}
			}
		})
	}
}

// replay detects a testdata tree.
func replay(t *testing.T, name string) *Node {
	t.Helper()
	n, err := Detect(context.Background(), Options{From: filepath.Join("testdata", name)})
	if err != nil {
		t.Fatalf("detect %s: %v", name, err)
	}
	return n
}

func nicByName(t *testing.T, n *Node, name string) *NIC {
	t.Helper()
	for i := range n.NICs {
		if n.NICs[i].Name == name {
			return &n.NICs[i]
		}
	}
	var names []string
	for _, x := range n.NICs {
		names = append(names, x.Name)
	}
	t.Fatalf("no NIC %s; have %v", name, names)
	return nil
}

func names(nics []NIC) []string {
	var out []string
	for _, n := range nics {
		out = append(out, n.Name)
	}
	return out
}

// hasReason reports a reason containing sub.
func hasReason(n *NIC, sub string) bool {
	for _, r := range n.Reasons {
		if strings.Contains(r, sub) {
			return true
		}
	}
	return false
}

func wantReason(t *testing.T, n *NIC, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !hasReason(n, s) {
			t.Errorf("%s: no reason containing %q; reasons:\n  %s", n.Name, s, strings.Join(n.Reasons, "\n  "))
		}
	}
}

func noReason(t *testing.T, n *NIC, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if hasReason(n, s) {
			t.Errorf("%s: unexpected reason containing %q; reasons:\n  %s", n.Name, s, strings.Join(n.Reasons, "\n  "))
		}
	}
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func boolp(b *bool) string {
	if b == nil {
		return "null"
	}
	if *b {
		return "true"
	}
	return "false"
}

func TestDetectCX6DxSwitchdev(t *testing.T) {
	n := replay(t, "cx6dx-switchdev")
	eq(t, "hostname", n.Hostname, "cx6-sw")
	eq(t, "kernel", n.Kernel, debianKernel)
	eq(t, "source", n.Source, filepath.Join("testdata", "cx6dx-switchdev"))
	if got := names(n.NICs); !slices.Equal(got, []string{"ens1f0np0", "ens1f1np1"}) {
		t.Fatalf("NICs = %v, want the two PFs only (VFs and representors need --all)", got)
	}
	pf := nicByName(t, n, "ens1f0np0")
	eq(t, "kind", pf.Kind, KindDevice)
	eq(t, "mac", pf.MAC, "0c:42:a1:5e:8a:10")
	eq(t, "mtu", pf.MTU, 9000)
	eq(t, "operstate", pf.OperState, "up")
	eq(t, "speed", pf.SpeedMbps, 100000)
	eq(t, "pci", pf.PCIAddress, "0000:3b:00.0")
	eq(t, "vendor_id", pf.VendorID, "15b3")
	eq(t, "device_id", pf.DeviceID, "101d")
	eq(t, "vendor_name", pf.VendorName, "Mellanox Technologies")
	eq(t, "device_name", pf.DeviceName, "MT2892 Family [ConnectX-6 Dx]")
	eq(t, "model", pf.Model, "ConnectX-6 Dx")
	eq(t, "driver", pf.Driver, "mlx5_core")
	eq(t, "driver_version", pf.DriverVersion, debianKernel)
	eq(t, "firmware", pf.FirmwareVersion, "22.39.1002 (MT_0000000359)")
	eq(t, "numa", pf.NUMANode, 0)
	if pf.IOMMUGroup == nil || *pf.IOMMUGroup != 40 {
		t.Errorf("iommu_group = %v, want 40", pf.IOMMUGroup)
	}
	eq(t, "eswitch", pf.EswitchMode, EswitchSwitchdev)
	eq(t, "phys_switch_id", pf.PhysSwitchID, "0c42a103005e8a10")
	eq(t, "phys_port_name", pf.PhysPortName, "p0")
	if pf.SRIOV == nil {
		t.Fatal("sriov = null")
	}
	eq(t, "total_vfs", pf.SRIOV.TotalVFs, 8)
	eq(t, "num_vfs", pf.SRIOV.NumVFs, 4)
	if len(pf.SRIOV.VFs) != 4 {
		t.Fatalf("vfs = %+v, want 4", pf.SRIOV.VFs)
	}
	for i, vf := range pf.SRIOV.VFs {
		want := VF{Index: i, PCIAddress: "0000:3b:00." + string(rune('2'+i)), Netdev: "ens1f0v" + string(rune('0'+i)),
			MAC: "3a:1f:6c:00:00:0" + string(rune('0'+i)), Driver: "mlx5_core", Representor: "ens1f0npf0vf" + string(rune('0'+i))}
		if vf != want {
			t.Errorf("vf %d = %+v, want %+v", i, vf, want)
		}
	}
	wantReps := []Representor{{"ens1f0np0", FlavourUplink, 0, -1}}
	for i := 0; i < 4; i++ {
		wantReps = append(wantReps, Representor{"ens1f0npf0vf" + string(rune('0'+i)), FlavourVF, 0, i})
	}
	if !slices.Equal(pf.Representors, wantReps) {
		t.Errorf("representors = %+v, want %+v", pf.Representors, wantReps)
	}
	eq(t, "hw_tc_offload", boolp(pf.Features.HWTCOffload), "true")
	eq(t, "rx_vlan_offload", boolp(pf.Features.RxVLANOffload), "true")
	eq(t, "tx_udp_tnl_segmentation", boolp(pf.Features.TxUDPTnlSegmentation), "true")
	eq(t, "dpdk", pf.DPDK, DPDK{Bindable: true, Bifurcated: true, PMD: "net_mlx5", Reason: pf.DPDK.Reason})
	c := pf.Capabilities
	for what, got := range map[string]Level{"vlan": c.VLAN.Level, "vxlan": c.VXLANEncap.Level, "geneve": c.GeneveEncap.Level,
		"ct": c.CTOffload.Level, "police": c.Police.Level, "dscp": c.DSCPRewrite.Level, "vf_rate_limit": c.VFRateLimit.Level} {
		eq(t, "capabilities."+what, got, LevelHW)
	}
	eq(t, "recommended_mode", pf.RecommendedMode, ModeSwitchdevOffload)
	eq(t, "potential_mode", pf.PotentialMode, ModeSwitchdevOffload)
	wantReason(t, pf, "switchdev eswitch with hw-tc-offload on and 4 VFs")
	noReason(t, pf, "legacy", "hw-tc-offload off")

	// PF1 shares the switch id (one card) but has no VFs: only its own uplink.
	pf1 := nicByName(t, n, "ens1f1np1")
	if !slices.Equal(pf1.Representors, []Representor{{"ens1f1np1", FlavourUplink, 1, -1}}) {
		t.Errorf("ens1f1np1 representors = %+v, want only its uplink", pf1.Representors)
	}
	eq(t, "ens1f1np1 num_vfs", pf1.SRIOV.NumVFs, 0)
	eq(t, "ens1f1np1 mode", pf1.RecommendedMode, ModeKernel)
	wantReason(t, pf1, "no VFs created: `echo N > /sys/bus/pci/devices/0000:3b:00.1/sriov_numvfs` (up to 8)",
		"no free 2M/1G hugepages on NUMA node 0", "no isolated CPUs on NUMA node 0")

	// Node-wide keys.
	eq(t, "iommu.enabled", n.IOMMU.Enabled, true)
	eq(t, "iommu.groups", n.IOMMU.Groups, 6) // 2 PFs + 4 VFs
	eq(t, "iommu.passthrough", n.IOMMU.Passthrough, true)
	if !slices.Equal(n.IOMMU.Cmdline, []string{"intel_iommu=on", "iommu=pt"}) {
		t.Errorf("iommu.cmdline = %v", n.IOMMU.Cmdline)
	}
	kf := n.KernelFeatures
	eq(t, "kernel_features.config", kf.Config, "/boot/config-"+debianKernel)
	eq(t, "openvswitch", kf.OVSDatapath, FeatureLoaded)
	eq(t, "tc_flower", kf.TCFlower, FeatureLoaded)
	eq(t, "vfio_pci", kf.VFIOPCI, FeatureModule)
	eq(t, "ovs.reachable", n.OVS.Reachable, false)
	if !strings.Contains(n.OVS.Reason, "not in the capture") {
		t.Errorf("ovs.reason = %q", n.OVS.Reason)
	}
}

func TestDetectCX6DxSwitchdevAll(t *testing.T) {
	n, err := Detect(context.Background(), Options{From: "testdata/cx6dx-switchdev", All: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ens1f0np0", "ens1f0npf0vf0", "ens1f0npf0vf1", "ens1f0npf0vf2", "ens1f0npf0vf3",
		"ens1f0v0", "ens1f0v1", "ens1f0v2", "ens1f0v3", "ens1f1np1"}
	if got := names(n.NICs); !slices.Equal(got, want) {
		t.Fatalf("NICs with --all = %v, want %v", got, want)
	}
	rep := nicByName(t, n, "ens1f0npf0vf2")
	eq(t, "rep kind", rep.Kind, KindRepresentor)
	eq(t, "rep pci", rep.PCIAddress, "0000:3b:00.0")
	eq(t, "rep mode", rep.RecommendedMode, Mode(""))
	wantReason(t, rep, "representor (vf 2) of PF 0")
	vf := nicByName(t, n, "ens1f0v1")
	eq(t, "vf kind", vf.Kind, KindVF)
	eq(t, "vf pci", vf.PCIAddress, "0000:3b:00.3")
	eq(t, "vf model", vf.Model, "ConnectX VF")
	eq(t, "vf device_name", vf.DeviceName, "ConnectX Family mlx5Gen Virtual Function")
	eq(t, "vf dpdk bindable", vf.DPDK.Bindable, true)
	wantReason(t, vf, "SR-IOV VF of 0000:3b:00.0")
}

func TestDetectCX6DxLegacy(t *testing.T) {
	n := replay(t, "cx6dx-legacy")
	pf := nicByName(t, n, "ens1f0np0")
	eq(t, "eswitch", pf.EswitchMode, EswitchLegacy)
	if len(pf.Representors) != 0 {
		t.Errorf("representors = %+v, want none in legacy mode", pf.Representors)
	}
	eq(t, "num_vfs", pf.SRIOV.NumVFs, 4)
	for _, vf := range pf.SRIOV.VFs {
		eq(t, "vf representor", vf.Representor, "")
	}
	eq(t, "hw_tc_offload", boolp(pf.Features.HWTCOffload), "false")
	eq(t, "recommended_mode", pf.RecommendedMode, ModeKernel)
	eq(t, "potential_mode", pf.PotentialMode, ModeSwitchdevOffload)
	wantReason(t, pf,
		"eswitch in legacy mode: switch with `devlink dev eswitch set pci/0000:3b:00.0 mode switchdev`",
		"hw-tc-offload off: enable with `ethtool -K ens1f0np0 hw-tc-offload on`",
		"no free 2M/1G hugepages on NUMA node 0",
		"no isolated CPUs on NUMA node 0")
	noReason(t, pf, "no DPDK") // mlx5 is bifurcated: DPDK is available, resources are not
	c := pf.Capabilities
	eq(t, "vlan", c.VLAN.Level, LevelHW)
	eq(t, "vf_rate_limit", c.VFRateLimit.Level, LevelHW)
	for what, cp := range map[string]Capability{"vxlan": c.VXLANEncap, "ct": c.CTOffload, "police": c.Police} {
		eq(t, "capabilities."+what, cp.Level, LevelSW)
		if !strings.Contains(cp.Reason, "eswitch is legacy") {
			t.Errorf("capabilities.%s reason %q does not name the legacy eswitch", what, cp.Reason)
		}
	}
	// tc_flower is in the kernel config as a module, not loaded: still usable.
	eq(t, "tc_flower", n.KernelFeatures.TCFlower, FeatureModule)
}

func TestDetectE810Legacy(t *testing.T) {
	n := replay(t, "e810-legacy-8vfs")
	if got := names(n.NICs); !slices.Equal(got, []string{"ens2f0"}) {
		t.Fatalf("NICs = %v, want [ens2f0]", got)
	}
	pf := nicByName(t, n, "ens2f0")
	eq(t, "driver", pf.Driver, "ice")
	eq(t, "model", pf.Model, "E810")
	eq(t, "vendor_name", pf.VendorName, "Intel Corporation")
	eq(t, "device_name", pf.DeviceName, "Ethernet Controller E810-XXV for SFP")
	eq(t, "firmware", pf.FirmwareVersion, "4.20 0x8001778b 1.3346.0")
	eq(t, "eswitch", pf.EswitchMode, EswitchLegacy)
	eq(t, "total_vfs", pf.SRIOV.TotalVFs, 128)
	eq(t, "num_vfs", pf.SRIOV.NumVFs, 8)
	if len(pf.SRIOV.VFs) != 8 {
		t.Fatalf("vfs = %d, want 8", len(pf.SRIOV.VFs))
	}
	eq(t, "vf7", pf.SRIOV.VFs[7], VF{Index: 7, PCIAddress: "0000:5e:01.7", Netdev: "ens2f0v7", MAC: "52:54:00:e8:10:07", Driver: "iavf"})
	eq(t, "dpdk", pf.DPDK.Bindable && pf.DPDK.NeedsVFIO && !pf.DPDK.Bifurcated, true)
	eq(t, "pmd", pf.DPDK.PMD, "net_ice")
	eq(t, "recommended_mode", pf.RecommendedMode, ModeOVSDPDK)
	eq(t, "potential_mode", pf.PotentialMode, ModeSwitchdevOffload)
	wantReason(t, pf, "DPDK-ready: net_ice, 4×1G free hugepages and isolated CPUs 2-7 on NUMA node 0",
		"binding 0000:5e:00.0 to vfio-pci removes its 8 VFs",
		"eswitch in legacy mode: switch with `devlink dev eswitch set pci/0000:5e:00.0 mode switchdev`",
		"hw-tc-offload off")
	eq(t, "ct", pf.Capabilities.CTOffload.Level, LevelSW)
	if !strings.Contains(pf.Capabilities.CTOffload.Reason, "ice does not offload conntrack") {
		t.Errorf("ct reason = %q", pf.Capabilities.CTOffload.Reason)
	}
	eq(t, "vxlan", pf.Capabilities.VXLANEncap.Level, LevelSW)
	eq(t, "vf_rate_limit", pf.Capabilities.VFRateLimit.Level, LevelHW)
	if !slices.Equal(n.CPUs.Isolated, []int{2, 3, 4, 5, 6, 7}) {
		t.Errorf("isolated = %v", n.CPUs.Isolated)
	}
	if len(n.Hugepages) != 2 || n.Hugepages[1].SizeKB != 1048576 || n.Hugepages[1].Free != 4 {
		t.Errorf("hugepages = %+v", n.Hugepages)
	}
}

func TestDetectX710NoVFs(t *testing.T) {
	n := replay(t, "x710-novfs")
	pf := nicByName(t, n, "ens3f0")
	eq(t, "model", pf.Model, "X710/XL710")
	eq(t, "device_name", pf.DeviceName, "Ethernet Controller X710 for 10GbE SFP+")
	eq(t, "total_vfs", pf.SRIOV.TotalVFs, 64)
	eq(t, "num_vfs", pf.SRIOV.NumVFs, 0)
	eq(t, "vfs", len(pf.SRIOV.VFs), 0)
	eq(t, "eswitch", pf.EswitchMode, EswitchUnknown)
	eq(t, "dpdk", pf.DPDK, DPDK{Bindable: true, NeedsVFIO: true, PMD: "net_i40e", Reason: "net_i40e after binding 0000:af:00.0 to vfio-pci"})
	eq(t, "recommended_mode", pf.RecommendedMode, ModeOVSDPDK)
	eq(t, "potential_mode", pf.PotentialMode, ModeOVSDPDK)
	wantReason(t, pf, "DPDK-ready: net_i40e, 1024×2M free hugepages and isolated CPUs 2-3 on NUMA node 0",
		"X710/XL710 (i40e) has no switchdev mode")
	noReason(t, pf, "removes its")
	eq(t, "vxlan", pf.Capabilities.VXLANEncap.Level, LevelSW)
	eq(t, "vf_rate_limit", pf.Capabilities.VFRateLimit.Level, LevelHW)
	// isolcpus=domain,managed_irq,2-3: flags dropped.
	if !slices.Equal(n.CPUs.Isolated, []int{2, 3}) {
		t.Errorf("isolated = %v, want [2 3]", n.CPUs.Isolated)
	}
}

func TestDetectVirtioVM(t *testing.T) {
	n := replay(t, "virtio-vm")
	if got := names(n.NICs); !slices.Equal(got, []string{"eth0"}) {
		t.Fatalf("NICs = %v, want [eth0] (lo skipped)", got)
	}
	e := nicByName(t, n, "eth0")
	eq(t, "driver", e.Driver, "virtio_net")
	eq(t, "pci", e.PCIAddress, "0000:00:03.0")
	eq(t, "vendor_id", e.VendorID, "1af4")
	eq(t, "device_id", e.DeviceID, "1041")
	eq(t, "device_name", e.DeviceName, "Virtio 1.0 network device")
	eq(t, "speed", e.SpeedMbps, -1)
	eq(t, "numa", e.NUMANode, -1)
	if e.IOMMUGroup != nil {
		t.Errorf("iommu_group = %d, want null", *e.IOMMUGroup)
	}
	if e.SRIOV != nil {
		t.Errorf("sriov = %+v, want null", e.SRIOV)
	}
	eq(t, "eswitch", e.EswitchMode, EswitchUnknown)
	eq(t, "dpdk.bindable", e.DPDK.Bindable, false)
	eq(t, "dpdk.needs_vfio", e.DPDK.NeedsVFIO, true)
	eq(t, "recommended_mode", e.RecommendedMode, ModeKernel)
	eq(t, "potential_mode", e.PotentialMode, ModeOVSDPDK)
	wantReason(t, e, "no SR-IOV capability", "has no switchdev mode", "needs vfio-pci and an IOMMU group",
		"no free 2M/1G hugepages", "no isolated CPUs")
	noReason(t, e, "NUMA node") // no NUMA affinity: judged machine-wide
	eq(t, "vf_rate_limit", e.Capabilities.VFRateLimit.Level, LevelNone)
	eq(t, "iommu.enabled", n.IOMMU.Enabled, false)

	all, err := Detect(context.Background(), Options{From: "testdata/virtio-vm", All: true})
	if err != nil {
		t.Fatal(err)
	}
	lo := nicByName(t, all, "lo")
	eq(t, "lo kind", lo.Kind, KindVirtual)
	eq(t, "lo mtu", lo.MTU, 65536)
}

func TestDetectNUMA2Hugepages(t *testing.T) {
	n := replay(t, "numa2-hugepages")
	if len(n.CPUs.NUMA) != 2 {
		t.Fatalf("numa = %+v", n.CPUs.NUMA)
	}
	eq(t, "node1 isolated", formatCPUList(n.CPUs.NUMA[1].Isolated), "10-15")
	eq(t, "node0 isolated", formatCPUList(n.CPUs.NUMA[0].Isolated), "2-7")
	eq(t, "nohz_full", formatCPUList(n.CPUs.NohzFull), "2-7,10-15")
	want := []HugepageSize{
		{SizeKB: 2048, Total: 1024, Free: 512, NUMA: []HugepageCount{{0, 512, 0}, {1, 512, 512}}},
		{SizeKB: 1048576, Total: 4, Free: 4, NUMA: []HugepageCount{{0, 0, 0}, {1, 4, 4}}},
	}
	if len(n.Hugepages) != 2 {
		t.Fatalf("hugepages = %+v", n.Hugepages)
	}
	for i := range want {
		h := n.Hugepages[i]
		if h.SizeKB != want[i].SizeKB || h.Total != want[i].Total || h.Free != want[i].Free || !slices.Equal(h.NUMA, want[i].NUMA) {
			t.Errorf("hugepages[%d] = %+v, want %+v", i, h, want[i])
		}
	}
	x := nicByName(t, n, "ens5f0")
	eq(t, "x710 numa", x.NUMANode, 1)
	eq(t, "x710 mode", x.RecommendedMode, ModeOVSDPDK)
	wantReason(t, x, "512×2M+4×1G free hugepages and isolated CPUs 10-15 on NUMA node 1")
	i := nicByName(t, n, "ens1f0")
	eq(t, "82599 model", i.Model, "82599/X5xx")
	eq(t, "82599 numa", i.NUMANode, 0)
	eq(t, "82599 operstate", i.OperState, "down")
	eq(t, "82599 speed", i.SpeedMbps, -1)
	eq(t, "82599 mode", i.RecommendedMode, ModeKernel)
	wantReason(t, i, "no free 2M/1G hugepages on NUMA node 0")
	noReason(t, i, "no isolated CPUs", "no DPDK")
}
