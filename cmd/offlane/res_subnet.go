package main

import (
	"context"
	"net/netip"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"github.com/spf13/cobra"
)

var subnetKind = &kind{
	noun: "subnet", label: "subnet", key: "subnet", listKey: "subnets", nameAttr: "name",
	get: func(ctx context.Context, c *gophercloud.ServiceClient, id string) gophercloud.Result {
		return subnets.Get(ctx, c, id).Result
	},
	byName: func(c *gophercloud.ServiceClient, name string) pagination.Pager {
		return subnets.List(c, subnets.ListOpts{Name: name})
	},
	delete: func(ctx context.Context, c *gophercloud.ServiceClient, id string) error {
		return subnets.Delete(ctx, c, id).ExtractErr()
	},
	typed: func() any { return new(subnets.Subnet) },
	columns: []column{
		{"ID", attr("id")},
		{"NAME", attr("name")},
		{"NETWORK", func(s *session, ctx context.Context, o map[string]any) string {
			return s.displayName(ctx, "network", str(o["network_id"]))
		}},
		{"CIDR", attr("cidr")},
		{"GATEWAY", attr("gateway_ip")},
	},
}

func newSubnetCmd(a *apiOptions) *cobra.Command {
	return nounCmd("subnet", "Create, list, show, update and delete subnets",
		newSubnetCreateCmd(a), newSubnetListCmd(a), newShowCmd(a, subnetKind),
		newSubnetUpdateCmd(a), newDeleteCmd(a, subnetKind))
}

// gatewayFlag parses --gateway: an address, "auto" (the server's default, the first
// address) or "none" (no gateway). It returns nil for auto.
func gatewayFlag(val string, cidr netip.Prefix) (*string, error) {
	switch val {
	case "auto":
		return nil, nil
	case "none":
		return ptr(""), nil // gophercloud sends "" as null: no gateway
	}
	a, err := netip.ParseAddr(val)
	if err != nil || a.Zone() != "" {
		return nil, usageErrorf("--gateway %q: want an IP address, auto or none", val)
	}
	if cidr.IsValid() && !cidr.Contains(a) {
		return nil, usageErrorf("--gateway %s is outside --subnet-range %s", a, cidr)
	}
	return ptr(a.String()), nil
}

type subnetCreateOptions struct {
	api                                              *apiOptions
	name, network, rangeFlag, gateway, desc, project string
	ipVersion                                        int
	pools, dns, routes                               []string
	// set by validate
	cidr        netip.Prefix
	gw          *string
	dhcp        *bool
	poolSpecs   []poolSpec
	routeSpecs  []routeSpec
	nameservers []string
}

func newSubnetCreateCmd(a *apiOptions) *cobra.Command {
	o := &subnetCreateOptions{api: a}
	cmd := &cobra.Command{
		Use:   "create NAME --network NETWORK --subnet-range CIDR",
		Short: "Create a subnet",
		Example: `  offlane subnet create sub1 --network net1 --subnet-range 10.0.0.0/24
  offlane subnet create sub6 --network net1 --subnet-range 2001:db8::/64 --gateway none
  offlane subnet create pub --network public --subnet-range 203.0.113.0/24 --no-dhcp \
      --allocation-pool start=203.0.113.10,end=203.0.113.200`,
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
	f.StringVar(&o.network, "network", "", "network (name or id) the subnet belongs to (required)")
	f.StringVar(&o.rangeFlag, "subnet-range", "", "the subnet's CIDR, e.g. 10.0.0.0/24 (required)")
	f.IntVar(&o.ipVersion, "ip-version", 0, "4 or 6 (default: that of --subnet-range)")
	f.StringVar(&o.gateway, "gateway", "auto", "gateway address, auto (the first address) or none")
	f.StringArrayVar(&o.pools, "allocation-pool", nil, "start=IP,end=IP (repeatable; default: the range minus the gateway)")
	f.StringArrayVar(&o.dns, "dns-nameserver", nil, "DNS server address handed out by DHCP (repeatable)")
	f.StringArrayVar(&o.routes, "host-route", nil, "destination=CIDR,gateway=IP handed out by DHCP (repeatable)")
	f.StringVar(&o.desc, "description", "", "description")
	f.StringVar(&o.project, "project", "", "owning project id (admin)")
	addBoolPair(cmd, "dhcp", "enable DHCP (default)", "no-dhcp", "disable DHCP")
	return cmd
}

func (o *subnetCreateOptions) validate(cmd *cobra.Command) error {
	if o.network == "" {
		return usageErrorf("--network is required: the network (name or id) to create the subnet on")
	}
	if o.rangeFlag == "" {
		return usageErrorf("--subnet-range is required, e.g. --subnet-range 10.0.0.0/24")
	}
	p, err := netip.ParsePrefix(o.rangeFlag)
	if err != nil {
		return usageErrorf("--subnet-range %q: want a CIDR such as 10.0.0.0/24 or 2001:db8::/64", o.rangeFlag)
	}
	o.cidr = p
	v := 4
	if p.Addr().Is6() {
		v = 6
	}
	if o.ipVersion != 0 && o.ipVersion != v {
		return usageErrorf("--ip-version %d does not match --subnet-range %s (IPv%d)", o.ipVersion, p, v)
	}
	o.ipVersion = v
	if o.gw, err = gatewayFlag(o.gateway, p); err != nil {
		return err
	}
	if o.dhcp, err = boolPair(cmd, "dhcp", "no-dhcp"); err != nil {
		return err
	}
	if o.poolSpecs, err = parsePools("--allocation-pool", o.pools); err != nil {
		return err
	}
	for _, ps := range o.poolSpecs {
		s, e := netip.MustParseAddr(ps.start), netip.MustParseAddr(ps.end)
		if !p.Contains(s) || !p.Contains(e) {
			return usageErrorf("--allocation-pool start=%s,end=%s is outside --subnet-range %s", ps.start, ps.end, p)
		}
	}
	if o.routeSpecs, err = parseRoutes("--host-route", o.routes); err != nil {
		return err
	}
	if o.nameservers, err = parseAddrs("--dns-nameserver", o.dns); err != nil {
		return err
	}
	if err := checkProject(o.project); err != nil {
		return err
	}
	return o.api.validate()
}

// parseAddrs checks a repeatable IP address flag.
func parseAddrs(flag string, vals []string) ([]string, error) {
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return nil, usageErrorf("%s %q: want an IP address such as 192.0.2.53", flag, v)
		}
		out = append(out, a.String())
	}
	return out, nil
}

