package controlplane_test

import (
	"slices"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/qos/policies"
	qosrules "github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/qos/rules"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/rules"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	"github.com/offlane/offlane/controlplane"
)

func ruleShape(r rules.SecGroupRule) string {
	remote := r.RemoteIPPrefix
	if r.RemoteGroupID != "" {
		remote = "group:" + r.RemoteGroupID
	}
	return r.Direction + "/" + r.EtherType + "/" + r.Protocol + "/" + remote
}

func TestSecurityGroups(t *testing.T) {
	e := newEnv(t, controlplane.AuthToken)
	a := e.client("tok-a")
	ctx := t.Context()

	// The default group appears on first use, with Neutron's four rules.
	pages, err := groups.List(a, groups.ListOpts{}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gs, _ := groups.ExtractGroups(pages)
	if len(gs) != 1 || gs[0].Name != "default" || gs[0].ProjectID != "proj-a" {
		t.Fatalf("default group: %+v", gs)
	}
	def := gs[0]
	var shapes []string
	for _, r := range def.Rules {
		shapes = append(shapes, ruleShape(r))
	}
	slices.Sort(shapes)
	want := []string{"egress/IPv4//", "egress/IPv6//", "ingress/IPv4//group:" + def.ID, "ingress/IPv6//group:" + def.ID}
	if !slices.Equal(shapes, want) {
		t.Fatalf("default rules %v, want %v", shapes, want)
	}
	// Listing again does not make another.
	pages, _ = groups.List(a, groups.ListOpts{}).AllPages(ctx)
	if gs, _ := groups.ExtractGroups(pages); len(gs) != 1 {
		t.Fatalf("groups after second list: %d", len(gs))
	}
	// A new group gets the two egress rules.
	web, err := groups.Create(ctx, a, groups.CreateOpts{Name: "web", Description: "http"}).Extract()
	if err != nil || len(web.Rules) != 2 || web.Rules[0].Direction != "egress" {
		t.Fatalf("new group: %v %+v", err, web)
	}
	_, err = groups.Create(ctx, a, groups.CreateOpts{Name: "default"}).Extract()
	wantErr(t, err, 409, "SecurityGroupDefaultAlreadyExists")

	ssh, err := rules.Create(ctx, a, rules.CreateOpts{SecGroupID: web.ID, Direction: rules.DirIngress, EtherType: rules.EtherType4,
		Protocol: rules.ProtocolTCP, PortRangeMin: 22, PortRangeMax: 22, RemoteIPPrefix: "192.0.2.7/24"}).Extract()
	if err != nil || ssh.PortRangeMin != 22 || ssh.RemoteIPPrefix != "192.0.2.0/24" || ssh.Protocol != "tcp" {
		t.Fatalf("tcp rule (prefix normalized): %v %+v", err, ssh)
	}
	icmp, err := rules.Create(ctx, a, rules.CreateOpts{SecGroupID: web.ID, Direction: rules.DirIngress, EtherType: rules.EtherType6,
		Protocol: rules.ProtocolIPv6ICMP, RemoteGroupID: def.ID}).Extract()
	if err != nil || icmp.RemoteGroupID != def.ID {
		t.Fatalf("icmpv6 rule: %v %+v", err, icmp)
	}
	g, _ := groups.Get(ctx, a, web.ID).Extract()
	if len(g.Rules) != 4 {
		t.Fatalf("group rules after adds: %d", len(g.Rules))
	}
	errCases := []struct {
		name   string
		opts   rules.CreateOpts
		status int
		typ    string
	}{
		{"duplicate", rules.CreateOpts{SecGroupID: web.ID, Direction: "ingress", EtherType: "IPv4", Protocol: "tcp", PortRangeMin: 22, PortRangeMax: 22, RemoteIPPrefix: "192.0.2.0/24"}, 409, "SecurityGroupRuleExists"},
		{"direction", rules.CreateOpts{SecGroupID: web.ID, Direction: "sideways", EtherType: "IPv4"}, 400, "HTTPBadRequest"},
		{"ethertype", rules.CreateOpts{SecGroupID: web.ID, Direction: "ingress", EtherType: "IPv5"}, 400, "SecurityGroupRuleInvalidEtherType"},
		{"protocol", rules.CreateOpts{SecGroupID: web.ID, Direction: "ingress", EtherType: "IPv4", Protocol: "bogus"}, 400, "SecurityGroupRuleInvalidProtocol"},
		{"port range", rules.CreateOpts{SecGroupID: web.ID, Direction: "ingress", EtherType: "IPv4", Protocol: "tcp", PortRangeMin: 90, PortRangeMax: 80}, 400, "SecurityGroupInvalidPortRange"},
		{"port value", rules.CreateOpts{SecGroupID: web.ID, Direction: "ingress", EtherType: "IPv4", Protocol: "udp", PortRangeMin: 1, PortRangeMax: 70000}, 400, "SecurityGroupInvalidPortValue"},
		{"ports without protocol", rules.CreateOpts{SecGroupID: web.ID, Direction: "ingress", EtherType: "IPv4", PortRangeMin: 1, PortRangeMax: 2}, 400, "SecurityGroupProtocolRequiredWithPorts"},
		{"ports on gre", rules.CreateOpts{SecGroupID: web.ID, Direction: "ingress", EtherType: "IPv4", Protocol: "gre", PortRangeMin: 1, PortRangeMax: 2}, 400, "SecurityGroupInvalidProtocolForPort"},
		{"cidr vs ethertype", rules.CreateOpts{SecGroupID: web.ID, Direction: "ingress", EtherType: "IPv6", RemoteIPPrefix: "10.0.0.0/8"}, 400, "SecurityGroupRuleParameterConflict"},
		{"prefix and group", rules.CreateOpts{SecGroupID: web.ID, Direction: "ingress", EtherType: "IPv4", RemoteIPPrefix: "10.0.0.0/8", RemoteGroupID: def.ID}, 400, "SecurityGroupRemoteGroupAndRemoteIpPrefix"},
		{"icmpv6 on IPv4", rules.CreateOpts{SecGroupID: web.ID, Direction: "ingress", EtherType: "IPv4", Protocol: "icmpv6"}, 400, "SecurityGroupEthertypeConflictWithProtocol"},
		{"unknown group", rules.CreateOpts{SecGroupID: "nope", Direction: "ingress", EtherType: "IPv4"}, 404, "SecurityGroupNotFound"},
		{"unknown remote group", rules.CreateOpts{SecGroupID: web.ID, Direction: "ingress", EtherType: "IPv4", RemoteGroupID: "nope"}, 404, "SecurityGroupNotFound"},
	}
	for _, c := range errCases {
		t.Run(c.name, func(t *testing.T) {
			_, err := rules.Create(ctx, a, c.opts).Extract()
			wantErr(t, err, c.status, c.typ)
		})
	}
	// Rule list filter, delete.
	rp, err := rules.List(a, rules.ListOpts{SecGroupID: web.ID, Protocol: "tcp"}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := rules.ExtractRules(rp); len(l) != 1 || l[0].ID != ssh.ID {
		t.Fatalf("rule filter: %+v", l)
	}
	if err := rules.Delete(ctx, a, ssh.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if g, _ := groups.Get(ctx, a, web.ID).Extract(); len(g.Rules) != 3 {
		t.Fatalf("group rules after delete: %d", len(g.Rules))
	}
	// Update; the default group cannot be renamed or deleted by a member.
	if u, err := groups.Update(ctx, a, web.ID, groups.UpdateOpts{Name: "www"}).Extract(); err != nil || u.Name != "www" {
		t.Fatalf("rename: %v %+v", err, u)
	}
	_, err = groups.Update(ctx, a, def.ID, groups.UpdateOpts{Name: "other"}).Extract()
	wantErr(t, err, 409, "SecurityGroupCannotUpdateDefault")
	wantErr(t, groups.Delete(ctx, a, def.ID).ExtractErr(), 409, "SecurityGroupCannotRemoveDefault")
	// In use by a port.
	n := createNet(t, a, networks.CreateOpts{Name: "n"})
	createSubnet(t, a, n.ID, "10.0.0.0/24")
	p := createPort(t, a, ports.CreateOpts{NetworkID: n.ID, SecurityGroups: &[]string{web.ID}})
	if !slices.Equal(p.SecurityGroups, []string{web.ID}) {
		t.Fatalf("port groups: %v", p.SecurityGroups)
	}
	wantErr(t, groups.Delete(ctx, a, web.ID).ExtractErr(), 409, "SecurityGroupInUse")
	if _, err := ports.Update(ctx, a, p.ID, ports.UpdateOpts{SecurityGroups: &[]string{def.ID}}).Extract(); err != nil {
		t.Fatal(err)
	}
	// Deleting a group also deletes rules elsewhere that name it as remote group.
	other, _ := groups.Create(ctx, a, groups.CreateOpts{Name: "other"}).Extract()
	ref, err := rules.Create(ctx, a, rules.CreateOpts{SecGroupID: other.ID, Direction: "ingress", EtherType: "IPv4", RemoteGroupID: web.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if err := groups.Delete(ctx, a, web.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, rules.Get(ctx, a, ref.ID).Err, 404, "SecurityGroupRuleNotFound")
	wantErr(t, rules.Get(ctx, a, icmp.ID).Err, 404, "SecurityGroupRuleNotFound")
	if g, _ := groups.Get(ctx, a, other.ID).Extract(); len(g.Rules) != 2 {
		t.Fatalf("remote rule not removed from its group: %+v", g.Rules)
	}
	wantErr(t, groups.Get(ctx, a, web.ID).Err, 404, "SecurityGroupNotFound")
	// Another project cannot see or use these groups; it gets its own default.
	b := e.client("tok-b")
	wantErr(t, groups.Get(ctx, b, def.ID).Err, 404, "SecurityGroupNotFound")
	pb, _ := groups.List(b, groups.ListOpts{}).AllPages(ctx)
	if gs, _ := groups.ExtractGroups(pb); len(gs) != 1 || gs[0].ID == def.ID || gs[0].ProjectID != "proj-b" {
		t.Fatalf("project b groups: %+v", gs)
	}
}

func TestQoS(t *testing.T) {
	e := newEnv(t, controlplane.AuthToken)
	admin, a, b := e.client("tok-admin"), e.client("tok-a"), e.client("tok-b")
	ctx := t.Context()

	_, err := policies.Create(ctx, a, policies.CreateOpts{Name: "mine"}).Extract()
	wantErr(t, err, 403, "PolicyNotAuthorized")
	gold, err := policies.Create(ctx, admin, policies.CreateOpts{Name: "gold", Shared: true, Description: "10G"}).Extract()
	if err != nil || !gold.Shared || gold.ProjectID != "admin-proj" {
		t.Fatalf("shared policy: %v %+v", err, gold)
	}
	private, err := policies.Create(ctx, admin, policies.CreateOpts{Name: "private", ProjectID: "proj-b"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	bw, err := qosrules.CreateBandwidthLimitRule(ctx, admin, gold.ID, qosrules.CreateBandwidthLimitRuleOpts{MaxKBps: 10000, MaxBurstKBps: 1000}).ExtractBandwidthLimitRule()
	if err != nil || bw.MaxKBps != 10000 || bw.MaxBurstKBps != 1000 || bw.Direction != "egress" {
		t.Fatalf("bandwidth rule: %v %+v", err, bw)
	}
	in, err := qosrules.CreateBandwidthLimitRule(ctx, admin, gold.ID, qosrules.CreateBandwidthLimitRuleOpts{MaxKBps: 5000, Direction: "ingress"}).ExtractBandwidthLimitRule()
	if err != nil || in.Direction != "ingress" {
		t.Fatalf("ingress bandwidth rule: %v %+v", err, in)
	}
	_, err = qosrules.CreateBandwidthLimitRule(ctx, admin, gold.ID, qosrules.CreateBandwidthLimitRuleOpts{MaxKBps: 1}).ExtractBandwidthLimitRule()
	wantErr(t, err, 409, "QoSRulesConflict")
	_, err = qosrules.CreateBandwidthLimitRule(ctx, a, gold.ID, qosrules.CreateBandwidthLimitRuleOpts{MaxKBps: 1, Direction: "ingress"}).ExtractBandwidthLimitRule()
	wantErr(t, err, 403, "PolicyNotAuthorized")
	_, err = qosrules.CreateBandwidthLimitRule(ctx, admin, gold.ID, qosrules.CreateBandwidthLimitRuleOpts{MaxKBps: 1, Direction: "up"}).ExtractBandwidthLimitRule()
	wantErr(t, err, 400, "HTTPBadRequest")
	dscp, err := qosrules.CreateDSCPMarkingRule(ctx, admin, gold.ID, qosrules.CreateDSCPMarkingRuleOpts{DSCPMark: 46}).ExtractDSCPMarkingRule()
	if err != nil || dscp.DSCPMark != 46 {
		t.Fatalf("dscp rule: %v %+v", err, dscp)
	}
	for _, bad := range []int{3, 47, 64, -1} {
		_, err = qosrules.CreateDSCPMarkingRule(ctx, admin, private.ID, qosrules.CreateDSCPMarkingRuleOpts{DSCPMark: bad}).ExtractDSCPMarkingRule()
		wantErr(t, err, 400, "HTTPBadRequest")
	}
	_, err = qosrules.CreateDSCPMarkingRule(ctx, admin, gold.ID, qosrules.CreateDSCPMarkingRuleOpts{DSCPMark: 10}).ExtractDSCPMarkingRule()
	wantErr(t, err, 409, "QoSRulesConflict")
	mn, err := qosrules.CreateMinimumBandwidthRule(ctx, admin, gold.ID, qosrules.CreateMinimumBandwidthRuleOpts{MinKBps: 1000}).ExtractMinimumBandwidthRule()
	if err != nil || mn.MinKBps != 1000 || mn.Direction != "egress" {
		t.Fatalf("minimum bandwidth rule: %v %+v", err, mn)
	}
	// The policy lists its rules; rule endpoints list, show, update, delete.
	g, err := policies.Get(ctx, a, gold.ID).Extract()
	if err != nil || len(g.Rules) != 4 {
		t.Fatalf("policy rules: %v %+v", err, g)
	}
	up, err := qosrules.UpdateBandwidthLimitRule(ctx, admin, gold.ID, bw.ID, qosrules.UpdateBandwidthLimitRuleOpts{MaxKBps: ptr(20000)}).ExtractBandwidthLimitRule()
	if err != nil || up.MaxKBps != 20000 || up.MaxBurstKBps != 1000 {
		t.Fatalf("update bandwidth rule: %v %+v", err, up)
	}
	rp, err := qosrules.ListBandwidthLimitRules(a, gold.ID, qosrules.BandwidthLimitRulesListOpts{}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := qosrules.ExtractBandwidthLimitRules(rp); len(l) != 2 {
		t.Fatalf("bandwidth rules: %+v", l)
	}
	if err := qosrules.DeleteMinimumBandwidthRule(ctx, admin, gold.ID, mn.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, qosrules.GetMinimumBandwidthRule(ctx, a, gold.ID, mn.ID).Err, 404, "QoSRuleNotFound")

	// Attach: a member may use the shared policy on its port and network, not b's.
	n := createNet(t, a, policies.NetworkCreateOptsExt{CreateOptsBuilder: networks.CreateOpts{Name: "n"}, QoSPolicyID: gold.ID})
	if n.QoSPolicyID != gold.ID {
		t.Fatalf("network qos: %+v", n)
	}
	p := createPort(t, a, policies.PortCreateOptsExt{CreateOptsBuilder: ports.CreateOpts{NetworkID: n.ID}, QoSPolicyID: gold.ID})
	if p.QoSPolicyID != gold.ID {
		t.Fatalf("port qos: %+v", p)
	}
	_, err = ports.Create(ctx, a, policies.PortCreateOptsExt{CreateOptsBuilder: ports.CreateOpts{NetworkID: n.ID}, QoSPolicyID: private.ID}).Extract()
	wantErr(t, err, 404, "QosPolicyNotFound")
	wantErr(t, policies.Get(ctx, a, private.ID).Err, 404, "QosPolicyNotFound")
	if _, err := policies.Get(ctx, b, private.ID).Extract(); err != nil {
		t.Fatalf("owner reads its policy: %v", err)
	}
	wantErr(t, policies.Delete(ctx, admin, gold.ID).ExtractErr(), 409, "QosPolicyInUse")
	if _, err := ports.Update(ctx, a, p.ID, policies.PortUpdateOptsExt{UpdateOptsBuilder: ports.UpdateOpts{}, QoSPolicyID: new(string)}).Extract(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, policies.Delete(ctx, admin, gold.ID).ExtractErr(), 409, "QosPolicyInUse")
	if _, err := networks.Update(ctx, a, n.ID, policies.NetworkUpdateOptsExt{UpdateOptsBuilder: networks.UpdateOpts{}, QoSPolicyID: new(string)}).Extract(); err != nil {
		t.Fatal(err)
	}
	if err := policies.Delete(ctx, admin, gold.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	st, body := e.raw("GET", "/v2.0/qos/rule-types", "tok-a", "")
	if st != 200 || len(body["rule_types"].([]any)) != 3 {
		t.Fatalf("rule types: %d %v", st, body)
	}
}
