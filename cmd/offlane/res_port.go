package main

import (
	"context"
	"net"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsecurity"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/qos/policies"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"github.com/spf13/cobra"
)

// portView is a port as gophercloud users decode it, with the extensions offlane serves.
type portView struct {
	ports.Port
	portsbinding.PortsBindingExt
	portsecurity.PortSecurityExt
	policies.QoSPolicyExt
}

var portKind = &kind{
	noun: "port", label: "port", key: "port", listKey: "ports", nameAttr: "name",
	get: func(ctx context.Context, c *gophercloud.ServiceClient, id string) gophercloud.Result {
		return ports.Get(ctx, c, id).Result
	},
	byName: func(c *gophercloud.ServiceClient, name string) pagination.Pager {
		return ports.List(c, ports.ListOpts{Name: name})
	},
	delete: func(ctx context.Context, c *gophercloud.ServiceClient, id string) error {
		return ports.Delete(ctx, c, id).ExtractErr()
	},
	typed: func() any { return new(portView) },
	columns: []column{
		{"ID", attr("id")},
		{"NAME", attr("name")},
		{"MAC ADDRESS", attr("mac_address")},
		{"FIXED IPS", func(_ *session, _ context.Context, o map[string]any) string {
			l, _ := o["fixed_ips"].([]any)
			var out []string
			for _, e := range l {
				m, _ := e.(map[string]any)
				out = append(out, str(m["ip_address"]))
			}
			return strings.Join(out, "\n")
		}},
		{"STATUS", attr("status")},
	},
}

func newPortCmd(a *apiOptions) *cobra.Command {
	return nounCmd("port", "Create, list, show, update and delete ports",
		newPortCreateCmd(a), newPortListCmd(a), newShowCmd(a, portKind),
		newPortUpdateCmd(a), newDeleteCmd(a, portKind))
}

// portFlags are the attribute flags port create and port update share.
type portFlags struct {
	name, desc, device, deviceOwner, host, vnicType, qos, mac string
	fixedIPs, secGroups, allowed, profile                     []string
	noFixedIP, noSecGroup, noAllowed, noQoS, noProfile        bool
	// set by validate
	fixed       []fixedIPSpec
	pairs       []addressPairSpec
	profileMap  map[string]any
	adminUp, ps *bool
}

func (p *portFlags) add(cmd *cobra.Command, update bool) {
	f := cmd.Flags()
	repl := ""
	if update {
		f.StringVar(&p.name, "name", "", "new name")
		repl = "; replaces the list"
	}
	f.StringVar(&p.desc, "description", "", "description")
	f.StringVar(&p.device, "device", "", "device_id: the VM, router or service using the port")
	f.StringVar(&p.deviceOwner, "device-owner", "", "device_owner, e.g. compute:nova")
	f.StringVar(&p.host, "host", "", "binding:host_id: the node the port is bound to")
	f.StringVar(&p.vnicType, "vnic-type", "", "binding:vnic_type: "+fmtList(vnicTypes))
	f.StringArrayVar(&p.profile, "binding-profile", nil, "binding:profile entry as key=value or a JSON object (repeatable)")
	f.StringArrayVar(&p.fixedIPs, "fixed-ip", nil, "subnet=SUBNET[,ip-address=IP] or ip-address=IP (repeatable"+repl+")")
	f.BoolVar(&p.noFixedIP, "no-fixed-ip", false, "no fixed IP at all")
	f.StringArrayVar(&p.secGroups, "security-group", nil, "security group name or id (repeatable"+repl+"; default: the project's default group)")
	f.BoolVar(&p.noSecGroup, "no-security-group", false, "no security group")
	f.StringArrayVar(&p.allowed, "allowed-address", nil, "ip-address=IP|CIDR[,mac-address=MAC] the port may also send from (repeatable"+repl+")")
	f.StringVar(&p.qos, "qos-policy", "", "QoS policy (name or id)")
	addBoolPair(cmd, "enable", "admin state up (default)", "disable", "admin state down")
	addBoolPair(cmd, "enable-port-security", "port security on: anti-spoofing and security groups (default)",
		"disable-port-security", "port security off (needs no security group)")
	if update {
		f.BoolVar(&p.noAllowed, "no-allowed-address", false, "clear the allowed address pairs")
		f.BoolVar(&p.noQoS, "no-qos-policy", false, "detach the QoS policy")
		f.BoolVar(&p.noProfile, "no-binding-profile", false, "clear binding:profile")
	} else {
		f.StringVar(&p.mac, "mac-address", "", "MAC address (default: generated fa:16:3e:...)")
	}
}

