//go:build linux

package sriov_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/sriov"
	"github.com/offlane/offlane/test/kernellab"
)

// Guest tests of the tc flower compiler and applier: rules compiled from an IR are put
// into Debian's kernel with offlane's encoder, read back, and carry real traffic in software
// (skip_hw) between network namespaces. netdevsim VFs have no netdevs, so veth pairs
// stand in for VF ↔ representor: the VM namespace holds one end (the VF), the host the
// other (the representor, which carries the rules); another veth is the uplink, its peer
// in an "ext" namespace is the physical switch and a host beyond it.

func tcsh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// tcNetns creates network namespace name, deleted in t.Cleanup.
func tcNetns(t *testing.T, name string) {
	t.Helper()
	tcsh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	tcsh(t, "ip", "-n", name, "link", "set", "lo", "up")
}

// tcVM puts a VM in namespace ns: veth rep (host side, the representor) ↔ eth0 in ns
// (the VF) with mac and addr.
func tcVM(t *testing.T, ns, rep, mac, addr string) {
	t.Helper()
	tcNetns(t, ns)
	tcsh(t, "ip", "link", "add", rep, "type", "veth", "peer", "name", "eth0", "netns", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", rep).Run() })
	tcsh(t, "ip", "-n", ns, "link", "set", "eth0", "address", mac)
	tcsh(t, "ip", "-n", ns, "addr", "add", addr, "dev", "eth0")
	tcsh(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	tcsh(t, "ip", "link", "set", rep, "up")
}

func tcVF(i int) string { return fmt.Sprintf("0000:03:00.%d", i+1) }

// tcNode is the capability matrix of a switchdev NIC whose uplink netdev is uplink and
// whose VF i has representor reps[i].
func tcNode(uplink string, reps []string, vlan, vxlan hwdetect.Level) *hwdetect.Node {
	nic := hwdetect.NIC{Name: uplink, PCIAddress: "0000:03:00.0", EswitchMode: hwdetect.EswitchSwitchdev,
		SRIOV: &hwdetect.SRIOV{TotalVFs: len(reps), NumVFs: len(reps)},
		Capabilities: hwdetect.Capabilities{VLAN: hwdetect.Capability{Level: vlan, Reason: "lab matrix"},
			VXLANEncap: hwdetect.Capability{Level: vxlan, Reason: "lab matrix"}}}
	for i, r := range reps {
		nic.SRIOV.VFs = append(nic.SRIOV.VFs, hwdetect.VF{Index: i, PCIAddress: tcVF(i), Representor: r})
	}
	return &hwdetect.Node{Hostname: "node1", NICs: []hwdetect.NIC{nic},
		KernelFeatures: hwdetect.KernelFeatures{TCFlower: hwdetect.FeatureLoaded, ActCT: hwdetect.FeatureLoaded}}
}

func tcLayout() offload.TCLayout {
	return offload.TCLayout{Node: offload.NodeLayout{Datapath: "system", IntegrationBridge: "br-int", TunnelBridge: "br-tun",
		TunnelLocalIP: netip.MustParseAddr("192.0.2.1"), TunnelTypes: []string{offload.SegVXLAN},
		PhysnetBridges: map[string]string{"physnet1": "br-phys1"}}}
}

type tcPortSpec struct{ id, net, mac string }

func tcIR(segs []*offload.Segment, ports []tcPortSpec, remotes []*offload.RemotePort) *offload.IR {
	ir := &offload.IR{Host: "node1", Segments: map[string]*offload.Segment{}, Ports: map[string]*offload.Port{},
		RemotePorts: map[string]*offload.RemotePort{}, SecurityGroups: map[string]*offload.SecurityGroup{}, Members: map[string]*offload.Member{}}
	for _, s := range segs {
		ir.Segments[s.NetworkID] = s
	}
	for i, p := range ports {
		ir.Ports[p.id] = &offload.Port{ID: p.id, NetworkID: p.net, AdminStateUp: true, MAC: p.mac,
			VNICType: controlplane.VNICDirect, PCISlot: tcVF(i)}
	}
	for _, r := range remotes {
		ir.RemotePorts[r.ID] = r
	}
	return ir
}

func tcCompile(t *testing.T, ir *offload.IR, node *hwdetect.Node) *offload.TCResult {
	t.Helper()
	plan := offload.PlanNode(ir, node, tcLayout().Node)
	res, err := offload.CompileTC(ir, plan, node, tcLayout())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) > 0 || len(res.Rules) == 0 {
		t.Fatalf("compile: %d rules, skipped %+v\n%s", len(res.Rules), res.Skipped, plan)
	}
	return res
}

func tcApplier(t *testing.T) (*sriov.TCApplier, *sriov.NetlinkTC) {
	t.Helper()
	g, err := sriov.NewNetlinkTC()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return sriov.NewTCApplier(g, zaptest.NewLogger(t)), g
}

// tcApply applies rules and checks the read-back: every rule present with equal content.
func tcApply(t *testing.T, a *sriov.TCApplier, rules []offload.TCRule, prune []string) *sriov.TCReport {
	t.Helper()
	rep, err := a.Apply(context.Background(), rules, prune)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if m := sriov.TCMissing(rules, rep.Filters); len(m) > 0 {
		t.Fatalf("read back: %d rules missing or different, first %s", len(m), m[0])
	}
	if len(rep.Filters) != len(rules) {
		t.Fatalf("read back %d offlane filters, want %d", len(rep.Filters), len(rules))
	}
	return rep
}

// capture runs tcpdump in ns on dev until stop is called and returns its output.
type capture struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	mu   sync.Mutex
	done chan struct{}
}

