package metrics

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/offload"
)

// Options configure Metrics.
type Options struct {
	// Version is the build's version (offlane_build_info{version}).
	Version string
	// Node is the node's detected capabilities (offlane_nic_info); SetNode replaces it.
	Node *hwdetect.Node
	// ScrapeTimeout bounds the Sources calls of one scrape (default 3 s; Prometheus's
	// own scrape timeout is 10 s by default).
	ScrapeTimeout time.Duration
	// OVSDBConnected, when set, is asked at every /readyz, in addition to what
	// SetOVSDBConnected last said (e.g. ovsdpdk.Client.Connected).
	OVSDBConnected func() bool
	// NoRuntimeCollectors leaves out the Go runtime and process collectors (go_*,
	// process_*), e.g. when the caller registers them itself.
	NoRuntimeCollectors bool
	// Logger receives source failures (when a source starts and stops failing).
	Logger *zap.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Metrics is the agent's instrumentation. Its methods are safe for concurrent use; the
// Observe/Set methods are cheap (no I/O) and may be called from the reconcile loop.
type Metrics struct {
	src     Sources
	gather  prometheus.Gatherer
	log     *zap.Logger
	timeout time.Duration
	now     func() time.Time
	ovsdbFn func() bool

	reconcileDur *prometheus.HistogramVec
	reconciles   *prometheus.CounterVec
	errs         *prometheus.CounterVec
	changes      *prometheus.CounterVec
	ctFlushes    prometheus.Counter
	watchLag     prometheus.Gauge
	lastSync     prometheus.Gauge
	ovsdbDur     prometheus.Histogram
	bundleDur    prometheus.Histogram

	mu        sync.Mutex
	synced    bool
	ovsdb     connState
	decisions map[decisionKey]int
	routers   map[routerKey]int
	nics      []nicInfo
	sourceOK  map[string]bool // last outcome per source, to log transitions only
}

type connState uint8

const (
	connUnknown connState = iota
	connUp
	connDown
)

type decisionKey struct{ feature, backend, reason string }
type routerKey struct{ backend, reason string }
type nicInfo struct{ name, driver, mode string }

// Change kinds for AddChanges.
const (
	ChangeAdd    = "add"
	ChangeModify = "modify"
	ChangeDelete = "delete"
	// ChangeRepair counts the flow mods the periodic drift check sent.
	ChangeRepair = "repair"
)

// Error kinds the agent may pass to ObserveError (any short snake_case word will do).
const (
	ErrorReconcile = "reconcile" // the default kind of a failed reconcile
	ErrorOVSDB     = "ovsdb"
	ErrorOpenFlow  = "openflow"
	ErrorStore     = "store"
	ErrorWatch     = "watch"
	ErrorBinding   = "binding"
	ErrorConntrack = "conntrack" // a conntrack flush after a security group change
)

// Kinded is an error that names its kind for offlane_errors_total{kind}.
type Kinded interface {
	error
	ErrorKind() string
}

// New registers the agent's metrics (and, unless opts.NoRuntimeCollectors, the Go and
// process collectors) on reg, which must also be a prometheus.Gatherer (a
// *prometheus.Registry) for Handler to serve it. It panics when a metric is already
// registered on reg: that is a wiring bug, as with prometheus.MustRegister.
func New(reg prometheus.Registerer, src Sources, opts Options) *Metrics {
	m := &Metrics{src: src, log: opts.Logger, timeout: opts.ScrapeTimeout, now: opts.Now, ovsdbFn: opts.OVSDBConnected,
		decisions: map[decisionKey]int{}, routers: map[routerKey]int{}, sourceOK: map[string]bool{}}
	if m.log == nil {
		m.log = zap.NewNop()
	}
	m.log = m.log.Named("metrics")
	if m.timeout <= 0 {
		m.timeout = 3 * time.Second
	}
	if m.now == nil {
		m.now = time.Now
	}
	if g, ok := reg.(prometheus.Gatherer); ok {
		m.gather = g
	}
	m.reconcileDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "offlane_reconcile_duration_seconds",
		Help:    "Time of one reconcile, from reading the desired state to the flows and bindings applied, by mode (full or incremental).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12), // 1 ms .. 60 s
	}, []string{"mode"})
	m.reconciles = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "offlane_reconciles_total",
		Help: "Reconciles run, by mode (full or incremental) and result (success or error).",
	}, []string{"mode", "result"})
	m.errs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "offlane_errors_total",
		Help: "Errors the agent met, by kind (reconcile, ovsdb, openflow, store, watch, binding, ...).",
	}, []string{"kind"})
	m.changes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "offlane_changes_applied_total",
		Help: "Changes the agent applied to the dataplane, by kind (add, modify, delete).",
	}, []string{"kind"})
	m.ctFlushes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "offlane_conntrack_flushes_total",
		Help: "Conntrack flushes applied after security group changes: one per removed permission and port address, cutting the connections it had allowed (failures count in offlane_errors_total{kind=\"conntrack\"}).",
	})
	m.watchLag = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "offlane_watch_lag_revisions",
		Help: "Store revisions the agent has not reconciled yet (the store's revision minus the last one applied).",
	})
	m.lastSync = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "offlane_last_successful_sync_timestamp_seconds",
		Help: "Unix time of the last reconcile that succeeded (0: none yet).",
	})
	m.ovsdbDur = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "offlane_ovsdb_transaction_duration_seconds",
		Help:    "Latency of OVSDB transactions the agent committed.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5 ms .. 4 s
	})
	m.bundleDur = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "offlane_openflow_bundle_duration_seconds",
		Help:    "Latency of OpenFlow bundles (one atomic flow-mod batch per bridge) the agent sent.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms .. 16 s
	})
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "offlane_build_info",
		Help: "Always 1; the labels say which offlane build runs.",
	}, []string{"version", "go_version"})
	version := opts.Version
	if version == "" {
		version = "unknown"
	}
	build.WithLabelValues(version, runtime.Version()).Set(1)
	m.SetNode(opts.Node)

	cs := []prometheus.Collector{m.reconcileDur, m.reconciles, m.errs, m.changes, m.ctFlushes, m.watchLag, m.lastSync,
		m.ovsdbDur, m.bundleDur, build, &collector{m: m}}
	if !opts.NoRuntimeCollectors {
		cs = append(cs, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	reg.MustRegister(cs...)
	return m
}

// ObserveReconcile records one reconcile: its duration by mode, and on success the
// sync time (and readiness); on failure an error of the kind the error names (Kinded)
// or ErrorReconcile. changes is the number of flow mods it sent; the per-kind counter
// is fed by ObserveFlowSync and AddChanges, which know add from modify from delete.
func (m *Metrics) ObserveReconcile(full bool, d time.Duration, changes int, err error) {
	_ = changes
	mode := "incremental"
	if full {
		mode = "full"
	}
	m.reconcileDur.WithLabelValues(mode).Observe(d.Seconds())
	if err != nil {
		m.reconciles.WithLabelValues(mode, "error").Inc()
		kind := ErrorReconcile
		var k Kinded
		if errors.As(err, &k) && k.ErrorKind() != "" {
			kind = k.ErrorKind()
		}
		m.errs.WithLabelValues(kind).Inc()
		return
	}
	m.reconciles.WithLabelValues(mode, "success").Inc()
	m.lastSync.Set(float64(m.now().UnixNano()) / 1e9)
	m.mu.Lock()
	m.synced = true
	m.mu.Unlock()
}

// ObserveError counts one error of kind outside a reconcile (a lost watch, a failed
// status write-back, ...).
func (m *Metrics) ObserveError(kind string) { m.errs.WithLabelValues(kind).Inc() }

// AddChanges counts n dataplane changes of kind (ChangeAdd, ChangeModify,
// ChangeDelete).
func (m *Metrics) AddChanges(kind string, n int) {
	if n > 0 {
		m.changes.WithLabelValues(kind).Add(float64(n))
	}
}

// AddConntrackFlushes counts n conntrack flushes applied.
func (m *Metrics) AddConntrackFlushes(n int) {
	if n > 0 {
		m.ctFlushes.Add(float64(n))
	}
}

// FlowSync is what one flow sync did on one bridge (ovsdpdk.BridgeSync has these).
type FlowSync struct {
	Added, Replaced, Modified, Deleted int
	Bundled                            bool          // a bundle was sent
	Took                               time.Duration // the bundle's latency
}

// ObserveFlowSync counts a bridge sync's flow mods by kind (a replaced flow is an add)
// and, when a bundle was sent, its latency.
func (m *Metrics) ObserveFlowSync(s FlowSync) {
	m.AddChanges(ChangeAdd, s.Added+s.Replaced)
	m.AddChanges(ChangeModify, s.Modified)
	m.AddChanges(ChangeDelete, s.Deleted)
	if s.Bundled {
		m.ObserveBundle(s.Took)
	}
}

// ObserveOVSDB records the latency of one OVSDB transaction.
func (m *Metrics) ObserveOVSDB(d time.Duration) { m.ovsdbDur.Observe(d.Seconds()) }

// ObserveBundle records the latency of one OpenFlow bundle.
func (m *Metrics) ObserveBundle(d time.Duration) { m.bundleDur.Observe(d.Seconds()) }

// SetWatchLag sets how many store revisions the agent is behind.
func (m *Metrics) SetWatchLag(revisions int64) { m.watchLag.Set(float64(revisions)) }

// SetOVSDBConnected says whether the OVSDB connection is up (readiness and
// offlane_ovsdb_connected).
func (m *Metrics) SetOVSDBConnected(up bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ovsdb = connDown
	if up {
		m.ovsdb = connUp
	}
}

// SetPlan replaces the decisions behind offlane_feature_backend and
// offlane_router_backend: one series per (feature, backend, reason) counting the ports
// with that decision, and per (backend, reason) counting routers. Series of decisions no
// longer in the plan disappear. nil clears them.
func (m *Metrics) SetPlan(plan *offload.Plan) {
	dec := map[decisionKey]int{}
	rts := map[routerKey]int{}
	if plan != nil {
		for i := range plan.Ports {
			for _, d := range plan.Ports[i].Decisions {
				dec[decisionKey{string(d.Feature), string(d.Backend), d.Reason}]++
			}
		}
		for _, r := range plan.Routers {
			rts[routerKey{string(r.Backend), r.Reason}]++
		}
	}
	m.mu.Lock()
	m.decisions, m.routers = dec, rts
	m.mu.Unlock()
}

// UpdatePlan is SetPlan(cur) after a change that touched the port plans of ports only:
// it moves the decision counts by those ports' entries in prev and cur (what a one-port
// change costs, instead of a pass over every port of the node), and recounts the routers.
// prev must be the plan last given to SetPlan or UpdatePlan.
func (m *Metrics) UpdatePlan(prev, cur *offload.Plan, ports []string) {
	m.mu.Lock()
	dec := maps.Clone(m.decisions)
	m.mu.Unlock()
	if dec == nil {
		dec = map[decisionKey]int{}
	}
	seen := make(map[string]bool, len(ports))
	for _, id := range ports {
		if seen[id] {
			continue
		}
		seen[id] = true
		for _, p := range []struct {
			plan *offload.Plan
			by   int
		}{{prev, -1}, {cur, 1}} {
			if p.plan == nil {
				continue
			}
			if pp := p.plan.Port(id); pp != nil {
				for _, d := range pp.Decisions {
					k := decisionKey{string(d.Feature), string(d.Backend), d.Reason}
					if dec[k] += p.by; dec[k] <= 0 {
						delete(dec, k)
					}
				}
			}
		}
	}
	rts := map[routerKey]int{}
	if cur != nil {
		for _, r := range cur.Routers {
			rts[routerKey{string(r.Backend), r.Reason}]++
		}
	}
	m.mu.Lock()
	m.decisions, m.routers = dec, rts
	m.mu.Unlock()
}

// SetNode replaces the node capabilities behind offlane_nic_info: one series per NIC
// that is an uplink candidate, with the mode detection recommends for it.
func (m *Metrics) SetNode(node *hwdetect.Node) {
	var nics []nicInfo
	if node != nil {
		for _, n := range node.NICs {
			if n.RecommendedMode == "" {
				continue // VFs, representors, virtual interfaces
			}
			nics = append(nics, nicInfo{name: n.Name, driver: n.Driver, mode: string(n.RecommendedMode)})
		}
	}
	m.mu.Lock()
	m.nics = nics
	m.mu.Unlock()
}

// Ready says whether the agent is ready, and if not, why: it has reconciled
// successfully at least once and OVSDB is connected.
func (m *Metrics) Ready() (bool, string) {
	m.mu.Lock()
	synced := m.synced
	m.mu.Unlock()
	switch {
	case !synced:
		return false, "no successful sync yet"
	case !m.ovsdbConnected():
		return false, "OVSDB is disconnected"
	}
	return true, "ok"
}

// ovsdbConnected: what SetOVSDBConnected last said and Options.OVSDBConnected says now;
// before either says anything, a successful sync proves the connection.
func (m *Metrics) ovsdbConnected() bool {
	m.mu.Lock()
	conn, synced := m.ovsdb, m.synced
	m.mu.Unlock()
	if conn == connDown || (m.ovsdbFn != nil && !m.ovsdbFn()) {
		return false
	}
	return conn == connUp || m.ovsdbFn != nil || synced
}

// Handler serves /metrics (the registry New was given, in the Prometheus text or
// OpenMetrics format), /healthz (200 while the process serves) and /readyz (200 once
// Ready, else 503 with the reason as plain text).
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	if m.gather != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(m.gather, promhttp.HandlerOpts{
			ErrorHandling:     promhttp.ContinueOnError,
			ErrorLog:          zapErrorLog{m.log},
			EnableOpenMetrics: true,
		}))
	} else {
		mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "metrics: the registry given to metrics.New is not a Gatherer", http.StatusInternalServerError)
		})
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		ok, why := m.Ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintln(w, "not ready: "+why)
			return
		}
		_, _ = fmt.Fprintln(w, "ok")
	})
	return mux
}

type zapErrorLog struct{ log *zap.Logger }

func (z zapErrorLog) Println(v ...any) {
	z.log.Warn("serving /metrics", zap.String("error", fmt.Sprint(v...)))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