func toPools(specs []poolSpec) []subnets.AllocationPool {
	out := make([]subnets.AllocationPool, len(specs))
	for i, p := range specs {
		out[i] = subnets.AllocationPool{Start: p.start, End: p.end}
	}
	return out
}

func toHostRoutes(specs []routeSpec) []subnets.HostRoute {
	out := make([]subnets.HostRoute, len(specs))
	for i, r := range specs {
		out[i] = subnets.HostRoute{DestinationCIDR: r.destination, NextHop: r.gateway}
	}
	return out
}

func (o *subnetCreateOptions) run(cmd *cobra.Command) error {
	return mutateRun(cmd, o.api, subnetKind, func(ctx context.Context, s *session) (gophercloud.Result, error) {
		netID, err := s.resolve(ctx, networkKind, o.network, "--network")
		if err != nil {
			return gophercloud.Result{}, err
		}
		opts := subnets.CreateOpts{
			NetworkID: netID, CIDR: o.cidr.String(), Name: o.name, Description: o.desc, ProjectID: o.project,
			IPVersion: gophercloud.IPVersion(o.ipVersion), GatewayIP: o.gw, EnableDHCP: o.dhcp,
			AllocationPools: toPools(o.poolSpecs), DNSNameservers: o.nameservers, HostRoutes: toHostRoutes(o.routeSpecs),
		}
		return subnets.Create(ctx, s.client, opts).Result, nil
	})
}

type subnetListOptions struct {
	api                          *apiOptions
	name, network, project, cidr string
	ipVersion                    int
}

func newSubnetListCmd(a *apiOptions) *cobra.Command {
	o := &subnetListOptions{api: a}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List subnets",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "only subnets with this name")
	f.StringVar(&o.network, "network", "", "only subnets of this network (name or id)")
	f.StringVar(&o.project, "project", "", "only subnets of this project id")
	f.StringVar(&o.cidr, "subnet-range", "", "only subnets with this CIDR")
	f.IntVar(&o.ipVersion, "ip-version", 0, "only IPv4 (4) or IPv6 (6) subnets")
	return cmd
}

func (o *subnetListOptions) validate() error {
	if o.ipVersion != 0 && o.ipVersion != 4 && o.ipVersion != 6 {
		return usageErrorf("--ip-version %d: want 4 or 6", o.ipVersion)
	}
	if o.cidr != "" {
		p, err := netip.ParsePrefix(o.cidr)
		if err != nil {
			return usageErrorf("--subnet-range %q: want a CIDR such as 10.0.0.0/24", o.cidr)
		}
		o.cidr = p.String()
	}
	return checkProject(o.project)
}

