package ovsdpdk_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/ovsdpdk/vswitchd"
)

// parseAddFlows reads an ovs-ofctl add-flows file written as
// "table=N[,priority=N][,cookie=X][,match],actions=..." (comments and blank lines
// skipped): the desired flows of the tests.
func parseAddFlows(t testing.TB, path, bridge string) []offload.Flow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []offload.Flow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		out = append(out, parseAddFlow(t, line, bridge))
	}
	return out
}

func parseAddFlow(t testing.TB, line, bridge string) offload.Flow {
	t.Helper()
	head, acts, ok := strings.Cut(line, "actions=")
	if !ok {
		t.Fatalf("%q: no actions", line)
	}
	fl := offload.Flow{Bridge: bridge, Priority: 32768, Actions: acts}
	var match []string
	for _, tok := range strings.Split(strings.TrimSuffix(head, ","), ",") {
		k, v, _ := strings.Cut(tok, "=")
		switch k {
		case "table":
			n, _ := strconv.Atoi(v)
			fl.Table = uint8(n)
		case "priority":
			n, _ := strconv.Atoi(v)
			fl.Priority = uint16(n)
		case "cookie":
			c, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 64)
			if err != nil {
				t.Fatalf("%q: cookie: %v", line, err)
			}
			fl.Cookie = c
		case "":
		default:
			match = append(match, tok)
		}
	}
	fl.Match = strings.Join(match, ",")
	return fl
}

func readDump(t testing.TB, path, bridge string) []ovsdpdk.InstalledFlow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flows, err := ovsdpdk.ParseFlowDump(f, bridge)
	if err != nil {
		t.Fatal(err)
	}
	return flows
}

func plain(in []ovsdpdk.InstalledFlow) []offload.Flow {
	out := make([]offload.Flow, len(in))
	for i := range in {
		out[i] = in[i].Flow
	}
	return out
}

func modLines(mods []ovsdpdk.FlowMod) []string {
	var out []string
	for _, m := range mods {
		out = append(out, strings.TrimSuffix(string(m.AppendLine(nil)), "\n"))
	}
	return out
}

// TestParseFlowDumpCaptured parses dumps captured from OVS 3.1 (with and without
// statistics) and checks flows field by field.
func TestParseFlowDumpCaptured(t *testing.T) {
	stats := readDump(t, "testdata/openflow/dump-stats.txt", "br0")
	nostats := readDump(t, "testdata/openflow/dump-nostats.txt", "br0")
	if len(stats) != 39 || len(nostats) != 39 {
		t.Fatalf("parsed %d and %d flows, want 39 each", len(stats), len(nostats))
	}
	for i := range stats {
		if !stats[i].HasStats || nostats[i].HasStats {
			t.Fatalf("flow %d: HasStats %v / %v", i, stats[i].HasStats, nostats[i].HasStats)
		}
	}
	if !reflect.DeepEqual(plain(stats), plain(nostats)) {
		t.Fatalf("the two dumps parse to different flows:\n%v\n%v", plain(stats), plain(nostats))
	}
	want := map[int]offload.Flow{
		0: {Bridge: "br0", Table: 0, Priority: 32768, Cookie: 0x6f6c000000000001, Match: "", Actions: "drop"},
		1: {Bridge: "br0", Table: 0, Priority: 0, Cookie: 0x6f6c000000000001, Match: "", Actions: "drop"},
		2: {Bridge: "br0", Table: 0, Priority: 100, Cookie: 0x6f6c000000000001, Match: "ip,in_port=1,nw_src=10.0.0.5", Actions: "resubmit(,1)"},
		36: {Bridge: "br0", Table: 6, Priority: 65535, Cookie: 0x6f6c00000000000a,
			Match: "icmp6,icmp_type=136,nd_target=2001:db8::1,nd_tll=fa:16:3e:00:00:02", Actions: "output:5"},
		38: {Bridge: "br0", Table: 253, Priority: 5, Cookie: 0x6f6c00000000000b, Match: "reg7=0x10", Actions: "output:16"},
	}
	for i, w := range want {
		if stats[i].Flow != w {
			t.Errorf("flow %d = %+v, want %+v", i, stats[i].Flow, w)
		}
	}

	attrs := readDump(t, "testdata/openflow/dump-attrs.txt", "br1")
	if len(attrs) != 6 {
		t.Fatalf("dump-attrs: %d flows, want 6", len(attrs))
	}
	a := attrs[1]
	if a.IdleTimeout != 100 || a.HardTimeout != 200 || a.Importance != 3 || !slices.Equal(a.Flags, []string{"send_flow_rem"}) ||
		a.Priority != 0 || a.Match != "" || a.Actions != "output:1" || a.Duration != 1101*time.Millisecond || a.Bridge != "br1" {
		t.Errorf("flow with attributes parsed as %+v", a)
	}
	if c := attrs[2]; c.Packets != 2 || c.Bytes != 68 || c.Priority != 32768 || c.Match != "" || !slices.Equal(c.Flags, []string{"send_flow_rem"}) {
		t.Errorf("flow with counters parsed as %+v", c)
	}
	if c := attrs[5]; !slices.Equal(c.Flags, []string{"check_overlap", "reset_counts"}) || c.Match != "ipv6,ipv6_src=fe80::/64" || c.Priority != 7 {
		t.Errorf("flow with two flags parsed as %+v", c)
	}
	ns := readDump(t, "testdata/openflow/dump-attrs-nostats.txt", "br1")
	if !reflect.DeepEqual(plain(ns), plain(attrs)) {
		t.Errorf("no-stats dump differs:\n%v\n%v", plain(ns), plain(attrs))
	}
}

func TestParseFlowDumpErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"no actions", " cookie=0x1, table=0, priority=1,ip\n", "no actions="},
		{"bad cookie", " cookie=0xzz, table=0, actions=drop\n", "cookie"},
		{"bad table", " table=300, actions=drop\n", "table"},
		{"bad priority", " priority=70000,ip actions=drop\n", "priority"},
		{"junk before match", " table=1, bogus priority=1,ip actions=drop\n", "unexpected"},
		{"attribute as match", " cookie=0x1, table=1 actions=drop\n", "flow attribute"},
		{"empty field", " priority=1,ip,,tcp actions=drop\n", "empty field"},
		{"empty actions", " priority=1 actions=\n", "empty actions"},
		{"not a flow", "ovs-ofctl: br0 is not a bridge or a socket\n", "line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ovsdpdk.ParseFlowDump(strings.NewReader(tc.in), "br")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestNormaliseCapturedSpellings: the flows of spellings.flows, written in the many ways
// OVS accepts, equal what OVS 3.1 printed for them after installing (captured dump), so a
// sync of them against that switch sends nothing.
func TestNormaliseCapturedSpellings(t *testing.T) {
	desired := parseAddFlows(t, "testdata/openflow/spellings.flows", "br0")
	installed := plain(readDump(t, "testdata/openflow/dump-nostats.txt", "br0"))
	if len(desired) != len(installed) {
		t.Fatalf("%d desired, %d installed", len(desired), len(installed))
	}
	if mods := ovsdpdk.DiffFlows(installed, desired); len(mods) != 0 {
		t.Fatalf("desired and installed differ after normalisation:\n%s", strings.Join(modLines(mods), "\n"))
	}
	// Every one of them was spelled differently from OVS's text in some way, or matched
	// as written: count how many needed the normaliser, to make sure the test exercises it.
	asWritten := map[string]bool{}
	for _, f := range installed {
		asWritten[fmt.Sprint(f.Table, f.Priority, f.Match, f.Actions)] = true
	}
	rewritten := 0
	for _, f := range desired {
		if !asWritten[fmt.Sprint(f.Table, f.Priority, f.Match, f.Actions)] {
			rewritten++
		}
	}
	if rewritten < 30 {
		t.Fatalf("only %d of %d flows differ from OVS's text: the corpus no longer tests normalisation", rewritten, len(desired))
	}
}

func TestNormalizeMatch(t *testing.T) {
	same := [][2]string{
		{"dl_type=0x0800,nw_proto=6", "tcp"},
		{"eth_type=2048,ip_proto=0x6,tcp_dst=22", "tcp,tp_dst=22"},
		{"ip,nw_src=10.0.0.5/32", "nw_src=10.0.0.5,ip"},
		{"ip,nw_src=10.0.0.7/24", "ip,nw_src=10.0.0.0/255.255.255.0"},
		{"ip,nw_src=0.0.0.0/0", "ip"},
		{"reg6=5", "reg6=0x5"},
		{"reg6=0x5/0xffffffff", "reg6=0x5"},
		{"reg6=0/0", ""},
		{"vlan_vid=0x1064", "dl_vlan=100"},
		{"vlan_tci=0x1064/0x1fff", "dl_vlan=100"},
		{"vlan_tci=0", "vlan_tci=0x0000/0x1fff"},
		{"dl_vlan=0xffff", "vlan_tci=0x0000/0x1fff"},
		{"dl_vlan=7,dl_vlan_pcp=3", "dl_vlan_pcp=3,dl_vlan=7"},
		{"ct_state=+trk+est", "ct_state=+est+trk"},
		{"ct_state=0x22/0x22", "ct_state=+est+trk"},
		{"ct_state=-new+trk", "ct_state=+trk-new"},
		{"in_port=LOCAL", "in_port=65534"},
		{"dl_src=FA:16:3E:00:00:01", "eth_src=fa:16:3e:00:00:01"},
		{"dl_dst=01:00:00:00:00:00/01:00:00:00:00:00", "dl_dst=01:23:45:67:89:ab/01:00:00:00:00:00"},
		{"ipv6,ipv6_dst=FE80:0:0:0:0:0:0:1/10", "ipv6,ipv6_dst=fe80::/10"},
		{"tunnel_id=5000", "tun_id=0x1388"},
		{"tp_dst=0x16/0xfffe", "tp_dst=23/0xfffe"},
		{"icmp6,icmpv6_type=135", "icmp6,icmp_type=135"},
	}
	for _, p := range same {
		if a, b := ovsdpdk.NormalizeMatch(p[0]), ovsdpdk.NormalizeMatch(p[1]); a != b {
			t.Errorf("%q → %q and %q → %q: want equal", p[0], a, p[1], b)
		}
	}
	differ := [][2]string{
		{"tcp", "udp"},
		{"tcp", "tcp6"},
		{"ip,nw_src=10.0.0.0/24", "ip,nw_src=10.0.0.0/25"},
		{"ip,nw_src=10.0.0.1", "ip,nw_dst=10.0.0.1"},
		{"ct_state=+trk", "ct_state=+trk+est"},
		{"ct_state=+est+trk", "ct_state=+est-trk"},
		{"dl_vlan=100", "dl_vlan=101"},
		{"dl_vlan=100", ""},
		{"reg6=0x5", "reg7=0x5"},
		{"reg6=0x5/0xff", "reg6=0x5"},
		{"in_port=1", "in_port=2"},
		{"dl_src=fa:16:3e:00:00:01", "dl_src=fa:16:3e:00:00:02"},
		{"conj_id=7", "conj_id=8"},
		{"tp_dst=22", "tp_src=22"},
		{"ip", "arp"},
	}
	for _, p := range differ {
		if a, b := ovsdpdk.NormalizeMatch(p[0]), ovsdpdk.NormalizeMatch(p[1]); a == b {
			t.Errorf("%q and %q both → %q: want different", p[0], p[1], a)
		}
	}
}

func TestNormalizeActions(t *testing.T) {
	same := [][3]string{ // a, b, match
		{"2", "output:2", ""},
		{"", "drop", ""},
		{"load:0x5->NXM_NX_REG6[]", "set_field:0x5->reg6", ""},
		{"load:0x1->NXM_NX_REG0[0..3]", "set_field:0x1/0xf->reg0", ""},
		{"load:0xfa163e000001->NXM_NX_ARP_SHA[]", "set_field:fa:16:3e:00:00:01->arp_sha", ""},
		{"load:0xa000001->NXM_OF_ARP_SPA[]", "set_field:10.0.0.1->arp_spa", ""},
		{"mod_dl_src:FA:16:3E:00:00:01", "set_field:fa:16:3e:00:00:01->eth_src", ""},
		{"mod_vlan_vid:100", "push_vlan:0x8100,set_field:4196->vlan_vid", "ip"},
		{"mod_vlan_vid:200", "set_field:4296->vlan_vid", "dl_vlan=100"},
		{"controller", "CONTROLLER:65535", ""},
		{"normal, output:LOCAL", "NORMAL,LOCAL", ""},
		{"set_field:0x1388->tunnel_id", "set_field:5000->tun_id", ""},
	}
	for _, p := range same {
		if a, b := ovsdpdk.NormalizeActions(p[0], p[2]), ovsdpdk.NormalizeActions(p[1], p[2]); a != b {
			t.Errorf("%q → %q and %q → %q: want equal", p[0], a, p[1], b)
		}
	}
	differ := [][2]string{
		{"output:1", "output:2"},
		{"output:1,output:2", "output:2,output:1"},
		{"drop", "output:1"},
		{"set_field:0x5->reg6", "set_field:0x5->reg7"},
		{"ct(commit,zone=5)", "ct(commit,zone=6)"},
		{"resubmit(,1)", "resubmit(,2)"},
	}
	for _, p := range differ {
		if a, b := ovsdpdk.NormalizeActions(p[0], ""), ovsdpdk.NormalizeActions(p[1], ""); a == b {
			t.Errorf("%q and %q both → %q: want different", p[0], p[1], a)
		}
	}
}

func TestDiffFlows(t *testing.T) {
	const c1, c2 = offload.CookieMarker | 1, offload.CookieMarker | 2
	base := []offload.Flow{
		{Bridge: "br", Table: 0, Priority: 10, Cookie: c1, Match: "in_port=1", Actions: "goto_table:10"},
		{Bridge: "br", Table: 10, Priority: 20, Cookie: c1, Match: "ip,nw_src=10.0.0.5", Actions: "goto_table:20"},
		{Bridge: "br", Table: 30, Priority: 5, Cookie: c2, Match: "dl_vlan=100", Actions: "output:3"},
	}
	with := func(i int, fn func(*offload.Flow)) []offload.Flow {
		out := slices.Clone(base)
		fn(&out[i])
		return out
	}
	for _, tc := range []struct {
		name    string
		desired []offload.Flow
		want    []string
	}{
		{"same", base, nil},
		{"same, other spellings", []offload.Flow{
			{Bridge: "br", Table: 0, Priority: 10, Cookie: c1, Match: "in_port=1", Actions: "goto_table:10"},
			{Bridge: "br", Table: 10, Priority: 20, Cookie: c1, Match: "dl_type=0x0800,nw_src=10.0.0.5/32", Actions: "goto_table:20"},
			{Bridge: "br", Table: 30, Priority: 5, Cookie: c2, Match: "vlan_vid=0x1064", Actions: "3"},
		}, nil},
		{"new actions", with(2, func(f *offload.Flow) { f.Actions = "output:4" }),
			[]string{"modify_strict table=30,priority=5,dl_vlan=100,actions=output:4"}},
		{"new cookie", with(2, func(f *offload.Flow) { f.Cookie = c1 }),
			[]string{"add table=30,priority=5,cookie=0x6f6c000000000001,dl_vlan=100,actions=output:3"}},
		{"other priority is another flow", with(0, func(f *offload.Flow) { f.Priority = 11 }),
			[]string{"delete_strict table=0,priority=10,cookie=0x6f6c000000000001/-1,in_port=1",
				"add table=0,priority=11,cookie=0x6f6c000000000001,in_port=1,actions=goto_table:10"}},
		{"gone", base[:2], []string{"delete_strict table=30,priority=5,cookie=0x6f6c000000000002/-1,dl_vlan=100"}},
		{"unknown spelling: delete and add in one bundle", with(1, func(f *offload.Flow) { f.Match = "ip,nw_src=10.0.0.5,foo_field=1" }),
			[]string{"delete_strict table=10,priority=20,cookie=0x6f6c000000000001/-1,ip,nw_src=10.0.0.5",
				"add table=10,priority=20,cookie=0x6f6c000000000001,ip,nw_src=10.0.0.5,foo_field=1,actions=goto_table:20"}},
		{"all new", nil, []string{
			"delete_strict table=0,priority=10,cookie=0x6f6c000000000001/-1,in_port=1",
			"delete_strict table=10,priority=20,cookie=0x6f6c000000000001/-1,ip,nw_src=10.0.0.5",
			"delete_strict table=30,priority=5,cookie=0x6f6c000000000002/-1,dl_vlan=100"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := modLines(ovsdpdk.DiffFlows(base, tc.desired))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("mods:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// fakeSwitch is an OpenFlow channel holding flow tables with OVS's semantics for the
// operations Flows uses (strict keys by canonical match, cookie-filtered dumps, atomic
// bundles), for unit tests of the applier.
type fakeSwitch struct {
	bridges map[string]map[string]offload.Flow // bridge → canonical key → flow
	bundles int
	failOn  string // a bundle containing a flow whose actions contain this fails
}

func newFakeSwitch(bridges ...string) *fakeSwitch {
	s := &fakeSwitch{bridges: map[string]map[string]offload.Flow{}}
	for _, b := range bridges {
		s.bridges[b] = map[string]offload.Flow{}
	}
	return s
}

func fakeKey(f offload.Flow) string {
	return fmt.Sprintf("%d/%d/%s", f.Table, f.Priority, ovsdpdk.NormalizeMatch(f.Match))
}

func (s *fakeSwitch) DumpFlows(_ context.Context, bridge string, cookie, mask uint64, _ bool) ([]ovsdpdk.InstalledFlow, error) {
	tbl, ok := s.bridges[bridge]
	if !ok {
		return nil, fmt.Errorf("%s is not a bridge", bridge)
	}
	var out []ovsdpdk.InstalledFlow
	for _, f := range tbl {
		if f.Cookie&mask == cookie&mask {
			out = append(out, ovsdpdk.InstalledFlow{Flow: f})
		}
	}
	return out, nil
}

func (s *fakeSwitch) Bundle(_ context.Context, bridge string, mods []ovsdpdk.FlowMod) error {
	tbl, ok := s.bridges[bridge]
	if !ok {
		return fmt.Errorf("%s is not a bridge", bridge)
	}
	next := map[string]offload.Flow{}
	for k, v := range tbl {
		next[k] = v
	}
	for _, m := range mods {
		if s.failOn != "" && strings.Contains(m.Flow.Actions, s.failOn) {
			return &ovsdpdk.BundleError{Bridge: bridge, Err: errors.New("OFPBAC_BAD_OUT_GROUP")}
		}
		k := fakeKey(m.Flow)
		switch m.Op {
		case ovsdpdk.FlowAdd:
			next[k] = m.Flow
		case ovsdpdk.FlowModify:
			if h, ok := next[k]; ok {
				h.Actions = m.Flow.Actions
				next[k] = h
			}
		case ovsdpdk.FlowDelete:
			if h, ok := next[k]; ok && h.Cookie == m.Flow.Cookie {
				delete(next, k)
			}
		}
	}
	s.bridges[bridge] = next
	s.bundles++
	return nil
}

func (s *fakeSwitch) flows(bridge string) []string {
	var out []string
	for _, f := range s.bridges[bridge] {
		out = append(out, f.String())
	}
	slices.Sort(out)
	return out
}

func TestFlowsSyncFake(t *testing.T) {
	sw := newFakeSwitch("br-int", "br-tun")
	foreign := offload.Flow{Bridge: "br-int", Table: 0, Priority: 1, Cookie: 0x1234, Match: "ip", Actions: "NORMAL"}
	// A foreign flow even with the same key as an offlane flow we later delete.
	sw.bridges["br-int"][fakeKey(foreign)] = foreign
	f := ovsdpdk.NewFlows(sw, ovsdpdk.FlowsOptions{})
	ctx := context.Background()
	c := offload.CookieFor(offload.KindPort, "p1")
	want := []offload.Flow{
		{Bridge: "br-int", Table: 0, Priority: 100, Cookie: c, Match: "in_port=1", Actions: "goto_table:10"},
		{Bridge: "br-int", Table: 10, Priority: 90, Cookie: c, Match: "arp,in_port=1", Actions: "goto_table:30"},
		{Bridge: "br-tun", Table: 1, Priority: 1, Cookie: c, Match: "dl_vlan=1", Actions: "drop"},
	}
	res, err := f.Sync(ctx, []string{"br-int", "br-tun"}, want)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changes() != 3 || sw.bundles != 2 {
		t.Fatalf("first sync: %d changes in %d bundles, want 3 in 2", res.Changes(), sw.bundles)
	}
	// Again: nothing to do, no bundle.
	res, err = f.Sync(ctx, []string{"br-int", "br-tun"}, want)
	if err != nil || res.Changes() != 0 || sw.bundles != 2 {
		t.Fatalf("second sync: %v, %d changes, %d bundles", err, res.Changes(), sw.bundles)
	}
	// Drop br-tun's flow and change one on br-int.
	want2 := slices.Clone(want[:2])
	want2[1].Actions = "drop"
	if _, err := f.Sync(ctx, []string{"br-int", "br-tun"}, want2); err != nil {
		t.Fatal(err)
	}
	if got := sw.flows("br-tun"); len(got) != 0 {
		t.Fatalf("br-tun still has %v", got)
	}
	wantInt := []string{foreign.String(), want2[0].String(), want2[1].String()}
	slices.Sort(wantInt)
	if got := sw.flows("br-int"); !slices.Equal(got, wantInt) {
		t.Fatalf("br-int:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantInt, "\n"))
	}

	// Refused before anything is sent.
	before := sw.bundles
	for name, bad := range map[string][]offload.Flow{
		"no marker":   {{Bridge: "br-int", Table: 0, Priority: 1, Cookie: 0x5, Match: "ip", Actions: "drop"}},
		"not covered": {{Bridge: "br-ex", Table: 0, Priority: 1, Cookie: c, Match: "ip", Actions: "drop"}},
		"duplicate": {{Bridge: "br-int", Table: 0, Priority: 1, Cookie: c, Match: "ip", Actions: "drop"},
			{Bridge: "br-int", Table: 0, Priority: 1, Cookie: c, Match: "ip", Actions: "output:1"}},
		"no actions": {{Bridge: "br-int", Table: 0, Priority: 1, Cookie: c, Match: "ip"}},
		"newline":    {{Bridge: "br-int", Table: 0, Priority: 1, Cookie: c, Match: "ip", Actions: "drop\nadd table=0,actions=NORMAL"}},
	} {
		if _, err := f.Sync(ctx, []string{"br-int", "br-tun"}, bad); err == nil || !strings.Contains(err.Error(), "nothing sent") {
			t.Errorf("%s: error %v, want a refusal", name, err)
		}
	}
	if sw.bundles != before {
		t.Fatalf("a refused sync sent %d bundles", sw.bundles-before)
	}

	// A bundle the switch refuses leaves the bridge as it was and names it.
	sw.failOn = "group:99"
	bad := append(slices.Clone(want2), offload.Flow{Bridge: "br-int", Table: 5, Priority: 1, Cookie: c, Match: "ip", Actions: "group:99"})
	_, err = f.Sync(ctx, []string{"br-int", "br-tun"}, bad)
	if !errors.Is(err, ovsdpdk.ErrBundle) || !strings.Contains(err.Error(), "br-int") {
		t.Fatalf("error %v, want a bundle error naming br-int", err)
	}
	if got := sw.flows("br-int"); !slices.Equal(got, wantInt) {
		t.Fatalf("a failed bundle changed br-int:\n%s", strings.Join(got, "\n"))
	}
}

func TestFlowsUpdateFake(t *testing.T) {
	sw := newFakeSwitch("br-int", "br-tun")
	f := ovsdpdk.NewFlows(sw, ovsdpdk.FlowsOptions{})
	ctx := context.Background()
	c1, c2 := offload.CookieFor(offload.KindPort, "p1"), offload.CookieFor(offload.KindPort, "p2")
	a := offload.Flow{Bridge: "br-int", Table: 0, Priority: 100, Cookie: c1, Match: "in_port=1", Actions: "goto_table:10"}
	b := offload.Flow{Bridge: "br-tun", Table: 0, Priority: 100, Cookie: c1, Match: "in_port=1", Actions: "drop"}
	if err := f.Update(ctx, &offload.Delta{Add: []offload.Flow{a, b}}); err != nil {
		t.Fatal(err)
	}
	if sw.bundles != 2 {
		t.Fatalf("%d bundles for two bridges", sw.bundles)
	}
	a2 := a
	a2.Cookie, a2.Actions = c2, "goto_table:20"
	n := offload.Flow{Bridge: "br-int", Table: 0, Priority: 100, Cookie: c2, Match: "in_port=2", Actions: "goto_table:10"}
	if err := f.Update(ctx, &offload.Delta{Add: []offload.Flow{n}, Modify: []offload.Flow{a2}, Delete: []offload.Flow{b}}); err != nil {
		t.Fatal(err)
	}
	want := []string{a2.String(), n.String()}
	slices.Sort(want)
	if got := sw.flows("br-int"); !slices.Equal(got, want) {
		t.Fatalf("br-int after update:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := sw.flows("br-tun"); len(got) != 0 {
		t.Fatalf("br-tun: %v", got)
	}
	if sw.bundles != 4 {
		t.Fatalf("%d bundles, want 4 (one per bridge per update)", sw.bundles)
	}
	if err := f.Update(ctx, &offload.Delta{}); err != nil || sw.bundles != 4 {
		t.Fatalf("empty delta: %v, %d bundles", err, sw.bundles)
	}
	if err := f.Update(ctx, &offload.Delta{Add: []offload.Flow{{Bridge: "br-int", Cookie: 7, Actions: "drop"}}}); err == nil || sw.bundles != 4 {
		t.Fatalf("a flow without the marker: %v, %d bundles", err, sw.bundles)
	}
}

func TestFlowModLines(t *testing.T) {
	fl := offload.Flow{Bridge: "br", Table: 10, Priority: 70, Cookie: 0x6f6c000000000abc, Match: "ip,in_port=3", Actions: "ct(table=20,zone=NXM_NX_REG6[0..15])"}
	got := modLines([]ovsdpdk.FlowMod{{Op: ovsdpdk.FlowAdd, Flow: fl}, {Op: ovsdpdk.FlowModify, Flow: fl}, {Op: ovsdpdk.FlowDelete, Flow: fl}})
	want := []string{
		"add table=10,priority=70,cookie=0x6f6c000000000abc,ip,in_port=3,actions=ct(table=20,zone=NXM_NX_REG6[0..15])",
		"modify_strict table=10,priority=70,ip,in_port=3,actions=ct(table=20,zone=NXM_NX_REG6[0..15])",
		"delete_strict table=10,priority=70,cookie=0x6f6c000000000abc/-1,ip,in_port=3",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The add line is the compiler's own rendering of the flow.
	if got[0] != "add "+fl.String() {
		t.Fatalf("add line %q differs from %q", got[0], "add "+fl.String())
	}
}

// FuzzParseFlowDump: any input parses or fails cleanly; a parsed flow printed back as a
// dump line parses to the same flow, and the normalisers are idempotent on its text.
func FuzzParseFlowDump(f *testing.F) {
	for _, p := range []string{"testdata/openflow/dump-stats.txt", "testdata/openflow/dump-nostats.txt", "testdata/openflow/dump-attrs.txt"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
		for _, l := range strings.Split(string(b), "\n") {
			f.Add(l)
		}
	}
	f.Add(" table=4, send_flow_rem actions=drop")
	f.Add(" actions=drop")
	f.Fuzz(func(t *testing.T, in string) {
		flows, err := ovsdpdk.ParseFlowDump(strings.NewReader(in), "br")
		if err != nil {
			return
		}
		for _, fl := range flows {
			line := fl.DumpLine()
			again, err := ovsdpdk.ParseFlowLine(line)
			if err != nil {
				t.Fatalf("%q parsed, but its dump line %q does not: %v", in, line, err)
			}
			again.Bridge = fl.Bridge
			if again.Flow != fl.Flow || again.Packets != fl.Packets || again.Bytes != fl.Bytes ||
				again.IdleTimeout != fl.IdleTimeout || again.HardTimeout != fl.HardTimeout ||
				again.Importance != fl.Importance || !slices.Equal(again.Flags, fl.Flags) {
				t.Fatalf("round trip of %q via %q:\n%+v\n%+v", in, line, fl, again)
			}
			m := ovsdpdk.NormalizeMatch(fl.Match)
			if m2 := ovsdpdk.NormalizeMatch(m); m2 != m {
				t.Fatalf("NormalizeMatch not idempotent: %q → %q → %q", fl.Match, m, m2)
			}
			a := ovsdpdk.NormalizeActions(fl.Actions, fl.Match)
			if a2 := ovsdpdk.NormalizeActions(a, m); a2 != a {
				t.Fatalf("NormalizeActions not idempotent: %q → %q → %q", fl.Actions, a, a2)
			}
		}
	})
}

// FuzzNormalizeMatch: normalising is idempotent for any text, and a flow compares equal
// to itself.
func FuzzNormalizeMatch(f *testing.F) {
	for _, s := range []string{"tcp,tp_dst=22", "dl_vlan=100,dl_vlan_pcp=3", "ct_state=+trk-new", "ip,nw_src=10.0.0.0/255.0.255.0",
		"ipv6,ipv6_src=fe80::1/64", "vlan_tci=0x1000/0x1000", "reg0=0x1/0x1", "in_port=LOCAL,dl_src=FA:16:3E:00:00:01", "a=(b,c),d"} {
		f.Add(s, "output:1")
	}
	f.Fuzz(func(t *testing.T, m, a string) {
		n := ovsdpdk.NormalizeMatch(m)
		if n2 := ovsdpdk.NormalizeMatch(n); n2 != n {
			t.Fatalf("NormalizeMatch(%q) = %q, again %q", m, n, n2)
		}
		na := ovsdpdk.NormalizeActions(a, m)
		if na2 := ovsdpdk.NormalizeActions(na, n); na2 != na {
			t.Fatalf("NormalizeActions(%q) = %q, again %q", a, na, na2)
		}
		fl := offload.Flow{Bridge: "br", Table: 1, Priority: 2, Cookie: offload.CookieMarker, Match: m, Actions: a}
		if strings.ContainsAny(m+a, "\n") {
			return
		}
		if mods := ovsdpdk.DiffFlows([]offload.Flow{fl}, []offload.Flow{fl}); len(mods) != 0 {
			t.Fatalf("a flow differs from itself: %v", modLines(mods))
		}
	})
}

// TestFlowLayoutFrom: the compiler's layout read from an OVSDB snapshot: bridges by
// role, ofports of layout ports, tunnel types and local IP, tenant ports by iface-id
// (only numbered ones, only on the integration bridge: offlane's and, as os-vif plugs
// them, foreign interfaces with an iface-id).
func TestFlowLayoutFrom(t *testing.T) {
	ofp := func(n int) *int { return &n }
	st := &ovsdpdk.State{
		OVS:        &vswitchd.OpenvSwitch{ExternalIDs: map[string]string{ovsdpdk.KeyTunnelLocalIP: "192.0.2.1"}},
		Bridges:    map[string]*vswitchd.Bridge{},
		Ports:      map[string]*vswitchd.Port{},
		Interfaces: map[string]*vswitchd.Interface{},
	}
	node := func(role string, kv ...string) map[string]string {
		m := map[string]string{ovsdpdk.KeyOwner: ovsdpdk.OwnerNode, ovsdpdk.KeyRole: role}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	bridge := func(name string, eids map[string]string, ports ...*vswitchd.Interface) {
		br := &vswitchd.Bridge{UUID: "b-" + name, Name: name, DatapathType: "netdev", ExternalIDs: eids}
		for _, i := range ports {
			i.UUID = "i-" + i.Name
			st.Interfaces[i.UUID] = i
			p := &vswitchd.Port{UUID: "p-" + i.Name, Name: i.Name, Interfaces: []string{i.UUID}, ExternalIDs: i.ExternalIDs}
			st.Ports[p.UUID] = p
			br.Ports = append(br.Ports, p.UUID)
		}
		st.Bridges[name] = br
	}
	tenant := func(name, id string, of *int) *vswitchd.Interface {
		return &vswitchd.Interface{Name: name, Ofport: of, ExternalIDs: map[string]string{ovsdpdk.KeyOwner: ovsdpdk.OwnerPort, ovsdpdk.KeyIfaceID: id}}
	}
	bridge("br-int", node(ovsdpdk.RoleIntegration),
		&vswitchd.Interface{Name: "patch-tun", Type: "patch", Ofport: ofp(2), ExternalIDs: node(ovsdpdk.RolePatch)},
		&vswitchd.Interface{Name: "int-br-phys1", Type: "patch", Ofport: ofp(1), ExternalIDs: node(ovsdpdk.RolePatch)},
		tenant("vm1", "port-1", ofp(7)),
		tenant("vm2", "port-2", ofp(-1)), // OVS could not add it
		tenant("vm3", "port-3", nil),     // not numbered yet
		&vswitchd.Interface{Name: "osvif", Ofport: ofp(9), ExternalIDs: map[string]string{ovsdpdk.KeyIfaceID: "port-9"}},
		&vswitchd.Interface{Name: "foreign", Ofport: ofp(10)}) // no iface-id: not a tenant port
	bridge("br-tun", node(ovsdpdk.RoleTunnel),
		&vswitchd.Interface{Name: "patch-int", Type: "patch", Ofport: ofp(1), ExternalIDs: node(ovsdpdk.RolePatch)},
		&vswitchd.Interface{Name: "tun-vxlan", Type: "vxlan", Ofport: ofp(2), ExternalIDs: node(ovsdpdk.RoleTunnelPort)},
		&vswitchd.Interface{Name: "tun-geneve", Type: "geneve", Ofport: ofp(3), ExternalIDs: node(ovsdpdk.RoleTunnelPort)})
	bridge("br-phys1", node(ovsdpdk.RolePhysnet, ovsdpdk.KeyPhysnet, "physnet1"),
		&vswitchd.Interface{Name: "phy-br-phys1", Type: "patch", Ofport: ofp(1), ExternalIDs: node(ovsdpdk.RolePatch)},
		&vswitchd.Interface{Name: "eth1", Ofport: ofp(2), ExternalIDs: node(ovsdpdk.RoleUplink, ovsdpdk.KeyPhysnet, "physnet1")},
		tenant("stray", "port-8", ofp(3))) // a tenant port on another bridge is not the compiler's
	bridge("br-other", map[string]string{}, &vswitchd.Interface{Name: "x", Ofport: ofp(4)})

	l, ports, err := ovsdpdk.FlowLayoutFrom(st)
	if err != nil {
		t.Fatal(err)
	}
	want := offload.NodeLayout{Datapath: "netdev", IntegrationBridge: "br-int", TunnelBridge: "br-tun",
		TunnelLocalIP: netip.MustParseAddr("192.0.2.1"), TunnelTypes: []string{"geneve", "vxlan"},
		PhysnetBridges: map[string]string{"physnet1": "br-phys1"}, PhysnetUplinks: map[string]string{"physnet1": "eth1"},
		OFPorts: map[string]int{"patch-tun": 2, "int-br-phys1": 1, "patch-int": 1, "tun-vxlan": 2, "tun-geneve": 3, "phy-br-phys1": 1, "eth1": 2}}
	if !reflect.DeepEqual(l, want) {
		t.Fatalf("layout:\n%+v\nwant:\n%+v", l, want)
	}
	if !reflect.DeepEqual(ports, map[string]int{"port-1": 7, "port-9": 9}) {
		t.Fatalf("tenant ofports %v, want port-1: 7 and the os-vif plugged port-9: 9", ports)
	}
	// The compiler accepts it.
	if _, err := offload.NewCompiler(l); err != nil {
		t.Fatalf("the compiler refuses the layout: %v", err)
	}

	delete(st.Bridges, "br-int")
	if _, _, err := ovsdpdk.FlowLayoutFrom(st); err == nil || !strings.Contains(err.Error(), "offlane node apply") {
		t.Fatalf("without an integration bridge: %v", err)
	}
}
