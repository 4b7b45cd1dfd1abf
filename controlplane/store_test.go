package controlplane_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	"github.com/offlane/offlane/controlplane"
)

func openStore(t *testing.T, path string, opt controlplane.BoltOptions) controlplane.Store {
	t.Helper()
	st, err := controlplane.OpenBolt(t.Context(), path, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func put(t *testing.T, st controlplane.Store, kind, id, val string, ix ...controlplane.IndexEntry) int64 {
	t.Helper()
	rev, err := st.Update(t.Context(), func(tx controlplane.Tx) error { return tx.Put(kind, id, []byte(val), ix...) })
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func idsBy(t *testing.T, st controlplane.Store, kind, index, value string) []string {
	t.Helper()
	var out []string
	err := st.View(t.Context(), func(tx controlplane.ReadTx) error {
		return tx.ListBy(kind, index, value, func(id string, _ []byte) error { out = append(out, id); return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStoreRevisionsIndexesClaims(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "s.db"), controlplane.BoltOptions{})
	ix := func(v string) controlplane.IndexEntry { return controlplane.IndexEntry{Name: "net", Value: v} }
	if r := put(t, st, "ports", "p1", "a", ix("n1")); r != 1 {
		t.Fatalf("first revision %d", r)
	}
	if r := put(t, st, "ports", "p2", "b", ix("n1")); r != 2 {
		t.Fatalf("second revision %d", r)
	}
	put(t, st, "ports", "p3", "c", ix("n2"))
	if got := idsBy(t, st, "ports", "net", "n1"); !slices.Equal(got, []string{"p1", "p2"}) {
		t.Fatalf("index n1: %v", got)
	}
	// Replacing moves the index entry.
	put(t, st, "ports", "p1", "a2", ix("n2"))
	if got := idsBy(t, st, "ports", "net", "n2"); !slices.Equal(got, []string{"p1", "p3"}) {
		t.Fatalf("index n2 after move: %v", got)
	}
	// A read-only update does not bump the revision.
	r, err := st.Update(t.Context(), func(tx controlplane.Tx) error { _, err := tx.Get("ports", "p1"); return err })
	if err != nil || r != 4 || st.Revision() != 4 {
		t.Fatalf("read-only update: rev %d err %v, store %d", r, err, st.Revision())
	}
	// Claims.
	_, err = st.Update(t.Context(), func(tx controlplane.Tx) error {
		if err := tx.Claim("ips", "s/1", "p1"); err != nil {
			return err
		}
		if err := tx.Claim("ips", "s/1", "p1"); err != nil {
			return fmt.Errorf("same owner again: %w", err)
		}
		if err := tx.Claim("ips", "s/1", "p2"); !errors.Is(err, controlplane.ErrClaimed) {
			return fmt.Errorf("other owner: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Delete drops the object and its index entries.
	_, err = st.Update(t.Context(), func(tx controlplane.Tx) error { return tx.Delete("ports", "p3") })
	if err != nil {
		t.Fatal(err)
	}
	if got := idsBy(t, st, "ports", "net", "n2"); !slices.Equal(got, []string{"p1"}) {
		t.Fatalf("index after delete: %v", got)
	}
	_, err = st.Update(t.Context(), func(tx controlplane.Tx) error { return tx.Delete("ports", "p3") })
	if !errors.Is(err, controlplane.ErrNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
}

// TestStoreFailedUpdateWritesNothing: failing and panicking updates, batched with
// successful ones, leave no object, index entry, claim, event or revision behind.
func TestStoreFailedUpdateWritesNothing(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "s.db"), controlplane.BoltOptions{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var revs []int64
	boom := errors.New("validation failed")
	for i := range 300 {
		wg.Go(func() {
			id := fmt.Sprint("o", i)
			rev, err := st.Update(t.Context(), func(tx controlplane.Tx) error {
				if err := tx.Put("things", id, []byte(id), controlplane.IndexEntry{Name: "parity", Value: fmt.Sprint(i % 2)}); err != nil {
					return err
				}
				if err := tx.Claim("names", id, id); err != nil {
					return err
				}
				switch i % 3 {
				case 1:
					return boom
				case 2:
					panic("bug in a handler")
				}
				return nil
			})
			mu.Lock()
			defer mu.Unlock()
			switch i % 3 {
			case 0:
				if err != nil {
					t.Errorf("update %d: %v", i, err)
				}
				revs = append(revs, rev)
			case 1:
				if !errors.Is(err, boom) {
					t.Errorf("update %d: want the fn's error, got %v", i, err)
				}
			case 2:
				if err == nil {
					t.Errorf("update %d: panic not reported", i)
				}
			}
		})
	}
	wg.Wait()
	// Successful updates got the revisions 1..100, each once.
	slices.Sort(revs)
	for i, r := range revs {
		if r != int64(i+1) {
			t.Fatalf("revisions not contiguous: %v", revs)
		}
	}
	if st.Revision() != 100 {
		t.Fatalf("store revision %d, want 100", st.Revision())
	}
	err := st.View(t.Context(), func(tx controlplane.ReadTx) error {
		n := 0
		if err := tx.List("things", func(id string, _ []byte) error { n++; return nil }); err != nil {
			return err
		}
		c0, _ := tx.Count("things", "parity", "0")
		c1, _ := tx.Count("things", "parity", "1")
		claims := 0
		_ = tx.Claims("names", "", "", func(string, string) bool { claims++; return true })
		if n != 100 || c0+c1 != 100 || claims != 100 {
			return fmt.Errorf("objects %d, index entries %d, claims %d; want 100 each", n, c0+c1, claims)
		}
		for i := 1; i < 300; i += 3 {
			if _, err := tx.Get("things", fmt.Sprint("o", i)); !errors.Is(err, controlplane.ErrNotFound) {
				return fmt.Errorf("failed update o%d left an object: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The event log has exactly the 100 creates.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w, err := st.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		ev := <-w.C
		if ev.Revision != int64(i+1) || ev.Type != controlplane.EventCreated {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
	select {
	case ev := <-w.C:
		t.Fatalf("extra event %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestStoreWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := controlplane.OpenBolt(t.Context(), path, controlplane.BoltOptions{EventRetention: 20})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	put(t, st, "nets", "a", "1")
	w, err := st.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	put(t, st, "nets", "a", "2")
	_, err = st.Update(ctx, func(tx controlplane.Tx) error {
		if err := tx.Put("nets", "b", []byte("x")); err != nil {
			return err
		}
		return tx.Delete("nets", "a")
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 4 {
		select {
		case ev := <-w.C:
			got = append(got, fmt.Sprintf("%d %s %s/%s=%s", ev.Revision, ev.Type, ev.Kind, ev.ID, ev.Value))
		case <-time.After(5 * time.Second):
			t.Fatalf("watch stalled after %v", got)
		}
	}
	want := []string{"1 created nets/a=1", "2 updated nets/a=2", "3 created nets/b=x", "3 deleted nets/a=2"}
	if !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	// Resume from revision 2 after a reopen: the log survived.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	<-w.C // closed
	if !errors.Is(w.Err(), controlplane.ErrClosed) {
		t.Fatalf("watch end reason %v", w.Err())
	}
	st = openStore(t, path, controlplane.BoltOptions{EventRetention: 20})
	if st.Revision() != 3 {
		t.Fatalf("revision after reopen %d", st.Revision())
	}
	w, err = st.Watch(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-w.C; ev.Revision != 3 || ev.ID != "b" {
		t.Fatalf("resumed event %+v", ev)
	}
	// Past the retention window, old revisions are compacted away.
	for i := range 40 {
		put(t, st, "nets", "c", fmt.Sprint(i))
	}
	if _, err := st.Watch(ctx, 1); !errors.Is(err, controlplane.ErrCompacted) {
		t.Fatalf("watch from a compacted revision: %v", err)
	}
	if _, err := st.Watch(ctx, st.Revision()-5); err != nil {
		t.Fatalf("watch inside the window: %v", err)
	}
	cancel()
}

// TestAPIFailedWriteWritesNothing: API errors leave the store revision untouched.
func TestAPIFailedWriteWritesNothing(t *testing.T) {
	e := newEnv(t, controlplane.AuthToken)
	c := e.client("tok-a")
	n := createNet(t, c, networks.CreateOpts{Name: "n"})
	createSubnet(t, c, n.ID, "10.0.0.0/29") // .1 gateway, .2 DHCP port, .3-.6
	for range 4 {
		createPort(t, c, ports.CreateOpts{NetworkID: n.ID})
	}
	rev := e.srv.Store().Revision()
	// The port create gets as far as claiming a MAC before IPAM fails.
	_, err := ports.Create(t.Context(), c, ports.CreateOpts{NetworkID: n.ID}).Extract()
	wantErr(t, err, 409, "IpAddressGenerationFailure")
	_, err = ports.Create(t.Context(), c, ports.CreateOpts{NetworkID: n.ID, MACAddress: "fa:16:3e:12:34:56", FixedIPs: []ports.IP{{IPAddress: "10.0.0.9"}}}).Extract()
	wantErr(t, err, 400, "InvalidIpForNetwork")
	if r := e.srv.Store().Revision(); r != rev {
		t.Fatalf("revision moved from %d to %d on failed writes", rev, r)
	}
	// The MAC the failed create claimed is still free (once an address is).
	l := listPorts(t, c, nil)
	i := slices.IndexFunc(l, func(p portFull) bool { return p.DeviceOwner != controlplane.OwnerDHCP })
	if err := ports.Delete(t.Context(), c, l[i].ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	createPort(t, c, ports.CreateOpts{NetworkID: n.ID, MACAddress: "fa:16:3e:12:34:56"})
}

// TestStoreIndexSnapshots: a read transaction keeps seeing the index entries of its
// snapshot while later updates move, add and delete entries (and the in-memory index
// collects garbage); new readers and a reopened store see the latest entries.
func TestStoreIndexSnapshots(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := controlplane.OpenBolt(t.Context(), path, controlplane.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ix := func(v string) controlplane.IndexEntry { return controlplane.IndexEntry{Name: "net", Value: v} }
	put(t, st, "ports", "p1", "v1", ix("n1"))
	put(t, st, "ports", "gone", "v", ix("n1"))
	inView, release, done := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		done <- st.View(t.Context(), func(tx controlplane.ReadTx) error {
			close(inView)
			<-release
			var got []string
			if err := tx.ListBy("ports", "net", "n1", func(id string, v []byte) error {
				got = append(got, id+"="+string(v))
				return nil
			}); err != nil {
				return err
			}
			if c, _ := tx.Count("ports", "net", "n2"); c != 0 || !slices.Equal(got, []string{"gone=v", "p1=v1"}) {
				return fmt.Errorf("old snapshot sees n1=%v, %d in n2", got, c)
			}
			return nil
		})
	}()
	<-inView
	put(t, st, "ports", "p1", "v2", ix("n2"))
	put(t, st, "ports", "p2", "v", ix("n1"))
	if _, err := st.Update(t.Context(), func(tx controlplane.Tx) error { return tx.Delete("ports", "gone") }); err != nil {
		t.Fatal(err)
	}
	// Enough churn to run the index gc (16 writers, so commits are shared).
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for j := range 320 {
				if _, err := st.Update(t.Context(), func(tx controlplane.Tx) error {
					return tx.Put("churn", fmt.Sprint("c", w), []byte("x"), ix(fmt.Sprint(w, "-", j)))
				}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	check := func(st controlplane.Store) {
		t.Helper()
		if got := idsBy(t, st, "ports", "net", "n1"); !slices.Equal(got, []string{"p2"}) {
			t.Fatalf("n1 now: %v", got)
		}
		if got := idsBy(t, st, "ports", "net", "n2"); !slices.Equal(got, []string{"p1"}) {
			t.Fatalf("n2 now: %v", got)
		}
		for w := range 16 {
			if got := idsBy(t, st, "churn", "net", fmt.Sprint(w, "-319")); !slices.Equal(got, []string{fmt.Sprint("c", w)}) {
				t.Fatalf("churn index of writer %d: %v", w, got)
			}
			if got := idsBy(t, st, "churn", "net", fmt.Sprint(w, "-318")); len(got) != 0 {
				t.Fatalf("stale churn entry: %v", got)
			}
		}
	}
	check(st)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	check(openStore(t, path, controlplane.BoltOptions{}))
}
