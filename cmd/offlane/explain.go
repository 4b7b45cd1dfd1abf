package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
)

// The node plan file: what a node's flows are computed from. The agent keeps the current
// one at defaultNodePlan; `offlane explain` reads it (or any saved copy) and recompiles
// the flows, which is a pure function of the file, so the cookie → origin table and the
// flows explain shows are exactly the agent's.

const (
	nodePlanFormat  = "offlane-node-plan/1"
	defaultNodePlan = "/var/lib/offlane/node-plan.json"
)

// nodePlanFile is a node's plan as saved: the OVS layout the compiler saw, the IR (with
// the local VLAN allocation and OpenFlow port numbers) and the planner's decisions.
type nodePlanFile struct {
	Format string             `json:"format"`
	Host   string             `json:"host"`
	Saved  time.Time          `json:"saved"`
	Layout offload.NodeLayout `json:"layout"`
	IR     *offload.IR        `json:"ir"`
	Plan   *offload.Plan      `json:"plan"`
}

// writeNodePlan saves a node plan file atomically (a temporary file renamed over path).
func writeNodePlan(path string, layout offload.NodeLayout, ir *offload.IR, plan *offload.Plan) error {
	if ir == nil || plan == nil {
		return errors.New("node plan: no IR or plan to save")
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".node-plan-*")
	if err != nil {
		return fmt.Errorf("node plan %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	// streamed (jsonstream.go): at 10,000 ports the file is tens of MB
	if err := streamJSON(tmp, nodePlanFile{Format: nodePlanFormat, Host: ir.Host, Saved: time.Now().UTC().Truncate(time.Second),
		Layout: layout, IR: ir, Plan: plan}); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("node plan %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("node plan %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("node plan %s: %w", path, err)
	}
	return nil
}

// readNodePlan reads a node plan file; every problem is a usage error naming the file.
func readNodePlan(path string) (*nodePlanFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usageErrorf("--plan %s: no such file (the agent writes the node's plan there; give a saved plan file with --plan FILE)", path)
	}
	if err != nil {
		return nil, usageErrorf("--plan %s: %v", path, err)
	}
	var np nodePlanFile
	if err := json.Unmarshal(b, &np); err != nil {
		return nil, usageErrorf("--plan %s: not a node plan file (%v)", path, err)
	}
	if np.Format != nodePlanFormat {
		return nil, usageErrorf("--plan %s: format %q, want %q: not a node plan file, or one from another offlane version", path, np.Format, nodePlanFormat)
	}
	if np.IR == nil || np.Plan == nil {
		return nil, usageErrorf("--plan %s: the file has no ir or no plan", path)
	}
	return &np, nil
}

// explainOptions are the flags of `offlane explain`.
type explainOptions struct {
	g         *globalOptions
	port      string
	plan      string
	ovsRunDir string
	offline   bool
	output    string
	timeout   time.Duration
}

func newExplainCmd(g *globalOptions) *cobra.Command {
	o := &explainOptions{g: g}
	cmd := &cobra.Command{
		Use:   "explain --port ID",
		Short: "Show how a port is implemented: backends with reasons, its flows with their origins, counters",
		Long: `Explain shows, for one port of this node: which backend implements each feature
(L2, port security, security groups) and why; its security group rules as they apply to
it; and its OpenFlow flows, bridge by bridge and table by table, each with the object it
came from (the port, its network, a security group or rule), whether the switch has it,
and its packet and byte counters.

The flows are recomputed from the node plan file (the agent keeps the current one at
` + defaultNodePlan + `; --plan names another, e.g. a saved copy), so they are exactly
the ones offlane installs. The live state and counters come from the node's OVS, unless
--offline is given.`,
		Example: `  offlane explain --port 3f2a9c1e-...
  offlane explain --port vm1-port --plan node-plan.json --offline
  offlane explain --port vm1-port -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.port, "port", "", "the port's ID (required)")
	f.StringVar(&o.plan, "plan", defaultNodePlan, "node plan file to explain")
	f.StringVar(&o.ovsRunDir, "ovs-rundir", ovsdpdk.DefaultOVSRunDir, "ovs-vswitchd's run directory (bridge management sockets <dir>/<bridge>.mgmt)")
	f.BoolVar(&o.offline, "offline", false, "do not read the switch: flows from the plan file only, no counters")
	f.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up after this long")
	return cmd
}

func (o *explainOptions) validate() error {
	if strings.TrimSpace(o.port) == "" {
		return usageErrorf("--port is required: give the ID of a port bound to this node")
	}
	switch o.output {
	case "table", "json":
	default:
		return usageErrorf("--output %q: use table or json", o.output)
	}
	if o.timeout <= 0 {
		return usageErrorf("--timeout %v: want a positive duration such as 30s", o.timeout)
	}
	if !o.offline && o.ovsRunDir == "" {
		return usageErrorf("--ovs-rundir is empty: give ovs-vswitchd's run directory, or --offline")
	}
	return nil
}

// explainReport is what explain prints (-o json is this, as JSON).
type explainReport struct {
	Host      string                 `json:"host"`
	Port      *offload.Port          `json:"port"`
	Segment   *offload.Segment       `json:"segment,omitempty"`
	Decisions []offload.Decision     `json:"decisions"`
	Unbound   bool                   `json:"unbound,omitempty"` // planned for OpenFlow, but OVS has no OpenFlow port for it yet
	Rules     []offload.ExpandedRule `json:"security_group_rules"`
	Flows     []explainFlow          `json:"flows"`
	Meters    []offload.Meter        `json:"meters,omitempty"` // the port's QoS meters
	Source    explainSource          `json:"source"`
	// The port's datapath flows and where each runs (live only; explain_dp.go).
	DatapathPort  string                 `json:"datapath_port,omitempty"`
	Datapath      []ovsdpdk.DatapathFlow `json:"datapath_flows,omitempty"`
	DatapathError string                 `json:"datapath_error,omitempty"`
}

type explainSource struct {
	Plan      string    `json:"plan"`
	Saved     time.Time `json:"saved"`
	OVSRunDir string    `json:"ovs_rundir,omitempty"` // "" when offline
}

// Flow states against the live switch.
const (
	flowInstalled = "installed" // desired and in the switch
	flowMissing   = "missing"   // desired, not in the switch (a sync is pending or failed)
	flowStale     = "stale"     // in the switch with one of the port's cookies, not desired
)

type explainFlow struct {
	Bridge    string         `json:"bridge"`
	Table     uint8          `json:"table"`
	TableName string         `json:"table_name"`
	Priority  uint16         `json:"priority"`
	Match     string         `json:"match"`
	Actions   string         `json:"actions"`
	Cookie    string         `json:"cookie"`
	Origin    offload.Origin `json:"origin"`
	State     string         `json:"state,omitempty"` // "" offline
	Packets   *uint64        `json:"n_packets,omitempty"`
	Bytes     *uint64        `json:"n_bytes,omitempty"`
}

func (o *explainOptions) run(ctx context.Context, out io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	np, err := readNodePlan(o.plan)
	if err != nil {
		return err
	}
	rep, err := explain(ctx, np, o.port, o.plan, o.liveFlows())
	if err != nil {
		return err
	}
	if !o.offline {
		rep.Source.OVSRunDir = o.ovsRunDir
		o.addDatapath(ctx, rep, np.Layout.IntegrationBridge)
	}
	if o.output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return printExplain(out, rep)
}

// installedReader reads offlane's flows, with counters, from one bridge of the switch.
type installedReader func(ctx context.Context, bridge string) ([]ovsdpdk.InstalledFlow, error)

func (o *explainOptions) liveFlows() installedReader {
	if o.offline {
		return nil
	}
	fl := ovsdpdk.NewFlows(ovsdpdk.NewOfctl(ovsdpdk.OfctlOptions{RunDir: o.ovsRunDir}), ovsdpdk.FlowsOptions{Logger: o.g.logger()})
	return func(ctx context.Context, bridge string) ([]ovsdpdk.InstalledFlow, error) {
		f, err := fl.Installed(ctx, bridge)
		if err != nil {
			return nil, fmt.Errorf("read the flows of %s from OVS at %s (use --offline to explain from the plan file only): %w", bridge, o.ovsRunDir, err)
		}
		return f, nil
	}
}

// explain builds the report: it recompiles the plan file's flows, keeps those of the
// port's objects, and (when live is set) pairs them with what the switch has.
func explain(ctx context.Context, np *nodePlanFile, portID, planPath string, live installedReader) (*explainReport, error) {
	p := np.IR.Ports[portID]
	if p == nil {
		ids := make([]string, 0, len(np.IR.Ports))
		for id := range np.IR.Ports {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		hint := strings.Join(ids, ", ")
		if len(ids) > 10 {
			hint = strings.Join(ids[:10], ", ") + fmt.Sprintf(", ... (%d ports)", len(ids))
		}
		if len(ids) == 0 {
			hint = "none"
		}
		return nil, usageErrorf("--port %s: not a port bound to host %s in %s (its ports: %s)", portID, np.Host, planPath, hint)
	}
	comp, err := offload.NewCompiler(np.Layout)
	if err != nil {
		return nil, fmt.Errorf("node plan %s: %w", planPath, err)
	}
	if _, err := comp.Update(np.IR, np.Plan); err != nil {
		return nil, fmt.Errorf("node plan %s does not compile: %w", planPath, err)
	}
	rep := &explainReport{Host: np.Host, Port: p, Segment: np.IR.Segments[p.NetworkID], Rules: np.IR.PortRules(portID),
		Source: explainSource{Plan: planPath, Saved: np.Saved}}
	if pp := np.Plan.Port(portID); pp != nil {
		rep.Decisions = pp.Decisions
	}
	rep.Meters = comp.PortMeters(portID)
	for _, u := range comp.Unbound() {
		rep.Unbound = rep.Unbound || u == portID
	}
	origins := comp.PortOrigins(portID)
	byCookie := make(map[uint64]offload.Origin, len(origins))
	for _, or := range origins {
		byCookie[offload.CookieFor(or.Kind, or.ID)] = or
	}
	desired := comp.FlowsFrom(origins...)
	names := tableNames(np.Layout)
	add := func(f *offload.Flow) *explainFlow {
		rep.Flows = append(rep.Flows, explainFlow{Bridge: f.Bridge, Table: f.Table, TableName: names[f.Bridge][f.Table],
			Priority: f.Priority, Match: f.Match, Actions: f.Actions, Cookie: fmt.Sprintf("%#x", f.Cookie), Origin: byCookie[f.Cookie]})
		return &rep.Flows[len(rep.Flows)-1]
	}
	if live == nil {
		for i := range desired {
			add(&desired[i])
		}
		return rep, nil
	}
	var installed []ovsdpdk.InstalledFlow
	for _, br := range flowBridges(np.Layout, desired) {
		fl, err := live(ctx, br)
		if err != nil {
			return nil, err
		}
		for _, f := range fl {
			if _, ours := byCookie[f.Cookie]; ours {
				installed = append(installed, f)
			}
		}
	}
	for _, pr := range ovsdpdk.PairFlows(desired, installed) {
		var ef *explainFlow
		switch {
		case pr.Desired == nil:
			ef = add(&pr.Installed.Flow)
			ef.State = flowStale
		case pr.Installed == nil:
			ef = add(pr.Desired)
			ef.State = flowMissing
		default:
			ef = add(pr.Desired)
			ef.State = flowInstalled
		}
		if pr.Installed != nil {
			pk, by := pr.Installed.Packets, pr.Installed.Bytes
			ef.Packets, ef.Bytes = &pk, &by
		}
	}
	sort.SliceStable(rep.Flows, func(i, j int) bool {
		a, b := &rep.Flows[i], &rep.Flows[j]
		if a.Bridge != b.Bridge {
			return a.Bridge < b.Bridge
		}
		if a.Table != b.Table {
			return a.Table < b.Table
		}
		if a.Priority != b.Priority {
			return a.Priority > b.Priority
		}
		return a.Match < b.Match
	})
	return rep, nil
}

// flowBridges are the bridges of the layout that the flows use, in layout order.
func flowBridges(l offload.NodeLayout, flows []offload.Flow) []string {
	used := map[string]bool{}
	for _, f := range flows {
		used[f.Bridge] = true
	}
	var out []string
	seen := map[string]bool{}
	cands := []string{l.IntegrationBridge, l.TunnelBridge}
	for _, pn := range explainSortedKeys(l.PhysnetBridges) {
		cands = append(cands, l.PhysnetBridges[pn])
	}
	for b := range used {
		cands = append(cands, b)
	}
	for _, b := range cands {
		if b != "" && used[b] && !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	return out
}

func explainSortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// tableNames names the tables of offload's pipeline, by bridge.
func tableNames(l offload.NodeLayout) map[string]map[uint8]string {
	out := map[string]map[uint8]string{
		l.IntegrationBridge: {
			offload.TableClassify: "classify", offload.TablePortSecurity: "port security",
			offload.TableEgressSG: "egress security groups", offload.TableARPResponder: "ARP responder",
			offload.TableL2: "L2 forwarding", offload.TableFlood: "flood", offload.TableFloodMore: "flood (continued)",
			offload.TableIngress: "ingress", offload.TableIngressSG: "ingress security groups",
			offload.TableCommit: "conntrack commit", offload.TableDeliver: "deliver", offload.TableQoS: "QoS (meter, DSCP)",
		},
	}
	if l.TunnelBridge != "" {
		out[l.TunnelBridge] = map[uint8]string{offload.TableTunClassify: "classify",
			offload.TableTunToTunnel: "to tunnels (local VLAN → VNI)", offload.TableTunFromTunnel: "from tunnels (VNI → local VLAN)"}
	}
	for _, b := range l.PhysnetBridges {
		out[b] = map[uint8]string{offload.TablePhysnet: "local VLAN ↔ provider VLAN"}
	}
	return out
}

func printExplain(w io.Writer, r *explainReport) error {
	p := r.Port
	fmt.Fprintf(w, "port %s on host %s\n", p.ID, r.Host)
	if s := r.Segment; s != nil {
		seg := s.Type
		switch {
		case offload.IsTunnel(s.Type):
			seg = fmt.Sprintf("%s VNI %d", s.Type, s.SegmentationID)
		case s.Type == offload.SegVLAN:
			seg = fmt.Sprintf("vlan %d on %s", s.SegmentationID, s.PhysicalNetwork)
		case s.Type == offload.SegFlat:
			seg = "flat on " + s.PhysicalNetwork
		}
		fmt.Fprintf(w, "  network   %s (tenant %s): %s, local VLAN %d, MTU %d\n", s.NetworkID, s.TenantID, seg, s.LocalVLAN, s.MTU)
	}
	var addrs []string
	for _, a := range p.IPs {
		addrs = append(addrs, a.String())
	}
	fmt.Fprintf(w, "  addresses %s %s\n", p.MAC, strings.Join(addrs, " "))
	for _, ap := range p.AllowedPairs {
		fmt.Fprintf(w, "  allowed   %s %s\n", ap.MAC, ap.Prefix)
	}
	fmt.Fprintf(w, "  vnic %s, OpenFlow port %d, port security %v, security groups %s\n", p.VNICType, p.OFPort, p.PortSecurity, orNone(strings.Join(p.SecurityGroups, ", ")))
	if r.Unbound {
		fmt.Fprintln(w, "  (OVS has no OpenFlow port for it yet: it gets its own flows once attached)")
	}

	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FEATURE\tBACKEND\tREASON")
	for _, d := range r.Decisions {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Feature, d.Backend, d.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, m := range r.Meters {
		fmt.Fprintf(w, "meter %d on %s: %s limit %d kbit/s, burst %d kbit (ovs-ofctl: %s)\n", m.ID, m.Bridge, m.Direction, m.Kbps, m.BurstKb, m.Spec())
	}

	if len(r.Rules) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "RULE\tGROUP\tDIRECTION\tETHERTYPE\tPROTOCOL\tPORTS\tREMOTE")
		for _, ru := range r.Rules {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ru.ID, ru.SecurityGroupID, ru.Direction, ru.EtherType, protoName(ru.Protocol), portRange(ru.Rule), remoteText(ru))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintln(w)
	src := "from the plan file " + r.Source.Plan + " (offline: not compared with the switch)"
	if r.Source.OVSRunDir != "" {
		src = "from the plan file " + r.Source.Plan + ", compared with the live switch"
	}
	fmt.Fprintf(w, "%d flows %s\n", len(r.Flows), src)
	last := ""
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range r.Flows {
		head := fmt.Sprintf("%s table %d", f.Bridge, f.Table)
		if f.TableName != "" {
			head += " (" + f.TableName + ")"
		}
		if head != last {
			// Lines without a tab end a tabwriter column block: each table aligns alone.
			if last != "" {
				fmt.Fprintln(tw)
			}
			fmt.Fprintln(tw, head)
			fmt.Fprintln(tw, "  PRIORITY\tMATCH\tACTIONS\tORIGIN\tSTATE\tPACKETS\tBYTES")
			last = head
		}
		pk, by, st := "-", "-", f.State
		if f.Packets != nil {
			pk, by = fmt.Sprint(*f.Packets), fmt.Sprint(*f.Bytes)
		}
		if st == "" {
			st = "-"
		}
		origin := f.Origin.String()
		if f.Origin.ID == "" {
			origin = "cookie " + f.Cookie
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Priority, orNone(f.Match), f.Actions, origin, st, pk, by)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printDatapath(w, r)
}

func orNone(s string) string {
	if s == "" {
		return "(any)"
	}
	return s
}

func protoName(p int) string {
	switch p {
	case offload.ProtoAny:
		return "any"
	case offload.ProtoICMP:
		return "icmp"
	case offload.ProtoTCP:
		return "tcp"
	case offload.ProtoUDP:
		return "udp"
	case offload.ProtoICMPv6:
		return "icmpv6"
	case offload.ProtoSCTP:
		return "sctp"
	}
	return fmt.Sprint(p)
}

func portRange(r offload.Rule) string {
	switch {
	case r.PortMin < 0 && r.PortMax < 0:
		return "any"
	case r.Protocol == offload.ProtoICMP || r.Protocol == offload.ProtoICMPv6:
		s := fmt.Sprintf("type %d", r.PortMin)
		if r.PortMax >= 0 {
			s += fmt.Sprintf(" code %d", r.PortMax)
		}
		return s
	case r.PortMin == r.PortMax:
		return fmt.Sprint(r.PortMin)
	}
	return fmt.Sprintf("%d-%d", r.PortMin, r.PortMax)
}

func remoteText(r offload.ExpandedRule) string {
	switch {
	case r.RemoteGroupID != "":
		var ps []string
		for _, p := range r.Remote {
			ps = append(ps, p.String())
		}
		return fmt.Sprintf("group %s (%s)", r.RemoteGroupID, orNone(strings.Join(ps, " ")))
	case r.RemotePrefix.IsValid():
		return r.RemotePrefix.String()
	}
	return "any"
}
