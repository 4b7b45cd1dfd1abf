package kernellab

import "testing"

// TestLabKernel boots Debian's kernel under qemu once and runs every guest test
// (TestKernel… in *_kernel_test.go files across the module) in it; each package and each
// guest test shows up as a subtest. `make test-kernel` runs only this.
func TestLabKernel(t *testing.T) {
	Run(t, Options{})
}
