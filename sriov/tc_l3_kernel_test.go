//go:build linux

package sriov_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/sriov"
	"github.com/offlane/offlane/test/kernellab"
)

// Guest tests of tc_l3.go's rules (issue 6's IR on tc ports): east-west routing in tc
// (router MAC rewrite, TTL − 1), DSCP marking with the ECN bits kept, and police for
// a port's bandwidth limits in both directions, on veth stand-ins in software.

// forceTC puts features of every tc port of plan on BackendTC: the planner decides
// QoS backends; these tests prove the tc half of each.
func forceTC(plan *offload.Plan, feats ...offload.Feature) {
	for i := range plan.Ports {
		pp := &plan.Ports[i]
		if pp.Backend(offload.FeatureL2) != offload.BackendTC {
			continue
		}
		for _, f := range feats {
			found := false
			for j := range pp.Decisions {
				if pp.Decisions[j].Feature == f {
					pp.Decisions[j].Backend, pp.Decisions[j].Reason, found = offload.BackendTC, "lab: tc", true
				}
			}
			if !found {
				pp.Decisions = append(pp.Decisions, offload.Decision{Feature: f, Backend: offload.BackendTC, Reason: "lab: tc"})
			}
		}
	}
}

// iperf3UDP runs an iperf3 UDP client in ns against server at rate (e.g. "30M") for
// secs seconds (reverse: the server sends) and returns the rate the receiver got, in
// bit/s, and the sender's.
func iperf3UDP(t *testing.T, ns, server, rate string, secs int, reverse bool, extra ...string) (got, sent float64) {
	t.Helper()
	args := []string{"netns", "exec", ns, "iperf3", "-c", server, "-u", "-b", rate, "-t", strconv.Itoa(secs), "-l", "1200", "-J"}
	if reverse {
		args = append(args, "-R")
	}
	out, err := exec.Command("ip", append(args, extra...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("iperf3 %v: %v\n%s", args, err, out)
	}
	var res struct {
		End struct {
			Sum struct {
				BitsPerSecond float64 `json:"bits_per_second"`
				LostPackets   float64 `json:"lost_packets"`
				Packets       float64 `json:"packets"`
			} `json:"sum"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &res); err != nil || res.End.Sum.Packets == 0 {
		t.Fatalf("iperf3 output (%v):\n%s", err, out)
	}
	s := res.End.Sum
	return s.BitsPerSecond * (s.Packets - s.LostPackets) / s.Packets, s.BitsPerSecond
}

// TestKernelTCRoutedQoS: VM 5 on VLAN network net-v (10.0.0.0/24) and VM 6 on VLAN
// network net-w (10.0.1.0/24), joined by router r1, both direct ports on one NIC. p5
// has QoS policy q1: 5 Mbit/s from the VM, 8 Mbit/s to it, DSCP 26. The compiled rules
// are accepted and read back equal; a ping between the subnets is routed in tc
// (tcpdump in VM 6: the router's MAC as source, TTL 63, tos 0x68); a UDP stream with
// ECN bits set arrives with DSCP 26 and the same ECN bits; iperf3 measures both police
// rates; skip_sw of a police and a pedit rule fails on netdevsim with EOPNOTSUPP and
// the applier falls back to software.
func TestKernelTCRoutedQoS(t *testing.T) {
	kernellab.RequireGuest(t)
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("iperf3 is not in the guest (install iperf3 on the host: deploy/install-deps.sh)")
	}
	tcVM(t, "tcvm5", "tcrep5", "fa:16:3e:00:00:51", "10.0.0.1/24")
	tcVM(t, "tcvm6", "tcrep6", "fa:16:3e:00:00:61", "10.0.1.5/24")
	tcNetns(t, "tcext5")
	tcsh(t, "ip", "link", "add", "tcup5", "type", "veth", "peer", "name", "eth0", "netns", "tcext5")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", "tcup5").Run() })
	tcsh(t, "ip", "link", "set", "tcup5", "up")
	// The router's gateway addresses: in tc mode nothing answers ARP for them on the
	// representors (the router backend does on the uplink's network), so the VMs get
	// static neighbours, as a DVR's ARP responder would give them.
	for _, v := range []struct{ ns, gw, mac string }{{"tcvm5", "10.0.0.254", "fa:16:3e:00:00:f1"}, {"tcvm6", "10.0.1.254", "fa:16:3e:00:00:f2"}} {
		tcsh(t, "ip", "-n", v.ns, "neigh", "replace", v.gw, "lladdr", v.mac, "dev", "eth0", "nud", "permanent")
		tcsh(t, "ip", "-n", v.ns, "route", "add", "default", "via", v.gw)
	}

	node := tcNode("tcup5", []string{"tcrep5", "tcrep6"}, hwdetect.LevelSW, hwdetect.LevelSW)
	c := &node.NICs[0].Capabilities
	c.Police = hwdetect.Capability{Level: hwdetect.LevelSW, Reason: "lab matrix"}
	c.DSCPRewrite = hwdetect.Capability{Level: hwdetect.LevelSW, Reason: "lab matrix"}
	segs := []*offload.Segment{
		{NetworkID: "net-v", Type: offload.SegVLAN, PhysicalNetwork: "physnet1", SegmentationID: 100, LocalVLAN: 1},
		{NetworkID: "net-w", Type: offload.SegVLAN, PhysicalNetwork: "physnet1", SegmentationID: 200, LocalVLAN: 2}}
	ir := tcIR(segs, []tcPortSpec{{"p5", "net-v", "fa:16:3e:00:00:51"}, {"p6", "net-w", "fa:16:3e:00:00:61"}}, nil)
	ip := netip.MustParseAddr
	ir.Ports["p5"].IPs = []netip.Addr{ip("10.0.0.1")}
	ir.Ports["p6"].IPs = []netip.Addr{ip("10.0.1.5")}
	ir.Ports["p5"].QoSPolicyID = "q1"
	ir.Routers = map[string]*offload.Router{"r1": {ID: "r1", AdminStateUp: true, Interfaces: []offload.RouterInterface{
		{PortID: "ri-v", NetworkID: "net-v", SubnetID: "s-v", MAC: "fa:16:3e:00:00:f1", IP: ip("10.0.0.254"), CIDR: netip.MustParsePrefix("10.0.0.0/24")},
		{PortID: "ri-w", NetworkID: "net-w", SubnetID: "s-w", MAC: "fa:16:3e:00:00:f2", IP: ip("10.0.1.254"), CIDR: netip.MustParsePrefix("10.0.1.0/24")}}}}
	const egressKbps, ingressKbps = 5000, 8000
	ir.QoSPolicies = map[string]*offload.QoSPolicy{"q1": {ID: "q1", Rules: []offload.QoSRule{
		{ID: "b1", Type: offload.QoSBandwidthLimit, Direction: offload.Egress, MaxKbps: egressKbps, MaxBurstKbps: 500},
		{ID: "b2", Type: offload.QoSBandwidthLimit, Direction: offload.Ingress, MaxKbps: ingressKbps, MaxBurstKbps: 800},
		{ID: "d1", Type: offload.QoSDSCPMarking, DSCPMark: 26}}}}
	plan := offload.PlanNode(ir, node, tcLayout().Node)
	forceTC(plan, offload.FeatureQoSEgress, offload.FeatureQoSIngress, offload.FeatureDSCP)
	res, err := offload.CompileTC(ir, plan, node, tcLayout())
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, r := range res.Rules {
		for _, a := range r.Actions {
			kinds[a.Kind]++
		}
	}
	for _, k := range []string{offload.TCActPolice, offload.TCActPeditEth, offload.TCActPeditTTL, offload.TCActPeditDSCP, offload.TCActCsum} {
		if kinds[k] == 0 {
			t.Fatalf("no %s action compiled: %v", k, kinds)
		}
	}
	a, g := tcApplier(t)
	tcApply(t, a, res.Rules, []string{"tcrep5", "tcrep6", "tcup5"})
	// iproute2's view of what offlane's encoder wrote
	in5 := tcsh(t, "tc", "filter", "show", "dev", "tcrep5", "ingress")
	for _, w := range []string{"police", "rate 5Mbit", "drop/continue", "at ipv4+0: val 00680000 mask ff03ffff",
		"at ipv4+8: add ff000000 mask 00ffffff", "csum (iph)", "dst_ip 10.0.1.5", "dst_mac fa:16:3e:00:00:f1",
		"at eth+0: val fa163e00", "Egress Redirect to device tcrep6"} {
		if !strings.Contains(in5, w) {
			t.Errorf("tc filter show dev tcrep5 ingress lacks %q", w)
		}
	}
	eg5 := tcsh(t, "tc", "filter", "show", "dev", "tcrep5", "egress")
	if !strings.Contains(eg5, "police") || !strings.Contains(eg5, "rate 8Mbit") {
		t.Errorf("tc filter show dev tcrep5 egress: no 8 Mbit/s police:\n%s", eg5)
	}
	if t.Failed() {
		t.Fatalf("filters on tcrep5:\n%s", in5)
	}

	// routed both ways, rewritten as a router would
	cap := tcpdump(t, "tcvm6", "eth0", "-v", "icmp")
	if err := ping("tcvm5", "10.0.1.5"); err != nil {
		t.Errorf("VM 5 → VM 6 across the router: %v", err)
	}
	dump := cap.stop()
	for _, w := range []string{"fa:16:3e:00:00:f2 > fa:16:3e:00:00:61", "tos 0x68, ttl 63", "10.0.0.1 > 10.0.1.5: ICMP echo request"} {
		if !strings.Contains(dump, w) {
			t.Errorf("tcpdump in VM 6 lacks %q:\n%s", w, dump)
		}
	}
	cap = tcpdump(t, "tcvm5", "eth0", "-v", "icmp")
	if err := ping("tcvm6", "10.0.0.1"); err != nil {
		t.Errorf("VM 6 → VM 5: %v", err)
	}
	dump = cap.stop()
	for _, w := range []string{"fa:16:3e:00:00:f1 > fa:16:3e:00:00:51", "ttl 63", "10.0.1.5 > 10.0.0.1: ICMP echo request"} {
		if !strings.Contains(dump, w) {
			t.Errorf("tcpdump in VM 5 lacks %q:\n%s", w, dump)
		}
	}
	if t.Failed() {
		t.Fatalf("stats:\n%s", tcsh(t, "tc", "-s", "filter", "show", "dev", "tcrep5", "ingress"))
	}

	// DSCP with ECN kept, and the police rates
	srv := exec.Command("ip", "netns", "exec", "tcvm6", "iperf3", "-s")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	time.Sleep(500 * time.Millisecond)
	cap = tcpdump(t, "tcvm6", "eth0", "-v", "-c", "5", "udp")
	_, _ = iperf3UDP(t, "tcvm5", "10.0.1.5", "1M", 1, false, "--tos", "0x03") // ECN bits 11 (CE)
	dump = cap.stop()
	if !strings.Contains(dump, "tos 0x6b") {
		t.Errorf("UDP with tos 0x03 from VM 5: want tos 0x6b (DSCP 26, ECN 11 kept) in VM 6:\n%s", dump)
	}
	for _, d := range []struct {
		name    string
		reverse bool
		kbps    int
	}{{"from the VM (representor ingress)", false, egressKbps}, {"to the VM (representor egress)", true, ingressKbps}} {
		got, sent := iperf3UDP(t, "tcvm5", "10.0.1.5", "40M", 3, d.reverse)
		lim := float64(d.kbps) * 1000
		t.Logf("police %s: limit %.1f Mbit/s, sent %.1f Mbit/s, received %.2f Mbit/s", d.name, lim/1e6, sent/1e6, got/1e6)
		if sent < 2*lim {
			t.Errorf("police %s: sender reached only %.1f Mbit/s: cannot tell the limit", d.name, sent/1e6)
		}
		if got < 0.6*lim || got > 1.2*lim {
			t.Errorf("police %s: received %.2f Mbit/s, want %.1f Mbit/s ± (−40 %%, +20 %%)", d.name, got/1e6, lim/1e6)
		}
	}

	// skip_sw of the new actions on a device without flower offload: refused, recorded,
	// in software
	nsim := kernellab.NewNetdevsim(t, 23, 1)
	up := nsim.Ports[0]
	tcsh(t, "ip", "link", "set", up, "up")
	tcsh(t, "ethtool", "-K", up, "hw-tc-offload", "on")
	var hw []offload.TCRule
	for _, r := range res.Rules {
		if r.Dev == "tcrep5" && (r.Prio == offload.TCPrioPolice || r.Prio == offload.TCPrioRouted) && !r.Egress {
			r.Dev, r.Flags = up, offload.TCSkipSW
			for i := range r.Actions {
				if r.Actions[i].Dev != "" {
					r.Actions[i].Dev = up
				}
			}
			r.Seal()
			hw = append(hw, r)
		}
	}
	if len(hw) < 2 {
		t.Fatalf("want a police and a routed rule, have %d", len(hw))
	}
	if err := g.EnsureClsact(context.Background(), up); err != nil {
		t.Fatal(err)
	}
	for i := range hw {
		if err := g.FilterAdd(context.Background(), &hw[i]); !errors.Is(err, sriov.ErrTCSkipSWRejected) || !errors.Is(err, unix.EOPNOTSUPP) {
			t.Errorf("skip_sw %s on netdevsim: %v, want EOPNOTSUPP", hw[i].String(), err)
		}
	}
	rep := tcApply(t, a, hw, nil)
	if len(rep.Fallbacks) != len(hw) {
		t.Errorf("fallbacks %+v, want %d", rep.Fallbacks, len(hw))
	}
	for _, f := range rep.Filters {
		if f.Rule.Flags != offload.TCSkipHW || f.InHW {
			t.Errorf("%s: flags %s in_hw %v", f.Rule.String(), f.Rule.Flags, f.InHW)
		}
	}
}
