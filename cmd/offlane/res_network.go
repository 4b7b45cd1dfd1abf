package main

import (
	"context"
	"strconv"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/external"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/mtu"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsecurity"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/qos/policies"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"github.com/spf13/cobra"
)

// networkView is a network as gophercloud users decode it, with the extensions offlane
// serves.
type networkView struct {
	networks.Network
	external.NetworkExternalExt
	provider.NetworkProviderExt
	mtu.NetworkMTUExt
	portsecurity.PortSecurityExt
	policies.QoSPolicyExt
}

var networkKind = &kind{
	noun: "network", label: "network", key: "network", listKey: "networks", nameAttr: "name",
	get: func(ctx context.Context, c *gophercloud.ServiceClient, id string) gophercloud.Result {
		return networks.Get(ctx, c, id).Result
	},
	byName: func(c *gophercloud.ServiceClient, name string) pagination.Pager {
		return networks.List(c, networks.ListOpts{Name: name})
	},
	delete: func(ctx context.Context, c *gophercloud.ServiceClient, id string) error {
		return networks.Delete(ctx, c, id).ExtractErr()
	},
	typed: func() any { return new(networkView) },
	columns: []column{
		{"ID", attr("id")},
		{"NAME", attr("name")},
		{"SEGMENT", func(_ *session, _ context.Context, o map[string]any) string { return segmentOf(o) }},
		{"SUBNETS", func(s *session, ctx context.Context, o map[string]any) string {
			var out []string
			for _, id := range strList(o["subnets"]) {
				if c := str(s.lookup(ctx, "subnet", id)["cidr"]); c != "" {
					out = append(out, c)
				} else {
					out = append(out, id)
				}
			}
			return strings.Join(out, "\n")
		}},
	},
}

// attr is a column showing one attribute as it is.
func attr(name string) func(*session, context.Context, map[string]any) string {
	return func(_ *session, _ context.Context, o map[string]any) string { return cellValue(o[name]) }
}

// strList returns a list attribute's string elements.
func strList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		out = append(out, str(e))
	}
	return out
}

// segmentOf summarises the provider attributes: "vxlan 1001", "vlan physnet1:100",
// "flat physnet1", plus " external" for router:external networks.
func segmentOf(o map[string]any) string {
	t := str(o["provider:network_type"])
	phys := str(o["provider:physical_network"])
	seg := str(o["provider:segmentation_id"])
	out := t
	switch {
	case phys != "" && seg != "":
		out += " " + phys + ":" + seg
	case phys != "":
		out += " " + phys
	case seg != "":
		out += " " + seg
	}
	if o["router:external"] == true {
		out += " external"
	}
	return strings.TrimSpace(out)
}

func newNetworkCmd(a *apiOptions) *cobra.Command {
	return nounCmd("network", "Create, list, show, update and delete networks",
		newNetworkCreateCmd(a), newNetworkListCmd(a), newShowCmd(a, networkKind),
		newNetworkUpdateCmd(a), newDeleteCmd(a, networkKind))
}

// networkProviderOpts adds the provider attributes at the top level of the network, as
// the openstack CLI sends them (gophercloud's provider extension only builds the
// multi-segment "segments" form).
type networkProviderOpts struct {
	networks.CreateOptsBuilder
	networkType     string
	physicalNetwork string
	segmentationID  *int
}

func (o networkProviderOpts) ToNetworkCreateMap() (map[string]any, error) {
	b, err := o.CreateOptsBuilder.ToNetworkCreateMap()
	if err != nil {
		return nil, err
	}
	n := b["network"].(map[string]any)
	if o.networkType != "" {
		n["provider:network_type"] = o.networkType
	}
	if o.physicalNetwork != "" {
		n["provider:physical_network"] = o.physicalNetwork
	}
	if o.segmentationID != nil {
		n["provider:segmentation_id"] = *o.segmentationID
	}
	return b, nil
}

type networkCreateOptions struct {
	api                                     *apiOptions
	name, description, project, qosPolicy   string
	networkType, physicalNetwork, segmentID string
	mtu                                     int
	// from the switch pairs, set by validate
	shared, adminUp, external, portSecurity *bool
	segment                                 *int
}

