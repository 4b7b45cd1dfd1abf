package offload

// The OpenFlow table layout (docs/ARCHITECTURE.md, section offload, has the diagram and
// the reasons). Neutron-style bridges: the integration bridge carries every network under
// a local VLAN kept in a register, the tunnel bridge maps local VLAN ↔ VNI and the
// physnet bridges local VLAN ↔ provider VLAN.

// Integration bridge (br-int) tables.
const (
	TableClassify     uint8 = 0  // in_port → network (reg6); VM ports to port security, patches to L2
	TableQoS          uint8 = 5  // egress QoS of ports with a policy: meter, DSCP marking; then on to 10 (or 25)
	TablePortSecurity uint8 = 10 // egress anti-spoofing: MAC, IP, allowed pairs, ARP, ND, DHCP
	TableEgressSG     uint8 = 20 // egress security groups: conntrack + conjunctive rules
	TableARPResponder uint8 = 25 // answers ARP requests for known remote addresses
	TableL2           uint8 = 30 // destination MAC → local port (reg7) or a patch port
	TableFlood        uint8 = 35 // broadcast, multicast, unknown unicast of a network
	TableFloodMore    uint8 = 36 // continuation of a network's flood list (large networks)
	TableIngress      uint8 = 40 // per destination port: filtered or not, destination MAC check
	TableIngressSG    uint8 = 45 // ingress security groups: conntrack + conjunctive rules
	TableCommit       uint8 = 50 // commits new allowed connections to conntrack
	TableDeliver      uint8 = 51 // output to reg7; to a patch port with the local VLAN pushed; a port's ingress meter (QoS)
)

// Integration bridge L3 stage (units_l3.go): routers the planner put on OpenFlow. TableL2
// sends frames to a router MAC here (reg5 = the router's zone); routed packets go back to
// TableL2 on the destination network (reg6), untracked and from no port.
const (
	TableL3Commit  uint8 = 60 // commit a new connection from a network no router interface of this router is on (its zone), then 61; see units_l3ct.go
	TableL3In      uint8 = 61 // from the router's external network: ct(nat) in the router's zone (un-SNAT)
	TableL3DNAT    uint8 = 62 // new connection to a floating IP: DNAT commit
	TableL3Route   uint8 = 63 // ICMP(v6) echo to router addresses; longest-prefix routes: dec_ttl, reg6, eth_src, next hop (reg3 / xxreg2)
	TableL3SNATIn  uint8 = 64 // routed out of the external network: ct(nat) in the router's zone
	TableL3SNAT    uint8 = 65 // new connections: floating IP SNAT (wins), then the router's SNAT
	TableL3Neigh   uint8 = 66 // (reg6, reg3 | xxreg2) → eth_dst: ports of routed networks, ARP-learned external hosts
	TableL3Out     uint8 = 67 // resolve the next hop (resubmit 66)
	TableL3Deliver uint8 = 68 // unresolved: drop; else (ct_clear unless tracked in the routed zone), in_port=0, resubmit to TableL2
	// TableL3NA completes the ND responder's neighbour advertisement (TableL2 turned the
	// solicitation into it): OVS accepts set_field:nd_tll only on a flow whose match says
	// icmp_type=136, so the target link-layer option is written here, then out IN_PORT.
	TableL3NA uint8 = 69
)

// Tunnel bridge (br-tun) tables.
const (
	TableTunClassify   uint8 = 0  // from patch-int or from a tunnel port
	TableTunToTunnel   uint8 = 1  // local VLAN → VNI and remote VTEP (L2 population, flooding)
	TableTunFromTunnel uint8 = 10 // VNI from a known VTEP → local VLAN
)

// TablePhysnet is the only table of a physnet bridge: local VLAN ↔ provider VLAN.
const TablePhysnet uint8 = 0

// Registers (br-int).
const (
	RegNextHop    = 3 // L3: the IPv4 next hop being resolved
	RegNextHop6   = 8 // L3: the IPv6 next hop being resolved, in reg8..reg11 (xxreg2), high word first
	RegFloodChunk = 4 // index of the next chunk of a long flood list
	RegRouter     = 5 // L3: the router's conntrack zone (4096..65535), naming the router
	RegNetwork    = 6 // the network's local VLAN, also its conntrack zone
	RegOutPort    = 7 // the destination OpenFlow port
)

// Priorities.
const (
	prioMiss       uint16 = 0
	prioDeliverAny uint16 = 1
	prioCommit     uint16 = 10
	prioFloodAll   uint16 = 90  // flood from a local port: local ports + the network's patch
	prioFloodPatch uint16 = 100 // flood from the network's patch: local ports only
	prioPort       uint16 = 100
	prioConj       uint16 = 70  // security group conjunctions and conj_id flows
	prioPSAllowIP  uint16 = 70  // port security: IP from an allowed source → security groups
	prioPSAllowL2  uint16 = 90  // port security: ARP, ND, DHCP → L2 (no security groups)
	prioPSDeny     uint16 = 95  // DHCP/RA server spoofing
	prioSGEst      uint16 = 190 // established / related
	prioSGInv      uint16 = 180 // invalid
	prioSGTrack    uint16 = 200 // send untracked IP through conntrack
	prioSGAlways   uint16 = 210 // ingress ND/DHCP/ARP, before conntrack
)

// floodChunk is how many local ports one flood flow lists before it continues in
// TableFloodMore (keeps each flow far below OpenFlow's 64 KiB message limit).
const floodChunk = 128

// ctZone is the conntrack zone expression: the network's register.
const ctZone = "zone=NXM_NX_REG6[0..15]"
