package hwdetect

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// pciNamer resolves PCI ids to names (the PCI ids database).
type pciNamer interface {
	// Names returns the vendor and device names for a device's modalias
	// ("pci:v000015B3d0000101Dsv...bc02sc00i00"); "" for what the database lacks.
	Names(address, modalias string) (vendor, device string)
}

// SR-IOV and switchdev identity are read from sysfs here (virtfnN, physfn,
// phys_switch_id, phys_port_name) rather than with sriovnet v1.3.0: sriovnet's file
// access goes through the package global utilfs.Fs with absolute /sys paths, so reading
// a capture would mean swapping a global (racy, and against the house style). The
// phys_port_name grammar is the kernel's and sriovnet's (parsePhysPortName).

// netdev is what sysfs says about one interface, before it becomes a NIC.
type netdev struct {
	name     string
	real     string // canonical path of sys/class/net/<name>
	device   string // canonical path of its device, "" for virtual interfaces
	pciDir   string // canonical path of its PCI device, "" when not on PCI
	pci      string // PCI address
	physfn   string // PF PCI address when this is a VF
	switchID string
	portName string
	port     portName
	portOK   bool
	kind     string
}

// pciDevice is the PCI-level attributes of a device, read once per address.
type pciDevice struct {
	dir        string
	vendor     string
	device     string
	subVendor  string
	subDevice  string
	class      string
	modalias   string
	numa       int
	iommuGroup *int
	driver     string
	totalVFs   int // -1 without SR-IOV capability
	numVFs     int
}

type nicReader struct {
	fs    fsys
	log   *zap.Logger
	names pciNamer
	pcis  map[string]*pciDevice
	// onPCI is called when the first PCI-backed interface is found (it starts loading
	// the PCI ids database, which only such interfaces need).
	onPCI func()
}

// netdevs lists sys/class/net and reads each interface's identity.
func (r *nicReader) netdevs() ([]*netdev, error) {
	ents, err := r.fs.ReadDir(pathClassNet)
	if err != nil {
		return nil, fmt.Errorf("list network interfaces in /%s: %w", pathClassNet, err)
	}
	out := make([]*netdev, 0, len(ents))
	for _, e := range ents {
		if !validIfname(e.Name()) {
			continue
		}
		out = append(out, r.netdev(e.Name()))
	}
	return out, nil
}

// validIfname rejects names the kernel would never create (they could only come from a
// doctored capture) so that no path can be built from them.
func validIfname(n string) bool {
	return n != "" && len(n) < 16 && n != "." && n != ".." && !strings.ContainsAny(n, "/\x00 ")
}

func (r *nicReader) netdev(name string) *netdev {
	nd := &netdev{name: name, real: pathClassNet + "/" + name}
	if t, err := r.fs.Readlink(nd.real); err == nil {
		nd.real = joinLink(pathClassNet, t)
	}
	if t, err := r.fs.Readlink(nd.real + "/device"); err == nil {
		nd.device = joinLink(nd.real, t)
		switch {
		case isPCIAddress(path.Base(nd.device)):
			nd.pciDir = nd.device
		case isPCIAddress(path.Base(path.Dir(nd.device))):
			// virtio-net: the netdev's device is virtioN, a child of the PCI function.
			nd.pciDir = path.Dir(nd.device)
		}
		if nd.pciDir != "" {
			if r.onPCI != nil {
				r.onPCI()
				r.onPCI = nil
			}
			nd.pci = path.Base(nd.pciDir)
			if t, err := r.fs.Readlink(nd.pciDir + "/physfn"); err == nil {
				nd.physfn = path.Base(t)
			}
		}
	}
	nd.switchID = readOpt(r.fs, nd.real+"/phys_switch_id")
	nd.portName = readOpt(r.fs, nd.real+"/phys_port_name")
	if nd.portName != "" {
		p, err := parsePhysPortName(nd.portName)
		nd.port, nd.portOK = p, err == nil
	}
	switch {
	case nd.device == "":
		nd.kind = KindVirtual
	case nd.physfn != "":
		nd.kind = KindVF
	case nd.switchID != "" && nd.portOK && nd.port.flavour != FlavourUplink:
		nd.kind = KindRepresentor
	default:
		nd.kind = KindDevice
	}
	return nd
}

