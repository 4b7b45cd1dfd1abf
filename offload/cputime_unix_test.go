//go:build unix

package offload

import (
	"syscall"
	"time"
)

// cpuTime is the process's user+system CPU time: benchmark figures that hold up when
// other work shares the machine (wall time does not).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
