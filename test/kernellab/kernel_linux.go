//go:build linux

package kernellab

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// kernel is a Debian kernel in the cache: the unpacked linux-image package (vmlinuz and
// modules, with depmod's indexes) and netdevsim.ko built for it.
type kernel struct {
	ref     kernelRef
	dir     string // <cache>/<abi>_<version>
	vmlinuz string
	// vmlinux is the uncompressed ELF kernel, booted through its PVH entry: it skips
	// the XZ decompression that takes ~10 s under emulation. "" falls back to vmlinuz.
	vmlinux   string
	modDir    string // .../kroot/lib/modules/<abi>
	netdevsim string
}

// resolveKernel returns the kernel of the installed linux-headers-amd64.
func resolveKernel(ctx context.Context) (kernelRef, error) {
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Depends}", "linux-headers-amd64").Output()
	if err != nil {
		return kernelRef{}, fmt.Errorf("linux-headers-amd64 is not installed (dpkg-query: %w): run deploy/install-deps.sh", err)
	}
	ref, err := parseHeadersDepends(string(out))
	if err != nil {
		return kernelRef{}, err
	}
	if _, err := os.Stat(filepath.Join("/usr/src", "linux-headers-"+ref.ABI, "Makefile")); err != nil {
		return kernelRef{}, fmt.Errorf("headers of kernel %s are not in /usr/src: run deploy/install-deps.sh: %w", ref.ABI, err)
	}
	return ref, nil
}

// prepareKernel makes sure the kernel and netdevsim.ko are in the cache, fetching and
// building what is missing. The caller holds the cache lock.
func prepareKernel(ctx context.Context, cache string, ref kernelRef, logf func(string, ...any)) (*kernel, error) {
	k := &kernel{ref: ref, dir: filepath.Join(cache, ref.key())}
	k.vmlinuz = filepath.Join(k.dir, "kroot", "boot", "vmlinuz-"+ref.ABI)
	k.modDir = filepath.Join(k.dir, "kroot", "lib", "modules", ref.ABI)
	k.netdevsim = filepath.Join(k.dir, "netdevsim", "netdevsim.ko")
	if err := os.MkdirAll(k.dir, 0o750); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(k.modDir, "modules.dep")); err != nil {
		t0 := time.Now()
		if err := k.fetchImage(ctx); err != nil {
			return nil, err
		}
		logf("kernel %s (%s): downloaded and unpacked in %.1fs", ref.ABI, ref.Version, time.Since(t0).Seconds())
	}
	k.vmlinux = filepath.Join(k.dir, "vmlinux")
	if _, err := os.Stat(k.vmlinux); err != nil {
		if err := extractVmlinux(ctx, k.vmlinuz, k.vmlinux); err != nil {
			logf("kernel %s: no uncompressed vmlinux (%v): booting vmlinuz, ~10 s slower", ref.ABI, err)
			k.vmlinux = ""
		}
	}
	if _, err := os.Stat(k.netdevsim); err != nil {
		t0 := time.Now()
		if err := k.buildNetdevsim(ctx); err != nil {
			return nil, err
		}
		logf("netdevsim.ko for %s: built in %.1fs", ref.ABI, time.Since(t0).Seconds())
	}
	return k, nil
}

// boot returns the kernel file qemu boots.
func (k *kernel) boot() string {
	if k.vmlinux != "" {
		return k.vmlinux
	}
	return k.vmlinuz
}

// extractVmlinux decompresses the ELF kernel out of a bzImage whose payload is XZ
// (Debian: CONFIG_KERNEL_XZ), the way the kernel's scripts/extract-vmlinux does, and
// checks it is an ELF file with a PVH entry note (CONFIG_PVH), which qemu -kernel boots.
func extractVmlinux(ctx context.Context, bzImage, out string) error {
	b, err := os.ReadFile(bzImage)
	if err != nil {
		return err
	}
	off := bytes.Index(b, []byte("\xfd7zXZ\x00"))
	if off < 0 {
		return fmt.Errorf("%s: no XZ payload", bzImage)
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "xz", "-dc", "--single-stream")
	cmd.Stdin = bytes.NewReader(b[off:])
	cmd.Stdout = f
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = errors.Join(cmd.Run(), f.Close())
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("xz: %w: %s", err, stderr.String())
	}
	ef, err := elf.Open(tmp)
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("decompressed kernel: %w", err)
	}
	pvh := false
	for _, p := range ef.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(p.Open())
		if err == nil && hasXenPVHNote(notes) {
			pvh = true
		}
	}
	_ = ef.Close()
	if !pvh {
		_ = os.Remove(tmp)
		return fmt.Errorf("decompressed kernel has no PVH entry note (CONFIG_PVH)")
	}
	return os.Rename(tmp, out)
}

