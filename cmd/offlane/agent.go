package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/offlane/offlane/agent"
	"github.com/offlane/offlane/agent/metrics"
	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/kernel"
	"github.com/offlane/offlane/kernel/dhcp"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
)

// agentFlags are the node agent's flags (`offlane serve --agent` and `offlane agent`).
type agentFlags struct {
	g          *globalOptions
	standalone bool // `offlane agent`: no --agent flag, the agent always runs
	enabled    bool
	nodeConfig string
	host       string
	stateDir   string
	l3Backend  string
	planFile   string
	metrics    string
	ovsNetns   string
	memLimit   string
	memBytes   int64 // memLimit parsed by validate (0: no limit)
	pprof      bool
}

// defaultAgentMemoryLimit is `offlane agent`'s soft memory limit: at 10,000 ports the
// agent holds about 100 MB live, and without a limit the Go runtime lets its heap grow to
// twice what the last collection kept (GOGC=100) and keeps the pages.
const defaultAgentMemoryLimit = "150MiB"

// agentRuntime is a built agent: run it, then close it; Metrics serves /metrics,
// /healthz and /readyz when --metrics-listen was given.
type agentRuntime struct {
	run     func(context.Context) error
	close   func()
	metrics http.Handler
}

func (f *agentFlags) register(fs *pflag.FlagSet) {
	with, stateDefault := "with --agent: ", "--data"
	if f.standalone {
		with, stateDefault = "", defaultAgentStateDir
	} else {
		fs.BoolVar(&f.enabled, "agent", false, "also run this node's agent in the same process (all-in-one): it programs OVS from the store")
	}
	fs.StringVar(&f.nodeConfig, "node-config", "", with+"the node config (the YAML `offlane node apply` takes); the agent applies it too")
	fs.StringVar(&f.host, "host", "", with+"this node's binding:host_id (default: the machine's hostname)")
	fs.StringVar(&f.stateDir, "state-dir", "", with+"where the agent keeps its state (default: "+stateDefault+")")
	fs.StringVar(&f.l3Backend, "l3-backend", "auto", with+"where routers run: openflow (in the pipeline), nftables (qrouter namespaces) or auto")
	fs.StringVar(&f.planFile, "plan-file", defaultNodePlan, with+"where to save the node plan `offlane explain` reads")
	fs.StringVar(&f.ovsNetns, "ovs-netns", "", with+"the network namespace ovs-vswitchd runs in (\"\" = this one); router and DHCP ports are created there")
	fs.StringVar(&f.metrics, "metrics-listen", "", with+"serve Prometheus /metrics, /healthz and /readyz on this address:port (e.g. 127.0.0.1:9477)")
	memDefault := ""
	if f.standalone {
		memDefault = defaultAgentMemoryLimit
	}
	fs.BoolVar(&f.pprof, "pprof", false, with+"also serve Go's profiles (/debug/pprof/heap, /debug/pprof/profile, ...) on --metrics-listen")
	fs.StringVar(&f.memLimit, "memory-limit", memDefault, with+"the Go runtime's soft memory limit (e.g. 150MiB, 1GiB; \"off\" for none; the GOMEMLIMIT environment variable wins)")
}

// applyMemoryLimit sets the runtime's soft memory limit from --memory-limit (checked by
// validate) unless GOMEMLIMIT is set (the runtime read it already).
func (f *agentFlags) applyMemoryLimit(getenv func(string) string) {
	if f.memBytes > 0 && getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(f.memBytes)
	}
}

// parseSize reads a byte count with an optional KiB, MiB or GiB suffix.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for suf, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suf) {
			s, mult = strings.TrimSuffix(s, suf), m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q", s)
	}
	return n * mult, nil
}

