package e2e_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

// ctLookupSnapshot: networks c-x (10.1.0.0/24) and c-y (10.2.0.0/24) on one host joined
// by router r1; cx1 on c-x may open anything (no ingress rule); cy1 on c-y accepts TCP
// 5001 and ICMP only.
func ctLookupSnapshot() offload.Snapshot {
	client := secgroup("client", "tenant-a", rule{id: "client-out", dir: "egress"})
	server := secgroup("server", "tenant-a", rule{id: "server-out", dir: "egress"},
		rule{id: "server-5001", dir: "ingress", proto: "tcp", min: 5001, max: 5001, cidr: "0.0.0.0/0"},
		rule{id: "server-icmp", dir: "ingress", proto: "icmp", cidr: "0.0.0.0/0"})
	return offload.Snapshot{
		Networks: []controlplane.Network{network("c-x", "tenant-a", offload.SegLocal, 0), network("c-y", "tenant-a", offload.SegLocal, 0)},
		Subnets:  []controlplane.Subnet{subnet("sub-c-x", "c-x", "10.1.0.0/24", "10.1.0.1"), subnet("sub-c-y", "c-y", "10.2.0.0/24", "10.2.0.1")},
		Ports: []controlplane.Port{
			port("cx1", "tenant-a", "c-x", "node1", "fa:16:3e:01:00:05", "10.1.0.5", "client"),
			port("cy1", "tenant-a", "c-y", "node1", "fa:16:3e:02:00:05", "10.2.0.5", "server"),
			routerPort("r1-x", "tenant-a", controlplane.OwnerRouterInterface, "r1", "c-x", "fa:16:3e:a1:00:01", "10.1.0.1"),
			routerPort("r1-y", "tenant-a", controlplane.OwnerRouterInterface, "r1", "c-y", "fa:16:3e:a1:00:02", "10.2.0.1"),
		},
		SecurityGroups: []controlplane.SecurityGroup{client, server},
		Routers:        []controlplane.Router{{ID: "r1", Name: "r1", TenantID: "tenant-a", ProjectID: "tenant-a", AdminStateUp: true}},
	}
}

// TestLabRoutedOneLookupOpenFlow: an established east-west routed TCP connection takes
// one conntrack lookup per packet, as a switched one does (units_l3ct.go): the
// datapath flows of its packets, in both directions, recirculate once after one ct()
// action; and the destination's ingress security group still decides: a routed
// connection to a port it does not open is refused, before and after the allowed one;
// and removing the destination's rule cuts an established routed connection once its
// flushes (which include the routed zone) are done.
func TestLabRoutedOneLookupOpenFlow(t *testing.T) {
	lab.Require(t, "iperf3")
	snap := ctLookupSnapshot()
	h := newHostOn(t, "node1", dpNetdev)
	h.apply(h.l3NodeYAML(openflowL3{}, "", ""))
	publishDatapath(t, h)
	vm := map[string]*lab.VM{}
	for _, p := range snap.Ports {
		if p.HostID == "node1" {
			vm[p.ID] = h.attach(p, p.ID, 1500)
		}
	}
	withRoute(t, vm["cx1"], "10.1.0.1")
	withRoute(t, vm["cy1"], "10.2.0.1")
	h.l3 = openflowL3{}
	h.routedReconcile(snap, nil)

	listen(t, vm["cy1"], 5002)
	if tcpConnect(vm["cx1"], "10.2.0.5", 5002) {
		t.Fatal("routed TCP to cy1:5002 was accepted: cy1's ingress group opens 5001 only")
	}

	// An established routed TCP stream from cx1 to cy1:5001 while the datapath is read.
	srv := exec.Command("ip", "netns", "exec", vm["cy1"].NS, "iperf3", "-s", "-1", "-p", "5001")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	cli := exec.Command("ip", "netns", "exec", vm["cx1"].NS, "iperf3", "-c", "10.2.0.5", "-p", "5001", "-t", "4")
	var out strings.Builder
	cli.Stdout, cli.Stderr = &out, &out
	eventually(t, "iperf3 server listens", func() bool {
		o, _ := vm["cy1"].Exec("busybox", "netstat", "-ltn")
		return strings.Contains(o, ":5001 ")
	})
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, err := h.o.Appctl("dpif-netdev/pmd-stats-clear"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	stats, err := h.o.Appctl("dpif-netdev/pmd-stats-show")
	if err != nil {
		t.Fatal(err)
	}
	// Each packet's datapath passes: the first, plus one per recirculation (switched
	// packets take 2, routed ones took 3 with a second lookup in the destination zone).
	m := regexp.MustCompile(`avg\. datapath passes per packet: ([0-9.]+)`).FindStringSubmatch(stats)
	if m == nil {
		t.Fatalf("no datapath passes per packet in pmd-stats-show:\n%s", stats)
	}
	if passes, err := strconv.ParseFloat(m[1], 64); err != nil || passes > 2.05 {
		t.Errorf("routed stream: %s datapath passes per packet, want 2 (one recirculation):\n%s", m[1], stats)
	} else {
		t.Logf("routed stream: %s datapath passes per packet", m[1])
	}
	flows, err := h.o.Appctl("dpctl/dump-flows", "--names")
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Wait(); err != nil {
		t.Fatalf("iperf3 cx1 → cy1:5001 (routed, allowed): %v\n%s", err, out.String())
	}
	for _, d := range [][2]string{{"cx1", "cy1"}, {"cy1", "cx1"}} {
		n, chain := ctLookups(flows, d[0], d[1])
		if n != 1 {
			t.Errorf("established routed packets %s → %s: %d conntrack lookups, want 1 (as switched):\n%s\nall datapath flows:\n%s", d[0], d[1], n, chain, flows)
		} else {
			t.Logf("%s → %s, one lookup:\n%s", d[0], d[1], chain)
		}
	}

	// Still refused after the allowed connection, and it left nothing that opens it.
	if tcpConnect(vm["cx1"], "10.2.0.5", 5002) {
		t.Error("routed TCP to cy1:5002 accepted after an allowed connection")
	}

	// A routed echo is tracked once, in the router's routed zone (here c-x's), not in
	// cy1's network zone; removing cy1's ICMP rule flushes it there
	// (offload.ConntrackFlushes) and not one more reply comes back.
	rz := offload.RoutedZone(h.ir, h.ir.Routers["r1"])
	yz := h.ir.Segments["c-y"].LocalVLAN
	if rz == 0 || rz == yz || rz != h.ir.Segments["c-x"].LocalVLAN {
		t.Fatalf("routed zone %d: want c-x's %d (the lower local VLAN), not c-y's %d", rz, h.ir.Segments["c-x"].LocalVLAN, yz)
	}
	pings := filepath.Join(t.TempDir(), "pings")
	f, err := os.Create(pings)
	if err != nil {
		t.Fatal(err)
	}
	pinger := exec.Command("ip", "netns", "exec", vm["cx1"].NS, "ping", "-n", "-i", "0.2", "10.2.0.5")
	pinger.Stdout, pinger.Stderr = f, f
	if err := pinger.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pinger.Process.Kill(); _ = pinger.Wait(); _ = f.Close() })
	replies := func() int {
		b, err := os.ReadFile(pings)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "bytes from")
	}
	entry := "icmp,orig=(src=10.1.0.5,dst=10.2.0.5,"
	conntrack := func(z uint16) string {
		out, err := h.o.Appctl("dpctl/dump-conntrack", "zone="+strconv.Itoa(int(z)))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	eventually(t, "routed echoes answered, tracked in the routed zone", func() bool {
		return replies() >= 3 && strings.Contains(conntrack(rz), entry)
	})
	if out := conntrack(yz); strings.Contains(out, entry) {
		t.Errorf("the routed echo has an entry in cy1's network zone %d too (two lookups):\n%s", yz, out)
	}
	old := h.ir
	g := &snap.SecurityGroups[1]
	g.Rules = slices.DeleteFunc(slices.Clone(g.Rules), func(r controlplane.SecurityGroupRule) bool { return r.ID == "server-icmp" })
	h.reconcile(snap, nil)
	flushes := offload.ConntrackFlushes(old, h.ir)
	if !slices.ContainsFunc(flushes, func(f offload.CTFlush) bool { return f.Zone == rz && f.PortID == "cy1" }) {
		t.Fatalf("no flush of cy1's removed permission in the routed zone %d: %v", rz, flushes)
	}
	ct := ovsdpdk.NewUnixctl(ovsdpdk.UnixctlOptions{Target: filepath.Join(h.o.Dir, "ovs-vswitchd.ctl"), RunDir: h.o.Dir})
	if _, err := ct.FlushConntrack(ctxFor(t, 30*time.Second), flushes); err != nil {
		t.Fatal(err)
	}
	n0 := replies()
	time.Sleep(2 * time.Second)
	if n := replies() - n0; n != 0 {
		t.Errorf("%d routed echo replies after cy1's ICMP rule was removed and its entries flushed; want 0", n)
	}
	if out := conntrack(rz); strings.Contains(out, entry) {
		t.Errorf("the routed echo's entry is back in zone %d:\n%s", rz, out)
	}
}

