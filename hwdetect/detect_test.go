package hwdetect

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// nodeJSON is a node's JSON without its source, for comparing a detection with its
// replay.
func nodeJSON(t testing.TB, n *Node) string {
	t.Helper()
	c := *n
	c.Source = ""
	b, err := json.MarshalIndent(&c, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func diffJSON(t testing.TB, what, got, want string) {
	t.Helper()
	if got == want {
		return
	}
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) && i < len(w); i++ {
		if g[i] != w[i] {
			t.Fatalf("%s differs at line %d:\n got: %s\nwant: %s", what, i+1, g[i], w[i])
		}
	}
	t.Fatalf("%s differs in length: %d vs %d lines", what, len(g), len(w))
}

func liveEth0(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/sys/class/net/eth0/device"); err != nil {
		t.Skip("no device-backed eth0 on this machine (the live test expects the CI VM's virtio eth0)")
	}
}

// TestDetectLive reads this machine and checks eth0 against the kernel's own files.
func TestDetectLive(t *testing.T) {
	liveEth0(t)
	n, err := Detect(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := nicByName(t, n, "eth0")
	mac, _ := os.ReadFile("/sys/class/net/eth0/address")
	eq(t, "mac", e.MAC, strings.TrimSpace(string(mac)))
	dev, _ := filepath.EvalSymlinks("/sys/class/net/eth0/device")
	drv, _ := os.Readlink(filepath.Join(dev, "driver"))
	eq(t, "driver", e.Driver, filepath.Base(drv))
	if filepath.Base(drv) == "virtio_net" {
		eq(t, "pci", e.PCIAddress, filepath.Base(filepath.Dir(dev)))
		eq(t, "vendor_id", e.VendorID, "1af4")
		eq(t, "model", e.Model, "virtio-net")
		if e.SRIOV != nil {
			t.Errorf("virtio sriov = %+v, want null", e.SRIOV)
		}
	}
	if e.Features.TSO == nil || e.Features.HWTCOffload == nil {
		t.Errorf("features not read from live ethtool: %+v", e.Features)
	}
	if e.DriverVersion == "" {
		t.Error("driver_version empty: live ethtool not read")
	}
	if e.RecommendedMode == "" || len(e.Reasons) == 0 {
		t.Errorf("no recommendation: %q %v", e.RecommendedMode, e.Reasons)
	}
	online, _ := os.ReadFile("/sys/devices/system/cpu/online")
	cpus, _ := ParseCPUList(string(online))
	eq(t, "online cpus", formatCPUList(n.CPUs.Online), formatCPUList(cpus))
	host, _ := os.Hostname()
	eq(t, "hostname", n.Hostname, host)
	eq(t, "ovs.reachable", n.OVS.Reachable, false)
	eq(t, "ovs.reason", n.OVS.Reason, ovsNotProbed)
}

// captureTo detects with opts and writes the capture to a file.
func captureTo(t *testing.T, opts Options) (*Node, string) {
	t.Helper()
	var buf bytes.Buffer
	n, err := New(opts).Capture(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "capture.tar.gz")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return n, file
}

// TestCaptureRoundTripLive captures this machine, replays the capture and gets the same
// node; a capture of the replay replays the same again.
func TestCaptureRoundTripLive(t *testing.T) {
	liveEth0(t)
	for _, all := range []bool{false, true} {
		live, file := captureTo(t, Options{All: all})
		replayed, err := Detect(context.Background(), Options{From: file, All: all})
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "source", replayed.Source, file)
		diffJSON(t, "replay of the live capture", nodeJSON(t, replayed), nodeJSON(t, live))

		again, file2 := captureTo(t, Options{From: file, All: all})
		diffJSON(t, "capture of the replay", nodeJSON(t, again), nodeJSON(t, live))
		third, err := Detect(context.Background(), Options{From: file2, All: all})
		if err != nil {
			t.Fatal(err)
		}
		diffJSON(t, "replay of the re-capture", nodeJSON(t, third), nodeJSON(t, live))
	}
}

// TestCaptureRoundTripTestdata re-captures every testdata tree and replays it.
func TestCaptureRoundTripTestdata(t *testing.T) {
	for name := range testdataTrees {
		t.Run(name, func(t *testing.T) {
			orig, file := captureTo(t, Options{From: filepath.Join("testdata", name), All: true})
			got, err := Detect(context.Background(), Options{From: file, All: true})
			if err != nil {
				t.Fatal(err)
			}
			diffJSON(t, "replay of the re-capture", nodeJSON(t, got), nodeJSON(t, orig))
		})
	}
}

