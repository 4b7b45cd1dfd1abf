package lab

import (
	"os"
	"syscall"
)

// daemonAttr puts a daemon in its own process group (a ^C to `go test` is handled by
// the cleanups) and has the kernel SIGKILL it if the test binary dies without running
// them.
func daemonAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func lockFile(f *os.File) error   { return syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }
func unlockFile(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }

func mountHugetlbfs(dir string) error {
	return syscall.Mount("nodev", dir, "hugetlbfs", 0, "pagesize=2M")
}

func unmount(dir string) {
	if err := syscall.Unmount(dir, 0); err != nil {
		// A process still holds pages: detach now, the kernel frees it when it exits.
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
	}
}
