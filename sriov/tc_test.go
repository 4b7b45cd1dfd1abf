package sriov

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/offlane/offlane/offload"
)

// fakeTC is a stateful TCKernel: filters per device, flower's rules (one protocol per
// priority, no two filters with the same key at a priority), and devices without
// offload that refuse skip_sw.
type fakeTC struct {
	devs      map[string][]TCFilter // nil slice: no ingress hook
	noOffload map[string]bool
	handle    uint32
	calls     []string
}

func newFakeTC(devs ...string) *fakeTC {
	f := &fakeTC{devs: map[string][]TCFilter{}, noOffload: map[string]bool{}}
	for _, d := range devs {
		f.devs[d] = nil
	}
	return f
}

func (f *fakeTC) EnsureClsact(_ context.Context, dev string) error {
	if _, ok := f.devs[dev]; !ok {
		return fmt.Errorf("%w: %s", ErrNoDevice, dev)
	}
	return nil
}

func (f *fakeTC) Filters(_ context.Context, dev string) ([]TCFilter, error) {
	fs, ok := f.devs[dev]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNoDevice, dev)
	}
	return slices.Clone(fs), nil
}

func (f *fakeTC) FilterAdd(_ context.Context, r *offload.TCRule) error {
	f.calls = append(f.calls, "add "+r.Dev+" "+r.Flags.String())
	fs, ok := f.devs[r.Dev]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNoDevice, r.Dev)
	}
	if r.Flags == offload.TCSkipSW && f.noOffload[r.Dev] {
		return fmt.Errorf("%w: operation not supported", ErrTCSkipSWRejected)
	}
	for _, x := range fs {
		if x.Rule.Prio == r.Prio && x.Rule.Chain == r.Chain {
			if x.Rule.Proto != r.Proto {
				return errors.New("invalid argument: protocol differs at this priority")
			}
			if x.Rule.Match == r.Match {
				return fmt.Errorf("%w: file exists", ErrTCExists)
			}
		}
	}
	f.handle++
	nr := *r
	nr.Handle, nr.Origin, nr.Reason = f.handle, offload.Origin{}, ""
	f.devs[r.Dev] = append(fs, TCFilter{Rule: nr, Cookie: slices.Clone(r.Cookie[:])})
	return nil
}

func (f *fakeTC) FilterDel(_ context.Context, x *TCFilter) error {
	f.calls = append(f.calls, "del "+x.Rule.Dev)
	f.devs[x.Rule.Dev] = slices.DeleteFunc(f.devs[x.Rule.Dev], func(y TCFilter) bool {
		return y.Rule.Handle == x.Rule.Handle && y.Rule.Prio == x.Rule.Prio
	})
	return nil
}

func rule(dev string, prio uint16, dst, to string, origin string) offload.TCRule {
	r := offload.TCRule{Dev: dev, Prio: prio, Proto: offload.TCProtoAll, Match: offload.TCMatch{DstMAC: dst},
		Actions: []offload.TCAction{{Kind: offload.TCActRedirect, Dev: to}}, Flags: offload.TCSkipSW,
		Origin: offload.Origin{Kind: offload.KindPort, ID: origin}}
	r.Seal()
	return r
}

