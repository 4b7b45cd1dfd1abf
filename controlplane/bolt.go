package controlplane

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// BoltOptions tunes OpenBolt. The zero value is the production setting.
type BoltOptions struct {
	Logger *zap.Logger
	// EventRetention is how many revisions of events the watch log keeps (default
	// 100,000); a watch resuming from an older revision gets ErrCompacted.
	EventRetention int64
	// MaxBatch caps how many Updates share one disk commit (default 512; 1 turns group
	// commit off, which the benchmark uses as its baseline).
	MaxBatch int
	// NoSync skips bbolt's fsyncs. Benchmarks use it to show what the fsyncs cost; never
	// set it for data you keep: a power loss (not a process crash) can then leave the
	// file's meta page pointing at pages that never reached the disk, which corrupts it.
	NoSync bool
}

// Bucket layout of the bbolt file: all top-level (a nested bucket would dirty its
// parent's page on every write too).
var (
	bucketMeta   = []byte("meta")   // "rev", "compacted" → uint64 BE
	bucketEvents = []byte("events") // rev(8) seq(4) → event
	keyRev       = []byte("rev")
	keyCompacted = []byte("compacted")
)

// objectBucket holds kind's objects: id → record. claimBucket holds space's claims:
// key → owner.
func objectBucket(kind string) []byte { return []byte("o/" + kind) }
func claimBucket(space string) []byte { return []byte("c/" + space) }

// boltStore is the Store on one bbolt file.
//
// Durability and speed: every Update is durable when it returns (bbolt's default fsync
// on commit; NoSync is never used). Throughput comes from group commit: one goroutine
// owns the write transaction and runs every Update that queued while the previous
// commit was being fsync'd in one bbolt transaction. Each fn gets an undo log, so a
// failing fn is rolled back alone (its writes are reverted inside the shared
// transaction) without re-running the others — unlike bbolt's DB.Batch, which re-runs
// the whole batch when one call fails. Nothing waits for a batch to fill: at low load a
// batch is one Update.
type boltStore struct {
	db        *bolt.DB
	log       *zap.Logger
	retention int64
	maxBatch  int

	reqs    chan *updateReq
	closing chan struct{}
	closed  sync.Once
	wg      sync.WaitGroup

	rev       atomic.Int64
	compacted atomic.Int64
	idx       *memIndex

	mu     sync.Mutex
	notify chan struct{} // closed and replaced after every commit that wrote events
}

type updateReq struct {
	ctx  context.Context
	fn   func(Tx) error
	done chan struct{}
	rev  int64
	err  error
}

// OpenBolt opens (creating if needed) the bbolt store at path. It fails after 2 s if
// another process holds the file.
func OpenBolt(_ context.Context, path string, opt BoltOptions) (Store, error) {
	if opt.Logger == nil {
		opt.Logger = zap.NewNop()
	}
	if opt.EventRetention <= 0 {
		opt.EventRetention = 100_000
	}
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 512
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: 2 * time.Second,
		// The freelist is rebuilt by scanning on open instead of written on every
		// commit: fewer pages per fsync, same durability of the data.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		// Map 1 GiB of address space up front: growing the file then needs no remap,
		// which would stall the writer until every reader finishes.
		InitialMmapSize: 1 << 30,
		NoSync:          opt.NoSync,
	})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &boltStore{
		db: db, log: opt.Logger.Named("store"), retention: opt.EventRetention, maxBatch: opt.MaxBatch,
		reqs: make(chan *updateReq), closing: make(chan struct{}), notify: make(chan struct{}), idx: newMemIndex(),
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketEvents} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		s.rev.Store(int64(getU64(m.Get(keyRev))))
		s.compacted.Store(int64(getU64(m.Get(keyCompacted))))
		return s.rebuildIndex(tx)
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: init: %w", path, err)
	}
	s.wg.Add(1)
	go s.commitLoop()
	return s, nil
}

// rebuildIndex loads every object's index entries into the in-memory index.
func (s *boltStore) rebuildIndex(tx *bolt.Tx) error {
	return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		kind, ok := bytes.CutPrefix(name, []byte("o/"))
		if !ok {
			return nil
		}
		return b.ForEach(func(id, raw []byte) error {
			r, err := decodeRecord(raw)
			if err != nil {
				return fmt.Errorf("%s %s: %w", kind, id, err)
			}
			for _, e := range r.index {
				s.idx.add(ixKey(string(kind), e.Name, e.Value), string(id), 0)
			}
			return nil
		})
	})
}

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func putU64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func (s *boltStore) Revision() int64 { return s.rev.Load() }

