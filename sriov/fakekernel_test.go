package sriov

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/offlane/offlane/hwdetect"
)

// fakeKernel is a stateful stand-in for the kernel's SR-IOV, devlink, rtnetlink and
// ethtool interfaces over a copy of a captured sysfs tree (hwdetect/testdata): writing
// sriov_numvfs creates or removes VF functions, their driver bindings, netdevs and (in
// switchdev mode) representors the way the PCI core and mlx5 do; driver_override,
// unbind and drivers_probe rebind; devlink, VF settings and features hold state. Every
// mutating call is logged in calls, so tests check the order of operations.
type fakeKernel struct {
	DirFS
	t     testing.TB
	mode  map[Device]string
	vfcfg map[string][]VFConfig // by PF netdev
	feat  map[string]map[string]bool
	calls []string
	// refuseModeWithVFs makes a mode change with VFs fail with EBUSY (mlx5, ice).
	refuseModeWithVFs bool
	noEswitch         map[Device]bool
	failMode          error             // SetEswitchMode fails with it
	ignore            map[string]bool   // VF settings the "driver" silently ignores
	extraPorts        []DevlinkPort     // ports added to what the tree implies
	portOverride      map[string]string // representor netdev -> netdev devlink reports instead
	nextIfindex       int
}

// copyTree copies a captured tree (files and symlinks) into a temporary root.
func copyTree(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, 0o644)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func newFakeKernel(t testing.TB, capture string) *fakeKernel {
	t.Helper()
	k := &fakeKernel{
		DirFS: DirFS{Root: copyTree(t, filepath.Join("..", "hwdetect", "testdata", capture))},
		t:     t, mode: map[Device]string{}, vfcfg: map[string][]VFConfig{}, feat: map[string]map[string]bool{},
		noEswitch: map[Device]bool{}, ignore: map[string]bool{}, portOverride: map[string]string{}, nextIfindex: 100,
		refuseModeWithVFs: true,
	}
	if b, err := os.ReadFile(filepath.Join(k.Root, "offlane", "devlink.json")); err == nil {
		re := regexp.MustCompile(`"([0-9a-f:.]+)":\s*\{\s*"eswitch_mode":\s*"(\w+)"`)
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			k.mode[Device{"pci", m[1]}] = m[2]
		}
	}
	// VF configs for the VFs the capture already has.
	for _, d := range k.pfDirs() {
		if n, _ := readInt(k, d+"/sriov_numvfs"); n > 0 {
			k.vfcfg[k.pfNetdevOf(d)] = make([]VFConfig, n)
			for i := range n {
				k.vfcfg[k.pfNetdevOf(d)][i] = VFConfig{Index: i, MAC: make(net.HardwareAddr, 6)}
			}
		}
	}
	return k
}

