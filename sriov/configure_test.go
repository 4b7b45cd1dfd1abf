package sriov

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
)

// The cx6dx-legacy capture: PF 0000:3b:00.0 (ens1f0np0, mlx5_core, 8 total VFs) with 4
// VFs 0000:3b:00.2-5 (ens1f0v0-3) in legacy mode; PF 0000:3b:00.1 (ens1f1np1) without
// VFs. fakeKernel refuses an eswitch mode change with VFs, like mlx5 and ice.

func TestConfigureLegacyToSwitchdev(t *testing.T) {
	k := newFakeKernel(t, "cx6dx-legacy")
	m := k.manager(t)
	ctx := context.Background()
	spec := Spec{PF: "ens1f0np0", NumVFs: 4, Mode: ModeSwitchdev}

	dry, err := m.Configure(ctx, spec, true)
	if err != nil || len(dry.Steps) != 4 || len(k.calls) != 0 {
		t.Fatalf("dry run: %+v %v, calls %q", dry, err, k.calls)
	}
	res, err := m.Configure(ctx, spec, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"write sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0/sriov_numvfs 0",
		"devlink pci/0000:3b:00.0 mode switchdev",
		"write sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0/sriov_numvfs 4",
		"ethtool ens1f0np0 hw-tc-offload true",
	}
	if strings.Join(k.calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(k.calls, "\n"), strings.Join(want, "\n"))
	}
	a := res.After
	if a.NumVFs != 4 || a.EswitchMode != ModeSwitchdev || a.HWTCOffload == nil || !*a.HWTCOffload || len(a.VFs) != 4 || a.VFs[3].PCIAddress != "0000:3b:00.5" || a.VFs[3].Netdev != "ens1f0np0v3" {
		t.Errorf("after: %+v", a)
	}

	// Registry: VF ↔ PCI ↔ netdev ↔ representor, both ways, and no inconsistency.
	reg, err := m.Registry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(reg.Warnings) != 0 {
		t.Errorf("warnings: %q", reg.Warnings)
	}
	if len(reg.PFs) != 2 || reg.PFs[0].Model != "ConnectX-6 Dx" || len(reg.PFs[0].VFs) != 4 || len(reg.PFs[1].VFs) != 0 {
		t.Fatalf("PFs: %+v", reg.PFs)
	}
	e, ok := reg.VF(Device{"pci", "0000:3b:00.0"}, 2)
	if !ok || e.VFPCI != "0000:3b:00.4" || e.VFNetdev != "ens1f0np0v2" || e.VFDriver != "mlx5_core" || e.Representor != "ens1f0np0pf0vf2" || e.RepresentorPort != "pci/0000:3b:00.0/65538" {
		t.Errorf("VF 2: %+v", e)
	}
	for _, got := range []func() (Entry, bool){
		func() (Entry, bool) { return reg.ByVFPCI("0000:3b:00.4") },
		func() (Entry, bool) { return reg.ByVFNetdev("ens1f0np0v2") },
		func() (Entry, bool) { return reg.ByRepresentor("ens1f0np0pf0vf2") },
	} {
		if g, ok := got(); !ok || g != e {
			t.Errorf("lookup: %+v %v, want %+v", g, ok, e)
		}
	}
	if _, ok := reg.ByRepresentor("ens1f0v2"); ok {
		t.Error("a VF netdev found as representor")
	}

	// Idempotent: nothing planned, nothing written.
	k.calls = nil
	res, err = m.Configure(ctx, spec, false)
	if err != nil || res.Changed() || len(k.calls) != 0 {
		t.Errorf("second run: %+v %v, calls %q", res, err, k.calls)
	}
}

func TestConfigureWrongOrderFails(t *testing.T) {
	// The fake kernel enforces what the plan's order avoids: a mode change with VFs.
	k := newFakeKernel(t, "cx6dx-legacy")
	err := k.SetEswitchMode(context.Background(), Device{"pci", "0000:3b:00.0"}, ModeSwitchdev)
	if !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("mode change with 4 VFs: %v, want EBUSY", err)
	}
}