func (f *agentFlags) validate(dataDir string) error {
	if f.standalone {
		f.enabled = true
	}
	if !f.enabled {
		if f.nodeConfig != "" || f.host != "" || f.stateDir != "" || f.metrics != "" || f.pprof || f.memLimit != "" {
			return usageErrorf("--node-config, --host, --state-dir, --metrics-listen, --pprof and --memory-limit are agent flags: add --agent")
		}
		return nil
	}
	if f.nodeConfig == "" {
		return usageErrorf("the agent needs --node-config FILE (the node config `offlane node apply` takes)")
	}
	switch f.l3Backend {
	case "auto", "openflow", "nftables":
	default:
		return usageErrorf("--l3-backend %q: want openflow, nftables or auto", f.l3Backend)
	}
	if f.host == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return usageErrorf("--host: the hostname is unknown (%v): give --host", err)
		}
		f.host = h
	}
	if f.stateDir == "" {
		f.stateDir = dataDir
	}
	if f.metrics != "" {
		if _, _, err := net.SplitHostPort(f.metrics); err != nil {
			return usageErrorf("--metrics-listen %q: want host:port, e.g. 127.0.0.1:9477 (%v)", f.metrics, err)
		}
	}
	if f.pprof && f.metrics == "" {
		return usageErrorf("--pprof serves on the metrics listener: give --metrics-listen too")
	}
	if f.memLimit != "" && f.memLimit != "off" {
		n, err := parseSize(f.memLimit)
		if err != nil || n < 16<<20 {
			return usageErrorf("--memory-limit %q: give a size of at least 16MiB such as 150MiB or 1GiB, or off", f.memLimit)
		}
		f.memBytes = n
	}
	return nil
}

