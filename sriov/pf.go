package sriov

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var (
	reUplinkPort = regexp.MustCompile(`^p\d+$`)
	reVFRepPort  = regexp.MustCompile(`^(?:c\d+)?pf(\d+)vf(\d+)$`)
	reVirtfn     = regexp.MustCompile(`^virtfn(\d+)$`)
)

// pfRefHelp is how a PF can be named; quoted in errors.
const pfRefHelp = "give the PF as a netdev (ens1f0np0), a PCI address (0000:3b:00.0) or a devlink handle (pci/0000:3b:00.0, netdevsim/netdevsim1)"

// resolvePF turns a user's PF reference into its devlink handle and canonical sysfs
// directory.
func (m *Manager) resolvePF(ref string) (Device, string, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return Device{}, "", fmt.Errorf("%w: empty PF: %s", ErrInvalid, pfRefHelp)
	}
	byDev := func(d Device) (Device, string, error) {
		if d.Name == "." || d.Name == ".." || d.Bus == "." || d.Bus == ".." {
			return Device{}, "", fmt.Errorf("%w: %q: %s", ErrInvalid, ref, pfRefHelp)
		}
		dir, err := resolve(m.sys, "sys/bus/"+d.Bus+"/devices/"+d.Name)
		if err != nil || !strings.HasPrefix(dir, "sys/devices/") || !m.isDir(dir) {
			return Device{}, "", fmt.Errorf("%w: %s: not in /sys/bus/%s/devices: %s", ErrNoDevice, d, d.Bus, pfRefHelp)
		}
		return d, dir, nil
	}
	switch {
	case rePCIFull.MatchString(ref):
		return byDev(Device{Bus: "pci", Name: strings.ToLower(ref)})
	case rePCIShort.MatchString(ref):
		return byDev(Device{Bus: "pci", Name: "0000:" + strings.ToLower(ref)})
	case reBusName.MatchString(ref) && !strings.Contains(ref, "//"):
		bus, name, _ := strings.Cut(ref, "/")
		return byDev(Device{Bus: bus, Name: name})
	}
	if strings.ContainsAny(ref, "/ \x00") || len(ref) > 15 {
		return Device{}, "", fmt.Errorf("%w: %q is not a netdev name: %s", ErrInvalid, ref, pfRefHelp)
	}
	nd := "sys/class/net/" + ref
	if !m.isDir(nd) {
		return Device{}, "", fmt.Errorf("%w: no netdev, PCI device or devlink handle %q: %s", ErrNoDevice, ref, pfRefHelp)
	}
	if _, err := m.sys.Readlink(nd + "/device"); err != nil {
		return Device{}, "", fmt.Errorf("%w: netdev %s has no device (a virtual interface): %s", ErrNoSRIOV, ref, pfRefHelp)
	}
	dir, err := resolve(m.sys, nd+"/device")
	if err != nil {
		return Device{}, "", fmt.Errorf("netdev %s: %w", ref, err)
	}
	if pfLink, err := m.sys.Readlink(dir + "/physfn"); err == nil {
		return Device{}, "", fmt.Errorf("%w: %s is a VF (of %s): give its PF", ErrInvalid, ref, path.Base(pfLink))
	}
	if pn, _ := readAttr(m.sys, nd+"/phys_port_name"); reVFRepPort.MatchString(pn) {
		return Device{}, "", fmt.Errorf("%w: %s is a VF representor (%s): give its PF (%s)", ErrInvalid, ref, pn, path.Base(dir))
	}
	bus := linkBase(m.sys, dir+"/subsystem")
	if bus == "" {
		return Device{}, "", fmt.Errorf("netdev %s: device %s has no subsystem link", ref, dir)
	}
	return Device{Bus: bus, Name: path.Base(dir)}, dir, nil
}

func (m *Manager) isDir(name string) bool {
	_, err := m.sys.ReadDir(name)
	return err == nil
}

// PF reads the SR-IOV state of the PF named by ref (netdev, PCI address or devlink
// handle). It returns an error wrapping ErrNoDevice when there is no such device and
// ErrNoSRIOV when the device has no SR-IOV capability. Read-only.
func (m *Manager) PF(ctx context.Context, ref string) (*PF, error) {
	dev, dir, err := m.resolvePF(ref)
	if err != nil {
		return nil, err
	}
	return m.readPF(ctx, dev, dir, nil)
}

