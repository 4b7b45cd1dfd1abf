//go:build !unix

package offload

import "time"

// cpuTime is not measured here (0: the benchmark reports wall time only).
func cpuTime() time.Duration { return 0 }
