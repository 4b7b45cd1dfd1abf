package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

func (s *Server) secGroupCollection() *collection {
	return &collection{
		name: "security-groups", member: "security_group", plural: "security_groups", kind: KindSecGroup,
		notFound: "SecurityGroupNotFound", label: "Security group", attrs: attrNames(SecurityGroup{}),
		indexes: []string{"project_id"},
		newObj:  func() storable { return &SecurityGroup{} },
		visible: func(rq *request, _ *lookup, m rawObj) bool { return rq.c.owns(str(m, "project_id")) },
		create:  s.createSecGroup,
		update:  s.updateSecGroup,
		del:     s.deleteSecGroup,
	}
}

func (s *Server) secGroupRuleCollection() *collection {
	return &collection{
		name: "security-group-rules", member: "security_group_rule", plural: "security_group_rules", kind: KindSecGroupRule,
		notFound: "SecurityGroupRuleNotFound", label: "Security group rule", attrs: attrNames(SecurityGroupRule{}),
		indexes: []string{"security_group_id", "remote_group_id", "project_id"},
		newObj:  func() storable { return &SecurityGroupRule{} },
		visible: func(rq *request, _ *lookup, m rawObj) bool { return rq.c.owns(str(m, "project_id")) },
		create:  s.createSecGroupRule,
		del:     s.deleteSecGroupRule,
	}
}

func (rq *request) loadSecGroup(tx ReadTx, id string) (*SecurityGroup, error) {
	var g SecurityGroup
	nf := notFound("SecurityGroupNotFound", "Security group %s does not exist", id)
	if err := getObj(tx, KindSecGroup, id, &g, nf); err != nil {
		return nil, err
	}
	if !rq.c.owns(g.ProjectID) {
		return nil, nf
	}
	return &g, nil
}

