package ovsdpdk_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

const labPortsYAML = `
datapath: netdev
integration_bridge: br-int
tunnel: {local_ip: 10.99.0.1, types: [vxlan]}
`

// TestLabPortsPing: two netns VMs attached to br-int with the Ports API ping each other
// through the real OVS userspace datapath; a VLAN tag separates them, detaching cuts
// them off; the API is idempotent and refuses rows it does not own.
func TestLabPortsPing(t *testing.T) {
	o := lab.StartOVS(t, lab.Options{})
	c := connect(t, o)
	ctx := ctxT(t, 90*time.Second)
	if _, err := c.ApplyNode(ctx, layoutFrom(t, labPortsYAML, nil), ovsdpdk.ApplyOptions{Wait: true}); err != nil {
		t.Fatal(err)
	}
	vm1 := o.AddVM(t, "vm1", lab.VMOptions{IP: "10.0.0.1/24", MAC: "02:00:00:00:00:01"})
	vm2 := o.AddVM(t, "vm2", lab.VMOptions{IP: "10.0.0.2/24", MAC: "02:00:00:00:00:02"})
	ps := ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{})
	p1 := ovsdpdk.Port{Name: vm1.HostIf, Type: ovsdpdk.PortSystem, IfaceID: "11111111-aaaa-4000-8000-000000000001", MAC: vm1.MAC}
	p2 := ovsdpdk.Port{Name: vm2.HostIf, Type: ovsdpdk.PortSystem, IfaceID: "11111111-aaaa-4000-8000-000000000002", MAC: vm2.MAC}
	if err := ps.PortAdd(ctx, p1, p2); err != nil {
		t.Fatal(err)
	}
	txns := c.Transactions()
	if err := ps.PortAdd(ctx, p1, p2); err != nil {
		t.Fatal(err)
	}
	if c.Transactions() != txns {
		t.Fatal("attaching the same ports again sent a transaction")
	}
	for _, vm := range []*lab.VM{vm1, vm2} {
		st, err := ps.PortWait(ctx, vm.HostIf, func(s *ovsdpdk.PortStatus) bool { return s.OFPort > 0 && s.LinkState == "up" })
		if err != nil {
			t.Fatal(err)
		}
		if st.Bridge != "br-int" || st.Error != "" || st.MAC != vm.MAC || st.Type != ovsdpdk.PortSystem {
			t.Errorf("status %+v", st)
		}
		i := row(t, o, "Interface", vm.HostIf, "external_ids")
		eid := ovsMap(i["external_ids"])
		if eid["iface-id"] == "" || eid["attached-mac"] != vm.MAC || eid["iface-status"] != "active" || eid[ovsdpdk.KeyOwner] != ovsdpdk.OwnerPort {
			t.Errorf("interface %s external_ids %v", vm.HostIf, eid)
		}
	}
	list, err := ps.PortList(ctx)
	if err != nil || len(list) != 2 || list[0].IfaceID != p1.IfaceID {
		t.Fatalf("PortList: %+v %v", list, err)
	}

	mustPing(t, vm1, vm2.IP)
	mustPing(t, vm2, vm1.IP)

	// Different VLAN tags: no traffic. Same tag: traffic again.
	p2.Tag = 100
	if err := ps.PortAdd(ctx, p2); err != nil {
		t.Fatal(err)
	}
	if tag := row(t, o, "Port", vm2.HostIf, "tag")["tag"]; tag != float64(100) {
		t.Fatalf("vm2 tag %v", tag)
	}
	mustNotPing(t, vm1, vm2.IP)
	p1.Tag = 100
	if err := ps.PortAdd(ctx, p1); err != nil {
		t.Fatal(err)
	}
	mustPing(t, vm1, vm2.IP)

	// Other port types: internal (vswitchd creates the netdev) and a tunnel port.
	if err := ps.PortAdd(ctx,
		ovsdpdk.Port{Name: "int0", Type: ovsdpdk.PortInternal, IfaceID: "11111111-aaaa-4000-8000-000000000003"},
		ovsdpdk.Port{Name: "vxlan-0a630002", Bridge: "br-tun", Type: ovsdpdk.PortVXLAN, RemoteIP: "10.99.0.2", LocalIP: "10.99.0.1", Key: "flow"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"int0", "vxlan-0a630002"} {
		st, err := ps.PortWait(ctx, n, func(s *ovsdpdk.PortStatus) bool { return s.OFPort > 0 })
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %+v", n, st)
	}
	if out, err := lab.Run("ip", "-n", o.NS, "link", "show", "int0"); err != nil {
		t.Errorf("internal port has no netdev in the vswitchd namespace: %v %s", err, out)
	}
	if opts := ovsMap(row(t, o, "Interface", "vxlan-0a630002", "options")["options"]); opts["remote_ip"] != "10.99.0.2" || opts["key"] != "flow" {
		t.Errorf("tunnel options %v", opts)
	}

	// Rows offlane does not own as tenant ports are refused, and nothing is written.
	txns = c.Transactions()
	if err := ps.PortDel(ctx, "br-int"); err == nil {
		t.Error("PortDel of the bridge's own port succeeded")
	}
	if err := ps.PortAdd(ctx, ovsdpdk.Port{Name: "vm3", Type: ovsdpdk.PortSystem, IfaceID: "x"}, ovsdpdk.Port{Name: "patch-tun", Type: ovsdpdk.PortSystem, IfaceID: "y"}); err == nil {
		t.Error("PortAdd over a layout port succeeded")
	}
	if err := ps.PortAdd(ctx, ovsdpdk.Port{Name: "vm9", Bridge: "br-nope", Type: ovsdpdk.PortSystem, IfaceID: "z"}); err == nil || !strings.Contains(err.Error(), "br-nope") {
		t.Errorf("PortAdd on a missing bridge: %v", err)
	}
	if c.Transactions() != txns || row(t, o, "Port", "vm3") != nil {
		t.Fatal("a refused call wrote to the database")
	}

	// Detach: traffic stops; detaching again is a no-op.
	if err := ps.PortDel(ctx, vm2.HostIf, "int0"); err != nil {
		t.Fatal(err)
	}
	if row(t, o, "Port", vm2.HostIf) != nil || row(t, o, "Interface", vm2.HostIf) != nil {
		t.Fatal("vm2 rows still there")
	}
	if _, err := ps.PortGet(ctx, vm2.HostIf); !errors.Is(err, ovsdpdk.ErrPortNotFound) {
		t.Errorf("PortGet after delete: %v", err)
	}
	mustNotPing(t, vm1, vm2.IP)
	txns = c.Transactions()
	if err := ps.PortDel(ctx, vm2.HostIf, "int0"); err != nil || c.Transactions() != txns {
		t.Fatalf("second PortDel: %v, transactions %d → %d", err, txns, c.Transactions())
	}
	// The layout is untouched by all this: a node apply finds nothing to do.
	res, err := c.ApplyNode(ctx, layoutFrom(t, labPortsYAML, nil), ovsdpdk.ApplyOptions{})
	if err != nil || res.Transacted {
		t.Fatalf("node apply after port churn: %v %v", err, res.Plan.Changes)
	}
}