func (p *portFlags) validate(cmd *cobra.Command) error {
	var err error
	if p.adminUp, err = boolPair(cmd, "enable", "disable"); err != nil {
		return err
	}
	if p.ps, err = boolPair(cmd, "enable-port-security", "disable-port-security"); err != nil {
		return err
	}
	if p.vnicType != "" {
		if err := oneOf("vnic-type", p.vnicType, vnicTypes...); err != nil {
			return err
		}
	}
	if p.fixed, err = parseFixedIPs("--fixed-ip", p.fixedIPs); err != nil {
		return err
	}
	if p.pairs, err = parseAllowedAddresses("--allowed-address", p.allowed); err != nil {
		return err
	}
	if p.profileMap, err = parseBindingProfile("--binding-profile", p.profile); err != nil {
		return err
	}
	if p.mac != "" {
		if hw, err := net.ParseMAC(p.mac); err != nil || len(hw) != 6 {
			return usageErrorf("--mac-address %q: want a MAC address such as fa:16:3e:12:34:56", p.mac)
		}
	}
	for _, c := range [][2]string{{"fixed-ip", "no-fixed-ip"}, {"security-group", "no-security-group"},
		{"allowed-address", "no-allowed-address"}, {"qos-policy", "no-qos-policy"}, {"binding-profile", "no-binding-profile"}} {
		if cmd.Flags().Changed(c[0]) && cmd.Flags().Changed(c[1]) {
			return usageErrorf("--%s and --%s contradict each other: pass one", c[0], c[1])
		}
	}
	return nil
}

// resolved turns the flags' references into ids: fixed IPs' subnets, security groups,
// the QoS policy.
func (p *portFlags) resolved(ctx context.Context, s *session) (fixed []ports.IP, sgs []string, qos string, err error) {
	for _, f := range p.fixed {
		ip := ports.IP{IPAddress: f.ip}
		if f.subnet != "" {
			if ip.SubnetID, err = s.resolve(ctx, subnetKind, f.subnet, "--fixed-ip subnet"); err != nil {
				return nil, nil, "", err
			}
		}
		fixed = append(fixed, ip)
	}
	for _, g := range p.secGroups {
		id, err := s.resolve(ctx, securityGroupKind, g, "--security-group")
		if err != nil {
			return nil, nil, "", err
		}
		sgs = append(sgs, id)
	}
	if p.qos != "" {
		if qos, err = s.resolve(ctx, qosPolicyKind, p.qos, "--qos-policy"); err != nil {
			return nil, nil, "", err
		}
	}
	return fixed, sgs, qos, nil
}

func (p *portFlags) addressPairs() []ports.AddressPair {
	out := make([]ports.AddressPair, len(p.pairs))
	for i, a := range p.pairs {
		out[i] = ports.AddressPair{IPAddress: a.ip, MACAddress: a.mac}
	}
	return out
}

type portCreateOptions struct {
	api              *apiOptions
	network, project string
	portFlags
}

