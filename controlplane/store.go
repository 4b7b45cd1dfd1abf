package controlplane

import (
	"context"
	"errors"
)

// Store errors callers branch on.
var (
	// ErrNotFound: no object or claim under that key.
	ErrNotFound = errors.New("not found")
	// ErrClaimed: the claim key is held by another owner.
	ErrClaimed = errors.New("already claimed")
	// ErrCompacted: a watch asked to resume from a revision older than the retained event
	// log; the watcher must list again and watch from the store's current revision.
	ErrCompacted = errors.New("revision compacted")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("store closed")
)

// Store is the revisioned object store behind the API. Objects are opaque values (the
// API stores Neutron JSON) addressed by kind and id. Every Update is one transaction with
// one new revision; the watch stream carries every object change with its revision.
// Claims are internal uniqueness keys (an IP in a subnet, a MAC on a network, a VNI)
// written in the same transactions but not watched.
//
// Implementations: the bbolt file (OpenBolt). An etcd-backed Store can implement the
// same contract (etcd transactions, its revisions and watch).
type Store interface {
	// View runs fn on a consistent read-only snapshot. Safe for concurrent use.
	View(ctx context.Context, fn func(ReadTx) error) error
	// Update runs fn exactly once inside a read-write transaction. If fn returns an error
	// (or panics) none of its writes are applied and Update returns that error. On success
	// the writes are durable (fsync'd) before Update returns, and they carry one new
	// revision, which Update returns (the current revision if fn wrote nothing).
	// Updates are serialized; concurrent callers may share one disk commit.
	Update(ctx context.Context, fn func(Tx) error) (int64, error)
	// Watch streams every object event with revision > from, in revision order, first the
	// retained history then live events. from = 0 with a compacted history fails with
	// ErrCompacted, as any from older than the retained log does. The stream ends when
	// ctx is done or the store closes; Watch.Err then says why.
	Watch(ctx context.Context, from int64) (*Watch, error)
	// Revision returns the revision of the last committed write.
	Revision() int64
	// Close stops watches and closes the store; pending Updates fail with ErrClosed.
	Close() error
}

// ReadTx reads a snapshot. Values passed to callbacks are only valid during the call.
type ReadTx interface {
	// Get returns the object's value, or ErrNotFound.
	Get(kind, id string) ([]byte, error)
	// List calls fn for every object of kind in id order; fn's error stops the walk and
	// is returned.
	List(kind string, fn func(id string, value []byte) error) error
	// ListBy calls fn for every object of kind whose index name holds value, in id order.
	ListBy(kind, index, value string, fn func(id string, value []byte) error) error
	// Count returns how many objects of kind have index name = value (0 if none).
	Count(kind, index, value string) (int, error)
	// ClaimOwner returns the owner holding key in space, or ErrNotFound.
	ClaimOwner(space, key string) (string, error)
	// Claims calls fn for the claims in space whose key has prefix and is >= from, in
	// key order; fn returns false to stop.
	Claims(space, prefix, from string, fn func(key, owner string) bool) error
}

// Tx reads and writes inside an Update.
type Tx interface {
	ReadTx
	// Put creates or replaces an object with its index entries (the old entries of a
	// replaced object are dropped). It records a created or updated event.
	Put(kind, id string, value []byte, index ...IndexEntry) error
	// Delete removes the object and its index entries; ErrNotFound if absent. It records
	// a deleted event carrying the last value.
	Delete(kind, id string) error
	// Claim takes key in space for owner; ErrClaimed if another owner holds it,
	// idempotent for the same owner.
	Claim(space, key, owner string) error
	// Release drops a claim; no-op if absent.
	Release(space, key string) error
}

// IndexEntry is one secondary-index value of an object (an object may have several
// entries with the same name, e.g. one per subnet of a port).
type IndexEntry struct {
	Name, Value string
}

// EventType says what happened to an object.
type EventType string

// Event types.
const (
	EventCreated EventType = "created"
	EventUpdated EventType = "updated"
	EventDeleted EventType = "deleted"
)

// Event is one object change. Value is the new value (the last value for a delete).
type Event struct {
	Revision int64
	Type     EventType
	Kind     string
	ID       string
	Value    []byte
}

// Watch is a running watch: read C until it closes, then Err says why.
type Watch struct {
	C    <-chan Event
	done chan struct{}
	err  error
}

// Err returns why the stream ended (context error, ErrCompacted, ErrClosed); nil while
// it runs.
func (w *Watch) Err() error {
	select {
	case <-w.done:
		return w.err
	default:
		return nil
	}
}
