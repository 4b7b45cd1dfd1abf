package hwdetect

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// tree builds a sysfs/procfs tree laid out like the real one: canonical device
// directories under sys/devices, and the relative symlinks the kernel shows (class/net,
// bus/pci/devices, device, driver, subsystem, physfn, virtfnN, iommu_group, ...).
// testdata/ holds trees built with it (TestTestdataTrees keeps them in sync) and the
// benchmark builds its large node with it.
type tree struct {
	tb  testing.TB
	dir string
}

// abs maps a tree path "/sys/..." to the file system.
func (t *tree) abs(p string) string {
	return filepath.Join(t.dir, filepath.FromSlash(strings.TrimPrefix(p, "/")))
}

func (t *tree) mkdir(p string) {
	t.tb.Helper()
	if err := os.MkdirAll(t.abs(p), 0o755); err != nil {
		t.tb.Fatal(err)
	}
}

// file writes a sysfs attribute: content and the trailing newline the kernel prints.
func (t *tree) file(p, content string) {
	t.tb.Helper()
	t.raw(p, []byte(content+"\n"))
}

func (t *tree) raw(p string, b []byte) {
	t.tb.Helper()
	t.mkdir(path.Dir(p))
	if err := os.WriteFile(t.abs(p), b, 0o644); err != nil {
		t.tb.Fatal(err)
	}
}

// link creates p as a symlink to the tree path target, written relative to p's
// directory as sysfs does.
func (t *tree) link(p, target string) {
	t.tb.Helper()
	t.mkdir(path.Dir(p))
	// The kernel (fs/kernfs/symlink.c kernfs_get_target_path) climbs from the link's
	// directory to an ancestor of the target's parent, then descends: a link to an
	// ancestor reads "../../../0000:3b:00.0", not "../..".
	rel, err := filepath.Rel(path.Dir(p), path.Dir(target))
	if err != nil {
		t.tb.Fatal(err)
	}
	rel = path.Join(filepath.ToSlash(rel), path.Base(target))
	if err := os.Symlink(rel, t.abs(p)); err != nil {
		t.tb.Fatal(err)
	}
}

func (t *tree) json(p string, v any) {
	t.tb.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.tb.Fatal(err)
	}
	t.raw(p, append(b, '\n'))
}

// nodeSpec is the node-wide part of a tree.
type nodeSpec struct {
	hostname string
	kernel   string
	cmdline  string
	online   string
	isolated string // sys/devices/system/cpu/isolated
	nohzFull string
	numa     []string // cpulist per NUMA node, index = node id
	// hugepages per size (kB): per NUMA node {total, free}
	hugepages map[uint64][][2]uint64
	modules   []string // loaded: sys/module/<name>
	config    []string // boot/config-<kernel> lines
}

func (t *tree) node(s nodeSpec) {
	t.tb.Helper()
	t.file("/proc/sys/kernel/hostname", s.hostname)
	t.file("/proc/sys/kernel/osrelease", s.kernel)
	t.file("/proc/cmdline", s.cmdline)
	t.file("/sys/devices/system/cpu/online", s.online)
	t.file("/sys/devices/system/cpu/possible", s.online)
	t.file("/sys/devices/system/cpu/isolated", s.isolated)
	if s.nohzFull != "" {
		t.file("/sys/devices/system/cpu/nohz_full", s.nohzFull)
	}
	for id, cpus := range s.numa {
		nd := fmt.Sprintf("/sys/devices/system/node/node%d", id)
		t.file(nd+"/cpulist", cpus)
		for size, per := range s.hugepages {
			if id < len(per) {
				hd := fmt.Sprintf("%s/hugepages/hugepages-%dkB", nd, size)
				t.file(hd+"/nr_hugepages", fmt.Sprint(per[id][0]))
				t.file(hd+"/free_hugepages", fmt.Sprint(per[id][1]))
				t.file(hd+"/surplus_hugepages", "0")
			}
		}
	}
	if len(s.numa) > 0 {
		t.file("/sys/devices/system/node/online", fmt.Sprintf("0-%d", len(s.numa)-1))
		t.file("/sys/devices/system/node/possible", fmt.Sprintf("0-%d", len(s.numa)-1))
	}
	for size, per := range s.hugepages {
		var total, free uint64
		for _, c := range per {
			total, free = total+c[0], free+c[1]
		}
		hd := fmt.Sprintf("/sys/kernel/mm/hugepages/hugepages-%dkB", size)
		t.file(hd+"/nr_hugepages", fmt.Sprint(total))
		t.file(hd+"/free_hugepages", fmt.Sprint(free))
		t.file(hd+"/resv_hugepages", "0")
		t.file(hd+"/surplus_hugepages", "0")
		t.file(hd+"/nr_overcommit_hugepages", "0")
	}
	t.mkdir("/sys/kernel/iommu_groups")
	for _, m := range s.modules {
		t.file("/sys/module/"+m+"/initstate", "live")
	}
	if s.config != nil {
		t.file("/boot/config-"+s.kernel, strings.Join(s.config, "\n"))
	}
	t.mkdir("/sys/class/net")
}

