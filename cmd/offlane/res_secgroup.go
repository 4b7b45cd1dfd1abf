package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/rules"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"github.com/spf13/cobra"
)

var securityGroupKind = &kind{
	noun: "security-group", label: "security group", key: "security_group", listKey: "security_groups", nameAttr: "name",
	get: func(ctx context.Context, c *gophercloud.ServiceClient, id string) gophercloud.Result {
		return groups.Get(ctx, c, id).Result
	},
	byName: func(c *gophercloud.ServiceClient, name string) pagination.Pager {
		return groups.List(c, groups.ListOpts{Name: name})
	},
	delete: func(ctx context.Context, c *gophercloud.ServiceClient, id string) error {
		return groups.Delete(ctx, c, id).ExtractErr()
	},
	typed: func() any { return new(groups.SecGroup) },
	columns: []column{
		{"ID", attr("id")},
		{"NAME", attr("name")},
		{"PROJECT", attr("project_id")},
		{"RULES", func(_ *session, _ context.Context, o map[string]any) string {
			l, _ := o["security_group_rules"].([]any)
			return fmt.Sprint(len(l))
		}},
		{"DESCRIPTION", attr("description")},
	},
	cells: map[string]func(any) string{"security_group_rules": func(v any) string {
		l, _ := v.([]any)
		lines := make([]string, 0, len(l))
		for _, e := range l {
			m, _ := e.(map[string]any)
			lines = append(lines, ruleLine(m))
		}
		return strings.Join(lines, "\n")
	}},
}

// ruleLine is a one-line rule: "ingress IPv4 tcp 22 remote 0.0.0.0/0".
func ruleLine(o map[string]any) string {
	out := []string{str(o["direction"]), str(o["ethertype"]), protoOrAny(str(o["protocol"]))}
	if p := portRangeOf(o); p != "" {
		out = append(out, p)
	}
	switch {
	case str(o["remote_group_id"]) != "":
		out = append(out, "remote group "+str(o["remote_group_id"]))
	case str(o["remote_ip_prefix"]) != "":
		out = append(out, "remote "+str(o["remote_ip_prefix"]))
	}
	return strings.Join(out, " ")
}

// Security group rules have no name and cannot be changed (Neutron has no update for
// them): delete and create instead.
var securityGroupRuleKind = &kind{
	noun: "security-group-rule", label: "security group rule", key: "security_group_rule", listKey: "security_group_rules",
	get: func(ctx context.Context, c *gophercloud.ServiceClient, id string) gophercloud.Result {
		return rules.Get(ctx, c, id).Result
	},
	delete: func(ctx context.Context, c *gophercloud.ServiceClient, id string) error {
		return rules.Delete(ctx, c, id).ExtractErr()
	},
	typed: func() any { return new(rules.SecGroupRule) },
	columns: []column{
		{"ID", attr("id")},
		{"DIRECTION", attr("direction")},
		{"ETHERTYPE", attr("ethertype")},
		{"PROTOCOL", func(_ *session, _ context.Context, o map[string]any) string {
			if p := str(o["protocol"]); p != "" {
				return p
			}
			return "any"
		}},
		{"PORTS", func(_ *session, _ context.Context, o map[string]any) string { return portRangeOf(o) }},
		{"REMOTE", func(s *session, ctx context.Context, o map[string]any) string {
			if g := str(o["remote_group_id"]); g != "" {
				return "group " + s.displayName(ctx, "security-group", g)
			}
			return str(o["remote_ip_prefix"])
		}},
		{"GROUP", func(s *session, ctx context.Context, o map[string]any) string {
			return s.displayName(ctx, "security-group", str(o["security_group_id"]))
		}},
	},
}

// portRangeOf shows a rule's ports ("22", "8000:8080") or ICMP type/code ("type 8 code 0").
func portRangeOf(o map[string]any) string {
	lo, hi := str(o["port_range_min"]), str(o["port_range_max"])
	switch p := str(o["protocol"]); {
	case p == "icmp" || p == "ipv6-icmp" || p == "1" || p == "58":
		out := ""
		if lo != "" {
			out = "type " + lo
		}
		if hi != "" {
			out += " code " + hi
		}
		return strings.TrimSpace(out)
	case lo == "" && hi == "":
		return ""
	case lo == hi:
		return lo
	default:
		return lo + ":" + hi
	}
}