func newNetworkCreateCmd(a *apiOptions) *cobra.Command {
	o := &networkCreateOptions{api: a}
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a network",
		Long: `Create a network. Tenant networks get a segment allocated by the server (VXLAN by
default); admins may create provider networks with --provider-network-type,
--provider-physical-network and --provider-segment.`,
		Example: `  offlane network create net1
  offlane network create public --external --provider-network-type flat --provider-physical-network physnet1
  offlane network create vlan100 --provider-network-type vlan --provider-physical-network physnet1 --provider-segment 100`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			if err := o.validate(cmd); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.description, "description", "", "description")
	f.StringVar(&o.project, "project", "", "owning project id (admin)")
	f.StringVar(&o.qosPolicy, "qos-policy", "", "QoS policy (name or id) for the network's ports")
	f.StringVar(&o.networkType, "provider-network-type", "", "segment type: "+fmtList(networkTypes)+" (admin)")
	f.StringVar(&o.physicalNetwork, "provider-physical-network", "", "physical network of a flat or vlan network (admin)")
	f.StringVar(&o.segmentID, "provider-segment", "", "VLAN id or VNI (admin; allocated when omitted)")
	f.IntVar(&o.mtu, "mtu", 0, "MTU (default: derived from the segment type)")
	addBoolPair(cmd, "share", "share the network with every project", "no-share", "do not share (default)")
	addBoolPair(cmd, "enable", "admin state up (default)", "disable", "admin state down")
	addBoolPair(cmd, "external", "the network is external (router gateways, floating IPs)", "internal", "not external (default)")
	addBoolPair(cmd, "enable-port-security", "port security on by default for its ports (default)", "disable-port-security", "port security off by default for its ports")
	return cmd
}

func (o *networkCreateOptions) validate(cmd *cobra.Command) error {
	var err error
	if o.shared, err = boolPair(cmd, "share", "no-share"); err != nil {
		return err
	}
	if o.adminUp, err = boolPair(cmd, "enable", "disable"); err != nil {
		return err
	}
	if o.external, err = boolPair(cmd, "external", "internal"); err != nil {
		return err
	}
	if o.portSecurity, err = boolPair(cmd, "enable-port-security", "disable-port-security"); err != nil {
		return err
	}
	if o.networkType != "" {
		if err := oneOf("provider-network-type", o.networkType, networkTypes...); err != nil {
			return err
		}
	}
	if o.segmentID != "" {
		n, err := strconv.Atoi(o.segmentID)
		if err != nil || n < 0 {
			return usageErrorf("--provider-segment %q: want a VLAN id (1-4094) or a VNI (a number)", o.segmentID)
		}
		o.segment = &n
		if o.networkType == "" {
			return usageErrorf("--provider-segment needs --provider-network-type (vlan, vxlan, gre or geneve)")
		}
	}
	if o.physicalNetwork != "" && o.networkType == "" {
		return usageErrorf("--provider-physical-network needs --provider-network-type (flat or vlan)")
	}
	if o.mtu < 0 {
		return usageErrorf("--mtu %d: want a positive MTU such as 1450", o.mtu)
	}
	if err := checkProject(o.project); err != nil {
		return err
	}
	return o.api.validate()
}

func (o *networkCreateOptions) run(cmd *cobra.Command) error {
	return mutateRun(cmd, o.api, networkKind, func(ctx context.Context, s *session) (gophercloud.Result, error) {
		var qos string
		if o.qosPolicy != "" {
			var err error
			if qos, err = s.resolve(ctx, qosPolicyKind, o.qosPolicy, "--qos-policy"); err != nil {
				return gophercloud.Result{}, err
			}
		}
		var b networks.CreateOptsBuilder = networks.CreateOpts{
			Name: o.name, Description: o.description, Shared: o.shared, AdminStateUp: o.adminUp, ProjectID: o.project,
		}
		b = external.CreateOptsExt{CreateOptsBuilder: b, External: o.external}
		b = mtu.CreateOptsExt{CreateOptsBuilder: b, MTU: o.mtu}
		b = portsecurity.NetworkCreateOptsExt{CreateOptsBuilder: b, PortSecurityEnabled: o.portSecurity}
		b = policies.NetworkCreateOptsExt{CreateOptsBuilder: b, QoSPolicyID: qos}
		b = networkProviderOpts{CreateOptsBuilder: b, networkType: o.networkType, physicalNetwork: o.physicalNetwork, segmentationID: o.segment}
		return networks.Create(ctx, s.client, b).Result, nil
	})
}

type networkListOptions struct {
	api           *apiOptions
	name, project string
	ext, shared   *bool // set by validate
}

func newNetworkListCmd(a *apiOptions) *cobra.Command {
	o := &networkListOptions{api: a}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List networks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(cmd); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "only networks with this name")
	f.StringVar(&o.project, "project", "", "only networks of this project id")
	addBoolPair(cmd, "external", "only external networks", "internal", "only internal networks")
	addBoolPair(cmd, "share", "only shared networks", "no-share", "only unshared networks")
	return cmd
}

