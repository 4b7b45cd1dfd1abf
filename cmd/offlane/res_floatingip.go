package main

import (
	"context"
	"net/netip"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"github.com/spf13/cobra"
)

// Floating IPs have no name: like the openstack CLI, they are referred to by id or by
// their floating IP address.
var floatingIPKind = &kind{
	noun: "floatingip", label: "floating IP", key: "floatingip", listKey: "floatingips", nameAttr: "floating_ip_address",
	get: func(ctx context.Context, c *gophercloud.ServiceClient, id string) gophercloud.Result {
		return floatingips.Get(ctx, c, id).Result
	},
	byName: func(c *gophercloud.ServiceClient, addr string) pagination.Pager {
		return floatingips.List(c, floatingips.ListOpts{FloatingIP: addr})
	},
	delete: func(ctx context.Context, c *gophercloud.ServiceClient, id string) error {
		return floatingips.Delete(ctx, c, id).ExtractErr()
	},
	typed: func() any { return new(floatingips.FloatingIP) },
	columns: []column{
		{"ID", attr("id")},
		{"FLOATING IP", attr("floating_ip_address")},
		{"FIXED IP", attr("fixed_ip_address")},
		{"PORT", func(s *session, ctx context.Context, o map[string]any) string {
			return s.displayName(ctx, "port", str(o["port_id"]))
		}},
		{"STATUS", attr("status")},
	},
}

func newFloatingIPCmd(a *apiOptions) *cobra.Command {
	return nounCmd("floatingip", "Allocate, list, show, associate and release floating IPs",
		newFloatingIPCreateCmd(a), newFloatingIPListCmd(a), newShowCmd(a, floatingIPKind),
		newFloatingIPUpdateCmd(a), newDeleteCmd(a, floatingIPKind))
}

func checkAddr(flag, val string) (string, error) {
	if val == "" {
		return "", nil
	}
	a, err := netip.ParseAddr(val)
	if err != nil || a.Zone() != "" {
		return "", usageErrorf("--%s %q: want an IP address such as 203.0.113.10", flag, val)
	}
	return a.String(), nil
}

type floatingIPCreateOptions struct {
	api                                *apiOptions
	network, subnet, addr, port, fixed string
	desc, project                      string
}

func newFloatingIPCreateCmd(a *apiOptions) *cobra.Command {
	o := &floatingIPCreateOptions{api: a}
	cmd := &cobra.Command{
		Use:   "create EXTERNAL_NETWORK",
		Short: "Allocate a floating IP from an external network, optionally associated with a port",
		Example: `  offlane floatingip create public
  offlane floatingip create public --port vm1-eth0
  offlane floatingip create public --floating-ip-address 203.0.113.20 --port vm1-eth0 --fixed-ip-address 10.0.0.5`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.network = args[0]
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.subnet, "subnet", "", "external subnet (name or id) to allocate from")
	f.StringVar(&o.addr, "floating-ip-address", "", "the address to allocate (default: the next free one)")
	f.StringVar(&o.port, "port", "", "associate with this port (name or id)")
	f.StringVar(&o.fixed, "fixed-ip-address", "", "the port's fixed address to map (when it has several)")
	f.StringVar(&o.desc, "description", "", "description")
	f.StringVar(&o.project, "project", "", "owning project id (admin)")
	return cmd
}

func (o *floatingIPCreateOptions) validate() error {
	var err error
	if o.addr, err = checkAddr("floating-ip-address", o.addr); err != nil {
		return err
	}
	if o.fixed, err = checkAddr("fixed-ip-address", o.fixed); err != nil {
		return err
	}
	if o.fixed != "" && o.port == "" {
		return usageErrorf("--fixed-ip-address picks one of --port's addresses: it needs --port")
	}
	if err := checkProject(o.project); err != nil {
		return err
	}
	return o.api.validate()
}

func (o *floatingIPCreateOptions) run(cmd *cobra.Command) error {
	return mutateRun(cmd, o.api, floatingIPKind, func(ctx context.Context, s *session) (gophercloud.Result, error) {
		netID, err := s.resolve(ctx, networkKind, o.network, "EXTERNAL_NETWORK")
		if err != nil {
			return gophercloud.Result{}, err
		}
		opts := floatingips.CreateOpts{FloatingNetworkID: netID, FloatingIP: o.addr, FixedIP: o.fixed,
			Description: o.desc, ProjectID: o.project}
		if o.subnet != "" {
			if opts.SubnetID, err = s.resolve(ctx, subnetKind, o.subnet, "--subnet"); err != nil {
				return gophercloud.Result{}, err
			}
		}
		if o.port != "" {
			if opts.PortID, err = s.resolve(ctx, portKind, o.port, "--port"); err != nil {
				return gophercloud.Result{}, err
			}
		}
		return floatingips.Create(ctx, s.client, opts).Result, nil
	})
}

