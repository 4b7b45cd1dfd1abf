package agent_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/rules"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/offlane/offlane/agent"
	"github.com/offlane/offlane/agent/metrics"
	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

// startWith runs an agent as start does, with deps changed by mod.
func (e *env) startWith(mod func(d *agent.Deps)) {
	e.t.Helper()
	log := lab.Logger(e.t).Named("agent")
	d := agent.Deps{Store: e.srv.Store(), OVS: e.c, Ports: e.ports, Flows: ovsdpdk.NewFlows(e.of, ovsdpdk.FlowsOptions{Logger: log}),
		OpenFlow: e.of, Logger: log,
		Detect: func(ctx context.Context) (*hwdetect.Node, error) {
			return hwdetect.Detect(ctx, hwdetect.Options{OVS: ovsdpdk.NewProber(e.o.Endpoint), Logger: log})
		}}
	mod(&d)
	ag, err := agent.New(agent.Config{Host: host, Layout: e.layout, StateDir: e.stateDir, Debounce: 50 * time.Millisecond,
		Resync: 30 * time.Second, Probe: 300 * time.Millisecond}, d)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.ag, e.cancel, e.done = ag, cancel, make(chan error, 1)
	go func() { e.done <- ag.Run(ctx) }()
}

// background runs a command in its own process group, writing its output to a file;
// the group is killed by its PID at cleanup.
func background(t *testing.T, out string, name string, args ...string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait(); _ = f.Close() })
}

// countIn counts the lines of a file holding s.
func countIn(t *testing.T, file, s string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), s)
}

// TestLabConntrackFlush: VM b's group allows ICMP from VM a's group and TCP 5201 from
// anywhere; a pings b continuously and holds a TCP connection to b:5201 that echoes a
// line every 200 ms. Deleting the ICMP rule through the API makes the agent flush the
// echo's conntrack entry (read back with dpctl/dump-conntrack), after which not one
// more reply comes back, while the TCP connection keeps its entry and keeps echoing.
// The control runs the same with no conntrack flushes (nil Deps.Conntrack): the pings
// go on answered through the established entry, which is what the flush is for.
func TestLabConntrackFlush(t *testing.T) {
	lab.Require(t, "busybox")
	for _, flush := range []bool{true, false} {
		name := "flush"
		if !flush {
			name = "control without flushes"
		}
		t.Run(name, func(t *testing.T) { conntrackFlushCase(t, flush) })
	}
}

