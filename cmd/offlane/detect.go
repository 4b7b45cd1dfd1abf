package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/ovsdpdk"
)

// ovsProbeTimeout bounds the OVSDB probe so an unresponsive ovsdb-server cannot hang
// detection (it then reports ovs.reachable=false).
const ovsProbeTimeout = 3 * time.Second

// detectOptions are the flags of `offlane detect`.
type detectOptions struct {
	g       *globalOptions
	output  string
	from    string
	capture string
	all     bool
	ovsdb   string
	root    string
}

func newDetectCmd(g *globalOptions) *cobra.Command {
	o := &detectOptions{g: g}
	cmd := &cobra.Command{
		Use:   "detect",
		Short: "Report what this node's NICs can do and which dataplane each should get",
		Long: `Detect reads the node (PCI, SR-IOV, devlink, ethtool, NUMA, hugepages, IOMMU, kernel
modules, OVS) and recommends a dataplane mode per NIC: switchdev-offload, ovs-dpdk or
kernel, with the reasons and what is missing for a faster mode. It changes nothing.

--capture writes what it read to a .tar.gz; --from replays such a capture (or its
unpacked directory) without touching the live system.`,
		Example: `  offlane detect
  offlane detect -o json
  offlane detect --capture node1.tar.gz
  offlane detect --from node1.tar.gz -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
	f.StringVar(&o.from, "from", "", "replay a capture (directory or .tar.gz) instead of reading this node")
	f.StringVar(&o.capture, "capture", "", "also write what was read to this .tar.gz capture")
	f.BoolVar(&o.all, "all", false, "also list interfaces without a device (lo, bridges, veth, tunnels), VFs and representors")
	f.StringVar(&o.ovsdb, "ovsdb", "", "OVSDB endpoint to probe (unix:PATH, tcp:HOST:PORT); default "+ovsdpdk.DefaultOVSDB)
	f.StringVar(&o.root, "root", "", "read sys/ and proc/ under this directory instead of / (live sources still used)")
	_ = f.MarkHidden("root")
	return cmd
}

func (o *detectOptions) validate() error {
	switch o.output {
	case "table", "json", "yaml":
	default:
		return usageErrorf("--output %q: use table, json or yaml", o.output)
	}
	if o.from != "" && o.root != "" {
		return usageErrorf("--from and --root exclude each other: --from replays a capture, --root reads a live tree")
	}
	if o.from != "" && o.ovsdb != "" {
		return usageErrorf("--ovsdb cannot be used with --from: a replay makes no live OVS call (the capture's offlane/ovs.json is used)")
	}
	if o.ovsdb != "" && !strings.HasPrefix(o.ovsdb, "unix:") && !strings.HasPrefix(o.ovsdb, "tcp:") && !strings.HasPrefix(o.ovsdb, "ssl:") {
		return usageErrorf("--ovsdb %q: use unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT", o.ovsdb)
	}
	if o.capture != "" {
		dir := filepath.Dir(o.capture)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return usageErrorf("--capture %s: directory %s does not exist", o.capture, dir)
		}
	}
	return nil
}

func (o *detectOptions) run(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	log := o.g.logger()
	opts := hwdetect.Options{Root: o.root, From: o.from, All: o.all, Logger: log}
	if o.from == "" {
		// An absent socket or a refused connection reads as ovs.reachable=false with the
		// reason; it is not an error.
		opts.OVS = ovsdpdk.NewProber(o.ovsdb, ovsdpdk.WithProberTimeout(ovsProbeTimeout),
			ovsdpdk.WithProberLogger(log.Named("ovs")))
	}
	d := hwdetect.New(opts)
	var (
		node *hwdetect.Node
		err  error
	)
	if o.capture != "" {
		node, err = o.writeCapture(ctx, d)
	} else {
		node, err = d.Detect(ctx)
	}
	if err != nil {
		if errors.Is(err, hwdetect.ErrBadCapture) {
			return usageErrorf("--from: %w", err)
		}
		return fmt.Errorf("detect: %w", err)
	}
	return writeNode(o.g.stdout, node, o.output)
}

// writeCapture detects and writes the capture atomically (temp file + rename), so a
// failed run leaves no half-written file behind. The file is mode 0600: it holds the
// hostname, MAC addresses and the kernel command line.
func (o *detectOptions) writeCapture(ctx context.Context, d *hwdetect.Detector) (*hwdetect.Node, error) {
	tmp, err := os.CreateTemp(filepath.Dir(o.capture), ".offlane-capture-*")
	if err != nil {
		return nil, fmt.Errorf("--capture %s: %w", o.capture, err)
	}
	defer os.Remove(tmp.Name())
	node, err := d.Capture(ctx, tmp)
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("--capture %s: %w", o.capture, cerr)
	}
	if err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), o.capture); err != nil {
		return nil, fmt.Errorf("--capture %s: %w", o.capture, err)
	}
	return node, nil
}

func writeNode(w io.Writer, node *hwdetect.Node, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(node)
	case "yaml":
		b, err := yaml.Marshal(node)
		if err != nil {
			return fmt.Errorf("yaml: %w", err)
		}
		_, err = w.Write(b)
		return err
	}
	return hwdetect.WriteTable(w, node)
}