// TestCaptureContents checks the capture format: symlinks kept, offlane/ JSON present.
func TestCaptureContents(t *testing.T) {
	_, file := captureTo(t, Options{From: "testdata/cx6dx-switchdev"})
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	entries := map[string]*tar.Header{}
	bodies := map[string]string{}
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		entries[strings.TrimSuffix(h.Name, "/")] = h
		if h.Typeflag == tar.TypeReg {
			var b bytes.Buffer
			_, _ = b.ReadFrom(tr)
			bodies[h.Name] = b.String()
		}
	}
	link := func(name, target string) {
		t.Helper()
		h, ok := entries[name]
		if !ok || h.Typeflag != tar.TypeSymlink || h.Linkname != target {
			t.Errorf("entry %s = %+v, want symlink to %s", name, h, target)
		}
	}
	pf := "sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0"
	link("sys/class/net/ens1f0np0", "../../devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0/net/ens1f0np0")
	link(pf+"/net/ens1f0np0/device", "../../../0000:3b:00.0")
	link(pf+"/driver", "../../../../bus/pci/drivers/mlx5_core")
	link(pf+"/virtfn0", "../0000:3b:00.2")
	link(pf+"/iommu_group", "../../../../kernel/iommu_groups/40")
	if h, ok := entries[pf+"/sriov_numvfs"]; !ok || h.Typeflag != tar.TypeReg {
		t.Errorf("no %s/sriov_numvfs in the capture", pf)
	}
	var dl map[string]DevlinkInfo
	if err := json.Unmarshal([]byte(bodies[captureDevlink]), &dl); err != nil || dl["0000:3b:00.0"].EswitchMode != EswitchSwitchdev {
		t.Errorf("%s = %q (%v)", captureDevlink, bodies[captureDevlink], err)
	}
	var et EthtoolInfo
	if err := json.Unmarshal([]byte(bodies[captureEthtool+"/ens1f0np0.json"]), &et); err != nil || !et.Features["hw-tc-offload"] {
		t.Errorf("ethtool json = %q (%v)", bodies[captureEthtool+"/ens1f0np0.json"], err)
	}
	var meta CaptureMeta
	if err := json.Unmarshal([]byte(bodies[captureMeta]), &meta); err != nil || meta.Format != captureFormat || meta.Hostname != "cx6-sw" {
		t.Errorf("meta = %q (%v)", bodies[captureMeta], err)
	}
}

func wantBadCapture(t *testing.T, from string, sub string) {
	t.Helper()
	_, err := Detect(context.Background(), Options{From: from})
	if !errors.Is(err, ErrBadCapture) {
		t.Fatalf("Detect(%s) = %v, want ErrBadCapture", from, err)
	}
	if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), sub) {
		t.Errorf("error %q: want one line containing %q", err, sub)
	}
}

func writeTar(t *testing.T, gz bool, entries ...tar.Header) string {
	t.Helper()
	var buf bytes.Buffer
	var zw *gzip.Writer
	tw := tar.NewWriter(&buf)
	if gz {
		zw = gzip.NewWriter(&buf)
		tw = tar.NewWriter(zw)
	}
	for _, h := range entries {
		body := h.Linkname
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
			h.Linkname = ""
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			_, _ = tw.Write([]byte(body))
		}
	}
	_ = tw.Close()
	if zw != nil {
		_ = zw.Close()
	}
	file := filepath.Join(t.TempDir(), "c.tar.gz")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestBadCaptures(t *testing.T) {
	dir := t.TempDir()
	wantBadCapture(t, filepath.Join(dir, "nope.tar.gz"), "does not exist")
	wantBadCapture(t, dir, "not an offlane capture")

	junk := filepath.Join(dir, "junk.tar.gz")
	_ = os.WriteFile(junk, []byte("this is not a tarball at all, just words\n"), 0o644)
	wantBadCapture(t, junk, "corrupt tar archive")

	badgz := filepath.Join(dir, "bad.tar.gz")
	_ = os.WriteFile(badgz, []byte{0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3, 0xde, 0xad, 0xbe, 0xef}, 0o644)
	wantBadCapture(t, badgz, "corrupt tar archive")

	// A good capture cut in half.
	_, good := captureTo(t, Options{From: "testdata/cx6dx-switchdev"})
	b, _ := os.ReadFile(good)
	half := filepath.Join(dir, "half.tar.gz")
	_ = os.WriteFile(half, b[:len(b)/2], 0o644)
	wantBadCapture(t, half, "corrupt tar archive")

	empty := filepath.Join(dir, "empty.tar.gz")
	_ = os.WriteFile(empty, nil, 0o644)
	wantBadCapture(t, empty, "empty archive")

	escape := writeTar(t, true,
		tar.Header{Name: "sys/", Typeflag: tar.TypeDir, Mode: 0o755},
		tar.Header{Name: "../../etc/evil", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "x"})
	wantBadCapture(t, escape, "escapes the capture")

	noSys := writeTar(t, false, tar.Header{Name: "proc/cmdline", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "ro"})
	wantBadCapture(t, noSys, "no sys/ directory")

	noNet := writeTar(t, true, tar.Header{Name: "sys/kernel/", Typeflag: tar.TypeDir, Mode: 0o755})
	wantBadCapture(t, noNet, "list network interfaces")
}