// pciSpec describes one PCI function.
type pciSpec struct {
	addr       string // "0000:3b:00.0"
	parent     string // device path of the parent bridge, "/sys/devices/pci0000:3a/0000:3a:00.0"
	vendor     string // "15b3"
	device     string // "101d"
	subVendor  string
	subDevice  string
	class      string // "020000"
	driver     string // "" for unbound
	numa       int
	iommuGroup int // -1 for none
	totalVFs   int // -1 without SR-IOV capability
	numVFs     int
	vfDevice   string
}

// pci creates a PCI function and returns its device path.
func (t *tree) pci(s pciSpec) string {
	t.tb.Helper()
	dev := s.parent + "/" + s.addr
	up := strings.ToUpper
	modalias := fmt.Sprintf("pci:v0000%sd0000%ssv0000%ssd0000%sbc%ssc%si%s",
		up(s.vendor), up(s.device), up(s.subVendor), up(s.subDevice), up(s.class[0:2]), up(s.class[2:4]), up(s.class[4:6]))
	t.file(dev+"/vendor", "0x"+s.vendor)
	t.file(dev+"/device", "0x"+s.device)
	t.file(dev+"/subsystem_vendor", "0x"+s.subVendor)
	t.file(dev+"/subsystem_device", "0x"+s.subDevice)
	t.file(dev+"/class", "0x"+s.class)
	t.file(dev+"/revision", "0x00")
	t.file(dev+"/modalias", modalias)
	t.file(dev+"/numa_node", fmt.Sprint(s.numa))
	t.file(dev+"/enable", "1")
	t.file(dev+"/driver_override", "(null)")
	uevent := fmt.Sprintf("PCI_CLASS=%s\nPCI_ID=%s:%s\nPCI_SUBSYS_ID=%s:%s\nPCI_SLOT_NAME=%s\nMODALIAS=%s",
		up(strings.TrimLeft(s.class, "0")), up(s.vendor), up(s.device), up(s.subVendor), up(s.subDevice), s.addr, modalias)
	if s.driver != "" {
		uevent = "DRIVER=" + s.driver + "\n" + uevent
		t.link(dev+"/driver", "/sys/bus/pci/drivers/"+s.driver)
		t.link("/sys/bus/pci/drivers/"+s.driver+"/"+s.addr, dev)
	}
	t.file(dev+"/uevent", uevent)
	t.link(dev+"/subsystem", "/sys/bus/pci")
	t.link("/sys/bus/pci/devices/"+s.addr, dev)
	if s.iommuGroup >= 0 {
		g := fmt.Sprintf("/sys/kernel/iommu_groups/%d", s.iommuGroup)
		t.link(dev+"/iommu_group", g)
		t.link(g+"/devices/"+s.addr, dev)
		t.file(g+"/type", "DMA")
	}
	if s.totalVFs >= 0 {
		t.file(dev+"/sriov_totalvfs", fmt.Sprint(s.totalVFs))
		t.file(dev+"/sriov_numvfs", fmt.Sprint(s.numVFs))
		t.file(dev+"/sriov_offset", "2")
		t.file(dev+"/sriov_stride", "1")
		t.file(dev+"/sriov_vf_device", s.vfDevice)
		t.file(dev+"/sriov_drivers_autoprobe", "1")
	}
	return dev
}

// netSpec describes one network interface.
type netSpec struct {
	name      string
	mac       string
	mtu       int
	operstate string
	speed     int // 0: attribute unreadable (link down), as sysfs answers EINVAL
	ifindex   int
	portName  string // phys_port_name; "" = EOPNOTSUPP (absent)
	switchID  string // phys_switch_id; "" = absent
}