// TestLabPortsAcrossServerRestart: ports attached while ovsdb-server is down go in once
// it is back (the client reconnects by itself and rebuilds the transaction from the
// resynchronised cache): no row lost, none duplicated.
func TestLabPortsAcrossServerRestart(t *testing.T) {
	o := lab.StartOVS(t, lab.Options{DBOnly: true})
	c := connect(t, o)
	ctx := ctxT(t, 60*time.Second)
	if _, err := c.ApplyNode(ctx, layoutFrom(t, "datapath: netdev\n", nil), ovsdpdk.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	ps := ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{})
	first, second := benchPorts("a", 0, 50), benchPorts("b", 0, 150)
	if err := ps.PortAdd(ctx, first...); err != nil {
		t.Fatal(err)
	}
	if err := o.KillOVSDBServer(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "client notices the lost connection", func() bool { return !c.Connected() })
	done := make(chan error, 1)
	go func() { done <- ps.PortAdd(ctx, append(first, second...)...) }()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("PortAdd returned while ovsdb-server was down: %v", err)
	default:
	}
	if err := o.StartOVSDBServer(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rows, err := o.Select("Interface", []any{[]any{"external_ids", "includes", []any{"map", []any{[]any{ovsdpdk.KeyOwner, ovsdpdk.OwnerPort}}}}}, "name")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(first)+len(second) {
		t.Fatalf("%d tenant interfaces in the database, want %d", len(rows), len(first)+len(second))
	}
	if got := len(portNames(t, o, "br-int")); got != 1+len(first)+len(second) {
		t.Fatalf("br-int has %d ports", got)
	}
	txns := c.Transactions()
	if err := ps.PortAdd(ctx, append(first, second...)...); err != nil || c.Transactions() != txns {
		t.Fatalf("re-attach after the restart: %v (transactions %d → %d)", err, txns, c.Transactions())
	}
}

func mustPing(t *testing.T, from *lab.VM, dst string) {
	t.Helper()
	// The first packets may be spent on ARP and MAC learning: allow a retry.
	var out string
	var err error
	for range 3 {
		if out, err = from.Ping(dst, 3); err == nil {
			return
		}
	}
	t.Fatalf("ping %s → %s failed: %v\n%s", from.NS, dst, err, out)
}

func mustNotPing(t *testing.T, from *lab.VM, dst string) {
	t.Helper()
	if out, err := from.Ping(dst, 2); err == nil {
		t.Fatalf("ping %s → %s passed, want no path:\n%s", from.NS, dst, out)
	}
}