// TestCaptureSymlinkEscape: a capture whose symlinks point outside it (absolute or
// ../..) must not make detection read the host's files.
func TestCaptureSymlinkEscape(t *testing.T) {
	file := writeTar(t, true,
		tar.Header{Name: "sys/devices/virtual/net/eth9/address", Typeflag: tar.TypeSymlink, Linkname: "/etc/hostname"},
		tar.Header{Name: "sys/devices/virtual/net/eth9/mtu", Typeflag: tar.TypeSymlink, Linkname: "../../../../../../../../etc/hostname"},
		tar.Header{Name: "sys/class/net/eth9", Typeflag: tar.TypeSymlink, Linkname: "../../devices/virtual/net/eth9"},
		tar.Header{Name: "proc/sys/kernel/hostname", Typeflag: tar.TypeSymlink, Linkname: "/etc/hostname"},
	)
	n, err := Detect(context.Background(), Options{From: file, All: true})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "hostname", n.Hostname, "")
	e := nicByName(t, n, "eth9")
	eq(t, "mac", e.MAC, "")
	eq(t, "mtu", e.MTU, 0)
}

// TestHalfTree removes files from a capture at random: detection must still answer
// (fields read as unknown) or fail with ErrBadCapture, never panic.
func TestHalfTree(t *testing.T) {
	for seed := range uint64(12) {
		for _, name := range []string{"cx6dx-switchdev", "e810-legacy-8vfs", "virtio-vm"} {
			dir := t.TempDir()
			buildTree(t, name, dir)
			rng := rand.New(rand.NewPCG(seed, 7))
			removed := 0
			_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err == nil && p != dir && rng.IntN(2) == 0 {
					if d.IsDir() && d.Type()&fs.ModeSymlink == 0 {
						if rng.IntN(4) == 0 {
							_ = os.RemoveAll(p)
							removed++
							return fs.SkipDir
						}
						return nil
					}
					_ = os.Remove(p)
					removed++
				}
				return nil
			})
			n, err := Detect(context.Background(), Options{From: dir, All: seed%2 == 0})
			if err != nil {
				if !errors.Is(err, ErrBadCapture) {
					t.Fatalf("%s seed %d (%d removed): %v, want success or ErrBadCapture", name, seed, removed, err)
				}
				continue
			}
			var buf bytes.Buffer
			if err := WriteTable(&buf, n); err != nil {
				t.Fatal(err)
			}
			for _, nic := range n.NICs {
				if nic.Kind == KindDevice && nic.RecommendedMode == "" {
					t.Errorf("%s seed %d: %s has no recommendation", name, seed, nic.Name)
				}
			}
		}
	}
}

