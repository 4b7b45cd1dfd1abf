package offload

import (
	"net/netip"
	"slices"
)

// The IR of routing, NAT, QoS and DHCP (issue 6). Build fills these from the snapshot's
// subnets, routers, floating IPs and QoS policies; the OpenFlow compiler, the nftables
// router backend (package kernel) and the DHCP server read them.

// Subnet is a subnet of one of the node's segments.
type Subnet struct {
	ID        string       `json:"id"`
	NetworkID string       `json:"network_id"`
	TenantID  string       `json:"tenant_id"`
	CIDR      netip.Prefix `json:"cidr"` // masked
	// Gateway is gateway_ip; invalid when the subnet has none.
	Gateway    netip.Addr     `json:"gateway,omitzero"`
	EnableDHCP bool           `json:"enable_dhcp"`
	DNS        []netip.Addr   `json:"dns_nameservers,omitempty"`
	HostRoutes []SubnetRoute  `json:"host_routes,omitempty"`
	Pools      []netip.Prefix `json:"-"` // unused by the compilers
}

// SubnetRoute is a host route (DHCP option 121) or a router's extra route.
type SubnetRoute struct {
	Destination netip.Prefix `json:"destination"`
	NextHop     netip.Addr   `json:"nexthop"`
}

// Router is a router with at least one interface on a network this node carries.
type Router struct {
	ID           string `json:"id"`
	TenantID     string `json:"tenant_id"`
	AdminStateUp bool   `json:"admin_state_up"`
	// Interfaces are the router's ports on tenant subnets (device_owner
	// network:router_interface), sorted by port ID then subnet ID.
	Interfaces []RouterInterface `json:"interfaces"`
	// Gateway is the router's port on its external network; nil without
	// external_gateway_info.
	Gateway *RouterGateway `json:"gateway,omitempty"`
	// Routes are the extra routes, sorted by destination.
	Routes []SubnetRoute `json:"routes,omitempty"`
}

// RouterInterface is one address of a router port on a tenant subnet: the subnet's
// gateway, answered by the router's MAC on that network.
type RouterInterface struct {
	PortID    string       `json:"port_id"`
	NetworkID string       `json:"network_id"`
	SubnetID  string       `json:"subnet_id"`
	MAC       string       `json:"mac"`
	IP        netip.Addr   `json:"ip"`
	CIDR      netip.Prefix `json:"cidr"` // the subnet's, masked
	// OFPort is the port's OpenFlow port on the integration bridge when something plugged
	// it (the nftables backend's qr- veth); 0 otherwise.
	OFPort int `json:"ofport"`
}

// RouterGateway is a router's external side.
type RouterGateway struct {
	PortID    string `json:"port_id"`
	NetworkID string `json:"network_id"` // the external network (also in IR.Segments)
	MAC       string `json:"mac"`
	// IPs are the external fixed IPs (the SNAT address is the first IPv4 one), with
	// their subnets' CIDRs in CIDRs (same order).
	IPs   []netip.Addr   `json:"ips"`
	CIDRs []netip.Prefix `json:"cidrs"`
	// NextHop is the external subnet's gateway_ip: the default route; invalid when the
	// external subnet has none (then only directly connected external hosts are reached).
	NextHop    netip.Addr `json:"nexthop,omitzero"`
	EnableSNAT bool       `json:"enable_snat"`
	// Host is the gateway port's binding:host_id ("" = unscheduled).
	Host   string `json:"host,omitempty"`
	OFPort int    `json:"ofport"` // as RouterInterface.OFPort (the qg- veth)
}

// FloatingIP is a floating IP associated with a port, on a router this node carries.
type FloatingIP struct {
	ID         string     `json:"id"`
	TenantID   string     `json:"tenant_id"`
	RouterID   string     `json:"router_id"`
	NetworkID  string     `json:"network_id"` // the external network
	FloatingIP netip.Addr `json:"floating_ip"`
	PortID     string     `json:"port_id"`
	FixedIP    netip.Addr `json:"fixed_ip"`
	// PortNetworkID is the associated port's (internal) network.
	PortNetworkID string `json:"port_network_id"`
	// Host is where the associated port is bound ("" when unbound).
	Host string `json:"host,omitempty"`
	// MAC answers for the floating IP on the external network: the MAC of its port
	// (device_owner network:floatingip), else the router gateway's. Only the host of the
	// associated port answers, so each floating IP's MAC lives on one host.
	MAC string `json:"mac"`
}

