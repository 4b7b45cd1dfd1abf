package kernellab

import (
	"os"
	"testing"
)

// Environment variables the harness sets in the guest or reads on the host.
const (
	// EnvGuest is "1" inside the qemu guest (set by the guest's /init).
	EnvGuest = "OFFLANE_KERNEL_LAB"
	// EnvRun is a -test.run regexp for the guest test binaries (default ^TestKernel).
	EnvRun = "OFFLANE_KERNEL_RUN"
	// EnvPkgs is a comma-separated list of package directories (relative to the module
	// root, e.g. "sriov,cmd/offlane") to run in the guest instead of all of them.
	EnvPkgs = "OFFLANE_KERNEL_PKGS"
	// EnvCache overrides the cache directory (default DefaultCacheDir).
	EnvCache = "OFFLANE_KERNELLAB_CACHE"
	// EnvAccel overrides qemu's accelerator (default tcg).
	EnvAccel = "OFFLANE_KERNELLAB_ACCEL"
	// EnvTimeout overrides the whole kernel lab's time budget (a Go duration, default 15m).
	EnvTimeout = "OFFLANE_KERNELLAB_TIMEOUT"
)

// DefaultCacheDir holds the downloaded kernel, the built netdevsim.ko and the initramfs,
// one directory per kernel version, reused across runs.
const DefaultCacheDir = "/var/cache/offlane/kernellab"

// InGuest reports whether this process runs inside the kernel-lab guest.
func InGuest() bool { return os.Getenv(EnvGuest) == "1" }

// RequireGuest skips the test unless it runs inside the kernel-lab guest. Guest tests
// (TestKernel… in *_kernel_test.go files) call it first: on the host they need a kernel
// this machine does not have (netdevsim, tc flower, the OVS datapath), and the host's
// TestLabKernel (`make test-kernel`) runs them in the guest.
func RequireGuest(t testing.TB) {
	t.Helper()
	if !InGuest() {
		t.Skip("kernel lab: runs only inside the qemu guest; `make test-kernel` (TestLabKernel in test/kernellab) boots it and runs this test there")
	}
}
