package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/sriov"
)

// sriovCommon are the flags every `offlane sriov` subcommand shares.
type sriovCommon struct {
	g      *globalOptions
	output string
	ovsdb  string
}

func (c *sriovCommon) addFlags(cmd *cobra.Command, withOVS bool) {
	cmd.Flags().StringVarP(&c.output, "output", "o", "table", "output format: table, json or yaml")
	if withOVS {
		cmd.Flags().StringVar(&c.ovsdb, "ovsdb", "", "OVSDB endpoint to read OVS ports from (unix:PATH, tcp:HOST:PORT); default "+ovsdpdk.DefaultOVSDB+" when its socket exists")
	}
}

func (c *sriovCommon) validate() error {
	switch c.output {
	case "table", "json", "yaml":
	default:
		return usageErrorf("--output %q: use table, json or yaml", c.output)
	}
	if c.ovsdb != "" && !strings.HasPrefix(c.ovsdb, "unix:") && !strings.HasPrefix(c.ovsdb, "tcp:") && !strings.HasPrefix(c.ovsdb, "ssl:") {
		return usageErrorf("--ovsdb %q: use unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT", c.ovsdb)
	}
	return nil
}

// manager wires the live SR-IOV manager, with OVS ports when an OVSDB is named or the
// default socket exists (absent OVS is not an error: the OVS columns stay empty).
func (c *sriovCommon) manager() (*sriov.Manager, error) {
	log := c.g.logger()
	var ovs sriov.OVSPorts
	ep := c.ovsdb
	if ep == "" {
		if _, err := os.Stat(strings.TrimPrefix(ovsdpdk.DefaultOVSDB, "unix:")); err == nil {
			ep = ovsdpdk.DefaultOVSDB
		}
	}
	if ep != "" {
		ovs = ovsdbPorts{endpoint: ep, log: log.Named("ovs")}
	}
	m, err := sriov.NewLive("/", ovs, log)
	if err != nil {
		return nil, fmt.Errorf("sriov: %w", err)
	}
	return m, nil
}

// ovsdbPorts adapts ovsdpdk's OVSDB client to sriov.OVSPorts: one connection per call.
type ovsdbPorts struct {
	endpoint string
	log      *zap.Logger
}

func (o ovsdbPorts) Interfaces(ctx context.Context) ([]sriov.OVSInterface, error) {
	ctx, cancel := context.WithTimeout(ctx, ovsProbeTimeout)
	defer cancel()
	c, err := ovsdpdk.Connect(ctx, ovsdpdk.Options{Endpoint: o.endpoint, Logger: o.log, ConnectTimeout: ovsProbeTimeout})
	if err != nil {
		return nil, fmt.Errorf("OVSDB %s: %w", o.endpoint, err)
	}
	defer c.Close()
	st, err := c.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("OVSDB %s: %w", o.endpoint, err)
	}
	var out []sriov.OVSInterface
	for _, br := range st.Bridges {
		for _, pu := range br.Ports {
			p := st.Ports[pu]
			if p == nil {
				continue
			}
			for _, iu := range p.Interfaces {
				if i := st.Interfaces[iu]; i != nil {
					out = append(out, sriov.OVSInterface{Bridge: br.Name, Port: p.Name, Name: i.Name, IfaceID: i.ExternalIDs["iface-id"]})
				}
			}
		}
	}
	return out, nil
}

// sriovExit maps a refusal (nothing was changed) to exit code 2.
func sriovExit(err error) error {
	for _, s := range []error{sriov.ErrInvalid, sriov.ErrUnsupported, sriov.ErrNoDevice, sriov.ErrNoSRIOV, sriov.ErrInUse} {
		if errors.Is(err, s) {
			return usageError{err}
		}
	}
	return err
}

func newSriovCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sriov",
		Short: "Create VFs, switch eswitch modes, configure VFs and list VF identities",
		Long: `sriov manages the SR-IOV NICs of this node: the number of VFs of a PF, its eswitch mode
(legacy or switchdev, over devlink), hw-tc-offload, the VFs' driver (vfio-pci or the
kernel driver), legacy-mode VF settings, and the identity of every VF across PCI,
netdevs, representors, OVS ports and tenant ports.`,
		Args: cobra.NoArgs,
	}
	vf := &cobra.Command{Use: "vf", Short: "Configure VFs (legacy mode)", Args: cobra.NoArgs}
	vf.AddCommand(newSriovVFSetCmd(g))
	cmd.AddCommand(newSriovListCmd(g), newSriovConfigureCmd(g), vf)
	return cmd
}

// ---------------------------------------------------------------- list

type sriovListOptions struct{ sriovCommon }

func newSriovListCmd(g *globalOptions) *cobra.Command {
	o := &sriovListOptions{sriovCommon{g: g}}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List SR-IOV PFs and every VF's identity (PCI, netdev, representor, OVS port, tenant port)",
		Long: `list rebuilds the VF identity registry from the node — devlink ports, sysfs
phys_port_name and phys_switch_id, the PF drivers' VF lists, and OVS when reachable —
and prints one block per SR-IOV capable PF. Inconsistencies between the sources are
printed as warnings. It changes nothing.`,
		Example: `  offlane sriov list
  offlane sriov list -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	o.addFlags(cmd, true)
	return cmd
}

func (o *sriovListOptions) run(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	m, err := o.manager()
	if err != nil {
		return err
	}
	reg, err := m.Registry(ctx)
	if err != nil {
		return fmt.Errorf("sriov list: %w", err)
	}
	if o.output != "table" {
		return writeStructured(o.g.stdout, o.output, reg)
	}
	return writeRegistryTable(o.g.stdout, reg)
}

func onOffPtr(b *bool) string {
	if b == nil {
		return "-"
	}
	if *b {
		return "on"
	}
	return "off"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeRegistryTable(w io.Writer, reg *sriov.Registry) error {
	if len(reg.PFs) == 0 {
		fmt.Fprintln(w, "no SR-IOV capable device on this node")
	}
	for i, p := range reg.PFs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		total := "?"
		if p.PF.TotalVFs >= 0 {
			total = strconv.Itoa(p.PF.TotalVFs)
		}
		mode := p.PF.EswitchMode
		if mode == "" {
			mode = "no eswitch"
		}
		fmt.Fprintf(w, "%s  netdev %s  driver %s", p.PF.Device, dash(p.PF.Netdev), dash(p.PF.Driver))
		if p.Model != "" {
			fmt.Fprintf(w, "  model %s", p.Model)
		}
		fmt.Fprintf(w, "\n  vfs %d/%s  eswitch %s  hw-tc-offload %s  switch-id %s\n", p.PF.NumVFs, total, mode, onOffPtr(p.PF.HWTCOffload), dash(p.SwitchID))
		if len(p.VFs) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  VF\tPCI\tNETDEV\tDRIVER\tMAC\tREPRESENTOR\tOVS PORT\tTENANT PORT")
		for _, e := range p.VFs {
			ovs := "-"
			if e.OVSPort != "" {
				ovs = e.OVSBridge + "/" + e.OVSPort
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.VFIndex, dash(e.VFPCI), dash(e.VFNetdev), dash(e.VFDriver), dash(e.VFMAC), dash(e.Representor), ovs, dash(e.TenantPort))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(reg.Warnings) > 0 {
		fmt.Fprintln(w, "\nwarnings:")
		for _, s := range reg.Warnings {
			fmt.Fprintln(w, "  - "+s)
		}
	}
	return nil
}

// ---------------------------------------------------------------- configure

type sriovConfigureOptions struct {
	sriovCommon
	pf       string
	numVFs   int
	mode     string
	vfDriver string
	dryRun   bool
	force    bool
}

func newSriovConfigureCmd(g *globalOptions) *cobra.Command {
	o := &sriovConfigureOptions{sriovCommon: sriovCommon{g: g}}
	cmd := &cobra.Command{
		Use:   "configure",
		Short: "Set a PF's VF count, eswitch mode and VF driver (idempotent)",
		Long: `configure brings a PF to the wanted VF count and eswitch mode in the order NICs
need: VFs destroyed (sriov_numvfs 0) before the eswitch mode changes, the mode set over
devlink, the VFs re-created, hw-tc-offload turned on in switchdev mode, then the VFs
bound to --vf-driver. It reads the result back. Running it again changes nothing.

It refuses, changing nothing (exit 2), what the device cannot do (no SR-IOV, more VFs
than sriov_totalvfs, switchdev without a devlink eswitch) and changes that would
destroy or rebind VFs in use (a VF netdev or representor enslaved or in OVS, a VF
netdev up, a vfio group held open); --force overrides the in-use check.`,
		Example: `  offlane sriov configure --pf ens1f0np0 --num-vfs 8 --mode switchdev
  offlane sriov configure --pf 0000:3b:00.0 --num-vfs 4 --mode legacy --vf-driver vfio-pci --dry-run
  offlane sriov configure --pf netdevsim/netdevsim1 --num-vfs 4 --mode switchdev`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(cmd); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.pf, "pf", "", "the PF: netdev (ens1f0np0), PCI address (0000:3b:00.0) or devlink handle (pci/0000:3b:00.0)")
	f.IntVar(&o.numVFs, "num-vfs", -1, "number of VFs (0 removes them)")
	f.StringVar(&o.mode, "mode", "", "eswitch mode: switchdev or legacy")
	f.StringVar(&o.vfDriver, "vf-driver", "", "bind the VFs to vfio-pci or to their kernel driver (kernel); default: leave them")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the steps without changing anything")
	f.BoolVar(&o.force, "force", false, "destroy or rebind VFs even when they are in use")
	o.addFlags(cmd, true)
	return cmd
}

func (o *sriovConfigureOptions) validate(cmd *cobra.Command) error {
	if err := o.sriovCommon.validate(); err != nil {
		return err
	}
	var missing []string
	for _, f := range []string{"pf", "num-vfs", "mode"} {
		if !cmd.Flags().Changed(f) {
			missing = append(missing, "--"+f)
		}
	}
	if len(missing) > 0 {
		return usageErrorf("missing %s: e.g. offlane sriov configure --pf ens1f0np0 --num-vfs 4 --mode switchdev", strings.Join(missing, ", "))
	}
	if o.numVFs < 0 {
		return usageErrorf("--num-vfs %d: give 0 or more", o.numVFs)
	}
	if o.mode != sriov.ModeSwitchdev && o.mode != sriov.ModeLegacy {
		return usageErrorf("--mode %q: use switchdev or legacy", o.mode)
	}
	if o.vfDriver != "" && o.vfDriver != sriov.VFDriverVFIO && o.vfDriver != sriov.VFDriverKernel {
		return usageErrorf("--vf-driver %q: use vfio-pci or kernel", o.vfDriver)
	}
	return nil
}

func (o *sriovConfigureOptions) run(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	m, err := o.manager()
	if err != nil {
		return err
	}
	spec := sriov.Spec{PF: o.pf, NumVFs: o.numVFs, Mode: o.mode, VFDriver: o.vfDriver, Force: o.force}
	res, err := m.Configure(ctx, spec, o.dryRun)
	if res == nil && err != nil {
		return sriovExit(err) // refused before any change
	}
	if o.output != "table" {
		if werr := writeStructured(o.g.stdout, o.output, res); werr != nil {
			return werr
		}
		return err
	}
	writeConfigureTable(o.g.stdout, res, err == nil)
	return err
}

func pfSummary(p *sriov.PF) string {
	mode := p.EswitchMode
	if mode == "" {
		mode = "no eswitch"
	}
	return fmt.Sprintf("%d VFs, %s, hw-tc-offload %s", p.NumVFs, mode, onOffPtr(p.HWTCOffload))
}

func writeConfigureTable(w io.Writer, res *sriov.Result, ok bool) {
	b := res.Before
	fmt.Fprintf(w, "%s (netdev %s, driver %s): %s\n", b.Device, dash(b.Netdev), dash(b.Driver), pfSummary(b))
	switch {
	case len(res.Steps) == 0:
		fmt.Fprintln(w, "nothing to change")
		return
	case res.DryRun:
		fmt.Fprintf(w, "dry run: would apply %d steps:\n", len(res.Steps))
	default:
		fmt.Fprintf(w, "%d steps:\n", len(res.Steps))
	}
	for i, s := range res.Steps {
		fmt.Fprintf(w, "  %d. %s\n", i+1, s)
	}
	if ok && res.After != nil {
		fmt.Fprintf(w, "now: %s\n", pfSummary(res.After))
	}
}

// ---------------------------------------------------------------- vf set

type sriovVFSetOptions struct {
	sriovCommon
	pf                   string
	vf                   int
	mac                  string
	vlan, qos            int
	vlanProto            string
	trust, spoofchk      string
	linkState            string
	minTxRate, maxTxRate int
	settings             sriov.VFSettings
}

func newSriovVFSetCmd(g *globalOptions) *cobra.Command {
	o := &sriovVFSetOptions{sriovCommon: sriovCommon{g: g}}
	cmd := &cobra.Command{
		Use:   "set",
		Short: "Set a VF's MAC, VLAN/QoS, trust, spoof checking, link state and tx rates",
		Long: `set changes the given settings of one VF over rtnetlink (like ip link set PF vf N …),
trust and spoof checking first, then MAC, VLAN, rates and the link state, and reads
them back. Settings not given are left alone; settings already in place are not sent.
In switchdev mode the MAC is set through devlink (port function hw_addr) and the rates
through the VF port's devlink rate object (tx_share, tx_max); VLAN, trust, spoof
checking and link state are refused there: tc rules on the representor do that.`,
		Example: `  offlane sriov vf set --pf ens1f0np0 --vf 0 --mac 02:00:00:00:00:10 --vlan 100 --qos 3
  offlane sriov vf set --pf ens1f0np0 --vf 1 --trust on --spoofchk off --max-tx-rate 1000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(cmd); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.pf, "pf", "", "the PF: netdev, PCI address or devlink handle")
	f.IntVar(&o.vf, "vf", -1, "VF index")
	f.StringVar(&o.mac, "mac", "", "VF MAC address")
	f.IntVar(&o.vlan, "vlan", 0, "port VLAN, 0 to remove it")
	f.IntVar(&o.qos, "qos", 0, "802.1p priority 0-7 of the port VLAN")
	f.StringVar(&o.vlanProto, "vlan-proto", "", "VLAN protocol: 802.1Q or 802.1ad")
	f.StringVar(&o.trust, "trust", "", "on or off")
	f.StringVar(&o.spoofchk, "spoofchk", "", "on or off")
	f.StringVar(&o.linkState, "link-state", "", "auto, enable or disable")
	f.IntVar(&o.minTxRate, "min-tx-rate", 0, "minimum tx rate, Mbit/s")
	f.IntVar(&o.maxTxRate, "max-tx-rate", 0, "maximum tx rate, Mbit/s (0: unlimited)")
	o.addFlags(cmd, false)
	return cmd
}

