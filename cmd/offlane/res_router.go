package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"github.com/spf13/cobra"
)

var routerKind = &kind{
	noun: "router", label: "router", key: "router", listKey: "routers", nameAttr: "name",
	get: func(ctx context.Context, c *gophercloud.ServiceClient, id string) gophercloud.Result {
		return routers.Get(ctx, c, id).Result
	},
	byName: func(c *gophercloud.ServiceClient, name string) pagination.Pager {
		return routers.List(c, routers.ListOpts{Name: name})
	},
	delete: func(ctx context.Context, c *gophercloud.ServiceClient, id string) error {
		return routers.Delete(ctx, c, id).ExtractErr()
	},
	typed: func() any { return new(routers.Router) },
	columns: []column{
		{"ID", attr("id")},
		{"NAME", attr("name")},
		{"STATUS", attr("status")},
		{"STATE", func(_ *session, _ context.Context, o map[string]any) string {
			if o["admin_state_up"] == false {
				return "DOWN"
			}
			return "UP"
		}},
		{"EXTERNAL GATEWAY", func(s *session, ctx context.Context, o map[string]any) string {
			gw, _ := o["external_gateway_info"].(map[string]any)
			if str(gw["network_id"]) == "" {
				return ""
			}
			out := []string{s.displayName(ctx, "network", str(gw["network_id"]))}
			ips, _ := gw["external_fixed_ips"].([]any)
			for _, e := range ips {
				m, _ := e.(map[string]any)
				out = append(out, str(m["ip_address"]))
			}
			if gw["enable_snat"] == false {
				out = append(out, "(no SNAT)")
			}
			return strings.Join(out, " ")
		}},
	},
}

func newRouterCmd(a *apiOptions) *cobra.Command {
	return nounCmd("router", "Create, list, show, update and delete routers; attach subnets and ports",
		newRouterCreateCmd(a), newRouterListCmd(a), newShowCmd(a, routerKind),
		newRouterUpdateCmd(a), newDeleteCmd(a, routerKind),
		newRouterInterfaceCmd(a, true), newRouterInterfaceCmd(a, false))
}

// gatewayFlags are the external gateway flags of router create and update.
type gatewayFlags struct {
	network  string
	fixedIPs []string
	// set by validate
	snat  *bool
	fixed []fixedIPSpec
}

func (g *gatewayFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&g.network, "external-gateway", "", "external network (name or id) for the router's gateway")
	f.StringArrayVar(&g.fixedIPs, "fixed-ip", nil, "gateway address: subnet=SUBNET[,ip-address=IP] (repeatable)")
	addBoolPair(cmd, "enable-snat", "SNAT traffic leaving through the gateway (default)", "disable-snat", "no SNAT on the gateway")
}

func (g *gatewayFlags) validate(cmd *cobra.Command) error {
	var err error
	if g.snat, err = boolPair(cmd, "enable-snat", "disable-snat"); err != nil {
		return err
	}
	if g.fixed, err = parseFixedIPs("--fixed-ip", g.fixedIPs); err != nil {
		return err
	}
	return nil
}

// info builds external_gateway_info for network id netID.
func (g *gatewayFlags) info(ctx context.Context, s *session, netID string) (*routers.GatewayInfo, error) {
	gi := &routers.GatewayInfo{NetworkID: netID, EnableSNAT: g.snat}
	for _, f := range g.fixed {
		e := routers.ExternalFixedIP{IPAddress: f.ip}
		if f.subnet != "" {
			var err error
			if e.SubnetID, err = s.resolve(ctx, subnetKind, f.subnet, "--fixed-ip subnet"); err != nil {
				return nil, err
			}
		}
		gi.ExternalFixedIPs = append(gi.ExternalFixedIPs, e)
	}
	return gi, nil
}

type routerCreateOptions struct {
	api                 *apiOptions
	name, desc, project string
	adminUp             *bool
	gatewayFlags
}

func newRouterCreateCmd(a *apiOptions) *cobra.Command {
	o := &routerCreateOptions{api: a}
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a router",
		Example: `  offlane router create r1
  offlane router create r1 --external-gateway public
  offlane router create r2 --external-gateway public --disable-snat --fixed-ip ip-address=203.0.113.5`,
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
	cmd.Flags().StringVar(&o.project, "project", "", "owning project id (admin)")
	addBoolPair(cmd, "enable", "admin state up (default)", "disable", "admin state down")
	o.gatewayFlags.add(cmd)
	return cmd
}

