package controlplane

// The tenant model: Neutron v2.0 resources with their exact JSON attribute names. These
// are the values the store holds (kind = the collection name) and the agent watches.

// Store kinds (also the API collection names).
const (
	KindNetwork      = "networks"
	KindSubnet       = "subnets"
	KindPort         = "ports"
	KindRouter       = "routers"
	KindFloatingIP   = "floatingips"
	KindSecGroup     = "security-groups"
	KindSecGroupRule = "security-group-rules"
	KindQoSPolicy    = "qos-policies"
)

// Network is a Neutron network with the provider, external-net, mtu, port-security and
// qos extensions.
type Network struct {
	ID                    string   `json:"id"`
	Name                  string   `json:"name"`
	Description           string   `json:"description"`
	ProjectID             string   `json:"project_id"`
	TenantID              string   `json:"tenant_id"`
	AdminStateUp          bool     `json:"admin_state_up"`
	Status                string   `json:"status"`
	Subnets               []string `json:"subnets"`
	Shared                bool     `json:"shared"`
	External              bool     `json:"router:external"`
	MTU                   int      `json:"mtu"`
	NetworkType           string   `json:"provider:network_type"`
	PhysicalNetwork       *string  `json:"provider:physical_network"`
	SegmentationID        *int     `json:"provider:segmentation_id"`
	PortSecurityEnabled   bool     `json:"port_security_enabled"`
	QoSPolicyID           *string  `json:"qos_policy_id"`
	AvailabilityZoneHints []string `json:"availability_zone_hints"`
	AvailabilityZones     []string `json:"availability_zones"`
	Tags                  []string `json:"tags"`
	RevisionNumber        int      `json:"revision_number"`
	CreatedAt             string   `json:"created_at"`
	UpdatedAt             string   `json:"updated_at"`
}

// AllocationPool is an inclusive range of addresses IPAM hands out.
type AllocationPool struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// HostRoute is a route given to instances by DHCP.
type HostRoute struct {
	Destination string `json:"destination"`
	NextHop     string `json:"nexthop"`
}

// Subnet is a Neutron subnet.
type Subnet struct {
	ID              string           `json:"id"`
	Name            string           `json:"name"`
	Description     string           `json:"description"`
	ProjectID       string           `json:"project_id"`
	TenantID        string           `json:"tenant_id"`
	NetworkID       string           `json:"network_id"`
	IPVersion       int              `json:"ip_version"`
	CIDR            string           `json:"cidr"`
	GatewayIP       *string          `json:"gateway_ip"`
	AllocationPools []AllocationPool `json:"allocation_pools"`
	EnableDHCP      bool             `json:"enable_dhcp"`
	DNSNameservers  []string         `json:"dns_nameservers"`
	HostRoutes      []HostRoute      `json:"host_routes"`
	IPv6AddressMode *string          `json:"ipv6_address_mode"`
	IPv6RAMode      *string          `json:"ipv6_ra_mode"`
	SubnetPoolID    *string          `json:"subnetpool_id"`
	ServiceTypes    []string         `json:"service_types"`
	Tags            []string         `json:"tags"`
	RevisionNumber  int              `json:"revision_number"`
	CreatedAt       string           `json:"created_at"`
	UpdatedAt       string           `json:"updated_at"`
}

// FixedIP is one address of a port.
type FixedIP struct {
	SubnetID  string `json:"subnet_id"`
	IPAddress string `json:"ip_address"`
}

// AddressPair is an extra address (or CIDR) a port may send from.
type AddressPair struct {
	IPAddress  string `json:"ip_address"`
	MACAddress string `json:"mac_address"`
}

// VNIC types (binding:vnic_type). vhost-user is an offlane extension.
const (
	VNICNormal          = "normal"
	VNICDirect          = "direct"
	VNICDirectPhysical  = "direct-physical"
	VNICVirtioForwarder = "virtio-forwarder"
	VNICVDPA            = "vdpa"
	VNICVhostUser       = "vhost-user"
)

// Port is a Neutron port with the binding, port-security, allowed-address-pairs and qos
// extensions. binding:vif_type and binding:vif_details are the agent's to fill.
type Port struct {
	ID                  string         `json:"id"`
	Name                string         `json:"name"`
	Description         string         `json:"description"`
	ProjectID           string         `json:"project_id"`
	TenantID            string         `json:"tenant_id"`
	NetworkID           string         `json:"network_id"`
	AdminStateUp        bool           `json:"admin_state_up"`
	Status              string         `json:"status"`
	MACAddress          string         `json:"mac_address"`
	FixedIPs            []FixedIP      `json:"fixed_ips"`
	DeviceID            string         `json:"device_id"`
	DeviceOwner         string         `json:"device_owner"`
	SecurityGroups      []string       `json:"security_groups"`
	AllowedAddressPairs []AddressPair  `json:"allowed_address_pairs"`
	PortSecurityEnabled bool           `json:"port_security_enabled"`
	QoSPolicyID         *string        `json:"qos_policy_id"`
	HostID              string         `json:"binding:host_id"`
	VNICType            string         `json:"binding:vnic_type"`
	Profile             map[string]any `json:"binding:profile"`
	VIFType             string         `json:"binding:vif_type"`
	VIFDetails          map[string]any `json:"binding:vif_details"`
	Tags                []string       `json:"tags"`
	RevisionNumber      int            `json:"revision_number"`
	CreatedAt           string         `json:"created_at"`
	UpdatedAt           string         `json:"updated_at"`
}