// readPF reads one PF. ports, when given, are the devlink ports (to find the PF's
// physical port netdev); nil makes it ask devlink.
func (m *Manager) readPF(ctx context.Context, dev Device, dir string, ports []DevlinkPort) (*PF, error) {
	n, err := readInt(m.sys, dir+"/sriov_numvfs")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s has no sriov_numvfs: the device or its driver (%s) does not support SR-IOV", ErrNoSRIOV, dev, orNone(linkBase(m.sys, dir+"/driver")))
		}
		return nil, fmt.Errorf("%s: %w", dev, err)
	}
	pf := &PF{Device: dev, DevDir: dir, NumVFs: n, TotalVFs: -1, Driver: linkBase(m.sys, dir+"/driver"), VFs: []VF{}}
	if t, err := readInt(m.sys, dir+"/sriov_totalvfs"); err == nil {
		pf.TotalVFs, pf.TotalVFsFrom = t, "sriov_totalvfs"
	} else if t, err := readInt(m.sys, "sys/kernel/debug/"+dev.Bus+"/"+dev.Name+"/max_vfs"); err == nil {
		// netdevsim has no sriov_totalvfs; its limit is debugfs max_vfs.
		pf.TotalVFs, pf.TotalVFsFrom = t, "debugfs max_vfs"
	}
	if s, err := readAttr(m.sys, dir+"/sriov_drivers_autoprobe"); err == nil {
		v := s == "1"
		pf.DriversAutoprobe = &v
	}
	if ports == nil {
		ports, _ = m.dl.Ports(ctx) // no devlink: fall back to sysfs names below
	}
	pf.Netdev = m.pfNetdev(dev, dir, ports)
	if mode, err := m.dl.EswitchMode(ctx, dev); err == nil {
		pf.EswitchMode = mode
	} else {
		pf.EswitchErr = err.Error()
	}
	if pf.Netdev != "" {
		if f, err := m.eth.Features(ctx, pf.Netdev); err == nil {
			if v, ok := f["hw-tc-offload"]; ok {
				pf.HWTCOffload = &v
			}
		}
	}
	if pf.IsPCI() {
		pf.VFs = m.pciVFs(dir)
	} else {
		for i := 0; i < pf.NumVFs; i++ {
			pf.VFs = append(pf.VFs, VF{Index: i})
		}
	}
	return pf, nil
}

func orNone(s string) string {
	if s == "" {
		return "no driver"
	}
	return s
}

// pfNetdev picks the PF's own netdev: devlink's physical port of the device, else the
// netdev under the device whose phys_port_name is empty or an uplink ("p0").
func (m *Manager) pfNetdev(dev Device, dir string, ports []DevlinkPort) string {
	var phys []DevlinkPort
	for _, p := range ports {
		if p.Device == dev && p.Flavour == FlavourPhysical && p.Netdev != "" {
			phys = append(phys, p)
		}
	}
	if len(phys) > 0 {
		sort.Slice(phys, func(i, j int) bool { return phys[i].Index < phys[j].Index })
		return phys[0].Netdev
	}
	ents, err := m.sys.ReadDir(dir + "/net")
	if err != nil {
		return ""
	}
	for _, e := range ents {
		pn, _ := readAttr(m.sys, dir+"/net/"+e.Name()+"/phys_port_name")
		if pn == "" || reUplinkPort.MatchString(pn) {
			return e.Name()
		}
	}
	return ""
}

// pciVFs lists the VFs of a PCI PF from its virtfnN links.
func (m *Manager) pciVFs(dir string) []VF {
	ents, err := m.sys.ReadDir(dir)
	if err != nil {
		return []VF{}
	}
	vfs := []VF{}
	for _, e := range ents {
		mm := reVirtfn.FindStringSubmatch(e.Name())
		if mm == nil {
			continue
		}
		idx, _ := strconv.Atoi(mm[1])
		vdir, err := resolve(m.sys, dir+"/"+e.Name())
		if err != nil {
			continue
		}
		vf := VF{Index: idx, PCIAddress: path.Base(vdir), Driver: linkBase(m.sys, vdir+"/driver")}
		if s, err := readAttr(m.sys, vdir+"/driver_override"); err == nil && s != "(null)" {
			vf.DriverOverride = s
		}
		if nets, err := m.sys.ReadDir(vdir + "/net"); err == nil && len(nets) > 0 {
			vf.Netdev = nets[0].Name()
		}
		vfs = append(vfs, vf)
	}
	sort.Slice(vfs, func(i, j int) bool { return vfs[i].Index < vfs[j].Index })
	return vfs
}

// listPFs finds every SR-IOV capable device (a sriov_numvfs attribute) on every bus.
func (m *Manager) listPFs() ([]Device, map[Device]string) {
	dirs := map[Device]string{}
	var devs []Device
	buses, err := m.sys.ReadDir("sys/bus")
	if err != nil {
		return nil, dirs
	}
	for _, b := range buses {
		ents, err := m.sys.ReadDir("sys/bus/" + b.Name() + "/devices")
		if err != nil {
			continue
		}
		for _, e := range ents {
			dir, err := resolve(m.sys, "sys/bus/"+b.Name()+"/devices/"+e.Name())
			if err != nil {
				continue
			}
			if _, err := m.sys.ReadFile(dir + "/sriov_numvfs"); err != nil {
				continue
			}
			d := Device{Bus: b.Name(), Name: e.Name()}
			dirs[d] = dir
			devs = append(devs, d)
		}
	}
	sort.Slice(devs, func(i, j int) bool { return devs[i].String() < devs[j].String() })
	return devs, dirs
}
