package agent_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/offlane/offlane/agent"
	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/kernel"
	"github.com/offlane/offlane/kernel/dhcp"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

// fullEnv is one node with the agent built as `offlane serve --agent` builds it
// (cmd/offlane/agent.go): the router (nftables qrouter namespaces) and DHCP stages,
// OpenFlow meters, OVSDB QoS and next-hop probes, with namespaces named after the lab so
// the lab's sweeper knows them.
type fullEnv struct {
	*env
	l3       string
	url      string
	hsClient *httptest.Server
	routers  *kernel.Routers
	dhcp     *dhcp.Manager
	plugger  *kernel.Plugger
	meters   *ovsdpdk.Meters
	qos      *ovsdpdk.QoS
	vhostDir string
	tunnel   netip.Addr
	ext      *lab.VM // the external server, on br-phys1's uplink (nil in DPDK labs)
}

type fullOptions struct {
	L3Backend string // agent.Config.L3Backend
	DPDK      bool   // OVS-DPDK (PresetDPDK), no physnets (no external server)
}

func newFullEnv(t *testing.T, fo fullOptions) *fullEnv {
	t.Helper()
	lab.RequireOVS(t)
	lab.Require(t, "ovs-ofctl", "ping", "busybox", "nft", "ethtool")
	o := lab.StartOVS(t, lab.Options{DPDK: fo.DPDK, PresetDPDK: fo.DPDK})
	ctx := context.Background()
	srv, err := controlplane.NewServer(ctx, controlplane.ServerConfig{DataDir: t.TempDir(), Logger: lab.Logger(t).Named("api")})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); _ = srv.Close() })

	c, err := ovsdpdk.Connect(ctx, ovsdpdk.Options{Endpoint: o.Endpoint, Logger: lab.Logger(t).Named("ovsdb")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e := &fullEnv{l3: fo.L3Backend, url: hs.URL, hsClient: hs, vhostDir: filepath.Join(o.Dir, "vhu")}
	if err := os.MkdirAll(e.vhostDir, 0o750); err != nil {
		t.Fatal(err)
	}
	yaml := "ovsdb: " + o.Endpoint + "\ndatapath: netdev\nintegration_bridge: br-int\nvhostuser_socket_dir: " + e.vhostDir +
		"\ntunnel:\n  local_ip: 192.0.2.1/24\n  types: [vxlan]\n"
	e.tunnel = netip.MustParseAddr("192.0.2.1")
	if !fo.DPDK {
		// the "internet": a namespace on br-phys1's uplink, the external subnet's gateway
		e.ext = o.AddVM(t, "extsrv", lab.VMOptions{IP: "172.24.4.1/24"})
		yaml += "physnets:\n  physnet1: {bridge: br-phys1, interface: extsrv}\n"
	}
	cfg, err := ovsdpdk.ParseNodeConfig("node.yaml", strings.NewReader(yaml))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ovsdpdk.Resolve(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ports := ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{Bridge: "br-int", SocketDir: e.vhostDir})
	e.env = &env{t: t, o: o, srv: srv, nc: e.client("proj-a"), c: c, ports: ports,
		of: ovsdpdk.NewOfctl(ovsdpdk.OfctlOptions{RunDir: o.Dir}), layout: ovsdpdk.NodeLayout(spec), stateDir: t.TempDir()}
	log := lab.Logger(t)
	e.plugger = kernel.NewPlugger(kernel.PlugOptions{HostNamespace: o.NS, Switch: ports})
	e.routers = kernel.NewRouters(kernel.RoutersOptions{NamespacePrefix: "ol" + o.ID + "-qrouter-", HostNamespace: o.NS, Switch: ports, Logger: log})
	if e.dhcp, err = dhcp.NewManager(dhcp.ManagerOptions{Plumber: e.plugger, Logger: log, NamespacePrefix: "ol" + o.ID + "-qdhcp-"}); err != nil {
		t.Fatal(err)
	}
	e.meters = ovsdpdk.NewMeters(e.of, log.Named("meters"))
	e.qos = ovsdpdk.NewQoS(c, log.Named("qos"))
	// Cleanups run last-in first-out: the agent stops first (registered last), then the
	// DHCP servers, then the namespaces go.
	t.Cleanup(func() { e.deleteNamespaces("ol" + o.ID + "-") })
	t.Cleanup(func() {
		if err := e.dhcp.Close(); err != nil {
			t.Errorf("stop DHCP servers: %v", err)
		}
	})
	t.Cleanup(e.stop)
	return e
}

// client is a gophercloud networking client acting in project (noauth: X-Project-Id).
func (e *fullEnv) client(project string) *gophercloud.ServiceClient {
	pc := &gophercloud.ProviderClient{HTTPClient: *e.hsClient.Client()}
	return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: e.url + "/", ResourceBase: e.url + "/v2.0/",
		MoreHeaders: map[string]string{"X-Project-Id": project}}
}