// startAgent builds the agent on st (the embedded store or a remote server) and returns
// it with a function that runs it until ctx ends, and one that releases its connections.
func (f *agentFlags) startAgent(ctx context.Context, st agent.DesiredState, log *zap.Logger) (*agentRuntime, error) {
	f.applyMemoryLimit(os.Getenv)
	no := &nodeOptions{g: f.g, config: f.nodeConfig, detect: detectHardware}
	spec, err := no.load(ctx)
	if err != nil {
		return nil, err
	}
	c := spec.Config
	var tlsConf *tls.Config
	if c.TLS != nil {
		if tlsConf, err = ovsdpdk.TLSFromFiles(c.TLS.PrivateKey, c.TLS.Certificate, c.TLS.CACert); err != nil {
			return nil, usageErrorf("%s: tls: %w", f.nodeConfig, err)
		}
	}
	client, err := ovsdpdk.Connect(ctx, ovsdpdk.Options{Endpoint: c.OVSDB, TLS: tlsConf, Logger: log.Named("ovsdb")})
	if err != nil {
		return nil, fmt.Errorf("%w (is ovsdb-server running? the endpoint is the ovsdb key of %s)", err, f.nodeConfig)
	}
	var tunnel netip.Addr
	if c.Tunnel != nil {
		if p, err := netip.ParsePrefix(c.Tunnel.LocalIP); err == nil {
			tunnel = p.Addr()
		} else if a, err := netip.ParseAddr(c.Tunnel.LocalIP); err == nil {
			tunnel = a
		}
	}
	runDir := ovsdpdk.DefaultOVSRunDir
	if path, ok := strings.CutPrefix(c.OVSDB, "unix:"); ok {
		runDir = filepath.Dir(path) // bridges' .mgmt sockets sit beside db.sock
	}
	of := ovsdpdk.NewOfctl(ovsdpdk.OfctlOptions{RunDir: runDir})
	if err := os.MkdirAll(f.stateDir, 0o750); err != nil {
		client.Close()
		return nil, fmt.Errorf("state dir: %w", err)
	}
	planFile := f.planFile
	var (
		ag  *agent.Agent
		obs agent.Observer
		m   *metrics.Metrics
	)
	// ovs-vswitchd's control socket: PMD and datapath statistics, conntrack flushes
	appctl := ovsdpdk.NewUnixctl(ovsdpdk.UnixctlOptions{RunDir: runDir})
	if f.metrics != "" {
		m = metrics.New(prometheus.NewRegistry(), metrics.SourceFuncs{
			PortsFunc:          func() []metrics.PortInfo { return ag.MetricPorts() },
			FlowCountsFunc:     func() []metrics.FlowCount { return ag.MetricFlowCounts() },
			InterfaceStatsFunc: client.InterfaceStats,
			PMDStatsFunc:       appctl.PMDStats,
			DatapathFlowsFunc: func(ctx context.Context) ([]metrics.DatapathFlowCount, error) {
				fl, err := appctl.DatapathFlows(ctx)
				return metrics.CountDatapathFlows(fl), err
			},
		}, metrics.Options{Version: version, OVSDBConnected: client.Connected, Logger: log.Named("metrics")})
		obs = m
	}
	ports := ovsdpdk.NewPorts(client, ovsdpdk.PortsOptions{Bridge: c.IntegrationBridge, SocketDir: c.VhostUserSocketDir})
	plugger := kernel.NewPlugger(kernel.PlugOptions{HostNamespace: f.ovsNetns, Switch: ports})
	routers := kernel.NewRouters(kernel.RoutersOptions{HostNamespace: f.ovsNetns, Switch: ports, Logger: log.Named("routers")})
	dhcpMgr, err := dhcp.NewManager(dhcp.ManagerOptions{Plumber: plugger, Logger: log})
	if err != nil {
		client.Close()
		return nil, err
	}
	direct, closeDirect, err := directPorts(ctx, ports, log) // agent_sriov_linux.go
	if err != nil {
		_ = dhcpMgr.Close()
		client.Close()
		return nil, err
	}
	plans := newPlanWriter(planFile, log)
	closeAll := func() {
		plans.close()
		if err := dhcpMgr.Close(); err != nil {
			log.Warn("stop DHCP servers", zap.Error(err))
		}
		closeDirect()
		client.Close()
	}
	detect := func(ctx context.Context) (*hwdetect.Node, error) {
		return hwdetect.Detect(ctx, hwdetect.Options{OVS: ovsdpdk.NewProber(c.OVSDB), Logger: log.Named("detect")})
	}
	if direct != nil {
		detect = agent.WithSRIOVInventory(detect, direct.SRIOV)
	}
	ag, err = agent.New(agent.Config{Host: f.host, Layout: ovsdpdk.NodeLayout(spec), TunnelIP: tunnel, StateDir: f.stateDir, L3Backend: f.l3Backend},
		agent.Deps{
			State: st, OVS: client, Ports: ports, Stages: []agent.Stage{agent.RouterStage{Routers: routers, Host: f.host}, agent.DHCPStage{Manager: dhcpMgr}},
			Flows: ovsdpdk.NewFlows(of, ovsdpdk.FlowsOptions{Logger: log.Named("flows")}), OpenFlow: of,
			Meters: ovsdpdk.NewMeters(of, log.Named("meters")), QoS: ovsdpdk.NewQoS(client, log.Named("qos")),
			ProbeNeighbours: func(ctx context.Context, p []offload.NeighbourProbe) error {
				return ovsdpdk.ProbeNeighbours(ctx, of, p)
			},
			Detect:       detect,
			Direct:       direct,
			Conntrack:    appctl,
			OnReconciled: plans.offer,
			Observer:     obs,
			Logger:       log,
		})
	if err != nil {
		closeAll()
		return nil, usageError{err}
	}
	rt := &agentRuntime{run: ag.Run, close: closeAll}
	if m != nil {
		rt.metrics = m.Handler()
	}
	return rt, nil
}

// serveMetrics starts the agent's /metrics, /healthz and /readyz listener when
// --metrics-listen was given; the returned function stops it.
func (f *agentFlags) serveMetrics(rt *agentRuntime, log *zap.Logger) (func(), error) {
	if rt.metrics == nil {
		return func() {}, nil
	}
	mln, err := net.Listen("tcp", f.metrics)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", f.metrics, err)
	}
	h := rt.metrics
	if f.pprof {
		// Go's profiles of the agent (heap, CPU, goroutines) beside its metrics
		mux := http.NewServeMux()
		mux.Handle("/", rt.metrics)
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		h = mux
	}
	ms := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: zap.NewStdLog(log)}
	go func() { _ = ms.Serve(mln) }()
	fmt.Fprintf(f.g.stdout, "offlane: metrics on http://%s/metrics (and /healthz, /readyz)\n", mln.Addr())
	return func() { _ = ms.Close() }, nil
}
