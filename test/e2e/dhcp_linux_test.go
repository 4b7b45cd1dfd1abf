package e2e_test

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/kernel"
	"github.com/offlane/offlane/kernel/dhcp"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

// dhcpUp runs the host's DHCP manager on its last compiled IR (the qdhcp namespaces
// plugged into this host's br-int), waits for OVS to give each DHCP port an OpenFlow
// port, and reconciles the flows again so the DHCP ports are local ports of the pipeline.
func (h *host) dhcpUp(m *dhcp.Manager, snap offload.Snapshot, vteps map[string]netip.Addr) {
	t := h.t
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	if err := m.Reconcile(ctx, h.ir); err != nil {
		t.Fatalf("%s: dhcp reconcile: %v", h.name, err)
	}
	for _, dp := range h.ir.DHCPPorts {
		name := kernel.IfName(kernel.PrefixTap, dp.PortID)
		if _, err := h.ports.PortWait(ctx, name, func(s *ovsdpdk.PortStatus) bool { return s.OFPort > 0 }); err != nil {
			t.Fatalf("%s: DHCP port %s on br-int: %v", h.name, name, err)
		}
	}
	h.reconcile(snap, vteps)
	for netID, dp := range h.ir.DHCPPorts {
		if p := h.ir.Ports[dp.PortID]; p == nil || p.OFPort == 0 || dp.OFPort != p.OFPort {
			t.Fatalf("%s: DHCP port of %s is not a local port after plugging: %+v", h.name, netID, dp)
		}
	}
	if err := m.Reconcile(ctx, h.ir); err != nil {
		t.Fatalf("%s: dhcp reconcile: %v", h.name, err)
	}
}

// udhcpc runs busybox udhcpc on eth0 of a VM with kernel/dhcp's testdata script (which
// applies address, option 26 MTU and option 121 routes with iproute2), asking for the
// MTU and static routes; it fails the test without a lease.
func udhcpc(t *testing.T, vm *lab.VM) {
	t.Helper()
	b, err := os.ReadFile("../../kernel/dhcp/testdata/udhcpc.script")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "udhcpc.script")
	if err := os.WriteFile(script, b, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", vm.NS, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n",
		"-t", "10", "-T", "1", "-A", "1", "-s", script, "-O", "mtu", "-O", "staticroutes").CombinedOutput()
	if err != nil {
		t.Fatalf("udhcpc in %s: %v\n%s", vm, err, out)
	}
	t.Logf("udhcpc in %s:\n%s", vm, out)
}

