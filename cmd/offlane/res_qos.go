package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/qos/policies"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/qos/rules"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"github.com/spf13/cobra"
)

var qosPolicyKind = &kind{
	noun: "qos-policy", label: "QoS policy", key: "policy", listKey: "policies", nameAttr: "name",
	get: func(ctx context.Context, c *gophercloud.ServiceClient, id string) gophercloud.Result {
		return policies.Get(ctx, c, id).Result
	},
	byName: func(c *gophercloud.ServiceClient, name string) pagination.Pager {
		return policies.List(c, policies.ListOpts{Name: name})
	},
	delete: func(ctx context.Context, c *gophercloud.ServiceClient, id string) error {
		return policies.Delete(ctx, c, id).ExtractErr()
	},
	typed: func() any { return new(policies.Policy) },
	columns: []column{
		{"ID", attr("id")},
		{"NAME", attr("name")},
		{"SHARED", attr("shared")},
		{"RULES", func(_ *session, _ context.Context, o map[string]any) string { return policyRules(o["rules"]) }},
	},
	cells: map[string]func(any) string{"rules": policyRules},
}

// policyRules is a policy's rules, one summary line each.
func policyRules(v any) string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		m, _ := e.(map[string]any)
		out = append(out, ruleSummary(str(m["type"]), m))
	}
	return strings.Join(out, "\n")
}

// qosRuleType is one kind of QoS rule: its CLI name, Neutron type and gophercloud calls.
type qosRuleType struct {
	cli, neutron string // "bandwidth-limit", "bandwidth_limit"
	kind         *kind
	list         func(c *gophercloud.ServiceClient, policyID string) pagination.Pager
	get          func(ctx context.Context, c *gophercloud.ServiceClient, policyID, id string) gophercloud.Result
	delete       func(ctx context.Context, c *gophercloud.ServiceClient, policyID, id string) error
}

// ruleKind describes one QoS rule type's objects. Neutron's rule objects carry no type
// (only the policy's "rules" list does): fill adds it so every output says what it is.
func ruleKind(neutron string, typed func() any) *kind {
	label := strings.ReplaceAll(neutron, "_", " ") + " rule"
	return &kind{noun: "qos-policy rule", label: label, key: neutron + "_rule", listKey: neutron + "_rules", typed: typed,
		fill: func(obj map[string]any) {
			if _, ok := obj["type"]; !ok {
				obj["type"] = neutron
			}
		}}
}

var qosRuleTypes = []*qosRuleType{
	{
		cli: "bandwidth-limit", neutron: "bandwidth_limit",
		kind: ruleKind("bandwidth_limit", func() any { return new(rules.BandwidthLimitRule) }),
		list: func(c *gophercloud.ServiceClient, pid string) pagination.Pager {
			return rules.ListBandwidthLimitRules(c, pid, nil)
		},
		get: func(ctx context.Context, c *gophercloud.ServiceClient, pid, id string) gophercloud.Result {
			return rules.GetBandwidthLimitRule(ctx, c, pid, id).Result
		},
		delete: func(ctx context.Context, c *gophercloud.ServiceClient, pid, id string) error {
			return rules.DeleteBandwidthLimitRule(ctx, c, pid, id).ExtractErr()
		},
	},
	{
		cli: "dscp-marking", neutron: "dscp_marking",
		kind: ruleKind("dscp_marking", func() any { return new(rules.DSCPMarkingRule) }),
		list: func(c *gophercloud.ServiceClient, pid string) pagination.Pager {
			return rules.ListDSCPMarkingRules(c, pid, nil)
		},
		get: func(ctx context.Context, c *gophercloud.ServiceClient, pid, id string) gophercloud.Result {
			return rules.GetDSCPMarkingRule(ctx, c, pid, id).Result
		},
		delete: func(ctx context.Context, c *gophercloud.ServiceClient, pid, id string) error {
			return rules.DeleteDSCPMarkingRule(ctx, c, pid, id).ExtractErr()
		},
	},
	{
		cli: "minimum-bandwidth", neutron: "minimum_bandwidth",
		kind: ruleKind("minimum_bandwidth", func() any { return new(rules.MinimumBandwidthRule) }),
		list: func(c *gophercloud.ServiceClient, pid string) pagination.Pager {
			return rules.ListMinimumBandwidthRules(c, pid, nil)
		},
		get: func(ctx context.Context, c *gophercloud.ServiceClient, pid, id string) gophercloud.Result {
			return rules.GetMinimumBandwidthRule(ctx, c, pid, id).Result
		},
		delete: func(ctx context.Context, c *gophercloud.ServiceClient, pid, id string) error {
			return rules.DeleteMinimumBandwidthRule(ctx, c, pid, id).ExtractErr()
		},
	},
}

