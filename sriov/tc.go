package sriov

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.uber.org/zap"

	"github.com/offlane/offlane/offload"
)

// TCFilter is a flower filter as read back from the kernel: the rule decoded (Origin
// and Reason are not in the kernel), its handle, its action cookie and whether the NIC
// holds it.
type TCFilter struct {
	Rule   offload.TCRule
	Cookie []byte // the first action's cookie; nil when it has none
	InHW   bool   // TCA_CLS_FLAGS_IN_HW
}

// Own reports whether the filter carries offlane's cookie.
func (f *TCFilter) Own() bool { return offload.IsOfflaneTCCookie(f.Cookie) }

// Key is the filter's identity as the compiler's TCRule.Key (valid for own filters).
func (f *TCFilter) Key() offload.TCKey {
	k := offload.TCKey{Dev: f.Rule.Dev, Egress: f.Rule.Egress, Chain: f.Rule.Chain, Prio: f.Rule.Prio}
	copy(k.Cookie[:], f.Cookie)
	return k
}

// ErrTCExists wraps the kernel's refusal of a filter whose key is already at that
// priority (EEXIST).
var ErrTCExists = errors.New("filter with this key exists")

// ErrTCSkipSWRejected wraps the kernel's refusal of a skip_sw rule (EOPNOTSUPP: the
// device has no tc offload, or the NIC cannot do this rule).
var ErrTCSkipSWRejected = errors.New("skip_sw rejected")

// TCKernel is the tc netlink the applier uses (NetlinkTC on Linux).
type TCKernel interface {
	// EnsureClsact makes sure dev has an ingress hook (a clsact, or an existing ingress
	// qdisc). Idempotent; ErrNoDevice when dev does not exist.
	EnsureClsact(ctx context.Context, dev string) error
	// Filters lists every flower filter on dev's ingress and egress hooks, offlane's and
	// others'.
	// ErrNoDevice when dev does not exist.
	Filters(ctx context.Context, dev string) ([]TCFilter, error)
	// FilterAdd creates the rule with its cookie on every action (exclusive create: an
	// identical key at the same priority is an error wrapping ErrTCExists). A skip_sw rule
	// the device refuses fails with an error wrapping ErrTCSkipSWRejected. Not retried.
	FilterAdd(ctx context.Context, r *offload.TCRule) error
	// FilterDel deletes one filter by device, chain, priority, protocol and handle.
	// A filter already gone is not an error.
	FilterDel(ctx context.Context, f *TCFilter) error
}

// TCBatchAdder is a TCKernel that adds many rules per system call (NetlinkTC does, as
// `tc -batch` does); Apply uses it when the kernel has it.
type TCBatchAdder interface {
	// FilterAddBatch adds rules as FilterAdd would, one after another; errs[i] is the
	// answer for rules[i] (nil when added).
	FilterAddBatch(ctx context.Context, rules []offload.TCRule) (errs []error)
}

// TCBatchDeleter is a TCKernel that deletes many filters per system call; Apply uses
// it when the kernel has it.
type TCBatchDeleter interface {
	// FilterDelBatch deletes filters as FilterDel would; errs[i] is the answer for fs[i].
	FilterDelBatch(ctx context.Context, fs []TCFilter) (errs []error)
}

// TCFallback is a rule that runs in software though the compiler asked for hardware.
type TCFallback struct {
	Rule   string `json:"rule"`
	Reason string `json:"reason"`
}

// TCReport is what Apply reached, read back from the kernel.
type TCReport struct {
	Added     int          `json:"added"`
	Deleted   int          `json:"deleted"`
	Kept      int          `json:"kept"`
	Fallbacks []TCFallback `json:"fallbacks,omitempty"`
	// Filters are offlane's filters on the managed devices after the apply.
	Filters []TCFilter `json:"-"`
}

// TCApplier puts compiled tc rules into the kernel and keeps only its own: filters
// carrying offlane's cookie on the devices it manages; anything else is left alone.
type TCApplier struct {
	k   TCKernel
	log *zap.Logger
}