func (k *fakeKernel) manager(t testing.TB) *Manager {
	t.Helper()
	m, err := New(Config{
		SysFS: k, Devlink: k, Links: k, Ethtool: k, Logger: zaptest.NewLogger(t),
		Inventory: hwdetect.New(hwdetect.Options{Root: k.Root, Devlink: fakeHWDevlink{k}, Ethtool: fakeHWEthtool{}}),
		Settle:    2e9,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (k *fakeKernel) path(name string) string {
	return filepath.Join(k.Root, filepath.FromSlash(cleanRel(name)))
}

func (k *fakeKernel) log(format string, args ...any) {
	k.calls = append(k.calls, fmt.Sprintf(format, args...))
}

// pfDirs are the canonical dirs of the PCI devices with sriov_numvfs.
func (k *fakeKernel) pfDirs() []string {
	var out []string
	ents, _ := k.ReadDir("sys/bus/pci/devices")
	for _, e := range ents {
		d, _ := resolve(k, "sys/bus/pci/devices/"+e.Name())
		if _, err := k.ReadFile(d + "/sriov_numvfs"); err == nil {
			out = append(out, d)
		}
	}
	return out
}

func (k *fakeKernel) pfNetdevOf(pfDir string) string {
	ents, _ := k.ReadDir(pfDir + "/net")
	for _, e := range ents {
		pn, _ := readAttr(k, pfDir+"/net/"+e.Name()+"/phys_port_name")
		if pn == "" || reUplinkPort.MatchString(pn) {
			return e.Name()
		}
	}
	return ""
}

func (k *fakeKernel) write(name, data string) {
	k.t.Helper()
	p := k.path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		k.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		k.t.Fatal(err)
	}
}

func (k *fakeKernel) symlink(name, target string) {
	k.t.Helper()
	p := k.path(name)
	_ = os.MkdirAll(filepath.Dir(p), 0o755)
	_ = os.Remove(p)
	if err := os.Symlink(target, p); err != nil {
		k.t.Fatal(err)
	}
}

// rel returns the relative symlink target from dir "from" to root-relative "to".
func rel(from, to string) string {
	r, err := filepath.Rel("/"+from, "/"+to)
	if err != nil {
		panic(err)
	}
	return filepath.ToSlash(r)
}

// WriteFile implements SysFS with the kernel's side effects.
func (k *fakeKernel) WriteFile(name string, data []byte) error {
	val := strings.TrimSpace(string(data))
	k.log("write %s %s", name, val)
	switch {
	case name == "sys/bus/pci/drivers_probe":
		return k.probe(val)
	case strings.HasPrefix(name, "sys/bus/pci/drivers/") && path.Base(name) == "unbind":
		return k.unbind(path.Base(path.Dir(name)), val)
	}
	canon, err := resolve(k, name)
	if err != nil {
		return err
	}
	if _, err := os.Stat(k.path(canon)); err != nil {
		return err
	}
	switch path.Base(canon) {
	case "sriov_numvfs":
		n, err := strconv.Atoi(val)
		if err != nil {
			return syscall.EINVAL
		}
		return k.setNumVFs(path.Dir(canon), n)
	case "driver_override":
		if val == "" {
			val = "(null)"
		}
		k.write(canon, val+"\n")
		return nil
	}
	return k.DirFS.WriteFile(name, data)
}

func (k *fakeKernel) pfDevice(pfDir string) Device { return Device{"pci", path.Base(pfDir)} }

func (k *fakeKernel) setNumVFs(pfDir string, n int) error {
	cur, _ := readInt(k, pfDir+"/sriov_numvfs")
	total, _ := readInt(k, pfDir+"/sriov_totalvfs")
	switch {
	case n == cur:
		return nil
	case cur != 0 && n != 0:
		return syscall.EBUSY
	case n > total:
		return syscall.ERANGE
	}
	pfNetdev := k.pfNetdevOf(pfDir)
	if n == 0 {
		for i := range cur {
			vdir, _ := resolve(k, fmt.Sprintf("%s/virtfn%d", pfDir, i))
			addr := path.Base(vdir)
			if drv := linkBase(k, vdir+"/driver"); drv != "" {
				_ = k.unbind(drv, addr)
			}
			_ = os.RemoveAll(k.path(vdir))
			_ = os.Remove(k.path("sys/bus/pci/devices/" + addr))
			_ = os.Remove(k.path(fmt.Sprintf("%s/virtfn%d", pfDir, i)))
			if rep := k.repName(pfNetdev, i); k.isDir(pfDir + "/net/" + rep) {
				_ = os.RemoveAll(k.path(pfDir + "/net/" + rep))
				_ = os.Remove(k.path("sys/class/net/" + rep))
			}
		}
		delete(k.vfcfg, pfNetdev)
		k.write(pfDir+"/sriov_numvfs", "0\n")
		return nil
	}
	off, _ := readInt(k, pfDir+"/sriov_offset")
	stride, _ := readInt(k, pfDir+"/sriov_stride")
	pfAddr := path.Base(pfDir)
	var dom, bus, dev, fn int
	fmt.Sscanf(pfAddr, "%x:%x:%x.%x", &dom, &bus, &dev, &fn)
	rid := bus<<8 | dev<<3 | fn
	autoprobe, _ := readAttr(k, pfDir+"/sriov_drivers_autoprobe")
	k.vfcfg[pfNetdev] = nil
	for i := range n {
		r := rid + off + i*stride
		addr := fmt.Sprintf("%04x:%02x:%02x.%x", dom, r>>8, (r>>3)&0x1f, r&7)
		vdir := path.Join(path.Dir(pfDir), addr)
		if k.isDir(vdir) {
			return fmt.Errorf("fake kernel: VF %d of %s would be %s, which exists: %w", i, pfAddr, addr, syscall.EEXIST)
		}
		for f, v := range map[string]string{"vendor": "0x15b3", "device": "0x101e", "class": "0x020000", "driver_override": "(null)"} {
			k.write(vdir+"/"+f, v+"\n")
		}
		k.symlink(vdir+"/physfn", "../"+pfAddr)
		k.symlink(vdir+"/subsystem", rel(vdir, "sys/bus/pci"))
		group := strconv.Itoa(200 + r&0xff)
		k.write("sys/kernel/iommu_groups/"+group+"/type", "DMA\n")
		k.symlink(vdir+"/iommu_group", rel(vdir, "sys/kernel/iommu_groups/"+group))
		k.symlink("sys/bus/pci/devices/"+addr, rel("sys/bus/pci/devices", vdir))
		k.symlink(fmt.Sprintf("%s/virtfn%d", pfDir, i), "../"+addr)
		k.vfcfg[pfNetdev] = append(k.vfcfg[pfNetdev], VFConfig{Index: i, MAC: make(net.HardwareAddr, 6)})
		if autoprobe != "0" {
			if err := k.probe(addr); err != nil {
				return err
			}
		}
		if k.mode[k.pfDevice(pfDir)] == ModeSwitchdev {
			rep := k.repName(pfNetdev, i)
			ndir := pfDir + "/net/" + rep
			sw, _ := readAttr(k, pfDir+"/net/"+pfNetdev+"/phys_switch_id")
			k.write(ndir+"/phys_port_name", fmt.Sprintf("pf%dvf%d\n", fn, i))
			k.write(ndir+"/phys_switch_id", sw+"\n")
			k.write(ndir+"/flags", "0x1002\n")
			k.write(ndir+"/ifindex", strconv.Itoa(k.ifindex())+"\n")
			k.symlink(ndir+"/device", rel(ndir, pfDir))
			k.symlink("sys/class/net/"+rep, rel("sys/class/net", ndir))
		}
	}
	k.write(pfDir+"/sriov_numvfs", strconv.Itoa(n)+"\n")
	return nil
}

func (k *fakeKernel) ifindex() int { k.nextIfindex++; return k.nextIfindex }

func (k *fakeKernel) repName(pfNetdev string, vf int) string {
	return fmt.Sprintf("%spf0vf%d", pfNetdev, vf)
}

func (k *fakeKernel) isDir(name string) bool { _, err := k.ReadDir(name); return err == nil }

// vfIndex finds a VF's index and PF dir from its physfn's virtfn links.
func (k *fakeKernel) vfIndex(vdir string) (int, string) {
	pfDir, _ := resolve(k, vdir+"/physfn")
	ents, _ := k.ReadDir(pfDir)
	for _, e := range ents {
		if m := reVirtfn.FindStringSubmatch(e.Name()); m != nil {
			if d, _ := resolve(k, pfDir+"/"+e.Name()); d == vdir {
				i, _ := strconv.Atoi(m[1])
				return i, pfDir
			}
		}
	}
	return -1, pfDir
}

func (k *fakeKernel) probe(addr string) error {
	vdir, err := resolve(k, "sys/bus/pci/devices/"+addr)
	if err != nil || !k.isDir(vdir) {
		return syscall.ENODEV
	}
	if linkBase(k, vdir+"/driver") != "" {
		return nil
	}
	drv, _ := readAttr(k, vdir+"/driver_override")
	if drv == "(null)" || drv == "" {
		drv = "mlx5_core"
	}
	if !k.isDir("sys/bus/pci/drivers/" + drv) {
		return nil // no such driver loaded: the device stays unbound
	}
	k.symlink(vdir+"/driver", rel(vdir, "sys/bus/pci/drivers/"+drv))
	k.symlink("sys/bus/pci/drivers/"+drv+"/"+addr, rel("sys/bus/pci/drivers/"+drv, vdir))
	if drv == "mlx5_core" {
		i, pfDir := k.vfIndex(vdir)
		nd := fmt.Sprintf("%sv%d", k.pfNetdevOf(pfDir), i)
		ndir := vdir + "/net/" + nd
		k.write(ndir+"/address", "00:00:00:00:00:00\n")
		k.write(ndir+"/flags", "0x1002\n")
		k.write(ndir+"/ifindex", strconv.Itoa(k.ifindex())+"\n")
		k.symlink(ndir+"/device", rel(ndir, vdir))
		k.symlink("sys/class/net/"+nd, rel("sys/class/net", ndir))
	}
	return nil
}

func (k *fakeKernel) unbind(drv, addr string) error {
	vdir, err := resolve(k, "sys/bus/pci/devices/"+addr)
	if err != nil || linkBase(k, vdir+"/driver") != drv {
		return syscall.ENODEV
	}
	if ents, err := k.ReadDir(vdir + "/net"); err == nil {
		for _, e := range ents {
			_ = os.Remove(k.path("sys/class/net/" + e.Name()))
		}
	}
	_ = os.RemoveAll(k.path(vdir + "/net"))
	_ = os.Remove(k.path(vdir + "/driver"))
	_ = os.Remove(k.path("sys/bus/pci/drivers/" + drv + "/" + addr))
	return nil
}

// Devlink.

func (k *fakeKernel) EswitchMode(_ context.Context, dev Device) (string, error) {
	if k.noEswitch[dev] || dev.Bus != "pci" {
		return "", fmt.Errorf("%w: devlink %s reports no eswitch", ErrUnsupported, dev)
	}
	if m, ok := k.mode[dev]; ok {
		return m, nil
	}
	return ModeLegacy, nil
}

func (k *fakeKernel) SetEswitchMode(_ context.Context, dev Device, mode string) error {
	k.log("devlink %s mode %s", dev, mode)
	if k.failMode != nil {
		return k.failMode
	}
	dir, _ := resolve(k, "sys/bus/pci/devices/"+dev.Name)
	if n, _ := readInt(k, dir+"/sriov_numvfs"); n > 0 && k.refuseModeWithVFs && k.mode[dev] != mode {
		return fmt.Errorf("devlink %s: set eswitch mode %s: %w", dev, mode, syscall.EBUSY)
	}
	k.mode[dev] = mode
	return nil
}

func (k *fakeKernel) Ports(context.Context) ([]DevlinkPort, error) {
	var out []DevlinkPort
	for _, pfDir := range k.pfDirs() {
		dev := k.pfDevice(pfDir)
		ents, _ := k.ReadDir(pfDir + "/net")
		for i, e := range ents {
			pn, _ := readAttr(k, pfDir+"/net/"+e.Name()+"/phys_port_name")
			p := DevlinkPort{Device: dev, Index: uint32(i), Netdev: e.Name(), PF: -1, VF: -1}
			if m := reVFRepPort.FindStringSubmatch(pn); m != nil {
				p.Flavour = FlavourPCIVF
				p.PF, _ = strconv.Atoi(m[1])
				p.VF, _ = strconv.Atoi(m[2])
				p.Index = uint32(0x10000 + p.VF)
				if o, ok := k.portOverride[e.Name()]; ok {
					p.Netdev = o
				}
			} else {
				p.Flavour = FlavourPhysical
			}
			out = append(out, p)
		}
	}
	out = append(out, k.extraPorts...)
	sort.Slice(out, func(i, j int) bool { return out[i].Netdev < out[j].Netdev })
	return out, nil
}

// Links.

func (k *fakeKernel) cfg(pf string, vf int) (*VFConfig, error) {
	cs, ok := k.vfcfg[pf]
	if !ok || vf < 0 || vf >= len(cs) {
		return nil, syscall.EINVAL
	}
	return &cs[vf], nil
}

func (k *fakeKernel) VFConfigs(_ context.Context, pf string) ([]VFConfig, error) {
	if !k.isDir("sys/class/net/" + pf) {
		return nil, fmt.Errorf("%w: netdev %s", ErrNoDevice, pf)
	}
	out := append([]VFConfig(nil), k.vfcfg[pf]...)
	for i := range out {
		out[i].MAC = append(net.HardwareAddr(nil), out[i].MAC...)
	}
	return out, nil
}

func (k *fakeKernel) set(pf string, vf int, what string, f func(*VFConfig)) error {
	k.log("vf %s %d %s", pf, vf, what)
	c, err := k.cfg(pf, vf)
	if err != nil {
		return err
	}
	if !k.ignore[strings.Fields(what)[0]] {
		f(c)
	}
	return nil
}

func (k *fakeKernel) SetVFMAC(_ context.Context, pf string, vf int, mac net.HardwareAddr) error {
	return k.set(pf, vf, "mac "+mac.String(), func(c *VFConfig) { c.MAC = append(net.HardwareAddr(nil), mac...) })
}

func (k *fakeKernel) SetVFVLAN(_ context.Context, pf string, vf, vlan, qos int, proto uint16) error {
	return k.set(pf, vf, fmt.Sprintf("vlan %d qos %d proto %#x", vlan, qos, proto), func(c *VFConfig) {
		c.VLAN, c.QoS = vlan, qos
		if vlan == 0 {
			c.QoS = 0
		}
		c.VLANProto = VLANProto8021Q
		if proto != 0 {
			c.VLANProto = proto
		}
	})
}

func (k *fakeKernel) SetVFTrust(_ context.Context, pf string, vf int, on bool) error {
	return k.set(pf, vf, fmt.Sprintf("trust %v", on), func(c *VFConfig) { c.Trust = on })
}

func (k *fakeKernel) SetVFSpoofChk(_ context.Context, pf string, vf int, on bool) error {
	return k.set(pf, vf, fmt.Sprintf("spoofchk %v", on), func(c *VFConfig) { c.SpoofChk = on })
}

func (k *fakeKernel) SetVFLinkState(_ context.Context, pf string, vf int, s LinkState) error {
	return k.set(pf, vf, "link-state "+s.String(), func(c *VFConfig) { c.LinkState = s })
}

func (k *fakeKernel) SetVFRate(_ context.Context, pf string, vf int, minR, maxR uint32) error {
	return k.set(pf, vf, fmt.Sprintf("rate %d %d", minR, maxR), func(c *VFConfig) { c.MinTxRate, c.MaxTxRate = minR, maxR })
}

// Ethtool.

func (k *fakeKernel) Features(_ context.Context, ifname string) (map[string]bool, error) {
	if !k.isDir("sys/class/net/" + ifname) {
		return nil, syscall.ENODEV
	}
	f := map[string]bool{"hw-tc-offload": false}
	for n, v := range k.feat[ifname] {
		f[n] = v
	}
	return f, nil
}

func (k *fakeKernel) SetFeature(_ context.Context, ifname, feature string, on bool) error {
	k.log("ethtool %s %s %v", ifname, feature, on)
	if k.feat[ifname] == nil {
		k.feat[ifname] = map[string]bool{}
	}
	k.feat[ifname][feature] = on
	return nil
}

// hwdetect's live sources, answered from the same state.
type fakeHWDevlink struct{ k *fakeKernel }

func (d fakeHWDevlink) EswitchMode(ctx context.Context, pci string) (string, error) {
	return d.k.EswitchMode(ctx, Device{"pci", pci})
}

type fakeHWEthtool struct{}

func (fakeHWEthtool) Ethtool(context.Context, string) (*hwdetect.EthtoolInfo, error) {
	return nil, syscall.EOPNOTSUPP
}
