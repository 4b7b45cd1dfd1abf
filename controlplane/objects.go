package controlplane

// storable is implemented by every model type: its store index entries and the
// standard attributes generic code (tags, revisions) touches.
type storable interface {
	storeIndex() []IndexEntry
	tagList() *[]string
	touch(now string)
}

func projectIndex(p string) IndexEntry { return IndexEntry{Name: "project_id", Value: p} }

func optIndex(name string, v *string) []IndexEntry {
	if v == nil || *v == "" {
		return nil
	}
	return []IndexEntry{{Name: name, Value: *v}}
}

func (n *Network) storeIndex() []IndexEntry {
	return append([]IndexEntry{projectIndex(n.ProjectID)}, optIndex("qos_policy_id", n.QoSPolicyID)...)
}
func (n *Network) tagList() *[]string { return &n.Tags }
func (n *Network) touch(now string)   { n.RevisionNumber++; n.UpdatedAt = now }

func (s *Subnet) storeIndex() []IndexEntry {
	return []IndexEntry{projectIndex(s.ProjectID), {Name: "network_id", Value: s.NetworkID}}
}
func (s *Subnet) tagList() *[]string { return &s.Tags }
func (s *Subnet) touch(now string)   { s.RevisionNumber++; s.UpdatedAt = now }

// Port indexes: "security_group" per group is multi-valued; "router_subnet" (per subnet
// of a router interface port) finds the router of a subnet; "binding:host_id" lets an
// agent list its node's ports. Which subnets hold addresses is answered by the IP claims,
// not an index: every index entry is one more B+tree page written per port.
func (p *Port) storeIndex() []IndexEntry {
	ix := []IndexEntry{projectIndex(p.ProjectID), {Name: "network_id", Value: p.NetworkID}}
	if p.DeviceID != "" {
		ix = append(ix, IndexEntry{Name: "device_id", Value: p.DeviceID})
	}
	if p.HostID != "" {
		ix = append(ix, IndexEntry{Name: "binding:host_id", Value: p.HostID})
	}
	if p.DeviceOwner == OwnerRouterInterface {
		seen := map[string]bool{}
		for _, ip := range p.FixedIPs {
			if !seen[ip.SubnetID] {
				seen[ip.SubnetID] = true
				ix = append(ix, IndexEntry{Name: "router_subnet", Value: ip.SubnetID})
			}
		}
	}
	for _, sg := range p.SecurityGroups {
		ix = append(ix, IndexEntry{Name: "security_group", Value: sg})
	}
	return append(ix, optIndex("qos_policy_id", p.QoSPolicyID)...)
}
func (p *Port) tagList() *[]string { return &p.Tags }
func (p *Port) touch(now string)   { p.RevisionNumber++; p.UpdatedAt = now }

func (r *Router) storeIndex() []IndexEntry {
	ix := []IndexEntry{projectIndex(r.ProjectID)}
	if r.ExternalGatewayInfo != nil {
		ix = append(ix, IndexEntry{Name: "gateway_network_id", Value: r.ExternalGatewayInfo.NetworkID})
	}
	return ix
}
func (r *Router) tagList() *[]string { return &r.Tags }
func (r *Router) touch(now string)   { r.RevisionNumber++; r.UpdatedAt = now }

func (f *FloatingIP) storeIndex() []IndexEntry {
	ix := []IndexEntry{projectIndex(f.ProjectID), {Name: "floating_network_id", Value: f.FloatingNetworkID}}
	ix = append(ix, optIndex("port_id", f.PortID)...)
	return append(ix, optIndex("router_id", f.RouterID)...)
}
func (f *FloatingIP) tagList() *[]string { return &f.Tags }
func (f *FloatingIP) touch(now string)   { f.RevisionNumber++; f.UpdatedAt = now }

func (g *SecurityGroup) storeIndex() []IndexEntry { return []IndexEntry{projectIndex(g.ProjectID)} }
func (g *SecurityGroup) tagList() *[]string       { return &g.Tags }
func (g *SecurityGroup) touch(now string)         { g.RevisionNumber++; g.UpdatedAt = now }

func (r *SecurityGroupRule) storeIndex() []IndexEntry {
	ix := []IndexEntry{projectIndex(r.ProjectID), {Name: "security_group_id", Value: r.SecurityGroupID}}
	return append(ix, optIndex("remote_group_id", r.RemoteGroupID)...)
}
func (r *SecurityGroupRule) tagList() *[]string { return nil }
func (r *SecurityGroupRule) touch(now string)   { r.RevisionNumber++; r.UpdatedAt = now }

func (q *QoSPolicy) storeIndex() []IndexEntry { return []IndexEntry{projectIndex(q.ProjectID)} }
func (q *QoSPolicy) tagList() *[]string       { return &q.Tags }
func (q *QoSPolicy) touch(now string)         { q.RevisionNumber++; q.UpdatedAt = now }

// save stores a model object under its kind with its indexes.
func save(tx Tx, kind, id string, o storable) error {
	return putObj(tx, kind, id, o, o.storeIndex()...)
}
