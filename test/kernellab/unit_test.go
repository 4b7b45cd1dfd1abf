package kernellab

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// recorder is a reporter that records the subtest tree and its outcomes.
type recorder struct {
	name    string
	logs    []string
	errs    []string
	failed  bool
	skipped string
	subs    []*recorder
}

func (r *recorder) Run(name string, f func(reporter)) bool {
	s := &recorder{name: name}
	r.subs = append(r.subs, s)
	f(s)
	if s.failed || len(s.errs) > 0 {
		r.failed = true
	}
	return !s.failed && len(s.errs) == 0
}
func (r *recorder) Log(args ...any) { r.logs = append(r.logs, fmt.Sprint(args...)) }
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Fail()            { r.failed = true }
func (r *recorder) Skip(args ...any) { r.skipped = fmt.Sprint(args...) }

// outcome renders the tree: "name: PASS|FAIL|SKIP", indented.
func (r *recorder) outcome(indent string, b *strings.Builder) {
	for _, s := range r.subs {
		st := "PASS"
		switch {
		case s.failed || len(s.errs) > 0:
			st = "FAIL"
		case s.skipped != "":
			st = "SKIP"
		}
		fmt.Fprintf(b, "%s%s: %s\n", indent, s.name, st)
		s.outcome(indent+"  ", b)
	}
}

func feed(lines []string) *lineSource {
	ch := make(chan string, len(lines))
	for _, l := range lines {
		ch <- l
	}
	close(ch)
	return &lineSource{ch: ch}
}

func TestReportRealOutput(t *testing.T) {
	b, err := os.ReadFile("testdata/guest-stream.txt") // real `-test.v` output of two test binaries, framed
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	sum := report(r, feed(strings.Split(strings.TrimRight(string(b), "\n"), "\n")))
	var got strings.Builder
	r.outcome("", &got)
	want := `sample: FAIL
  TestKernelPass: PASS
  TestKernelFail: FAIL
  TestKernelSkip: SKIP
crash: FAIL
  TestKernelZPanic: FAIL
`
	if got.String() != want {
		t.Errorf("outcomes:\n%s\nwant:\n%s", got.String(), want)
	}
	if !sum.done || sum.failedPkgs != 2 || strings.Join(sum.failedTests, ",") != "sample/TestKernelFail,crash/TestKernelZPanic" {
		t.Errorf("summary %+v", sum)
	}
	fail := r.subs[0].subs[1]
	if !strings.Contains(strings.Join(fail.logs, "\n"), "s_test.go:11: want 1, got 2") || !strings.Contains(strings.Join(fail.logs, "\n"), "--- FAIL: TestKernelFail/bad") {
		t.Errorf("the failure's output is not on its subtest: %q", fail.logs)
	}
	if skip := r.subs[0].subs[2]; !strings.Contains(skip.skipped, "needs hardware") {
		t.Errorf("skip reason %q", skip.skipped)
	}
	// The panic's goroutine dump is kept (on the package, after the test's FAIL line).
	if !strings.Contains(strings.Join(r.subs[1].logs, "\n"), "panic: assignment to entry in nil map") {
		t.Errorf("panic not reported: %q", r.subs[1].logs)
	}
}

func TestReportBrokenStreams(t *testing.T) {
	tests := []struct {
		name    string
		lines   []string
		want    string // outcome tree
		errHas  string // an error somewhere in the tree
		notDone bool
	}{
		{name: "guest died mid-test", lines: []string{"=== KERNELLAB BEGIN p", "=== RUN   TestKernelA", "    a_test.go:1: working"},
			want: "p: FAIL\n  TestKernelA: FAIL\n", errHas: "did not finish", notDone: true},
		{name: "timeout panic without FAIL line", lines: []string{"=== KERNELLAB BEGIN p", "=== RUN   TestKernelA", "panic: test timed out after 5m0s", "=== KERNELLAB END p rc=2", "=== KERNELLAB DONE failed=1"},
			want: "p: FAIL\n  TestKernelA: FAIL\n", errHas: "did not finish"},
		{name: "exit status without failing test", lines: []string{"=== KERNELLAB BEGIN p", "flag provided but not defined: -test.bogus", "=== KERNELLAB END p rc=2", "=== KERNELLAB DONE failed=1"},
			want: "p: FAIL\n", errHas: "exited with status 2 although no test reported FAIL"},
		{name: "init error", lines: []string{"=== KERNELLAB ERROR mount 9p share lab failed"}, want: "", errHas: "mount 9p share lab failed", notDone: true},
		{name: "top-level parallel", lines: []string{"=== KERNELLAB BEGIN p", "=== RUN   TestKernelA", "=== PAUSE TestKernelA", "--- PASS: TestKernelA (0.00s)", "PASS", "=== KERNELLAB END p rc=0", "=== KERNELLAB DONE failed=0"},
			want: "p: FAIL\n  TestKernelA: FAIL\n", errHas: "t.Parallel at top level"},
		{name: "nothing matched", lines: []string{"=== KERNELLAB BEGIN p", "testing: warning: no tests to run", "PASS", "=== KERNELLAB END p rc=0", "=== KERNELLAB DONE failed=0"},
			want: "p: PASS\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			sum := report(r, feed(tc.lines))
			var got strings.Builder
			r.outcome("", &got)
			if got.String() != tc.want {
				t.Errorf("outcomes:\n%s\nwant:\n%s", got.String(), tc.want)
			}
			var errs []string
			var walk func(*recorder)
			walk = func(x *recorder) {
				errs = append(errs, x.errs...)
				for _, s := range x.subs {
					walk(s)
				}
			}
			walk(r)
			if tc.errHas != "" && !strings.Contains(strings.Join(errs, "\n"), tc.errHas) {
				t.Errorf("errors %q, want one containing %q", errs, tc.errHas)
			}
			if sum.done == tc.notDone {
				t.Errorf("done = %v", sum.done)
			}
		})
	}
}

