package agent

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// The periodic sweep repairs what drifts outside the flow tables and comes back as no
// event: a qdhcp or qrouter namespace or its port removed by hand, a VF's settings
// changed, an OVSDB QoS row, meter or vhost-user port deleted. It realises the last
// reconcile's IR and plan again in full (every stage without a change set, the direct
// ports, and the QoS, meters and vhost-user ports when the node has any), without
// rebuilding or recompiling anything. Store changes need no sweep (they come as events),
// nor do OVS interfaces (they do too), nor flows (drift.go). It runs in the loop, once the
// loop has been quiet for a second (Run), so it does not hold up a port change.

// sweep realises the last reconcile again in full; it reports whether a stage plugged
// or unplugged ports (a reconcile must then take them). A failure makes the next
// reconcile full.
func (a *Agent) sweep(ctx context.Context) (changed bool) {
	last := a.Last()
	if last.IR == nil || last.Plan == nil || a.needFull || a.comp == nil {
		return false
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ReconcileTimeout)
	defer cancel()
	ctx, stopWatch := a.abortOnOVSDBLoss(ctx)
	defer stopWatch()
	err := func() error {
		for i, s := range a.d.Stages {
			c, err := a.realiseStage(ctx, i, s, last.IR, last.Plan, nil)
			if err != nil {
				return fmt.Errorf("%s: %w", s.Name(), err)
			}
			changed = changed || c
		}
		if d := a.d.Direct; d != nil {
			c, err := d.Realise(ctx, DirectInput{Layout: a.layout, IR: last.IR, Plan: last.Plan, Node: a.hw})
			if err != nil {
				return fmt.Errorf("direct ports: %w", err)
			}
			changed = changed || c
		}
		if a.applied.vhu > 0 {
			if err := a.ensureVhostUser(ctx, a.cache.st, true); err != nil {
				return err
			}
		}
		if brs := bridgesOf(a.layout); a.d.Meters != nil && len(a.applied.meters) > 0 {
			if _, err := a.d.Meters.Prepare(ctx, brs, a.applied.meters); err != nil {
				return fmt.Errorf("meters: %w", err)
			}
			if _, err := a.d.Meters.Prune(ctx, brs, a.applied.meters); err != nil {
				return fmt.Errorf("meters: %w", err)
			}
		}
		if a.d.QoS != nil && len(a.applied.qos) > 0 {
			if _, err := a.d.QoS.Apply(ctx, a.applied.qos); err != nil {
				return fmt.Errorf("OVSDB QoS: %w", err)
			}
		}
		return nil
	}()
	if err != nil {
		a.log.Warn("sweep failed; the next reconcile is full", zap.Error(err))
		if o := a.d.Observer; o != nil {
			o.ObserveError("sweep")
		}
		a.needFull = true
		return true
	}
	a.log.Debug("swept", zap.Bool("changed", changed), zap.Duration("took", time.Since(start)))
	return changed
}
