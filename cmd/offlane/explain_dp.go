package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/offlane/offlane/ovsdpdk"
)

// The datapath part of explain: the flows ovs-vswitchd put into its datapath for the
// port (`ovs-appctl dpctl/dump-flows -m`), each with the layer that holds it: OVS's own
// datapath, or tc when other_config:hw-offload=true (in the NIC when tc has it in
// hardware).

// addDatapath fills the report's datapath flows of the port from the live switch. What
// cannot be read is recorded in DatapathError (the OpenFlow part of the report stands).
func (o *explainOptions) addDatapath(ctx context.Context, rep *explainReport, bridge string) {
	if rep.Port.OFPort <= 0 {
		rep.DatapathError = "the port has no OpenFlow port in the plan file: no datapath port to look for"
		return
	}
	names, err := ovsdpdk.NewOfctl(ovsdpdk.OfctlOptions{RunDir: o.ovsRunDir}).PortNames(ctx, bridge)
	if err != nil {
		rep.DatapathError = err.Error()
		return
	}
	name := names[rep.Port.OFPort]
	if name == "" {
		rep.DatapathError = fmt.Sprintf("%s has no OpenFlow port %d (the plan file is older than the switch's ports)", bridge, rep.Port.OFPort)
		return
	}
	rep.DatapathPort = name
	flows, err := ovsdpdk.NewUnixctl(ovsdpdk.UnixctlOptions{RunDir: o.ovsRunDir}).DatapathFlows(ctx)
	if err != nil {
		rep.DatapathError = err.Error()
		return
	}
	for _, f := range flows {
		if f.Touches(name) {
			rep.Datapath = append(rep.Datapath, f)
		}
	}
}

// dpLayer says where a datapath flow runs.
func dpLayer(f *ovsdpdk.DatapathFlow) string {
	switch {
	case f.InHW():
		return f.DP + " (in hardware)"
	case f.InTC():
		return "tc (software)"
	case f.Offloaded == "partial":
		return f.DP + " (partially in hardware)"
	case f.DP == "":
		return "ovs"
	}
	return f.DP
}

func printDatapath(w io.Writer, r *explainReport) error {
	if r.Source.OVSRunDir == "" {
		return nil
	}
	fmt.Fprintln(w)
	if r.DatapathError != "" {
		fmt.Fprintf(w, "datapath flows: not read: %s\n", r.DatapathError)
		return nil
	}
	tc := 0
	for i := range r.Datapath {
		if r.Datapath[i].InTC() {
			tc++
		}
	}
	fmt.Fprintf(w, "%d datapath flows of %s (ovs-appctl dpctl/dump-flows -m), %d in tc\n", len(r.Datapath), r.DatapathPort, tc)
	if len(r.Datapath) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  LAYER\tIN_PORT\tPACKETS\tBYTES\tUSED\tMATCH\tACTIONS")
	for i := range r.Datapath {
		f := &r.Datapath[i]
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%s\t%s\t%s\n", dpLayer(f), orNone(f.InPort), f.Packets, f.Bytes, f.Used, f.Match, f.Actions)
	}
	return tw.Flush()
}
