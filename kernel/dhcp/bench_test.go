package dhcp

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/offlane/offlane/offload"
)

// BenchmarkDesired10kPorts: the DHCP tables of a node with 10,000 local ports on 200
// DHCP networks (what the agent's DHCP stage computes every reconcile). The baseline,
// in the same run, is BuildTable per network, which indexes the node's ports each time.
func BenchmarkDesired10kPorts(b *testing.B) {
	ir := &offload.IR{Segments: map[string]*offload.Segment{}, Subnets: map[string]*offload.Subnet{},
		DHCPPorts: map[string]*offload.DHCPPort{}, Ports: map[string]*offload.Port{}, RemotePorts: map[string]*offload.RemotePort{}}
	for n := range 200 {
		net := fmt.Sprintf("net-%03d", n)
		pfx := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", n/200, n%200))
		ir.Segments[net] = &offload.Segment{NetworkID: net, Type: offload.SegVXLAN, SegmentationID: n + 1, MTU: 1450}
		ir.Subnets["s-"+net] = &offload.Subnet{ID: "s-" + net, NetworkID: net, CIDR: pfx, Gateway: pfx.Addr().Next(), EnableDHCP: true}
		ir.DHCPPorts[net] = &offload.DHCPPort{PortID: "dhcp-" + net, NetworkID: net, MAC: fmt.Sprintf("fa:16:3e:00:%02x:%02x", n/256, n%256),
			IPs: []netip.Addr{pfx.Addr().Next().Next()}}
		for i := range 50 {
			id := fmt.Sprintf("p-%03d-%02d", n, i)
			ir.Ports[id] = &offload.Port{ID: id, NetworkID: net, MAC: fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", n/256, n%256, i+10),
				IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(n / 200), byte(n % 200), byte(i + 10)})}}
		}
	}
	var perNet float64
	b.Run("per-network-BuildTable", func(b *testing.B) {
		for b.Loop() {
			for net := range ir.DHCPPorts {
				if _, err := BuildTable(ir, net, 0); err != nil {
					b.Fatal(err)
				}
			}
		}
		perNet = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("Desired", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			want, err := Desired(ir, 0)
			if err != nil || len(want) != 200 || want["net-007"].Table.Len() != 50 {
				b.Fatalf("Desired: %d tables, %v", len(want), err)
			}
		}
		if perNet > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/perNet, "x-of-per-network")
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/op")
	})
}