func qosRuleTypeByCLI(name string) (*qosRuleType, error) {
	names := make([]string, len(qosRuleTypes))
	for i, t := range qosRuleTypes {
		if t.cli == name || t.neutron == name {
			return t, nil
		}
		names[i] = t.cli
	}
	return nil, usageErrorf("--type %q: want one of %s", name, strings.Join(names, ", "))
}

// ruleSummary is a one-line description of a rule: "bandwidth_limit 10000 kbps burst
// 8000 egress".
func ruleSummary(typ string, m map[string]any) string {
	out := []string{typ}
	switch typ {
	case "bandwidth_limit":
		out = append(out, str(m["max_kbps"])+" kbps")
		if b := str(m["max_burst_kbps"]); b != "" && b != "0" {
			out = append(out, "burst "+b+" kbit")
		}
	case "minimum_bandwidth":
		out = append(out, str(m["min_kbps"])+" kbps")
	case "dscp_marking":
		out = append(out, "mark "+str(m["dscp_mark"]))
	}
	if d := str(m["direction"]); d != "" {
		out = append(out, d)
	}
	return strings.Join(out, " ")
}

func newQoSPolicyCmd(a *apiOptions) *cobra.Command {
	return nounCmd("qos-policy", "Create, list, show, update and delete QoS policies and their rules",
		newQoSPolicyCreateCmd(a), newQoSPolicyListCmd(a), newShowCmd(a, qosPolicyKind),
		newQoSPolicyUpdateCmd(a), newDeleteCmd(a, qosPolicyKind), newQoSRuleCmd(a))
}

type qosPolicyCreateOptions struct {
	api                 *apiOptions
	name, desc, project string
	shared              *bool
}

func newQoSPolicyCreateCmd(a *apiOptions) *cobra.Command {
	o := &qosPolicyCreateOptions{api: a}
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a QoS policy (admin); add rules with \"qos-policy rule create\"",
		Example: `  offlane qos-policy create gold --share
  offlane qos-policy rule create gold --type bandwidth-limit --max-kbps 100000 --max-burst-kbits 80000 --egress`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			if err := o.validate(cmd); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	cmd.Flags().StringVar(&o.desc, "description", "", "description")
	cmd.Flags().StringVar(&o.project, "project", "", "owning project id")
	addBoolPair(cmd, "share", "every project may attach it", "no-share", "only its project may attach it (default)")
	return cmd
}

func (o *qosPolicyCreateOptions) validate(cmd *cobra.Command) error {
	var err error
	if o.shared, err = boolPair(cmd, "share", "no-share"); err != nil {
		return err
	}
	if err := checkProject(o.project); err != nil {
		return err
	}
	return o.api.validate()
}

func (o *qosPolicyCreateOptions) run(cmd *cobra.Command) error {
	return mutateRun(cmd, o.api, qosPolicyKind, func(ctx context.Context, s *session) (gophercloud.Result, error) {
		opts := policies.CreateOpts{Name: o.name, Description: o.desc, ProjectID: o.project, Shared: o.shared != nil && *o.shared}
		return policies.Create(ctx, s.client, opts).Result, nil
	})
}

type qosPolicyListOptions struct {
	api           *apiOptions
	name, project string
	shared        *bool
}

