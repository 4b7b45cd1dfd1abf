package hwdetect

import (
	"bytes"
	"compress/gzip"
	"io"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// Paths read for the node-wide keys (relative to the root).
const (
	pathHostname    = "proc/sys/kernel/hostname"
	pathOSRelease   = "proc/sys/kernel/osrelease"
	pathCmdline     = "proc/cmdline"
	pathConfigGz    = "proc/config.gz"
	pathCPUOnline   = "sys/devices/system/cpu/online"
	pathCPUIsolated = "sys/devices/system/cpu/isolated"
	pathCPUNohzFull = "sys/devices/system/cpu/nohz_full"
	pathNodes       = "sys/devices/system/node"
	pathHugepages   = "sys/kernel/mm/hugepages"
	pathIOMMUGroups = "sys/kernel/iommu_groups"
	pathModules     = "sys/module"
	pathNoIOMMU     = "sys/module/vfio/parameters/enable_unsafe_noiommu_mode"
	pathClassNet    = "sys/class/net"
)

// maxConfigSize bounds a decompressed kernel config (real ones are ~300 KiB).
const maxConfigSize = 16 << 20

// nodeReader reads the node-wide keys.
type nodeReader struct {
	fs  fsys
	log *zap.Logger
}

func (r nodeReader) hostname() string {
	if h := readOpt(r.fs, pathHostname); h != "" {
		return h
	}
	return readOpt(r.fs, "etc/hostname")
}

func (r nodeReader) cmdline() []string {
	return splitCmdline(readOpt(r.fs, pathCmdline))
}

func (r nodeReader) cpuList(name string) []int {
	s, err := readString(r.fs, name)
	if err != nil {
		return []int{}
	}
	l, err := ParseCPUList(s)
	if err != nil {
		r.log.Debug("unreadable cpu list", zap.String("path", name), zap.Error(err))
		return []int{}
	}
	return l
}

func (r nodeReader) cpus(params []string) CPUs {
	c := CPUs{
		Online:   r.cpuList(pathCPUOnline),
		NohzFull: r.cpuList(pathCPUNohzFull),
	}
	iso := r.cpuList(pathCPUIsolated)
	if v, ok := cmdlineValue(params, "isolcpus"); ok {
		l, err := parseIsolcpus(v)
		if err != nil {
			r.log.Debug("unparsable isolcpus=", zap.String("value", v), zap.Error(err))
		}
		iso = append(iso, l...)
	}
	if len(c.NohzFull) == 0 {
		if v, ok := cmdlineValue(params, "nohz_full"); ok {
			if l, err := ParseCPUList(v); err == nil {
				c.NohzFull = l
			}
		}
	}
	slices.Sort(iso)
	c.Isolated = slices.Compact(iso)
	if c.Isolated == nil {
		c.Isolated = []int{}
	}

	for _, id := range r.nodeIDs() {
		cpus := r.cpuList(pathNodes + "/node" + strconv.Itoa(id) + "/cpulist")
		c.NUMA = append(c.NUMA, NUMANode{ID: id, CPUs: cpus, Isolated: intersect(cpus, c.Isolated)})
	}
	if len(c.NUMA) == 0 {
		c.NUMA = []NUMANode{{ID: 0, CPUs: c.Online, Isolated: intersect(c.Online, c.Isolated)}}
	}
	return c
}

// nodeIDs lists the NUMA nodes (sys/devices/system/node/nodeN), ascending.
func (r nodeReader) nodeIDs() []int {
	ents, err := r.fs.ReadDir(pathNodes)
	if err != nil {
		return nil
	}
	var ids []int
	for _, e := range ents {
		if id, ok := nodeDirID(e.Name()); ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func intersect(a, b []int) []int {
	out := []int{}
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); ok {
			out = append(out, x)
		}
	}
	return out
}

func (r nodeReader) counter(name string) uint64 {
	s, err := readString(r.fs, name)
	if err != nil {
		return 0
	}
	n, err := parseSysUint(s)
	if err != nil {
		r.log.Debug("unparsable counter", zap.String("path", name), zap.Error(err))
		return 0
	}
	return n
}

func (r nodeReader) hugepages(nodes []int) []HugepageSize {
	out := []HugepageSize{}
	ents, err := r.fs.ReadDir(pathHugepages)
	if err != nil {
		return out
	}
	for _, e := range ents {
		size, ok := hugepageDirSize(e.Name())
		if !ok {
			continue
		}
		dir := pathHugepages + "/" + e.Name()
		h := HugepageSize{
			SizeKB: size,
			Total:  r.counter(dir + "/nr_hugepages"),
			Free:   r.counter(dir + "/free_hugepages"),
			NUMA:   []HugepageCount{},
		}
		for _, id := range nodes {
			nd := pathNodes + "/node" + strconv.Itoa(id) + "/hugepages/" + e.Name()
			if _, err := r.fs.Stat(nd); err != nil {
				continue
			}
			h.NUMA = append(h.NUMA, HugepageCount{
				Node:  id,
				Total: r.counter(nd + "/nr_hugepages"),
				Free:  r.counter(nd + "/free_hugepages"),
			})
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b HugepageSize) int { return cmpU64(a.SizeKB, b.SizeKB) })
	return out
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// iommuParams are the /proc/cmdline keys that steer the IOMMU.
var iommuParams = []string{"intel_iommu", "amd_iommu", "iommu", "iommu.passthrough", "iommu.strict", "vfio.enable_unsafe_noiommu_mode", "vfio_iommu_type1.allow_unsafe_interrupts"}

func (r nodeReader) iommu(params []string) IOMMU {
	io := IOMMU{Cmdline: []string{}}
	if ents, err := r.fs.ReadDir(pathIOMMUGroups); err == nil {
		for _, e := range ents {
			if _, ok := atoiStrict(e.Name()); ok {
				io.Groups++
			}
		}
	}
	io.Enabled = io.Groups > 0
	for _, p := range params {
		k, v, _ := strings.Cut(p, "=")
		if slices.Contains(iommuParams, k) {
			io.Cmdline = append(io.Cmdline, p)
			if (k == "iommu" && v == "pt") || (k == "iommu.passthrough" && (v == "1" || v == "on" || v == "y")) {
				io.Passthrough = true
			}
			if k == "vfio.enable_unsafe_noiommu_mode" && (v == "1" || v == "Y" || v == "y" || v == "on") {
				io.NoIOMMUMode = true
			}
		}
	}
	if v := readOpt(r.fs, pathNoIOMMU); v == "Y" || v == "1" {
		io.NoIOMMUMode = true
	}
	return io
}

// kernelConfig reads /proc/config.gz, else /boot/config-<release>. It returns the path
// read ("" when none) and the parsed options (nil when none).
func (r nodeReader) kernelConfig(release string) (string, map[string]string) {
	if b, err := r.fs.ReadFile(pathConfigGz); err == nil {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err == nil {
			cfg, err := parseKernelConfig(io.LimitReader(zr, maxConfigSize))
			if err == nil {
				return "/" + pathConfigGz, cfg
			}
		}
		r.log.Debug("unreadable kernel config", zap.String("path", pathConfigGz), zap.Error(err))
	}
	if release != "" && !strings.ContainsAny(release, "/\x00") {
		p := "boot/config-" + release
		if b, err := r.fs.ReadFile(p); err == nil {
			if cfg, err := parseKernelConfig(io.LimitReader(bytes.NewReader(b), maxConfigSize)); err == nil {
				return "/" + p, cfg
			}
		}
	}
	return "", nil
}

// kernelFeature says whether module mod (config option opt) is usable.
func (r nodeReader) kernelFeature(mod, opt string, cfg map[string]string) FeatureState {
	if fi, err := r.fs.Stat(pathModules + "/" + mod); err == nil && fi.IsDir() {
		return FeatureLoaded
	}
	if cfg == nil {
		return FeatureUnknown
	}
	switch cfg[opt] {
	case "y":
		return FeatureBuiltin
	case "m":
		return FeatureModule
	default:
		return FeatureAbsent
	}
}

func (r nodeReader) kernelFeatures(release string) KernelFeatures {
	path, cfg := r.kernelConfig(release)
	return KernelFeatures{
		Config:      path,
		OVSDatapath: r.kernelFeature("openvswitch", "CONFIG_OPENVSWITCH", cfg),
		TCFlower:    r.kernelFeature("cls_flower", "CONFIG_NET_CLS_FLOWER", cfg),
		ActCT:       r.kernelFeature("act_ct", "CONFIG_NET_ACT_CT", cfg),
		VLAN8021Q:   r.kernelFeature("8021q", "CONFIG_VLAN_8021Q", cfg),
		VXLAN:       r.kernelFeature("vxlan", "CONFIG_VXLAN", cfg),
		Geneve:      r.kernelFeature("geneve", "CONFIG_GENEVE", cfg),
		VFIOPCI:     r.kernelFeature("vfio_pci", "CONFIG_VFIO_PCI", cfg),
	}
}

// usable reports a feature that is there or can be loaded (unknown counts as usable:
// detection does not block on what it cannot see).
func (s FeatureState) usable() bool { return s != FeatureAbsent }
