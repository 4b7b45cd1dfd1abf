package ovsdpdk

import (
	"context"
	"fmt"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/offlane/offlane/offload"
)

// Drift is what a Sync would send, computed without sending it: per bridge, the mods
// that make offlane's installed flows exactly desired (a flow deleted by hand comes back,
// one left over goes, a changed one is replaced). It only reads the switch, so it can run
// beside the caller's other work; the caller applies the result with Repair once it has
// dropped the mods its own changes made since desired was taken.
func (f *Flows) Drift(ctx context.Context, bridges []string, desired []offload.Flow) (map[string][]FlowMod, error) {
	byBridge, err := f.group(bridges, desired)
	if err != nil {
		return nil, err
	}
	out := map[string][]FlowMod{}
	for _, br := range bridges {
		installed, err := f.of.DumpFlows(ctx, br, f.cookie, f.mask, false)
		if err != nil {
			return nil, fmt.Errorf("drift check: %w", err)
		}
		have := make([]offload.Flow, len(installed))
		for i := range installed {
			have[i] = installed[i].Flow
		}
		if mods, _ := diffBridge(have, byBridge[br]); len(mods) > 0 {
			out[br] = mods
		}
	}
	return out, nil
}

// Repair sends the mods of a Drift, one atomic bundle per bridge in name order.
func (f *Flows) Repair(ctx context.Context, mods map[string][]FlowMod) (int, error) {
	bridges := make([]string, 0, len(mods))
	for b := range mods {
		bridges = append(bridges, b)
	}
	sort.Strings(bridges)
	n := 0
	for _, b := range bridges {
		if len(mods[b]) == 0 {
			continue
		}
		start := time.Now()
		if err := f.of.Bundle(ctx, b, mods[b]); err != nil {
			return n, fmt.Errorf("repair flows: %w", err)
		}
		n += len(mods[b])
		f.log.Info("flows repaired", zap.String("bridge", b), zap.Int("mods", len(mods[b])), zap.Duration("took", time.Since(start)))
	}
	return n, nil
}