// DHCPPort is a network's DHCP server port (device_owner network:dhcp): one per network
// that has a subnet with enable_dhcp. Like a router's ports under the nftables backend,
// it is realised on every node that carries the network (a qdhcp-<network> namespace);
// once plugged (an OFPort in BuildInput.OFPorts) it is also a local port in IR.Ports.
type DHCPPort struct {
	PortID    string       `json:"port_id"`
	NetworkID string       `json:"network_id"`
	MAC       string       `json:"mac"`
	IPs       []netip.Addr `json:"ips"`
	OFPort    int          `json:"ofport"`
}

// QoS rule types and directions (Neutron's spelling; direction is the port's view:
// egress = from the VM, ingress = to the VM).
const (
	QoSBandwidthLimit   = "bandwidth_limit"
	QoSDSCPMarking      = "dscp_marking"
	QoSMinimumBandwidth = "minimum_bandwidth"
)

// QoSPolicy is a QoS policy some local port uses (its own or its network's).
type QoSPolicy struct {
	ID       string    `json:"id"`
	TenantID string    `json:"tenant_id"`
	Rules    []QoSRule `json:"rules"` // sorted by type, direction, ID
}

// QoSRule is one rule; only the fields of its Type are set (others 0).
type QoSRule struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Direction string `json:"direction,omitempty"` // egress | ingress (not for dscp_marking)
	MaxKbps   int    `json:"max_kbps,omitempty"`
	// MaxBurstKbps is max_burst_kbps (kilobits); 0 = the backend's default (80 % of
	// MaxKbps, Neutron's OVS driver convention).
	MaxBurstKbps int `json:"max_burst_kbps,omitempty"`
	MinKbps      int `json:"min_kbps,omitempty"`
	DSCPMark     int `json:"dscp_mark,omitempty"`
}

func (a *Subnet) equal(b *Subnet) bool {
	return a.ID == b.ID && a.NetworkID == b.NetworkID && a.TenantID == b.TenantID && a.CIDR == b.CIDR &&
		a.Gateway == b.Gateway && a.EnableDHCP == b.EnableDHCP && slices.Equal(a.DNS, b.DNS) &&
		slices.Equal(a.HostRoutes, b.HostRoutes) && slices.Equal(a.Pools, b.Pools)
}

func (a *Router) equal(b *Router) bool {
	if a.ID != b.ID || a.TenantID != b.TenantID || a.AdminStateUp != b.AdminStateUp ||
		!slices.Equal(a.Interfaces, b.Interfaces) || !slices.Equal(a.Routes, b.Routes) ||
		(a.Gateway == nil) != (b.Gateway == nil) {
		return false
	}
	return a.Gateway == nil || a.Gateway.equal(b.Gateway)
}

func (a *RouterGateway) equal(b *RouterGateway) bool {
	return a.PortID == b.PortID && a.NetworkID == b.NetworkID && a.MAC == b.MAC &&
		slices.Equal(a.IPs, b.IPs) && slices.Equal(a.CIDRs, b.CIDRs) && a.NextHop == b.NextHop &&
		a.EnableSNAT == b.EnableSNAT && a.Host == b.Host && a.OFPort == b.OFPort
}

func (a *DHCPPort) equal(b *DHCPPort) bool {
	return a.PortID == b.PortID && a.NetworkID == b.NetworkID && a.MAC == b.MAC &&
		slices.Equal(a.IPs, b.IPs) && a.OFPort == b.OFPort
}

func (a *FloatingIP) equal(b *FloatingIP) bool { return *a == *b }

func (a *QoSPolicy) equal(b *QoSPolicy) bool {
	return a.ID == b.ID && a.TenantID == b.TenantID && slices.Equal(a.Rules, b.Rules)
}
