package e2e_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/offload"
)

// atomicSnapshot is one VXLAN network with two local VMs and n ports on another host
// (L2 population and ARP responder flows), MACs and addresses shifted by off so two
// snapshots with different offsets share none of the remote flows. The VMs' group lets
// everything in and out; its rule IDs carry off too, so its flows change with it.
func atomicSnapshot(n, off int, portSecurity bool) offload.Snapshot {
	g := fmt.Sprint("open-", off)
	snap := offload.Snapshot{
		Networks: []controlplane.Network{network("net", "t", offload.SegVXLAN, 5000)},
		Ports: []controlplane.Port{
			port("va", "t", "net", "node1", "fa:16:3e:00:00:01", "10.0.0.1", g),
			port("vb", "t", "net", "node1", "fa:16:3e:00:00:02", "10.0.0.2", g),
		},
		SecurityGroups: []controlplane.SecurityGroup{openGroup(g, "t")},
	}
	for i := range snap.Ports {
		snap.Ports[i].PortSecurityEnabled = portSecurity
	}
	for i := 0; i < n; i++ {
		k := i + off
		snap.Ports = append(snap.Ports, port(fmt.Sprintf("r%05d", k), "t", "net", "node2",
			fmt.Sprintf("fa:16:3f:%02x:%02x:%02x", k>>16&0xff, k>>8&0xff, k&0xff),
			fmt.Sprintf("10.%d.%d.%d", 1+k>>16&0xff, k>>8&0xff, k&0xff), g))
	}
	return snap
}

var pingStats = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// TestLabAtomicResync: while one VM pings another every 10 ms, full resyncs of more than
// 10,000 flows rewrite the switch under the ping, each as one bundle per bridge, and not
// one ping is lost:
//
//   - "security groups": the VMs filtered by a stateful group whose rules are replaced by
//     equivalent ones with other IDs (every security group flow gets a new cookie and
//     conjunction id) and all remote-port flows are swapped for others;
//   - "whole path": additionally the network's local VLAN changes every time, and with
//     it every flow the ping crosses (classify, L2, flood, deliver). The local VLAN is
//     also the conntrack zone, and a reply that meets a new zone has no conntrack entry
//     (+inv, dropped by any stateful group) whatever the switch does, so these VMs run
//     without port security: what is measured is the flow tables' switch-over alone.
//
// The control case shows that the measurement sees a window: the same "whole path"
// resyncs done as a delete of offlane's flows followed by the sync (two steps, as a
// controller without bundles would) lose pings.
func TestLabAtomicResync(t *testing.T) {
	for _, tc := range []struct {
		name                string
		portSecurity        bool
		changeVLAN, control bool
	}{
		{"security groups", true, false, false},
		{"whole path", false, true, false},
		{"control: delete then add loses pings", false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			atomicResync(t, tc.portSecurity, tc.changeVLAN, tc.control)
		})
	}
}

func atomicResync(t *testing.T, portSecurity, changeVLAN, control bool) {
	const remotes = 3500
	snaps := []offload.Snapshot{atomicSnapshot(remotes, 0, portSecurity), atomicSnapshot(remotes, remotes, portSecurity)}
	vteps := map[string]netip.Addr{"node2": netip.MustParseAddr("10.99.0.2")}
	h := newHost(t, "node1")
	h.apply(nodeYAML("", "10.99.0.1/24"))
	va := h.attach(snaps[0].Ports[0], "va", 1450)
	h.attach(snaps[0].Ports[1], "vb", 1450)
	h.vlans = map[string]uint16{"net": 10}
	res := h.reconcile(snaps[0], vteps)
	flows := 0
	for _, b := range res.Bridges {
		flows += b.Desired
	}
	if flows < 10000 {
		t.Fatalf("only %d flows: the test must resync at least 10,000", flows)
	}
	pingOK(t, va, "10.0.0.2")
	classify := func() string {
		in := fmt.Sprintf("in_port=%d", h.ir.Ports["va"].OFPort)
		for _, f := range h.comp.Flows() {
			if f.Bridge == "br-int" && f.Table == offload.TableClassify && (f.Match == in || strings.HasPrefix(f.Match, in+",")) {
				return f.String()
			}
		}
		t.Fatal("no classify flow for va")
		return ""
	}

	// resync swaps the snapshot (and the local VLAN) and checks that the sync rewrote
	// nearly every flow.
	resync := func(i int) time.Duration {
		start := time.Now()
		if changeVLAN {
			h.vlans = map[string]uint16{"net": uint16(10 + i%2)}
		}
		before := classify()
		twoStep := control && i > 1
		if twoStep {
			for _, br := range []string{"br-int", "br-tun"} {
				if _, err := h.o.Ofctl("-O", "OpenFlow15", "del-flows", "unix:"+filepath.Join(h.o.Dir, br+".mgmt"),
					fmt.Sprintf("cookie=%#x/%#x", offload.CookieMarker, offload.CookieMarkerMask)); err != nil {
					t.Fatal(err)
				}
			}
		}
		res := h.reconcile(snaps[i%2], vteps)
		took := time.Since(start)
		if !twoStep && res.Changes() < flows*9/10 {
			t.Errorf("resync %d changed only %d of %d flows", i, res.Changes(), flows)
		}
		if after := classify(); changeVLAN == (after == before) {
			t.Errorf("resync %d: va's classify flow %q → %q (local VLAN change %v)", i, before, after, changeVLAN)
		}
		t.Logf("resync %d: %d flow mods (%s)", i, res.Changes(), took.Round(time.Millisecond))
		return took
	}
	warm := resync(1)
	const rounds = 6
	// Enough pings to outlast the resyncs with a wide margin (a loaded host is slower).
	count := int((2*time.Duration(rounds)*warm + 3*time.Second) / (10 * time.Millisecond))
	cmd := exec.Command("ip", "netns", "exec", va.NS, "ping", "-n", "-i", "0.01", "-W", "2", "-c", strconv.Itoa(count), "10.0.0.2")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	time.Sleep(500 * time.Millisecond) // let the ping get going before the first resync
	for i := 2; i < 2+rounds; i++ {
		resync(i)
		select {
		case err := <-done:
			t.Fatalf("the ping ended (%v) before resync %d: it must cover all of them\n%s", err, i, out.String())
		default:
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("ping during resyncs: %v\n%s", err, out.String())
	}
	m := pingStats.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no ping statistics:\n%s", out.String())
	}
	if control {
		if m[1] == m[2] {
			t.Fatalf("deleting the flows before each sync lost no ping (%s sent): the test would not see a non-atomic update", m[1])
		}
		t.Logf("control: delete-then-sync lost %d of %s pings", atoi(m[1])-atoi(m[2]), m[1])
		return
	}
	if m[1] != m[2] || m[1] != strconv.Itoa(count) {
		t.Fatalf("lost pings during %d resyncs of %d flows: %s transmitted, %s received", rounds, flows, m[1], m[2])
	}
	t.Logf("%d pings at 10 ms intervals over %d full resyncs of %d flows: none lost", count, rounds, flows)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
