package ovsdpdk_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

// dpdkNodeYAML is a node config for the DPDK lab: DPDK settings come from the lab (its
// private hugetlbfs, file prefix and CPUs).
func dpdkNodeYAML(o *lab.OVS) string {
	d := o.DPDK
	var b strings.Builder
	fmt.Fprintf(&b, "datapath: netdev\nintegration_bridge: br-int\nvhostuser_socket_dir: %s\n", filepath.Join(o.Dir, "vhu"))
	fmt.Fprintf(&b, "dpdk:\n  enabled: true\n  pmd_cpus: \"%d\"\n  lcore_cpus: \"%d\"\n  pmd_maxsleep: %d\n  extra: %q\n",
		d.PMDCPU, d.LcoreCPU, d.PMDMaxSleep, d.Extra)
	if !d.NoHuge {
		// socket_limit: without it OVS sizes its mempools from every free hugepage and
		// testpmd (the VM) may find none left.
		fmt.Fprintf(&b, "  socket_mem: [%d]\n  socket_limit: auto\n  hugepage_dir: %s\n", d.SocketMem[0], d.HugeDir)
	}
	return b.String()
}

// TestLabDPDKVhostUser: on the OVS-DPDK build, node apply initialises DPDK; a vhost-user
// port attached with the Ports API and dpdk-testpmd (icmpecho) as the VM reaches
// link_state=up and answers ping from a netns VM on the same bridge. Then ovs-vswitchd
// and ovsdb-server are killed with SIGKILL and restarted: the client reconnects by
// itself, a later apply and attach are no-ops with no duplicated rows, and the vhost-user
// port comes back up and answers again.
func TestLabDPDKVhostUser(t *testing.T) {
	o := lab.StartOVS(t, lab.Options{DPDK: true})
	ctx := ctxT(t, 3*time.Minute)
	hw, err := hwdetect.Detect(ctx, hwdetect.Options{})
	if err != nil {
		t.Fatalf("hardware detection (needed to resolve the DPDK CPUs): %v", err)
	}
	c := connect(t, o)
	want := layoutFrom(t, dpdkNodeYAML(o), hw)
	res, err := c.ApplyNode(ctx, want, ovsdpdk.ApplyOptions{Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("apply: %v", res.Plan.Changes)
	if err := o.WaitDPDKInitialized(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	info, err := ovsdpdk.NewProber(o.Endpoint).ProbeOVS(ctx)
	if err != nil || !info.Reachable || !info.DPDKInitialized || !slices.Contains(info.IfaceTypes, "dpdkvhostuserclient") || info.DPDKVersion == "" {
		t.Fatalf("probe after DPDK init: %+v %v", info, err)
	}

	vm1 := o.AddVM(t, "vm1", lab.VMOptions{IP: "10.0.0.1/24", MAC: "02:00:00:00:00:01"})
	// vm2 is reached through a DPDK port: DPDK's af_packet PMD on vm2's host-side veth
	// (how the lab emulates a DPDK NIC).
	vm2 := o.AddVM(t, "vm2", lab.VMOptions{IP: "10.0.0.2/24", MAC: "02:00:00:00:00:02"})
	ps := ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{SocketDir: filepath.Join(o.Dir, "vhu")})
	ports := []ovsdpdk.Port{
		{Name: "vm1", Type: ovsdpdk.PortSystem, IfaceID: "22222222-aaaa-4000-8000-000000000001", MAC: vm1.MAC},
		{Name: "vhu1", Type: ovsdpdk.PortVhostUser, IfaceID: "22222222-aaaa-4000-8000-000000000010", MAC: "02:00:00:00:00:10"},
		{Name: "dpdk-vm2", Type: ovsdpdk.PortDPDK, Devargs: "net_af_packet0,iface=" + vm2.HostIf, IfaceID: "22222222-aaaa-4000-8000-000000000002", MAC: vm2.MAC},
	}
	if err := ps.PortAdd(ctx, ports...); err != nil {
		t.Fatal(err)
	}
	st, err := ps.PortGet(ctx, "vhu1")
	if err != nil || st.SocketPath != filepath.Join(o.Dir, "vhu", "vhu1") {
		t.Fatalf("vhu1: %+v %v", st, err)
	}
	o.StartTestPMD(t, lab.TestPMDOptions{Socket: st.SocketPath, MAC: "02:00:00:00:00:10"})
	waitUp := func() {
		t.Helper()
		st, err := ps.PortWait(ctx, "vhu1", func(s *ovsdpdk.PortStatus) bool { return s.LinkState == "up" && s.OFPort > 0 })
		if err != nil {
			t.Fatalf("vhu1 never came up: %v\n%s", err, o.Tail("ovs-vswitchd.log", 20))
		}
		t.Logf("vhu1: %+v", st)
		if _, err := ps.PortWait(ctx, "vm1", func(s *ovsdpdk.PortStatus) bool { return s.LinkState == "up" && s.OFPort > 0 }); err != nil {
			t.Fatal(err)
		}
	}
	waitUp()
	// testpmd's icmpecho answers ARP and ping for any address.
	mustPing(t, vm1, "10.0.0.200")
	// The DPDK port forwards too.
	if st, err := ps.PortWait(ctx, "dpdk-vm2", func(s *ovsdpdk.PortStatus) bool { return s.OFPort > 0 && s.LinkState == "up" }); err != nil {
		t.Fatalf("dpdk-vm2: %v", err)
	} else {
		t.Logf("dpdk-vm2: %+v", st)
	}
	mustPing(t, vm2, vm1.IP)

	// Crash both daemons.
	rowsBefore := countRows(t, o)
	txns := c.Transactions()
	if err := o.KillVswitchd(); err != nil {
		t.Fatal(err)
	}
	if err := o.KillOVSDBServer(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "client notices the lost connection", func() bool { return !c.Connected() })
	if err := o.StartOVSDBServer(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "client reconnects by itself", c.Connected)
	// The database still holds the dead vswitchd's status: clear it, so "up" below can
	// only come from the new ovs-vswitchd.
	for _, n := range []string{"vhu1", "vm1"} {
		if _, err := o.Transact(map[string]any{"op": "update", "table": "Interface", "where": []any{[]any{"name", "==", n}},
			"row": map[string]any{"link_state": []any{"set", []any{}}, "ofport": []any{"set", []any{}}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ps.PortWait(ctx, "vhu1", func(s *ovsdpdk.PortStatus) bool { return s.LinkState == "" && s.OFPort == 0 }); err != nil {
		t.Fatal(err)
	}
	if err := o.StartVswitchd(); err != nil {
		t.Fatal(err)
	}
	if err := o.WaitDPDKInitialized(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	res, err = c.ApplyNode(ctx, want, ovsdpdk.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Transacted || c.Transactions() != txns {
		t.Fatalf("apply after the restart changed things: %v", res.Plan.Changes)
	}
	if err := ps.PortAdd(ctx, ports...); err != nil {
		t.Fatal(err)
	}
	if c.Transactions() != txns {
		t.Fatal("re-attaching the same ports after the restart sent a transaction")
	}
	if got := countRows(t, o); !equalCounts(got, rowsBefore) {
		t.Fatalf("rows before the crash %v, after %v", rowsBefore, got)
	}
	waitUp()
	mustPing(t, vm1, "10.0.0.200")
}

func countRows(t *testing.T, o *lab.OVS) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, table := range []string{"Bridge", "Port", "Interface"} {
		rows, err := o.Select(table, nil, "name")
		if err != nil {
			t.Fatal(err)
		}
		out[table] = len(rows)
	}
	return out
}

func equalCounts(a, b map[string]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
