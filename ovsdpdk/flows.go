package ovsdpdk

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/offlane/offlane/offload"
)

// FlowsOptions configure Flows.
type FlowsOptions struct {
	Logger *zap.Logger
	// Cookie and CookieMask select the flows Flows owns: a flow is offlane's when
	// cookie&CookieMask == Cookie. Default offload.CookieMarker / CookieMarkerMask.
	Cookie, CookieMask uint64
}

// Flows programs offlane's OpenFlow flows: full syncs and incremental updates, each as
// one atomic bundle per bridge. It owns only the flows whose cookie carries its marker;
// every other flow on the bridges is left alone. Safe for concurrent use if the OpenFlow
// channel is; concurrent Syncs of the same bridge race (last one wins), so callers run
// one reconcile loop.
type Flows struct {
	of     OpenFlow
	log    *zap.Logger
	cookie uint64
	mask   uint64
}

// NewFlows returns the flow applier on the channel of.
func NewFlows(of OpenFlow, opts FlowsOptions) *Flows {
	f := &Flows{of: of, log: opts.Logger, cookie: opts.Cookie, mask: opts.CookieMask}
	if f.log == nil {
		f.log = zap.NewNop()
	}
	f.log = f.log.Named("openflow")
	if f.mask == 0 {
		f.cookie, f.mask = offload.CookieMarker, offload.CookieMarkerMask
	}
	return f
}

// BridgeSync is what a sync did on one bridge.
type BridgeSync struct {
	Bridge    string        `json:"bridge"`
	Installed int           `json:"installed"` // offlane flows found before
	Desired   int           `json:"desired"`
	Added     int           `json:"added"`    // new keys
	Replaced  int           `json:"replaced"` // same key, new cookie (an add that replaces)
	Modified  int           `json:"modified"` // same key and cookie, new actions (counters kept)
	Deleted   int           `json:"deleted"`
	Unchanged int           `json:"unchanged"`
	Bundled   bool          `json:"bundled"` // a bundle was sent (false: nothing to do)
	Took      time.Duration `json:"took"`
}

// Changes is the number of flow mods the sync sent.
func (b BridgeSync) Changes() int { return b.Added + b.Replaced + b.Modified + b.Deleted }

// SyncResult is what Sync did, per bridge in the order they were synced.
type SyncResult struct {
	Bridges []BridgeSync `json:"bridges"`
}

// Changes is the number of flow mods sent over all bridges.
func (r *SyncResult) Changes() int {
	n := 0
	for _, b := range r.Bridges {
		n += b.Changes()
	}
	return n
}

// Sync makes offlane's flows on each of bridges exactly desired: it reads the installed
// offlane flows back (dump filtered by cookie), computes the difference (DiffFlows) and
// sends it as one atomic bundle per bridge, so packets meet either the old flows or the
// new ones and never a table in between. Foreign flows (without offlane's cookie marker)
// are not read and not touched. Every desired flow must name one of bridges and carry the
// marker; a bad desired set is refused before anything is sent. Bridges are synced in
// the given order; if one fails, the bridges before it are synced, it and the ones after
// keep their previous flows, and the error names it. Idempotent and safe to retry.
func (f *Flows) Sync(ctx context.Context, bridges []string, desired []offload.Flow) (*SyncResult, error) {
	byBridge, err := f.group(bridges, desired)
	if err != nil {
		return nil, err
	}
	res := &SyncResult{}
	for _, br := range bridges {
		start := time.Now()
		installed, err := f.of.DumpFlows(ctx, br, f.cookie, f.mask, false)
		if err != nil {
			return res, fmt.Errorf("sync flows: %w", err)
		}
		have := make([]offload.Flow, len(installed))
		for i := range installed {
			have[i] = installed[i].Flow
		}
		mods, st := diffBridge(have, byBridge[br])
		st.Bridge = br
		if len(mods) > 0 {
			if err := f.of.Bundle(ctx, br, mods); err != nil {
				return res, fmt.Errorf("sync flows: %w", err)
			}
			st.Bundled = true
		}
		st.Took = time.Since(start)
		f.log.Debug("flows synced", zap.String("bridge", br), zap.Int("desired", st.Desired),
			zap.Int("added", st.Added), zap.Int("replaced", st.Replaced), zap.Int("modified", st.Modified),
			zap.Int("deleted", st.Deleted), zap.Duration("took", st.Took))
		res.Bridges = append(res.Bridges, st)
	}
	return res, nil
}