// netdev creates an interface under the device path dev ("" for a virtual one).
func (t *tree) netdev(dev string, s netSpec) {
	t.tb.Helper()
	base := dev
	if base == "" {
		base = "/sys/devices/virtual"
	}
	nd := base + "/net/" + s.name
	t.file(nd+"/address", s.mac)
	t.file(nd+"/mtu", fmt.Sprint(s.mtu))
	t.file(nd+"/operstate", s.operstate)
	t.file(nd+"/type", "1")
	t.file(nd+"/ifindex", fmt.Sprint(s.ifindex))
	t.file(nd+"/iflink", fmt.Sprint(s.ifindex))
	t.file(nd+"/addr_assign_type", "0")
	t.file(nd+"/uevent", fmt.Sprintf("INTERFACE=%s\nIFINDEX=%d", s.name, s.ifindex))
	if s.operstate == "up" {
		t.file(nd+"/carrier", "1")
	}
	if s.speed != 0 {
		t.file(nd+"/speed", fmt.Sprint(s.speed))
	}
	if s.portName != "" {
		t.file(nd+"/phys_port_name", s.portName)
	}
	if s.switchID != "" {
		t.file(nd+"/phys_switch_id", s.switchID)
	}
	if dev != "" {
		t.link(nd+"/device", dev)
	}
	t.link(nd+"/subsystem", "/sys/class/net")
	t.link("/sys/class/net/"+s.name, nd)
}

// vf creates VF index of the PF at pfDev: its PCI function, physfn and virtfnN links.
func (t *tree) vf(pfDev string, index int, s pciSpec) string {
	t.tb.Helper()
	s.parent = path.Dir(pfDev)
	s.totalVFs = -1
	dev := t.pci(s)
	t.link(dev+"/physfn", pfDev)
	t.link(fmt.Sprintf("%s/virtfn%d", pfDev, index), dev)
	return dev
}

// ethtool writes offlane/ethtool/<ifname>.json.
func (t *tree) ethtool(ifname string, info EthtoolInfo) {
	t.tb.Helper()
	t.json("/offlane/ethtool/"+ifname+".json", info)
}

// features returns an ethtool feature map with the given names on, the rest of the
// usual names off.
func features(on ...string) map[string]bool {
	m := map[string]bool{}
	for _, k := range []string{"hw-tc-offload", "rx-vlan-hw-parse", "tx-vlan-hw-insert", "rx-vlan-filter",
		"tx-udp_tnl-segmentation", "tx-udp_tnl-csum-segmentation", "rx-checksum", "tx-checksum-ip-generic",
		"tx-tcp-segmentation", "rx-gro", "rx-hashing", "rx-ntuple-filter"} {
		m[k] = false
	}
	for _, k := range on {
		m[k] = true
	}
	return m
}

// debianConfig is the part of Debian 12's kernel config detection looks at.
var debianConfig = []string{
	"CONFIG_NET_SCHED=y", "CONFIG_NET_CLS_FLOWER=m", "CONFIG_NET_ACT_CT=m", "CONFIG_OPENVSWITCH=m",
	"CONFIG_VLAN_8021Q=m", "CONFIG_VXLAN=m", "CONFIG_GENEVE=m", "CONFIG_VFIO=m", "CONFIG_VFIO_PCI=m",
	"CONFIG_MLX5_CORE=m", "CONFIG_MLX5_ESWITCH=y", "CONFIG_MLX5_TC_CT=y", "CONFIG_ICE=m", "CONFIG_I40E=m",
	"CONFIG_IXGBE=m", "CONFIG_VIRTIO_NET=m", "# CONFIG_NETDEVSIM is not set",
}

const debianKernel = "6.1.0-18-amd64"