func newQoSPolicyListCmd(a *apiOptions) *cobra.Command {
	o := &qosPolicyListOptions{api: a}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List QoS policies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.shared, err = boolPair(cmd, "share", "no-share"); err != nil {
				return err
			}
			if err := checkProject(o.project); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	cmd.Flags().StringVar(&o.name, "name", "", "only policies with this name")
	cmd.Flags().StringVar(&o.project, "project", "", "only policies of this project id")
	addBoolPair(cmd, "share", "only shared policies", "no-share", "only unshared policies")
	return cmd
}

func (o *qosPolicyListOptions) run(cmd *cobra.Command) error {
	return listRun(cmd, o.api, qosPolicyKind, func(_ context.Context, s *session) (pagination.Pager, error) {
		return policies.List(s.client, policies.ListOpts{Name: o.name, ProjectID: o.project, Shared: o.shared}), nil
	})
}

type qosPolicyUpdateOptions struct {
	api             *apiOptions
	ref, name, desc string
	shared          *bool
}

func newQoSPolicyUpdateCmd(a *apiOptions) *cobra.Command {
	o := &qosPolicyUpdateOptions{api: a}
	cmd := &cobra.Command{
		Use:     "update NAME|ID",
		Short:   "Rename, describe, share or unshare a QoS policy",
		Example: `  offlane qos-policy update gold --no-share`,
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
	addBoolPair(cmd, "share", "every project may attach it", "no-share", "only its project may attach it")
	return cmd
}

func (o *qosPolicyUpdateOptions) validate(cmd *cobra.Command) error {
	var err error
	if o.shared, err = boolPair(cmd, "share", "no-share"); err != nil {
		return err
	}
	if noChange(cmd) {
		return errNothingToUpdate("qos-policy")
	}
	if cmd.Flags().Changed("name") && o.name == "" {
		return usageErrorf("--name \"\": give the QoS policy a non-empty name")
	}
	return o.api.validate()
}

func (o *qosPolicyUpdateOptions) run(cmd *cobra.Command) error {
	return mutateRun(cmd, o.api, qosPolicyKind, func(ctx context.Context, s *session) (gophercloud.Result, error) {
		id, err := s.resolve(ctx, qosPolicyKind, o.ref, "")
		if err != nil {
			return gophercloud.Result{}, err
		}
		opts := policies.UpdateOpts{Name: o.name, Description: changedString(cmd, "description", o.desc), Shared: o.shared}
		return policies.Update(ctx, s.client, id, opts).Result, nil
	})
}

// ---- qos-policy rule ----

func newQoSRuleCmd(a *apiOptions) *cobra.Command {
	return nounCmd("rule", "Create, list, show, update and delete a QoS policy's rules (bandwidth-limit, dscp-marking, minimum-bandwidth)",
		newQoSRuleCreateCmd(a), newQoSRuleListCmd(a), newQoSRuleShowCmd(a), newQoSRuleUpdateCmd(a), newQoSRuleDeleteCmd(a))
}

// qosRuleFlags are the value flags of rule create and update.
type qosRuleFlags struct {
	typ                          string
	maxKbps, burstKbits, minKbps int
	dscp                         int
	direction                    string // set by validate: "", "ingress" or "egress"
}

func (q *qosRuleFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.IntVar(&q.maxKbps, "max-kbps", 0, "bandwidth-limit: rate limit in kbit/s")
	f.IntVar(&q.burstKbits, "max-burst-kbits", 0, "bandwidth-limit: burst size in kbit (max_burst_kbps)")
	f.IntVar(&q.minKbps, "min-kbps", 0, "minimum-bandwidth: guaranteed rate in kbit/s")
	f.IntVar(&q.dscp, "dscp-mark", 0, "dscp-marking: DSCP value (0, 8, 10, ..., 46, 48, 56)")
	f.Bool("ingress", false, "bandwidth-limit, minimum-bandwidth: traffic into the port")
	f.Bool("egress", false, "bandwidth-limit, minimum-bandwidth: traffic out of the port (the default)")
}

// validate checks the flags against the rule type t: only the type's own flags.
func (q *qosRuleFlags) validate(cmd *cobra.Command, t *qosRuleType, create bool) error {
	f := cmd.Flags()
	own := map[string][]string{
		"bandwidth_limit":   {"max-kbps", "max-burst-kbits", "ingress", "egress"},
		"dscp_marking":      {"dscp-mark"},
		"minimum_bandwidth": {"min-kbps", "ingress", "egress"},
	}[t.neutron]
	for _, name := range []string{"max-kbps", "max-burst-kbits", "min-kbps", "dscp-mark", "ingress", "egress"} {
		if f.Changed(name) && !slices.Contains(own, name) {
			return usageErrorf("--%s does not apply to a %s rule (its flags: --%s)", name, t.cli, strings.Join(own, ", --"))
		}
	}
	egress, err := boolPair(cmd, "egress", "ingress")
	if err != nil {
		return err
	}
	if egress != nil {
		q.direction = map[bool]string{true: "egress", false: "ingress"}[*egress]
	}
	switch t.neutron {
	case "bandwidth_limit":
		if create && !f.Changed("max-kbps") {
			return usageErrorf("--max-kbps is required for a bandwidth-limit rule, e.g. --max-kbps 100000")
		}
		if f.Changed("max-kbps") && q.maxKbps < 0 || q.burstKbits < 0 {
			return usageErrorf("--max-kbps and --max-burst-kbits: want non-negative kbit values")
		}
	case "minimum_bandwidth":
		if create && !f.Changed("min-kbps") {
			return usageErrorf("--min-kbps is required for a minimum-bandwidth rule, e.g. --min-kbps 10000")
		}
		if q.minKbps < 0 {
			return usageErrorf("--min-kbps %d: want a non-negative kbit/s value", q.minKbps)
		}
	case "dscp_marking":
		if create && !f.Changed("dscp-mark") {
			return usageErrorf("--dscp-mark is required for a dscp-marking rule, e.g. --dscp-mark 26")
		}
		if f.Changed("dscp-mark") && !slices.Contains(validDSCPMarks, q.dscp) {
			return usageErrorf("--dscp-mark %d: not a valid DSCP value; want one of %s", q.dscp, fmtInts(validDSCPMarks))
		}
	}
	return nil
}

func fmtInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

type qosRuleCreateOptions struct {
	api    *apiOptions
	policy string
	qosRuleFlags
	t *qosRuleType // set by validate
}

func newQoSRuleCreateCmd(a *apiOptions) *cobra.Command {
	o := &qosRuleCreateOptions{api: a}
	cmd := &cobra.Command{
		Use:   "create POLICY --type TYPE",
		Short: "Add a rule to a QoS policy (admin)",
		Example: `  offlane qos-policy rule create gold --type bandwidth-limit --max-kbps 100000 --max-burst-kbits 80000
  offlane qos-policy rule create gold --type bandwidth-limit --max-kbps 50000 --ingress
  offlane qos-policy rule create gold --type dscp-marking --dscp-mark 26
  offlane qos-policy rule create gold --type minimum-bandwidth --min-kbps 10000`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.policy = args[0]
			if err := o.validate(cmd); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	cmd.Flags().StringVar(&o.typ, "type", "", "bandwidth-limit, dscp-marking or minimum-bandwidth (required)")
	o.qosRuleFlags.add(cmd)
	return cmd
}

func (o *qosRuleCreateOptions) validate(cmd *cobra.Command) error {
	if o.typ == "" {
		return usageErrorf("--type is required: bandwidth-limit, dscp-marking or minimum-bandwidth")
	}
	var err error
	if o.t, err = qosRuleTypeByCLI(o.typ); err != nil {
		return err
	}
	if err := o.qosRuleFlags.validate(cmd, o.t, true); err != nil {
		return err
	}
	return o.api.validate()
}

func (o *qosRuleCreateOptions) run(cmd *cobra.Command) error {
	return mutateRun(cmd, o.api, o.t.kind, func(ctx context.Context, s *session) (gophercloud.Result, error) {
		pid, err := s.resolve(ctx, qosPolicyKind, o.policy, "POLICY")
		if err != nil {
			return gophercloud.Result{}, err
		}
		switch o.t.neutron {
		case "bandwidth_limit":
			return rules.CreateBandwidthLimitRule(ctx, s.client, pid, rules.CreateBandwidthLimitRuleOpts{
				MaxKBps: o.maxKbps, MaxBurstKBps: o.burstKbits, Direction: o.direction}).Result, nil
		case "dscp_marking":
			return rules.CreateDSCPMarkingRule(ctx, s.client, pid, rules.CreateDSCPMarkingRuleOpts{DSCPMark: o.dscp}).Result, nil
		default:
			return rules.CreateMinimumBandwidthRule(ctx, s.client, pid, rules.CreateMinimumBandwidthRuleOpts{
				MinKBps: o.minKbps, Direction: o.direction}).Result, nil
		}
	})
}

// findRule finds rule id in the policy: Neutron's rule URLs are per type, so each type is
// tried.
func findRule(ctx context.Context, s *session, policyID, policyRef, id string) (*qosRuleType, map[string]any, error) {
	if !idLike.MatchString(id) {
		return nil, nil, fmt.Errorf("QoS rule %q: not a rule id (see \"offlane qos-policy rule list %s\")", id, policyRef)
	}
	for _, t := range qosRuleTypes {
		obj, err := s.decodeOne(t.kind, t.get(ctx, s.client, policyID, id))
		if err == nil {
			return t, obj, nil
		}
		if !isNotFound(err) {
			return nil, nil, err
		}
	}
	return nil, nil, fmt.Errorf("QoS policy %q has no rule %q (see \"offlane qos-policy rule list %s\")", policyRef, id, policyRef)
}

// qosRuleSession is what the rule commands on an existing policy share: a session,
// its context and the policy's id.
func qosRuleSession(cmd *cobra.Command, a *apiOptions, policyRef string, fn func(ctx context.Context, s *session, pid string) error) error {
	s, err := a.connect()
	if err != nil {
		return err
	}
	ctx, cancel := a.context(cmd)
	defer cancel()
	pid, err := s.resolve(ctx, qosPolicyKind, policyRef, "POLICY")
	if err != nil {
		return err
	}
	return fn(ctx, s, pid)
}

type qosRuleListOptions struct {
	api         *apiOptions
	policy, typ string
	types       []*qosRuleType // set by validate
}

func newQoSRuleListCmd(a *apiOptions) *cobra.Command {
	o := &qosRuleListOptions{api: a}
	cmd := &cobra.Command{
		Use:   "list POLICY",
		Short: "List a QoS policy's rules",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.policy = args[0]
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	cmd.Flags().StringVar(&o.typ, "type", "", "only rules of this type: bandwidth-limit, dscp-marking or minimum-bandwidth")
	return cmd
}

func (o *qosRuleListOptions) validate() error {
	o.types = qosRuleTypes
	if o.typ != "" {
		t, err := qosRuleTypeByCLI(o.typ)
		if err != nil {
			return err
		}
		o.types = []*qosRuleType{t}
	}
	return o.api.validate()
}

func (o *qosRuleListOptions) run(cmd *cobra.Command) error {
	return qosRuleSession(cmd, o.api, o.policy, func(ctx context.Context, s *session, pid string) error {
		var all []map[string]any
		for _, t := range o.types {
			objs, err := s.listAll(ctx, t.kind, t.list(s.client, pid))
			if err != nil {
				return err
			}
			all = append(all, objs...)
		}
		sort.SliceStable(all, func(i, j int) bool { return str(all[i]["type"]) < str(all[j]["type"]) })
		return s.printList(ctx, qosRuleListKind, all)
	})
}

// qosRuleListKind lays out the rule list table: every type in one table.
var qosRuleListKind = &kind{
	noun: "qos-policy rule", label: "QoS rule",
	columns: []column{
		{"ID", attr("id")},
		{"TYPE", attr("type")},
		{"MAX KBPS", attr("max_kbps")},
		{"MAX BURST KBITS", attr("max_burst_kbps")},
		{"MIN KBPS", attr("min_kbps")},
		{"DSCP MARK", attr("dscp_mark")},
		{"DIRECTION", attr("direction")},
	},
}

type qosRuleShowOptions struct {
	api          *apiOptions
	policy, rule string
}

func newQoSRuleShowCmd(a *apiOptions) *cobra.Command {
	o := &qosRuleShowOptions{api: a}
	return &cobra.Command{
		Use:   "show POLICY RULE_ID",
		Short: "Show one rule of a QoS policy",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.policy, o.rule = args[0], args[1]
			if err := o.api.validate(); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
}

func (o *qosRuleShowOptions) run(cmd *cobra.Command) error {
	return qosRuleSession(cmd, o.api, o.policy, func(ctx context.Context, s *session, pid string) error {
		t, obj, err := findRule(ctx, s, pid, o.policy, o.rule)
		if err != nil {
			return err
		}
		return s.printOne(t.kind, obj)
	})
}

type qosRuleUpdateOptions struct {
	api          *apiOptions
	policy, rule string
	qosRuleFlags
}

func newQoSRuleUpdateCmd(a *apiOptions) *cobra.Command {
	o := &qosRuleUpdateOptions{api: a}
	cmd := &cobra.Command{
		Use:   "update POLICY RULE_ID",
		Short: "Change a QoS rule's values (admin)",
		Long: `Change a QoS rule's values. The rule's type is the existing rule's: its flags are
checked once the rule is found, before anything is changed.`,
		Example: `  offlane qos-policy rule update gold 5d6f... --max-kbps 200000`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.policy, o.rule = args[0], args[1]
			if noChange(cmd) {
				return errNothingToUpdate("qos-policy rule")
			}
			if err := o.api.validate(); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	o.qosRuleFlags.add(cmd)
	return cmd
}

func (o *qosRuleUpdateOptions) run(cmd *cobra.Command) error {
	return qosRuleSession(cmd, o.api, o.policy, func(ctx context.Context, s *session, pid string) error {
		t, _, err := findRule(ctx, s, pid, o.policy, o.rule)
		if err != nil {
			return err
		}
		if err := o.qosRuleFlags.validate(cmd, t, false); err != nil {
			return err
		}
		f := cmd.Flags()
		intIf := func(name string, v int) *int {
			if f.Changed(name) {
				return &v
			}
			return nil
		}
		var r gophercloud.Result
		switch t.neutron {
		case "bandwidth_limit":
			r = rules.UpdateBandwidthLimitRule(ctx, s.client, pid, o.rule, rules.UpdateBandwidthLimitRuleOpts{
				MaxKBps: intIf("max-kbps", o.maxKbps), MaxBurstKBps: intIf("max-burst-kbits", o.burstKbits), Direction: o.direction}).Result
		case "dscp_marking":
			r = rules.UpdateDSCPMarkingRule(ctx, s.client, pid, o.rule, rules.UpdateDSCPMarkingRuleOpts{DSCPMark: intIf("dscp-mark", o.dscp)}).Result
		default:
			r = rules.UpdateMinimumBandwidthRule(ctx, s.client, pid, o.rule, rules.UpdateMinimumBandwidthRuleOpts{
				MinKBps: intIf("min-kbps", o.minKbps), Direction: o.direction}).Result
		}
		obj, err := s.decodeOne(t.kind, r)
		if err != nil {
			return err
		}
		return s.printOne(t.kind, obj)
	})
}

type qosRuleDeleteOptions struct {
	api    *apiOptions
	policy string
	rules  []string
}

func newQoSRuleDeleteCmd(a *apiOptions) *cobra.Command {
	o := &qosRuleDeleteOptions{api: a}
	return &cobra.Command{
		Use:   "delete POLICY RULE_ID...",
		Short: "Delete rules from a QoS policy (admin)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.policy, o.rules = args[0], args[1:]
			if err := o.api.validate(); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
}

func (o *qosRuleDeleteOptions) run(cmd *cobra.Command) error {
	return qosRuleSession(cmd, o.api, o.policy, func(ctx context.Context, s *session, pid string) error {
		return deleteEach(o.api.g, "QoS rule", o.rules, func(id string) error {
			t, _, err := findRule(ctx, s, pid, o.policy, id)
			if err != nil {
				return err
			}
			return s.apiErr(t.delete(ctx, s.client, pid, id))
		})
	})
}