type floatingIPUpdateOptions struct {
	api                    *apiOptions
	ref, port, fixed, desc string
	noPort                 bool
}

func newFloatingIPUpdateCmd(a *apiOptions) *cobra.Command {
	o := &floatingIPUpdateOptions{api: a}
	cmd := &cobra.Command{
		Use:   "update ADDRESS|ID",
		Short: "Associate a floating IP with a port, or disassociate it",
		Example: `  offlane floatingip update 203.0.113.20 --port vm1-eth0
  offlane floatingip update 203.0.113.20 --no-port`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ref = args[0]
			if err := o.validate(cmd); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.port, "port", "", "associate with this port (name or id)")
	f.StringVar(&o.fixed, "fixed-ip-address", "", "the port's fixed address to map (when it has several)")
	f.BoolVar(&o.noPort, "no-port", false, "disassociate from its port")
	f.StringVar(&o.desc, "description", "", "new description")
	return cmd
}

func (o *floatingIPUpdateOptions) validate(cmd *cobra.Command) error {
	var err error
	if o.fixed, err = checkAddr("fixed-ip-address", o.fixed); err != nil {
		return err
	}
	if o.noPort && (o.port != "" || o.fixed != "") {
		return usageErrorf("--no-port contradicts --port and --fixed-ip-address: pass one")
	}
	if o.fixed != "" && o.port == "" {
		return usageErrorf("--fixed-ip-address picks one of --port's addresses: it needs --port")
	}
	if noChange(cmd) {
		return errNothingToUpdate("floatingip")
	}
	return o.api.validate()
}

func (o *floatingIPUpdateOptions) run(cmd *cobra.Command) error {
	return mutateRun(cmd, o.api, floatingIPKind, func(ctx context.Context, s *session) (gophercloud.Result, error) {
		id, err := s.resolve(ctx, floatingIPKind, o.ref, "")
		if err != nil {
			return gophercloud.Result{}, err
		}
		opts := floatingips.UpdateOpts{Description: changedString(cmd, "description", o.desc), FixedIP: o.fixed}
		switch {
		case o.noPort:
			opts.PortID = ptr("") // gophercloud sends "" as null: disassociate
		case o.port != "":
			pid, err := s.resolve(ctx, portKind, o.port, "--port")
			if err != nil {
				return gophercloud.Result{}, err
			}
			opts.PortID = &pid
		}
		return floatingips.Update(ctx, s.client, id, opts).Result, nil
	})
}

type floatingIPListOptions struct {
	api                                        *apiOptions
	network, port, router, addr, fixed, status string
	project                                    string
}

func newFloatingIPListCmd(a *apiOptions) *cobra.Command {
	o := &floatingIPListOptions{api: a}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List floating IPs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.network, "network", "", "only floating IPs of this external network (name or id)")
	f.StringVar(&o.port, "port", "", "only the floating IP of this port (name or id)")
	f.StringVar(&o.router, "router", "", "only floating IPs routed by this router (name or id)")
	f.StringVar(&o.addr, "floating-ip-address", "", "only this floating address")
	f.StringVar(&o.fixed, "fixed-ip-address", "", "only floating IPs mapped to this fixed address")
	f.StringVar(&o.status, "status", "", "only floating IPs in this status (ACTIVE, DOWN)")
	f.StringVar(&o.project, "project", "", "only floating IPs of this project id")
	return cmd
}

func (o *floatingIPListOptions) validate() error {
	var err error
	if o.addr, err = checkAddr("floating-ip-address", o.addr); err != nil {
		return err
	}
	if o.fixed, err = checkAddr("fixed-ip-address", o.fixed); err != nil {
		return err
	}
	return checkProject(o.project)
}

func (o *floatingIPListOptions) run(cmd *cobra.Command) error {
	return listRun(cmd, o.api, floatingIPKind, func(ctx context.Context, s *session) (pagination.Pager, error) {
		opts := floatingips.ListOpts{FloatingIP: o.addr, FixedIP: o.fixed, Status: o.status, ProjectID: o.project}
		var err error
		if o.network != "" {
			if opts.FloatingNetworkID, err = s.resolve(ctx, networkKind, o.network, "--network"); err != nil {
				return pagination.Pager{}, err
			}
		}
		if o.port != "" {
			if opts.PortID, err = s.resolve(ctx, portKind, o.port, "--port"); err != nil {
				return pagination.Pager{}, err
			}
		}
		if o.router != "" {
			if opts.RouterID, err = s.resolve(ctx, routerKind, o.router, "--router"); err != nil {
				return pagination.Pager{}, err
			}
		}
		return floatingips.List(s.client, opts), nil
	})
}
