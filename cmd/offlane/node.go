package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/ovsdpdk"
)

// nodeOptions are the flags of `offlane node plan` and `offlane node apply`.
type nodeOptions struct {
	g       *globalOptions
	apply   bool
	config  string
	hwFrom  string
	output  string
	wait    bool
	timeout time.Duration
	// detect reads the hardware for DPDK's auto values and CPU checks (tests replace it).
	detect func(ctx context.Context, from string) (*hwdetect.Node, error)
}

func newNodeCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Provision this node's Open vSwitch from a node config (bridges, DPDK, offload)",
		Long: `node makes OVS match a node config (node.yaml): the Neutron-style bridges (integration,
tunnel, external, one per physnet) with their patch ports, tunnel ports and uplinks, and
the Open_vSwitch settings for DPDK, hardware offload and userspace TSO. Everything goes
through OVSDB in one transaction; rows offlane creates are tagged with
external_ids:offlane-owner and rows without the tag are never touched.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newNodeSubCmd(g, false), newNodeSubCmd(g, true))
	return cmd
}

func newNodeSubCmd(g *globalOptions, apply bool) *cobra.Command {
	o := &nodeOptions{g: g, apply: apply, detect: detectHardware}
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Print the changes node apply would make (changes nothing)",
		Example: `  offlane node plan --config node.yaml
  offlane node plan --config node.yaml --hw-from node1.tar.gz -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	if apply {
		cmd.Use = "apply"
		cmd.Short = "Make OVS match the node config in one OVSDB transaction"
		cmd.Example = `  offlane node apply --config node.yaml
  offlane node apply --config node.yaml --wait=false   # do not wait for ovs-vswitchd`
	}
	f := cmd.Flags()
	f.StringVarP(&o.config, "config", "c", "", "node config file (YAML), required")
	f.StringVar(&o.hwFrom, "hw-from", "", "resolve DPDK auto values from a capture of `offlane detect --capture` instead of this node")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	f.DurationVar(&o.timeout, "timeout", time.Minute, "give up after this long (connecting, applying, waiting)")
	if apply {
		f.BoolVar(&o.wait, "wait", true, "wait until ovs-vswitchd has applied the change (like ovs-vsctl without --no-wait)")
	}
	return cmd
}

func (o *nodeOptions) validate() error {
	if o.config == "" {
		return usageErrorf("--config is required: the node config file (see `offlane node apply --help` and the README)")
	}
	switch o.output {
	case "text", "json":
	default:
		return usageErrorf("--output %q: use text or json", o.output)
	}
	if o.timeout <= 0 {
		return usageErrorf("--timeout %s: must be positive", o.timeout)
	}
	return nil
}

func detectHardware(ctx context.Context, from string) (*hwdetect.Node, error) {
	return hwdetect.Detect(ctx, hwdetect.Options{From: from})
}

// nodeReport is the output of plan and apply (-o json keys are stable).
type nodeReport struct {
	Config      string   `json:"config"`
	Endpoint    string   `json:"ovsdb"`
	Applied     bool     `json:"applied"` // apply: a transaction was committed
	Derivations []string `json:"derivations"`
	Changes     []string `json:"changes"`
	Notes       []string `json:"notes"`
}

func (o *nodeOptions) run(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	log := o.g.logger()

	spec, err := o.load(ctx)
	if err != nil {
		return err
	}
	c := spec.Config
	var tlsConf *tls.Config
	if c.TLS != nil {
		if tlsConf, err = ovsdpdk.TLSFromFiles(c.TLS.PrivateKey, c.TLS.Certificate, c.TLS.CACert); err != nil {
			return usageErrorf("%s: tls: %w", o.config, err)
		}
	}
	client, err := ovsdpdk.Connect(ctx, ovsdpdk.Options{Endpoint: c.OVSDB, TLS: tlsConf, Logger: log})
	if err != nil {
		return fmt.Errorf("%w (is ovsdb-server running? the endpoint is the ovsdb key of %s)", err, o.config)
	}
	defer client.Close()

	layout := ovsdpdk.NodeLayout(spec)
	rep := nodeReport{Config: o.config, Endpoint: c.OVSDB, Derivations: spec.Derivations}
	var plan *ovsdpdk.Plan
	if o.apply {
		res, err := client.ApplyNode(ctx, layout, ovsdpdk.ApplyOptions{Wait: o.wait})
		if res != nil {
			plan, rep.Applied = res.Plan, res.Transacted
		}
		if err != nil {
			if plan != nil && rep.Applied {
				// Committed, but ovs-vswitchd did not confirm: say what was written.
				o.fill(&rep, plan)
				_ = o.write(rep)
			}
			return err
		}
	} else if plan, err = client.PlanNode(ctx, layout); err != nil {
		return err
	}
	o.fill(&rep, plan)
	return o.write(rep)
}

