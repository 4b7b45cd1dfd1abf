package agent

import (
	"context"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/offlane/offlane/agent/metrics"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
)

// Conntrack deletes conntrack entries (ovsdpdk.Unixctl implements it on
// ovs-vswitchd's control socket).
type Conntrack interface {
	// FlushConntrack deletes the entries each flush selects. Idempotent (an entry
	// already gone is no error) and safe to retry; it tries every flush and returns what
	// it did with the failures joined, each naming its flush.
	FlushConntrack(ctx context.Context, flushes []offload.CTFlush) (ovsdpdk.ConntrackFlushResult, error)
}

// maxFlushAttempts bounds the retries of a flush that failed (ovs-vswitchd busy or
// restarting: a restarted one has lost its conntrack anyway).
const maxFlushAttempts = 3

// conntrackState is what the agent keeps between reconciles for flushes: those that
// failed, to try again.
type conntrackState struct {
	retry map[offload.CTFlush]int // attempts made
}

// flushConntrack cuts the connections the security group changes from the last
// reconciled IR to cur no longer allow (offload.ConntrackFlushes), once the new flows
// are in: a flushed connection's next packet meets the new rules. A failure is logged
// and counted (errors of kind conntrack), not fatal: the flows are right, and the
// flush is tried again at the next reconciles. Without Deps.Conntrack it does nothing.
func (a *Agent) flushConntrack(ctx context.Context, cur *offload.IR) {
	if a.d.Conntrack == nil {
		return
	}
	a.mu.Lock()
	prev := a.last.IR
	a.mu.Unlock()
	flushes := offload.ConntrackFlushes(prev, cur)
	var again []offload.CTFlush
	for f := range a.ct.retry {
		if !slices.Contains(flushes, f) {
			again = append(again, f)
		}
	}
	slices.SortFunc(again, func(x, y offload.CTFlush) int { return strings.Compare(x.String(), y.String()) })
	flushes = append(flushes, again...)
	if len(flushes) == 0 {
		return
	}
	res, err := a.d.Conntrack.FlushConntrack(ctx, flushes)
	if o := a.d.Observer; o != nil {
		o.AddConntrackFlushes(res.Done)
		if err != nil {
			o.ObserveError(metrics.ErrorConntrack)
		}
	}
	failed := map[offload.CTFlush]bool{}
	for _, f := range res.Failed {
		failed[f] = true
	}
	retry := map[offload.CTFlush]int{}
	for _, f := range flushes {
		if n := a.ct.retry[f] + 1; failed[f] && n < maxFlushAttempts {
			retry[f] = n
		}
	}
	a.ct.retry = retry
	if err != nil {
		a.log.Warn("conntrack flushes after a security group change failed; established connections the change removed may go on",
			zap.Int("flushes", len(flushes)), zap.Int("done", res.Done), zap.Int("retrying", len(retry)), zap.Error(err))
		return
	}
	a.log.Debug("conntrack flushed after a security group change", zap.Int("flushes", len(flushes)),
		zap.Int("calls", res.Calls), zap.Int("entries", res.Entries))
}