func TestConfigureRollsBackVFs(t *testing.T) {
	k := newFakeKernel(t, "cx6dx-legacy")
	k.failMode = errors.New("firmware says no")
	m := k.manager(t)
	res, err := m.Configure(context.Background(), Spec{PF: "0000:3b:00.0", NumVFs: 4, Mode: ModeSwitchdev}, false)
	if err == nil || res == nil || !strings.Contains(err.Error(), "step 2 of 4 (eswitch mode: legacy -> switchdev): firmware says no (the previous 4 VFs were re-created)") {
		t.Fatalf("err %v", err)
	}
	pf, _ := m.PF(context.Background(), "0000:3b:00.0")
	if pf.NumVFs != 4 || pf.EswitchMode != ModeLegacy || len(pf.VFs) != 4 {
		t.Errorf("after a failed mode change: %+v", pf)
	}
}

func TestConfigureVFDriver(t *testing.T) {
	k := newFakeKernel(t, "cx6dx-legacy")
	// The capture gives PF 1 the same VF offset as PF 0; move its VFs to 3b:02.1-2.
	k.write("sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.1/sriov_offset", "16\n")
	m := k.manager(t)
	ctx := context.Background()
	spec := Spec{PF: "ens1f1np1", NumVFs: 2, Mode: ModeLegacy, VFDriver: VFDriverVFIO}
	if _, err := m.Configure(ctx, spec, false); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "modprobe vfio-pci") {
		t.Fatalf("without vfio-pci: %v", err)
	}
	if len(k.calls) != 0 {
		t.Fatalf("a refusal wrote: %q", k.calls)
	}
	if err := os.MkdirAll(k.path("sys/bus/pci/drivers/vfio-pci"), 0o755); err != nil { // modprobe vfio-pci
		t.Fatal(err)
	}
	res, err := m.Configure(ctx, spec, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, vf := range res.After.VFs {
		if vf.Driver != VFDriverVFIO || vf.DriverOverride != VFDriverVFIO || vf.Netdev != "" {
			t.Errorf("VF %+v, want on vfio-pci without netdev", vf)
		}
	}
	// Autoprobe off first: the VFs never got a mlx5 netdev.
	if k.calls[0] != "write sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.1/sriov_drivers_autoprobe 0" {
		t.Errorf("first call %q", k.calls[0])
	}
	for _, c := range k.calls {
		if strings.Contains(c, "unbind") {
			t.Errorf("a new VF was unbound (it should not have been probed): %s", c)
		}
	}
	// Back to the kernel driver: override cleared, mlx5_core, netdevs again.
	k.calls = nil
	res, err = m.Configure(ctx, Spec{PF: "ens1f1np1", NumVFs: 2, Mode: ModeLegacy, VFDriver: VFDriverKernel}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, vf := range res.After.VFs {
		if vf.Driver != "mlx5_core" || vf.DriverOverride != "" || vf.Netdev == "" {
			t.Errorf("VF %+v, want on mlx5_core with a netdev", vf)
		}
	}
	wantCalls := []string{
		"write sys/bus/pci/devices/0000:3b:02.1/driver_override ",
		"write sys/bus/pci/drivers/vfio-pci/unbind 0000:3b:02.1",
		"write sys/bus/pci/drivers_probe 0000:3b:02.1",
	}
	if strings.Join(k.calls[:3], "\n") != strings.Join(wantCalls, "\n") {
		t.Errorf("rebind calls:\n%s", strings.Join(k.calls, "\n"))
	}
}

func TestConfigureInUse(t *testing.T) {
	k := newFakeKernel(t, "cx6dx-legacy")
	m := k.manager(t)
	ctx := context.Background()
	// VF 1's netdev is in a bridge; VF 3 is on vfio-pci with its group open by qemu.
	k.symlink("sys/class/net/ens1f0v1/master", "../br0")
	_ = os.MkdirAll(k.path("sys/bus/pci/drivers/vfio-pci"), 0o755)
	if err := m.BindVF(ctx, VF{Index: 3, PCIAddress: "0000:3b:00.5"}, VFDriverVFIO); err != nil {
		t.Fatal(err)
	}
	k.write("proc/4242/comm", "qemu-system-x86\n")
	k.symlink("proc/4242/fd/17", "/dev/vfio/53")
	k.symlink("proc/4242/fd/18", "/dev/vfio/vfio")
	k.calls = nil

	_, err := m.Configure(ctx, Spec{PF: "ens1f0np0", NumVFs: 4, Mode: ModeSwitchdev}, false)
	want := "VF 1: ens1f0v1 is enslaved to br0; VF 3: vfio group 53 is open by pid 4242 (qemu-system-x86)"
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err %v, want %q", err, want)
	}
	if len(k.calls) != 0 {
		t.Fatalf("a refusal wrote: %q", k.calls)
	}
	if _, err := m.Configure(ctx, Spec{PF: "ens1f0np0", NumVFs: 4, Mode: ModeSwitchdev, Force: true}, false); err != nil {
		t.Fatalf("--force: %v", err)
	}
}