// group checks the desired set and splits it by bridge.
func (f *Flows) group(bridges []string, desired []offload.Flow) (map[string][]offload.Flow, error) {
	byBridge := make(map[string][]offload.Flow, len(bridges))
	for _, b := range bridges {
		if err := validBridgeName(b); err != nil {
			return nil, err
		}
		if _, dup := byBridge[b]; dup {
			return nil, fmt.Errorf("bridge %s listed twice", b)
		}
		byBridge[b] = nil
	}
	count := make(map[string]int, len(bridges))
	for i := range desired {
		count[desired[i].Bridge]++
	}
	for b := range byBridge {
		byBridge[b] = make([]offload.Flow, 0, count[b])
	}
	var errs []error
	for _, fl := range desired {
		if err := f.checkFlow(fl); err != nil {
			errs = append(errs, err)
		} else if _, ok := byBridge[fl.Bridge]; !ok {
			errs = append(errs, fmt.Errorf("flow %s is for bridge %q, which this sync does not cover (bridges %v)", fl.String(), fl.Bridge, bridges))
		} else {
			byBridge[fl.Bridge] = append(byBridge[fl.Bridge], fl)
		}
		if len(errs) >= 10 {
			errs = append(errs, errors.New("(more errors not shown)"))
			break
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("desired flows refused, nothing sent: %w", err)
	}
	for b, fl := range byBridge {
		if err := checkDuplicates(fl); err != nil {
			return nil, fmt.Errorf("desired flows for bridge %s refused, nothing sent: %w", b, err)
		}
	}
	return byBridge, nil
}

func (f *Flows) checkFlow(fl offload.Flow) error {
	if fl.Cookie&f.mask != f.cookie {
		return fmt.Errorf("flow %s: cookie %#x lacks offlane's marker %#x/%#x (a flow without it would be foreign once installed and never pruned)", fl.String(), fl.Cookie, f.cookie, f.mask)
	}
	if fl.Actions == "" {
		return fmt.Errorf("flow %s: no actions (write \"drop\")", fl.String())
	}
	return checkFlowText(&fl)
}

// checkDuplicates refuses two flows with the same key (as written) that differ in cookie
// or actions: OVS would keep only one of them. Flows sorted by key (the compiler's
// order) are checked by comparing neighbours, without a map; others through a map.
func checkDuplicates(flows []offload.Flow) error {
	dup := func(a, b *offload.Flow) error {
		if a.Cookie != b.Cookie || a.Actions != b.Actions {
			return fmt.Errorf("two flows with the same table, priority and match: %s and %s", a.String(), b.String())
		}
		return nil
	}
	sorted := true
	for i := 1; i < len(flows); i++ {
		a, b := &flows[i-1], &flows[i]
		c := cmpKey(a, b)
		if c == 0 {
			if err := dup(a, b); err != nil {
				return err
			}
		} else if c > 0 {
			sorted = false
			break
		}
	}
	if sorted {
		return nil
	}
	seen := make(map[rawKey]int, len(flows))
	for i := range flows {
		fl := &flows[i]
		k := rawKey{fl.Table, fl.Priority, fl.Match}
		if j, ok := seen[k]; ok {
			if err := dup(&flows[j], fl); err != nil {
				return err
			}
			continue
		}
		seen[k] = i
	}
	return nil
}

// cmpKey orders flows as the compiler sorts them: table, priority (highest first), match.
func cmpKey(a, b *offload.Flow) int {
	switch {
	case a.Table != b.Table:
		return int(a.Table) - int(b.Table)
	case a.Priority != b.Priority:
		return int(b.Priority) - int(a.Priority)
	}
	return strings.Compare(a.Match, b.Match)
}

type rawKey struct {
	table uint8
	prio  uint16
	match string
}

// DiffFlows returns the mods that turn installed into desired on one bridge: deletes
// (strict, restricted to the installed flow's cookie, with the match as OVS printed it),
// then modifies (same key and cookie, other actions: counters survive), then adds (new
// keys, and same keys with another cookie, which an add replaces). Matches and actions
// are compared as written first and through NormalizeMatch / NormalizeActions when the
// text differs. A spelling the normaliser does not know costs a delete plus an add of
// the same flow, which is harmless inside one bundle. Pure; installed and desired are
// not changed.
func DiffFlows(installed, desired []offload.Flow) []FlowMod {
	mods, _ := diffBridge(installed, desired)
	return mods
}

func diffBridge(installed, desired []offload.Flow) ([]FlowMod, BridgeSync) {
	st := BridgeSync{Installed: len(installed), Desired: len(desired)}
	idx := make(map[rawKey]int32, len(installed))
	for i, h := range installed {
		idx[rawKey{h.Table, h.Priority, h.Match}] = int32(i)
	}
	seen := make([]bool, len(installed))
	var modifies []FlowMod
	adds := make([]FlowMod, 0, max(len(desired)-len(installed), 16))
	var misses []int // desired flows whose match was not found as written
	compare := func(d offload.Flow, i int) {
		seen[i] = true
		h := &installed[i]
		switch {
		case h.Cookie != d.Cookie:
			adds = append(adds, FlowMod{FlowAdd, d})
			st.Replaced++
		case h.Actions == d.Actions || NormalizeActions(h.Actions, h.Match) == NormalizeActions(d.Actions, d.Match):
			st.Unchanged++
		default:
			modifies = append(modifies, FlowMod{FlowModify, d})
			st.Modified++
		}
	}
	for j, d := range desired {
		i, ok := idx[rawKey{d.Table, d.Priority, d.Match}]
		switch {
		case !ok:
			misses = append(misses, j)
		case seen[i]:
			// An identical duplicate (checkDuplicates refused the others).
		default:
			compare(d, int(i))
		}
	}
	// Only flows left unmatched on both sides go through the normaliser: none at all for
	// a first install (nothing installed) or a resync without changes.
	var canon map[rawKey]int32
	for _, j := range misses {
		d := desired[j]
		if canon == nil {
			canon = map[rawKey]int32{}
			for i, h := range installed {
				if !seen[i] {
					canon[rawKey{h.Table, h.Priority, NormalizeMatch(h.Match)}] = int32(i)
				}
			}
		}
		i, ok := int32(0), false
		if len(canon) > 0 {
			i, ok = canon[rawKey{d.Table, d.Priority, NormalizeMatch(d.Match)}]
		}
		if ok && !seen[i] {
			compare(d, int(i))
			continue
		}
		if ok {
			continue // another spelling of a flow already handled
		}
		adds = append(adds, FlowMod{FlowAdd, d})
		st.Added++
	}
	var dels []FlowMod
	for i := range installed {
		if !seen[i] {
			dels = append(dels, FlowMod{FlowDelete, installed[i]})
			st.Deleted++
		}
	}
	mods := make([]FlowMod, 0, len(dels)+len(modifies)+len(adds))
	mods = append(append(append(mods, dels...), modifies...), adds...)
	return mods, st
}

// Update applies an incremental change (what offload's Compiler.Update returned) as one
// atomic bundle per bridge, without reading the switch first: deletes (strict, by the
// old flow's cookie), then modified flows as adds (an add replaces the flow with the same
// key, cookie included), then new flows. Bridges go in name order; on an error the
// bridges before the failing one are updated, the failing one and those after are
// unchanged, and a full Sync repairs the difference. The delta is checked before anything
// is sent.
func (f *Flows) Update(ctx context.Context, d *offload.Delta) error {
	if d == nil || d.Empty() {
		return nil
	}
	byBridge := map[string][]FlowMod{}
	var errs []error
	add := func(op FlowOp, fl offload.Flow) {
		if err := f.checkFlow(fl); err != nil {
			errs = append(errs, err)
			return
		}
		if err := validBridgeName(fl.Bridge); err != nil {
			errs = append(errs, fmt.Errorf("flow %s: %w", fl.String(), err))
			return
		}
		byBridge[fl.Bridge] = append(byBridge[fl.Bridge], FlowMod{op, fl})
	}
	for _, fl := range d.Delete {
		add(FlowDelete, fl)
	}
	for _, fl := range d.Modify {
		add(FlowAdd, fl)
	}
	for _, fl := range d.Add {
		add(FlowAdd, fl)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("flow update refused, nothing sent: %w", err)
	}
	bridges := make([]string, 0, len(byBridge))
	for b := range byBridge {
		bridges = append(bridges, b)
	}
	sort.Strings(bridges)
	for _, b := range bridges {
		if err := f.of.Bundle(ctx, b, byBridge[b]); err != nil {
			return fmt.Errorf("flow update: %w", err)
		}
	}
	f.log.Debug("flows updated", zap.Int("added", len(d.Add)), zap.Int("modified", len(d.Modify)), zap.Int("deleted", len(d.Delete)), zap.Strings("bridges", bridges))
	return nil
}

// Installed returns offlane's flows on bridge with their counters.
func (f *Flows) Installed(ctx context.Context, bridge string) ([]InstalledFlow, error) {
	return f.of.DumpFlows(ctx, bridge, f.cookie, f.mask, true)
}

// FlowPair is a desired flow and its installed twin; either may be nil (missing from the
// switch, or installed but not desired).
type FlowPair struct {
	Desired   *offload.Flow
	Installed *InstalledFlow
}

// PairFlows matches installed flows to desired ones by bridge, table, priority and match
// (as written, then normalised, as DiffFlows compares them). The result lists the
// desired flows in their order, then the installed flows nothing desired matched.
func PairFlows(desired []offload.Flow, installed []InstalledFlow) []FlowPair {
	type key struct {
		bridge string
		rawKey
	}
	raw := make(map[key]int, len(installed))
	for i := range installed {
		h := &installed[i]
		raw[key{h.Bridge, rawKey{h.Table, h.Priority, h.Match}}] = i
	}
	var canon map[key]int
	used := make([]bool, len(installed))
	out := make([]FlowPair, 0, len(desired))
	for i := range desired {
		d := &desired[i]
		j, ok := raw[key{d.Bridge, rawKey{d.Table, d.Priority, d.Match}}]
		if !ok {
			if canon == nil {
				canon = make(map[key]int, len(installed))
				for k := range installed {
					h := &installed[k]
					canon[key{h.Bridge, rawKey{h.Table, h.Priority, NormalizeMatch(h.Match)}}] = k
				}
			}
			j, ok = canon[key{d.Bridge, rawKey{d.Table, d.Priority, NormalizeMatch(d.Match)}}]
		}
		p := FlowPair{Desired: d}
		if ok && !used[j] {
			used[j] = true
			p.Installed = &installed[j]
		}
		out = append(out, p)
	}
	for j := range installed {
		if !used[j] {
			out = append(out, FlowPair{Installed: &installed[j]})
		}
	}
	return out
}