// cx6dx builds a dual-port ConnectX-6 Dx: PF0 with numVFs VFs (and their representors
// when switchdev), PF1 without VFs.
func (t *tree) cx6dx(switchdev bool, numVFs int) {
	t.tb.Helper()
	const bridge = "/sys/devices/pci0000:3a/0000:3a:00.0"
	const switchID = "0c42a103005e8a10"
	mode := EswitchLegacy
	if switchdev {
		mode = EswitchSwitchdev
	}
	devlink := map[string]DevlinkInfo{}
	for port := 0; port < 2; port++ {
		addr := fmt.Sprintf("0000:3b:00.%d", port)
		n := 0
		if port == 0 {
			n = numVFs
		}
		pf := t.pci(pciSpec{addr: addr, parent: bridge, vendor: "15b3", device: "101d", subVendor: "15b3", subDevice: "0016",
			class: "020000", driver: "mlx5_core", numa: 0, iommuGroup: 40 + port, totalVFs: 8, numVFs: n, vfDevice: "101e"})
		name := fmt.Sprintf("ens1f%dnp%d", port, port)
		ns := netSpec{name: name, mac: fmt.Sprintf("0c:42:a1:5e:8a:1%d", port), mtu: 9000, operstate: "up", speed: 100000,
			ifindex: 4 + port, portName: fmt.Sprintf("p%d", port)}
		if switchdev {
			ns.switchID = switchID
		}
		t.netdev(pf, ns)
		hwtc := []string{"rx-vlan-hw-parse", "tx-vlan-hw-insert", "rx-vlan-filter", "tx-udp_tnl-segmentation",
			"tx-udp_tnl-csum-segmentation", "rx-checksum", "tx-checksum-ip-generic", "tx-tcp-segmentation", "rx-gro", "rx-hashing"}
		if switchdev {
			hwtc = append(hwtc, "hw-tc-offload")
		}
		t.ethtool(name, EthtoolInfo{Driver: "mlx5_core", DriverVersion: debianKernel, FirmwareVersion: "22.39.1002 (MT_0000000359)",
			BusInfo: addr, Features: features(hwtc...)})
		devlink[addr] = DevlinkInfo{EswitchMode: mode}
		for i := 0; i < n; i++ {
			vfAddr := fmt.Sprintf("0000:3b:00.%d", 2+i)
			vf := t.vf(pf, i, pciSpec{addr: vfAddr, vendor: "15b3", device: "101e", subVendor: "15b3", subDevice: "0016",
				class: "020000", driver: "mlx5_core", numa: 0, iommuGroup: 50 + i})
			t.netdev(vf, netSpec{name: fmt.Sprintf("ens1f0v%d", i), mac: fmt.Sprintf("3a:1f:6c:00:00:%02x", i), mtu: 1500,
				operstate: "down", ifindex: 10 + i})
			if switchdev {
				t.netdev(pf, netSpec{name: fmt.Sprintf("ens1f0npf0vf%d", i), mac: fmt.Sprintf("be:5c:22:00:00:%02x", i), mtu: 1500,
					operstate: "up", ifindex: 20 + i, portName: fmt.Sprintf("pf0vf%d", i), switchID: switchID})
			}
		}
	}
	t.json("/offlane/devlink.json", devlink)
}

