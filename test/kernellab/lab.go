package kernellab

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Options configure Run. Zero values take the environment (Env… constants) or defaults.
type Options struct {
	// ModuleRoot is the Go module whose guest tests run; "" finds go.mod upwards from
	// the working directory.
	ModuleRoot string
	// CacheDir holds kernels, netdevsim.ko and initramfs images (default
	// $OFFLANE_KERNELLAB_CACHE, then DefaultCacheDir).
	CacheDir string
	// Packages are package directories relative to ModuleRoot; nil means
	// $OFFLANE_KERNEL_PKGS, then every directory with a *_kernel_test.go file.
	Packages []string
	// Run is the guest binaries' -test.run (default $OFFLANE_KERNEL_RUN, then ^TestKernel).
	Run string
	// Timeout bounds the whole lab (default $OFFLANE_KERNELLAB_TIMEOUT, then 15m); the
	// test's own deadline bounds it too.
	Timeout time.Duration
	// MemoryMiB and CPUs size the guest (defaults 1024 and 2).
	MemoryMiB, CPUs int
	// Accel is qemu's accelerator (default $OFFLANE_KERNELLAB_ACCEL, then tcg).
	Accel string
}

func (o *Options) defaults() error {
	if o.ModuleRoot == "" {
		root, err := findModuleRoot()
		if err != nil {
			return err
		}
		o.ModuleRoot = root
	}
	if o.CacheDir == "" {
		o.CacheDir = os.Getenv(EnvCache)
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir
	}
	if o.Packages == nil {
		if s := os.Getenv(EnvPkgs); s != "" {
			for _, p := range strings.Split(s, ",") {
				if p = strings.Trim(strings.TrimSpace(p), "./"); p != "" {
					o.Packages = append(o.Packages, p)
				}
			}
		}
	}
	if o.Run == "" {
		o.Run = os.Getenv(EnvRun)
	}
	if o.Run == "" {
		o.Run = "^TestKernel"
	}
	if o.Timeout == 0 {
		if d, err := time.ParseDuration(os.Getenv(EnvTimeout)); err == nil && d > 0 {
			o.Timeout = d
		} else {
			o.Timeout = 15 * time.Minute
		}
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 1024
	}
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	if o.Accel == "" {
		o.Accel = os.Getenv(EnvAccel)
	}
	if o.Accel == "" {
		o.Accel = "tcg"
	}
	return nil
}

// findModuleRoot walks up from the working directory to go.mod.
func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// guestTestSuffix names the files that hold guest tests.
const guestTestSuffix = "_kernel_test.go"

// discoverPackages returns the package directories (slash-separated, relative to root,
// sorted) that hold a *_kernel_test.go file.
func discoverPackages(root string) ([]string, error) {
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, guestTestSuffix) {
			rel, err := filepath.Rel(root, filepath.Dir(p))
			if err != nil {
				return err
			}
			seen[filepath.ToSlash(rel)] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}
