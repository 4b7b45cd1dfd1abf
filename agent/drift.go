package agent

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/offlane/offlane/agent/metrics"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
)

// The periodic drift check: every Resync, the flows OVS holds are compared with the
// compiled ones (a flow deleted by hand comes back, a foreign flow is left alone). The
// dump and the comparison — seconds at 10,000 ports — run beside the loop, so a port
// change meanwhile is not held up. The loop then sends the repair, leaving out every
// flow whose origin (cookie) a delta changed after the compiled flows were taken: those
// are already right, or the check compared them with flows that no longer hold.

// driftCheck is a check in flight.
type driftCheck struct {
	touched map[uint64]struct{} // cookies of the flows deltas changed since
	// a full sync replaced everything (also what a new compiler makes): ignore the result
	dropped bool
}

type driftResult struct {
	mods map[string][]ovsdpdk.FlowMod
	err  error
	took time.Duration
}

// startDrift starts a drift check unless one runs or nothing is compiled yet.
func (a *Agent) startDrift(ctx context.Context) {
	if a.drift != nil || a.comp == nil {
		return
	}
	flows, brs := a.comp.Flows(), bridgesOf(a.layout)
	a.drift = &driftCheck{touched: map[uint64]struct{}{}}
	go func() {
		start := time.Now()
		dctx, cancel := context.WithTimeout(ctx, a.cfg.ReconcileTimeout)
		defer cancel()
		mods, err := a.d.Flows.Drift(dctx, brs, flows)
		a.driftDone <- driftResult{mods: mods, err: err, took: time.Since(start)}
	}()
}

// noteDelta records, for a drift check in flight, the origins a delta changes.
func (a *Agent) noteDelta(d *offload.Delta) {
	if a.drift == nil {
		return
	}
	for _, l := range [][]offload.Flow{d.Add, d.Modify, d.Delete} {
		for i := range l {
			a.drift.touched[l[i].Cookie] = struct{}{}
		}
	}
}

// dropDrift makes a check in flight void (a full sync is about to replace the flows).
func (a *Agent) dropDrift() {
	if a.drift != nil {
		a.drift.dropped = true
	}
}

// DriftStats counts the drift checks that completed and the flow mods they repaired.
type DriftStats struct {
	Checks, Repaired int
}

// Drifts returns the drift checks' counts so far.
func (a *Agent) Drifts() DriftStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.drifts
}

// finishDrift sends a finished check's repair (on the loop).
func (a *Agent) finishDrift(ctx context.Context, res driftResult) {
	dc := a.drift
	a.drift = nil
	if dc == nil || dc.dropped || a.needFull {
		return // superseded: the full reconcile compared everything itself
	}
	if res.err != nil {
		if ctx.Err() == nil {
			a.log.Warn("drift check failed; the next one retries", zap.Error(res.err))
			if o := a.d.Observer; o != nil {
				o.ObserveError("drift")
			}
		}
		return
	}
	n := 0
	for br, mods := range res.mods {
		keep := mods[:0]
		for _, m := range mods {
			if _, ok := dc.touched[m.Flow.Cookie]; !ok {
				keep = append(keep, m)
			}
		}
		res.mods[br] = keep
		n += len(keep)
	}
	if n == 0 {
		a.countDrift(0)
		a.log.Debug("no drift", zap.Duration("took", res.took))
		return
	}
	rctx, cancel := context.WithTimeout(ctx, a.cfg.ReconcileTimeout)
	defer cancel()
	sent, err := a.d.Flows.Repair(rctx, res.mods)
	if o := a.d.Observer; o != nil {
		o.AddChanges(metrics.ChangeRepair, sent)
	}
	if err != nil {
		a.log.Warn("repair drifted flows; the next reconcile is full", zap.Error(err))
		a.needFull = true
		return
	}
	a.countDrift(sent)
	a.log.Info("repaired drifted flows", zap.Int("mods", sent), zap.Duration("check_took", res.took))
}

func (a *Agent) countDrift(repaired int) {
	a.mu.Lock()
	a.drifts.Checks++
	a.drifts.Repaired += repaired
	a.mu.Unlock()
}
