// Package hwdetect finds out what a node can do: its NICs (PCI identity, driver,
// firmware, SR-IOV VFs, eswitch mode, representors, ethtool offload features), CPUs,
// NUMA, hugepages, IOMMU, kernel features and the local OVS, and recommends a dataplane
// mode per NIC with the reasons. It reads a root directory that may be the live system
// or a captured tree, and never changes anything on the node.
package hwdetect
