package dhcp

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/offlane/offlane/offload"
)

// BenchmarkReconcileChanges10kPorts: the DHCP stage of one reconcile on a node with
// 10,000 local ports on 50 DHCP networks (200 each) after one port was added, then
// removed again (alternately), on an in-memory Plumber (so only the manager's own work
// is measured; a real Plug is netlink and OVSDB round trips per network on top of the
// full reconcile's cost). The baseline, in the same run, is Reconcile of the same IRs.
func BenchmarkReconcileChanges10kPorts(b *testing.B) {
	ir0 := &offload.IR{Segments: map[string]*offload.Segment{}, Subnets: map[string]*offload.Subnet{},
		DHCPPorts: map[string]*offload.DHCPPort{}, Ports: map[string]*offload.Port{}, RemotePorts: map[string]*offload.RemotePort{}}
	for n := range 50 {
		net := fmt.Sprintf("%08x-0000-4000-8000-000000000000", n)
		pfx := netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", n))
		ir0.Segments[net] = &offload.Segment{NetworkID: net, Type: offload.SegVXLAN, SegmentationID: n + 1, MTU: 1450}
		ir0.Subnets["s-"+net] = &offload.Subnet{ID: "s-" + net, NetworkID: net, CIDR: pfx, Gateway: pfx.Addr().Next(), EnableDHCP: true}
		ir0.DHCPPorts[net] = &offload.DHCPPort{PortID: fmt.Sprintf("dhcp-%03d", n), NetworkID: net, MAC: fmt.Sprintf("fa:16:3e:ff:00:%02x", n),
			IPs: []netip.Addr{pfx.Addr().Next().Next()}, OFPort: 100 + n}
		for i := range 200 {
			id := fmt.Sprintf("p-%03d-%03d", n, i)
			ir0.Ports[id] = &offload.Port{ID: id, NetworkID: net, OFPort: 1000 + 200*n + i, MAC: fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", n, i/256, i%256),
				IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(n), 1, byte(i)})}}
		}
	}
	ir1 := ir0.Clone()
	added := &offload.Port{ID: "p-new", NetworkID: fmt.Sprintf("%08x-0000-4000-8000-000000000000", 17), OFPort: 99999,
		MAC: "fa:16:3e:aa:bb:cc", IPs: []netip.Addr{netip.MustParseAddr("10.17.2.1")}}
	ir1.Ports[added.ID] = added
	irs := [2]*offload.IR{ir0, ir1}
	chs := [2]*offload.Changes{offload.DiffChanges(ir1, ir0, nil, nil), offload.DiffChanges(ir0, ir1, nil, nil)}
	check := func(b *testing.B, m *Manager, i int) {
		if got, want := m.Table(added.NetworkID).Lookup(mustMAC(added.MAC)) != nil, i%2 == 1; got != want || len(m.Networks()) != 50 {
			b.Fatalf("after call %d: lease of the added port %v, want %v; %d servers", i, got, want, len(m.Networks()))
		}
	}

	var full float64
	b.Run("Reconcile", func(b *testing.B) {
		b.ReportAllocs()
		m := newTestManager(b, newFakePlumber())
		if err := m.Reconcile(b.Context(), ir0); err != nil {
			b.Fatal(err)
		}
		i := 0
		for b.Loop() {
			i++
			if err := m.Reconcile(b.Context(), irs[i%2]); err != nil {
				b.Fatal(err)
			}
		}
		check(b, m, i)
		full = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(full/1e6, "ms/op")
	})
	b.Run("ReconcileChanges", func(b *testing.B) {
		b.ReportAllocs()
		f := newFakePlumber()
		m := newTestManager(b, f)
		if err := m.ReconcileChanges(b.Context(), ir0, nil); err != nil {
			b.Fatal(err)
		}
		f.resetCalls()
		i := 0
		for b.Loop() {
			i++
			if err := m.ReconcileChanges(b.Context(), irs[i%2], chs[i%2]); err != nil {
				b.Fatal(err)
			}
		}
		check(b, m, i)
		if n := f.totalCalls(); n != 0 {
			b.Fatalf("one port added or removed made %d Plumber calls: %v", n, f.calls)
		}
		ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(ns/1e6, "ms/op")
		if full > 0 {
			b.ReportMetric(ns/full, "x-of-Reconcile")
		}
	})
}