// FuzzReport: any guest output is consumed to its end without a panic, and every
// top-level RUN inside a package becomes exactly one subtest.
func FuzzReport(f *testing.F) {
	b, _ := os.ReadFile("testdata/guest-stream.txt")
	f.Add(string(b))
	f.Add("=== KERNELLAB BEGIN p\n=== RUN   TestA\n=== KERNELLAB BEGIN q\n=== KERNELLAB END p rc=x\n--- FAIL: TestA (")
	f.Fuzz(func(t *testing.T, s string) {
		lines := strings.Split(s, "\n")
		r := &recorder{}
		src := feed(lines)
		report(r, src)
		if _, ok := src.next(); ok {
			t.Fatal("report returned before the stream ended")
		}
	})
}

func TestRunScriptFramesRealBinaries(t *testing.T) {
	// run.sh run by sh on the host, with stand-in "test binaries" (shell scripts), produces
	// a stream report understands; the failed-package count reaches the rc file.
	dir := t.TempDir()
	lab, src := filepath.Join(dir, "lab"), filepath.Join(dir, "src")
	for _, d := range []string{lab + "/bin", src + "/a", src + "/b/c"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, body string) {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(lab+"/bin/a.test", `echo "=== RUN   TestKernelA"; echo "    cwd $(pwd) args $*"; echo "--- PASS: TestKernelA (0.00s)"; echo PASS`)
	write(lab+"/bin/c.test", `echo "=== RUN   TestKernelC"; echo "--- FAIL: TestKernelC (0.00s)"; echo FAIL; exit 1`)
	rcFile := filepath.Join(dir, "rc")
	script := runScript([]guestBinary{{"a", "a.test"}, {"b/c", "c.test"}}, "^TestKernel(A|C)$ 'x'", 77, lab, src)
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = append(os.Environ(), "KERNELLAB_RC="+rcFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run.sh: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "cwd "+src+"/a args -test.v -test.count=1 -test.timeout=77s -test.run=^TestKernel(A|C)$ 'x'") {
		t.Errorf("binary a ran with the wrong cwd or args:\n%s", out)
	}
	r := &recorder{}
	sum := report(r, feed(strings.Split(strings.TrimRight(string(out), "\n"), "\n")))
	var got strings.Builder
	r.outcome("", &got)
	if got.String() != "a: PASS\n  TestKernelA: PASS\nb/c: FAIL\n  TestKernelC: FAIL\n" || !sum.done || sum.failedPkgs != 1 {
		t.Errorf("outcomes:\n%s%+v", got.String(), sum)
	}
	if rc, _ := os.ReadFile(rcFile); strings.TrimSpace(string(rc)) != "1" {
		t.Errorf("rc file %q", rc)
	}
}

func TestGuestInitSyntax(t *testing.T) {
	// busybox sh parses what the guest runs (-n: no execution).
	sh, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed")
	}
	cmd := exec.Command(sh, "sh", "-n")
	cmd.Stdin = strings.NewReader(guestInit(bootModules))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("guest /init does not parse: %v\n%s", err, out)
	}
	if s := guestInit([]string{"virtio_pci", "9p"}); !strings.Contains(s, "for m in virtio_pci 9p; do") || !strings.Contains(s, `= org.offlane.results ]`) {
		t.Errorf("init script:\n%s", s)
	}
}