func TestResolvePF(t *testing.T) {
	k := newFakeKernel(t, "cx6dx-switchdev")
	m := k.manager(t)
	ok := map[string]string{
		"ens1f0np0": "pci/0000:3b:00.0", "0000:3b:00.0": "pci/0000:3b:00.0", "3b:00.1": "pci/0000:3b:00.1",
		"0000:3B:00.0": "pci/0000:3b:00.0", "pci/0000:3b:00.1": "pci/0000:3b:00.1",
	}
	for ref, want := range ok {
		d, _, err := m.resolvePF(ref)
		if err != nil || d.String() != want {
			t.Errorf("%q: %v %v, want %s", ref, d, err, want)
		}
	}
	bad := []struct {
		ref     string
		wantErr error
		has     string
	}{
		{"ens1f0v2", ErrInvalid, "ens1f0v2 is a VF (of 0000:3b:00.0): give its PF"},
		{"ens1f0npf0vf1", ErrInvalid, "is a VF representor (pf0vf1): give its PF (0000:3b:00.0)"},
		{"eth9", ErrNoDevice, "no netdev, PCI device or devlink handle \"eth9\""},
		{"0000:99:00.0", ErrNoDevice, "pci/0000:99:00.0: not in /sys/bus/pci/devices"},
		{"", ErrInvalid, "empty PF"},
		{"../../etc", ErrInvalid, "is not a netdev name"},
		{"netdevsim/netdevsim1", ErrNoDevice, "not in /sys/bus/netdevsim/devices"},
	}
	for _, tc := range bad {
		if _, _, err := m.resolvePF(tc.ref); !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.has) {
			t.Errorf("%q: %v, want %v with %q", tc.ref, err, tc.wantErr, tc.has)
		}
	}
}

func TestNoSRIOV(t *testing.T) {
	k := newFakeKernel(t, "virtio-vm")
	m := k.manager(t)
	ents, _ := k.ReadDir("sys/class/net")
	for _, e := range ents {
		if _, err := m.PF(context.Background(), e.Name()); !errors.Is(err, ErrNoSRIOV) {
			t.Errorf("%s: %v, want ErrNoSRIOV", e.Name(), err)
		}
	}
	reg, err := m.Registry(context.Background())
	if err != nil || len(reg.PFs) != 0 {
		t.Errorf("registry on a VM: %+v %v", reg, err)
	}
}

func TestRegistryCapturedSwitchdev(t *testing.T) {
	k := newFakeKernel(t, "cx6dx-switchdev")
	m := k.manager(t)
	reg, err := m.Registry(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(reg.Warnings) != 0 {
		t.Errorf("warnings %q", reg.Warnings)
	}
	for vf := range 4 {
		e, ok := reg.VF(Device{"pci", "0000:3b:00.0"}, vf)
		wantRep := "ens1f0npf0vf" + string(rune('0'+vf))
		if !ok || e.Representor != wantRep || e.VFNetdev != "ens1f0v"+string(rune('0'+vf)) || e.SwitchID == "" {
			t.Errorf("VF %d: %+v", vf, e)
		}
	}
	// devlink and sysfs disagree: the registry trusts devlink and says so.
	k.portOverride["ens1f0npf0vf1"] = "ens1f0npf0vf3"
	reg, err = m.Registry(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := "pci/0000:3b:00.0 VF 1: devlink says representor ens1f0npf0vf3, sysfs phys_port_name says ens1f0npf0vf1"
	if !strings.Contains(strings.Join(reg.Warnings, "\n"), want) {
		t.Errorf("warnings %q, want %q", reg.Warnings, want)
	}
}

func TestVFSetFake(t *testing.T) {
	k := newFakeKernel(t, "cx6dx-legacy")
	m := k.manager(t)
	ctx := context.Background()
	s := VFSettings{MAC: mustMAC("02:00:00:00:00:07"), Trust: boolp(true), VLAN: intp(7), QoS: intp(1)}
	res, err := m.VFSet(ctx, "ens1f0np0", 0, s)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"vf ens1f0np0 0 trust true", "vf ens1f0np0 0 mac 02:00:00:00:00:07", "vf ens1f0np0 0 vlan 7 qos 1 proto 0x0"}
	if strings.Join(k.calls, "\n") != strings.Join(want, "\n") || res.Config.VLAN != 7 {
		t.Errorf("calls %q, config %+v", k.calls, res.Config)
	}
	k.calls = nil
	if res, err = m.VFSet(ctx, "ens1f0np0", 0, s); err != nil || len(res.Changes) != 0 || len(k.calls) != 0 {
		t.Errorf("again: %+v %v %q", res, err, k.calls)
	}
	// A driver that drops a setting is caught by the read-back.
	k.ignore["spoofchk"] = true
	if _, err := m.VFSet(ctx, "ens1f0np0", 1, VFSettings{SpoofChk: boolp(true)}); err == nil || !strings.Contains(err.Error(), "did not keep the settings: spoofchk reads off, want on") {
		t.Errorf("ignored setting: %v", err)
	}
	if _, err := m.VFSet(ctx, "ens1f1np1", 0, s); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "has 0 VFs") {
		t.Errorf("PF without VFs: %v", err)
	}
	k.mode[Device{"pci", "0000:3b:00.0"}] = ModeSwitchdev
	if _, err := m.VFSet(ctx, "ens1f0np0", 0, s); !errors.Is(err, ErrUnsupported) {
		t.Errorf("switchdev: %v", err)
	}
}

