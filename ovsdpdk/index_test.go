package ovsdpdk_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/ovsdpdk/vswitchd"
	"github.com/offlane/offlane/test/lab"
)

// TestTenantIndexFollowsCache: random tenant port adds and deletes (Ports API, on the
// integration bridge and another), and OpenFlow numbers and iface-ids changed behind the
// client's back (another OVSDB client, as ovs-vswitchd and os-vif write them), on an
// in-memory OVSDB. After each step, what the client's event-kept index answers
// (FlowLayout's tenant ports, AttachedIDs) must come to equal what a full pass over the
// cache gives (FlowLayoutFrom on a snapshot, Attached).
func TestTenantIndexFollowsCache(t *testing.T) {
	ep := lab.MemOVSDB(t)
	c := memClient2(t, ep)
	ctx := ctxT(t, 2*time.Minute)
	if _, err := c.ApplyNode(ctx, layoutFrom(t, memNodeYAML, nil), ovsdpdk.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	model, err := vswitchd.FullDatabaseModel()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := client.NewOVSDBClient(model, client.WithEndpoint(ep))
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(raw.Close)
	onInt := ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{Bridge: "br-int"})
	onEx := ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{Bridge: "br-ex"})
	rng := rand.New(rand.NewPCG(11, 12))
	ids := func() map[string]struct{} {
		out := map[string]struct{}{}
		for k := range 8 {
			out[fmt.Sprint("port-", k)] = struct{}{}
		}
		return out
	}()
	setIface := func(name string, col string, v any) {
		ops := []ovsdb.Operation{{Op: ovsdb.OperationUpdate, Table: vswitchd.InterfaceTable,
			Where: []ovsdb.Condition{{Column: "name", Function: ovsdb.ConditionEqual, Value: name}}, Row: ovsdb.Row{col: v}}}
		res, err := raw.Transact(ctx, ops...)
		if err == nil {
			_, err = ovsdb.CheckOperationResults(res, ops)
		}
		if err != nil {
			t.Fatalf("set %s %s: %v", name, col, err)
		}
	}
	have := map[string]bool{}
	numbered := 0 // steps that ended with tenant ports numbered on br-int
	for step := range 150 {
		name := fmt.Sprint("tp", rng.IntN(10))
		id := fmt.Sprint("port-", rng.IntN(8))
		switch op := rng.IntN(6); {
		case op <= 1 && !have[name]:
			ps := onInt
			if op == 1 {
				ps = onEx
			}
			if err := ps.PortAdd(ctx, ovsdpdk.Port{Name: name, Type: ovsdpdk.PortInternal, IfaceID: id, MAC: "fa:16:3e:00:00:01"}); err != nil {
				t.Fatalf("step %d: add %s: %v", step, name, err)
			}
			have[name] = true
		case op == 2 && have[name]:
			if err := onInt.PortDel(ctx, name); err != nil {
				t.Fatalf("step %d: del %s: %v", step, name, err)
			}
			delete(have, name)
		case op == 3 && have[name]:
			setIface(name, "ofport", ovsdb.OvsSet{GoSet: []any{1 + rng.IntN(40)}})
		case op == 4 && have[name]:
			setIface(name, "ofport", ovsdb.OvsSet{GoSet: []any{}}) // not numbered (yet)
		case op == 5 && have[name]:
			setIface(name, "external_ids", ovsdb.OvsMap{GoMap: map[any]any{"iface-id": id, "offlane-owner": "port"}})
		}
		var lastGot, lastWant any
		ok := false
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			st, err := c.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wl, wt, werr := ovsdpdk.FlowLayoutFrom(st)
			gl, gt, gerr := c.FlowLayout(ctx)
			att, err := onInt.Attached(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wantAtt := map[string]ovsdpdk.PortStatus{}
			for _, s := range att {
				if _, ok := ids[s.IfaceID]; ok {
					wantAtt[s.IfaceID] = s
				}
			}
			gotAtt, err := onInt.AttachedIDs(ctx, ids)
			if err != nil {
				t.Fatal(err)
			}
			lastGot, lastWant = []any{gl, gt, gerr, gotAtt}, []any{wl, wt, werr, wantAtt}
			if reflect.DeepEqual(lastGot, lastWant) {
				ok = true
				if len(wt) > 0 {
					numbered++
				}
				break
			}
		}
		if !ok {
			t.Fatalf("step %d: the index answers\n%+v\nthe cache\n%+v", step, lastGot, lastWant)
		}
	}
	if numbered < 30 {
		t.Fatalf("only %d of 150 steps had numbered tenant ports: the walk did not exercise the index", numbered)
	}
}

func memClient2(t *testing.T, ep string) *ovsdpdk.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ovsdpdk.Connect(ctx, ovsdpdk.Options{Endpoint: ep})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
