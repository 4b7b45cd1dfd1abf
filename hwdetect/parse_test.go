package hwdetect

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		err  bool
	}{
		{"", []int{}, false},
		{"\n", []int{}, false},
		{"0", []int{0}, false},
		{"0-3,8,10-11\n", []int{0, 1, 2, 3, 8, 10, 11}, false},
		{"3,1,2,1", []int{1, 2, 3}, false},
		{"0-7:2/4", []int{0, 1, 4, 5}, false},
		{"0-15:1/8", []int{0, 8}, false},
		{"5-3", nil, true},
		{"a-b", nil, true},
		{"-1", nil, true},
		{"0-9000", nil, true},
		{"0:1/2", nil, true},
		{"0-7:3/2", nil, true},
	} {
		got, err := ParseCPUList(tc.in)
		if (err != nil) != tc.err || (!tc.err && !slices.Equal(got, tc.want)) {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %v, err %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	eq(t, "format", formatCPUList([]int{0, 1, 2, 3, 8, 10, 11}), "0-3,8,10-11")
	eq(t, "format empty", formatCPUList(nil), "-")
}

func TestSplitCmdline(t *testing.T) {
	got := splitCmdline(`BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro  quiet dyndbg="file x.c +p" isolcpus=2-3 -- --init-arg isolcpus=9` + "\n")
	want := []string{"BOOT_IMAGE=/vmlinuz", "root=/dev/sda1", "ro", "quiet", "dyndbg=file x.c +p", "isolcpus=2-3"}
	if !slices.Equal(got, want) {
		t.Errorf("splitCmdline = %q, want %q", got, want)
	}
	v, ok := cmdlineValue([]string{"isolcpus=1", "isolcpus=2-3"}, "isolcpus")
	eq(t, "last isolcpus wins", v+"/"+map[bool]string{true: "ok"}[ok], "2-3/ok")
	iso, err := parseIsolcpus("nohz,domain,managed_irq,2-5,7")
	if err != nil || !slices.Equal(iso, []int{2, 3, 4, 5, 7}) {
		t.Errorf("parseIsolcpus = %v, %v", iso, err)
	}
}

func TestParsePhysPortName(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want portName
		err  bool
	}{
		{"p0", portName{FlavourUplink, -1, 0, -1}, false},
		{"p1s2", portName{FlavourUplink, -1, 1, -1}, false},
		{"pf0", portName{FlavourPF, -1, 0, -1}, false},
		{"c1pf0", portName{FlavourPF, 1, 0, -1}, false},
		{"pf0vf3", portName{FlavourVF, -1, 0, 3}, false},
		{"pf1vf12", portName{FlavourVF, -1, 1, 12}, false},
		{"c1pf0vf3", portName{FlavourVF, 1, 0, 3}, false},
		{"pf0sf88", portName{FlavourSF, -1, 0, 88}, false},
		{"c2pf1sf7", portName{FlavourSF, 2, 1, 7}, false},
		{"3", portName{FlavourVF, -1, 0, 3}, false},
		{"", portName{}, true},
		{"pf", portName{}, true},
		{"pf0vf", portName{}, true},
		{"pf0xf1", portName{}, true},
		{"c1p0", portName{}, true},
		{"p0s", portName{}, true},
		{"eth0", portName{}, true},
		{"pf-1vf2", portName{}, true},
	} {
		got, err := parsePhysPortName(tc.in)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("parsePhysPortName(%q) = %+v, %v; want %+v, err %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParseKernelConfig(t *testing.T) {
	cfg, err := parseKernelConfig(strings.NewReader("#\n# Linux/x86 6.1\n#\nCONFIG_OPENVSWITCH=m\n# CONFIG_GENEVE is not set\nCONFIG_LOCALVERSION=\"\"\nCONFIG_VXLAN=y\ngarbage\n"))
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "OPENVSWITCH", cfg["CONFIG_OPENVSWITCH"], "m")
	eq(t, "GENEVE", cfg["CONFIG_GENEVE"], "n")
	eq(t, "VXLAN", cfg["CONFIG_VXLAN"], "y")
	eq(t, "LOCALVERSION", cfg["CONFIG_LOCALVERSION"], `""`)
	eq(t, "entries", len(cfg), 4)
}

func TestParseHexID(t *testing.T) {
	for in, want := range map[string]string{"0x15b3\n": "15b3", "0x0001": "0001", "0X1AF4": "1af4", "0x020000": "20000"} {
		got, err := parseHexID(in)
		if err != nil || got != want {
			t.Errorf("parseHexID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"15b3", "0x", "0xzz", "0x123456789"} {
		if _, err := parseHexID(in); err == nil {
			t.Errorf("parseHexID(%q) accepted", in)
		}
	}
}

func TestRealpath(t *testing.T) {
	dir := t.TempDir()
	buildTree(t, "virtio-vm", dir)
	var links []string
	got, err := realpath(liveFS{dir}, "sys/class/net/eth0/device/vendor", func(l, _ string) { links = append(links, l) })
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "realpath", got, "sys/devices/pci0000:00/0000:00:03.0/virtio0/vendor")
	want := []string{"sys/class/net/eth0", "sys/devices/pci0000:00/0000:00:03.0/virtio0/net/eth0/device"}
	if !slices.Equal(links, want) {
		t.Errorf("links met = %q, want %q", links, want)
	}
	eq(t, "joinLink above root", joinLink("a", "../../../../x"), "x")
}

// FuzzParseCPUList: never panics, output sorted and unique, and formatting then
// re-parsing is the identity.
func FuzzParseCPUList(f *testing.F) {
	for _, s := range []string{"", "0-3,8,10-11", "0-7:2/4", "5-3", "1,1,1", "0-8191", " 2 , 4-5 ", "0-4:1/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseCPUList(s)
		if err != nil {
			return
		}
		if !slices.IsSorted(l) || len(slices.Compact(slices.Clone(l))) != len(l) {
			t.Fatalf("ParseCPUList(%q) = %v: not sorted/unique", s, l)
		}
		if len(l) == 0 {
			return
		}
		again, err := ParseCPUList(formatCPUList(l))
		if err != nil || !slices.Equal(again, l) {
			t.Fatalf("round trip of %v via %q = %v, %v", l, formatCPUList(l), again, err)
		}
	})
}

// FuzzCmdline: splitting never panics, never yields "--" or blanks-only parameters
// outside quotes, and isolcpus= values parse or fail cleanly.
func FuzzCmdline(f *testing.F) {
	for _, s := range []string{"ro quiet isolcpus=domain,2-3", `a="b c" -- d`, "isolcpus=managed_irq,0-3:1/2 nohz_full=2", `"unterminated`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		params := splitCmdline(s)
		for _, p := range params {
			if p == "--" {
				t.Fatalf("splitCmdline(%q) kept the init separator", s)
			}
		}
		if v, ok := cmdlineValue(params, "isolcpus"); ok {
			if l, err := parseIsolcpus(v); err == nil && !slices.IsSorted(l) {
				t.Fatalf("isolcpus %q = %v unsorted", v, l)
			}
		}
	})
}

