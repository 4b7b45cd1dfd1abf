package ovsdpdk_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/ovsdpdk/vswitchd"
	"github.com/offlane/offlane/test/lab"
)

// TestInterfaceStatsInMemory: statistics and link state that "ovs-vswitchd" (here a
// second, raw libovsdb client) writes are read back for tenant interfaces only, without
// the offlane client monitoring the statistics column.
func TestInterfaceStatsInMemory(t *testing.T) {
	ep := lab.MemOVSDB(t)
	ctx := ctxT(t, 30*time.Second)
	c, err := ovsdpdk.Connect(ctx, ovsdpdk.Options{Endpoint: ep})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if _, err := c.ApplyNode(ctx, layoutFrom(t, "datapath: netdev\nintegration_bridge: br-int\n", nil), ovsdpdk.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	ps := ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{})
	if err := ps.PortAdd(ctx,
		ovsdpdk.Port{Name: "tap-b", Type: ovsdpdk.PortSystem, IfaceID: "port-b"},
		ovsdpdk.Port{Name: "tap-a", Type: ovsdpdk.PortSystem, IfaceID: "port-a"}); err != nil {
		t.Fatal(err)
	}
	got, err := c.InterfaceStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []ovsdpdk.InterfaceStats{
		{Name: "tap-a", IfaceID: "port-a", Statistics: map[string]uint64{}},
		{Name: "tap-b", IfaceID: "port-b", Statistics: map[string]uint64{}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("before stats:\n got %+v\nwant %+v", got, want)
	}

	vswitchdWrites(t, ep, "tap-a", map[string]int{"rx_packets": 10, "rx_bytes": 980, "tx_packets": 12, "tx_dropped": 1}, "up")
	vswitchdWrites(t, ep, "br-int", map[string]int{"rx_packets": 99}, "up") // not a tenant interface
	got, err = c.InterfaceStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want[0].LinkState = "up"
	want[0].Statistics = map[string]uint64{"rx_packets": 10, "rx_bytes": 980, "tx_packets": 12, "tx_dropped": 1}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after stats:\n got %+v\nwant %+v", got, want)
	}
}

// vswitchdWrites updates an Interface's statistics and link_state as ovs-vswitchd does.
func vswitchdWrites(t *testing.T, ep, name string, stats map[string]int, link string) {
	t.Helper()
	dbModel, err := vswitchd.FullDatabaseModel()
	if err != nil {
		t.Fatal(err)
	}
	l := logr.Discard()
	raw, err := client.NewOVSDBClient(dbModel, client.WithEndpoint(ep), client.WithLogger(&l))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := raw.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.MonitorAll(ctx); err != nil {
		t.Fatal(err)
	}
	iface := &vswitchd.Interface{Name: name}
	if err := raw.Get(ctx, iface); err != nil {
		t.Fatalf("interface %s: %v", name, err)
	}
	iface.Statistics, iface.LinkState = stats, &link
	ops, err := raw.Where(iface).Update(iface, &iface.Statistics, &iface.LinkState)
	if err != nil {
		t.Fatal(err)
	}
	res, err := raw.Transact(ctx, ops...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ovsdb.CheckOperationResults(res, ops); err != nil {
		t.Fatal(err)
	}
}