func TestModulesClosure(t *testing.T) {
	dep := `kernel/net/openvswitch/openvswitch.ko: kernel/net/nsh/nsh.ko kernel/net/netfilter/nf_conncount.ko kernel/net/netfilter/nf_nat.ko kernel/net/netfilter/nf_conntrack.ko
kernel/net/openvswitch/vport-vxlan.ko.xz: kernel/net/openvswitch/openvswitch.ko kernel/drivers/net/vxlan/vxlan.ko
kernel/net/nsh/nsh.ko:
kernel/net/netfilter/nf_conncount.ko: kernel/net/netfilter/nf_conntrack.ko
kernel/net/netfilter/nf_nat.ko: kernel/net/netfilter/nf_conntrack.ko
kernel/net/netfilter/nf_conntrack.ko:
kernel/drivers/net/vxlan/vxlan.ko: kernel/net/ipv4/udp_tunnel.ko
kernel/net/ipv4/udp_tunnel.ko:
`
	mi, err := parseModulesDep(strings.NewReader(dep))
	if err != nil {
		t.Fatal(err)
	}
	if err := mi.addBuiltin(strings.NewReader("kernel/drivers/virtio/virtio_pci.ko\n")); err != nil {
		t.Fatal(err)
	}
	files, err := mi.closure([]string{"vport-vxlan", "virtio_pci"})
	if err != nil {
		t.Fatal(err)
	}
	want := "kernel/drivers/net/vxlan/vxlan.ko kernel/net/ipv4/udp_tunnel.ko kernel/net/netfilter/nf_conncount.ko kernel/net/netfilter/nf_conntrack.ko kernel/net/netfilter/nf_nat.ko kernel/net/nsh/nsh.ko kernel/net/openvswitch/openvswitch.ko kernel/net/openvswitch/vport-vxlan.ko.xz"
	if strings.Join(files, " ") != want {
		t.Errorf("closure:\n%s\nwant:\n%s", strings.Join(files, " "), want)
	}
	if _, err := mi.closure([]string{"openvswitch", "netdevsim", "act_bogus"}); err == nil || !strings.Contains(err.Error(), "act_bogus, netdevsim") {
		t.Errorf("unknown modules: %v", err)
	}
	if _, err := parseModulesDep(strings.NewReader("no colon here\n")); err == nil {
		t.Error("a malformed line parsed")
	}
}

func FuzzParseModulesDep(f *testing.F) {
	f.Add("kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n")
	f.Add("a: a\n")
	f.Fuzz(func(t *testing.T, s string) {
		mi, err := parseModulesDep(strings.NewReader(s))
		if err != nil {
			return
		}
		names := make([]string, 0, len(mi.files))
		for n := range mi.files {
			names = append(names, n)
		}
		files, err := mi.closure(names)
		if err != nil {
			return // a dependency without its own line
		}
		known := map[string]bool{}
		for _, f := range mi.files {
			known[f] = true
		}
		for _, f := range files {
			if !known[f] {
				t.Fatalf("closure returned %q, which modules.dep does not list", f)
			}
		}
	})
}

func TestParseHeadersDepends(t *testing.T) {
	ref, err := parseHeadersDepends("linux-headers-6.1.0-56-amd64 (= 6.1.192-2)")
	if err != nil || ref.ABI != "6.1.0-56-amd64" || ref.Version != "6.1.192-2" || ref.series() != "6.1" || ref.key() != "6.1.0-56-amd64_6.1.192-2" {
		t.Errorf("%+v %v", ref, err)
	}
	if _, err := parseHeadersDepends("linux-headers-amd64"); err == nil {
		t.Error("no version parsed")
	}
}

// readCpio is a minimal newc reader for the test: path -> (mode, content or target).
func readCpio(t *testing.T, b []byte) map[string][2]string {
	t.Helper()
	out := map[string][2]string{}
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	for {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad header at %d", off)
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return int(v)
		}
		mode, size, namesize := field(1), field(6), field(11)
		name := string(b[off+110 : off+110+namesize-1])
		off += 110 + namesize
		align()
		data := string(b[off : off+size])
		off += size
		align()
		if name == "TRAILER!!!" {
			return out
		}
		out[name] = [2]string{strconv.FormatInt(int64(mode), 8), data}
	}
}

