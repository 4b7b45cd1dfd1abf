//go:build linux

package kernellab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func numCPU() int { return runtime.NumCPU() }

// hostTools are what preparing the lab runs on the host (Debian packages apt, dpkg,
// kmod, make, gcc, binutils, xz-utils, qemu-system-x86; see deploy/install-deps.sh).
var hostTools = []string{qemuBin, "apt-get", "dpkg-query", "dpkg-deb", "depmod", "modinfo", "make", "gcc", "strip", "xz"}

// Run boots the kernel lab once and runs every guest test binary in it, reporting each
// package and each top-level guest test as a subtest of t. It skips, with the reason,
// when the lab cannot run here (OFFLANE_LAB=off, not root, a tool or the kernel headers
// missing); anything else that goes wrong is a failure.
func Run(t *testing.T, o Options) {
	t.Helper()
	if os.Getenv("OFFLANE_LAB") == "off" {
		t.Skip("kernel lab: OFFLANE_LAB=off")
	}
	if os.Geteuid() != 0 {
		t.Skip("kernel lab: needs root (downloads into /var/cache, builds a module, runs qemu); run as root or via `make test-kernel`")
	}
	for _, b := range hostTools {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("kernel lab: %s not found: run deploy/install-deps.sh", b)
		}
	}
	goBin, err := goTool()
	if err != nil {
		t.Skipf("kernel lab: %v", err)
	}
	if err := o.defaults(); err != nil {
		t.Fatalf("kernel lab: find the module root: %v", err)
	}
	budget := o.Timeout
	if dl, ok := t.Deadline(); ok {
		if left := time.Until(dl) - 30*time.Second; left < budget {
			budget = left
		}
	}
	if budget < time.Minute {
		t.Fatalf("kernel lab: only %v left before the test deadline: run with a larger -timeout", budget)
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	start := time.Now()

	ref, err := resolveKernel(ctx)
	if err != nil {
		t.Skipf("kernel lab: %v", err)
	}

	// 1. kernel, netdevsim.ko, initramfs: cached per kernel version, under a lock so
	// parallel runs share the work.
	if err := os.MkdirAll(o.CacheDir, 0o750); err != nil {
		t.Fatalf("kernel lab: cache %s: %v", o.CacheDir, err)
	}
	unlock, err := lockDir(o.CacheDir)
	if err != nil {
		t.Fatalf("kernel lab: %v", err)
	}
	k, err := prepareKernel(ctx, o.CacheDir, ref, t.Logf)
	if err != nil {
		unlock()
		t.Fatalf("kernel lab: %v", err)
	}
	initrd, err := initramfs(ctx, k, t.Logf)
	unlock()
	if err != nil {
		t.Fatalf("kernel lab: %v", err)
	}
	tKernel := time.Since(start)

	// 2. guest test binaries, static, into the lab share.
	pkgs := o.Packages
	if pkgs == nil {
		if pkgs, err = discoverPackages(o.ModuleRoot); err != nil {
			t.Fatalf("kernel lab: find guest tests: %v", err)
		}
	}
	if len(pkgs) == 0 {
		t.Fatalf("kernel lab: no package under %s has a *%s file", o.ModuleRoot, guestTestSuffix)
	}
	work := t.TempDir()
	labDir := filepath.Join(work, "lab")
	t1 := time.Now()
	bins, err := buildGuestBinaries(ctx, goBin, o.ModuleRoot, pkgs, filepath.Join(labDir, "bin"))
	if err != nil {
		t.Fatalf("kernel lab: %v", err)
	}
	tBuild := time.Since(t1)
	perBinary := int((budget - time.Since(start) - 60*time.Second) / time.Second)
	if perBinary < 60 {
		perBinary = 60
	}
	if err := os.WriteFile(filepath.Join(labDir, "run.sh"), []byte(runScript(bins, o.Run, perBinary, guestLabDir, guestSrcDir)), 0o755); err != nil {
		t.Fatal(err)
	}

	// 3. boot once, stream, report.
	spec := bootSpec{
		vmlinuz: k.boot(), initrd: initrd, labDir: labDir, srcDir: o.ModuleRoot,
		serialLog: filepath.Join(work, "serial.log"), socket: filepath.Join(work, "results.sock"),
		memMiB: o.MemoryMiB, cpus: o.CPUs, accel: o.Accel,
	}
	t.Logf("kernel lab: kernel %s (%s), %s, guest packages %s, -test.run %s", ref.ABI, ref.Version, filepath.Base(initrd), strings.Join(pkgs, " "), o.Run)
	t2 := time.Now()
	g, err := bootGuest(ctx, t, spec)
	if err != nil {
		t.Fatalf("kernel lab: %v", err)
	}
	sum := report(tReporter{t}, &lineSource{ch: g.lines})
	rc, werr := g.wait()
	tBoot := time.Since(t2)
	t.Logf("kernel lab timings: kernel+initramfs %.1fs, guest test build %.1fs, boot+tests %.1fs, total %.1fs",
		tKernel.Seconds(), tBuild.Seconds(), tBoot.Seconds(), time.Since(start).Seconds())

	var problems []string
	switch {
	case werr != nil:
		problems = append(problems, fmt.Sprintf("qemu: %v", werr))
	case ctx.Err() != nil:
		problems = append(problems, fmt.Sprintf("the kernel lab ran out of its %v budget: qemu was killed", budget.Round(time.Second)))
	case !sum.done:
		problems = append(problems, fmt.Sprintf("the guest stopped before running every package (qemu exit status %d: a kernel panic, an /init problem or a crash)", rc))
	case rc != sum.failedPkgs<<1|1:
		problems = append(problems, fmt.Sprintf("qemu exit status %d does not match the guest's %d failed packages", rc, sum.failedPkgs))
	}
	if len(problems) > 0 || t.Failed() {
		logTail(t, spec.serialLog, 60)
		logTail(t, spec.serialLog+".qemu", 20)
	}
	for _, p := range problems {
		t.Errorf("kernel lab: %s", p)
	}
}

