// Package offload holds the intermediate representation of what a node must do, the
// capability-driven planner that picks a backend per port and feature (recording why),
// and the compilers that turn a plan into OpenFlow, tc flower and nftables rules. It is
// pure: no I/O. Applying rules belongs to ovsdpdk, sriov and the kernel backends.
package offload
