// Package dhcp is the DHCPv4 server of tenant networks: one server per network with a
// DHCP subnet, inside that network's qdhcp-<network> namespace on the network's DHCP port
// (device_owner network:dhcp) plugged into the integration bridge, as Neutron's DHCP
// agent runs dnsmasq there. Leases are static, computed by a pure function from the
// node's IR (Leases): each port of the network, local or remote, gets its fixed IP with
// the subnet's gateway, DNS servers, host routes (option 121) and the segment's MTU
// (option 26); an unknown MAC gets no answer. The table is swapped atomically when the
// IR changes, without restarting the server. Manager reconciles the servers, namespaces
// and ports of a node. It owns no flows (the offload pipeline lets DHCP through) and no
// IPv6 (no DHCPv6 or router advertisements).
package dhcp
