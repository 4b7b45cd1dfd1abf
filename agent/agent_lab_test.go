package agent_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/offlane/offlane/agent"
	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

// env is one node: a private OVS, the API server on a bbolt file, and an agent that can
// be stopped and started again on the same state directory.
type env struct {
	t        *testing.T
	o        *lab.OVS
	srv      *controlplane.Server
	nc       *gophercloud.ServiceClient
	c        *ovsdpdk.Client
	ports    *ovsdpdk.Ports
	of       *ovsdpdk.Ofctl
	layout   *ovsdpdk.Layout
	stateDir string

	ag     *agent.Agent
	cancel context.CancelFunc
	done   chan error
}

const host = "node1"

func newEnv(t *testing.T) *env {
	t.Helper()
	lab.RequireOVS(t)
	lab.Require(t, "ovs-ofctl", "ping")
	o := lab.StartOVS(t, lab.Options{})
	ctx := context.Background()
	srv, err := controlplane.NewServer(ctx, controlplane.ServerConfig{DataDir: t.TempDir(), Logger: lab.Logger(t).Named("api")})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); _ = srv.Close() })
	pc := &gophercloud.ProviderClient{HTTPClient: *hs.Client()}
	nc := &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: hs.URL + "/", ResourceBase: hs.URL + "/v2.0/",
		MoreHeaders: map[string]string{"X-Project-Id": "proj-a"}}

	c, err := ovsdpdk.Connect(ctx, ovsdpdk.Options{Endpoint: o.Endpoint, Logger: lab.Logger(t).Named("ovsdb")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg, err := ovsdpdk.ParseNodeConfig("node.yaml", strings.NewReader(
		"ovsdb: "+o.Endpoint+"\ndatapath: netdev\nintegration_bridge: br-int\nphysnets:\n  physnet1: {bridge: br-phys1}\ntunnel:\n  local_ip: 192.0.2.1/24\n  types: [vxlan]\n"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ovsdpdk.Resolve(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, o: o, srv: srv, nc: nc, c: c, ports: ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{}),
		of: ovsdpdk.NewOfctl(ovsdpdk.OfctlOptions{RunDir: o.Dir}), layout: ovsdpdk.NodeLayout(spec), stateDir: t.TempDir()}
	t.Cleanup(e.stop)
	return e
}

// start runs an agent (a new one: as after a process restart) on the env's state dir.
func (e *env) start() {
	e.t.Helper()
	log := lab.Logger(e.t).Named("agent")
	ag, err := agent.New(agent.Config{Host: host, Layout: e.layout, StateDir: e.stateDir, Debounce: 50 * time.Millisecond,
		Resync: 2 * time.Second, Probe: 300 * time.Millisecond},
		agent.Deps{Store: e.srv.Store(), OVS: e.c, Ports: e.ports, Flows: ovsdpdk.NewFlows(e.of, ovsdpdk.FlowsOptions{Logger: log}),
			OpenFlow: e.of, Logger: log,
			Detect: func(ctx context.Context) (*hwdetect.Node, error) {
				return hwdetect.Detect(ctx, hwdetect.Options{OVS: ovsdpdk.NewProber(e.o.Endpoint), Logger: log})
			}})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.ag, e.cancel, e.done = ag, cancel, make(chan error, 1)
	go func() { e.done <- ag.Run(ctx) }()
}

func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	if err := <-e.done; err != nil {
		e.t.Errorf("agent: %v", err)
	}
	e.cancel = nil
}

// plug is what a hypervisor integration does for a `normal` port: a VM namespace whose
// veth goes into br-int with external_ids:iface-id = the port ID.
func (e *env) plug(p *ports.Port, name string) *lab.VM {
	e.t.Helper()
	vm := e.o.AddVM(e.t, name, lab.VMOptions{IP: p.FixedIPs[0].IPAddress + "/24", MAC: p.MACAddress})
	if err := e.ports.PortAdd(context.Background(), ovsdpdk.Port{Name: name, Type: ovsdpdk.PortSystem, IfaceID: p.ID, MAC: p.MACAddress}); err != nil {
		e.t.Fatal(err)
	}
	return vm
}

type boundPort struct {
	ports.Port
	portsbinding.PortsBindingExt
}

func (e *env) getPort(id string) boundPort {
	e.t.Helper()
	var p boundPort
	if err := ports.Get(context.Background(), e.nc, id).ExtractInto(&p); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) waitStatus(id, status string) boundPort {
	e.t.Helper()
	var p boundPort
	eventually(e.t, "port "+id+" "+status, 60*time.Second, func() bool {
		p = e.getPort(id)
		return p.Status == status
	})
	return p
}

func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ping(vm *lab.VM, dst string, args ...string) (string, error) {
	a := append([]string{"netns", "exec", vm.NS, "ping", "-n", "-W", "1"}, args...)
	out, err := exec.Command("ip", append(a, dst)...).CombinedOutput()
	return string(out), err
}

func pingWorks(t *testing.T, vm *lab.VM, dst string) {
	t.Helper()
	eventually(t, "ping "+dst+" from "+vm.NS, 20*time.Second, func() bool {
		_, err := ping(vm, dst, "-c", "1")
		return err == nil
	})
}

// flowsOf counts the flows on br-int with the cookie of an origin.
func (e *env) flowsOf(kind offload.Kind, id string) int {
	e.t.Helper()
	fl, err := e.of.DumpFlows(context.Background(), "br-int", offload.CookieFor(kind, id), ^uint64(0), false)
	if err != nil {
		e.t.Fatal(err)
	}
	return len(fl)
}

func (e *env) ofctl(args ...string) string {
	e.t.Helper()
	cmd := exec.Command("ovs-ofctl", append([]string{"-O", "OpenFlow15"}, args...)...)
	cmd.Env = append(cmd.Environ(), e.o.Env()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		e.t.Fatalf("ovs-ofctl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestLabAgent drives a node only through the API and checks what the agent does: ports
// bound and ACTIVE with their vif details, traffic, drift repair that spares foreign
// flows, a restarted ovs-vswitchd reprogrammed without help, an agent restart under
// traffic without loss, and a deleted port's flows removed.
func TestLabAgent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	net, err := networks.Create(ctx, e.nc, networks.CreateOpts{Name: "net1"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := subnets.Create(ctx, e.nc, subnets.CreateOpts{NetworkID: net.ID, CIDR: "10.1.0.0/24", IPVersion: gophercloud.IPv4}).Extract(); err != nil {
		t.Fatal(err)
	}
	var vmPorts []*ports.Port
	for i := range 2 {
		var p ports.Port
		err := ports.Create(ctx, e.nc, portsbinding.CreateOptsExt{CreateOptsBuilder: ports.CreateOpts{NetworkID: net.ID, Name: fmt.Sprintf("vm%d", i+1)},
			HostID: host}).ExtractInto(&p)
		if err != nil {
			t.Fatal(err)
		}
		vmPorts = append(vmPorts, &p)
	}
	e.start()
	// Before the VMs plug in, the agent binds the ports (vif type and details) but they
	// stay DOWN.
	var p boundPort
	eventually(t, "port bound by the agent", 20*time.Second, func() bool {
		p = e.getPort(vmPorts[0].ID)
		return p.VIFType != "unbound" && p.VIFType != ""
	})
	if p.Status != controlplane.PortStatusDown || p.VIFType != agent.VIFTypeOVS || p.VIFDetails["bridge_name"] != "br-int" || p.VIFDetails["datapath_type"] != "netdev" {
		t.Fatalf("port binding: status %s vif_type %q details %v", p.Status, p.VIFType, p.VIFDetails)
	}
	vm1 := e.plug(vmPorts[0], "vm1")
	e.plug(vmPorts[1], "vm2")
	e.waitStatus(vmPorts[0].ID, controlplane.PortStatusActive)
	e.waitStatus(vmPorts[1].ID, controlplane.PortStatusActive)
	ip2 := vmPorts[1].FixedIPs[0].IPAddress
	pingWorks(t, vm1, ip2)

	// Drift: a flow of vm2's port deleted by hand comes back; a foreign flow stays.
	before := e.flowsOf(offload.KindPort, vmPorts[1].ID)
	if before == 0 {
		t.Fatal("no flows with vm2's port cookie")
	}
	e.ofctl("add-flow", "br-int", "table=99,priority=7,cookie=0x1234,actions=drop")
	e.ofctl("del-flows", "br-int", fmt.Sprintf("cookie=%#x/-1", offload.CookieFor(offload.KindPort, vmPorts[1].ID)))
	eventually(t, "drift repaired", 15*time.Second, func() bool { return e.flowsOf(offload.KindPort, vmPorts[1].ID) == before })
	if !strings.Contains(e.ofctl("dump-flows", "br-int", "table=99"), "cookie=0x1234") {
		t.Fatal("the agent removed a foreign flow")
	}
	pingWorks(t, vm1, ip2)

	// A crashed and restarted ovs-vswitchd starts with no flows: the agent notices and
	// reprograms the node.
	if err := e.o.KillVswitchd(); err != nil {
		t.Fatal(err)
	}
	if err := e.o.StartVswitchd(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pipeline back after vswitchd restart", 30*time.Second, func() bool {
		fl, err := e.of.DumpFlows(ctx, "br-int", offload.CookieFor(offload.KindNode, offload.PipelineOriginID), ^uint64(0), false)
		return err == nil && len(fl) > 0
	})
	pingWorks(t, vm1, ip2)

	// Restarting the agent under traffic loses nothing: it reads what is installed and
	// changes nothing (same local VLANs from its state file).
	type result struct {
		out string
		err error
	}
	pc := make(chan result, 1)
	go func() {
		out, err := ping(vm1, ip2, "-c", "300", "-i", "0.01")
		pc <- result{out, err}
	}()
	time.Sleep(500 * time.Millisecond)
	e.stop()
	e.start()
	eventually(t, "restarted agent ready", 20*time.Second, func() bool { ok, _ := e.ag.Ready(); return ok })
	if last := e.ag.Last(); last.Changes != 0 {
		t.Errorf("restarted agent changed %d flows; want 0 (it must converge by diff)", last.Changes)
	}
	r := <-pc
	if r.err != nil || !strings.Contains(r.out, " 0% packet loss") {
		t.Fatalf("ping across the agent restart: %v\n%s", r.err, r.out)
	}

	// Deleting a port removes its flows.
	if err := ports.Delete(ctx, e.nc, vmPorts[1].ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted port's flows gone", 15*time.Second, func() bool { return e.flowsOf(offload.KindPort, vmPorts[1].ID) == 0 })
	if out, err := ping(vm1, ip2, "-c", "1"); err == nil {
		t.Fatalf("ping to a deleted port still works:\n%s", out)
	}
}
