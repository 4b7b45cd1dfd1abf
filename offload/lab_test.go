package offload

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/test/lab"
)

// Lab tests: the compiled flows loaded into a real ovs-vswitchd (userspace netdev
// datapath, in its own network namespace) with `ovs-ofctl -O OpenFlow15 --bundle`,
// read back, and exercised with real traffic between namespace VMs and with
// ofproto/trace.

func vsctl(t *testing.T, o *lab.OVS, args ...string) string {
	t.Helper()
	out, err := lab.Run("ovs-vsctl", append([]string{"--timeout=20", "--db=" + o.Endpoint}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func ofportOf(t *testing.T, o *lab.OVS, name string) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		n, err := strconv.Atoi(vsctl(t, o, "get", "Interface", name, "ofport"))
		if err == nil && n > 0 {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no ofport for %s", name)
	return 0
}

// labLayout creates the bridges and ports of ovsdpdk's node layout (br-int, br-tun with
// flow-based vxlan/geneve/gre ports, br-phys1 with uplink eth1, a veth whose peer eth1p
// stays in the OVS namespace) and returns the NodeLayout with OVS's ofports.
func labLayout(t *testing.T, o *lab.OVS) NodeLayout {
	t.Helper()
	br := func(name, failMode string) {
		vsctl(t, o, "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev", "fail_mode="+failMode)
	}
	br("br-int", "standalone")
	br("br-tun", "secure")
	br("br-phys1", "secure")
	patch := func(bridge, name, peer string) {
		vsctl(t, o, "add-port", bridge, name, "--", "set", "interface", name, "type=patch", "options:peer="+peer)
	}
	patch("br-int", PatchTun, PatchInt)
	patch("br-tun", PatchInt, PatchTun)
	patch("br-int", IntPatch("br-phys1"), PhyPatch("br-phys1"))
	patch("br-phys1", PhyPatch("br-phys1"), IntPatch("br-phys1"))
	for _, ty := range []string{SegVXLAN, SegGeneve, SegGRE} {
		vsctl(t, o, "add-port", "br-tun", TunnelPort(ty), "--", "set", "interface", TunnelPort(ty), "type="+ty,
			"options:local_ip=192.0.2.1", "options:remote_ip=flow", "options:key=flow")
	}
	if _, err := lab.Run("ip", "-n", o.NS, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"eth1", "eth1p"} {
		if _, err := lab.Run("ip", "-n", o.NS, "link", "set", l, "up"); err != nil {
			t.Fatal(err)
		}
	}
	vsctl(t, o, "add-port", "br-phys1", "eth1")
	l := testLayout()
	for name := range l.OFPorts {
		l.OFPorts[name] = ofportOf(t, o, name)
	}
	return l
}

// loadFlows replaces each bridge's flows with the compiled ones in one bundle.
func loadFlows(t *testing.T, o *lab.OVS, flows []Flow, bridges ...string) {
	t.Helper()
	dir := t.TempDir()
	for _, br := range bridges {
		var b strings.Builder
		for _, f := range flows {
			if f.Bridge == br {
				b.WriteString(f.String() + "\n")
			}
		}
		file := filepath.Join(dir, br+".flows")
		if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := o.Ofctl("-O", "OpenFlow15", "--bundle", "replace-flows", br, file); err != nil {
			t.Fatalf("replace-flows %s: %v\n%s", br, err, out)
		}
	}
}

// dumpFlows reads a bridge's flows back and parses them into Flows.
func dumpFlows(t *testing.T, o *lab.OVS, bridge string) []Flow {
	t.Helper()
	out, err := o.Ofctl("-O", "OpenFlow15", "dump-flows", bridge, "--no-stats")
	if err != nil {
		t.Fatal(err)
	}
	var fs []Flow
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "OFPST_FLOW") {
			continue
		}
		f := Flow{Bridge: bridge}
		left, actions, ok := strings.Cut(line, " actions=")
		if !ok {
			t.Fatalf("dump line without actions: %q", line)
		}
		f.Actions = actions
		if rest, ok := strings.CutPrefix(left, "cookie="); ok {
			v, r, _ := strings.Cut(rest, ", ")
			c, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 64)
			if err != nil {
				t.Fatalf("cookie in %q: %v", line, err)
			}
			f.Cookie, left = c, r
		}
		if rest, ok := strings.CutPrefix(left, "table="); ok {
			v, r, _ := strings.Cut(rest, ", ")
			n, _ := strconv.Atoi(v)
			f.Table, left = uint8(n), r
		}
		rest, ok := strings.CutPrefix(left, "priority=")
		if !ok {
			t.Fatalf("dump line without priority: %q", line)
		}
		v, m, _ := strings.Cut(rest, ",")
		n, _ := strconv.Atoi(v)
		f.Priority, f.Match = uint16(n), m
		fs = append(fs, f)
	}
	return fs
}