func (s *boltStore) View(ctx context.Context, fn func(ReadTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// Begin the snapshot and register its revision atomically with respect to the
	// index gc, so no span this reader can see is dropped under it.
	s.idx.readersMu.Lock()
	tx, err := s.db.Begin(false)
	if err != nil {
		s.idx.readersMu.Unlock()
		return err
	}
	rev := int64(getU64(tx.Bucket(bucketMeta).Get(keyRev)))
	s.idx.register(rev)
	s.idx.readersMu.Unlock()
	defer func() {
		_ = tx.Rollback()
		s.idx.unregister(rev)
	}()
	return fn(&boltTx{tx: tx, s: s, snap: rev})
}

func (s *boltStore) Update(ctx context.Context, fn func(Tx) error) (int64, error) {
	r := &updateReq{ctx: ctx, fn: fn, done: make(chan struct{})}
	select {
	case s.reqs <- r:
	case <-s.closing:
		return 0, ErrClosed
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	<-r.done
	return r.rev, r.err
}

func (s *boltStore) Close() error {
	var err error
	s.closed.Do(func() {
		close(s.closing)
		s.wg.Wait()
		err = s.db.Close()
	})
	return err
}

// commitLoop owns every write transaction (see boltStore).
func (s *boltStore) commitLoop() {
	defer s.wg.Done()
	batch := make([]*updateReq, 0, s.maxBatch)
	for {
		batch = batch[:0]
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		case <-s.closing:
			return
		}
	fill:
		for len(batch) < s.maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commit(batch)
		if len(s.idx.pending) > 4096 {
			s.idx.gc(s.rev.Load())
		}
	}
}

func (s *boltStore) commit(batch []*updateReq) {
	rev := s.rev.Load()
	wrote := false
	var memUndo []func() // index changes of the applied Updates, undone if the commit fails
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, r := range batch {
			if err := r.ctx.Err(); err != nil {
				r.err = err // given up while queued: never ran
				continue
			}
			t := &boltTx{tx: tx, s: s, rev: rev + 1, snap: rev + 1}
			r.err = t.run(r.fn)
			switch {
			case r.err != nil:
				if uerr := t.rollback(); uerr != nil {
					return fmt.Errorf("undo failed update: %w", uerr)
				}
			case t.wroteObjects:
				rev++
				wrote = true
				r.rev = rev
			default:
				r.rev = rev
			}
			if r.err == nil {
				for _, u := range t.undo {
					if u.mem != nil {
						memUndo = append(memUndo, u.mem)
					}
				}
			}
		}
		if !wrote {
			return nil
		}
		m := tx.Bucket(bucketMeta)
		if err := m.Put(keyRev, putU64(uint64(rev))); err != nil {
			return err
		}
		return s.compact(tx, rev)
	})
	if err != nil {
		s.log.Error("commit failed", zap.Int("updates", len(batch)), zap.Error(err))
		for i := len(memUndo) - 1; i >= 0; i-- {
			memUndo[i]()
		}
		for _, r := range batch {
			if r.err == nil {
				r.err = fmt.Errorf("store commit: %w", err)
			}
		}
	} else if wrote {
		s.rev.Store(rev)
		s.mu.Lock()
		close(s.notify)
		s.notify = make(chan struct{})
		s.mu.Unlock()
	}
	for _, r := range batch {
		close(r.done)
	}
}

// compact drops events older than the retention window, in steps so one commit stays
// small.
func (s *boltStore) compact(tx *bolt.Tx, rev int64) error {
	old := s.compacted.Load()
	target := rev - s.retention
	if target-old < s.retention/10+1 {
		return nil
	}
	c := tx.Bucket(bucketEvents).Cursor()
	limit := putU64(uint64(target + 1))
	for k, _ := c.First(); k != nil && bytes.Compare(k, limit) < 0; k, _ = c.Next() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketMeta).Put(keyCompacted, putU64(uint64(target))); err != nil {
		return err
	}
	// Visible to watchers only once committed; a rollback leaves the old value, which
	// is merely conservative.
	s.compacted.Store(target)
	return nil
}

func (s *boltStore) Watch(ctx context.Context, from int64) (*Watch, error) {
	if from < 0 {
		return nil, fmt.Errorf("watch from revision %d: must be >= 0", from)
	}
	select {
	case <-s.closing:
		return nil, ErrClosed
	default:
	}
	if c := s.compacted.Load(); from < c {
		return nil, fmt.Errorf("watch from revision %d (history starts after %d): %w", from, c, ErrCompacted)
	}
	out := make(chan Event, 256)
	w := &Watch{C: out, done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		w.err = s.watchLoop(ctx, from, out)
		close(w.done)
		close(out)
	}()
	return w, nil
}