func conntrackFlushCase(t *testing.T, flush bool) {
	e := newEnv(t)
	ctx := context.Background()
	net := must(networks.Create(ctx, e.nc, networks.CreateOpts{Name: "net1"}).Extract()).get(t, "network")
	must(subnets.Create(ctx, e.nc, subnets.CreateOpts{NetworkID: net.ID, CIDR: "10.3.0.0/24", IPVersion: gophercloud.IPv4}).Extract()).get(t, "subnet")
	sgA := must(groups.Create(ctx, e.nc, groups.CreateOpts{Name: "a"}).Extract()).get(t, "group a") // egress only (the defaults)
	sgB := must(groups.Create(ctx, e.nc, groups.CreateOpts{Name: "b"}).Extract()).get(t, "group b")
	icmp := must(rules.Create(ctx, e.nc, rules.CreateOpts{SecGroupID: sgB.ID, Direction: rules.DirIngress, EtherType: rules.EtherType4,
		Protocol: rules.ProtocolICMP, RemoteGroupID: sgA.ID}).Extract()).get(t, "icmp rule")
	must(rules.Create(ctx, e.nc, rules.CreateOpts{SecGroupID: sgB.ID, Direction: rules.DirIngress, EtherType: rules.EtherType4,
		Protocol: rules.ProtocolTCP, PortRangeMin: 5201, PortRangeMax: 5201}).Extract()).get(t, "tcp rule")
	var pa, pb ports.Port
	for _, p := range []struct {
		port *ports.Port
		name string
		sg   string
	}{{&pa, "a", sgA.ID}, {&pb, "b", sgB.ID}} {
		err := ports.Create(ctx, e.nc, portsbinding.CreateOptsExt{CreateOptsBuilder: ports.CreateOpts{NetworkID: net.ID, Name: p.name,
			SecurityGroups: &[]string{p.sg}}, HostID: host}).ExtractInto(p.port)
		if err != nil {
			t.Fatal(err)
		}
	}

	reg := prometheus.NewRegistry()
	m := metrics.New(reg, nil, metrics.Options{NoRuntimeCollectors: true})
	e.startWith(func(d *agent.Deps) {
		d.Observer = m
		if flush {
			d.Conntrack = ovsdpdk.NewUnixctl(ovsdpdk.UnixctlOptions{Target: filepath.Join(e.o.Dir, "ovs-vswitchd.ctl"), RunDir: e.o.Dir})
		}
	})
	eventually(t, "agent ready (bridges laid out)", 20*time.Second, func() bool { ok, _ := e.ag.Ready(); return ok })
	vmA, vmB := e.plug(&pa, "cta"), e.plug(&pb, "ctb")
	e.waitStatus(pa.ID, controlplane.PortStatusActive)
	e.waitStatus(pb.ID, controlplane.PortStatusActive)
	ipB := pb.FixedIPs[0].IPAddress
	pingWorks(t, vmA, ipB)

	dir := t.TempDir()
	background(t, filepath.Join(dir, "listener"), "ip", "netns", "exec", vmB.NS, "busybox", "nc", "-ll", "-p", "5201", "-e", "cat")
	eventually(t, "listener on b:5201", 10*time.Second, func() bool {
		out, _ := exec.Command("ip", "netns", "exec", vmB.NS, "busybox", "netstat", "-ltn").Output()
		return strings.Contains(string(out), ":5201 ")
	})
	echoes, pings := filepath.Join(dir, "echoes"), filepath.Join(dir, "pings")
	background(t, echoes, "ip", "netns", "exec", vmA.NS, "sh", "-c", "while :; do echo line; sleep 0.2; done | busybox nc "+ipB+" 5201")
	background(t, pings, "ip", "netns", "exec", vmA.NS, "ping", "-n", "-i", "0.2", ipB)

	zone := e.ag.Last().IR.Segments[net.ID].LocalVLAN
	icmpEntry := fmt.Sprintf("icmp,orig=(src=%s,dst=%s,", pa.FixedIPs[0].IPAddress, ipB)
	tcpEntry := fmt.Sprintf("tcp,orig=(src=%s,dst=%s,", pa.FixedIPs[0].IPAddress, ipB)
	conntrack := func() string {
		out, err := e.o.Appctl("dpctl/dump-conntrack", fmt.Sprintf("zone=%d", zone))
		if err != nil {
			t.Fatalf("dump-conntrack: %v", err)
		}
		return out
	}
	var before string
	eventually(t, "echo and TCP entries in zone "+fmt.Sprint(zone), 10*time.Second, func() bool {
		before = conntrack()
		return strings.Contains(before, icmpEntry) && strings.Contains(before, tcpEntry) &&
			countIn(t, pings, "bytes from") >= 3 && countIn(t, echoes, "line") >= 3
	})
	tcpLine := ""
	for _, l := range strings.Split(before, "\n") {
		if strings.HasPrefix(l, tcpEntry) && strings.Contains(l, "dport=5201)") {
			tcpLine, _, _ = strings.Cut(l, ",protoinfo")
		}
	}

	// The ICMP rule goes; wait until its flows are gone (the reconcile that removed them
	// flushes right after).
	if err := rules.Delete(ctx, e.nc, icmp.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the ICMP rule's flows removed", 10*time.Second, func() bool { return e.flowsOf(offload.KindRule, icmp.ID) == 0 })
	// the reconcile that removed them is over once the agent reports its IR
	eventually(t, "the reconcile recorded", 10*time.Second, func() bool {
		g := e.ag.Last().IR.SecurityGroups[sgB.ID]
		return g != nil && !slices.ContainsFunc(g.Rules, func(r offload.Rule) bool { return r.ID == icmp.ID })
	})
	if flush {
		eventually(t, "the echo's conntrack entry flushed", 10*time.Second, func() bool { return !strings.Contains(conntrack(), icmpEntry) })
	}

	// Count replies and echoes over 15 ping intervals from here.
	replies0, echoes0 := countIn(t, pings, "bytes from"), countIn(t, echoes, "line")
	time.Sleep(3 * time.Second)
	replies, echoed := countIn(t, pings, "bytes from")-replies0, countIn(t, echoes, "line")-echoes0
	after := conntrack()
	t.Logf("after the rule removal: %d new ping replies, %d new TCP echoes; zone %d:\n%s", replies, echoed, zone, after)

	if echoed < 5 {
		t.Errorf("the TCP connection a remaining rule allows stopped: %d echoes in 3 s", echoed)
	}
	if tcpLine == "" || !strings.Contains(after, tcpLine) {
		t.Errorf("the TCP connection's entry %q did not survive:\n%s", tcpLine, after)
	}
	flushes := counterValue(t, reg, "offlane_conntrack_flushes_total")
	if flush {
		if replies != 0 {
			t.Errorf("%d ping replies after the ICMP rule's removal and the flush; want 0", replies)
		}
		if strings.Contains(after, icmpEntry) {
			t.Errorf("the echo's entry is back:\n%s", after)
		}
		if flushes < 1 {
			t.Errorf("offlane_conntrack_flushes_total = %v, want >= 1", flushes)
		}
	} else {
		if replies < 5 {
			t.Errorf("control: %d ping replies in 3 s without flushes; the established echo should have gone on", replies)
		}
		if !strings.Contains(after, icmpEntry) {
			t.Errorf("control: the echo's entry is gone without a flush:\n%s", after)
		}
		if flushes != 0 {
			t.Errorf("control: offlane_conntrack_flushes_total = %v, want 0", flushes)
		}
	}
	// a new echo is refused either way: the rule is gone
	if out, err := ping(vmA, ipB, "-c", "1"); err == nil {
		t.Errorf("a new ping passed after the ICMP rule's removal:\n%s", out)
	}
}

// counterValue reads a counter without labels from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}