func tcpdump(t *testing.T, ns, dev string, filter ...string) *capture {
	t.Helper()
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump is not in the guest (install tcpdump on the host: deploy/install-deps.sh)")
	}
	args := append([]string{"netns", "exec", ns, "tcpdump", "-Z", "root", "-i", dev, "-e", "-n", "-l", "-U"}, filter...)
	c := &capture{cmd: exec.Command("ip", args...), done: make(chan struct{})}
	w := &lockedWriter{c: c}
	c.cmd.Stdout, c.cmd.Stderr = w, w
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { c.stop() })
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(c.text(), "listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("tcpdump did not start: %s", c.text())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

type lockedWriter struct{ c *capture }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	return w.c.out.Write(p)
}

func (c *capture) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

func (c *capture) stop() string {
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(unix.SIGINT)
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
	return c.text()
}

func ping(ns, addr string) error {
	out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-c", "2", "-W", "3", addr).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ping %s from %s: %w\n%s", addr, ns, err, out)
	}
	return nil
}

// TestKernelTCVLAN: two direct ports on VLAN 100 through an uplink whose far side has a
// host on VLAN 100 and one on VLAN 200. Rules are accepted and read back equal (and
// iproute2 shows the VLAN id, checking the byte order), frames leave tagged 100, the
// VLAN 200 host is unreachable, the two VMs reach each other, a re-apply changes
// nothing, and removing a port prunes only its own rules (a foreign filter stays).
func TestKernelTCVLAN(t *testing.T) {
	kernellab.RequireGuest(t)
	tcVM(t, "tcvm1", "tcrep0", "fa:16:3e:00:00:01", "10.0.0.1/24")
	tcVM(t, "tcvm2", "tcrep1", "fa:16:3e:00:00:02", "10.0.0.2/24")
	tcNetns(t, "tcext")
	tcsh(t, "ip", "link", "add", "tcup0", "type", "veth", "peer", "name", "eth0", "netns", "tcext")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", "tcup0").Run() })
	tcsh(t, "ip", "link", "set", "tcup0", "up")
	tcsh(t, "ip", "-n", "tcext", "link", "set", "eth0", "up")
	// two hosts beyond the switch, each in its own namespace (one namespace would answer
	// ARP for both addresses on either VLAN)
	tcNetns(t, "tcext200")
	for _, v := range []struct{ id, addr, ns string }{{"100", "10.0.0.9/24", "tcext"}, {"200", "10.0.0.19/24", "tcext200"}} {
		tcsh(t, "ip", "-n", "tcext", "link", "add", "link", "eth0", "name", "eth0."+v.id, "type", "vlan", "id", v.id)
		if v.ns != "tcext" {
			tcsh(t, "ip", "-n", "tcext", "link", "set", "eth0."+v.id, "netns", v.ns)
		}
		tcsh(t, "ip", "-n", v.ns, "addr", "add", v.addr, "dev", "eth0."+v.id)
		tcsh(t, "ip", "-n", v.ns, "link", "set", "eth0."+v.id, "up")
	}

	node := tcNode("tcup0", []string{"tcrep0", "tcrep1"}, hwdetect.LevelSW, hwdetect.LevelSW)
	seg := &offload.Segment{NetworkID: "net-v", Type: offload.SegVLAN, PhysicalNetwork: "physnet1", SegmentationID: 100, LocalVLAN: 1}
	ir := tcIR([]*offload.Segment{seg}, []tcPortSpec{{"p1", "net-v", "fa:16:3e:00:00:01"}, {"p2", "net-v", "fa:16:3e:00:00:02"}}, nil)
	res := tcCompile(t, ir, node)
	for _, r := range res.Rules {
		if r.Flags != offload.TCSkipHW || !strings.Contains(r.Reason, "vlan push/pop not offloaded by tcup0 (sw: lab matrix)") {
			t.Fatalf("rule %s: flags %s reason %q", r, r.Flags, r.Reason)
		}
	}
	a, _ := tcApplier(t)
	devs := []string{"tcrep0", "tcrep1", "tcup0"}
	rep := tcApply(t, a, res.Rules, devs)
	if rep.Added != len(res.Rules) || rep.Deleted != 0 {
		t.Fatalf("first apply: %+v", rep)
	}
	// iproute2's view (not offlane's decoder's): the VLAN id and the software placement
	up := tcsh(t, "tc", "filter", "show", "dev", "tcup0", "ingress")
	for _, w := range []string{"vlan_id 100", "dst_mac fa:16:3e:00:00:01", "skip_hw", "vlan  pop", "Egress Redirect to device tcrep0"} {
		if !strings.Contains(up, w) {
			t.Errorf("tc filter show dev tcup0 ingress lacks %q:\n%s", w, up)
		}
	}
	if r0 := tcsh(t, "tc", "filter", "show", "dev", "tcrep0", "ingress"); !strings.Contains(r0, "push id 100") {
		t.Errorf("tcrep0: no vlan push id 100:\n%s", r0)
	}

	cap := tcpdump(t, "tcext", "eth0", "vlan")
	if err := ping("tcvm1", "10.0.0.9"); err != nil {
		t.Errorf("VM → VLAN 100 host: %v", err)
	}
	if err := ping("tcvm2", "10.0.0.9"); err != nil {
		t.Errorf("VM 2 → VLAN 100 host: %v", err)
	}
	if err := ping("tcvm1", "10.0.0.19"); err == nil {
		t.Errorf("VM reached the VLAN 200 host: isolation broken")
	}
	if err := ping("tcvm1", "10.0.0.2"); err != nil {
		t.Errorf("VM 1 → VM 2 (representor to representor): %v", err)
	}
	dump := cap.stop()
	for _, w := range []string{"fa:16:3e:00:00:01 > ", "vlan 100", "10.0.0.1 > 10.0.0.9: ICMP echo request", "10.0.0.9 > 10.0.0.1: ICMP echo reply"} {
		if !strings.Contains(dump, w) {
			t.Errorf("tcpdump on the uplink's far side lacks %q:\n%s", w, dump)
		}
	}
	if strings.Contains(dump, "10.0.0.1 > 10.0.0.2") {
		t.Errorf("VM-to-VM traffic left through the uplink:\n%s", dump)
	}
	if t.Failed() {
		t.Logf("filters:\n%s\n%s", up, tcsh(t, "tc", "-s", "filter", "show", "dev", "tcrep0", "ingress"))
		return
	}

	// idempotent
	if rep := tcApply(t, a, res.Rules, devs); rep.Added != 0 || rep.Deleted != 0 || rep.Kept != len(res.Rules) {
		t.Fatalf("re-apply changed something: %+v", rep)
	}
	// a foreign filter is left alone; removing p2 prunes only offlane's rules
	tcsh(t, "tc", "filter", "add", "dev", "tcrep1", "ingress", "prio", "40", "protocol", "all", "flower", "skip_hw", "action", "pass")
	ir2 := ir.Clone()
	delete(ir2.Ports, "p2")
	res2 := tcCompile(t, ir2, node)
	rep2 := tcApply(t, a, res2.Rules, devs)
	if rep2.Deleted == 0 || rep2.Added == 0 {
		t.Fatalf("removing p2: %+v", rep2)
	}
	r1 := tcsh(t, "tc", "filter", "show", "dev", "tcrep1", "ingress")
	if !strings.Contains(r1, "pref 40") || strings.Contains(r1, "pref 30") {
		t.Errorf("tcrep1 after removing p2: want only the foreign filter:\n%s", r1)
	}
	if err := ping("tcvm1", "10.0.0.9"); err != nil {
		t.Errorf("after removing p2: %v", err)
	}
}