func (o *routerCreateOptions) validate(cmd *cobra.Command) error {
	var err error
	if o.adminUp, err = boolPair(cmd, "enable", "disable"); err != nil {
		return err
	}
	if err := o.gatewayFlags.validate(cmd); err != nil {
		return err
	}
	if o.network == "" && (o.snat != nil || len(o.fixed) > 0) {
		return usageErrorf("--enable-snat, --disable-snat and --fixed-ip configure the gateway: they need --external-gateway")
	}
	if err := checkProject(o.project); err != nil {
		return err
	}
	return o.api.validate()
}

func (o *routerCreateOptions) run(cmd *cobra.Command) error {
	return mutateRun(cmd, o.api, routerKind, func(ctx context.Context, s *session) (gophercloud.Result, error) {
		opts := routers.CreateOpts{Name: o.name, Description: o.desc, AdminStateUp: o.adminUp, ProjectID: o.project}
		if o.network != "" {
			netID, err := s.resolve(ctx, networkKind, o.network, "--external-gateway")
			if err != nil {
				return gophercloud.Result{}, err
			}
			if opts.GatewayInfo, err = o.info(ctx, s, netID); err != nil {
				return gophercloud.Result{}, err
			}
		}
		return routers.Create(ctx, s.client, opts).Result, nil
	})
}

type routerListOptions struct {
	api                   *apiOptions
	name, project, status string
}

func newRouterListCmd(a *apiOptions) *cobra.Command {
	o := &routerListOptions{api: a}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List routers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkProject(o.project); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "only routers with this name")
	f.StringVar(&o.project, "project", "", "only routers of this project id")
	f.StringVar(&o.status, "status", "", "only routers in this status (ACTIVE, DOWN)")
	return cmd
}

func (o *routerListOptions) run(cmd *cobra.Command) error {
	return listRun(cmd, o.api, routerKind, func(_ context.Context, s *session) (pagination.Pager, error) {
		return routers.List(s.client, routers.ListOpts{Name: o.name, ProjectID: o.project, Status: o.status}), nil
	})
}

type routerUpdateOptions struct {
	api                 *apiOptions
	ref, name, desc     string
	routes              []string
	noRoutes, noGateway bool
	adminUp             *bool
	routeSpecs          []routeSpec
	gatewayFlags
}