// capture runs tcpdump in a namespace while fn runs and returns the packets it printed.
func capture(t *testing.T, ns, ifname, filter string, fn func()) []string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "tcpdump", "-i", ifname, "-e", "-nn", "-l", "-U"}, strings.Fields(filter)...)...)
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), "listening on") {
				once = true
				close(ready)
			}
		}
		if !once {
			close(ready)
		}
	}()
	lines := make(chan []string)
	go func() {
		var ls []string
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) != "" {
				ls = append(ls, sc.Text())
			}
		}
		lines <- ls
	}()
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("tcpdump did not start")
	}
	fn()
	time.Sleep(300 * time.Millisecond)
	_ = cmd.Process.Signal(os.Interrupt)
	got := <-lines
	_ = cmd.Wait()
	return got
}

func trace(t *testing.T, o *lab.OVS, bridge, flow string, extra ...string) string {
	t.Helper()
	out, err := o.Appctl(append([]string{"ofproto/trace", bridge, flow}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// datapathActions is the last "Datapath actions" line of a trace: what the datapath
// finally does with the packet (after any conntrack recirculation).
func datapathActions(tr string) string {
	last := ""
	for _, l := range strings.Split(tr, "\n") {
		if s, ok := strings.CutPrefix(l, "Datapath actions: "); ok {
			last = s
		}
	}
	return last
}

// TestLabTwoTenants loads the two-tenant scenario into a real OVS and proves it:
// the flows load atomically and read back as compiled, same-network VMs ping, tenants
// and networks with overlapping MACs and IPs stay isolated, VLAN translation on the
// uplink, port security (spoofed IP and ARP dropped), stateful security groups with
// default-deny ingress, the ARP responder, and L2 population to the right VTEP.
func TestLabTwoTenants(t *testing.T) {
	o := lab.StartOVS(t, lab.Options{})
	layout := labLayout(t, o)
	snap := twoTenants()
	vms := map[string]*lab.VM{}
	ofports := map[string]int{}
	for _, p := range snap.Ports {
		if p.HostID != "node1" {
			continue
		}
		vm := o.AddVM(t, p.ID, lab.VMOptions{IP: p.FixedIPs[0].IPAddress + "/24", MAC: p.MACAddress})
		vsctl(t, o, "add-port", "br-int", vm.HostIf)
		vms[p.ID] = vm
		ofports[p.ID] = ofportOf(t, o, vm.HostIf)
	}
	ir, err := Build(BuildInput{Host: "node1", Snapshot: snap, OFPorts: ofports,
		VTEPs: map[string]netip.Addr{"node2": netip.MustParseAddr("192.0.2.2")}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Compile(layout, ir, PlanNode(ir, ovsNode(), layout))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Unbound)+len(res.Conflicts) > 0 {
		t.Fatalf("unbound %v, conflicts %v", res.Unbound, res.Conflicts)
	}
	bridges := []string{"br-int", "br-phys1", "br-tun"}
	loadFlows(t, o, res.Flows, bridges...)

	t.Run("read back equals compiled", func(t *testing.T) {
		for _, br := range bridges {
			var want []Flow
			for _, f := range res.Flows {
				if f.Bridge == br {
					want = append(want, f)
				}
			}
			got := dumpFlows(t, o, br)
			SortFlows(got)
			if d := lineDiff(flowText(want), flowText(got)); d != "" {
				t.Errorf("%s: dump-flows differs from the compiled text:\n%s", br, d)
			}
		}
	})

	t.Run("same network pings, other tenant sees nothing", func(t *testing.T) {
		seen := capture(t, vms["b2"].NS, "eth0", "icmp or arp", func() {
			if out, err := vms["a1"].Ping("10.0.0.2", 3); err != nil {
				t.Errorf("a1 → a2 (same network, same group): %v\n%s", err, out)
			}
		})
		if len(seen) > 0 {
			t.Errorf("b2 (other tenant, also 10.0.0.2) saw tenant a's traffic: %q", seen)
		}
	})

	t.Run("overlapping MAC and IP in the other tenant work independently", func(t *testing.T) {
		// b1 has a1's MAC and IP; b2 has a2's IP and no port security.
		if out, err := vms["b1"].Ping("10.0.0.2", 2); err != nil {
			t.Errorf("b1 → b2: %v\n%s", err, out)
		}
	})

	t.Run("security group default-deny ingress", func(t *testing.T) {
		// sg-b lets in TCP 8000-8080 only: b2's ping to b1 must fail (ARP still works).
		if out, err := vms["b2"].Ping("10.0.0.1", 2); err == nil {
			t.Errorf("b2 → b1 ICMP passed although sg-b only admits TCP 8000-8080:\n%s", out)
		}
	})

	t.Run("vlan translation on the uplink", func(t *testing.T) {
		seen := capture(t, o.NS, "eth1p", "arp", func() {
			_, _ = vms["a1"].Ping("10.0.0.77", 1)
			_, _ = vms["b1"].Ping("10.0.0.77", 1)
		})
		joined := strings.Join(seen, "\n")
		for _, want := range []string{"vlan 100", "vlan 200"} {
			if !strings.Contains(joined, want) {
				t.Errorf("uplink: no ARP tagged %q (provider VLAN):\n%s", want, joined)
			}
		}
		for _, bad := range []string{"vlan 1,", "vlan 3,"} {
			if strings.Contains(joined, bad) {
				t.Errorf("uplink: a local VLAN leaked (%q):\n%s", bad, joined)
			}
		}
	})

	t.Run("port security drops a spoofed source IP", func(t *testing.T) {
		if _, err := vms["a1"].Exec("ip", "addr", "add", "10.0.0.50/24", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		defer func() { _, _ = vms["a1"].Exec("ip", "addr", "del", "10.0.0.50/24", "dev", "eth0") }()
		seen := capture(t, vms["a2"].NS, "eth0", "host 10.0.0.50", func() {
			if out, err := vms["a1"].Exec("ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", "-I", "10.0.0.50", "10.0.0.2"); err == nil {
				t.Errorf("ping from the spoofed 10.0.0.50 passed:\n%s", out)
			}
		})
		if len(seen) > 0 {
			t.Errorf("a2 saw packets from the spoofed address: %q", seen)
		}
	})

	t.Run("port security drops forged ARP", func(t *testing.T) {
		// Gratuitous ARP: a1 claiming its own 10.0.0.1 reaches a2 (control); a1 claiming
		// a2's 10.0.0.2 does not.
		seen := capture(t, vms["a2"].NS, "eth0", "arp", func() {
			if out, err := vms["a1"].Exec("busybox", "arping", "-U", "-c", "2", "-w", "2", "-I", "eth0", "-s", "10.0.0.1", "10.0.0.1"); err != nil {
				t.Logf("arping (own address): %v %s", err, out)
			}
			_, _ = vms["a1"].Exec("busybox", "arping", "-U", "-c", "2", "-w", "2", "-I", "eth0", "-s", "10.0.0.2", "10.0.0.2")
		})
		own, forged := 0, 0
		for _, l := range seen {
			switch {
			case strings.Contains(l, "tell 10.0.0.1") || strings.Contains(l, "is-at") && strings.Contains(l, "10.0.0.1"):
				own++
			case strings.Contains(l, "10.0.0.2"):
				forged++
			}
		}
		if own == 0 {
			t.Errorf("control failed: a2 saw no gratuitous ARP for a1's own address: %q", seen)
		}
		if forged > 0 {
			t.Errorf("a2 saw a1's forged ARP for 10.0.0.2: %q", seen)
		}
	})

	t.Run("ARP responder answers for a remote port", func(t *testing.T) {
		_, _ = vms["a3"].Ping("10.0.0.9", 1) // no remote host here: only ARP can succeed
		out, err := vms["a3"].Exec("ip", "neigh", "show", "10.0.0.9")
		if err != nil || !strings.Contains(out, "fa:16:3e:00:00:09") {
			t.Errorf("a3 did not learn ax's MAC from the ARP responder: %v %q", err, out)
		}
	})

	t.Run("incremental delta in one bundle: removing a rule closes, adding it opens", func(t *testing.T) {
		c, err := NewCompiler(layout)
		if err != nil {
			t.Fatal(err)
		}
		plan := PlanNode(ir, ovsNode(), layout)
		if _, err := c.Update(ir, plan); err != nil {
			t.Fatal(err)
		}
		apply := func(d *Delta) {
			t.Helper()
			for _, br := range bridges {
				lines := d.BundleLines(br)
				if len(lines) == 0 {
					continue
				}
				file := filepath.Join(t.TempDir(), br+".delta")
				if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				if out, err := o.Ofctl("-O", "OpenFlow15", "--bundle", "add-flows", br, file); err != nil {
					t.Fatalf("bundle on %s: %v\n%s", br, err, out)
				}
			}
		}
		// sg-a without its ICMP-from-the-group rule: a1 → a2 ping must stop.
		ir2 := ir.Clone()
		sg := *ir2.SecurityGroups["sg-a"]
		sg.Rules = slices.DeleteFunc(slices.Clone(sg.Rules), func(r Rule) bool { return r.ID == "a-icmp" })
		ir2.SecurityGroups["sg-a"] = &sg
		d, err := c.Update(ir2, plan)
		if err != nil {
			t.Fatal(err)
		}
		if d.Empty() || len(d.Delete) == 0 {
			t.Fatalf("removing a rule produced no deletes: %+v", d)
		}
		apply(d)
		if out, err := vms["a1"].Ping("10.0.0.2", 2); err == nil {
			t.Errorf("a1 → a2 ICMP still passes after a-icmp was removed:\n%s", out)
		}
		// Back again: passes; and the switch holds exactly the full compile.
		d, err = c.Update(ir, plan)
		if err != nil {
			t.Fatal(err)
		}
		apply(d)
		if out, err := vms["a1"].Ping("10.0.0.2", 2); err != nil {
			t.Errorf("a1 → a2 after the rule came back: %v\n%s", err, out)
		}
		for _, br := range bridges {
			var want []Flow
			for _, f := range res.Flows {
				if f.Bridge == br {
					want = append(want, f)
				}
			}
			got := dumpFlows(t, o, br)
			SortFlows(got)
			if diff := lineDiff(flowText(want), flowText(got)); diff != "" {
				t.Errorf("%s after two deltas: differs from the full compile:\n%s", br, diff)
			}
		}
	})

	t.Run("trace: L2 population, isolation and security groups", func(t *testing.T) {
		in := func(id string) string { return "in_port=" + strconv.Itoa(ofports[id]) }
		tun := layout.OFPorts[TunnelPort(SegVXLAN)]
		// a3 → ax (remote, net-a-vx VNI 1001 = 0x3e9) leaves through tun-vxlan to node2.
		tr := trace(t, o, "br-int", in("a3")+",dl_src=fa:16:3e:00:00:03,dl_dst=fa:16:3e:00:00:09,icmp,nw_src=10.0.0.3,nw_dst=10.0.0.9,icmp_type=8",
			"--ct-next", "trk,new")
		for _, want := range []string{"set_field:0x3e9->tun_id", "set_field:192.0.2.2->tun_dst", fmt.Sprintf("output:%d", tun)} {
			if !strings.Contains(tr, want) {
				t.Errorf("a3 → ax: trace lacks %q:\n%s", want, tr)
			}
		}
		// VXLAN from node2 with VNI 1002 (tenant b) to a3's MAC must not reach a3.
		tr = trace(t, o, "br-tun", fmt.Sprintf("in_port=%d,tun_id=0x3ea,tun_src=192.0.2.2,dl_src=fa:16:3e:00:00:09,dl_dst=fa:16:3e:00:00:03,icmp,nw_src=10.0.0.9,nw_dst=10.0.0.3", tun))
		if strings.Contains(datapathActions(tr), strconv.Itoa(ofports["a3"])) {
			t.Errorf("VNI 1002 (no node2 port of tenant b) reached a3:\n%s", tr)
		}
		// From an unknown VTEP: dropped at br-tun.
		tr = trace(t, o, "br-tun", fmt.Sprintf("in_port=%d,tun_id=0x3e9,tun_src=192.0.2.99,dl_src=fa:16:3e:00:00:09,dl_dst=fa:16:3e:00:00:03,icmp,nw_src=10.0.0.9,nw_dst=10.0.0.3", tun))
		if got := datapathActions(tr); got != "drop" {
			t.Errorf("unknown VTEP: datapath actions %q, want drop", got)
		}
		// TCP 22 to a1 is admitted from 192.168.1.0/24 only (sg-a a-ssh), as a new
		// connection arriving from the uplink.
		phy := layout.OFPorts[IntPatch("br-phys1")]
		for src, admit := range map[string]bool{"192.168.1.7": true, "192.168.2.7": false} {
			tr = trace(t, o, "br-int", fmt.Sprintf("in_port=%d,dl_vlan=1,dl_src=fa:16:3e:00:00:77,dl_dst=fa:16:3e:00:00:01,tcp,nw_src=%s,nw_dst=10.0.0.1,tp_dst=22", phy, src),
				"--ct-next", "trk,new")
			got := strings.Contains(datapathActions(tr), "ct(commit")
			if got != admit {
				t.Errorf("tcp 22 from %s to a1: admitted=%v, want %v:\n%s", src, got, admit, tr)
			}
		}
		// TCP 8000-8080 to b1 (port range as bitwise matches): 8000, 8063, 8080 in; 7999, 8081 out.
		for port, admit := range map[int]bool{7999: false, 8000: true, 8063: true, 8064: true, 8080: true, 8081: false} {
			tr = trace(t, o, "br-int", fmt.Sprintf("in_port=%d,dl_vlan=3,dl_src=fa:16:3e:00:00:77,dl_dst=fa:16:3e:00:00:01,tcp,nw_src=10.0.0.99,nw_dst=10.0.0.1,tp_dst=%d", phy, port),
				"--ct-next", "trk,new")
			got := strings.Contains(datapathActions(tr), "ct(commit")
			if got != admit {
				t.Errorf("tcp %d to b1: admitted=%v, want %v:\n%s", port, got, admit, tr)
			}
		}
		// The allowed address pair 10.0.0.100 passes b3's port security; 10.0.0.101 not.
		for src, pass := range map[string]bool{"10.0.0.100": true, "10.0.0.101": false} {
			tr = trace(t, o, "br-int", in("b3")+",dl_src=fa:16:3e:00:00:23,dl_dst=ff:ff:ff:ff:ff:ff,udp,nw_src="+src+",nw_dst=10.0.0.255,udp_dst=9",
				"--ct-next", "trk,new")
			got := strings.Contains(datapathActions(tr), "ct(commit")
			if got != pass {
				t.Errorf("b3 from %s: passed=%v, want %v:\n%s", src, got, pass, tr)
			}
		}
	})
}

// TestLabBenchNodeLoads loads the benchmark node's flows (10,000 ports, ~175k flows)
// into a real ovs-vswitchd in one bundle per bridge and reads them back: OVS accepts
// every flow the compiler makes at scale, and the dump equals the compiled text. (The
// ports need not exist: OVS accepts flows for absent port numbers.)
func TestLabBenchNodeLoads(t *testing.T) {
	if testing.Short() {
		t.Skip("lab: 175k flows take ~10 s to load and dump; skipped with -short")
	}
	o := lab.StartOVS(t, lab.Options{})
	layout := labLayout(t, o)
	ir, plan := benchModel(t)
	res, err := Compile(layout, ir, plan)
	if err != nil {
		t.Fatal(err)
	}
	bridges := []string{"br-int", "br-phys1", "br-tun"}
	start := time.Now()
	loadFlows(t, o, res.Flows, bridges...)
	t.Logf("%d flows loaded in %s", len(res.Flows), time.Since(start).Round(time.Millisecond))
	var got []Flow
	for _, br := range bridges {
		got = append(got, dumpFlows(t, o, br)...)
	}
	SortFlows(got)
	if len(got) != len(res.Flows) {
		t.Errorf("OVS holds %d flows, compiled %d", len(got), len(res.Flows))
	}
	if d := lineDiff(flowText(res.Flows), flowText(got)); d != "" {
		if len(d) > 4000 {
			d = d[:4000] + "..."
		}
		t.Errorf("dump differs from the compiled flows:\n%s", d)
	}
}

// TestLabSegmentTypesLoad loads the flat/geneve/gre/local scenario with chunked flood
// lists into a real OVS (geneve and gre tunnel ports included) and reads it back.
func TestLabSegmentTypesLoad(t *testing.T) {
	o := lab.StartOVS(t, lab.Options{})
	ir, plan, layout := segmentTypesScenario(t, labLayout(t, o))
	res, err := Compile(layout, ir, plan, WithFloodChunk(2))
	if err != nil {
		t.Fatal(err)
	}
	bridges := []string{"br-int", "br-phys1", "br-tun"}
	loadFlows(t, o, res.Flows, bridges...)
	var got []Flow
	for _, br := range bridges {
		got = append(got, dumpFlows(t, o, br)...)
	}
	SortFlows(got)
	if d := lineDiff(flowText(res.Flows), flowText(got)); d != "" {
		t.Errorf("dump differs from the compiled flows:\n%s", d)
	}
	// A broadcast from the flat uplink floods the five local ports through two
	// continuation chunks (ports 30-34 do not exist here: the trace shows the resubmits).
	phy := layout.OFPorts[IntPatch("br-phys1")]
	tr := trace(t, o, "br-int", fmt.Sprintf("in_port=%d,dl_vlan=1,dl_src=fa:16:3e:00:00:99,dl_dst=ff:ff:ff:ff:ff:ff,arp,arp_spa=10.1.0.99,arp_tpa=10.1.0.10,arp_op=1", phy))
	for _, want := range []string{"set_field:0x1e->reg7", "set_field:0x1->reg4", "36. reg4=0x1,reg6=0x1", "36. reg4=0x2,reg6=0x1", "set_field:0x22->reg7"} {
		if !strings.Contains(tr, want) {
			t.Errorf("flood trace lacks %q:\n%s", want, tr)
		}
	}
	// Geneve VNI 77 from node3 enters the geneve network; the same VNI on the GRE port
	// does not (the key space is per tunnel type).
	gen, gre := layout.OFPorts[TunnelPort(SegGeneve)], layout.OFPorts[TunnelPort(SegGRE)]
	tr = trace(t, o, "br-tun", fmt.Sprintf("in_port=%d,tun_id=0x4d,tun_src=192.0.2.3,dl_src=fa:16:3e:00:02:01,dl_dst=ff:ff:ff:ff:ff:ff", gen))
	if !strings.Contains(tr, fmt.Sprintf("output:%d", layout.OFPorts[PatchInt])) {
		t.Errorf("geneve VNI 77 from node3 did not reach patch-int:\n%s", tr)
	}
	tr = trace(t, o, "br-tun", fmt.Sprintf("in_port=%d,tun_id=0x4d,tun_src=192.0.2.3,dl_src=fa:16:3e:00:02:01,dl_dst=ff:ff:ff:ff:ff:ff", gre))
	if got := datapathActions(tr); got != "drop" {
		t.Errorf("GRE key 77 (the geneve network's VNI): %q, want drop", got)
	}
}