func newPortCreateCmd(a *apiOptions) *cobra.Command {
	o := &portCreateOptions{api: a}
	cmd := &cobra.Command{
		Use:   "create NAME --network NETWORK",
		Short: "Create a port",
		Example: `  offlane port create vm1-eth0 --network net1
  offlane port create vm1-eth1 --network net1 --fixed-ip subnet=sub1,ip-address=10.0.0.50 \
      --vnic-type direct --host compute-1 --binding-profile pci_slot=0000:3b:02.1
  offlane port create vip --network net1 --disable-port-security --no-security-group`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			if err := o.validate(cmd); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	cmd.Flags().StringVar(&o.network, "network", "", "network (name or id) of the port (required)")
	cmd.Flags().StringVar(&o.project, "project", "", "owning project id (admin)")
	o.portFlags.add(cmd, false)
	return cmd
}

func (o *portCreateOptions) validate(cmd *cobra.Command) error {
	if o.network == "" {
		return usageErrorf("--network is required: the network (name or id) to create the port on")
	}
	if err := o.portFlags.validate(cmd); err != nil {
		return err
	}
	if err := checkProject(o.project); err != nil {
		return err
	}
	return o.api.validate()
}

func (o *portCreateOptions) run(cmd *cobra.Command) error {
	return mutateRun(cmd, o.api, portKind, func(ctx context.Context, s *session) (gophercloud.Result, error) {
		netID, err := s.resolve(ctx, networkKind, o.network, "--network")
		if err != nil {
			return gophercloud.Result{}, err
		}
		fixed, sgs, qos, err := o.resolved(ctx, s)
		if err != nil {
			return gophercloud.Result{}, err
		}
		opts := ports.CreateOpts{
			NetworkID: netID, Name: o.name, Description: o.desc, AdminStateUp: o.adminUp, MACAddress: o.mac,
			DeviceID: o.device, DeviceOwner: o.deviceOwner, ProjectID: o.project, AllowedAddressPairs: o.addressPairs(),
		}
		switch {
		case o.noFixedIP:
			opts.FixedIPs = []ports.IP{}
		case len(fixed) > 0:
			opts.FixedIPs = fixed
		}
		switch {
		case o.noSecGroup:
			opts.SecurityGroups = &[]string{}
		case len(sgs) > 0:
			opts.SecurityGroups = &sgs
		}
		var b ports.CreateOptsBuilder = opts
		b = portsbinding.CreateOptsExt{CreateOptsBuilder: b, HostID: o.host, VNICType: o.vnicType, Profile: nilIfEmpty(o.profileMap)}
		b = portsecurity.PortCreateOptsExt{CreateOptsBuilder: b, PortSecurityEnabled: o.ps}
		b = policies.PortCreateOptsExt{CreateOptsBuilder: b, QoSPolicyID: qos}
		return ports.Create(ctx, s.client, b).Result, nil
	})
}

func nilIfEmpty(m map[string]any) map[string]any {
	if len(m) == 0 {
		return nil
	}
	return m
}

type portUpdateOptions struct {
	api *apiOptions
	ref string
	portFlags
}

func newPortUpdateCmd(a *apiOptions) *cobra.Command {
	o := &portUpdateOptions{api: a}
	cmd := &cobra.Command{
		Use:   "update NAME|ID",
		Short: "Change a port's attributes",
		Long: `Change a port's attributes. List flags (--fixed-ip, --security-group,
--allowed-address, --binding-profile) replace the whole list; the --no-* flags clear it.`,
		Example: `  offlane port update vm1-eth0 --security-group web --security-group ssh
  offlane port update vm1-eth0 --allowed-address ip-address=10.0.0.100 --host compute-2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ref = args[0]
			if err := o.validate(cmd); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	o.portFlags.add(cmd, true)
	return cmd
}

func (o *portUpdateOptions) validate(cmd *cobra.Command) error {
	if err := o.portFlags.validate(cmd); err != nil {
		return err
	}
	if noChange(cmd) {
		return errNothingToUpdate("port")
	}
	return o.api.validate()
}

func (o *portUpdateOptions) run(cmd *cobra.Command) error {
	return mutateRun(cmd, o.api, portKind, func(ctx context.Context, s *session) (gophercloud.Result, error) {
		id, err := s.resolve(ctx, portKind, o.ref, "")
		if err != nil {
			return gophercloud.Result{}, err
		}
		fixed, sgs, qos, err := o.resolved(ctx, s)
		if err != nil {
			return gophercloud.Result{}, err
		}
		opts := ports.UpdateOpts{
			Name: changedString(cmd, "name", o.name), Description: changedString(cmd, "description", o.desc),
			AdminStateUp: o.adminUp, DeviceID: changedString(cmd, "device", o.device),
			DeviceOwner: changedString(cmd, "device-owner", o.deviceOwner),
		}
		switch {
		case o.noFixedIP:
			opts.FixedIPs = []ports.IP{}
		case len(fixed) > 0:
			opts.FixedIPs = fixed
		}
		switch {
		case o.noSecGroup:
			opts.SecurityGroups = &[]string{}
		case len(sgs) > 0:
			opts.SecurityGroups = &sgs
		}
		switch {
		case o.noAllowed:
			opts.AllowedAddressPairs = &[]ports.AddressPair{}
		case len(o.pairs) > 0:
			pairs := o.addressPairs()
			opts.AllowedAddressPairs = &pairs
		}
		var b ports.UpdateOptsBuilder = opts
		bind := portsbinding.UpdateOptsExt{UpdateOptsBuilder: b, HostID: changedString(cmd, "host", o.host), VNICType: o.vnicType}
		switch {
		case o.noProfile:
			bind.Profile = map[string]any{} // gophercloud sends an empty profile as null: cleared
		case len(o.profileMap) > 0:
			bind.Profile = o.profileMap
		}
		b = bind
		b = portsecurity.PortUpdateOptsExt{UpdateOptsBuilder: b, PortSecurityEnabled: o.ps}
		var qosID *string
		switch {
		case o.noQoS:
			qosID = ptr("")
		case qos != "":
			qosID = &qos
		}
		b = policies.PortUpdateOptsExt{UpdateOptsBuilder: b, QoSPolicyID: qosID}
		return ports.Update(ctx, s.client, id, b).Result, nil
	})
}

type portListOptions struct {
	api                                                    *apiOptions
	name, network, project, device, owner, mac, router, sg string
	status                                                 string
	fixedIPs                                               []string
	fixed                                                  []fixedIPSpec // set by validate
}

func newPortListCmd(a *apiOptions) *cobra.Command {
	o := &portListOptions{api: a}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List ports",
		Example: `  offlane port list --network net1
  offlane port list --router r1
  offlane port list --fixed-ip ip-address=10.0.0.5`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "only ports with this name")
	f.StringVar(&o.network, "network", "", "only ports on this network (name or id)")
	f.StringVar(&o.router, "router", "", "only ports of this router (name or id)")
	f.StringVar(&o.device, "device", "", "only ports with this device_id")
	f.StringVar(&o.owner, "device-owner", "", "only ports with this device_owner, e.g. network:router_interface")
	f.StringVar(&o.mac, "mac-address", "", "only the port with this MAC address")
	f.StringVar(&o.sg, "security-group", "", "only ports in this security group (name or id)")
	f.StringVar(&o.status, "status", "", "only ports in this status (ACTIVE, DOWN, BUILD)")
	f.StringVar(&o.project, "project", "", "only ports of this project id")
	f.StringArrayVar(&o.fixedIPs, "fixed-ip", nil, "only ports with subnet=SUBNET and/or ip-address=IP (repeatable)")
	return cmd
}

func (o *portListOptions) validate() error {
	var err error
	if o.fixed, err = parseFixedIPs("--fixed-ip", o.fixedIPs); err != nil {
		return err
	}
	if o.mac != "" {
		if _, err := net.ParseMAC(o.mac); err != nil {
			return usageErrorf("--mac-address %q: want a MAC address such as fa:16:3e:12:34:56", o.mac)
		}
	}
	if o.router != "" && o.device != "" {
		return usageErrorf("--router and --device both select device_id: pass one")
	}
	return checkProject(o.project)
}

func (o *portListOptions) run(cmd *cobra.Command) error {
	return listRun(cmd, o.api, portKind, func(ctx context.Context, s *session) (pagination.Pager, error) {
		opts := ports.ListOpts{Name: o.name, ProjectID: o.project, DeviceID: o.device, DeviceOwner: o.owner,
			MACAddress: strings.ToLower(o.mac), Status: o.status}
		var err error
		if o.network != "" {
			if opts.NetworkID, err = s.resolve(ctx, networkKind, o.network, "--network"); err != nil {
				return pagination.Pager{}, err
			}
		}
		if o.router != "" {
			if opts.DeviceID, err = s.resolve(ctx, routerKind, o.router, "--router"); err != nil {
				return pagination.Pager{}, err
			}
		}
		if o.sg != "" {
			id, err := s.resolve(ctx, securityGroupKind, o.sg, "--security-group")
			if err != nil {
				return pagination.Pager{}, err
			}
			opts.SecurityGroups = []string{id}
		}
		for _, f := range o.fixed {
			fo := ports.FixedIPOpts{IPAddress: f.ip}
			if f.subnet != "" {
				if fo.SubnetID, err = s.resolve(ctx, subnetKind, f.subnet, "--fixed-ip subnet"); err != nil {
					return pagination.Pager{}, err
				}
			}
			opts.FixedIPs = append(opts.FixedIPs, fo)
		}
		return ports.List(s.client, opts), nil
	})
}
