package ovsdpdk_test

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
)

// TestQoSApplyInMemory: the QoS applier against libovsdb's in-memory OVSDB: rows created
// with their owner tags, a second Apply sends nothing, a change is made in place, ports
// without a QoS lose theirs and the rows go, and a detached port's rows are pruned.
func TestQoSApplyInMemory(t *testing.T) {
	c := memClient(t, 0)
	ctx := ctxT(t, 30*time.Second)
	if _, err := c.ApplyNode(ctx, layoutFrom(t, "datapath: netdev\n", nil), ovsdpdk.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	ps := ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{SocketDir: "/tmp/vhu"})
	if err := ps.PortAdd(ctx,
		ovsdpdk.Port{Name: "tap1", Type: ovsdpdk.PortSystem, IfaceID: "p1"},
		ovsdpdk.Port{Name: "vhu2", Type: ovsdpdk.PortVhostUser, IfaceID: "p2"},
		ovsdpdk.Port{Name: "tap3", Type: ovsdpdk.PortSystem, IfaceID: "p3"}); err != nil {
		t.Fatal(err)
	}
	q := ovsdpdk.NewQoS(c, nil)
	htb := offload.OVSPortQoS{PortID: "p1", Type: "linux-htb", OtherConfig: map[string]string{"max-rate": "50000000"},
		Queue: map[string]string{"max-rate": "50000000", "burst": "5000000", "min-rate": "1000000"}}
	pol := offload.OVSPortQoS{PortID: "p2", PolicingKbps: 50000, PolicingBurstKb: 5000, Type: "egress-policer",
		OtherConfig: map[string]string{"cir": "6250000", "cbs": "625000"}}
	missing := offload.OVSPortQoS{PortID: "p9", PolicingKbps: 1, PolicingBurstKb: 1}
	res, err := q.Apply(ctx, []offload.OVSPortQoS{htb, pol, missing})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Transacted || !slices.Equal(res.Changed, []string{"p1", "p2"}) || !slices.Equal(res.Unattached, []string{"p9"}) {
		t.Fatalf("first apply: %+v", res)
	}
	check := func(id string, want offload.OVSPortQoS) {
		t.Helper()
		st, err := q.PortQoS(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.PolicingKbps != want.PolicingKbps || st.PolicingBurstKb != want.PolicingBurstKb || st.QoSType != want.Type ||
			(want.Type != "" && !st.QoSOwned) || !maps.Equal(st.OtherConfig, want.OtherConfig) || !maps.Equal(st.Queue, want.Queue) {
			t.Fatalf("port %s in OVSDB: %+v, want %s", id, st, want)
		}
	}
	check("p1", htb)
	check("p2", pol)
	check("p3", offload.OVSPortQoS{PortID: "p3"})
	n := c.Transactions()
	if res, err := q.Apply(ctx, []offload.OVSPortQoS{htb, pol}); err != nil || res.Transacted || c.Transactions() != n {
		t.Fatalf("second apply without changes: %+v %v (%d transactions)", res, err, c.Transactions()-n)
	}
	rows := func() (qos, queues int) {
		qs, err := q.Rows(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return qs.QoS, qs.Queues
	}
	if a, b := rows(); a != 2 || b != 1 {
		t.Fatalf("%d QoS and %d Queue rows, want 2 and 1", a, b)
	}

	// p1 turns into an egress-policer (queue dropped), p2 loses everything, p3 gains htb.
	htb1 := offload.OVSPortQoS{PortID: "p1", Type: "egress-policer", OtherConfig: map[string]string{"cir": "125000", "cbs": "12500"}}
	htb3 := htb
	htb3.PortID = "p3"
	res, err = q.Apply(ctx, []offload.OVSPortQoS{htb1, htb3})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Changed, []string{"p1", "p2", "p3"}) || c.Transactions() != n+1 {
		t.Fatalf("change: %+v (%d transactions)", res, c.Transactions()-n)
	}
	check("p1", htb1)
	check("p2", offload.OVSPortQoS{PortID: "p2"})
	check("p3", htb3)
	if a, b := rows(); a != 2 || b != 1 {
		t.Fatalf("after the change %d QoS and %d Queue rows, want 2 and 1 (p2's and p1's queue deleted)", a, b)
	}

	// Detaching p3 leaves its rows unreferenced: the next Apply prunes them.
	if err := ps.PortDel(ctx, "tap3"); err != nil {
		t.Fatal(err)
	}
	res, err = q.Apply(ctx, []offload.OVSPortQoS{htb1, htb3})
	if err != nil {
		t.Fatal(err)
	}
	if res.Pruned != 2 || !slices.Equal(res.Unattached, []string{"p3"}) {
		t.Fatalf("after detaching p3: %+v", res)
	}
	if a, b := rows(); a != 1 || b != 0 {
		t.Fatalf("%d QoS and %d Queue rows left, want 1 and 0", a, b)
	}

	// Bad input is refused before anything is sent.
	n = c.Transactions()
	for _, bad := range [][]offload.OVSPortQoS{
		{{PortID: "p1", Type: "linux-hfsc"}},
		{{PortID: "p1"}, {PortID: "p1"}},
		{{PortID: "p1", PolicingKbps: -1}},
	} {
		if _, err := q.Apply(ctx, bad); err == nil || !strings.Contains(err.Error(), "p1") {
			t.Errorf("Apply(%v) = %v, want an error naming the port", bad, err)
		}
	}
	if c.Transactions() != n {
		t.Fatal("refused input sent a transaction")
	}
}

func TestParseAndDiffMeters(t *testing.T) {
	dump := `OFPST_METER_CONFIG reply (OF1.5) (xid=0x2):
meter=5 kbps burst stats bands=
type=drop rate=60000 burst_size=6000

meter=1862270977 kbps burst stats bands=
type=drop rate=50000 burst_size=5000

meter=1862270978 kbps bands=
type=drop rate=50000

meter=1862270979 kbps burst stats bands=
type=drop rate=1000 burst_size=800
`
	ms, err := ovsdpdk.ParseMeterDump(strings.NewReader(dump), "br-int")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 4 || ms[0].ID != 5 || ms[0].Kbps != 60000 || ms[0].BurstKb != 6000 || ms[0].Flags != "kbps burst stats" ||
		ms[2].Flags != "kbps" || ms[2].BurstKb != 0 || ms[3].Bridge != "br-int" {
		t.Fatalf("parsed %+v", ms)
	}
	const base = 0x6f000000
	desired := []offload.Meter{
		{Bridge: "br-int", ID: base + 1, Kbps: 50000, BurstKb: 5000}, // as installed
		{Bridge: "br-int", ID: base + 2, Kbps: 50000, BurstKb: 5000}, // installed without burst: modify
		{Bridge: "br-int", ID: base + 4, Kbps: 7000, BurstKb: 700},   // new
	}
	add, mod, del := ovsdpdk.DiffMeters(ms, desired)
	ids := func(m []offload.Meter) []uint32 {
		var out []uint32
		for _, x := range m {
			out = append(out, x.ID)
		}
		return out
	}
	if !slices.Equal(ids(add), []uint32{base + 4}) || !slices.Equal(ids(mod), []uint32{base + 2}) || !slices.Equal(ids(del), []uint32{base + 3}) {
		t.Fatalf("add %v modify %v delete %v; meter 5 is foreign and must never be deleted", ids(add), ids(mod), ids(del))
	}
	for _, bad := range []string{"meter=x kbps bands=\n", "type=drop rate=1\n", "meter=1 kbps bands=\ntype=drop rate=fast\n", "hello\n"} {
		if _, err := ovsdpdk.ParseMeterDump(strings.NewReader(bad), "br0"); err == nil {
			t.Errorf("ParseMeterDump(%q) accepted it", bad)
		}
	}
}

func FuzzParseMeterDump(f *testing.F) {
	f.Add("meter=5 kbps burst stats bands=\ntype=drop rate=60000 burst_size=6000\n")
	f.Add("OFPST_METER_CONFIG reply (OF1.5) (xid=0x2):\nmeter=1 pktps bands=\ntype=drop rate=1\ntype=dscp_remark rate=2 prec_level=1\n")
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := ovsdpdk.ParseMeterDump(strings.NewReader(s), "br0")
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.Bridge != "br0" {
				t.Fatalf("meter %+v lost its bridge", m)
			}
		}
	})
}
