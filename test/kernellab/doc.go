// Package kernellab is the kernel-tier test harness: it boots Debian's stock kernel under
// qemu (software emulation) with a cached initramfs (busybox, iproute2, ethtool, kmod,
// optional OVS userspace, the needed kernel modules and an out-of-tree netdevsim.ko) and
// runs the project's guest tests — ordinary Go tests named TestKernel… in files named
// *_kernel_test.go, compiled with `go test -c` and shared over 9p — inside it, reporting
// each guest test as a subtest of the host's TestLabKernel. It also holds the helpers
// guest tests use (RequireGuest). It does not contain the guest tests themselves: they
// live beside the code they prove (sriov, cmd/offlane, …).
package kernellab
