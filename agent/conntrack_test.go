package agent

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/offlane/offlane/agent/metrics"
	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
)

// fakeConntrack holds what it was asked and fails each flush in fail as many times as
// given.
type fakeConntrack struct {
	calls [][]offload.CTFlush
	fail  map[string]int // by flush String
}

func (f *fakeConntrack) FlushConntrack(_ context.Context, fs []offload.CTFlush) (ovsdpdk.ConntrackFlushResult, error) {
	f.calls = append(f.calls, slices.Clone(fs))
	var res ovsdpdk.ConntrackFlushResult
	var errs []error
	for _, fl := range fs {
		if f.fail[fl.String()] > 0 {
			f.fail[fl.String()]--
			res.Failed = append(res.Failed, fl)
			errs = append(errs, errors.New("ovs-vswitchd busy: "+fl.String()))
			continue
		}
		res.Done++
	}
	return res, errors.Join(errs...)
}

func ctIR(t *testing.T, icmp bool) *offload.IR {
	t.Helper()
	str := func(s string) *string { return &s }
	g := controlplane.SecurityGroup{ID: "sg", TenantID: "t", Stateful: true, Rules: []controlplane.SecurityGroupRule{
		{ID: "tcp", SecurityGroupID: "sg", Direction: "ingress", EtherType: "IPv4", Protocol: str("tcp")}}}
	if icmp {
		g.Rules = append(g.Rules, controlplane.SecurityGroupRule{ID: "icmp", SecurityGroupID: "sg", Direction: "ingress", EtherType: "IPv4", Protocol: str("icmp")})
	}
	port := func(id, ip string) controlplane.Port {
		return controlplane.Port{ID: id, NetworkID: "net", HostID: "h1", MACAddress: "fa:16:3e:00:00:0" + id[1:], AdminStateUp: true,
			PortSecurityEnabled: true, VNICType: controlplane.VNICNormal, SecurityGroups: []string{"sg"},
			FixedIPs: []controlplane.FixedIP{{IPAddress: ip}}}
	}
	ir, err := offload.Build(offload.BuildInput{Host: "h1", OFPorts: map[string]int{"p1": 5, "p2": 6},
		LocalVLANs: map[string]uint16{"net": 3},
		Snapshot: offload.Snapshot{
			Networks:       []controlplane.Network{{ID: "net", TenantID: "t", AdminStateUp: true, NetworkType: "vxlan", SegmentationID: func() *int { v := 7; return &v }(), MTU: 1450, PortSecurityEnabled: true}},
			Ports:          []controlplane.Port{port("p1", "10.0.0.1"), port("p2", "10.0.0.2")},
			SecurityGroups: []controlplane.SecurityGroup{g},
		}})
	if err != nil {
		t.Fatal(err)
	}
	return ir
}

// The agent flushes what the change from its last reconciled IR removed, retries a
// failed flush at the next reconciles (at most maxFlushAttempts in all), and counts.
func TestFlushConntrack(t *testing.T) {
	with, without := ctIR(t, true), ctIR(t, false)
	want := offload.ConntrackFlushes(with, without)
	if len(want) != 2 { // p1 and p2: ICMP in
		t.Fatalf("flushes %v", want)
	}
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, nil, metrics.Options{NoRuntimeCollectors: true})
	ct := &fakeConntrack{fail: map[string]int{want[1].String(): 5}}
	a := &Agent{d: Deps{Conntrack: ct, Observer: m}, log: zaptest.NewLogger(t)}

	a.flushConntrack(context.Background(), with) // first reconcile: nothing to compare with
	if len(ct.calls) != 0 {
		t.Fatalf("flushed with no previous IR: %v", ct.calls)
	}
	a.last.IR = with
	a.flushConntrack(context.Background(), without)
	a.last.IR = without
	if len(ct.calls) != 1 || !slices.Equal(ct.calls[0], want) {
		t.Fatalf("calls %v, want %v", ct.calls, want)
	}
	// nothing changed since: only the failed flush, until it has been tried 3 times
	for range 4 {
		a.flushConntrack(context.Background(), without)
	}
	if len(ct.calls) != maxFlushAttempts {
		t.Fatalf("%d calls, want %d (one, then %d retries)", len(ct.calls), maxFlushAttempts, maxFlushAttempts-1)
	}
	for _, c := range ct.calls[1:] {
		if !slices.Equal(c, want[1:]) {
			t.Errorf("retry %v, want %v", c, want[1:])
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`# HELP offlane_conntrack_flushes_total Conntrack flushes applied after security group changes: one per removed permission and port address, cutting the connections it had allowed (failures count in offlane_errors_total{kind="conntrack"}).
# TYPE offlane_conntrack_flushes_total counter
offlane_conntrack_flushes_total 1
# HELP offlane_errors_total Errors the agent met, by kind (reconcile, ovsdb, openflow, store, watch, binding, ...).
# TYPE offlane_errors_total counter
offlane_errors_total{kind="conntrack"} 3
`), "offlane_conntrack_flushes_total", "offlane_errors_total"); err != nil {
		t.Error(err)
	}
	// the rule comes back and goes again: flushed again, the failure forgotten
	delete(ct.fail, want[1].String())
	a.flushConntrack(context.Background(), with)
	a.last.IR = with
	a.flushConntrack(context.Background(), without)
	if last := ct.calls[len(ct.calls)-1]; !slices.Equal(last, want) {
		t.Errorf("after the rule came back and went: %v, want %v", last, want)
	}
	// without a Conntrack: nothing
	b := &Agent{log: zaptest.NewLogger(t)}
	b.last.IR = with
	b.flushConntrack(context.Background(), without)
}
