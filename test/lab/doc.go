// Package lab brings up real Open vSwitch instances (ovsdb-server + ovs-vswitchd, each in
// its own network namespace, optionally the DPDK build with dpdk-testpmd as a VM) and
// network-namespace "VMs" for privileged tests, and tears everything down with t.Cleanup.
package lab
