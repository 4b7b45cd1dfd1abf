package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/controlplane"
)

// TestDesiredCacheFollowsStore: random puts and deletes on a real (bbolt) store; the
// cache, loaded once and then fed the store's watch events, equals a fresh LoadState
// after every batch (the objects compared by ID, since the cache does not keep the
// store's order).
func TestDesiredCacheFollowsStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := controlplane.OpenBolt(ctx, filepath.Join(t.TempDir(), "db"), controlplane.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	rng := rand.New(rand.NewPCG(7, 8))
	kinds := []string{controlplane.KindNetwork, controlplane.KindPort, controlplane.KindSubnet, controlplane.KindRouter,
		controlplane.KindFloatingIP, controlplane.KindSecGroup, controlplane.KindQoSPolicy, controlplane.KindAgent, controlplane.KindSecGroupRule}
	value := func(kind, id string, n int) []byte {
		var v any
		switch kind {
		case controlplane.KindPort:
			v = controlplane.Port{ID: id, NetworkID: fmt.Sprint("n", n%3), MACAddress: fmt.Sprintf("fa:16:3e:00:00:%02x", n%256), HostID: "h"}
		case controlplane.KindAgent:
			v = controlplane.Agent{ID: id, Host: id, AgentType: controlplane.AgentTypeOVS}
		default:
			v = map[string]any{"id": id, "name": fmt.Sprint("v", n)}
		}
		b, _ := json.Marshal(v)
		return b
	}
	put := func(n int) {
		if _, err := st.Update(ctx, func(tx controlplane.Tx) error {
			for range 1 + rng.IntN(4) {
				k := kinds[rng.IntN(len(kinds))]
				id := fmt.Sprint(k[:1], rng.IntN(6))
				if rng.IntN(3) == 0 {
					if err := tx.Delete(k, id); err != nil && !strings.Contains(err.Error(), "not found") {
						return err
					}
					continue
				}
				if err := tx.Put(k, id, value(k, id, n)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		put(i)
	}
	a := &Agent{}
	first, err := controlplane.LoadState(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	a.cache.reset(first)
	w, err := st.Watch(ctx, first.Revision)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 40 {
		put(round)
		// take the events up to the store's revision (one transaction's events share
		// its revision: take the ones already sent after that too)
		for done := false; !done; {
			var ev controlplane.Event
			select {
			case ev = <-w.C:
			case <-time.After(20 * time.Millisecond):
				if a.cache.st.Revision >= st.Revision() {
					done = true
				}
				continue
			}
			if _, err := a.cache.apply(ev); err != nil {
				t.Fatal(err)
			}
		}
		want, err := controlplane.LoadState(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		if got := canon(t, a.cache.st); got != canon(t, want) {
			t.Fatalf("round %d: cache\n%s\nstore\n%s", round, got, canon(t, want))
		}
		if !reflect.DeepEqual(len(a.cache.idx[controlplane.KindPort].pos), len(a.cache.st.Ports)) {
			t.Fatalf("round %d: port index has %d entries for %d ports", round, len(a.cache.idx[controlplane.KindPort].pos), len(a.cache.st.Ports))
		}
	}
}

// canon is a state's objects as sorted JSON lines, without the revision.
func canon(t *testing.T, s *controlplane.State) string {
	t.Helper()
	var lines []string
	add := func(kind string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, kind+" "+string(b))
	}
	for _, v := range s.Networks {
		add("net", v)
	}
	for _, v := range s.Subnets {
		add("subnet", v)
	}
	for _, v := range s.Ports {
		add("port", v)
	}
	for _, v := range s.Routers {
		add("router", v)
	}
	for _, v := range s.FloatingIPs {
		add("fip", v)
	}
	for _, v := range s.SecurityGroups {
		add("sg", v)
	}
	for _, v := range s.QoSPolicies {
		add("qos", v)
	}
	for _, v := range s.Agents {
		add("agent", v)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