func (s *boltStore) watchLoop(ctx context.Context, last int64, out chan<- Event) error {
	for {
		s.mu.Lock()
		wake := s.notify
		s.mu.Unlock()
		for {
			if last < s.compacted.Load() {
				return fmt.Errorf("watch at revision %d: %w", last, ErrCompacted)
			}
			evs, err := s.readEvents(last, 1024)
			if err != nil {
				return err
			}
			for _, ev := range evs {
				select {
				case out <- ev:
				case <-ctx.Done():
					return ctx.Err()
				case <-s.closing:
					return ErrClosed
				}
				last = ev.Revision
			}
			if len(evs) < 1024 {
				break
			}
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closing:
			return ErrClosed
		}
	}
}

// readEvents returns up to max events with revision > after, whole revisions only
// except when one revision alone exceeds max.
func (s *boltStore) readEvents(after int64, max int) ([]Event, error) {
	var evs []Event
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(putU64(uint64(after + 1))); k != nil; k, v = c.Next() {
			ev, err := decodeEvent(k, v)
			if err != nil {
				return err
			}
			if len(evs) >= max && ev.Revision != evs[len(evs)-1].Revision {
				break
			}
			evs = append(evs, ev)
		}
		return nil
	})
	return evs, err
}

func encodeEvent(ev Event) []byte {
	b := make([]byte, 0, 16+len(ev.Kind)+len(ev.ID)+len(ev.Value))
	b = append(b, ev.Type[0])
	b = binary.AppendUvarint(b, uint64(len(ev.Kind)))
	b = append(b, ev.Kind...)
	b = binary.AppendUvarint(b, uint64(len(ev.ID)))
	b = append(b, ev.ID...)
	return append(b, ev.Value...)
}

func decodeEvent(k, v []byte) (Event, error) {
	bad := fmt.Errorf("event %x: corrupt record", k)
	if len(k) != 12 || len(v) < 1 {
		return Event{}, bad
	}
	ev := Event{Revision: int64(binary.BigEndian.Uint64(k))}
	switch v[0] {
	case 'c':
		ev.Type = EventCreated
	case 'u':
		ev.Type = EventUpdated
	case 'd':
		ev.Type = EventDeleted
	default:
		return Event{}, bad
	}
	rest := v[1:]
	var parts [2][]byte
	for i := range parts {
		n, w := binary.Uvarint(rest)
		if w <= 0 || uint64(len(rest)-w) < n {
			return Event{}, bad
		}
		parts[i] = rest[w : w+int(n)]
		rest = rest[w+int(n):]
	}
	ev.Kind, ev.ID = string(parts[0]), string(parts[1])
	ev.Value = bytes.Clone(rest)
	return ev, nil
}

// boltTx is a ReadTx (read-only bbolt transaction) or a Tx (one fn inside the shared
// write transaction, with its undo log).
type boltTx struct {
	tx           *bolt.Tx
	s            *boltStore
	rev          int64 // the revision this Update writes at; 0 in a read transaction
	snap         int64 // the revision whose index entries this transaction sees
	undo         []undoRec
	seq          uint32
	wroteObjects bool
}

// undoRec restores one bbolt key, or (mem != nil) undoes one in-memory index change.
type undoRec struct {
	b       *bolt.Bucket
	key     []byte
	old     []byte
	existed bool
	mem     func()
}

func (t *boltTx) run(fn func(Tx) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("update panicked: %v", p)
		}
	}()
	return fn(t)
}

func (t *boltTx) rollback() error {
	for i := len(t.undo) - 1; i >= 0; i-- {
		u := t.undo[i]
		if u.mem != nil {
			u.mem()
			continue
		}
		var err error
		if u.existed {
			err = u.b.Put(u.key, u.old)
		} else {
			err = u.b.Delete(u.key)
		}
		if err != nil {
			return err
		}
	}
	t.undo = nil
	return nil
}

// put and del write through the undo log.
func (t *boltTx) put(b *bolt.Bucket, key, val []byte) error {
	old := b.Get(key)
	t.undo = append(t.undo, undoRec{b: b, key: bytes.Clone(key), old: bytes.Clone(old), existed: old != nil})
	return b.Put(key, val)
}