// Device owners Neutron (and offlane) give to ports they create.
const (
	OwnerRouterInterface = "network:router_interface"
	OwnerRouterGateway   = "network:router_gateway"
	OwnerFloatingIP      = "network:floatingip"
)

// GatewayInfo is a router's external gateway.
type GatewayInfo struct {
	NetworkID        string    `json:"network_id"`
	EnableSNAT       bool      `json:"enable_snat"`
	ExternalFixedIPs []FixedIP `json:"external_fixed_ips"`
}

// Route is an extra route of a router (extraroute).
type Route struct {
	Destination string `json:"destination"`
	NextHop     string `json:"nexthop"`
}

// Router is a Neutron router.
type Router struct {
	ID                    string       `json:"id"`
	Name                  string       `json:"name"`
	Description           string       `json:"description"`
	ProjectID             string       `json:"project_id"`
	TenantID              string       `json:"tenant_id"`
	AdminStateUp          bool         `json:"admin_state_up"`
	Status                string       `json:"status"`
	ExternalGatewayInfo   *GatewayInfo `json:"external_gateway_info"`
	Routes                []Route      `json:"routes"`
	Distributed           bool         `json:"distributed"`
	HA                    bool         `json:"ha"`
	AvailabilityZoneHints []string     `json:"availability_zone_hints"`
	AvailabilityZones     []string     `json:"availability_zones"`
	Tags                  []string     `json:"tags"`
	RevisionNumber        int          `json:"revision_number"`
	CreatedAt             string       `json:"created_at"`
	UpdatedAt             string       `json:"updated_at"`
	// GatewayPortID is offlane's bookkeeping (the router's port on the external network);
	// not part of Neutron's shape, stripped from API responses.
	GatewayPortID string `json:"gw_port_id,omitempty"`
}

// FloatingIP is a Neutron floating IP. RouterID is derived from the association.
type FloatingIP struct {
	ID                string   `json:"id"`
	Description       string   `json:"description"`
	ProjectID         string   `json:"project_id"`
	TenantID          string   `json:"tenant_id"`
	FloatingNetworkID string   `json:"floating_network_id"`
	FloatingIPAddress string   `json:"floating_ip_address"`
	PortID            *string  `json:"port_id"`
	FixedIPAddress    *string  `json:"fixed_ip_address"`
	RouterID          *string  `json:"router_id"`
	Status            string   `json:"status"`
	Tags              []string `json:"tags"`
	RevisionNumber    int      `json:"revision_number"`
	CreatedAt         string   `json:"created_at"`
	UpdatedAt         string   `json:"updated_at"`
	// FloatingPortID is offlane's bookkeeping (the port holding the address); stripped.
	FloatingPortID string `json:"fip_port_id,omitempty"`
}

// SecurityGroupRule is a Neutron security group rule.
type SecurityGroupRule struct {
	ID              string  `json:"id"`
	Description     string  `json:"description"`
	ProjectID       string  `json:"project_id"`
	TenantID        string  `json:"tenant_id"`
	SecurityGroupID string  `json:"security_group_id"`
	Direction       string  `json:"direction"`
	EtherType       string  `json:"ethertype"`
	Protocol        *string `json:"protocol"`
	PortRangeMin    *int    `json:"port_range_min"`
	PortRangeMax    *int    `json:"port_range_max"`
	RemoteIPPrefix  *string `json:"remote_ip_prefix"`
	RemoteGroupID   *string `json:"remote_group_id"`
	RevisionNumber  int     `json:"revision_number"`
	CreatedAt       string  `json:"created_at"`
	UpdatedAt       string  `json:"updated_at"`
}

// SecurityGroup is a Neutron security group; Rules is kept in step with its rules.
type SecurityGroup struct {
	ID             string              `json:"id"`
	Name           string              `json:"name"`
	Description    string              `json:"description"`
	ProjectID      string              `json:"project_id"`
	TenantID       string              `json:"tenant_id"`
	Stateful       bool                `json:"stateful"`
	Rules          []SecurityGroupRule `json:"security_group_rules"`
	Tags           []string            `json:"tags"`
	RevisionNumber int                 `json:"revision_number"`
	CreatedAt      string              `json:"created_at"`
	UpdatedAt      string              `json:"updated_at"`
}

// QoS rule types.
const (
	QoSBandwidthLimit   = "bandwidth_limit"
	QoSDSCPMarking      = "dscp_marking"
	QoSMinimumBandwidth = "minimum_bandwidth"
)

// QoSRule is one rule of a QoS policy; the attributes present depend on Type.
type QoSRule struct {
	ID           string `json:"id"`
	Type         string `json:"type"`
	QoSPolicyID  string `json:"qos_policy_id"`
	MaxKbps      *int   `json:"max_kbps,omitempty"`
	MaxBurstKbps *int   `json:"max_burst_kbps,omitempty"`
	MinKbps      *int   `json:"min_kbps,omitempty"`
	DSCPMark     *int   `json:"dscp_mark,omitempty"`
	Direction    string `json:"direction,omitempty"`
}

// QoSPolicy is a Neutron QoS policy with its rules.
type QoSPolicy struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	Description    string    `json:"description"`
	ProjectID      string    `json:"project_id"`
	TenantID       string    `json:"tenant_id"`
	Shared         bool      `json:"shared"`
	IsDefault      bool      `json:"is_default"`
	Rules          []QoSRule `json:"rules"`
	Tags           []string  `json:"tags"`
	RevisionNumber int       `json:"revision_number"`
	CreatedAt      string    `json:"created_at"`
	UpdatedAt      string    `json:"updated_at"`
}
