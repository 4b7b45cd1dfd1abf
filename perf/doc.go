// Package perf is the benchmark harness: control-plane and dataplane scenarios run side
// by side with their baselines in the same run, reported as JSON and ratios.
package perf