// TestHalfTreeUnknowns: named files missing read as the documented unknowns.
func TestHalfTreeUnknowns(t *testing.T) {
	dir := t.TempDir()
	buildTree(t, "cx6dx-switchdev", dir)
	pf := filepath.Join(dir, "sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0")
	for _, f := range []string{"numa_node", "modalias", "iommu_group", "net/ens1f0np0/speed", "net/ens1f0np0/mtu"} {
		if err := os.Remove(filepath.Join(pf, f)); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"offlane/devlink.json", "offlane/ethtool/ens1f0np0.json", "proc/cmdline", "sys/kernel/iommu_groups"} {
		if err := os.RemoveAll(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := Detect(context.Background(), Options{From: dir})
	if err != nil {
		t.Fatal(err)
	}
	e := nicByName(t, n, "ens1f0np0")
	eq(t, "numa", e.NUMANode, -1)
	eq(t, "speed", e.SpeedMbps, -1)
	eq(t, "mtu", e.MTU, 0)
	if e.IOMMUGroup != nil {
		t.Errorf("iommu_group = %v", *e.IOMMUGroup)
	}
	// modalias missing: rebuilt from the id files, so the names still resolve.
	eq(t, "device_name", e.DeviceName, "MT2892 Family [ConnectX-6 Dx]")
	// devlink.json missing, but VF representors prove switchdev.
	eq(t, "eswitch", e.EswitchMode, EswitchSwitchdev)
	eq(t, "hw_tc_offload", boolp(e.Features.HWTCOffload), "null")
	eq(t, "driver (from sysfs)", e.Driver, "mlx5_core")
	eq(t, "driver_version", e.DriverVersion, "")
	eq(t, "mode", e.RecommendedMode, ModeKernel)
	wantReason(t, e, "hw-tc-offload unknown (no ethtool data)", "eswitch mode inferred from the VF representors")
	eq(t, "iommu", n.IOMMU.Enabled, false)
}

func TestCorruptCaptureJSON(t *testing.T) {
	dir := t.TempDir()
	buildTree(t, "cx6dx-legacy", dir)
	for _, f := range []string{"offlane/devlink.json", "offlane/ethtool/ens1f0np0.json"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("{not json"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.WriteFile(filepath.Join(dir, captureOVS), []byte("[1,2"), 0o644)
	n, err := Detect(context.Background(), Options{From: dir})
	if err != nil {
		t.Fatal(err)
	}
	e := nicByName(t, n, "ens1f0np0")
	eq(t, "eswitch", e.EswitchMode, EswitchUnknown)
	eq(t, "firmware", e.FirmwareVersion, "")
	eq(t, "ovs.reachable", n.OVS.Reachable, false)
	wantReason(t, e, "eswitch mode unknown (no devlink answer)")
}

// fakeOVS is an OVSProber holding a fixed answer.
type fakeOVS struct {
	info *OVSInfo
	err  error
}

func (f fakeOVS) ProbeOVS(context.Context) (*OVSInfo, error) { return f.info, f.err }

// TestOVSSeam: the prober's answer lands in node.ovs, shapes the recommendation, is
// captured as offlane/ovs.json and replayed; a failing prober is a state, not an error.
func TestOVSSeam(t *testing.T) {
	dir := t.TempDir()
	buildTree(t, "x710-novfs", dir)
	noDPDK := &OVSInfo{Reachable: true, Endpoint: "unix:/x", Version: "3.1.0", DatapathTypes: []string{"system", "netdev"},
		IfaceTypes: []string{"internal", "system", "tap", "vxlan"}}
	n, err := Detect(context.Background(), Options{Root: dir, OVS: fakeOVS{info: noDPDK}, Devlink: fakeDevlink{}, Ethtool: fakeEthtool{}})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "ovs.version", n.OVS.Version, "3.1.0")
	eq(t, "ovs.datapath_types", strings.Join(n.OVS.DatapathTypes, ","), "netdev,system")
	x := nicByName(t, n, "ens3f0")
	eq(t, "mode without DPDK in OVS", x.RecommendedMode, ModeKernel)
	wantReason(t, x, "ovs-vswitchd has no DPDK support")

	withDPDK := *noDPDK
	withDPDK.IfaceTypes = append(withDPDK.IfaceTypes, "dpdk", "dpdkvhostuserclient")
	withDPDK.DPDKInitialized = true
	node, file := captureTo(t, Options{Root: dir, OVS: fakeOVS{info: &withDPDK}, Devlink: fakeDevlink{}, Ethtool: fakeEthtool{}})
	eq(t, "mode with DPDK in OVS", nicByName(t, node, "ens3f0").RecommendedMode, ModeOVSDPDK)
	back, err := Detect(context.Background(), Options{From: file})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "replayed ovs.dpdk_initialized", back.OVS.DPDKInitialized, true)
	diffJSON(t, "replay", nodeJSON(t, back), nodeJSON(t, node))

	failing, err := Detect(context.Background(), Options{Root: dir, OVS: fakeOVS{err: errors.New("ovsdb: unexpected schema")}, Devlink: fakeDevlink{}, Ethtool: fakeEthtool{}})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "ovs.reason", failing.OVS.Reason, "ovsdb: unexpected schema")
}

// fakeDevlink and fakeEthtool stand in for the live readers on a --root tree.
type fakeDevlink struct{}

func (fakeDevlink) EswitchMode(_ context.Context, pci string) (string, error) {
	return "", errors.New("devlink pci/" + pci + ": no such device")
}

type fakeEthtool struct{}

func (fakeEthtool) Ethtool(_ context.Context, ifname string) (*EthtoolInfo, error) {
	return &EthtoolInfo{Driver: "i40e", DriverVersion: "x", Features: map[string]bool{"hw-tc-offload": false}}, nil
}

func TestTableWidth(t *testing.T) {
	for name := range testdataTrees {
		n, err := Detect(context.Background(), Options{From: filepath.Join("testdata", name), All: true})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := WriteTable(&buf, n); err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(buf.String(), "\n") {
			if w := len([]rune(line)); w > TableWidth {
				t.Errorf("%s line %d is %d columns: %q", name, i+1, w, line)
			}
		}
		for _, nic := range n.NICs {
			if !strings.Contains(buf.String(), nic.Name) {
				t.Errorf("%s: table lacks %s", name, nic.Name)
			}
		}
	}
}

func TestContextCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Detect(ctx, Options{From: "testdata/e810-legacy-8vfs"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
