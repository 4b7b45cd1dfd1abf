package main

import (
	"os"
	"path/filepath"
	"sync"

	"go.uber.org/zap"

	"github.com/offlane/offlane/agent"
)

// planWriter saves the node plan `offlane explain` reads after each reconcile, off the
// agent's loop: at 10,000 ports the file is tens of MB of JSON, which would otherwise
// add its encoding to every reconcile. Results that come while one is being written
// replace each other: the latest is written next.
type planWriter struct {
	path string
	log  *zap.Logger
	mu   sync.Mutex
	next *agent.Result
	kick chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
}

func newPlanWriter(path string, log *zap.Logger) *planWriter {
	w := &planWriter{path: path, log: log, kick: make(chan struct{}, 1), done: make(chan struct{})}
	if path == "" {
		return w
	}
	w.wg.Add(1)
	go w.run()
	return w
}

// offer hands the writer a reconcile's result (agent.Deps.OnReconciled).
func (w *planWriter) offer(r agent.Result) {
	if w.path == "" {
		return
	}
	w.mu.Lock()
	w.next = &r
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *planWriter) run() {
	defer w.wg.Done()
	for {
		select {
		case <-w.done:
			w.write() // the last result, if one is pending
			return
		case <-w.kick:
			w.write()
		}
	}
}

func (w *planWriter) write() {
	w.mu.Lock()
	r := w.next
	w.next = nil
	w.mu.Unlock()
	if r == nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(w.path), 0o750); err != nil {
		w.log.Warn("save node plan", zap.Error(err))
		return
	}
	if err := writeNodePlan(w.path, r.Layout, r.IR, r.Plan); err != nil {
		w.log.Warn("save node plan", zap.Error(err))
	}
}

// close writes the pending result and stops the writer.
func (w *planWriter) close() {
	if w.path == "" {
		return
	}
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	w.wg.Wait()
}