func newSecurityGroupCmd(a *apiOptions) *cobra.Command {
	return nounCmd("security-group", "Create, list, show, update and delete security groups",
		newSecurityGroupCreateCmd(a), newSecurityGroupListCmd(a), newShowCmd(a, securityGroupKind),
		newSecurityGroupUpdateCmd(a), newDeleteCmd(a, securityGroupKind))
}

func newSecurityGroupRuleCmd(a *apiOptions) *cobra.Command {
	return nounCmd("security-group-rule", "Create, list, show and delete security group rules (rules are immutable)",
		newSecurityGroupRuleCreateCmd(a), newSecurityGroupRuleListCmd(a), newShowCmd(a, securityGroupRuleKind),
		newDeleteCmd(a, securityGroupRuleKind))
}

type securityGroupCreateOptions struct {
	api                 *apiOptions
	name, desc, project string
}

func newSecurityGroupCreateCmd(a *apiOptions) *cobra.Command {
	o := &securityGroupCreateOptions{api: a}
	cmd := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create a security group (with the default egress rules)",
		Example: `  offlane security-group create web --description "HTTP servers"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	cmd.Flags().StringVar(&o.desc, "description", "", "description")
	cmd.Flags().StringVar(&o.project, "project", "", "owning project id (admin)")
	return cmd
}

func (o *securityGroupCreateOptions) validate() error {
	if err := checkProject(o.project); err != nil {
		return err
	}
	return o.api.validate()
}

func (o *securityGroupCreateOptions) run(cmd *cobra.Command) error {
	return mutateRun(cmd, o.api, securityGroupKind, func(ctx context.Context, s *session) (gophercloud.Result, error) {
		return groups.Create(ctx, s.client, groups.CreateOpts{Name: o.name, Description: o.desc, ProjectID: o.project}).Result, nil
	})
}

type securityGroupListOptions struct {
	api           *apiOptions
	name, project string
}

func newSecurityGroupListCmd(a *apiOptions) *cobra.Command {
	o := &securityGroupListOptions{api: a}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List security groups",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkProject(o.project); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	cmd.Flags().StringVar(&o.name, "name", "", "only groups with this name")
	cmd.Flags().StringVar(&o.project, "project", "", "only groups of this project id")
	return cmd
}

func (o *securityGroupListOptions) run(cmd *cobra.Command) error {
	return listRun(cmd, o.api, securityGroupKind, func(_ context.Context, s *session) (pagination.Pager, error) {
		return groups.List(s.client, groups.ListOpts{Name: o.name, ProjectID: o.project}), nil
	})
}

type securityGroupUpdateOptions struct {
	api             *apiOptions
	ref, name, desc string
}

func newSecurityGroupUpdateCmd(a *apiOptions) *cobra.Command {
	o := &securityGroupUpdateOptions{api: a}
	cmd := &cobra.Command{
		Use:     "update NAME|ID",
		Short:   "Rename a security group or change its description",
		Example: `  offlane security-group update web --name web-servers`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ref = args[0]
			if err := o.validate(cmd); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	cmd.Flags().StringVar(&o.name, "name", "", "new name")
	cmd.Flags().StringVar(&o.desc, "description", "", "new description")
	return cmd
}

func (o *securityGroupUpdateOptions) validate(cmd *cobra.Command) error {
	if noChange(cmd) {
		return errNothingToUpdate("security-group")
	}
	if cmd.Flags().Changed("name") && o.name == "" {
		return usageErrorf("--name \"\": give the security group a non-empty name")
	}
	return o.api.validate()
}

func (o *securityGroupUpdateOptions) run(cmd *cobra.Command) error {
	return mutateRun(cmd, o.api, securityGroupKind, func(ctx context.Context, s *session) (gophercloud.Result, error) {
		id, err := s.resolve(ctx, securityGroupKind, o.ref, "")
		if err != nil {
			return gophercloud.Result{}, err
		}
		opts := groups.UpdateOpts{Name: o.name, Description: changedString(cmd, "description", o.desc)}
		return groups.Update(ctx, s.client, id, opts).Result, nil
	})
}

// ruleCreateOpts sends port_range_min/max even when 0 (ICMP type 0, echo reply), which
// gophercloud's omitempty would drop.
type ruleCreateOpts struct {
	rules.CreateOpts
	min, max *int
}

func (o ruleCreateOpts) ToSecGroupRuleCreateMap() (map[string]any, error) {
	b, err := o.CreateOpts.ToSecGroupRuleCreateMap()
	if err != nil {
		return nil, err
	}
	r := b["security_group_rule"].(map[string]any)
	if o.min != nil {
		r["port_range_min"] = *o.min
	}
	if o.max != nil {
		r["port_range_max"] = *o.max
	}
	return b, nil
}

type ruleCreateOptions struct {
	api                                  *apiOptions
	group, ethertype, protocol, dstPort  string
	remoteIP, remoteGroup, desc, project string
	icmpType, icmpCode                   int
	// set by validate
	direction string
	min, max  *int
}

func newSecurityGroupRuleCreateCmd(a *apiOptions) *cobra.Command {
	o := &ruleCreateOptions{api: a}
	cmd := &cobra.Command{
		Use:   "create GROUP",
		Short: "Add a rule to a security group",
		Example: `  offlane security-group-rule create web --protocol tcp --dst-port 80 --remote-ip 0.0.0.0/0
  offlane security-group-rule create web --protocol tcp --dst-port 8000:8080 --remote-group web
  offlane security-group-rule create web --protocol icmp --icmp-type 8 --icmp-code 0
  offlane security-group-rule create web --egress --ethertype IPv6 --protocol udp --dst-port 53`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.group = args[0]
			if err := o.validate(cmd); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.Bool("ingress", false, "rule for traffic entering the port (default)")
	f.Bool("egress", false, "rule for traffic leaving the port")
	f.StringVar(&o.ethertype, "ethertype", "", "IPv4 or IPv6 (default: that of --remote-ip, else IPv4)")
	f.StringVar(&o.protocol, "protocol", "any", "tcp, udp, icmp, icmpv6, another protocol name, a number 0-255, or any")
	f.StringVar(&o.dstPort, "dst-port", "", "destination port or LOW:HIGH range (tcp, udp, sctp, dccp, udplite)")
	f.IntVar(&o.icmpType, "icmp-type", -1, "ICMP type 0-255 (icmp, icmpv6)")
	f.IntVar(&o.icmpCode, "icmp-code", -1, "ICMP code 0-255 (icmp, icmpv6; needs --icmp-type)")
	f.StringVar(&o.remoteIP, "remote-ip", "", "remote CIDR the rule matches, e.g. 0.0.0.0/0")
	f.StringVar(&o.remoteGroup, "remote-group", "", "remote security group (name or id): match its ports' addresses")
	f.StringVar(&o.desc, "description", "", "description")
	f.StringVar(&o.project, "project", "", "owning project id (admin)")
	return cmd
}

func (o *ruleCreateOptions) validate(cmd *cobra.Command) error {
	egress, err := boolPair(cmd, "egress", "ingress")
	if err != nil {
		return err
	}
	o.direction = "ingress"
	if egress != nil && *egress {
		o.direction = "egress"
	}
	if o.protocol, err = parseProtocol(o.protocol); err != nil {
		return err
	}
	if o.remoteIP != "" && o.remoteGroup != "" {
		return usageErrorf("--remote-ip and --remote-group are exclusive: pass one")
	}
	ipv6 := false
	if o.remoteIP != "" {
		p, err := parseCIDROrAddr("remote-ip", o.remoteIP)
		if err != nil {
			return err
		}
		o.remoteIP = p.Masked().String()
		ipv6 = p.Addr().Is6()
	}
	switch strings.ToLower(o.ethertype) {
	case "":
		o.ethertype = "IPv4"
		if ipv6 {
			o.ethertype = "IPv6"
		}
	case "ipv4":
		o.ethertype = "IPv4"
	case "ipv6":
		o.ethertype = "IPv6"
	default:
		return usageErrorf("--ethertype %q: want IPv4 or IPv6", o.ethertype)
	}
	if o.remoteIP != "" && (o.ethertype == "IPv6") != ipv6 {
		return usageErrorf("--remote-ip %s does not match --ethertype %s", o.remoteIP, o.ethertype)
	}
	if o.protocol == "icmp" && o.ethertype == "IPv6" {
		o.protocol = "ipv6-icmp" // as the openstack CLI does for IPv6 rules
	}
	icmp := o.protocol == "icmp" || o.protocol == "ipv6-icmp"
	f := cmd.Flags()
	if o.dstPort != "" {
		switch o.protocol {
		case "tcp", "udp", "sctp", "dccp", "udplite", "6", "17", "132", "33", "136":
		default:
			return usageErrorf("--dst-port needs --protocol tcp, udp, sctp, dccp or udplite (got %q)", protoOrAny(o.protocol))
		}
		lo, hi, err := parsePortRange(o.dstPort)
		if err != nil {
			return err
		}
		o.min, o.max = &lo, &hi
	}
	if f.Changed("icmp-type") || f.Changed("icmp-code") {
		if !icmp {
			return usageErrorf("--icmp-type and --icmp-code need --protocol icmp or icmpv6 (got %q)", protoOrAny(o.protocol))
		}
		if !f.Changed("icmp-type") {
			return usageErrorf("--icmp-code needs --icmp-type")
		}
		if err := intInRange("icmp-type", o.icmpType, 0, 255); err != nil {
			return err
		}
		o.min = ptr(o.icmpType)
		if f.Changed("icmp-code") {
			if err := intInRange("icmp-code", o.icmpCode, 0, 255); err != nil {
				return err
			}
			o.max = ptr(o.icmpCode)
		}
	}
	if err := checkProject(o.project); err != nil {
		return err
	}
	return o.api.validate()
}

func protoOrAny(p string) string {
	if p == "" {
		return "any"
	}
	return p
}

func (o *ruleCreateOptions) run(cmd *cobra.Command) error {
	return mutateRun(cmd, o.api, securityGroupRuleKind, func(ctx context.Context, s *session) (gophercloud.Result, error) {
		gid, err := s.resolve(ctx, securityGroupKind, o.group, "GROUP")
		if err != nil {
			return gophercloud.Result{}, err
		}
		opts := rules.CreateOpts{
			Direction: rules.RuleDirection(o.direction), EtherType: rules.RuleEtherType(o.ethertype), SecGroupID: gid,
			Protocol: rules.RuleProtocol(o.protocol), RemoteIPPrefix: o.remoteIP, Description: o.desc, ProjectID: o.project,
		}
		if o.remoteGroup != "" {
			if opts.RemoteGroupID, err = s.resolve(ctx, securityGroupKind, o.remoteGroup, "--remote-group"); err != nil {
				return gophercloud.Result{}, err
			}
		}
		return rules.Create(ctx, s.client, ruleCreateOpts{CreateOpts: opts, min: o.min, max: o.max}).Result, nil
	})
}

type ruleListOptions struct {
	api                                 *apiOptions
	group, protocol, ethertype, project string
	opts                                rules.ListOpts // built by validate
}

func newSecurityGroupRuleListCmd(a *apiOptions) *cobra.Command {
	o := &ruleListOptions{api: a}
	cmd := &cobra.Command{
		Use:     "list [GROUP]",
		Short:   "List security group rules, of one group or of all",
		Example: `  offlane security-group-rule list web --ingress`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.group = args[0]
			}
			if err := o.validate(cmd); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.Bool("ingress", false, "only ingress rules")
	f.Bool("egress", false, "only egress rules")
	f.StringVar(&o.protocol, "protocol", "", "only rules for this protocol")
	f.StringVar(&o.ethertype, "ethertype", "", "only IPv4 or IPv6 rules")
	f.StringVar(&o.project, "project", "", "only rules of this project id")
	return cmd
}

func (o *ruleListOptions) validate(cmd *cobra.Command) error {
	egress, err := boolPair(cmd, "egress", "ingress")
	if err != nil {
		return err
	}
	o.opts = rules.ListOpts{ProjectID: o.project}
	if egress != nil {
		o.opts.Direction = map[bool]string{true: "egress", false: "ingress"}[*egress]
	}
	if cmd.Flags().Changed("protocol") {
		if o.opts.Protocol, err = parseProtocol(o.protocol); err != nil {
			return err
		}
	}
	switch strings.ToLower(o.ethertype) {
	case "":
	case "ipv4":
		o.opts.EtherType = "IPv4"
	case "ipv6":
		o.opts.EtherType = "IPv6"
	default:
		return usageErrorf("--ethertype %q: want IPv4 or IPv6", o.ethertype)
	}
	return checkProject(o.project)
}

func (o *ruleListOptions) run(cmd *cobra.Command) error {
	return listRun(cmd, o.api, securityGroupRuleKind, func(ctx context.Context, s *session) (pagination.Pager, error) {
		opts := o.opts
		if o.group != "" {
			id, err := s.resolve(ctx, securityGroupKind, o.group, "GROUP")
			if err != nil {
				return pagination.Pager{}, err
			}
			opts.SecGroupID = id
		}
		return rules.List(s.client, opts), nil
	})
}
