// Package controlplane owns the tenant model (Neutron's networks, subnets, ports,
// routers, floating IPs, security groups, QoS policies), its validation, IPAM and
// segment allocation, the Neutron v2.0 API server and the revisioned store with its
// watch stream. It knows nothing of OVS or NICs.
package controlplane
