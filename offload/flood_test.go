package offload

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/offlane/offlane/controlplane"
)

// floodSnapshot: VXLAN network vx with two VMs here (ofports 5, 6), one on node2, its
// DHCP port and a router interface (plugged here when ofports say so); VLAN network vl
// with a VM (ofport 10) and a router interface (ofport 11).
func floodSnapshot() Snapshot {
	svc := func(id, net, owner, mac, ip string) controlplane.Port {
		return controlplane.Port{ID: id, NetworkID: net, DeviceOwner: owner, DeviceID: "dev-" + id, MACAddress: mac,
			AdminStateUp: true, VNICType: controlplane.VNICNormal, FixedIPs: []controlplane.FixedIP{{IPAddress: ip}}}
	}
	return Snapshot{
		Networks: []controlplane.Network{network("vx", "t", SegVXLAN, "", 1001), network("vl", "t", SegVLAN, "physnet1", 100)},
		Ports: []controlplane.Port{
			port("vm1", "vx", "node1", "fa:16:3e:00:00:01", []string{"10.0.0.11"}),
			port("vm3", "vx", "node1", "fa:16:3e:00:00:03", []string{"10.0.0.13"}),
			port("vm2", "vx", "node2", "fa:16:3e:00:00:02", []string{"10.0.0.12"}),
			svc("dhcp-vx", "vx", controlplane.OwnerDHCP, "fa:16:3e:00:00:d1", "10.0.0.2"),
			svc("rif-vx", "vx", controlplane.OwnerRouterInterface, "fa:16:3e:00:00:a1", "10.0.0.1"),
			port("vm4", "vl", "node1", "fa:16:3e:00:01:04", []string{"10.1.0.14"}),
			svc("rif-vl", "vl", controlplane.OwnerRouterInterface, "fa:16:3e:00:01:a1", "10.1.0.1"),
		},
	}
}

// floodTableOuts evaluates br-int's flood table for a tracked packet described by its
// match tokens ("reg6=0x1", "in_port=5", "udp", ...): the highest-priority flow all of
// whose match fields the packet has wins; it returns the ports the flow sends to (reg7
// values before resubmit to 40 or 50).
func floodTableOuts(t *testing.T, flows []Flow, pkt ...string) []int {
	t.Helper()
	var best *Flow
	for i, f := range flows {
		if f.Bridge != "br-int" || f.Table != TableFlood {
			continue
		}
		ok := true
		for _, tok := range strings.Split(f.Match, ",") {
			if tok != "" && !slices.Contains(pkt, tok) {
				ok = false
				break
			}
		}
		if ok && (best == nil || f.Priority > best.Priority) {
			best = &flows[i]
		}
	}
	if best == nil {
		t.Fatalf("no flood flow for %v", pkt)
	}
	var out []int
	for _, a := range strings.Split(best.Actions, ",") {
		if v, ok := strings.CutPrefix(a, "set_field:"); ok && strings.HasSuffix(v, "->reg7") {
			n, err := strconv.ParseInt(strings.TrimSuffix(v, "->reg7"), 0, 32)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, int(n))
		}
	}
	return out
}

// TestServiceFloodsStayLocal: on a tunnel network, floods from a router interface or
// DHCP port plugged here, and VMs' DHCP requests while the DHCP port is here, reach the
// local ports only, never the patch to br-tun; everything else still floods over the
// tunnel, and on a VLAN network a router port's floods still reach the physnet. Without
// the local DHCP port, DHCP requests go over the tunnel again (another node serves
// them); the incremental compiler agrees with a full compile through that change.
func TestServiceFloodsStayLocal(t *testing.T) {
	lay := testLayout()
	tun, phys := lay.OFPorts[PatchTun], lay.OFPorts[IntPatch("br-phys1")]
	vteps := map[string]netip.Addr{"node2": netip.MustParseAddr("192.0.2.2")}
	ofp := map[string]int{"vm1": 5, "vm3": 6, "dhcp-vx": 7, "rif-vx": 8, "vm4": 10, "rif-vl": 11}
	build := func(ofp map[string]int) (*IR, *Plan) {
		ir, err := Build(BuildInput{Host: "node1", Snapshot: floodSnapshot(), OFPorts: ofp, VTEPs: vteps})
		if err != nil {
			t.Fatal(err)
		}
		return ir, PlanNode(ir, ovsNode(), lay)
	}
	ir, plan := build(ofp)
	res, err := Compile(lay, ir, plan)
	if err != nil {
		t.Fatal(err)
	}
	vx, vl := "reg6=0x"+strconv.FormatUint(uint64(ir.Segments["vx"].LocalVLAN), 16), "reg6=0x"+strconv.FormatUint(uint64(ir.Segments["vl"].LocalVLAN), 16)
	dhcpReq := []string{"ip", "udp", "tp_src=68", "tp_dst=67"}
	for _, tc := range []struct {
		name string
		pkt  []string
		want []int
	}{
		{"router port ARP", []string{vx, "in_port=8", "arp"}, []int{5, 6, 7, 8}},
		{"router port IP", []string{vx, "in_port=8", "ip", "tcp"}, []int{5, 6, 7, 8}},
		{"DHCP port reply", []string{vx, "in_port=7", "ip", "udp", "tp_src=67", "tp_dst=68"}, []int{5, 6, 7, 8}},
		{"VM DHCP request", append([]string{vx, "in_port=5"}, dhcpReq...), []int{5, 6, 7, 8}},
		{"VM ARP", []string{vx, "in_port=5", "arp"}, []int{5, 6, 7, 8, tun}},
		{"VM other UDP", []string{vx, "in_port=5", "ip", "udp", "tp_src=68", "tp_dst=53"}, []int{5, 6, 7, 8, tun}},
		{"from the tunnel", append([]string{vx, "in_port=" + strconv.Itoa(tun)}, dhcpReq...), []int{5, 6, 7, 8}},
		{"VLAN router port", []string{vl, "in_port=11", "arp"}, []int{10, 11, phys}},
		{"VLAN DHCP request", append([]string{vl, "in_port=10"}, dhcpReq...), []int{10, 11, phys}},
	} {
		if got := floodTableOuts(t, res.Flows, tc.pkt...); !slices.Equal(got, tc.want) {
			t.Errorf("%s: flooded to %v, want %v", tc.name, got, tc.want)
		}
	}

	// The DHCP port unplugged: requests flood over the tunnel again, the router port's
	// floods stay here; incremental = full.
	c, err := NewCompiler(lay)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Update(ir, plan); err != nil {
		t.Fatal(err)
	}
	delete(ofp, "dhcp-vx")
	ir2, plan2 := build(ofp)
	if _, err := c.Update(ir2, plan2); err != nil {
		t.Fatal(err)
	}
	full, err := Compile(lay, ir2, plan2)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := flowText(c.Flows()), flowText(full.Flows); a != b {
		t.Fatalf("incremental flows differ from a full compile:\n%s\n---\n%s", a, b)
	}
	if got := floodTableOuts(t, full.Flows, append([]string{vx, "in_port=5"}, dhcpReq...)...); !slices.Equal(got, []int{5, 6, 8, tun}) {
		t.Errorf("DHCP request without a local DHCP port: flooded to %v, want the tunnel too", got)
	}
	if got := floodTableOuts(t, full.Flows, vx, "in_port=8", "arp"); !slices.Equal(got, []int{5, 6, 8}) {
		t.Errorf("router port ARP: flooded to %v, want local ports only", got)
	}
}
