package ovsdpdk_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

func memClient(t *testing.T, batch int) *ovsdpdk.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ovsdpdk.Connect(ctx, ovsdpdk.Options{Endpoint: lab.MemOVSDB(t), BatchSize: batch})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

const memNodeYAML = `
datapath: netdev
userspace_tso: true
external_bridge: br-ex
physnets: {physnet1: {bridge: br-phys1, interface: eth1}}
tunnel: {local_ip: 10.99.0.1, types: [vxlan, geneve]}
`

func TestApplyNodeInMemory(t *testing.T) {
	c := memClient(t, 0)
	ctx := ctxT(t, 30*time.Second)
	want := layoutFrom(t, memNodeYAML, nil)
	// The database is not initialised: apply creates the Open_vSwitch row too.
	res, err := c.ApplyNode(ctx, want, ovsdpdk.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Transacted || c.Transactions() != 1 {
		t.Fatalf("transacted=%v transactions=%d", res.Transacted, c.Transactions())
	}
	res, err = c.ApplyNode(ctx, want, ovsdpdk.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Transacted || c.Transactions() != 1 {
		t.Fatalf("second apply: %v", res.Plan.Changes)
	}
	st, err := c.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Bridges) != 4 || len(st.Ports) != 13 || len(st.Interfaces) != 13 {
		t.Fatalf("%d bridges %d ports %d interfaces", len(st.Bridges), len(st.Ports), len(st.Interfaces))
	}
	// Prune to a smaller layout: one transaction, nothing left behind.
	res, err = c.ApplyNode(ctx, layoutFrom(t, "datapath: netdev\n", nil), ovsdpdk.ApplyOptions{})
	if err != nil || !res.Transacted {
		t.Fatalf("prune: %v %v", err, res)
	}
	st, err = c.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Bridges) != 1 || len(st.Ports) != 1 || len(st.Interfaces) != 1 || st.OVS.OtherConfig["userspace-tso-enable"] != "" {
		t.Fatalf("after prune: %d bridges %d ports %d interfaces, other_config %v", len(st.Bridges), len(st.Ports), len(st.Interfaces), st.OVS.OtherConfig)
	}
}

func TestPortsInMemory(t *testing.T) {
	c := memClient(t, 100)
	ctx := ctxT(t, 30*time.Second)
	if _, err := c.ApplyNode(ctx, layoutFrom(t, "datapath: netdev\n", nil), ovsdpdk.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	ps := ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{SocketDir: "/run/vhu"})
	var ports []ovsdpdk.Port
	for i := range 250 {
		ports = append(ports, ovsdpdk.Port{Name: fmt.Sprintf("vhu%03d", i), Type: ovsdpdk.PortVhostUser,
			IfaceID: fmt.Sprintf("id-%d", i), MAC: fmt.Sprintf("02:00:00:00:%02X:%02X", i/256, i%256)})
	}
	base := c.Transactions()
	if err := ps.PortAdd(ctx, ports...); err != nil {
		t.Fatal(err)
	}
	if n := c.Transactions() - base; n != 3 {
		t.Errorf("250 ports in batches of 100 took %d transactions, want 3", n)
	}
	if err := ps.PortAdd(ctx, ports...); err != nil || c.Transactions()-base != 3 {
		t.Fatalf("re-attach: %v, %d transactions", err, c.Transactions()-base)
	}
	list, err := ps.PortList(ctx)
	if err != nil || len(list) != 250 {
		t.Fatalf("list: %d %v", len(list), err)
	}
	st := list[7]
	if st.Name != "vhu007" || st.SocketPath != "/run/vhu/vhu007" || st.IfaceID != "id-7" || st.MAC != "02:00:00:00:00:07" || st.Bridge != "br-int" || st.Type != ovsdpdk.PortVhostUser {
		t.Errorf("status %+v", st)
	}
	// Change one port: one transaction, only that port.
	ports[7].Tag, ports[7].MAC = 42, "02:00:00:00:00:77"
	if err := ps.PortAdd(ctx, ports...); err != nil || c.Transactions()-base != 4 {
		t.Fatalf("update: %v, %d transactions", err, c.Transactions()-base)
	}
	got, err := ps.PortGet(ctx, "vhu007")
	if err != nil || got.Tag != 42 || got.MAC != "02:00:00:00:00:77" {
		t.Fatalf("after update: %+v %v", got, err)
	}
	// Bad input is refused before anything is written.
	for _, bad := range []ovsdpdk.Port{
		{Name: "x", Type: ovsdpdk.PortVhostUser},
		{Name: "x", Type: "veth", IfaceID: "i"},
		{Name: "a-very-long-system-port", Type: ovsdpdk.PortSystem, IfaceID: "i"},
		{Name: "d", Type: ovsdpdk.PortDPDK, IfaceID: "i"},
		{Name: "t", Type: ovsdpdk.PortGeneve},
		{Name: "x", Type: ovsdpdk.PortSystem, IfaceID: "i", Tag: 5000},
	} {
		if err := ps.PortAdd(ctx, ports[0], bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
	if err := ps.PortAdd(ctx, ports[0], ports[0]); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate in one call: %v", err)
	}
	if c.Transactions()-base != 4 {
		t.Fatal("refused calls wrote")
	}
	var names []string
	for _, p := range ports {
		names = append(names, p.Name)
	}
	if err := ps.PortDel(ctx, append(names, "never-existed")...); err != nil {
		t.Fatal(err)
	}
	if list, _ := ps.PortList(ctx); len(list) != 0 {
		t.Fatalf("%d ports left", len(list))
	}
	st2, err := c.Snapshot(ctx)
	if err != nil || len(st2.Ports) != 1 || len(st2.Interfaces) != 1 {
		t.Fatalf("rows left: %d ports %d interfaces (%v)", len(st2.Ports), len(st2.Interfaces), err)
	}
}