func newRouterUpdateCmd(a *apiOptions) *cobra.Command {
	o := &routerUpdateOptions{api: a}
	cmd := &cobra.Command{
		Use:   "update NAME|ID",
		Short: "Change a router's attributes, gateway and static routes",
		Long: `Change a router's attributes, external gateway and static routes (extraroute).
--route replaces the whole route list; --no-route clears it. --enable-snat, --disable-snat
and --fixed-ip alone change the current gateway.`,
		Example: `  offlane router update r1 --external-gateway public
  offlane router update r1 --route destination=192.168.10.0/24,gateway=10.0.0.254
  offlane router update r1 --disable-snat
  offlane router update r1 --no-external-gateway --no-route`,
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
	f.StringVar(&o.name, "name", "", "new name")
	f.StringVar(&o.desc, "description", "", "new description")
	f.StringArrayVar(&o.routes, "route", nil, "destination=CIDR,gateway=IP static route (repeatable; replaces the list)")
	f.BoolVar(&o.noRoutes, "no-route", false, "remove every static route")
	f.BoolVar(&o.noGateway, "no-external-gateway", false, "remove the external gateway")
	addBoolPair(cmd, "enable", "admin state up", "disable", "admin state down")
	o.gatewayFlags.add(cmd)
	return cmd
}

func (o *routerUpdateOptions) validate(cmd *cobra.Command) error {
	var err error
	if o.adminUp, err = boolPair(cmd, "enable", "disable"); err != nil {
		return err
	}
	if err := o.gatewayFlags.validate(cmd); err != nil {
		return err
	}
	if o.routeSpecs, err = parseRoutes("--route", o.routes); err != nil {
		return err
	}
	if cmd.Flags().Changed("name") && o.name == "" {
		return usageErrorf("--name \"\": give the router a non-empty name")
	}
	if o.noRoutes && len(o.routes) > 0 {
		return usageErrorf("--route and --no-route contradict each other: pass one")
	}
	if o.noGateway && (o.network != "" || o.snat != nil || len(o.fixed) > 0) {
		return usageErrorf("--no-external-gateway contradicts --external-gateway, --enable-snat, --disable-snat and --fixed-ip: pass one")
	}
	if noChange(cmd) {
		return errNothingToUpdate("router")
	}
	return o.api.validate()
}

func (o *routerUpdateOptions) run(cmd *cobra.Command) error {
	return mutateRun(cmd, o.api, routerKind, func(ctx context.Context, s *session) (gophercloud.Result, error) {
		cur, err := s.find(ctx, routerKind, o.ref, "")
		if err != nil {
			return gophercloud.Result{}, err
		}
		id := str(cur["id"])
		opts := routers.UpdateOpts{Description: changedString(cmd, "description", o.desc), AdminStateUp: o.adminUp}
		opts.Name = o.name
		switch {
		case o.noGateway:
			opts.GatewayInfo = &routers.GatewayInfo{} // {}: remove the gateway
		case o.network != "":
			netID, err := s.resolve(ctx, networkKind, o.network, "--external-gateway")
			if err != nil {
				return gophercloud.Result{}, err
			}
			if opts.GatewayInfo, err = o.info(ctx, s, netID); err != nil {
				return gophercloud.Result{}, err
			}
		case o.snat != nil || len(o.fixed) > 0:
			gw, _ := cur["external_gateway_info"].(map[string]any)
			netID := str(gw["network_id"])
			if netID == "" {
				return gophercloud.Result{}, usageErrorf("router %q has no external gateway: add --external-gateway NETWORK", o.ref)
			}
			if opts.GatewayInfo, err = o.info(ctx, s, netID); err != nil {
				return gophercloud.Result{}, err
			}
		}
		switch {
		case o.noRoutes:
			opts.Routes = &[]routers.Route{}
		case len(o.routeSpecs) > 0:
			r := make([]routers.Route, len(o.routeSpecs))
			for i, rs := range o.routeSpecs {
				r[i] = routers.Route{DestinationCIDR: rs.destination, NextHop: rs.gateway}
			}
			opts.Routes = &r
		}
		return routers.Update(ctx, s.client, id, opts).Result, nil
	})
}

// routerInterfaceOptions is `router add-interface|remove-interface ROUTER --subnet S|--port P`.
type routerInterfaceOptions struct {
	api          *apiOptions
	add          bool
	ref          string
	subnet, port string
}

// interfaceKind decodes the add/remove_router_interface answer, which is not wrapped in
// a key: it is checked against gophercloud's routers.InterfaceInfo.
var interfaceKind = &kind{noun: "router", label: "router interface"}

func newRouterInterfaceCmd(a *apiOptions, add bool) *cobra.Command {
	o := &routerInterfaceOptions{api: a, add: add}
	use, short := "add-interface", "Attach a subnet (a new router port at its gateway address) or a port to a router"
	if !add {
		use, short = "remove-interface", "Detach a subnet or port from a router (its router port is deleted)"
	}
	cmd := &cobra.Command{
		Use:   use + " ROUTER (--subnet SUBNET | --port PORT)",
		Short: short,
		Example: "  offlane router " + use + " r1 --subnet sub1\n" +
			"  offlane router " + use + " r1 --port r1-port",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ref = args[0]
			if err := o.validate(use); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	cmd.Flags().StringVar(&o.subnet, "subnet", "", "subnet (name or id)")
	cmd.Flags().StringVar(&o.port, "port", "", "port (name or id)")
	return cmd
}

func (o *routerInterfaceOptions) validate(use string) error {
	if (o.subnet == "") == (o.port == "") {
		return usageErrorf("%s: pass exactly one of --subnet or --port", use)
	}
	return o.api.validate()
}

func (o *routerInterfaceOptions) run(cmd *cobra.Command) error {
	s, err := o.api.connect()
	if err != nil {
		return err
	}
	ctx, cancel := o.api.context(cmd)
	defer cancel()
	rid, err := s.resolve(ctx, routerKind, o.ref, "")
	if err != nil {
		return err
	}
	var subnetID, portID string
	if o.subnet != "" {
		if subnetID, err = s.resolve(ctx, subnetKind, o.subnet, "--subnet"); err != nil {
			return err
		}
	} else if portID, err = s.resolve(ctx, portKind, o.port, "--port"); err != nil {
		return err
	}
	var r routers.InterfaceResult
	if o.add {
		r = routers.AddInterface(ctx, s.client, rid, routers.AddInterfaceOpts{SubnetID: subnetID, PortID: portID})
	} else {
		r = routers.RemoveInterface(ctx, s.client, rid, routers.RemoveInterfaceOpts{SubnetID: subnetID, PortID: portID})
	}
	if r.Err != nil {
		return s.apiErr(r.Err)
	}
	if _, err := r.Extract(); err != nil {
		return fmt.Errorf("router interface answer does not decode into gophercloud's routers.InterfaceInfo: %w", err)
	}
	var body map[string]any
	if err := r.ExtractInto(&body); err != nil {
		return fmt.Errorf("router interface answer: %w", err)
	}
	raw, _ := json.Marshal(body)
	obj, err := rawObject(raw)
	if err != nil {
		return fmt.Errorf("router interface answer: %w", err)
	}
	return s.printOne(interfaceKind, obj)
}
