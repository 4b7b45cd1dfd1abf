package e2e_test

import (
	"strings"
	"testing"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/test/lab"
)

// oneHost brings up one OVS host on datapath dp (physnet1 on br-phys1 without an
// uplink, no tunnels), attaches the ports of snap and fully syncs their flows.
func oneHost(t *testing.T, snap offload.Snapshot, dp string) (*host, map[string]*lab.VM) {
	t.Helper()
	h := newHostOn(t, "node1", dp)
	h.apply(h.nodeYAML("", ""))
	vms := map[string]*lab.VM{}
	for _, p := range snap.Ports {
		vms[p.ID] = h.attach(p, p.ID, 1500)
	}
	if res := h.reconcile(snap, nil); res.Changes() == 0 {
		t.Fatal("the first sync installed nothing")
	}
	return h, vms
}

// TestLabPortSecurity: a VM that changes its IP or its MAC, or sends a forged ARP reply
// for another VM's address, gets nothing through (the observer's tcpdump stays empty,
// its ARP cache unpoisoned); the same VM with port security off gets everything
// through; an allowed address pair works as a source, a neighbouring address does not.
func TestLabPortSecurity(t *testing.T) {
	ps3 := port("ps3", "t", "net", "node1", "fa:16:3e:00:00:03", "10.0.0.3")
	ps3.PortSecurityEnabled = false
	ps2 := port("ps2", "t", "net", "node1", "fa:16:3e:00:00:02", "10.0.0.2", "any")
	ps2.AllowedAddressPairs = []controlplane.AddressPair{{IPAddress: "10.0.0.100"}}
	snap := offload.Snapshot{
		Networks: []controlplane.Network{network("net", "t", offload.SegVLAN, 100)},
		Ports: []controlplane.Port{
			port("ps1", "t", "net", "node1", "fa:16:3e:00:00:01", "10.0.0.1", "any"),
			ps2, ps3,
			port("obs", "t", "net", "node1", "fa:16:3e:00:00:09", "10.0.0.9", "any"),
		},
		SecurityGroups: []controlplane.SecurityGroup{openGroup("any", "t")},
	}
	h, vm := oneHost(t, snap, dpNetdev)
	for _, p := range []string{"ps1", "ps2", "ps3"} {
		pingOK(t, vm[p], "10.0.0.9")
	}
	for _, p := range []string{"ps1", "ps2", "ps3"} {
		if got := h.plan.Port(p).Backend(offload.FeaturePortSecurity); (got == offload.BackendOpenFlow) != (p != "ps3") {
			t.Fatalf("port %s: port security backend %s", p, got)
		}
	}
	mustExec := func(v *lab.VM, args ...string) {
		t.Helper()
		if out, err := v.Exec(args[0], args[1:]...); err != nil {
			t.Fatalf("%s: %v: %s", v, err, out)
		}
	}
	obs := vm["obs"]

	for _, p := range []string{"ps1", "ps3"} {
		secure := p == "ps1"
		v := vm[p]
		orig := snap.Ports[map[string]int{"ps1": 0, "ps3": 2}[p]]
		newIP := map[string]string{"ps1": "10.0.0.51", "ps3": "10.0.0.53"}[p]
		newMAC := map[string]string{"ps1": "fa:16:3e:00:00:51", "ps3": "fa:16:3e:00:00:53"}[p]

		t.Run(p+" changes its IP", func(t *testing.T) {
			mustExec(v, "ip", "addr", "flush", "dev", "eth0")
			mustExec(v, "ip", "addr", "add", newIP+"/24", "dev", "eth0")
			defer func() {
				mustExec(v, "ip", "addr", "flush", "dev", "eth0")
				mustExec(v, "ip", "addr", "add", orig.FixedIPs[0].IPAddress+"/24", "dev", "eth0")
			}()
			c := lab.StartCapture(t, obs.NS, "eth0", "host", newIP)
			if secure {
				pingFails(t, v, "10.0.0.9")
				if lines := c.Stop(); len(lines) > 0 {
					t.Fatalf("the observer saw the spoofed source %s:\n%s", newIP, showLines(lines))
				}
			} else {
				pingOK(t, v, "10.0.0.9")
				if lines := c.Stop(); len(lines) == 0 {
					t.Fatal("the observer's capture saw nothing of a ping that passed")
				}
			}
		})

		t.Run(p+" changes its MAC", func(t *testing.T) {
			mustExec(v, "ip", "link", "set", "eth0", "address", newMAC)
			mustExec(v, "ip", "neigh", "flush", "dev", "eth0")
			defer mustExec(v, "ip", "link", "set", "eth0", "address", orig.MACAddress)
			c := lab.StartCapture(t, obs.NS, "eth0", "ether", "host", newMAC)
			if secure {
				pingFails(t, v, "10.0.0.9")
				if lines := c.Stop(); len(lines) > 0 {
					t.Fatalf("the observer saw frames from the spoofed MAC %s:\n%s", newMAC, showLines(lines))
				}
			} else {
				// The observer still has the old MAC for 10.0.0.3 in its cache: the echo
				// request with the new source MAC reaches it, which is what counts here.
				mustExec(obs, "ip", "neigh", "flush", "dev", "eth0")
				pingOK(t, v, "10.0.0.9")
				if lines := c.Stop(); len(lines) == 0 {
					t.Fatal("the observer's capture saw nothing of a ping that passed")
				}
			}
		})

		t.Run(p+" sends a forged ARP reply", func(t *testing.T) {
			// Claim ps2's address 10.0.0.2 (busybox arping needs it on the interface).
			mustExec(v, "ip", "addr", "add", "10.0.0.2/32", "dev", "eth0")
			defer mustExec(v, "ip", "addr", "del", "10.0.0.2/32", "dev", "eth0")
			mustExec(obs, "ip", "neigh", "flush", "dev", "eth0")
			c := lab.StartCapture(t, obs.NS, "eth0", "arp")
			mustExec(v, "busybox", "arping", "-A", "-c", "3", "-w", "1", "-I", "eth0", "-s", "10.0.0.2", "10.0.0.2")
			lines := c.Stop()
			forged := 0
			for _, l := range lines {
				if strings.Contains(l, "10.0.0.2 is-at "+orig.MACAddress) {
					forged++
				}
			}
			neigh, _ := obs.Exec("ip", "neigh", "show", "10.0.0.2")
			if secure {
				if forged > 0 || strings.Contains(neigh, orig.MACAddress) {
					t.Fatalf("a forged ARP reply reached the observer (%d seen; neighbour entry %q):\n%s", forged, neigh, showLines(lines))
				}
			} else if forged == 0 {
				t.Fatalf("without port security the ARP reply should pass; the observer saw:\n%s", showLines(lines))
			}
		})
	}

	t.Run("allowed address pair", func(t *testing.T) {
		v := vm["ps2"]
		mustExec(v, "ip", "addr", "add", "10.0.0.100/24", "dev", "eth0")
		mustExec(v, "ip", "addr", "add", "10.0.0.101/24", "dev", "eth0")
		pingOK(t, v, "10.0.0.9", "-I", "10.0.0.100")
		c := lab.StartCapture(t, obs.NS, "eth0", "host", "10.0.0.101")
		pingFails(t, v, "10.0.0.9", "-I", "10.0.0.101")
		if lines := c.Stop(); len(lines) > 0 {
			t.Fatalf("10.0.0.101 is not an allowed pair, yet the observer saw:\n%s", showLines(lines))
		}
	})
}