// NewTCApplier returns an applier over k.
func NewTCApplier(k TCKernel, log *zap.Logger) *TCApplier {
	if log == nil {
		log = zap.NewNop()
	}
	return &TCApplier{k: k, log: log.Named("tc")}
}

// TCDiff is the pure diff of desired rules against the filters on the devices: rules
// to add (not present by device, chain, priority and cookie) and offlane filters to
// delete (not desired, or duplicates). Foreign filters are never deleted.
func TCDiff(desired []offload.TCRule, actual []TCFilter) (add []offload.TCRule, del []TCFilter, kept int) {
	have := make(map[offload.TCKey]bool, len(actual))
	want := make(map[offload.TCKey]bool, len(desired))
	for i := range desired {
		want[desired[i].Key()] = true
	}
	for _, f := range actual {
		if !f.Own() {
			continue
		}
		k := f.Key()
		if !want[k] || have[k] {
			del = append(del, f)
			continue
		}
		have[k] = true
	}
	for _, r := range desired {
		if !have[r.Key()] {
			add = append(add, r)
		} else {
			kept++
		}
	}
	return add, del, kept
}

// Apply makes the ingress hooks of the rules' devices and of prune (devices that may
// hold offlane rules from before, e.g. every representor) hold exactly the desired
// offlane rules: adds first, then deletes, then reads back. A skip_sw rule the device
// refuses is added skip_hw instead and recorded as a fallback. It returns the report
// and, on failure, the first errors joined (what was applied stays: re-run converges).
func (a *TCApplier) Apply(ctx context.Context, desired []offload.TCRule, prune []string) (*TCReport, error) {
	devs := slices.Clone(prune)
	for i := range desired {
		devs = append(devs, desired[i].Dev)
	}
	slices.Sort(devs)
	devs = slices.Compact(devs)
	wantDev := map[string]bool{}
	for i := range desired {
		wantDev[desired[i].Dev] = true
	}
	var actual []TCFilter
	for _, d := range devs {
		if wantDev[d] {
			if err := a.k.EnsureClsact(ctx, d); err != nil {
				return nil, fmt.Errorf("tc %s: ingress hook: %w", d, err)
			}
		}
		fs, err := a.k.Filters(ctx, d)
		if errors.Is(err, ErrNoDevice) && !wantDev[d] {
			continue // a pruned device that is gone holds no rules
		}
		if err != nil {
			return nil, fmt.Errorf("tc %s: list filters: %w", d, err)
		}
		actual = append(actual, fs...)
	}
	add, del, kept := TCDiff(desired, actual)
	rep := &TCReport{Kept: kept}
	// a rule kept from an earlier fallback still runs in software: say so again
	hwWanted := map[offload.TCKey]*offload.TCRule{}
	for i := range desired {
		if desired[i].Flags == offload.TCSkipSW {
			hwWanted[desired[i].Key()] = &desired[i]
		}
	}
	for _, f := range actual {
		if f.Own() && f.Rule.Flags == offload.TCSkipHW {
			if r := hwWanted[f.Key()]; r != nil {
				rep.Fallbacks = append(rep.Fallbacks, TCFallback{Rule: r.String(), Reason: "kept in software: skip_sw was refused when it was added"})
			}
		}
	}
	var errs []error
	deleted := map[int]bool{}
	first := make([]error, len(add))
	if b, ok := a.k.(TCBatchAdder); ok {
		first = b.FilterAddBatch(ctx, add)
	} else {
		for i := range add {
			first[i] = a.k.FilterAdd(ctx, &add[i])
		}
	}
	for i := range add {
		r := add[i]
		err := first[i]
		if err != nil && errors.Is(err, ErrTCExists) {
			// Same key at the same priority (only the actions changed): flower refuses a
			// second filter with an identical key, so this one replaces, delete first.
			if j := conflicting(&r, del, deleted); j >= 0 {
				if derr := a.k.FilterDel(ctx, &del[j]); derr != nil {
					errs = append(errs, fmt.Errorf("tc %s: delete %s: %w", r.Dev, del[j].Rule.String(), derr))
					continue
				}
				deleted[j] = true
				rep.Deleted++
				err = a.k.FilterAdd(ctx, &r)
			}
		}
		if err != nil && r.Flags == offload.TCSkipSW && errors.Is(err, ErrTCSkipSWRejected) {
			why := fmt.Sprintf("%s: %v; runs in software (skip_hw)", r.Dev, err)
			r.Flags = offload.TCSkipHW
			if err = a.k.FilterAdd(ctx, &r); err == nil {
				rep.Fallbacks = append(rep.Fallbacks, TCFallback{Rule: add[i].String(), Reason: why})
				a.log.Info("tc rule falls back to software", zap.String("dev", r.Dev), zap.String("reason", why))
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("tc %s: add %s: %w", r.Dev, r.String(), err))
			continue
		}
		rep.Added++
	}
	if len(errs) == 0 {
		rest := make([]TCFilter, 0, len(del))
		for j := range del {
			if !deleted[j] {
				rest = append(rest, del[j])
			}
		}
		for j, err := range a.deleteAll(ctx, rest) {
			if err != nil {
				errs = append(errs, fmt.Errorf("tc %s: delete %s: %w", rest[j].Rule.Dev, rest[j].Rule.String(), err))
				continue
			}
			rep.Deleted++
		}
	}
	// read back
	for _, d := range devs {
		fs, err := a.k.Filters(ctx, d)
		if errors.Is(err, ErrNoDevice) && !wantDev[d] {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("tc %s: read back: %w", d, err))
			continue
		}
		for _, f := range fs {
			if f.Own() {
				rep.Filters = append(rep.Filters, f)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return rep, err
	}
	if missing := TCMissing(desired, rep.Filters); len(missing) > 0 {
		return rep, fmt.Errorf("tc: %d rules not in the kernel after apply, first: %s", len(missing), missing[0])
	}
	return rep, nil
}

// deleteAll deletes fs, batched when the kernel can; errs[i] is the answer for fs[i].
func (a *TCApplier) deleteAll(ctx context.Context, fs []TCFilter) []error {
	if b, ok := a.k.(TCBatchDeleter); ok && len(fs) > 0 {
		return b.FilterDelBatch(ctx, fs)
	}
	errs := make([]error, len(fs))
	for i := range fs {
		errs[i] = a.k.FilterDel(ctx, &fs[i])
	}
	return errs
}

// conflicting finds an offlane filter to be deleted with r's device, chain, priority,
// protocol and match.
func conflicting(r *offload.TCRule, del []TCFilter, done map[int]bool) int {
	for j := range del {
		d := &del[j].Rule
		if !done[j] && d.Dev == r.Dev && d.Egress == r.Egress && d.Chain == r.Chain && d.Prio == r.Prio && d.Proto == r.Proto && d.Match == r.Match {
			return j
		}
	}
	return -1
}

// TCMissing lists the desired rules (as text) that are not among the filters read back
// with equal content: same cookie, protocol, match and actions.
func TCMissing(desired []offload.TCRule, got []TCFilter) []string {
	byKey := make(map[offload.TCKey]*TCFilter, len(got))
	for i := range got {
		byKey[got[i].Key()] = &got[i]
	}
	var out []string
	for i := range desired {
		r := &desired[i]
		f := byKey[r.Key()]
		if f == nil || !TCEqual(r, &f.Rule) {
			out = append(out, r.String())
		}
	}
	return out
}

// TCEqual compares what the kernel holds of two rules: device, hook, chain, priority,
// protocol, match and actions (not flags, origin or reason).
func TCEqual(a, b *offload.TCRule) bool {
	return a.Dev == b.Dev && a.Egress == b.Egress && a.Chain == b.Chain && a.Prio == b.Prio && a.Proto == b.Proto &&
		a.Match == b.Match && slices.Equal(a.Actions, b.Actions)
}