func parseOnOff(flag, v string) (*bool, error) {
	switch v {
	case "on":
		b := true
		return &b, nil
	case "off":
		b := false
		return &b, nil
	}
	return nil, usageErrorf("--%s %q: use on or off", flag, v)
}

func (o *sriovVFSetOptions) validate(cmd *cobra.Command) error {
	if err := o.sriovCommon.validate(); err != nil {
		return err
	}
	fl := cmd.Flags()
	if o.pf == "" || !fl.Changed("vf") {
		return usageErrorf("missing --pf or --vf: e.g. offlane sriov vf set --pf ens1f0np0 --vf 0 --mac 02:00:00:00:00:10")
	}
	if o.vf < 0 {
		return usageErrorf("--vf %d: give a VF index, 0 or more", o.vf)
	}
	s := &o.settings
	if fl.Changed("mac") {
		mac, err := net.ParseMAC(o.mac)
		if err != nil || len(mac) != 6 {
			return usageErrorf("--mac %q: give a MAC such as 02:00:00:00:00:10", o.mac)
		}
		s.MAC = mac
	}
	if fl.Changed("vlan") {
		s.VLAN = &o.vlan
	}
	if fl.Changed("qos") {
		s.QoS = &o.qos
	}
	if fl.Changed("vlan-proto") {
		var p uint16
		switch strings.ToLower(o.vlanProto) {
		case "802.1q":
			p = sriov.VLANProto8021Q
		case "802.1ad":
			p = sriov.VLANProto8021AD
		default:
			return usageErrorf("--vlan-proto %q: use 802.1Q or 802.1ad", o.vlanProto)
		}
		s.VLANProto = &p
	}
	var err error
	if fl.Changed("trust") {
		if s.Trust, err = parseOnOff("trust", o.trust); err != nil {
			return err
		}
	}
	if fl.Changed("spoofchk") {
		if s.SpoofChk, err = parseOnOff("spoofchk", o.spoofchk); err != nil {
			return err
		}
	}
	if fl.Changed("link-state") {
		ls, err := sriov.ParseLinkState(o.linkState)
		if err != nil {
			return usageErrorf("--link-state %q: use auto, enable or disable", o.linkState)
		}
		s.LinkState = &ls
	}
	for _, r := range []struct {
		name string
		v    int
		dst  **uint32
	}{{"min-tx-rate", o.minTxRate, &s.MinTxRate}, {"max-tx-rate", o.maxTxRate, &s.MaxTxRate}} {
		if !fl.Changed(r.name) {
			continue
		}
		if r.v < 0 {
			return usageErrorf("--%s %d: give Mbit/s, 0 or more", r.name, r.v)
		}
		u := uint32(r.v)
		*r.dst = &u
	}
	if s.MAC == nil && s.VLAN == nil && s.QoS == nil && s.VLANProto == nil && s.Trust == nil && s.SpoofChk == nil && s.LinkState == nil && s.MinTxRate == nil && s.MaxTxRate == nil {
		return usageErrorf("nothing to set: give at least one of --mac, --vlan, --qos, --vlan-proto, --trust, --spoofchk, --link-state, --min-tx-rate, --max-tx-rate")
	}
	return nil
}

func (o *sriovVFSetOptions) run(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	m, err := o.manager()
	if err != nil {
		return err
	}
	res, err := m.VFSet(ctx, o.pf, o.vf, o.settings)
	if res == nil && err != nil {
		return sriovExit(err)
	}
	if o.output != "table" {
		if werr := writeStructured(o.g.stdout, o.output, res); werr != nil {
			return werr
		}
		return err
	}
	if len(res.Changes) == 0 && err == nil {
		fmt.Fprintf(o.g.stdout, "%s VF %d: nothing to change\n", res.PF, res.VF)
	} else {
		fmt.Fprintf(o.g.stdout, "%s VF %d:\n", res.PF, res.VF)
		for _, c := range res.Changes {
			fmt.Fprintln(o.g.stdout, "  "+c)
		}
	}
	if err == nil {
		c := res.Config
		fmt.Fprintf(o.g.stdout, "now: mac %s vlan %d qos %d trust %s spoofchk %s link-state %s min-tx-rate %d max-tx-rate %d\n",
			c.MAC, c.VLAN, c.QoS, onOffPtr(&c.Trust), onOffPtr(&c.SpoofChk), c.LinkState, c.MinTxRate, c.MaxTxRate)
	}
	return err
}