// TestLabSecurityGroups: ingress TCP 22 is open from one CIDR only; ICMP from members of
// the same group only; replies to a VM's own connections come back although its
// ingress rules would not let them in (stateful, conntrack); removing the SSH rule closes
// port 22 after one incremental update; putting it back with a full reconcile opens it.
func TestLabSecurityGroups(t *testing.T) {
	runSecurityGroups(t, dpNetdev)
}

// runSecurityGroups is TestLabSecurityGroups's scenario on datapath dp; it returns the
// host (its last plan) for datapath-specific checks.
func runSecurityGroups(t *testing.T, dp string) *host {
	web := secgroup("web", "t",
		rule{id: "web-ssh", dir: "ingress", proto: "tcp", min: 22, max: 22, cidr: "10.0.0.0/28"},
		rule{id: "web-icmp", dir: "ingress", proto: "icmp", group: "web"},
		rule{id: "web-out", dir: "egress"})
	other := secgroup("other", "t", rule{id: "other-out", dir: "egress"})
	snap := offload.Snapshot{
		Networks: []controlplane.Network{network("net", "t", offload.SegVLAN, 100)},
		Ports: []controlplane.Port{
			port("srv", "t", "net", "node1", "fa:16:3e:00:00:10", "10.0.0.10", "web"),
			port("c1", "t", "net", "node1", "fa:16:3e:00:00:05", "10.0.0.5", "web"),    // in 10.0.0.0/28 and in the group
			port("c2", "t", "net", "node1", "fa:16:3e:00:00:20", "10.0.0.20", "other"), // neither
		},
		SecurityGroups: []controlplane.SecurityGroup{web, other},
	}
	h, vm := oneHost(t, snap, dp)
	srv, c1, c2 := vm["srv"], vm["c1"], vm["c2"]
	listen(t, srv, 22)
	listen(t, srv, 8080)
	listen(t, c1, 8080)

	eventually(t, "c1 connects to srv:22", func() bool { return tcpConnect(c1, "10.0.0.10", 22) })
	for _, tc := range []struct {
		name string
		from *lab.VM
		dst  string
		port int
	}{
		{"c2 is outside 10.0.0.0/28", c2, "10.0.0.10", 22},
		{"no rule for 8080 on srv", c1, "10.0.0.10", 8080},
		{"c1's ingress is closed to srv's own connections", srv, "10.0.0.5", 8080},
	} {
		if tcpConnect(tc.from, tc.dst, tc.port) {
			t.Errorf("%s: %s connected to %s:%d", tc.name, tc.from, tc.dst, tc.port)
		}
	}
	// The SSH replies reached c1 although its ingress rules allow only TCP 22 from
	// 10.0.0.0/28 (the replies come from port 22 to an ephemeral port): conntrack.
	pingOK(t, c1, "10.0.0.10")
	pingFails(t, c2, "10.0.0.10")

	// Remove the SSH rule: one incremental update.
	snap.SecurityGroups[0].Rules = snap.SecurityGroups[0].Rules[1:]
	d := h.update(snap, nil)
	t.Logf("rule removal: %d added, %d modified, %d deleted flows", len(d.Add), len(d.Modify), len(d.Delete))
	if n := len(d.Add) + len(d.Modify) + len(d.Delete); n == 0 || n > 20 {
		t.Fatalf("removing one rule changed %d flows (want a few)", n)
	}
	if tcpConnect(c1, "10.0.0.10", 22) {
		t.Fatal("srv:22 still accepts connections after the rule was removed")
	}
	pingOK(t, c1, "10.0.0.10") // the rest of the group is untouched

	// Back with a full reconcile.
	snap.SecurityGroups[0] = web
	if res := h.reconcile(snap, nil); res.Changes() == 0 {
		t.Fatal("re-adding the rule changed no flow")
	}
	eventually(t, "c1 connects to srv:22 again", func() bool { return tcpConnect(c1, "10.0.0.10", 22) })
	return h
}
