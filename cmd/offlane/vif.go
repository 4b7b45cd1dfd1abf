package main

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/offlane/offlane/kernel"
	"github.com/offlane/offlane/ovsdpdk"
)

// vifOptions are the flags of `offlane vif plug|unplug`: the helper a hypervisor
// integration (and the demo) uses to attach a network namespace "VM" to a `normal` port.
type vifOptions struct {
	api      *apiOptions
	port     string
	netns    string
	ifName   string
	ovsdb    string
	bridge   string
	ovsNetns string
	txOffl   bool
}

func newVifCmd(a *apiOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vif",
		Short: "Plug a network namespace into a port (a veth on the integration bridge), or unplug it",
		Long: `vif attaches a network namespace to a tenant port the way a hypervisor plugs a VM:
a veth pair whose inner end, eth0 by default, carries the port's MAC, fixed IPs (with their
subnets' prefix lengths), MTU (the network's) and a default route via the subnet's gateway,
and whose outer end (tap<port id[:11]>) joins the integration bridge with
external_ids:iface-id=<port id>. The agent then binds the port and installs its flows.`,
	}
	for _, plug := range []bool{true, false} {
		o := &vifOptions{api: a}
		c := &cobra.Command{
			Use:   "plug --port PORT --netns NAMESPACE",
			Short: "Create the namespace's interface for a port and attach it to the integration bridge",
			Example: `  offlane vif plug --port vm1 --netns vm1
  offlane vif unplug --port vm1 --netns vm1`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := o.validate(plug); err != nil {
					return err
				}
				return o.run(cmd, plug)
			},
		}
		if !plug {
			c.Use, c.Short = "unplug --port PORT --netns NAMESPACE", "Remove a port's namespace interface and its integration bridge port"
		}
		f := c.Flags()
		f.StringVar(&o.port, "port", "", "the port (name or ID), required")
		f.StringVar(&o.netns, "netns", "", "the network namespace (created when missing), required")
		f.StringVar(&o.ifName, "ifname", "eth0", "the interface name inside the namespace")
		f.StringVar(&o.ovsdb, "ovsdb", ovsdpdk.DefaultOVSDB, "the OVSDB endpoint")
		f.StringVar(&o.bridge, "bridge", ovsdpdk.DefaultIntegrationBridge, "the integration bridge")
		f.StringVar(&o.ovsNetns, "ovs-netns", "", "the network namespace ovs-vswitchd runs in (\"\" = this one; labs run it in its own)")
		if plug {
			f.BoolVar(&o.txOffl, "tx-offload", false, "keep TX checksum offload on (off by default: veths on the userspace datapath need it off)")
		}
		a.addFlags(c)
		cmd.AddCommand(c)
	}
	return cmd
}

func (o *vifOptions) validate(plug bool) error {
	switch {
	case o.port == "":
		return usageErrorf("--port is required: the port (name or ID) to plug")
	case o.netns == "":
		return usageErrorf("--netns is required: the network namespace of the VM")
	}
	return nil
}

func (o *vifOptions) run(cmd *cobra.Command, plug bool) error {
	s, err := o.api.connect()
	if err != nil {
		return err
	}
	ctx, cancel := o.api.context(cmd)
	defer cancel()
	port, err := s.find(ctx, portKind, o.port, "--port")
	if err != nil {
		return s.apiErr(err)
	}
	id := str(port["id"])
	hostIf := kernel.IfName(kernel.PrefixTap, id)

	client, err := ovsdpdk.Connect(ctx, ovsdpdk.Options{Endpoint: o.ovsdb, Logger: o.api.g.logger().Named("ovsdb")})
	if err != nil {
		return fmt.Errorf("%w (is ovsdb-server running? give --ovsdb)", err)
	}
	defer client.Close()
	plugger := kernel.NewPlugger(kernel.PlugOptions{HostNamespace: o.ovsNetns, Switch: ovsdpdk.NewPorts(client, ovsdpdk.PortsOptions{Bridge: o.bridge})})
	if !plug {
		if err := plugger.Unplug(ctx, o.netns, o.ifName, hostIf); err != nil {
			return err
		}
		fmt.Fprintf(o.api.g.stdout, "unplugged port %s (%s) from namespace %s\n", id, hostIf, o.netns)
		return nil
	}

	spec := kernel.PlugSpec{Namespace: o.netns, IfName: o.ifName, HostIfName: hostIf, MAC: str(port["mac_address"]),
		IfaceID: id, NoTxChecksum: !o.txOffl}
	if n, err := s.find(ctx, networkKind, str(port["network_id"]), "network_id"); err == nil {
		spec.MTU, _ = strconv.Atoi(str(n["mtu"]))
	} else {
		return s.apiErr(err)
	}
	ips, _ := port["fixed_ips"].([]any)
	for _, x := range ips {
		f, _ := x.(map[string]any)
		addr, err := netip.ParseAddr(str(f["ip_address"]))
		if err != nil {
			return fmt.Errorf("port %s: fixed IP %q: %w", id, str(f["ip_address"]), err)
		}
		sn, err := s.find(ctx, subnetKind, str(f["subnet_id"]), "subnet_id")
		if err != nil {
			return s.apiErr(err)
		}
		cidr, err := netip.ParsePrefix(str(sn["cidr"]))
		if err != nil {
			return fmt.Errorf("subnet %s: cidr %q: %w", str(sn["id"]), str(sn["cidr"]), err)
		}
		spec.Addrs = append(spec.Addrs, netip.PrefixFrom(addr, cidr.Bits()))
		if gw, err := netip.ParseAddr(str(sn["gateway_ip"])); err == nil && !spec.Gateway.IsValid() && gw.Is4() == addr.Is4() {
			spec.Gateway = gw
		}
	}
	changes, err := plugger.Plug(ctx, spec)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.api.g.stdout, "plugged port %s into namespace %s as %s (%s on %s, %d changes)\n", id, o.netns, o.ifName, hostIf, o.bridge, len(changes))
	for _, c := range changes {
		fmt.Fprintf(o.api.g.stdout, "  %s\n", c)
	}
	return nil
}
