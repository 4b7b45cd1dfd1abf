package ovsdpdk_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

// flowLab is a private OVS with an integration bridge made by node apply, and offlane's
// flow applier on it.
type flowLab struct {
	o     *lab.OVS
	of    *ovsdpdk.Ofctl
	flows *ovsdpdk.Flows
}

func startFlowLab(t *testing.T) *flowLab {
	t.Helper()
	o := lab.StartOVS(t, lab.Options{})
	// No test logger for the OVSDB client: libovsdb's goroutines may log after Close.
	c, err := ovsdpdk.Connect(ctxT(t, 30*time.Second), ovsdpdk.Options{Endpoint: o.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if _, err := c.ApplyNode(ctxT(t, 60*time.Second), layoutFrom(t, "datapath: netdev\nintegration_bridge: br-int\n", nil), ovsdpdk.ApplyOptions{Wait: true}); err != nil {
		t.Fatal(err)
	}
	of := ovsdpdk.NewOfctl(ovsdpdk.OfctlOptions{RunDir: o.Dir})
	return &flowLab{o: o, of: of, flows: ovsdpdk.NewFlows(of, ovsdpdk.FlowsOptions{Logger: zaptest.NewLogger(t)})}
}

// ofctl runs ovs-ofctl -O OpenFlow15 on br-int (independently of the code under test).
func (l *flowLab) ofctl(t *testing.T, args ...string) string {
	t.Helper()
	full := append([]string{"-O", "OpenFlow15"}, args...)
	for i, a := range full {
		if a == "BR" {
			full[i] = l.of.Target("br-int")
		}
	}
	out, err := l.o.Ofctl(full...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dumpText is br-int's flow table as ovs-ofctl prints it without statistics, sorted.
func (l *flowLab) dumpText(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(l.ofctl(t, "--no-names", "--no-stats", "dump-flows", "BR"), "\n") {
		if strings.TrimSpace(line) != "" {
			out = append(out, strings.TrimSpace(line))
		}
	}
	slices.Sort(out)
	return out
}

func foreignLines(t *testing.T, lines []string) []string {
	t.Helper()
	var out []string
	for _, l := range lines {
		f, err := ovsdpdk.ParseFlowLine(l)
		if err != nil {
			t.Fatal(err)
		}
		if !offload.IsOfflaneCookie(f.Cookie) {
			out = append(out, l)
		}
	}
	return out
}

// TestLabFlowSyncSpellings: a full sync installs flows written in many spellings into a
// real ovs-vswitchd, reading them back compares equal (a second sync sends no bundle),
// foreign flows (the bridge's own NORMAL flow and two an operator added) are never
// touched, and syncing the empty set removes exactly offlane's flows.
func TestLabFlowSyncSpellings(t *testing.T) {
	l := startFlowLab(t)
	ctx := ctxT(t, 2*time.Minute)
	foreignFile := filepath.Join(t.TempDir(), "foreign.flows")
	if err := os.WriteFile(foreignFile, []byte("table=0,priority=5,cookie=0x1234,ip,nw_dst=192.0.2.1,actions=drop\ntable=7,priority=9,arp,actions=NORMAL\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l.ofctl(t, "add-flows", "BR", foreignFile)
	foreign := l.dumpText(t)
	if len(foreign) != 3 {
		t.Fatalf("want 3 foreign flows (NORMAL + 2), have:\n%s", strings.Join(foreign, "\n"))
	}

	desired := parseAddFlows(t, "testdata/openflow/spellings.flows", "br-int")
	desired = slices.DeleteFunc(desired, func(f offload.Flow) bool { return f.Actions == "" })
	res, err := l.flows.Sync(ctx, []string{"br-int"}, desired)
	if err != nil {
		t.Fatal(err)
	}
	if b := res.Bridges[0]; b.Added != len(desired) || b.Installed != 0 || !b.Bundled {
		t.Fatalf("first sync: %+v", b)
	}
	all := l.dumpText(t)
	if len(all) != len(foreign)+len(desired) {
		t.Fatalf("%d flows installed, want %d foreign + %d", len(all), len(foreign), len(desired))
	}
	if got := foreignLines(t, all); !slices.Equal(got, foreign) {
		t.Fatalf("foreign flows changed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(foreign, "\n"))
	}
	installed, err := l.flows.Installed(ctx, "br-int")
	if err != nil {
		t.Fatal(err)
	}
	if mods := ovsdpdk.DiffFlows(plain(installed), desired); len(mods) != 0 {
		t.Fatalf("read back differs from desired:\n%s", strings.Join(modLines(mods), "\n"))
	}

	res, err = l.flows.Sync(ctx, []string{"br-int"}, desired)
	if err != nil {
		t.Fatal(err)
	}
	if b := res.Bridges[0]; b.Changes() != 0 || b.Bundled || b.Unchanged != len(desired) {
		t.Fatalf("second sync was not a no-op: %+v", b)
	}

	if _, err := l.flows.Sync(ctx, []string{"br-int"}, nil); err != nil {
		t.Fatal(err)
	}
	if got := l.dumpText(t); !slices.Equal(got, foreign) {
		t.Fatalf("after syncing nothing:\n%s\nwant only the foreign flows:\n%s", strings.Join(got, "\n"), strings.Join(foreign, "\n"))
	}
}

// packetTo is an Ethernet/IPv4/UDP frame to dst, as hex for ovs-ofctl packet-out.
func packetTo(dst [4]byte) string {
	return "ffffffffffff020000000001" + "0800" +
		"4500001c00004000401100000a000001" + fmt.Sprintf("%02x%02x%02x%02x", dst[0], dst[1], dst[2], dst[3]) +
		"04d2162e00080000"
}

// counters returns n_packets of offlane's flows on br-int by "table/priority/match".
func (l *flowLab) counters(t *testing.T, ctx context.Context) map[string]uint64 {
	t.Helper()
	fl, err := l.flows.Installed(ctx, "br-int")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, f := range fl {
		out[fmt.Sprintf("%d/%d/%s", f.Table, f.Priority, f.Match)] = f.Packets
	}
	return out
}

// TestLabFlowSyncChanges: a sync that changes actions modifies in place, one that
// changes a cookie replaces the flow (new cookie), flows no longer wanted are deleted and
// new ones added, all in one bundle, and packet counters of the flows that stay survive;
// then an incremental Update does the same without a dump.
func TestLabFlowSyncChanges(t *testing.T) {
	l := startFlowLab(t)
	ctx := ctxT(t, 2*time.Minute)
	c1, c2 := offload.CookieFor(offload.KindPort, "p1"), offload.CookieFor(offload.KindPort, "p2")
	flow := func(prio uint16, cookie uint64, dst, actions string) offload.Flow {
		return offload.Flow{Bridge: "br-int", Table: 40, Priority: prio, Cookie: cookie, Match: "udp,nw_dst=" + dst, Actions: actions}
	}
	a := []offload.Flow{
		flow(10, c1, "10.9.0.1", "drop"),       // will get new actions
		flow(10, c1, "10.9.0.2", "drop"),       // will get a new cookie
		flow(10, c1, "10.9.0.3", "drop"),       // will go
		flow(10, c2, "10.9.0.4", "output:100"), // stays
	}
	if _, err := l.flows.Sync(ctx, []string{"br-int"}, a); err != nil {
		t.Fatal(err)
	}
	// Three packets through each flow.
	for _, d := range [][4]byte{{10, 9, 0, 1}, {10, 9, 0, 2}, {10, 9, 0, 3}, {10, 9, 0, 4}} {
		for i := 0; i < 3; i++ {
			l.ofctl(t, "packet-out", "BR", "in_port=LOCAL packet="+packetTo(d)+" actions=resubmit(,40)")
		}
	}
	key := func(dst string) string { return "40/10/udp,nw_dst=" + dst }
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := l.counters(t, ctx)
		if c[key("10.9.0.1")] == 3 && c[key("10.9.0.2")] == 3 && c[key("10.9.0.4")] == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("packet-out counters never reached 3: %v", c)
		}
		time.Sleep(50 * time.Millisecond)
	}

	b := []offload.Flow{
		flow(10, c1, "10.9.0.1", "output:101"),
		flow(10, c2, "10.9.0.2", "drop"),
		flow(10, c2, "10.9.0.4", "output:100"),
		flow(10, c2, "10.9.0.5", "drop"),
	}
	res, err := l.flows.Sync(ctx, []string{"br-int"}, b)
	if err != nil {
		t.Fatal(err)
	}
	if s := res.Bridges[0]; s.Modified != 1 || s.Replaced != 1 || s.Deleted != 1 || s.Added != 1 || s.Unchanged != 1 {
		t.Fatalf("sync: %+v", s)
	}
	got, err := l.flows.Installed(ctx, "br-int")
	if err != nil {
		t.Fatal(err)
	}
	if mods := ovsdpdk.DiffFlows(plain(got), b); len(mods) != 0 {
		t.Fatalf("installed differs from desired:\n%s", strings.Join(modLines(mods), "\n"))
	}
	// OVS keeps a flow's counters when an add replaces it (no reset_counts flag), so
	// every surviving flow still shows its three packets; the replaced one has its new
	// cookie (a modify would have kept the old one).
	c := l.counters(t, ctx)
	for _, d := range []string{"10.9.0.1", "10.9.0.2", "10.9.0.4"} {
		if c[key(d)] != 3 {
			t.Fatalf("flow to %s lost its counter: %v", d, c)
		}
	}
	for _, f := range got {
		if f.Match == "udp,nw_dst=10.9.0.2" && f.Cookie != c2 {
			t.Fatalf("cookie of the replaced flow is %#x, want %#x", f.Cookie, c2)
		}
	}

	// Incremental: one more flow, one modified, one deleted, no dump.
	n := flow(20, c1, "10.9.0.6", "drop")
	mod := b[1]
	mod.Cookie, mod.Actions = c1, "output:102"
	if err := l.flows.Update(ctx, &offload.Delta{Add: []offload.Flow{n}, Modify: []offload.Flow{mod}, Delete: []offload.Flow{b[3]}}); err != nil {
		t.Fatal(err)
	}
	want := []offload.Flow{b[0], mod, b[2], n}
	got, err = l.flows.Installed(ctx, "br-int")
	if err != nil {
		t.Fatal(err)
	}
	if mods := ovsdpdk.DiffFlows(plain(got), want); len(mods) != 0 {
		t.Fatalf("after update, installed differs:\n%s", strings.Join(modLines(mods), "\n"))
	}
}

// TestLabFlowBundleAtomic: a sync or update whose batch holds one flow OVS refuses (an
// output to a group that does not exist, refused by ovs-vswitchd at commit; or a field
// ovs-ofctl cannot parse) applies nothing: the flow table reads back byte for byte as
// before, counters included.
func TestLabFlowBundleAtomic(t *testing.T) {
	l := startFlowLab(t)
	ctx := ctxT(t, 2*time.Minute)
	c := offload.CookieFor(offload.KindNetwork, "n1")
	var base []offload.Flow
	for i := 0; i < 500; i++ {
		base = append(base, offload.Flow{Bridge: "br-int", Table: 30, Priority: 50, Cookie: c,
			Match: fmt.Sprintf("dl_vlan=%d,dl_dst=fa:16:3e:00:%02x:%02x", i%4000+1, i/256, i%256), Actions: fmt.Sprintf("output:%d", i+1)})
	}
	if _, err := l.flows.Sync(ctx, []string{"br-int"}, base); err != nil {
		t.Fatal(err)
	}
	before := l.dumpText(t)
	beforeStats := l.ofctl(t, "--no-names", "dump-aggregate", "BR")

	// The new batch changes every existing flow, deletes some, adds many; one bad flow.
	c2 := offload.CookieFor(offload.KindNetwork, "n2")
	var next []offload.Flow
	for i, f := range base[:400] {
		f.Actions = fmt.Sprintf("output:%d", i+1000)
		if i%2 == 0 {
			f.Cookie = c2
		}
		next = append(next, f)
	}
	for i := 0; i < 300; i++ {
		next = append(next, offload.Flow{Bridge: "br-int", Table: 31, Priority: 5, Cookie: c2, Match: fmt.Sprintf("reg6=0x%x", i+1), Actions: "drop"})
	}
	for name, bad := range map[string]offload.Flow{
		"switch refuses": {Bridge: "br-int", Table: 31, Priority: 6, Cookie: c2, Match: "ip", Actions: "group:99"},
		"parse error":    {Bridge: "br-int", Table: 31, Priority: 6, Cookie: c2, Match: "ip,no_such_field=1", Actions: "drop"},
	} {
		batch := append(slices.Clone(next[:350]), bad)
		batch = append(batch, next[350:]...)
		_, err := l.flows.Sync(ctx, []string{"br-int"}, batch)
		var be *ovsdpdk.BundleError
		if !errors.As(err, &be) || be.Bridge != "br-int" {
			t.Fatalf("%s: sync error %v, want a BundleError for br-int", name, err)
		}
		t.Logf("%s: %v", name, err)
		if after := l.dumpText(t); !slices.Equal(after, before) {
			t.Fatalf("%s: the failed bundle changed the flow table (%d flows before, %d after)", name, len(before), len(after))
		}
		err = l.flows.Update(ctx, &offload.Delta{Add: []offload.Flow{next[450], bad}, Modify: next[:10], Delete: base[450:460]})
		if !errors.Is(err, ovsdpdk.ErrBundle) {
			t.Fatalf("%s: update error %v, want a bundle error", name, err)
		}
		if after := l.dumpText(t); !slices.Equal(after, before) {
			t.Fatalf("%s: the failed update changed the flow table", name)
		}
	}
	if s := l.ofctl(t, "--no-names", "dump-aggregate", "BR"); s != beforeStats {
		t.Fatalf("aggregate stats changed: %q → %q", beforeStats, s)
	}
	// The same batch without the bad flow goes through.
	if _, err := l.flows.Sync(ctx, []string{"br-int"}, next); err != nil {
		t.Fatal(err)
	}
	got, err := l.flows.Installed(ctx, "br-int")
	if err != nil {
		t.Fatal(err)
	}
	if mods := ovsdpdk.DiffFlows(plain(got), next); len(mods) != 0 {
		t.Fatalf("after the good sync:\n%s", strings.Join(modLines(mods), "\n"))
	}
}