// FuzzResolvePF: any --pf value resolves to an existing device or to an error wrapping
// one of the package's sentinels; nothing escapes the root or panics.
func FuzzResolvePF(f *testing.F) {
	for _, s := range []string{"ens1f0np0", "0000:3b:00.0", "3b:00.1", "pci/0000:3b:00.0", "ens1f0v1", "../../x", "pci/../../etc", "virtio/virtio0", "a/b/c", ""} {
		f.Add(s)
	}
	k := newFakeKernel(f, "cx6dx-legacy")
	m := k.manager(f)
	f.Fuzz(func(t *testing.T, ref string) {
		dev, dir, err := m.resolvePF(ref)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNoDevice) && !errors.Is(err, ErrNoSRIOV) {
				t.Fatalf("%q: error without a sentinel: %v", ref, err)
			}
			return
		}
		if !strings.HasPrefix(dir, "sys/devices/") || !m.isDir(dir) || dev.Bus == "" || dev.Name == "" {
			t.Fatalf("%q resolved to %v at %q", ref, dev, dir)
		}
	})
}

func TestResolvePFDotNames(t *testing.T) {
	m := newFakeKernel(t, "cx6dx-legacy").manager(t)
	for _, ref := range []string{"pci/..", "pci/.", "../0000:3b:00.0", "pci/0000:3b:00.0/.."} {
		if _, _, err := m.resolvePF(ref); err == nil {
			t.Errorf("%q resolved", ref)
		}
	}
}

// staticOVS is an OVSPorts with fixed answers (the OVSDB adapter itself is proved
// against a real ovsdb-server in the kernel lab, cmd/offlane/sriov_kernel_test.go).
type staticOVS []OVSInterface

func (s staticOVS) Interfaces(context.Context) ([]OVSInterface, error) { return s, nil }

func TestRegistryAndInUseWithOVS(t *testing.T) {
	k := newFakeKernel(t, "cx6dx-switchdev")
	m := k.manager(t)
	m.ovs = staticOVS{{Bridge: "br-int", Port: "ens1f0npf0vf2", Name: "ens1f0npf0vf2", IfaceID: "port-42"}, {Bridge: "br-ex", Port: "ens1f1np1", Name: "ens1f1np1"}}
	ctx := context.Background()
	reg, err := m.Registry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := reg.ByTenantPort("port-42")
	if !ok || e.VFIndex != 2 || e.OVSBridge != "br-int" || e.Representor != "ens1f0npf0vf2" || e.VFPCI != "0000:3b:00.4" {
		t.Errorf("ByTenantPort: %+v %v", e, ok)
	}
	if e2, ok := reg.ByOVSPort("ens1f0npf0vf2"); !ok || e2 != e {
		t.Errorf("ByOVSPort: %+v", e2)
	}
	_, err = m.Configure(ctx, Spec{PF: "ens1f0np0", NumVFs: 4, Mode: ModeLegacy}, false)
	if want := "VF 2: representor ens1f0npf0vf2 is OVS port ens1f0npf0vf2 on br-int (tenant port port-42)"; !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), want) {
		t.Errorf("err %v, want %q", err, want)
	}
}