func TestTCApplier(t *testing.T) {
	ctx := context.Background()
	k := newFakeTC("rep0", "rep1", "up0")
	k.noOffload["rep1"] = true
	// a foreign filter: never touched
	k.devs["rep0"] = []TCFilter{{Rule: offload.TCRule{Dev: "rep0", Prio: 40, Handle: 99, Proto: offload.TCProtoAll}, Cookie: []byte("theirs")}}
	a := NewTCApplier(k, nil)
	want := []offload.TCRule{
		rule("rep0", 10, "fa:16:3e:00:00:02", "rep1", "p1"),
		rule("rep1", 10, "fa:16:3e:00:00:01", "rep0", "p2"),
		rule("up0", 10, "fa:16:3e:00:00:01", "rep0", "p1"),
	}
	rep, err := a.Apply(ctx, want, []string{"gone0"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Added != 3 || rep.Deleted != 0 || len(rep.Filters) != 3 {
		t.Fatalf("first apply: %+v", rep)
	}
	if len(rep.Fallbacks) != 1 || !strings.Contains(rep.Fallbacks[0].Rule, "dev rep1") ||
		!strings.Contains(rep.Fallbacks[0].Reason, "skip_sw rejected: operation not supported; runs in software (skip_hw)") {
		t.Fatalf("fallbacks: %+v", rep.Fallbacks)
	}
	if got := k.devs["rep1"][0].Rule.Flags; got != offload.TCSkipHW {
		t.Fatalf("rep1 rule flags %s, want skip_hw", got)
	}

	// idempotent; the earlier fallback is reported again
	k.calls = nil
	rep, err = a.Apply(ctx, want, nil)
	if err != nil || rep.Added != 0 || rep.Deleted != 0 || rep.Kept != 3 || len(k.calls) != 0 {
		t.Fatalf("re-apply: %+v %v calls %v", rep, err, k.calls)
	}
	if len(rep.Fallbacks) != 1 || !strings.Contains(rep.Fallbacks[0].Reason, "kept in software") {
		t.Fatalf("re-apply fallbacks: %+v", rep.Fallbacks)
	}

	// same key, new action: flower refuses the add, the old rule is deleted first
	changed := slices.Clone(want)
	changed[2].Actions = []offload.TCAction{{Kind: offload.TCActVLANPop}, {Kind: offload.TCActRedirect, Dev: "rep0"}}
	changed[2].Seal()
	// and p2 is gone: its rule is pruned
	changed = slices.Delete(changed, 1, 2)
	rep, err = a.Apply(ctx, changed, []string{"rep1"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Added != 1 || rep.Deleted != 2 || rep.Kept != 1 {
		t.Fatalf("change: %+v", rep)
	}
	if len(k.devs["rep1"]) != 0 || len(k.devs["up0"]) != 1 || len(k.devs["up0"][0].Rule.Actions) != 2 {
		t.Fatalf("after change: %+v", k.devs)
	}
	if len(k.devs["rep0"]) != 2 || string(k.devs["rep0"][0].Cookie) != "theirs" {
		t.Fatalf("foreign filter touched: %+v", k.devs["rep0"])
	}
	// adds come before deletes
	if i, j := slices.Index(k.calls, "add up0 skip_sw"), slices.Index(k.calls, "del rep1"); i < 0 || j < i {
		t.Fatalf("order of calls %v", k.calls)
	}

	// a rule on a missing device: an error naming it, what could be applied stays
	bad := append(slices.Clone(changed), rule("nodev", 10, "fa:16:3e:00:00:09", "rep0", "p9"))
	if _, err := a.Apply(ctx, bad, nil); err == nil || !strings.Contains(err.Error(), "nodev") {
		t.Fatalf("missing device: %v", err)
	}
}

func TestTCDiff(t *testing.T) {
	r1 := rule("d", 10, "fa:16:3e:00:00:01", "x", "p1")
	r2 := rule("d", 10, "fa:16:3e:00:00:02", "x", "p2")
	own := func(r offload.TCRule, h uint32) TCFilter {
		r.Handle = h
		return TCFilter{Rule: r, Cookie: slices.Clone(r.Cookie[:])}
	}
	foreign := TCFilter{Rule: offload.TCRule{Dev: "d", Prio: 10, Handle: 7}, Cookie: nil}
	add, del, kept := TCDiff([]offload.TCRule{r1, r2}, []TCFilter{own(r1, 1), own(r1, 2), foreign, own(rule("d", 10, "fa:16:3e:00:00:03", "x", "p3"), 3)})
	if len(add) != 1 || add[0].Match.DstMAC != "fa:16:3e:00:00:02" || kept != 1 {
		t.Fatalf("add %v kept %d", add, kept)
	}
	var handles []uint32
	for _, d := range del {
		handles = append(handles, d.Rule.Handle)
	}
	if !slices.Equal(handles, []uint32{2, 3}) {
		t.Fatalf("delete handles %v, want the duplicate and the stale rule", handles)
	}
}