// FuzzParsePhysPortName: never panics; accepted names have a known flavour and
// consistent indexes.
func FuzzParsePhysPortName(f *testing.F) {
	for _, s := range []string{"p0", "pf0vf3", "c1pf0sf88", "pf1", "p0s1", "12", "pf0vf", "c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePhysPortName(s)
		if err != nil {
			if !errors.Is(err, errNoPortName) {
				t.Fatalf("unexpected error type %v", err)
			}
			return
		}
		switch p.flavour {
		case FlavourUplink, FlavourPF:
			if p.index != -1 {
				t.Fatalf("%q: %s with index %d", s, p.flavour, p.index)
			}
		case FlavourVF, FlavourSF:
			if p.index < 0 {
				t.Fatalf("%q: %s without index", s, p.flavour)
			}
		default:
			t.Fatalf("%q: flavour %q", s, p.flavour)
		}
		if p.pf < 0 || p.controller < -1 {
			t.Fatalf("%q: %+v", s, p)
		}
	})
}

// FuzzParseSysfsValues covers the small attribute parsers together.
func FuzzParseSysfsValues(f *testing.F) {
	for _, s := range []string{"0x15b3\n", "-1\n", "4", "hugepages-2048kB", "node1", "virtfn12", "0000:3b:00.1", "CONFIG_X=y\n# CONFIG_Y is not set"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if id, err := parseHexID(s); err == nil && (id == "" || strings.ContainsAny(id, "xX \n")) {
			t.Fatalf("parseHexID(%q) = %q", s, id)
		}
		_, _ = parseSysInt(s)
		_, _ = parseSysUint(s)
		if n, ok := hugepageDirSize(s); ok && n == 0 {
			t.Fatalf("hugepageDirSize(%q) = 0", s)
		}
		if n, ok := nodeDirID(s); ok && n < 0 {
			t.Fatalf("nodeDirID(%q) = %d", s, n)
		}
		if n, ok := virtfnIndex(s); ok && n < 0 {
			t.Fatalf("virtfnIndex(%q) = %d", s, n)
		}
		if isPCIAddress(s) && (strings.Contains(s, "/") || len(s) < 12) {
			t.Fatalf("isPCIAddress(%q)", s)
		}
		cfg, err := parseKernelConfig(strings.NewReader(s))
		if err == nil {
			for k := range cfg {
				if !strings.HasPrefix(k, "CONFIG_") {
					t.Fatalf("config key %q", k)
				}
			}
		}
	})
}

// FuzzReplayCapture feeds arbitrary bytes as a --from tarball: detection answers or
// fails with ErrBadCapture, never panics, never writes outside its temp dir.
func FuzzReplayCapture(f *testing.F) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range []struct{ name, body, link string }{
		{"sys/class/net/eth0", "", "../../devices/virtual/net/eth0"},
		{"sys/devices/virtual/net/eth0/address", "02:00:00:00:00:01\n", ""},
		{"sys/devices/virtual/net/eth0/mtu", "1500\n", ""},
		{"proc/cmdline", "ro isolcpus=1\n", ""},
	} {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg}
		if e.link != "" {
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		}
		_ = tw.WriteHeader(h)
		_, _ = tw.Write([]byte(e.body))
	}
	_ = tw.Close()
	_ = zw.Close()
	f.Add(buf.Bytes())
	f.Add([]byte{0x1f, 0x8b, 0x08})
	f.Add([]byte("not a tarball"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		file := filepath.Join(dir, "c.tar.gz")
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
		n, err := Detect(t.Context(), Options{From: file, All: true})
		if err != nil {
			if !errors.Is(err, ErrBadCapture) {
				t.Fatalf("err = %v, want ErrBadCapture", err)
			}
			return
		}
		var out bytes.Buffer
		if err := WriteTable(&out, n); err != nil {
			t.Fatal(err)
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 1 {
			t.Fatalf("replay left files beside the capture: %v", ents)
		}
	})
}