var (
	dpRecircID = regexp.MustCompile(`(?:^|,)recirc_id\((0x[0-9a-f]+|\d+)\)`)
	dpInPort   = regexp.MustCompile(`in_port\(([^)]+)\)`)
	dpRecirc   = regexp.MustCompile(`recirc\((0x[0-9a-f]+|\d+)\)`)
)

// ctLookups reads dpctl/dump-flows (with port names): it takes the datapath flow that
// delivers established packets (ct_state +est) arriving from port src to port dst and
// walks its recirculation chain back to recirc_id(0), counting the ct() lookups (not
// commits) on the way. It returns the count (0: no such flow) and the chain's flows.
func ctLookups(flows, src, dst string) (int, string) {
	type dpFlow struct{ recirc, inPort, actions, line string }
	var all []dpFlow
	for _, l := range strings.Split(flows, "\n") {
		l = strings.TrimSpace(l)
		i := strings.Index(l, " actions:")
		m, p := dpRecircID.FindStringSubmatch(l), dpInPort.FindStringSubmatch(l)
		if i < 0 || m == nil || p == nil {
			continue
		}
		all = append(all, dpFlow{recirc: m[1], inPort: p[1], actions: l[i+len(" actions:"):], line: l})
	}
	outputs := func(acts, port string) bool {
		for _, a := range strings.Split(acts, ",") {
			if a == port {
				return true
			}
		}
		return false
	}
	for _, f := range all {
		if f.inPort != src || f.recirc == "0" || !strings.Contains(f.line, "+est") || !outputs(f.actions, dst) {
			continue
		}
		chain := []string{f.line}
		n, cur := 0, f
		for cur.recirc != "0" && len(chain) < 8 {
			var prev *dpFlow
			for i := range all {
				if g := all[i]; g.inPort == src {
					if r := dpRecirc.FindStringSubmatch(g.actions); r != nil && r[1] == cur.recirc {
						prev = &all[i]
						break
					}
				}
			}
			if prev == nil {
				break
			}
			n += strings.Count(prev.actions, "ct(") - strings.Count(prev.actions, "ct(commit")
			chain = append([]string{prev.line}, chain...)
			cur = *prev
		}
		return n, strings.Join(chain, "\n")
	}
	return 0, ""
}