func (t *boltTx) del(b *bolt.Bucket, key []byte) error {
	old := b.Get(key)
	if old == nil {
		return nil
	}
	t.undo = append(t.undo, undoRec{b: b, key: bytes.Clone(key), old: bytes.Clone(old), existed: true})
	return b.Delete(key)
}

func (t *boltTx) bucket(name []byte, create bool) (*bolt.Bucket, error) {
	if b := t.tx.Bucket(name); b != nil || !create {
		return b, nil
	}
	return t.tx.CreateBucket(name)
}

// record: uvarint createRev, uvarint modRev, uvarint n, n × (name, value) as
// uvarint-length strings, then the value.
type record struct {
	createRev, modRev int64
	index             []IndexEntry
	value             []byte
}

func encodeRecord(r record) []byte {
	n := 24 + len(r.value)
	for _, e := range r.index {
		n += 4 + len(e.Name) + len(e.Value)
	}
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, uint64(r.createRev))
	b = binary.AppendUvarint(b, uint64(r.modRev))
	b = binary.AppendUvarint(b, uint64(len(r.index)))
	for _, e := range r.index {
		b = binary.AppendUvarint(b, uint64(len(e.Name)))
		b = append(b, e.Name...)
		b = binary.AppendUvarint(b, uint64(len(e.Value)))
		b = append(b, e.Value...)
	}
	return append(b, r.value...)
}

func decodeRecord(b []byte) (record, error) {
	var r record
	bad := errors.New("corrupt object record")
	var v [3]uint64
	for i := range v {
		x, w := binary.Uvarint(b)
		if w <= 0 {
			return r, bad
		}
		v[i], b = x, b[w:]
	}
	r.createRev, r.modRev = int64(v[0]), int64(v[1])
	if v[2] > uint64(len(b)) {
		return r, bad
	}
	r.index = make([]IndexEntry, v[2])
	for i := range r.index {
		var s [2]string
		for j := range s {
			n, w := binary.Uvarint(b)
			if w <= 0 || uint64(len(b)-w) < n {
				return r, bad
			}
			s[j], b = string(b[w:w+int(n)]), b[w+int(n):]
		}
		r.index[i] = IndexEntry{Name: s[0], Value: s[1]}
	}
	r.value = b
	return r, nil
}

// recordValue skips the header without allocating.
func recordValue(b []byte) ([]byte, error) {
	var v [3]uint64
	for i := range v {
		x, w := binary.Uvarint(b)
		if w <= 0 {
			return nil, errors.New("corrupt object record")
		}
		v[i], b = x, b[w:]
	}
	for i := uint64(0); i < 2*v[2]; i++ {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return nil, errors.New("corrupt object record")
		}
		b = b[w+int(n):]
	}
	return b, nil
}

func (t *boltTx) Get(kind, id string) ([]byte, error) {
	b, _ := t.bucket(objectBucket(kind), false)
	if b == nil {
		return nil, fmt.Errorf("%s %s: %w", kind, id, ErrNotFound)
	}
	raw := b.Get([]byte(id))
	if raw == nil {
		return nil, fmt.Errorf("%s %s: %w", kind, id, ErrNotFound)
	}
	v, err := recordValue(raw)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", kind, id, err)
	}
	return v, nil
}

func (t *boltTx) List(kind string, fn func(id string, value []byte) error) error {
	b, _ := t.bucket(objectBucket(kind), false)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, raw []byte) error {
		v, err := recordValue(raw)
		if err != nil {
			return fmt.Errorf("%s %s: %w", kind, k, err)
		}
		return fn(string(k), v)
	})
}

func (t *boltTx) ListBy(kind, index, value string, fn func(id string, value []byte) error) error {
	ids := t.s.idx.ids(ixKey(kind, index, value), t.snap)
	if len(ids) == 0 {
		return nil
	}
	ob, _ := t.bucket(objectBucket(kind), false)
	if ob == nil {
		return fmt.Errorf("%s: index %s=%s names objects of a kind with none stored", kind, index, value)
	}
	for _, id := range ids {
		raw := ob.Get([]byte(id))
		if raw == nil {
			return fmt.Errorf("%s %s: index %s=%s points to a missing object", kind, id, index, value)
		}
		v, err := recordValue(raw)
		if err != nil {
			return fmt.Errorf("%s %s: %w", kind, id, err)
		}
		if err := fn(id, v); err != nil {
			return err
		}
	}
	return nil
}

func (t *boltTx) Count(kind, index, value string) (int, error) {
	return t.s.idx.count(ixKey(kind, index, value), t.snap), nil
}

