package agent

import (
	"context"
	"time"

	"github.com/offlane/offlane/controlplane"
)

// DesiredState is where the agent reads the tenant model and writes back what it did:
// the embedded store (StoreState, `offlane serve --agent`) or a remote `offlane serve`
// over HTTP (HTTPState, `offlane agent --url`).
type DesiredState interface {
	// Load reads every object the agent needs at one revision.
	Load(ctx context.Context) (*controlplane.State, error)
	// Watch streams the events after revision from. The channel closes when the stream
	// ends; the function then says why (an error wrapping controlplane.ErrCompacted when
	// from is too old: the agent resyncs fully). Watch itself fails with ErrCompacted too.
	Watch(ctx context.Context, from int64) (<-chan controlplane.Event, func() error, error)
	// Revision is the newest revision known (for the watch-lag metric).
	Revision(ctx context.Context) (int64, error)
	// SetPortBinding writes a port's status and binding (controlplane.SetPortBinding).
	SetPortBinding(ctx context.Context, host, id string, b controlplane.PortBinding) (bool, error)
	// Heartbeat registers or refreshes this node in the agents registry.
	Heartbeat(ctx context.Context, ag controlplane.Agent) error
}

// StoreState is the DesiredState of an agent that runs beside the store.
type StoreState struct{ Store controlplane.Store }

var _ DesiredState = StoreState{}

// Load implements DesiredState.
func (s StoreState) Load(ctx context.Context) (*controlplane.State, error) {
	return controlplane.LoadState(ctx, s.Store)
}

// Watch implements DesiredState.
func (s StoreState) Watch(ctx context.Context, from int64) (<-chan controlplane.Event, func() error, error) {
	w, err := s.Store.Watch(ctx, from)
	if err != nil {
		return nil, nil, err
	}
	return w.C, w.Err, nil
}

// Revision implements DesiredState.
func (s StoreState) Revision(context.Context) (int64, error) { return s.Store.Revision(), nil }

// SetPortBinding implements DesiredState.
func (s StoreState) SetPortBinding(ctx context.Context, host, id string, b controlplane.PortBinding) (bool, error) {
	return controlplane.SetPortBinding(ctx, s.Store, host, id, b)
}

// Heartbeat implements DesiredState.
func (s StoreState) Heartbeat(ctx context.Context, ag controlplane.Agent) error {
	return controlplane.Heartbeat(ctx, s.Store, ag, time.Now())
}