// aptDownload fetches one exact package version into dir and returns the .deb's path.
func aptDownload(ctx context.Context, dir, pkg, version string) (string, error) {
	glob := filepath.Join(dir, pkg+"_*.deb")
	if m, _ := filepath.Glob(glob); len(m) == 1 {
		return m[0], nil
	}
	// Sandbox user root: the cache is root's; apt's _apt user could not write into it.
	cmd := exec.CommandContext(ctx, "apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", pkg+"="+version)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("apt-get download %s=%s: %w\n%s\n(the mirror may have moved on: `apt-get update && apt-get install linux-headers-amd64` picks the current kernel)", pkg, version, err, strings.TrimSpace(string(out)))
	}
	m, _ := filepath.Glob(glob)
	if len(m) != 1 {
		return "", fmt.Errorf("apt-get download %s=%s: expected one %s, found %v", pkg, version, glob, m)
	}
	return m[0], nil
}

// fetchImage downloads linux-image-<abi>, unpacks it (no install: /boot and the host's
// modules are untouched) and indexes its modules with depmod.
func (k *kernel) fetchImage(ctx context.Context) error {
	deb, err := aptDownload(ctx, k.dir, "linux-image-"+k.ref.ABI, k.ref.Version)
	if err != nil {
		return err
	}
	tmp := filepath.Join(k.dir, ".kroot.tmp")
	_ = os.RemoveAll(tmp)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w: %s", deb, err, out)
	}
	if out, err := exec.CommandContext(ctx, "depmod", "-b", tmp, k.ref.ABI).CombinedOutput(); err != nil {
		return fmt.Errorf("depmod -b %s %s: %w: %s", tmp, k.ref.ABI, err, out)
	}
	final := filepath.Join(k.dir, "kroot")
	_ = os.RemoveAll(final)
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	// The .deb is not needed any more: the unpacked tree is the cache.
	return os.Remove(deb)
}

// buildNetdevsim builds drivers/net/netdevsim out of tree: Debian's kernel config has
// "# CONFIG_NETDEVSIM is not set", so its sources come from the matching linux-source
// package and it is compiled against the installed linux-headers-<abi>.
func (k *kernel) buildNetdevsim(ctx context.Context) error {
	dl := filepath.Join(k.dir, ".source.tmp")
	if err := os.MkdirAll(dl, 0o750); err != nil {
		return err
	}
	pkg := "linux-source-" + k.ref.series()
	deb, err := aptDownload(ctx, dl, pkg, k.ref.Version)
	if err != nil {
		return err
	}
	src := filepath.Join(k.dir, ".netdevsim.tmp")
	_ = os.RemoveAll(src)
	if err := os.MkdirAll(src, 0o750); err != nil {
		return err
	}
	prefix := "linux-source-" + k.ref.series() + "/drivers/net/netdevsim/"
	n, err := extractKernelSubdir(ctx, deb, "./usr/src/linux-source-"+k.ref.series()+".tar.xz", prefix, src)
	if err != nil {
		return fmt.Errorf("%s: extract %s: %w", deb, prefix, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: no files under %s", deb, prefix)
	}
	headers := filepath.Join("/usr/src", "linux-headers-"+k.ref.ABI)
	jobs := fmt.Sprintf("-j%d", max(1, numCPU()))
	cmd := exec.CommandContext(ctx, "make", "-s", "-C", headers, "M="+src, "CONFIG_NETDEVSIM=m", "modules", jobs)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build netdevsim against %s: %w\n%s", headers, err, out)
	}
	ko := filepath.Join(src, "netdevsim.ko")
	// Debian builds with debug info: strip it (tens of MB less in the initramfs).
	if out, err := exec.CommandContext(ctx, "strip", "--strip-debug", ko).CombinedOutput(); err != nil {
		return fmt.Errorf("strip %s: %w: %s", ko, err, out)
	}
	final := filepath.Join(k.dir, "netdevsim")
	_ = os.RemoveAll(final)
	if err := os.Rename(src, final); err != nil {
		return err
	}
	return os.RemoveAll(dl) // the 140 MB source package is not needed again
}

// extractKernelSubdir reads the .deb's data tarball, finds member (the source tarball,
// .tar.xz), decompresses it with xz and writes the files under prefix into dest (prefix
// stripped). It returns the number of files written.
func extractKernelSubdir(ctx context.Context, deb, member, prefix, dest string) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fsys := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	fsysOut, err := fsys.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := fsys.Start(); err != nil {
		return 0, err
	}
	defer func() { cancel(); _ = fsys.Wait() }()
	tr := tar.NewReader(fsysOut)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return 0, fmt.Errorf("%s not in the package", member)
		}
		if err != nil {
			return 0, err
		}
		if h.Name == member {
			break
		}
	}
	xz := exec.CommandContext(ctx, "xz", "-dc")
	xz.Stdin = tr
	xzOut, err := xz.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := xz.Start(); err != nil {
		return 0, err
	}
	defer func() { cancel(); _ = xz.Wait() }()
	inner := tar.NewReader(xzOut)
	n := 0
	for {
		h, err := inner.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if !strings.HasPrefix(h.Name, prefix) || h.Typeflag != tar.TypeReg {
			continue
		}
		rel := strings.TrimPrefix(h.Name, prefix)
		if rel == "" || strings.Contains(rel, "..") {
			continue
		}
		p := filepath.Join(dest, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			return n, err
		}
		if err := writeFileFrom(p, inner, 0o644); err != nil {
			return n, err
		}
		n++
	}
}

func writeFileFrom(p string, r io.Reader, mode os.FileMode) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	return errors.Join(err, f.Close())
}