func (o *subnetListOptions) run(cmd *cobra.Command) error {
	return listRun(cmd, o.api, subnetKind, func(ctx context.Context, s *session) (pagination.Pager, error) {
		opts := subnets.ListOpts{Name: o.name, ProjectID: o.project, IPVersion: o.ipVersion, CIDR: o.cidr}
		if o.network != "" {
			id, err := s.resolve(ctx, networkKind, o.network, "--network")
			if err != nil {
				return pagination.Pager{}, err
			}
			opts.NetworkID = id
		}
		return subnets.List(s.client, opts), nil
	})
}

type subnetUpdateOptions struct {
	api                      *apiOptions
	ref, name, desc, gateway string
	pools, dns, routes       []string
	noDNS, noRoutes          bool
	// set by validate
	gw          *string
	dhcp        *bool
	poolSpecs   []poolSpec
	routeSpecs  []routeSpec
	nameservers []string
}

func newSubnetUpdateCmd(a *apiOptions) *cobra.Command {
	o := &subnetUpdateOptions{api: a}
	cmd := &cobra.Command{
		Use:   "update NAME|ID",
		Short: "Change a subnet's attributes",
		Long: `Change a subnet's attributes. List flags (--allocation-pool, --dns-nameserver,
--host-route) replace the whole list; --no-dns-nameservers and --no-host-routes clear it.`,
		Example: `  offlane subnet update sub1 --dns-nameserver 192.0.2.53 --gateway none`,
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
	f.StringVar(&o.desc, "description", "", "new description")
	f.StringVar(&o.gateway, "gateway", "", "new gateway address, or none")
	f.StringArrayVar(&o.pools, "allocation-pool", nil, "start=IP,end=IP (repeatable; replaces the pools)")
	f.StringArrayVar(&o.dns, "dns-nameserver", nil, "DNS server address (repeatable; replaces the list)")
	f.BoolVar(&o.noDNS, "no-dns-nameservers", false, "clear the DNS servers")
	f.StringArrayVar(&o.routes, "host-route", nil, "destination=CIDR,gateway=IP (repeatable; replaces the list)")
	f.BoolVar(&o.noRoutes, "no-host-routes", false, "clear the host routes")
	addBoolPair(cmd, "dhcp", "enable DHCP", "no-dhcp", "disable DHCP")
	return cmd
}

func (o *subnetUpdateOptions) validate(cmd *cobra.Command) error {
	var err error
	if cmd.Flags().Changed("gateway") {
		if o.gateway == "auto" {
			return usageErrorf("--gateway auto: only at create; on update give an address or none")
		}
		if o.gw, err = gatewayFlag(o.gateway, netip.Prefix{}); err != nil {
			return err
		}
	}
	if o.dhcp, err = boolPair(cmd, "dhcp", "no-dhcp"); err != nil {
		return err
	}
	if o.poolSpecs, err = parsePools("--allocation-pool", o.pools); err != nil {
		return err
	}
	if o.routeSpecs, err = parseRoutes("--host-route", o.routes); err != nil {
		return err
	}
	if o.nameservers, err = parseAddrs("--dns-nameserver", o.dns); err != nil {
		return err
	}
	if o.noDNS && len(o.dns) > 0 {
		return usageErrorf("--dns-nameserver and --no-dns-nameservers contradict each other: pass one")
	}
	if o.noRoutes && len(o.routes) > 0 {
		return usageErrorf("--host-route and --no-host-routes contradict each other: pass one")
	}
	if noChange(cmd) {
		return errNothingToUpdate("subnet")
	}
	return o.api.validate()
}

func (o *subnetUpdateOptions) run(cmd *cobra.Command) error {
	return mutateRun(cmd, o.api, subnetKind, func(ctx context.Context, s *session) (gophercloud.Result, error) {
		id, err := s.resolve(ctx, subnetKind, o.ref, "")
		if err != nil {
			return gophercloud.Result{}, err
		}
		opts := subnets.UpdateOpts{
			Name: changedString(cmd, "name", o.name), Description: changedString(cmd, "description", o.desc),
			GatewayIP: o.gw, EnableDHCP: o.dhcp,
		}
		if len(o.poolSpecs) > 0 {
			opts.AllocationPools = toPools(o.poolSpecs)
		}
		switch {
		case o.noDNS:
			opts.DNSNameservers = &[]string{}
		case len(o.nameservers) > 0:
			opts.DNSNameservers = &o.nameservers
		}
		switch {
		case o.noRoutes:
			opts.HostRoutes = &[]subnets.HostRoute{}
		case len(o.routeSpecs) > 0:
			r := toHostRoutes(o.routeSpecs)
			opts.HostRoutes = &r
		}
		return subnets.Update(ctx, s.client, id, opts).Result, nil
	})
}