// TestKernelTCVXLAN: a direct port on VXLAN network 1001 and a remote port behind VTEP
// 192.0.2.2 (an ordinary vxlan device in the ext namespace). Encap (tunnel_key set +
// mirred to the collect_md device) and decap (match enc_key_id) carry a ping; tcpdump
// on the underlay shows VNI 1001.
func TestKernelTCVXLAN(t *testing.T) {
	kernellab.RequireGuest(t)
	tcVM(t, "tcvm3", "tcrep2", "fa:16:3e:00:00:03", "10.1.0.3/24")
	tcNetns(t, "tcext2")
	tcsh(t, "ip", "link", "add", "tcul0", "type", "veth", "peer", "name", "ul1", "netns", "tcext2")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", "tcul0").Run() })
	tcsh(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "tcul0")
	tcsh(t, "ip", "link", "set", "tcul0", "up")
	tcsh(t, "ip", "-n", "tcext2", "addr", "add", "192.0.2.2/24", "dev", "ul1")
	tcsh(t, "ip", "-n", "tcext2", "link", "set", "ul1", "up")
	tcsh(t, "ip", "-n", "tcext2", "link", "add", "vx1001", "type", "vxlan", "id", "1001", "local", "192.0.2.2", "remote", "192.0.2.1", "dstport", "4789")
	tcsh(t, "ip", "-n", "tcext2", "link", "set", "vx1001", "address", "fa:16:3e:00:00:0a")
	tcsh(t, "ip", "-n", "tcext2", "addr", "add", "10.1.0.9/24", "dev", "vx1001")
	tcsh(t, "ip", "-n", "tcext2", "link", "set", "vx1001", "up")
	tcsh(t, "ip", "link", "add", offload.DefaultVXLANTC, "type", "vxlan", "external", "dstport", "4789")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", offload.DefaultVXLANTC).Run() })
	tcsh(t, "ip", "link", "set", offload.DefaultVXLANTC, "up")

	// a 2-VF NIC: VF 1's representor is absent (no port on it)
	node := tcNode("tcul0", []string{"tcrep2"}, hwdetect.LevelSW, hwdetect.LevelSW)
	seg := &offload.Segment{NetworkID: "net-x", Type: offload.SegVXLAN, SegmentationID: 1001, LocalVLAN: 2}
	ir := tcIR([]*offload.Segment{seg}, []tcPortSpec{{"p3", "net-x", "fa:16:3e:00:00:03"}},
		[]*offload.RemotePort{{ID: "r1", NetworkID: "net-x", Host: "node2", VTEP: netip.MustParseAddr("192.0.2.2"), MAC: "fa:16:3e:00:00:0a"}})
	res := tcCompile(t, ir, node)
	if len(res.Fallbacks) != 1 || !strings.Contains(res.Fallbacks[0].Reason, "vxlan encap not offloaded by tcul0") {
		t.Fatalf("fallbacks %+v", res.Fallbacks)
	}
	a, _ := tcApplier(t)
	tcApply(t, a, res.Rules, []string{"tcrep2", offload.DefaultVXLANTC})
	vx := tcsh(t, "tc", "filter", "show", "dev", offload.DefaultVXLANTC, "ingress")
	for _, w := range []string{"enc_key_id 1001", "enc_dst_ip 192.0.2.1", "enc_dst_port 4789", "tunnel_key  unset"} {
		if !strings.Contains(vx, w) {
			t.Errorf("tc filter show dev %s lacks %q:\n%s", offload.DefaultVXLANTC, w, vx)
		}
	}
	r2 := tcsh(t, "tc", "filter", "show", "dev", "tcrep2", "ingress")
	for _, w := range []string{"dst_ip 192.0.2.2", "key_id 1001", "dst_port 4789", "Egress Redirect to device " + offload.DefaultVXLANTC} {
		if !strings.Contains(r2, w) {
			t.Errorf("tc filter show dev tcrep2 lacks %q:\n%s", w, r2)
		}
	}

	cap := tcpdump(t, "tcext2", "ul1", "udp", "port", "4789")
	if err := ping("tcvm3", "10.1.0.9"); err != nil {
		t.Errorf("VM → remote port over VXLAN: %v", err)
	}
	dump := cap.stop()
	for _, w := range []string{"192.0.2.1.", "> 192.0.2.2.4789: VXLAN", "vni 1001", "10.1.0.3 > 10.1.0.9: ICMP echo request", "10.1.0.9 > 10.1.0.3: ICMP echo reply"} {
		if !strings.Contains(dump, w) {
			t.Errorf("tcpdump on the underlay lacks %q:\n%s", w, dump)
		}
	}
	if t.Failed() {
		t.Logf("stats:\n%s\n%s", tcsh(t, "tc", "-s", "filter", "show", "dev", "tcrep2", "ingress"),
			tcsh(t, "tc", "-s", "filter", "show", "dev", offload.DefaultVXLANTC, "ingress"))
	}
}

