package lab

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Two OVS "hosts": each lab OVS runs in its own network namespace, so two of them are two
// hypervisors. LinkOVS wires a cable between them (a physnet uplink); ConnectUnderlay
// gives them an IP underlay for tunnels.

// LinkOVS creates a veth pair between the namespaces of two labs: nameA in a.NS, nameB in
// b.NS, both up, with tx checksum offload off (the userspace datapath forwards veth
// packets as they are) and the given MTU (0: 1500). The ends are not added to any bridge
// (e.g. node apply adds them as physnet uplinks). They go away with the namespaces.
func LinkOVS(t testing.TB, a, b *OVS, nameA, nameB string, mtu int) {
	t.Helper()
	if len(nameA) > 15 || len(nameB) > 15 {
		t.Fatalf("lab: link names %q/%q longer than 15 bytes", nameA, nameB)
	}
	mustRun(t, "ip", "link", "add", nameA, "netns", a.NS, "type", "veth", "peer", "name", nameB, "netns", b.NS)
	for _, e := range []struct{ ns, name string }{{a.NS, nameA}, {b.NS, nameB}} {
		if mtu > 0 {
			mustRun(t, "ip", "-n", e.ns, "link", "set", e.name, "mtu", strconv.Itoa(mtu))
		}
		mustRun(t, "ip", "-n", e.ns, "link", "set", e.name, "up")
		mustRun(t, "ip", "netns", "exec", e.ns, "ethtool", "-K", e.name, "tx", "off")
	}
}

// UnderlayEnd is one host's side of an underlay.
type UnderlayEnd struct {
	OVS    *OVS
	Bridge string // the standalone OVS bridge holding the host's underlay address
	Link   string // the veth end on that bridge (where tcpdump sees the encapsulated traffic)
	Addr   string // the host's underlay (tunnel endpoint) address, without prefix
}

// Underlay is an IP network between two lab hosts.
type Underlay struct{ A, B UnderlayEnd }

// UnderlayMTU leaves room for VXLAN/Geneve headers over VMs with MTU 1450..1500.
const UnderlayMTU = 1600

// ConnectUnderlay joins two labs by an IP underlay for tunnels: a veth pair between their
// namespaces, each end a port of a standalone bridge "br-ul" whose internal interface
// holds the host's address (cidrA on a, cidrB on b, e.g. 10.99.0.1/24 and 10.99.0.2/24).
// OVS's userspace tunnels route and resolve ARP only through addresses on OVS bridges,
// so the tunnel endpoint address must live on one. The bridge is foreign to offlane (no
// offlane tags) and normal-switching, on the kernel datapath in labs started with
// SystemDatapath (the kernel's tunnels route through the namespace's routing table),
// the userspace one otherwise. Removed at cleanup with the labs.
func ConnectUnderlay(t testing.TB, a, b *OVS, cidrA, cidrB string) *Underlay {
	t.Helper()
	const br = "br-ul"
	u := &Underlay{A: UnderlayEnd{OVS: a, Bridge: br, Link: "ul-" + a.ID}, B: UnderlayEnd{OVS: b, Bridge: br, Link: "ul-" + b.ID}}
	LinkOVS(t, a, b, u.A.Link, u.B.Link, UnderlayMTU)
	for i, e := range []*UnderlayEnd{&u.A, &u.B} {
		cidr := []string{cidrA, cidrB}[i]
		e.Addr, _, _ = strings.Cut(cidr, "/")
		// A fixed MAC keeps the bridge's address stable across restarts of the test.
		hw := fmt.Sprintf("02:99:%s:%s:%s:%02x", e.OVS.ID[0:2], e.OVS.ID[2:4], e.OVS.ID[4:6], i+1)
		dp := "netdev"
		if e.OVS.opts.SystemDatapath {
			dp = "system"
		}
		e.OVS.Vsctl(t, "add-br", br, "--", "set", "bridge", br, "datapath_type="+dp, "other_config:hwaddr="+hw,
			"--", "set", "interface", br, "mtu_request="+strconv.Itoa(UnderlayMTU),
			"--", "add-port", br, e.Link)
		mustRun(t, "ip", "-n", e.OVS.NS, "addr", "add", cidr, "dev", br)
		mustRun(t, "ip", "-n", e.OVS.NS, "link", "set", br, "up")
	}
	return u
}

// Vsctl runs ovs-vsctl against this lab's database (waiting for ovs-vswitchd to apply the
// change, as ovs-vsctl does by default) and returns its output; it fails the test on an
// error. For state the code under test does not own (foreign bridges, underlays).
func (o *OVS) Vsctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := runCmd(vsctlTimeout, o.env(), "ovs-vsctl", append([]string{"--timeout=30", "--db=" + o.Endpoint}, args...)...)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	return strings.TrimSpace(out)
}

// vsctlTimeout bounds one ovs-vsctl: it waits for ovs-vswitchd, slow on a loaded host.
const vsctlTimeout = time.Minute