func (t *boltTx) ClaimOwner(space, key string) (string, error) {
	b, _ := t.bucket(claimBucket(space), false)
	if b == nil {
		return "", fmt.Errorf("claim %s/%s: %w", space, key, ErrNotFound)
	}
	v := b.Get([]byte(key))
	if v == nil {
		return "", fmt.Errorf("claim %s/%s: %w", space, key, ErrNotFound)
	}
	return string(v), nil
}

func (t *boltTx) Claims(space, prefix, from string, fn func(key, owner string) bool) error {
	b, _ := t.bucket(claimBucket(space), false)
	if b == nil {
		return nil
	}
	c := b.Cursor()
	p := []byte(prefix)
	start := p
	if from > prefix {
		start = []byte(from)
	}
	for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if !fn(string(k), string(v)) {
			return nil
		}
	}
	return nil
}

func (t *boltTx) Put(kind, id string, value []byte, index ...IndexEntry) error {
	if t.rev == 0 {
		return errors.New("put in a read-only transaction")
	}
	if kind == "" || id == "" {
		return errors.New("put: empty kind or id")
	}
	ob, err := t.bucket(objectBucket(kind), true)
	if err != nil {
		return fmt.Errorf("%s %s: %w", kind, id, err)
	}
	r := record{createRev: t.rev, modRev: t.rev, index: index, value: value}
	evType := EventCreated
	if raw := ob.Get([]byte(id)); raw != nil {
		old, err := decodeRecord(raw)
		if err != nil {
			return fmt.Errorf("%s %s: %w", kind, id, err)
		}
		r.createRev = old.createRev
		evType = EventUpdated
		if err := t.dropIndex(kind, id, old.index); err != nil {
			return err
		}
	}
	for _, e := range index {
		t.undo = append(t.undo, undoRec{mem: t.s.idx.add(ixKey(kind, e.Name, e.Value), id, t.rev)})
	}
	if err := t.put(ob, []byte(id), encodeRecord(r)); err != nil {
		return fmt.Errorf("%s %s: %w", kind, id, err)
	}
	return t.event(Event{Type: evType, Kind: kind, ID: id, Value: value})
}

func (t *boltTx) dropIndex(kind, id string, entries []IndexEntry) error {
	for _, e := range entries {
		t.undo = append(t.undo, undoRec{mem: t.s.idx.remove(ixKey(kind, e.Name, e.Value), id, t.rev)})
	}
	return nil
}

func (t *boltTx) Delete(kind, id string) error {
	if t.rev == 0 {
		return errors.New("delete in a read-only transaction")
	}
	ob, _ := t.bucket(objectBucket(kind), false)
	var raw []byte
	if ob != nil {
		raw = ob.Get([]byte(id))
	}
	if raw == nil {
		return fmt.Errorf("%s %s: %w", kind, id, ErrNotFound)
	}
	old, err := decodeRecord(raw)
	if err != nil {
		return fmt.Errorf("%s %s: %w", kind, id, err)
	}
	last := bytes.Clone(old.value)
	if err := t.dropIndex(kind, id, old.index); err != nil {
		return err
	}
	if err := t.del(ob, []byte(id)); err != nil {
		return fmt.Errorf("%s %s: %w", kind, id, err)
	}
	return t.event(Event{Type: EventDeleted, Kind: kind, ID: id, Value: last})
}

func (t *boltTx) event(ev Event) error {
	if t.rev == 0 {
		return errors.New("write in a read-only transaction")
	}
	t.wroteObjects = true
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k, uint64(t.rev))
	binary.BigEndian.PutUint32(k[8:], t.seq)
	t.seq++
	ev.Revision = t.rev
	return t.put(t.tx.Bucket(bucketEvents), k, encodeEvent(ev))
}

func (t *boltTx) Claim(space, key, owner string) error {
	if t.rev == 0 {
		return errors.New("claim in a read-only transaction")
	}
	b, err := t.bucket(claimBucket(space), true)
	if err != nil {
		return fmt.Errorf("claim %s/%s: %w", space, key, err)
	}
	if cur := b.Get([]byte(key)); cur != nil {
		if string(cur) == owner {
			return nil
		}
		return fmt.Errorf("claim %s/%s held by %s: %w", space, key, cur, ErrClaimed)
	}
	return t.put(b, []byte(key), []byte(owner))
}

func (t *boltTx) Release(space, key string) error {
	if t.rev == 0 {
		return errors.New("release in a read-only transaction")
	}
	b, _ := t.bucket(claimBucket(space), false)
	if b == nil {
		return nil
	}
	return t.del(b, []byte(key))
}