// TestLabDHCPOverVXLAN: a VXLAN network (MTU 1450) with a DHCP subnet across two OVS
// hosts; each host's DHCP manager plugs the network's DHCP port (a qdhcp namespace with
// a veth on br-int, iface-id = the port) and serves it. The VMs start without an
// address and with MTU 1500; busybox udhcpc on each gets its port's fixed IP, the
// gateway (default route, from option 121 with the host route), and MTU 1450 (option
// 26), read back with ip in the VM namespaces; then the VMs ping each other over VXLAN
// on their DHCP addresses with full-size (1450-byte MTU) packets.
func TestLabDHCPOverVXLAN(t *testing.T) {
	lab.Require(t, "busybox")
	gw := "10.0.0.1"
	dhcpPort := controlplane.Port{ID: "dhcp-port-dx", Name: "", TenantID: "t", ProjectID: "t", NetworkID: "dx", AdminStateUp: true,
		MACAddress: "fa:16:3e:00:00:d1", DeviceOwner: controlplane.OwnerDHCP, DeviceID: controlplane.DHCPDeviceID("dx"),
		VNICType: controlplane.VNICNormal, FixedIPs: []controlplane.FixedIP{{SubnetID: "sub-dx", IPAddress: "10.0.0.2"}}}
	snap := offload.Snapshot{
		Networks: []controlplane.Network{network("dx", "t", offload.SegVXLAN, 3001)},
		Subnets: []controlplane.Subnet{{ID: "sub-dx", NetworkID: "dx", TenantID: "t", ProjectID: "t", IPVersion: 4, CIDR: "10.0.0.0/24",
			GatewayIP: &gw, EnableDHCP: true, DNSNameservers: []string{"192.0.2.53"},
			HostRoutes:      []controlplane.HostRoute{{Destination: "172.16.0.0/16", NextHop: "10.0.0.254"}},
			AllocationPools: []controlplane.AllocationPool{{Start: "10.0.0.2", End: "10.0.0.254"}}}},
		Ports: []controlplane.Port{
			port("vm1", "t", "dx", "node1", "fa:16:3e:00:00:01", "10.0.0.11", "open"),
			port("vm2", "t", "dx", "node2", "fa:16:3e:00:00:02", "10.0.0.12", "open"),
			dhcpPort,
		},
		SecurityGroups: []controlplane.SecurityGroup{openGroup("open", "t")},
	}
	h1, h2 := newHost(t, "node1"), newHost(t, "node2")
	lab.ConnectUnderlay(t, h1.o, h2.o, "10.99.0.1/24", "10.99.0.2/24")
	h1.apply(nodeYAML("", "10.99.0.1/24"))
	h2.apply(nodeYAML("", "10.99.0.2/24"))
	vteps := map[string]netip.Addr{"node1": netip.MustParseAddr("10.99.0.1"), "node2": netip.MustParseAddr("10.99.0.2")}
	vms := map[string]*lab.VM{}
	for i, h := range []*host{h1, h2} {
		p := snap.Ports[i]
		// The VM starts as a fresh guest: no address, the default MTU.
		vms[p.ID] = h.attach(p, p.ID, 1500)
		if out, err := vms[p.ID].Exec("ip", "addr", "flush", "dev", "eth0"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	for _, h := range []*host{h1, h2} {
		h.reconcile(snap, vteps)
		if dp := h.ir.DHCPPorts["dx"]; dp == nil || dp.PortID != dhcpPort.ID {
			t.Fatalf("%s: IR DHCP ports %+v", h.name, h.ir.DHCPPorts)
		}
		// Both lab hosts share one kernel: their qdhcp namespaces get the host's name.
		m, err := dhcp.NewManager(dhcp.ManagerOptions{
			Plumber:         kernel.NewPlugger(kernel.PlugOptions{HostNamespace: h.o.NS, Switch: h.ports}),
			Logger:          h.log,
			NamespacePrefix: dhcp.NamespacePrefix + h.name + "-",
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := m.Reconcile(context.Background(), &offload.IR{}); err != nil {
				t.Errorf("%s: dhcp cleanup: %v", h.name, err)
			}
		})
		h.dhcpUp(m, snap, vteps)
		ns := dhcp.NamespacePrefix + h.name + "-dx"
		if out, err := lab.Run("ip", "-n", ns, "-o", "addr", "show"); err != nil || !strings.Contains(out, "inet 10.0.0.2/24") {
			t.Fatalf("%s: %s: %v %s", h.name, ns, err, out)
		}
	}
	// Each host's server sees only its own VMs' requests: with the DHCP port local, the
	// pipeline floods requests to local ports only (offload containServiceFloods).
	seen := map[string]*lab.Capture{}
	for _, h := range []*host{h1, h2} {
		seen[h.name] = lab.StartCapture(t, dhcp.NamespacePrefix+h.name+"-dx", kernel.IfName(kernel.PrefixTap, dhcpPort.ID), "udp dst port 67")
	}
	for _, p := range snap.Ports[:2] {
		vm := vms[p.ID]
		udhcpc(t, vm)
		want := map[string][]string{
			"-4 -o addr show dev eth0": {"inet " + p.FixedIPs[0].IPAddress + "/24"},
			"-o link show dev eth0":    {"mtu 1450"},
			"-4 route show":            {"default via 10.0.0.1 dev eth0", "172.16.0.0/16 via 10.0.0.254 dev eth0"},
		}
		for args, subs := range want {
			out, err := lab.Run("ip", append([]string{"-n", vm.NS}, strings.Fields(args)...)...)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range subs {
				if !strings.Contains(out, s) {
					t.Fatalf("%s: ip %s lacks %q:\n%s", vm, args, s, out)
				}
			}
		}
	}
	for _, p := range snap.Ports[:2] {
		for _, h := range []*host{h1, h2} {
			lines := strings.Join(seen[h.name].Stop(), "\n")
			if got, want := strings.Contains(lines, p.MACAddress+" >"), p.HostID == h.name; got != want {
				t.Errorf("%s's DHCP server saw requests from %s (on %s): %v, want %v:\n%s", h.name, p.ID, p.HostID, got, want, lines)
			}
		}
	}
	// The DHCP-configured VMs reach each other over VXLAN with full 1450-byte packets
	// (DF set).
	pingOK(t, vms["vm1"], "10.0.0.12", "-s", "1422", "-M", "do")
}