// pciDevice reads (once) the PCI attributes of the device at dir.
func (r *nicReader) pciDevice(dir string) *pciDevice {
	addr := path.Base(dir)
	if p, ok := r.pcis[addr]; ok {
		return p
	}
	p := &pciDevice{dir: dir, numa: -1, totalVFs: -1}
	hex := func(attr string) string {
		s, err := readString(r.fs, dir+"/"+attr)
		if err != nil {
			return ""
		}
		id, err := parseHexID(s)
		if err != nil {
			r.log.Debug("unparsable pci id", zap.String("device", addr), zap.String("attr", attr), zap.Error(err))
			return ""
		}
		return id
	}
	p.vendor, p.device = hex("vendor"), hex("device")
	p.subVendor, p.subDevice = hex("subsystem_vendor"), hex("subsystem_device")
	if c := hex("class"); len(c) >= 6 {
		p.class = c
	}
	p.modalias = readOpt(r.fs, dir+"/modalias")
	if s := readOpt(r.fs, dir+"/numa_node"); s != "" {
		if n, err := parseSysInt(s); err == nil && n >= 0 {
			p.numa = n
		}
	}
	if g := linkBase(r.fs, dir+"/iommu_group"); g != "" {
		if n, ok := atoiStrict(g); ok {
			p.iommuGroup = &n
		}
	}
	p.driver = linkBase(r.fs, dir+"/driver")
	if s, err := readString(r.fs, dir+"/sriov_totalvfs"); err == nil {
		if n, err := parseSysInt(s); err == nil && n >= 0 {
			p.totalVFs = n
		}
	}
	if p.totalVFs >= 0 {
		if n, err := parseSysInt(readOpt(r.fs, dir+"/sriov_numvfs")); err == nil && n >= 0 {
			p.numVFs = n
		}
	}
	r.pcis[addr] = p
	return p
}

// modaliasOf returns the device's modalias, rebuilt from the id files when the capture
// lacks it.
func (p *pciDevice) modaliasOf() string {
	if strings.HasPrefix(p.modalias, "pci:") {
		return p.modalias
	}
	if p.vendor == "" || p.device == "" {
		return ""
	}
	u := func(h string) uint64 { n, _ := strconv.ParseUint(h, 16, 32); return n }
	cls := uint64(0)
	if p.class != "" {
		cls = u(p.class)
	}
	return fmt.Sprintf("pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X",
		u(p.vendor), u(p.device), u(p.subVendor), u(p.subDevice), cls>>16&0xff, cls>>8&0xff, cls&0xff)
}

// baseNIC fills the identity keys of a NIC from its netdev (and PCI device).
func (r *nicReader) baseNIC(nd *netdev) NIC {
	n := NIC{
		Name:         nd.name,
		Kind:         nd.kind,
		MAC:          readOpt(r.fs, nd.real+"/address"),
		OperState:    readOpt(r.fs, nd.real+"/operstate"),
		SpeedMbps:    -1,
		NUMANode:     -1,
		EswitchMode:  EswitchUnknown,
		Representors: []Representor{},
		PhysSwitchID: nd.switchID,
		PhysPortName: nd.portName,
		Reasons:      []string{},
	}
	if v, err := parseSysInt(readOpt(r.fs, nd.real+"/mtu")); err == nil {
		n.MTU = v
	}
	if v, err := parseSysInt(readOpt(r.fs, nd.real+"/speed")); err == nil && v > 0 {
		n.SpeedMbps = v
	}
	if nd.device != "" {
		n.Driver = linkBase(r.fs, nd.device+"/driver")
	}
	if nd.pciDir == "" {
		return n
	}
	p := r.pciDevice(nd.pciDir)
	n.PCIAddress = nd.pci
	n.VendorID, n.DeviceID = p.vendor, p.device
	n.NUMANode = p.numa
	n.IOMMUGroup = p.iommuGroup
	if n.Driver == "" {
		n.Driver = p.driver
	}
	return n
}

// nameNICs fills vendor_name and device_name from the PCI ids database. It runs after
// the sysfs reads so that loading the database overlaps them (see ghwNamer.prefetch).
func (r *nicReader) nameNICs(nics []NIC) {
	if r.names == nil {
		return
	}
	for i := range nics {
		n := &nics[i]
		p, ok := r.pcis[n.PCIAddress]
		if n.PCIAddress == "" || !ok {
			continue
		}
		if m := p.modaliasOf(); m != "" {
			n.VendorName, n.DeviceName = r.names.Names(n.PCIAddress, m)
		}
	}
}

