package ovsdpdk_test

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

// TestLabFlushConntrack: a real OVS 3.1 userspace datapath with a conntrack pipeline in
// zone 5 and two netns VMs holding an IPv4 echo, an IPv6 echo and long-lived TCP
// connections (IPv4 to 5201, 5202 and 5203, IPv6 to 5201). FlushConntrack takes out
// exactly what each flush selects, read back with ovs-appctl: an ICMP flush (dump and
// exact flushes: OVS cannot match ICMP by a partial tuple), a port range from a CIDR
// (dump), one port from one host (the partial tuple), and an IPv6 any-protocol flush
// that spares the ICMPv6 echo on this OVS (flushing it would abort ovs-vswitchd) and
// says so; ovs-vswitchd is still the same process afterwards.
func TestLabFlushConntrack(t *testing.T) {
	lab.Require(t, "ping", "busybox")
	o := lab.StartOVS(t, lab.Options{})
	c := connect(t, o)
	ctx := ctxT(t, 2*time.Minute)
	if _, err := c.ApplyNode(ctx, layoutFrom(t, "datapath: netdev\nintegration_bridge: br-int\n", nil), ovsdpdk.ApplyOptions{Wait: true}); err != nil {
		t.Fatal(err)
	}
	a := o.AddVM(t, "cta", lab.VMOptions{IP: "10.9.0.1/24"})
	b := o.AddVM(t, "ctb", lab.VMOptions{IP: "10.9.0.2/24"})
	ports := ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{Bridge: "br-int"})
	for _, vm := range []*lab.VM{a, b} {
		if err := ports.PortAdd(ctx, ovsdpdk.Port{Name: vm.HostIf, Type: ovsdpdk.PortSystem, IfaceID: "port-" + vm.HostIf}); err != nil {
			t.Fatal(err)
		}
	}
	for i, vm := range []*lab.VM{a, b} {
		// AddVM turns IPv6 off (no chatter in captures): this test wants it on eth0
		ctRun(t, "ip", "netns", "exec", vm.NS, "sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6")
		ctRun(t, "ip", "-n", vm.NS, "addr", "add", fmt.Sprintf("fd00::%d/64", i+1), "dev", "eth0", "nodad")
	}
	flows := filepath.Join(t.TempDir(), "flows.txt")
	if err := os.WriteFile(flows, []byte(`table=0,priority=100,ip,ct_state=-trk,actions=ct(table=0,zone=5)
table=0,priority=100,ipv6,ct_state=-trk,actions=ct(table=0,zone=5)
table=0,priority=90,ip,ct_state=+trk+new,actions=ct(commit,zone=5),NORMAL
table=0,priority=90,ipv6,ct_state=+trk+new,actions=ct(commit,zone=5),NORMAL
table=0,priority=80,ct_state=+trk+est,actions=NORMAL
table=0,priority=1,actions=NORMAL
`), 0o644); err != nil {
		t.Fatal(err)
	}
	of := ovsdpdk.NewOfctl(ovsdpdk.OfctlOptions{RunDir: o.Dir})
	if out, err := o.Ofctl("-O", "OpenFlow15", "replace-flows", of.Target("br-int"), flows); err != nil {
		t.Fatalf("%v: %s", err, out)
	}

	// the traffic: echoes, and TCP connections that stay open
	for _, p := range []string{"5201", "5202", "5203"} {
		ctBackground(t, "ip", "netns", "exec", b.NS, "busybox", "nc", "-ll", "-p", p, "-e", "cat")
	}
	ctWaitFor(t, "listeners", func() bool {
		out, _ := exec.Command("ip", "netns", "exec", b.NS, "busybox", "netstat", "-ltn").Output()
		return strings.Count(string(out), ":520") >= 3
	})
	ctRun(t, "ip", "netns", "exec", a.NS, "ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", "10.9.0.2")
	ctRun(t, "ip", "netns", "exec", a.NS, "ping", "-6", "-n", "-c", "2", "-i", "0.2", "-W", "2", "fd00::2")
	for _, dst := range []string{"10.9.0.2 5201", "10.9.0.2 5202", "10.9.0.2 5203", "fd00::2 5201"} {
		ctBackground(t, "sh", "-c", "sleep 60 | ip netns exec "+a.NS+" busybox nc "+dst)
	}
	// each entry by the strings one line of the dump must hold
	entry := map[string][]string{
		"icmp":   {"icmp,orig=(src=10.9.0.1,dst=10.9.0.2,"},
		"icmpv6": {"icmpv6,orig=(src=fd00::1,dst=fd00::2,"},
		"5201":   {"tcp,orig=(src=10.9.0.1,dst=10.9.0.2,", "dport=5201)"},
		"5202":   {"tcp,orig=(src=10.9.0.1,dst=10.9.0.2,", "dport=5202)"},
		"5203":   {"tcp,orig=(src=10.9.0.1,dst=10.9.0.2,", "dport=5203)"},
		"tcp6":   {"tcp,orig=(src=fd00::1,dst=fd00::2,", "dport=5201)"},
	}
	dump := func() string {
		out, err := o.Appctl("dpctl/dump-conntrack", "zone=5")
		if err != nil {
			t.Fatalf("dump-conntrack: %v", err)
		}
		return out
	}
	has := func(out, name string) bool {
	lines:
		for _, l := range strings.Split(out, "\n") {
			for _, s := range entry[name] {
				if !strings.Contains(l, s) {
					continue lines
				}
			}
			return true
		}
		return false
	}
	ctWaitFor(t, "conntrack entries", func() bool {
		out := dump()
		for n := range entry {
			if !has(out, n) {
				return false
			}
		}
		return true
	})
	pid := o.VswitchdPID()
	u := unixctl(o)
	pf := netip.MustParsePrefix
	expect := func(what string, gone, kept []string) {
		t.Helper()
		out := dump()
		for _, n := range gone {
			if has(out, n) {
				t.Errorf("%s: the %s entry is still there:\n%s", what, n, out)
			}
		}
		for _, n := range kept {
			if !has(out, n) {
				t.Errorf("%s: the %s entry is gone too:\n%s", what, n, out)
			}
		}
	}

	// ICMP echo requests to B from anywhere: not expressible as a partial tuple
	icmp := offload.CTFlush{Zone: 5, PortID: "b", Direction: offload.Ingress, EtherType: offload.IPv4, Dst: pf("10.9.0.2/32"),
		Proto: offload.ProtoICMP, PortMin: 8, PortMax: -1}
	res, err := u.FlushConntrack(ctx, []offload.CTFlush{icmp})
	if err != nil || res.Done != 1 || res.Entries != 1 {
		t.Errorf("icmp flush: %+v, %v", res, err)
	}
	expect("icmp flush", []string{"icmp"}, []string{"icmpv6", "5201", "5202", "5203", "tcp6"})

	// TCP 5200-5201 from 10.9.0.0/24 (dump), and TCP 5202 from 10.9.0.1 (partial tuple)
	rng := offload.CTFlush{Zone: 5, PortID: "b", Direction: offload.Ingress, EtherType: offload.IPv4, Src: pf("10.9.0.0/24"),
		Dst: pf("10.9.0.2/32"), Proto: offload.ProtoTCP, PortMin: 5200, PortMax: 5201}
	one := offload.CTFlush{Zone: 5, PortID: "b", Direction: offload.Ingress, EtherType: offload.IPv4, Src: pf("10.9.0.1/32"),
		Dst: pf("10.9.0.2/32"), Proto: offload.ProtoTCP, PortMin: 5202, PortMax: 5202}
	if !one.Exact() || rng.Exact() {
		t.Fatalf("exact: %v %v", one.Exact(), rng.Exact())
	}
	res, err = u.FlushConntrack(ctx, []offload.CTFlush{rng, one})
	if err != nil || res.Done != 2 || res.Entries != 1 || res.Calls != 2 {
		t.Errorf("tcp flushes: %+v, %v", res, err)
	}
	expect("tcp flushes", []string{"5201", "5202"}, []string{"icmpv6", "5203", "tcp6"})

	// everything A sent over IPv6 (an egress any-protocol rule removed): TCP goes, the
	// ICMPv6 echo stays on an OVS whose conntrack would abort on it
	v6 := offload.CTFlush{Zone: 5, PortID: "a", Direction: offload.Egress, EtherType: offload.IPv6, Src: pf("fd00::1/128"),
		Proto: offload.ProtoAny, PortMin: -1, PortMax: -1}
	res, err = u.FlushConntrack(ctx, []offload.CTFlush{v6})
	if !errors.Is(err, ovsdpdk.ErrICMPv6FlushAborts) || res.Done != 0 || res.Entries != 1 {
		t.Errorf("ipv6 flush: %+v, %v (want ErrICMPv6FlushAborts and the TCP entry flushed)", res, err)
	}
	expect("ipv6 flush", []string{"tcp6"}, []string{"icmpv6", "5203"})

	// validation: nothing sent
	res, err = u.FlushConntrack(ctx, []offload.CTFlush{{Zone: 0, EtherType: offload.IPv4, Dst: pf("10.9.0.2/32"), Proto: offload.ProtoAny}})
	if err == nil || !strings.Contains(err.Error(), "zone 0") || res.Calls != 0 {
		t.Errorf("zone 0: %+v, %v", res, err)
	}
	expect("refused flush", nil, []string{"icmpv6", "5203"})
	if got := o.VswitchdPID(); got != pid {
		t.Fatalf("ovs-vswitchd restarted (pid %d → %d)", pid, got)
	}
	if _, err := o.Appctl("version"); err != nil {
		t.Fatalf("ovs-vswitchd no longer answers: %v", err)
	}
}

func ctRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// ctBackground starts a command in its own process group, killed (the group, by its
// PID) at cleanup.
func ctBackground(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
}

func ctWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