// goTool finds the go command that builds the guest binaries.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/local/go/bin/go"); err == nil {
		return "/usr/local/go/bin/go", nil
	}
	return "", fmt.Errorf("no go command in PATH or /usr/local/go/bin (needed to build the guest test binaries)")
}

// buildGuestBinaries compiles each package's tests into a static binary in dir.
func buildGuestBinaries(ctx context.Context, goBin, root string, pkgs []string, dir string) ([]guestBinary, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	byName := map[string]int{}
	for _, p := range pkgs {
		byName[path.Base(p)]++
	}
	bins := make([]guestBinary, 0, len(pkgs))
	var args []string
	for _, p := range pkgs {
		name := path.Base(p)
		if byName[name] > 1 {
			name = strings.ReplaceAll(p, "/", "-")
		}
		bins = append(bins, guestBinary{pkgDir: p, file: name + ".test"})
		args = append(args, "./"+p)
	}
	gobuild := func(out string, pkgs ...string) error {
		cmd := exec.CommandContext(ctx, goBin, append([]string{"test", "-c", "-o", out}, pkgs...)...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go test -c %s: %w\n%s", strings.Join(pkgs, " "), err, buf.String())
		}
		return nil
	}
	unique := true
	for _, n := range byName {
		unique = unique && n == 1
	}
	if unique {
		// One go command: packages compile in parallel; binaries are named <pkg>.test.
		if err := gobuild(dir+"/", args...); err != nil {
			return nil, err
		}
	} else {
		for i, b := range bins {
			if err := gobuild(filepath.Join(dir, b.file), args[i]); err != nil {
				return nil, err
			}
		}
	}
	for _, b := range bins {
		if _, err := os.Stat(filepath.Join(dir, b.file)); err != nil {
			return nil, fmt.Errorf("guest binary for %s: %w (does the package have tests?)", b.pkgDir, err)
		}
	}
	return bins, nil
}

// lockDir takes an exclusive flock on dir/lock.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); _ = f.Close() }, nil
}

// logTail logs the last n lines of a file.
func logTail(t *testing.T, file string, n int) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(string(b), "\r", ""), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	t.Logf("--- last %d lines of %s ---\n%s", len(lines), filepath.Base(file), strings.Join(lines, "\n"))
}
