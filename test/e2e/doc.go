// Package e2e holds the end-to-end lab proofs of the offload pipeline: tenant model
// values (controlplane) → offload IR, plan and OpenFlow compile → ovsdpdk's flow
// applier → real ovs-vswitchd instances (userspace datapath, one network namespace per
// "host"), proved by real traffic between namespace VMs and by tcpdump. It has no
// non-test code; the tests are privileged (TestLab...) and skip without root or OVS.
// The same scenarios run on OVS's kernel datapath with nftables routers (the fallback
// path) as TestKernelFallback, inside test/kernellab's guest, whose kernel has the
// openvswitch module.
package e2e