func TestCpioWriter(t *testing.T) {
	host := filepath.Join(t.TempDir(), "hostfile")
	if err := os.WriteFile(host, []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	tr := newTree()
	tr.file("init", 0o755, []byte("#!/bin/sh\n"))
	tr.symlink("bin", "usr/bin")
	tr.hostFile("usr/bin/tool", 0o755, host)
	tr.charDev("dev/console", 0o600, 5, 1)
	var buf bytes.Buffer
	if err := tr.writeCpio(&buf, openHost); err != nil {
		t.Fatal(err)
	}
	got := readCpio(t, buf.Bytes())
	want := map[string][2]string{
		"init": {"100755", "#!/bin/sh\n"}, "bin": {"120777", "usr/bin"}, "usr": {"40755", ""}, "usr/bin": {"40755", ""},
		"usr/bin/tool": {"100755", "12345"}, "dev": {"40755", ""}, "dev/console": {"20600", ""},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("archive:\n%v\nwant:\n%v", got, want)
	}
	// Deterministic: the same tree gives the same bytes and hash.
	var again bytes.Buffer
	_ = tr.writeCpio(&again, openHost)
	h1, _ := tr.hash()
	h2, _ := tr.hash()
	if !bytes.Equal(buf.Bytes(), again.Bytes()) || h1 != h2 {
		t.Error("archive or hash not deterministic")
	}
	// A host file that changes size while archived is an error, not a corrupt archive.
	tr.hostFile("usr/bin/tool", 0o755, host)
	err := tr.writeCpio(io.Discard, func(p string) (io.ReadCloser, int64, error) {
		rc, n, err := openHost(p)
		return rc, n + 10, err
	})
	if err == nil || !strings.Contains(err.Error(), "changed size") {
		t.Errorf("short read: %v", err)
	}
}

func TestHostCopierFollowsLinksAndLibraries(t *testing.T) {
	sh := "/bin/sh"
	if _, err := os.Stat(sh); err != nil {
		t.Skip("no /bin/sh")
	}
	tr := newTree()
	hc := newHostCopier("/", tr)
	if err := hc.addBinary(sh, ""); err != nil {
		t.Fatal(err)
	}
	// Resolve a guest path through the tree's own symlinks to a file entry.
	resolveIn := func(p string) (string, bool) {
		cur := ""
		parts := strings.Split(cleanTreePath(p), "/")
		for hops := 0; len(parts) > 0 && hops < 40; hops++ {
			next := strings.TrimPrefix(cur+"/"+parts[0], "/")
			parts = parts[1:]
			e, ok := tr.entries[next]
			if !ok {
				return next, false
			}
			if e.kind == kindSymlink {
				tgt := e.target
				if !strings.HasPrefix(tgt, "/") {
					tgt = filepath.Join("/"+filepath.Dir("/"+next), tgt)
				}
				parts = append(strings.Split(cleanTreePath(tgt), "/"), parts...)
				cur = ""
				continue
			}
			cur = next
		}
		return cur, tr.entries[cur] != nil && tr.entries[cur].kind == kindFile
	}
	for _, p := range []string{sh, "/lib64/ld-linux-x86-64.so.2"} {
		if f, ok := resolveIn(p); !ok {
			t.Errorf("%s does not resolve to a file in the guest tree (stopped at %s)", p, f)
		}
	}
	var libc bool
	for n, e := range tr.entries {
		if strings.Contains(n, "libc.so.6") && e.kind == kindFile {
			libc = true
		}
	}
	if !libc {
		names := make([]string, 0, len(tr.entries))
		for n := range tr.entries {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Errorf("libc.so.6 not copied; tree: %v", names)
	}
}

func TestDiscoverPackages(t *testing.T) {
	root, err := findModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	pkgs, err := discoverPackages(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cmd/offlane", "sriov", "test/kernellab"} {
		found := false
		for _, p := range pkgs {
			found = found || p == want
		}
		if !found {
			t.Errorf("%s not discovered: %v", want, pkgs)
		}
	}
}

func TestXenPVHNote(t *testing.T) {
	note := func(name string, typ uint32, desc []byte) []byte {
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		le := func(v uint32) { w.Write([]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}) }
		le(uint32(len(name) + 1))
		le(uint32(len(desc)))
		le(typ)
		w.WriteString(name + "\x00")
		for i := len(name) + 1; i%4 != 0; i++ {
			w.WriteByte(0)
		}
		w.Write(desc)
		w.Flush()
		return b.Bytes()
	}
	entry, _ := hex.DecodeString("00100001")
	if !hasXenPVHNote(append(note("GNU", 3, make([]byte, 20)), note("Xen", 18, entry)...)) {
		t.Error("PVH note not found")
	}
	if hasXenPVHNote(note("Xen", 6, entry)) || hasXenPVHNote([]byte{1, 2, 3}) {
		t.Error("a non-PVH note matched")
	}
}
