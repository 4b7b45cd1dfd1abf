//go:build !linux

package kernellab

import "testing"

// Run skips: the kernel lab needs Linux (qemu, Debian packages, 9p).
func Run(t *testing.T, o Options) {
	t.Helper()
	t.Skip("kernel lab: needs Linux")
}
