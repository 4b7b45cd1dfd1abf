package offload

// The OpenFlow table layout (docs/ARCHITECTURE.md, section offload, has the diagram and
// the reasons). Neutron-style bridges: the integration bridge carries every network under
// a local VLAN kept in a register, the tunnel bridge maps local VLAN ↔ VNI and the
// physnet bridges local VLAN ↔ provider VLAN.

// Integration bridge (br-int) tables.
const (
	TableClassify     uint8 = 0  // in_port → network (reg6); VM ports to port security, patches to L2
	TablePortSecurity uint8 = 10 // egress anti-spoofing: MAC, IP, allowed pairs, ARP, ND, DHCP
	TableEgressSG     uint8 = 20 // egress security groups: conntrack + conjunctive rules
	TableARPResponder uint8 = 25 // answers ARP requests for known remote addresses
	TableL2           uint8 = 30 // destination MAC → local port (reg7) or a patch port
	TableFlood        uint8 = 35 // broadcast, multicast, unknown unicast of a network
	TableFloodMore    uint8 = 36 // continuation of a network's flood list (large networks)
	TableIngress      uint8 = 40 // per destination port: filtered or not, destination MAC check
	TableIngressSG    uint8 = 45 // ingress security groups: conntrack + conjunctive rules
	TableCommit       uint8 = 50 // commits new allowed connections to conntrack
	TableDeliver      uint8 = 51 // output to reg7; to a patch port with the local VLAN pushed
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
	RegFloodChunk = 4 // index of the next chunk of a long flood list
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