// start runs the agent as cmd/offlane/agent.go wires it.
func (e *fullEnv) start() {
	e.t.Helper()
	log := lab.Logger(e.t).Named("agent")
	of := e.of
	ag, err := agent.New(agent.Config{Host: host, Layout: e.layout, TunnelIP: e.tunnel, StateDir: e.stateDir, L3Backend: e.l3,
		Debounce: 50 * time.Millisecond, Resync: 2 * time.Second, Probe: 300 * time.Millisecond},
		agent.Deps{
			Store: e.srv.Store(), OVS: e.c, Ports: e.ports,
			Stages: []agent.Stage{agent.RouterStage{Routers: e.routers, Host: host}, agent.DHCPStage{Manager: e.dhcp}},
			Flows:  ovsdpdk.NewFlows(of, ovsdpdk.FlowsOptions{Logger: log.Named("flows")}), OpenFlow: of,
			Meters: e.meters, QoS: e.qos,
			ProbeNeighbours: func(ctx context.Context, p []offload.NeighbourProbe) error {
				return ovsdpdk.ProbeNeighbours(ctx, of, p)
			},
			Detect: func(ctx context.Context) (*hwdetect.Node, error) {
				return hwdetect.Detect(ctx, hwdetect.Options{OVS: ovsdpdk.NewProber(e.o.Endpoint), Logger: log.Named("detect")})
			},
			Logger: log,
		})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.ag, e.cancel, e.done = ag, cancel, make(chan error, 1)
	go func() { e.done <- ag.Run(ctx) }()
}

func (e *fullEnv) waitReady() {
	e.t.Helper()
	eventually(e.t, "agent ready", 30*time.Second, func() bool { ok, _ := e.ag.Ready(); return ok })
}

// vm plugs a namespace "VM" into a port as `offlane vif plug` does (kernel.Plugger: the
// port's MAC, addresses, the network's MTU, the subnet gateway as default route, TX
// checksum offload off) and removes the namespace at cleanup.
func (e *fullEnv) vm(name string, p *vmPort) *lab.VM {
	e.t.Helper()
	ns := "ol" + e.o.ID + "-" + name
	e.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	spec := kernel.PlugSpec{Namespace: ns, IfName: "eth0", HostIfName: kernel.IfName(kernel.PrefixTap, p.ID), MAC: p.MAC,
		IfaceID: p.ID, MTU: p.MTU, NoTxChecksum: true, Addrs: []netip.Prefix{p.Addr}, Gateway: p.Gateway}
	if _, err := e.plugger.Plug(context.Background(), spec); err != nil {
		e.t.Fatalf("plug %s: %v", name, err)
	}
	return &lab.VM{NS: ns, HostIf: spec.HostIfName, IP: p.Addr.Addr().String(), MAC: p.MAC}
}

// unplug is `offlane vif unplug`.
func (e *fullEnv) unplug(vm *lab.VM) {
	e.t.Helper()
	if err := e.plugger.Unplug(context.Background(), vm.NS, "eth0", vm.HostIf); err != nil {
		e.t.Fatalf("unplug %s: %v", vm.NS, err)
	}
}

// namespaces lists the network namespaces whose names start with prefix.
func namespaces(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	var l []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			l = append(l, f[0])
		}
	}
	sort.Strings(l)
	return l
}

// deleteNamespaces removes the qrouter/qdhcp/VM namespaces this lab made (those of the
// OVS namespace itself and lab VMs are the lab's).
func (e *fullEnv) deleteNamespaces(prefix string) {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], prefix) || f[0] == e.o.NS {
			continue
		}
		_ = exec.Command("ip", "netns", "del", f[0]).Run()
	}
}

// ovsPortNames lists every Port row's name, sorted.
func (e *fullEnv) ovsPortNames() []string {
	e.t.Helper()
	rows, err := e.o.Select("Port", nil, "name")
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		out = append(out, fmt.Sprint(r["name"]))
	}
	sort.Strings(out)
	return out
}

// allFlows dumps every bridge's flows (without statistics) as text, bridge by bridge.
func (e *fullEnv) allFlows() map[string][]string {
	e.t.Helper()
	out := map[string][]string{}
	for _, br := range e.bridges() {
		fl, err := e.of.DumpFlows(context.Background(), br, 0, 0, false)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, f := range fl {
			out[br] = append(out[br], f.String())
		}
		sort.Strings(out[br])
	}
	return out
}

func (e *fullEnv) bridges() []string {
	e.t.Helper()
	rows, err := e.o.Select("Bridge", nil, "name")
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		out = append(out, fmt.Sprint(r["name"]))
	}
	sort.Strings(out)
	return out
}

// meterCount is the number of OpenFlow meters on br-int.
func (e *fullEnv) meterCount() int {
	e.t.Helper()
	m, err := e.of.DumpMeters(context.Background(), "br-int")
	if err != nil {
		e.t.Fatal(err)
	}
	return len(m)
}

// qosRows counts offlane's QoS and Queue rows.
func (e *fullEnv) qosRows() ovsdpdk.QoSRows {
	e.t.Helper()
	r, err := e.qos.Rows(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// hasPort reports whether OVS has a port named name.
func (e *fullEnv) hasPort(name string) bool {
	for _, n := range e.ovsPortNames() {
		if n == name {
			return true
		}
	}
	return false
}

// flowsOn counts the flows with the cookie of an origin on every bridge.
func (e *fullEnv) flowsOn(kind offload.Kind, id string) int {
	e.t.Helper()
	n := 0
	for _, br := range e.bridges() {
		fl, err := e.of.DumpFlows(context.Background(), br, offload.CookieFor(kind, id), ^uint64(0), false)
		if err != nil {
			e.t.Fatal(err)
		}
		n += len(fl)
	}
	return n
}

func nsExists(name string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", name))
	return err == nil
}

func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

func removeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}
