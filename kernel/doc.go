// Package kernel owns the Linux-kernel fallback backends of a node: network namespaces
// wired to the integration bridge with veth pairs (Plug/Unplug, shared by the qrouter
// namespaces here and the DHCP namespaces and VIF plugging elsewhere), and the nftables
// router backend (Routers), which realises an offload.Router as a Neutron-style
// qrouter-<id> namespace with qr-/qg- ports, kernel routing and one nftables table of
// SNAT/DNAT rules applied atomically. It does not decide which routers use it (the
// offload planner does) and does not program OpenFlow (ovsdpdk does).
package kernel