func (o *networkListOptions) validate(cmd *cobra.Command) error {
	var err error
	if o.ext, err = boolPair(cmd, "external", "internal"); err != nil {
		return err
	}
	if o.shared, err = boolPair(cmd, "share", "no-share"); err != nil {
		return err
	}
	return checkProject(o.project)
}

func (o *networkListOptions) run(cmd *cobra.Command) error {
	return listRun(cmd, o.api, networkKind, func(_ context.Context, s *session) (pagination.Pager, error) {
		var opts networks.ListOptsBuilder = networks.ListOpts{Name: o.name, ProjectID: o.project, Shared: o.shared}
		opts = external.ListOptsExt{ListOptsBuilder: opts, External: o.ext}
		return networks.List(s.client, opts), nil
	})
}

type networkUpdateOptions struct {
	api                           *apiOptions
	ref, name, description, qos   string
	mtu                           int
	noQoS                         bool
	shared, adminUp, external, ps *bool
}

func newNetworkUpdateCmd(a *apiOptions) *cobra.Command {
	o := &networkUpdateOptions{api: a}
	cmd := &cobra.Command{
		Use:     "update NAME|ID",
		Short:   "Change a network's attributes",
		Example: `  offlane network update net1 --name net-a --share --mtu 1400`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ref = args[0]
			if err := o.validate(cmd); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "new name")
	f.StringVar(&o.description, "description", "", "new description")
	f.StringVar(&o.qos, "qos-policy", "", "attach this QoS policy (name or id)")
	f.BoolVar(&o.noQoS, "no-qos-policy", false, "detach the QoS policy")
	f.IntVar(&o.mtu, "mtu", 0, "new MTU")
	addBoolPair(cmd, "share", "share with every project", "no-share", "stop sharing")
	addBoolPair(cmd, "enable", "admin state up", "disable", "admin state down")
	addBoolPair(cmd, "external", "make external", "internal", "make internal")
	addBoolPair(cmd, "enable-port-security", "port security on by default", "disable-port-security", "port security off by default")
	return cmd
}

func (o *networkUpdateOptions) validate(cmd *cobra.Command) error {
	var err error
	if o.shared, err = boolPair(cmd, "share", "no-share"); err != nil {
		return err
	}
	if o.adminUp, err = boolPair(cmd, "enable", "disable"); err != nil {
		return err
	}
	if o.external, err = boolPair(cmd, "external", "internal"); err != nil {
		return err
	}
	if o.ps, err = boolPair(cmd, "enable-port-security", "disable-port-security"); err != nil {
		return err
	}
	if o.qos != "" && o.noQoS {
		return usageErrorf("--qos-policy and --no-qos-policy contradict each other: pass one")
	}
	if cmd.Flags().Changed("mtu") && o.mtu <= 0 {
		return usageErrorf("--mtu %d: want a positive MTU such as 1450", o.mtu)
	}
	if noChange(cmd) {
		return errNothingToUpdate("network")
	}
	return o.api.validate()
}

func (o *networkUpdateOptions) run(cmd *cobra.Command) error {
	return mutateRun(cmd, o.api, networkKind, func(ctx context.Context, s *session) (gophercloud.Result, error) {
		id, err := s.resolve(ctx, networkKind, o.ref, "")
		if err != nil {
			return gophercloud.Result{}, err
		}
		var qos *string
		switch {
		case o.noQoS:
			qos = ptr("")
		case o.qos != "":
			q, err := s.resolve(ctx, qosPolicyKind, o.qos, "--qos-policy")
			if err != nil {
				return gophercloud.Result{}, err
			}
			qos = &q
		}
		var b networks.UpdateOptsBuilder = networks.UpdateOpts{
			Name: changedString(cmd, "name", o.name), Description: changedString(cmd, "description", o.description),
			Shared: o.shared, AdminStateUp: o.adminUp,
		}
		b = external.UpdateOptsExt{UpdateOptsBuilder: b, External: o.external}
		b = mtu.UpdateOptsExt{UpdateOptsBuilder: b, MTU: o.mtu}
		b = portsecurity.NetworkUpdateOptsExt{UpdateOptsBuilder: b, PortSecurityEnabled: o.ps}
		b = policies.NetworkUpdateOptsExt{UpdateOptsBuilder: b, QoSPolicyID: qos}
		return networks.Update(ctx, s.client, id, b).Result, nil
	})
}