// testdataTrees are the captures under testdata/, by directory name.
var testdataTrees = map[string]func(t *tree){
	// ConnectX-6 Dx PF in switchdev with 4 VFs and their representors, hw-tc-offload on.
	"cx6dx-switchdev": func(t *tree) {
		t.node(nodeSpec{hostname: "cx6-sw", kernel: debianKernel, online: "0-15", numa: []string{"0-15"},
			cmdline:  "BOOT_IMAGE=/boot/vmlinuz-" + debianKernel + " root=/dev/sda1 ro intel_iommu=on iommu=pt",
			modules:  []string{"mlx5_core", "openvswitch", "cls_flower", "act_ct", "vxlan", "geneve", "8021q"},
			config:   debianConfig,
			isolated: ""})
		t.cx6dx(true, 4)
	},
	// The same card in legacy mode: VFs but no representors, hw-tc-offload off.
	"cx6dx-legacy": func(t *tree) {
		t.node(nodeSpec{hostname: "cx6-legacy", kernel: debianKernel, online: "0-15", numa: []string{"0-15"},
			cmdline: "BOOT_IMAGE=/boot/vmlinuz-" + debianKernel + " root=/dev/sda1 ro intel_iommu=on iommu=pt",
			modules: []string{"mlx5_core", "openvswitch"}, config: debianConfig})
		t.cx6dx(false, 4)
	},
	// Intel E810 with 8 VFs (iavf) in legacy SR-IOV; 1G hugepages and isolated CPUs.
	"e810-legacy-8vfs": func(t *tree) {
		t.node(nodeSpec{hostname: "e810", kernel: debianKernel, online: "0-7", numa: []string{"0-7"}, isolated: "2-7",
			cmdline:   "BOOT_IMAGE=/boot/vmlinuz-" + debianKernel + " root=/dev/sda1 ro intel_iommu=on iommu=pt isolcpus=2-7 default_hugepagesz=1G hugepagesz=1G hugepages=4",
			hugepages: map[uint64][][2]uint64{1048576: {{4, 4}}, 2048: {{0, 0}}},
			modules:   []string{"ice", "iavf", "openvswitch", "vfio", "vfio_pci"}, config: debianConfig})
		const addr = "0000:5e:00.0"
		pf := t.pci(pciSpec{addr: addr, parent: "/sys/devices/pci0000:5d/0000:5d:00.0", vendor: "8086", device: "159b",
			subVendor: "8086", subDevice: "0003", class: "020000", driver: "ice", numa: 0, iommuGroup: 30, totalVFs: 128, numVFs: 8, vfDevice: "1889"})
		t.netdev(pf, netSpec{name: "ens2f0", mac: "b4:96:91:a1:00:10", mtu: 1500, operstate: "up", speed: 25000, ifindex: 4,
			portName: "p0", switchID: ""})
		t.ethtool("ens2f0", EthtoolInfo{Driver: "ice", DriverVersion: debianKernel, FirmwareVersion: "4.20 0x8001778b 1.3346.0",
			BusInfo: addr, Features: features("rx-vlan-hw-parse", "tx-vlan-hw-insert", "rx-vlan-filter", "tx-udp_tnl-segmentation",
				"tx-udp_tnl-csum-segmentation", "rx-checksum", "tx-checksum-ip-generic", "tx-tcp-segmentation", "rx-gro", "rx-hashing")})
		for i := 0; i < 8; i++ {
			vf := t.vf(pf, i, pciSpec{addr: fmt.Sprintf("0000:5e:01.%d", i), vendor: "8086", device: "1889", subVendor: "8086",
				subDevice: "0000", class: "020000", driver: "iavf", numa: 0, iommuGroup: 60 + i})
			t.netdev(vf, netSpec{name: fmt.Sprintf("ens2f0v%d", i), mac: fmt.Sprintf("52:54:00:e8:10:%02x", i), mtu: 1500,
				operstate: "up", speed: 25000, ifindex: 10 + i})
		}
		t.json("/offlane/devlink.json", map[string]DevlinkInfo{addr: {EswitchMode: EswitchLegacy}})
	},
	// Intel X710 without VFs: a DPDK candidate that needs vfio-pci; 2M hugepages, isolcpus.
	"x710-novfs": func(t *tree) {
		t.node(nodeSpec{hostname: "x710", kernel: debianKernel, online: "0-3", numa: []string{"0-3"}, isolated: "2-3",
			cmdline:   "BOOT_IMAGE=/boot/vmlinuz-" + debianKernel + " root=/dev/sda1 ro intel_iommu=on isolcpus=domain,managed_irq,2-3",
			hugepages: map[uint64][][2]uint64{2048: {{1024, 1024}}},
			modules:   []string{"i40e", "openvswitch"}, config: debianConfig})
		pf := t.pci(pciSpec{addr: "0000:af:00.0", parent: "/sys/devices/pci0000:ae/0000:ae:00.0", vendor: "8086", device: "1572",
			subVendor: "8086", subDevice: "0001", class: "020000", driver: "i40e", numa: 0, iommuGroup: 21, totalVFs: 64, numVFs: 0, vfDevice: "154c"})
		t.netdev(pf, netSpec{name: "ens3f0", mac: "3c:fd:fe:a0:00:01", mtu: 1500, operstate: "up", speed: 10000, ifindex: 3})
		t.ethtool("ens3f0", EthtoolInfo{Driver: "i40e", DriverVersion: debianKernel, FirmwareVersion: "9.20 0x8000d8c5 1.3353.0",
			BusInfo: "0000:af:00.0", Features: features("rx-vlan-hw-parse", "tx-vlan-hw-insert", "rx-vlan-filter",
				"tx-udp_tnl-segmentation", "rx-checksum", "tx-checksum-ip-generic", "tx-tcp-segmentation", "rx-gro", "rx-hashing")})
		t.json("/offlane/devlink.json", map[string]DevlinkInfo{})
	},
	// A VM's virtio-net NIC: no SR-IOV, no IOMMU, no hugepages.
	"virtio-vm": func(t *tree) {
		t.node(nodeSpec{hostname: "vnf-vm", kernel: debianKernel, online: "0-1", numa: []string{"0-1"},
			cmdline: "BOOT_IMAGE=/boot/vmlinuz-" + debianKernel + " root=/dev/vda1 ro console=ttyS0",
			modules: []string{"virtio_net", "virtio_pci"}, config: debianConfig})
		pci := t.pci(pciSpec{addr: "0000:00:03.0", parent: "/sys/devices/pci0000:00", vendor: "1af4", device: "1041",
			subVendor: "1af4", subDevice: "1100", class: "020000", driver: "virtio-pci", numa: -1, iommuGroup: -1, totalVFs: -1})
		vdev := pci + "/virtio0"
		t.file(vdev+"/vendor", "0x1af4")
		t.file(vdev+"/device", "0x0001")
		t.file(vdev+"/modalias", "virtio:d00000001v00001AF4")
		t.file(vdev+"/uevent", "DRIVER=virtio_net\nMODALIAS=virtio:d00000001v00001AF4")
		t.link(vdev+"/driver", "/sys/bus/virtio/drivers/virtio_net")
		t.link(vdev+"/subsystem", "/sys/bus/virtio")
		t.link("/sys/bus/virtio/devices/virtio0", vdev)
		t.netdev(vdev, netSpec{name: "eth0", mac: "52:54:00:12:34:56", mtu: 1500, operstate: "up", speed: -1, ifindex: 2})
		t.netdev("", netSpec{name: "lo", mac: "00:00:00:00:00:00", mtu: 65536, operstate: "unknown", ifindex: 1})
		t.ethtool("eth0", EthtoolInfo{Driver: "virtio_net", DriverVersion: "1.0.0", BusInfo: "0000:00:03.0",
			Features: features("rx-checksum", "tx-checksum-ip-generic", "tx-tcp-segmentation", "rx-gro")})
	},
	// Two NUMA nodes with hugepages and isolated CPUs on both; an X710 on node 1 (pages
	// free) and an 82599 on node 0 (its pages all in use).
	"numa2-hugepages": func(t *tree) {
		t.node(nodeSpec{hostname: "numa2", kernel: debianKernel, online: "0-15", numa: []string{"0-7", "8-15"},
			isolated: "2-7,10-15", nohzFull: "2-7,10-15",
			cmdline:   "BOOT_IMAGE=/boot/vmlinuz-" + debianKernel + " root=/dev/sda1 ro intel_iommu=on iommu=pt isolcpus=managed_irq,domain,2-7,10-15 nohz_full=2-7,10-15",
			hugepages: map[uint64][][2]uint64{2048: {{512, 0}, {512, 512}}, 1048576: {{0, 0}, {4, 4}}},
			modules:   []string{"i40e", "ixgbe", "openvswitch", "vfio", "vfio_pci"}, config: debianConfig})
		x := t.pci(pciSpec{addr: "0000:d8:00.0", parent: "/sys/devices/pci0000:d7/0000:d7:00.0", vendor: "8086", device: "1572",
			subVendor: "8086", subDevice: "0001", class: "020000", driver: "i40e", numa: 1, iommuGroup: 90, totalVFs: 64, numVFs: 0, vfDevice: "154c"})
		t.netdev(x, netSpec{name: "ens5f0", mac: "3c:fd:fe:b0:00:01", mtu: 1500, operstate: "up", speed: 10000, ifindex: 5})
		t.ethtool("ens5f0", EthtoolInfo{Driver: "i40e", DriverVersion: debianKernel, FirmwareVersion: "9.20 0x8000d8c5 1.3353.0",
			BusInfo: "0000:d8:00.0", Features: features("rx-vlan-hw-parse", "tx-vlan-hw-insert", "rx-checksum", "tx-checksum-ip-generic")})
		i := t.pci(pciSpec{addr: "0000:18:00.0", parent: "/sys/devices/pci0000:17/0000:17:00.0", vendor: "8086", device: "10fb",
			subVendor: "8086", subDevice: "000c", class: "020000", driver: "ixgbe", numa: 0, iommuGroup: 12, totalVFs: 63, numVFs: 0, vfDevice: "10ed"})
		t.netdev(i, netSpec{name: "ens1f0", mac: "90:e2:ba:00:00:01", mtu: 1500, operstate: "down", ifindex: 4})
		t.ethtool("ens1f0", EthtoolInfo{Driver: "ixgbe", DriverVersion: debianKernel, FirmwareVersion: "0x61bd0001",
			BusInfo: "0000:18:00.0", Features: features("rx-vlan-hw-parse", "tx-vlan-hw-insert", "rx-checksum", "tx-checksum-ip-generic")})
		t.json("/offlane/devlink.json", map[string]DevlinkInfo{})
	},
}

// buildTree builds a named testdata tree into dir.
func buildTree(tb testing.TB, name, dir string) {
	tb.Helper()
	fn, ok := testdataTrees[name]
	if !ok {
		tb.Fatalf("no tree %q", name)
	}
	fn(&tree{tb: tb, dir: dir})
}