// checkSecurityGroups resolves a port's groups: each must exist and belong to the port's
// project (an admin may use any).
func (rq *request) checkSecurityGroups(tx ReadTx, project string, ids []string) ([]string, error) {
	out := []string{}
	for _, id := range ids {
		var g SecurityGroup
		nf := notFound("SecurityGroupNotFound", "Security group %s does not exist", id)
		if err := getObj(tx, KindSecGroup, id, &g, nf); err != nil {
			return nil, err
		}
		if g.ProjectID != project && !rq.c.admin {
			return nil, nf
		}
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out, nil
}

// defaultSGExists reports whether the project's default group was created already.
func defaultSGExists(tx ReadTx, project string) bool {
	_, err := tx.ClaimOwner(claimDefaultSG, project)
	return err == nil
}

// ensureDefaultSG returns the project's default security group, creating it on first
// use as Neutron does: ingress from members of the same group and all egress, for IPv4
// and IPv6.
func (s *Server) ensureDefaultSG(rq *request, tx Tx, project string) (string, error) {
	if id, err := tx.ClaimOwner(claimDefaultSG, project); err == nil {
		return id, nil
	} else if !errors.Is(err, ErrNotFound) {
		return "", err
	}
	g := &SecurityGroup{
		ID: newID(), Name: "default", Description: "Default security group", ProjectID: project, TenantID: project,
		Stateful: true, Rules: []SecurityGroupRule{}, Tags: []string{}, CreatedAt: rq.now, UpdatedAt: rq.now, RevisionNumber: 1,
	}
	if err := tx.Claim(claimDefaultSG, project, g.ID); err != nil {
		return "", err
	}
	for _, et := range []string{"IPv4", "IPv6"} {
		r := newRule(rq, g, "ingress", et)
		r.RemoteGroupID = &g.ID
		g.Rules = append(g.Rules, *r)
	}
	g.Rules = append(g.Rules, *newRule(rq, g, "egress", "IPv4"), *newRule(rq, g, "egress", "IPv6"))
	return g.ID, saveGroupWithRules(tx, g)
}

func newRule(rq *request, g *SecurityGroup, dir, ethertype string) *SecurityGroupRule {
	return &SecurityGroupRule{
		ID: newID(), ProjectID: g.ProjectID, TenantID: g.ProjectID, SecurityGroupID: g.ID, Direction: dir,
		EtherType: ethertype, CreatedAt: rq.now, UpdatedAt: rq.now, RevisionNumber: 1,
	}
}

func saveGroupWithRules(tx Tx, g *SecurityGroup) error {
	for i := range g.Rules {
		if err := save(tx, KindSecGroupRule, g.Rules[i].ID, &g.Rules[i]); err != nil {
			return err
		}
	}
	return save(tx, KindSecGroup, g.ID, g)
}

// beforeRead creates the caller's default security group on first use (listing or
// showing groups), as Neutron does.
func (s *Server) beforeList(rq *request, col *collection) error {
	if col.kind != KindSecGroup && col.kind != KindSecGroupRule {
		return nil
	}
	project := rq.c.projectID
	if project == "" {
		return nil
	}
	exists := false
	if err := rq.view(func(tx ReadTx) error { exists = defaultSGExists(tx, project); return nil }); err != nil || exists {
		return err
	}
	return rq.update(func(tx Tx) error {
		_, err := s.ensureDefaultSG(rq, tx, project)
		return err
	})
}

func (s *Server) createSecGroup(rq *request, tx Tx, a *attrs) (any, error) {
	g := &SecurityGroup{ID: newID(), Stateful: true, Rules: []SecurityGroupRule{}, Tags: []string{}, CreatedAt: rq.now, UpdatedAt: rq.now, RevisionNumber: 1}
	if err := a.forbid("id", "security_group_rules", "revision_number", "created_at", "updated_at"); err != nil {
		return nil, err
	}
	project, err := rq.project(a)
	if err != nil {
		return nil, err
	}
	g.ProjectID, g.TenantID = project, project
	if _, err := a.str("name", &g.Name, maxNameLen); err != nil {
		return nil, err
	}
	if _, err := a.str("description", &g.Description, maxNameLen); err != nil {
		return nil, err
	}
	if _, err := a.boolean("stateful", &g.Stateful); err != nil {
		return nil, err
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	if _, err := s.ensureDefaultSG(rq, tx, project); err != nil {
		return nil, err
	}
	if g.Name == "default" {
		return nil, conflict("SecurityGroupDefaultAlreadyExists", "Default security group already exists.")
	}
	g.Rules = append(g.Rules, *newRule(rq, g, "egress", "IPv4"), *newRule(rq, g, "egress", "IPv6"))
	return g, saveGroupWithRules(tx, g)
}

func (s *Server) updateSecGroup(rq *request, tx Tx, id string, a *attrs) (any, error) {
	g, err := rq.loadSecGroup(tx, id)
	if err != nil {
		return nil, err
	}
	if err := rq.mustOwn(g.ProjectID, "update_security_group"); err != nil {
		return nil, err
	}
	if err := a.forbid("id", "project_id", "tenant_id", "security_group_rules", "revision_number", "created_at", "updated_at"); err != nil {
		return nil, err
	}
	name := g.Name
	if _, err := a.str("name", &g.Name, maxNameLen); err != nil {
		return nil, err
	}
	if _, err := a.str("description", &g.Description, maxNameLen); err != nil {
		return nil, err
	}
	if _, err := a.boolean("stateful", &g.Stateful); err != nil {
		return nil, err
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	if name == "default" && g.Name != "default" {
		return nil, conflict("SecurityGroupCannotUpdateDefault", "Updating default security group not allowed.")
	}
	if name != "default" && g.Name == "default" {
		return nil, conflict("SecurityGroupDefaultAlreadyExists", "Default security group already exists.")
	}
	g.touch(rq.now)
	return g, save(tx, KindSecGroup, g.ID, g)
}

func (s *Server) deleteSecGroup(rq *request, tx Tx, id string) error {
	g, err := rq.loadSecGroup(tx, id)
	if err != nil {
		return err
	}
	if err := rq.mustOwn(g.ProjectID, "delete_security_group"); err != nil {
		return err
	}
	if owner, err := tx.ClaimOwner(claimDefaultSG, g.ProjectID); err == nil && owner == id {
		if !rq.c.admin {
			return conflict("SecurityGroupCannotRemoveDefault", "Insufficient rights for removing default security group.")
		}
		if err := tx.Release(claimDefaultSG, g.ProjectID); err != nil {
			return err
		}
	}
	if c, err := tx.Count(KindPort, "security_group", id); err != nil {
		return err
	} else if c > 0 {
		return conflict("SecurityGroupInUse", "Security Group %s in use.", id)
	}
	// Rules of this group go with it; rules of other groups that name it as their
	// remote group are deleted too (Neutron's foreign-key cascade).
	for _, r := range g.Rules {
		if err := tx.Delete(KindSecGroupRule, r.ID); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	var remote []SecurityGroupRule
	err = tx.ListBy(KindSecGroupRule, "remote_group_id", id, func(_ string, v []byte) error {
		var r SecurityGroupRule
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		if r.SecurityGroupID != id {
			remote = append(remote, r)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, r := range remote {
		if err := dropRule(rq, tx, &r); err != nil {
			return err
		}
	}
	return tx.Delete(KindSecGroup, id)
}

// dropRule deletes a rule and removes it from its group's rule list.
func dropRule(rq *request, tx Tx, r *SecurityGroupRule) error {
	var g SecurityGroup
	if err := getObj(tx, KindSecGroup, r.SecurityGroupID, &g, nil); err != nil {
		return fmt.Errorf("rule %s: group %s: %w", r.ID, r.SecurityGroupID, err)
	}
	g.Rules = slices.DeleteFunc(g.Rules, func(x SecurityGroupRule) bool { return x.ID == r.ID })
	g.touch(rq.now)
	if err := save(tx, KindSecGroup, g.ID, &g); err != nil {
		return err
	}
	return tx.Delete(KindSecGroupRule, r.ID)
}

// protocolNumbers are the names Neutron accepts for protocol.
var protocolNumbers = map[string]int{
	"ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1, "icmpv6": 58, "igmp": 2,
	"ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "ipv6-nonxt": 59, "ipv6-opts": 60,
	"ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136,
	"vrrp": 112, "any": -1,
}

func (s *Server) createSecGroupRule(rq *request, tx Tx, a *attrs) (any, error) {
	if err := a.forbid("id", "revision_number", "created_at", "updated_at"); err != nil {
		return nil, err
	}
	var gid string
	if _, err := a.str("security_group_id", &gid, 64); err != nil {
		return nil, err
	}
	if gid == "" {
		return nil, badRequest("Failed to parse request. Required attribute 'security_group_id' not specified")
	}
	g, err := rq.loadSecGroup(tx, gid)
	if err != nil {
		return nil, err
	}
	if err := rq.mustOwn(g.ProjectID, "create_security_group_rule"); err != nil {
		return nil, err
	}
	r := newRule(rq, g, "", "IPv4")
	if a.has("project_id") || a.has("tenant_id") {
		p, err := rq.project(a)
		if err != nil {
			return nil, err
		}
		if p != g.ProjectID {
			return nil, badRequest("Security group rule project %s must be the project of security group %s (%s)", p, g.ID, g.ProjectID)
		}
	}
	if _, err := a.str("description", &r.Description, maxNameLen); err != nil {
		return nil, err
	}
	if _, err := a.str("direction", &r.Direction, 16); err != nil {
		return nil, err
	}
	if r.Direction != "ingress" && r.Direction != "egress" {
		if r.Direction == "" {
			return nil, badRequest("Failed to parse request. Required attribute 'direction' not specified")
		}
		return nil, invalidAttr("direction", "'%s' is not in ['ingress', 'egress']", shortStr(r.Direction))
	}
	if _, err := a.str("ethertype", &r.EtherType, 16); err != nil {
		return nil, err
	}
	switch strings.ToLower(r.EtherType) {
	case "ipv4":
		r.EtherType = "IPv4"
	case "ipv6":
		r.EtherType = "IPv6"
	default:
		return nil, newErr(http.StatusBadRequest, "SecurityGroupRuleInvalidEtherType", "Security group rule for ethertype '%s' not supported. Allowed values are ['IPv4', 'IPv6'].", shortStr(r.EtherType))
	}
	if err := parseProtocol(a, r); err != nil {
		return nil, err
	}
	if _, err := a.optInt("port_range_min", &r.PortRangeMin, -1<<31, 1<<31); err != nil {
		return nil, err
	}
	if _, err := a.optInt("port_range_max", &r.PortRangeMax, -1<<31, 1<<31); err != nil {
		return nil, err
	}
	if _, err := a.optStr("remote_ip_prefix", &r.RemoteIPPrefix, 64, true); err != nil {
		return nil, err
	}
	if _, err := a.optStr("remote_group_id", &r.RemoteGroupID, 64, true); err != nil {
		return nil, err
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	if err := checkPorts(r); err != nil {
		return nil, err
	}
	if r.RemoteIPPrefix != nil && r.RemoteGroupID != nil {
		return nil, newErr(http.StatusBadRequest, "SecurityGroupRemoteGroupAndRemoteIpPrefix", "Only remote_ip_prefix or remote_group_id may be provided.")
	}
	if r.RemoteIPPrefix != nil {
		p, err := netip.ParsePrefix(*r.RemoteIPPrefix)
		if err != nil {
			a, aerr := netip.ParseAddr(*r.RemoteIPPrefix)
			if aerr != nil || a.Zone() != "" {
				return nil, invalidAttr("remote_ip_prefix", "'%s' is not a valid IP prefix", shortStr(*r.RemoteIPPrefix))
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4() != (r.EtherType == "IPv4") {
			return nil, newErr(http.StatusBadRequest, "SecurityGroupRuleParameterConflict", "Conflicting value ethertype %s for CIDR %s", r.EtherType, *r.RemoteIPPrefix)
		}
		ps := p.Masked().String()
		r.RemoteIPPrefix = &ps
	}
	if r.RemoteGroupID != nil {
		if _, err := rq.loadSecGroup(tx, *r.RemoteGroupID); err != nil {
			return nil, err
		}
	}
	for _, o := range g.Rules {
		if sameRule(&o, r) {
			return nil, conflict("SecurityGroupRuleExists", "Security group rule already exists. Rule id is %s.", o.ID)
		}
	}
	g.Rules = append(g.Rules, *r)
	g.touch(rq.now)
	if err := save(tx, KindSecGroup, g.ID, g); err != nil {
		return nil, err
	}
	return r, save(tx, KindSecGroupRule, r.ID, r)
}

func parseProtocol(a *attrs, r *SecurityGroupRule) error {
	if _, err := a.optStr("protocol", &r.Protocol, 32, true); err != nil {
		return err
	}
	if r.Protocol == nil {
		return nil
	}
	p := strings.ToLower(*r.Protocol)
	if _, ok := protocolNumbers[p]; !ok {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 255 {
			return newErr(http.StatusBadRequest, "SecurityGroupRuleInvalidProtocol", "Security group rule protocol %s not supported. Only protocol values [%s] and integer representations [0 to 255] are supported.", shortStr(*r.Protocol), protocolList())
		}
	}
	if p == "any" {
		r.Protocol = nil
		return nil
	}
	if (p == "icmpv6" || p == "ipv6-icmp" || p == "58") && r.EtherType == "IPv4" {
		return newErr(http.StatusBadRequest, "SecurityGroupEthertypeConflictWithProtocol", "Invalid ethertype IPv4 for protocol %s.", p)
	}
	r.Protocol = &p
	return nil
}

func protocolList() string {
	names := make([]string, 0, len(protocolNumbers))
	for n := range protocolNumbers {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// checkPorts applies Neutron's port range rules per protocol.
func checkPorts(r *SecurityGroupRule) error {
	if r.PortRangeMin == nil && r.PortRangeMax == nil {
		return nil
	}
	if r.Protocol == nil {
		return newErr(http.StatusBadRequest, "SecurityGroupProtocolRequiredWithPorts", "Must also specify protocol if port range is given.")
	}
	switch p := *r.Protocol; p {
	case "tcp", "udp", "sctp", "udplite", "dccp", "6", "17", "132", "136", "33":
		if r.PortRangeMin == nil || r.PortRangeMax == nil {
			return newErr(http.StatusBadRequest, "SecurityGroupInvalidPortRange", "For TCP/UDP protocols, port_range_min and port_range_max must both be given.")
		}
		for _, v := range []int{*r.PortRangeMin, *r.PortRangeMax} {
			if v < 1 || v > 65535 {
				return newErr(http.StatusBadRequest, "SecurityGroupInvalidPortValue", "Invalid value for port %d.", v)
			}
		}
		if *r.PortRangeMin > *r.PortRangeMax {
			return newErr(http.StatusBadRequest, "SecurityGroupInvalidPortRange", "For TCP/UDP protocols, port_range_min must be <= port_range_max")
		}
	case "icmp", "icmpv6", "ipv6-icmp", "1", "58":
		if r.PortRangeMin == nil {
			return newErr(http.StatusBadRequest, "SecurityGroupMissingIcmpType", "ICMP code (port-range-max) %d is provided but ICMP type (port-range-min) is missing.", *r.PortRangeMax)
		}
		if *r.PortRangeMin < 0 || *r.PortRangeMin > 255 {
			return newErr(http.StatusBadRequest, "SecurityGroupInvalidIcmpValue", "Invalid value for ICMP port_range_min(type): %d. It must be 0 to 255.", *r.PortRangeMin)
		}
		if r.PortRangeMax != nil && (*r.PortRangeMax < 0 || *r.PortRangeMax > 255) {
			return newErr(http.StatusBadRequest, "SecurityGroupInvalidIcmpValue", "Invalid value for ICMP port_range_max(code): %d. It must be 0 to 255.", *r.PortRangeMax)
		}
	default:
		return newErr(http.StatusBadRequest, "SecurityGroupInvalidProtocolForPort", "Invalid protocol %s for port range, only supported for TCP, UDP, UDPLITE, SCTP, DCCP and ICMP.", p)
	}
	return nil
}

func eqPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func sameRule(a, b *SecurityGroupRule) bool {
	return a.Direction == b.Direction && a.EtherType == b.EtherType && eqPtr(a.Protocol, b.Protocol) &&
		eqPtr(a.PortRangeMin, b.PortRangeMin) && eqPtr(a.PortRangeMax, b.PortRangeMax) &&
		eqPtr(a.RemoteIPPrefix, b.RemoteIPPrefix) && eqPtr(a.RemoteGroupID, b.RemoteGroupID)
}

func (s *Server) deleteSecGroupRule(rq *request, tx Tx, id string) error {
	var r SecurityGroupRule
	nf := notFound("SecurityGroupRuleNotFound", "Security group rule %s does not exist", id)
	if err := getObj(tx, KindSecGroupRule, id, &r, nf); err != nil {
		return err
	}
	if !rq.c.owns(r.ProjectID) {
		return nf
	}
	if err := rq.mustOwn(r.ProjectID, "delete_security_group_rule"); err != nil {
		return err
	}
	return dropRule(rq, tx, &r)
}