// load reads, parses and resolves the config; every problem is a usage error.
func (o *nodeOptions) load(ctx context.Context) (*ovsdpdk.NodeSpec, error) {
	f, err := os.Open(o.config)
	if err != nil {
		return nil, usageErrorf("--config: %w", err)
	}
	defer f.Close()
	cfg, err := ovsdpdk.ParseNodeConfig(o.config, f)
	if err != nil {
		return nil, usageError{err}
	}
	var hw *hwdetect.Node
	if cfg.DPDK != nil && cfg.DPDK.Enabled {
		if hw, err = o.detect(ctx, o.hwFrom); err != nil {
			if errors.Is(err, hwdetect.ErrBadCapture) {
				return nil, usageErrorf("--hw-from: %w", err)
			}
			// Report mistakes in the config itself first: they need no hardware. (Without
			// hardware Resolve always adds one error saying DPDK needs it.)
			if _, cerr := ovsdpdk.Resolve(cfg, nil); len(unjoin(cerr)) > 1 {
				return nil, usageError{prefixConfigErrors(o.config, cerr)}
			}
			return nil, fmt.Errorf("detect this node's CPUs, NUMA and hugepages (needed for dpdk): %w", err)
		}
	}
	spec, err := ovsdpdk.Resolve(cfg, hw)
	if err != nil {
		return nil, usageError{prefixConfigErrors(o.config, err)}
	}
	return spec, nil
}

// unjoin returns the errors joined in err (err itself when not joined, nil for nil).
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// prefixConfigErrors puts the file name on each config error.
func prefixConfigErrors(file string, err error) error {
	for _, e := range unjoin(err) {
		var ce *ovsdpdk.ConfigError
		if errors.As(e, &ce) && ce.File == "" {
			ce.File = file
		}
	}
	return err
}

func (o *nodeOptions) fill(rep *nodeReport, p *ovsdpdk.Plan) {
	rep.Changes = []string{}
	for _, ch := range p.Changes {
		rep.Changes = append(rep.Changes, ch.String())
	}
	rep.Notes = append([]string{}, p.Notes...)
	if rep.Derivations == nil {
		rep.Derivations = []string{}
	}
}

func (o *nodeOptions) write(rep nodeReport) error {
	w := o.g.stdout
	if o.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return writeNodeText(w, rep, o.apply)
}

func writeNodeText(w io.Writer, rep nodeReport, apply bool) error {
	var b strings.Builder
	if len(rep.Derivations) > 0 {
		b.WriteString("derived:\n")
		for _, d := range rep.Derivations {
			fmt.Fprintf(&b, "  %s\n", d)
		}
	}
	switch {
	case len(rep.Changes) == 0:
		fmt.Fprintf(&b, "no changes: OVS at %s already matches %s", rep.Endpoint, rep.Config)
		if apply {
			b.WriteString("; nothing written")
		}
		b.WriteString("\n")
	case apply:
		fmt.Fprintf(&b, "applied %d change(s) to %s in one transaction:\n", len(rep.Changes), rep.Endpoint)
	default:
		fmt.Fprintf(&b, "%d change(s) to make OVS at %s match %s (nothing changed yet; run node apply):\n", len(rep.Changes), rep.Endpoint, rep.Config)
	}
	for _, c := range rep.Changes {
		fmt.Fprintf(&b, "  %s\n", c)
	}
	if len(rep.Notes) > 0 {
		b.WriteString("notes:\n")
		for _, n := range rep.Notes {
			fmt.Fprintf(&b, "  %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