// sriov reads the VFs of a PF; nil without SR-IOV capability.
func (r *nicReader) sriov(p *pciDevice) *SRIOV {
	if p.totalVFs < 0 {
		return nil
	}
	s := &SRIOV{TotalVFs: p.totalVFs, NumVFs: p.numVFs, VFs: []VF{}}
	if p.numVFs == 0 {
		return s
	}
	ents, err := r.fs.ReadDir(p.dir)
	if err != nil {
		return s
	}
	for _, e := range ents {
		idx, ok := virtfnIndex(e.Name())
		if !ok {
			continue
		}
		t, err := r.fs.Readlink(p.dir + "/" + e.Name())
		if err != nil {
			continue
		}
		vfDir := joinLink(p.dir, t)
		vf := VF{Index: idx, PCIAddress: path.Base(vfDir), Driver: linkBase(r.fs, vfDir+"/driver")}
		if nets, err := r.fs.ReadDir(vfDir + "/net"); err == nil && len(nets) > 0 && validIfname(nets[0].Name()) {
			vf.Netdev = nets[0].Name()
			vf.MAC = readOpt(r.fs, vfDir+"/net/"+vf.Netdev+"/address")
		}
		s.VFs = append(s.VFs, vf)
	}
	slices.SortFunc(s.VFs, func(a, b VF) int { return a.Index - b.Index })
	return s
}

// representors returns the eswitch ports of PF pf among all netdevs: the same
// phys_switch_id and either the same PCI device (mlx5 parents representors on the PF)
// or, without one, the PF's number from its uplink phys_port_name.
func representorsOf(pf *netdev, all []*netdev) []Representor {
	out := []Representor{}
	if pf.switchID == "" {
		return out
	}
	pfNum := -1
	if pf.portOK && pf.port.flavour == FlavourUplink {
		pfNum = pf.port.pf
	}
	for _, nd := range all {
		if nd.switchID != pf.switchID || !nd.portOK {
			continue
		}
		if nd != pf && nd.kind != KindRepresentor {
			continue
		}
		same := nd == pf
		if !same {
			switch {
			case nd.pci != "" && pf.pci != "":
				same = nd.pci == pf.pci
			case pfNum >= 0:
				same = nd.port.pf == pfNum
			}
		}
		if !same {
			continue
		}
		rep := Representor{Netdev: nd.name, Flavour: nd.port.flavour, PFIndex: nd.port.pf, VFIndex: nd.port.index}
		if rep.Flavour == FlavourVF && nd.port.controller < 0 && !strings.HasPrefix(nd.portName, "pf") {
			rep.PFIndex = max(pfNum, 0) // legacy bare-number name: the PF's own VFs
		}
		out = append(out, rep)
	}
	flavourRank := map[string]int{FlavourUplink: 0, FlavourPF: 1, FlavourVF: 2, FlavourSF: 3}
	slices.SortFunc(out, func(a, b Representor) int {
		if d := flavourRank[a.Flavour] - flavourRank[b.Flavour]; d != 0 {
			return d
		}
		if d := a.PFIndex - b.PFIndex; d != 0 {
			return d
		}
		if d := a.VFIndex - b.VFIndex; d != 0 {
			return d
		}
		return strings.Compare(a.Netdev, b.Netdev)
	})
	return out
}

// featureNames maps the Features keys to the kernel's ethtool feature names (first
// present wins).
var featureNames = []struct {
	kernel []string
	set    func(*Features, *bool)
}{
	{[]string{"hw-tc-offload"}, func(f *Features, v *bool) { f.HWTCOffload = v }},
	{[]string{"rx-vlan-hw-parse"}, func(f *Features, v *bool) { f.RxVLANOffload = v }},
	{[]string{"tx-vlan-hw-insert"}, func(f *Features, v *bool) { f.TxVLANOffload = v }},
	{[]string{"rx-vlan-filter"}, func(f *Features, v *bool) { f.RxVLANFilter = v }},
	{[]string{"tx-udp_tnl-segmentation"}, func(f *Features, v *bool) { f.TxUDPTnlSegmentation = v }},
	{[]string{"tx-udp_tnl-csum-segmentation"}, func(f *Features, v *bool) { f.TxUDPTnlCsumSegmentation = v }},
	{[]string{"rx-checksum"}, func(f *Features, v *bool) { f.RxChecksum = v }},
	{[]string{"tx-checksum-ip-generic", "tx-checksum-ipv4"}, func(f *Features, v *bool) { f.TxChecksum = v }},
	{[]string{"tx-tcp-segmentation"}, func(f *Features, v *bool) { f.TSO = v }},
	{[]string{"rx-gro"}, func(f *Features, v *bool) { f.GRO = v }},
	{[]string{"rx-hashing"}, func(f *Features, v *bool) { f.RxHashing = v }},
}

// featuresFrom maps ethtool's feature map onto Features; absent names stay null.
func featuresFrom(m map[string]bool) Features {
	var f Features
	for _, fn := range featureNames {
		for _, k := range fn.kernel {
			if v, ok := m[k]; ok {
				fn.set(&f, &v)
				break
			}
		}
	}
	return f
}
