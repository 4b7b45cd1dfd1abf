package ovsdpdk_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

var updatePMD = flag.Bool("update-pmd", false, "rewrite testdata/pmdstats/*.txt from the lab's real ovs-vswitchd")

// unixctl is the ovs-appctl runner on the lab's ovs-vswitchd.
func unixctl(o *lab.OVS) *ovsdpdk.Unixctl {
	return ovsdpdk.NewUnixctl(ovsdpdk.UnixctlOptions{Target: filepath.Join(o.Dir, "ovs-vswitchd.ctl"), RunDir: o.Dir})
}

// writePMDGolden stores a real pmd-stats-show capture when -update-pmd is given.
func writePMDGolden(t *testing.T, name, out string) {
	t.Helper()
	if !*updatePMD {
		return
	}
	if err := os.WriteFile(filepath.Join("testdata", "pmdstats", name), []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote testdata/pmdstats/%s", name)
}

// checkPMDInvariant: every datapath pass ends in exactly one hit or miss, so the hits
// and misses of a thread add up to its packets plus recirculations.
func checkPMDInvariant(t *testing.T, s ovsdpdk.PMDStats) {
	t.Helper()
	lookups := s.PHWOLHits + s.MFEXOptHits + s.SimpleMatchHits + s.EMCHits + s.SMCHits + s.MegaflowHits + s.MissUpcallOK + s.MissUpcallFailed
	if lookups != s.PacketsReceived+s.Recirculations {
		t.Errorf("thread %+v: hits+misses %d != packets+recirculations %d", s, lookups, s.PacketsReceived+s.Recirculations)
	}
}

// TestLabPMDStatsNetdev: on a real OVS 3.1 netdev datapath (no DPDK), ping between two
// netns VMs; pmd-stats-show's main thread counts the packets, the interface statistics
// read over OVSDB count them per tenant port, and links read up.
func TestLabPMDStatsNetdev(t *testing.T) {
	o := lab.StartOVS(t, lab.Options{})
	ctx := ctxT(t, 2*time.Minute)
	u := unixctl(o)

	// No netdev datapath yet: a clear sentinel, not a parse error.
	if _, err := u.PMDStats(ctx); !errors.Is(err, ovsdpdk.ErrNoNetdevDatapath) {
		t.Fatalf("pmd stats without a netdev bridge: %v, want ErrNoNetdevDatapath", err)
	}

	c := connect(t, o)
	if _, err := c.ApplyNode(ctx, layoutFrom(t, "datapath: netdev\nintegration_bridge: br-int\n", nil), ovsdpdk.ApplyOptions{Wait: true}); err != nil {
		t.Fatal(err)
	}
	if out, err := o.Ofctl("add-flow", "br-int", "priority=1,actions=NORMAL"); err != nil {
		t.Fatal(out, err)
	}
	vm1 := o.AddVM(t, "vm1", lab.VMOptions{IP: "10.0.0.1/24"})
	vm2 := o.AddVM(t, "vm2", lab.VMOptions{IP: "10.0.0.2/24"})
	ps := ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{})
	if err := ps.PortAdd(ctx,
		ovsdpdk.Port{Name: "vm1", Type: ovsdpdk.PortSystem, IfaceID: "port-1", MAC: vm1.MAC},
		ovsdpdk.Port{Name: "vm2", Type: ovsdpdk.PortSystem, IfaceID: "port-2", MAC: vm2.MAC}); err != nil {
		t.Fatal(err)
	}
	before, err := u.PMDStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const pings = 5
	if out, err := vm1.Ping(vm2.IP, pings); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	out, err := u.Run(ctx, "dpif-netdev/pmd-stats-show")
	if err != nil {
		t.Fatal(err)
	}
	writePMDGolden(t, "ovs-3.1-netdev-main.txt", out)
	after, err := ovsdpdk.ParsePMDStats(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 1 || len(after) != 1 || !after[0].Main {
		t.Fatalf("want only the main thread without DPDK, got %+v", after)
	}
	// Each ping is a request and a reply through the switch (plus ARP).
	if got := after[0].PacketsReceived - before[0].PacketsReceived; got < 2*pings {
		t.Errorf("main thread received %d packets during %d pings, want >= %d\n%s", got, pings, 2*pings, out)
	}
	if after[0].MissUpcallOK == 0 || after[0].EMCHits+after[0].MegaflowHits+after[0].SMCHits == 0 {
		t.Errorf("want upcalls for the first packets and cache hits for the rest: %+v", after[0])
	}
	checkPMDInvariant(t, after[0])

	// Interface statistics straight from OVSDB. ovs-vswitchd writes them every 5 s.
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := c.InterfaceStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		byID := map[string]ovsdpdk.InterfaceStats{}
		for _, s := range st {
			byID[s.IfaceID] = s
		}
		if len(st) != 2 {
			t.Fatalf("want the 2 tenant interfaces (not br-int's internal port), got %+v", st)
		}
		p1, p2 := byID["port-1"], byID["port-2"]
		if p1.Name == "vm1" && p2.Name == "vm2" && p1.Statistics["rx_packets"] >= pings && p2.Statistics["tx_packets"] >= pings &&
			p1.Statistics["tx_packets"] >= pings && p1.Statistics["rx_bytes"] >= pings*98 {
			if p1.LinkState != "up" || p2.LinkState != "up" {
				t.Errorf("link state: %q %q, want up", p1.LinkState, p2.LinkState)
			}
			t.Logf("port-1: %v", p1.Statistics)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("interface statistics did not show %d pings: %+v", pings, st)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestLabPMDStatsDPDK: on the OVS-DPDK build with a vhost-user port to dpdk-testpmd,
// pmd-stats-show has a "pmd thread numa_id N core_id M" section with cycle counters,
// which parses; kept short (the PMD and testpmd each spin a core).
func TestLabPMDStatsDPDK(t *testing.T) {
	o := lab.StartOVS(t, lab.Options{DPDK: true})
	ctx := ctxT(t, 2*time.Minute)
	hw, err := hwdetect.Detect(ctx, hwdetect.Options{})
	if err != nil {
		t.Fatalf("hardware detection (needed to resolve the DPDK CPUs): %v", err)
	}
	c := connect(t, o)
	if _, err := c.ApplyNode(ctx, layoutFrom(t, dpdkNodeYAML(o), hw), ovsdpdk.ApplyOptions{Wait: true}); err != nil {
		t.Fatal(err)
	}
	if err := o.WaitDPDKInitialized(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if out, err := o.Ofctl("add-flow", "br-int", "priority=1,actions=NORMAL"); err != nil {
		t.Fatal(out, err)
	}
	vm1 := o.AddVM(t, "vm1", lab.VMOptions{IP: "10.0.0.1/24"})
	vhu := filepath.Join(o.Dir, "vhu", "vhu1")
	ps := ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{SocketDir: filepath.Join(o.Dir, "vhu")})
	if err := ps.PortAdd(ctx, ovsdpdk.Port{Name: "vhu1", Type: ovsdpdk.PortVhostUser, IfaceID: "port-vhu", MAC: "02:00:00:00:00:10"},
		ovsdpdk.Port{Name: "vm1", Type: ovsdpdk.PortSystem, IfaceID: "port-1", MAC: vm1.MAC}); err != nil {
		t.Fatal(err)
	}
	o.StartTestPMD(t, lab.TestPMDOptions{Socket: vhu, MAC: "02:00:00:00:00:10"})
	if _, err := ps.PortWait(ctx, "vhu1", func(s *ovsdpdk.PortStatus) bool { return s.LinkState == "up" && s.OFPort > 0 }); err != nil {
		t.Fatal(err)
	}
	// testpmd (icmpecho) answers for any IP: the replies come in through the PMD.
	if out, err := vm1.Ping("10.0.0.10", 3); err != nil {
		t.Fatalf("ping the testpmd VM: %v\n%s", err, out)
	}
	u := unixctl(o)
	var stats []ovsdpdk.PMDStats
	var out string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if out, err = u.Run(ctx, "dpif-netdev/pmd-stats-show"); err != nil {
			t.Fatal(err)
		}
		if stats, err = ovsdpdk.ParsePMDStats(strings.NewReader(out)); err != nil {
			t.Fatal(err)
		}
		// OVS 3.1 prints the PMD threads first, then the main thread.
		if len(stats) == 2 && !stats[0].Main && stats[0].HasCycles && stats[1].Main && !stats[1].HasCycles {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pmd thread with cycles in:\n%s", out)
		}
	}
	writePMDGolden(t, "ovs-3.1-dpdk-pmd.txt", out)
	pmd := stats[0]
	if pmd.Main || pmd.Core != o.DPDK.PMDCPU || pmd.IdleCycles+pmd.ProcessingCycles == 0 || pmd.PacketsReceived < 3 {
		t.Errorf("pmd thread: %+v, want core %d with cycles and the ping replies", pmd, o.DPDK.PMDCPU)
	}
	if u := pmd.Utilization(); u < 0 || u > 1 {
		t.Errorf("utilization %v out of 0..1", u)
	}
	checkPMDInvariant(t, pmd)
	t.Logf("\n%s", out)
}
