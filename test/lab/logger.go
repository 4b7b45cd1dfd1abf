package lab

import (
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Logger returns a debug logger that writes to t.Log while the test runs and drops what
// is logged after the test's cleanups have run. Background goroutines (libovsdb's
// reconnect and monitor loops) may still log after Close; a zaptest logger turns that
// into "Log in goroutine after Test has completed", a panic that fails whatever test
// runs next. Call it before starting anything that logs, so its cleanup runs last.
func Logger(t testing.TB) *zap.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), zapcore.DebugLevel))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Helper()
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