// TestKernelTCSkipSWFallback: netdevsim with hw-tc-offload on refuses a skip_sw flower
// rule with EOPNOTSUPP (it offloads only cls_bpf); the applier records the refusal and
// puts the rule in software (skip_hw), read back from the kernel.
func TestKernelTCSkipSWFallback(t *testing.T) {
	kernellab.RequireGuest(t)
	nsim := kernellab.NewNetdevsim(t, 21, 1)
	up := nsim.Ports[0]
	tcsh(t, "ip", "link", "set", up, "up")
	tcsh(t, "ethtool", "-K", up, "hw-tc-offload", "on")
	tcVM(t, "tcvm4", "tcrep4", "fa:16:3e:00:00:04", "10.2.0.4/24")

	node := tcNode(up, []string{"tcrep4"}, hwdetect.LevelHW, hwdetect.LevelHW)
	seg := &offload.Segment{NetworkID: "net-v", Type: offload.SegVLAN, PhysicalNetwork: "physnet1", SegmentationID: 300, LocalVLAN: 1}
	ir := tcIR([]*offload.Segment{seg}, []tcPortSpec{{"p4", "net-v", "fa:16:3e:00:00:04"}}, nil)
	res := tcCompile(t, ir, node)
	if len(res.Fallbacks) != 0 {
		t.Fatalf("the matrix says hw, compiler fell back: %+v", res.Fallbacks)
	}

	a, g := tcApplier(t)
	if err := g.EnsureClsact(context.Background(), up); err != nil {
		t.Fatal(err)
	}
	// the kernel's answer, directly
	var onUp *offload.TCRule
	for i := range res.Rules {
		if res.Rules[i].Dev == up {
			onUp = &res.Rules[i]
			break
		}
	}
	if onUp == nil || onUp.Flags != offload.TCSkipSW {
		t.Fatalf("no skip_sw rule on %s: %+v", up, res.Rules)
	}
	err := g.FilterAdd(context.Background(), onUp)
	if !errors.Is(err, sriov.ErrTCSkipSWRejected) || !errors.Is(err, unix.EOPNOTSUPP) {
		t.Fatalf("skip_sw on netdevsim: err = %v, want EOPNOTSUPP", err)
	}
	if out := tcsh(t, "tc", "filter", "show", "dev", up, "ingress"); strings.Contains(out, "flower") {
		t.Fatalf("refused rule left behind:\n%s", out)
	}

	rep := tcApply(t, a, res.Rules, nil)
	if len(rep.Fallbacks) != len(res.Rules) {
		t.Fatalf("fallbacks %d, want every rule (%d): %+v", len(rep.Fallbacks), len(res.Rules), rep.Fallbacks)
	}
	for _, f := range rep.Fallbacks {
		if !strings.Contains(f.Reason, "operation not supported") || !strings.Contains(f.Reason, "runs in software (skip_hw)") {
			t.Errorf("fallback reason %q", f.Reason)
		}
	}
	for _, f := range rep.Filters {
		if f.Rule.Flags != offload.TCSkipHW || f.InHW {
			t.Errorf("filter %s: flags %s in_hw %v, want skip_hw in software", f.Rule.String(), f.Rule.Flags, f.InHW)
		}
	}
	if out := tcsh(t, "tc", "filter", "show", "dev", up, "ingress"); !strings.Contains(out, "skip_hw") || !strings.Contains(out, "vlan_id 300") {
		t.Errorf("tc filter show dev %s:\n%s", up, out)
	}
	// applying again keeps the software rules and says so
	rep2 := tcApply(t, a, res.Rules, nil)
	if rep2.Added != 0 || rep2.Kept != len(res.Rules) || len(rep2.Fallbacks) != len(res.Rules) {
		t.Errorf("re-apply: %+v", rep2)
	}
}
