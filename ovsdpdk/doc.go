// Package ovsdpdk programs Open vSwitch: the node's bridge layout and DPDK/offload
// settings over OVSDB (libovsdb, generated models), tenant ports (vhost-user, dpdk,
// internal, system, tunnel, patch), OpenFlow programming and OVS statistics. It owns
// only the rows and flows it tags; it does not decide what a tenant network needs.
package ovsdpdk
