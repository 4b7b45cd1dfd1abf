package hwdetect

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// benchNode builds a captured node with pfs ConnectX-6 Dx PFs in switchdev mode, each
// with vfsPerPF VFs (with netdevs) and their representors, on two NUMA nodes.
func benchNode(tb testing.TB, dir string, pfs, vfsPerPF int) {
	t := &tree{tb: tb, dir: dir}
	t.node(nodeSpec{hostname: "bench", kernel: debianKernel, online: "0-31", numa: []string{"0-15", "16-31"},
		isolated: "4-15,20-31", cmdline: "ro intel_iommu=on iommu=pt isolcpus=4-15,20-31",
		hugepages: map[uint64][][2]uint64{1048576: {{8, 8}, {8, 8}}},
		modules:   []string{"mlx5_core", "openvswitch", "cls_flower", "act_ct"}, config: debianConfig})
	devlink := map[string]DevlinkInfo{}
	group := 100
	for p := 0; p < pfs; p++ {
		bus := 0x10 + p*4
		addr := fmt.Sprintf("0000:%02x:00.0", bus)
		bridge := fmt.Sprintf("/sys/devices/pci0000:%02x/0000:%02x:00.0", bus-1, bus-1)
		pf := t.pci(pciSpec{addr: addr, parent: bridge, vendor: "15b3", device: "101d", subVendor: "15b3", subDevice: "0016",
			class: "020000", driver: "mlx5_core", numa: p % 2, iommuGroup: group, totalVFs: 127, numVFs: vfsPerPF, vfDevice: "101e"})
		group++
		name := fmt.Sprintf("ens%df0np0", p+1)
		sw := fmt.Sprintf("0c42a10300%02x0000", p)
		t.netdev(pf, netSpec{name: name, mac: fmt.Sprintf("0c:42:a1:00:%02x:00", p), mtu: 9000, operstate: "up", speed: 100000,
			ifindex: 1000 * (p + 1), portName: "p0", switchID: sw})
		t.ethtool(name, EthtoolInfo{Driver: "mlx5_core", DriverVersion: debianKernel, FirmwareVersion: "22.39.1002",
			Features: features("hw-tc-offload", "rx-vlan-hw-parse", "tx-vlan-hw-insert")})
		devlink[addr] = DevlinkInfo{EswitchMode: EswitchSwitchdev}
		for i := 0; i < vfsPerPF; i++ {
			slot, fn := (i+2)/8, (i+2)%8
			vf := t.vf(pf, i, pciSpec{addr: fmt.Sprintf("0000:%02x:%02x.%d", bus, slot, fn), vendor: "15b3", device: "101e",
				subVendor: "15b3", subDevice: "0016", class: "020000", driver: "mlx5_core", numa: p % 2, iommuGroup: group})
			group++
			t.netdev(vf, netSpec{name: fmt.Sprintf("ens%df0v%d", p+1, i), mac: fmt.Sprintf("02:00:%02x:00:%02x:%02x", p, i/256, i%256),
				mtu: 1500, operstate: "down", ifindex: 1000*(p+1) + 1 + i})
			t.netdev(pf, netSpec{name: fmt.Sprintf("ens%df0r%d", p+1, i), mac: fmt.Sprintf("06:00:%02x:00:%02x:%02x", p, i/256, i%256),
				mtu: 1500, operstate: "up", ifindex: 1000*(p+1) + 500 + i, portName: fmt.Sprintf("pf0vf%d", i), switchID: sw})
		}
	}
	t.json("/offlane/devlink.json", devlink)
}

// readAll is the I/O floor of a detection: every file and link of the capture read
// once, with nothing parsed.
func readAll(tb testing.TB, dir string) {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.Type()&fs.ModeSymlink != 0:
			_, err = os.Readlink(p)
		case !d.IsDir():
			_, err = os.ReadFile(p)
		}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// medianTime runs f n times and returns the median duration.
func medianTime(n int, f func()) time.Duration {
	ds := make([]time.Duration, n)
	for i := range ds {
		t0 := time.Now()
		f()
		ds[i] = time.Since(t0)
	}
	slices.Sort(ds)
	return ds[n/2]
}

// BenchmarkDetect8PF256VF detects a captured node with 8 PFs and 256 VFs (plus their
// 256 representors) with a warm Detector (the agent's case). Metrics:
//   - ns/VF: time per VF at 256 VFs;
//   - x-readall: the detection against reading every file of the capture once (the I/O
//     floor measured in the same run);
//   - linearity: marginal time per VF from 128 to 256 VFs divided by that from 64 to
//     128 (1.0 = linear; > 1 would mean super-linear growth); allocs-linearity is the
//     same on allocations, which machine load does not blur.
func BenchmarkDetect8PF256VF(b *testing.B) {
	ctx := context.Background()
	dirs := map[int]string{}
	for _, vfs := range []int{64, 128, 256} {
		dirs[vfs] = b.TempDir()
		benchNode(b, dirs[vfs], 8, vfs/8)
	}
	detector := func(vfs int) *Detector {
		d := New(Options{From: dirs[vfs]})
		n, err := d.Detect(ctx) // warm: the PCI ids database is loaded once per Detector
		if err != nil {
			b.Fatal(err)
		}
		if len(n.NICs) != 8 || n.NICs[0].SRIOV == nil || len(n.NICs[0].SRIOV.VFs) != vfs/8 || len(n.NICs[0].Representors) != vfs/8+1 {
			b.Fatalf("bench node misread: %d NICs", len(n.NICs))
		}
		return d
	}
	times := map[int]time.Duration{}
	allocs := map[int]float64{}
	for _, vfs := range []int{64, 128, 256} {
		d := detector(vfs)
		run := func() {
			if _, err := d.Detect(ctx); err != nil {
				b.Fatal(err)
			}
		}
		times[vfs] = medianTime(15, run)
		allocs[vfs] = testing.AllocsPerRun(3, run)
	}
	floor := medianTime(15, func() { readAll(b, dirs[256]) })

	d := detector(256)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := d.Detect(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(per/256, "ns/VF")
	b.ReportMetric(per/float64(floor.Nanoseconds()), "x-readall")
	m1 := float64((times[128] - times[64]).Nanoseconds()) / 64
	m2 := float64((times[256] - times[128]).Nanoseconds()) / 128
	b.ReportMetric(m2, "marginal-ns/VF")
	if m1 > 0 {
		b.ReportMetric(m2/m1, "linearity")
	}
	// Allocations do not depend on machine load: the same ratio on them is exact.
	a1, a2 := (allocs[128]-allocs[64])/64, (allocs[256]-allocs[128])/128
	b.ReportMetric(a2, "marginal-allocs/VF")
	if a1 > 0 {
		b.ReportMetric(a2/a1, "allocs-linearity")
	}
}

// BenchmarkDetectCold is the one-shot CLI case on the same 8 PF / 256 VF node: a new
// Detector per run, so it includes parsing the PCI ids database. x-pcidb is the run
// against parsing the database alone (measured in the same run).
func BenchmarkDetectCold(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	benchNode(b, dir, 8, 32)
	pcidb := medianTime(5, func() {
		g := &ghwNamer{root: "/", log: New(Options{}).log}
		g.Names("0000:00:00.0", "pci:v000015B3d0000101Dsv000015B3sd00000016bc02sc00i00")
	})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Detect(ctx, Options{From: dir}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(per/float64(pcidb.Nanoseconds()), "x-pcidb")
}
