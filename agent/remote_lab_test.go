package agent_test

import (
	"context"
	"net/http/httptest"
	"net/netip"
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
	"github.com/offlane/offlane/kernel"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

// remoteNode is one lab host with its own OVS and agent.
type remoteNode struct {
	o       *lab.OVS
	host    string
	ports   *ovsdpdk.Ports
	of      *ovsdpdk.Ofctl
	plugger *kernel.Plugger
	ag      *agent.Agent
}

// startRemoteNode lays out host's OVS with a VXLAN tunnel from tunnelCIDR and runs an
// agent on state (the embedded store or the HTTP API) until the test ends.
func startRemoteNode(t *testing.T, o *lab.OVS, host, tunnelCIDR string, state agent.DesiredState) *remoteNode {
	t.Helper()
	ctx := context.Background()
	log := lab.Logger(t).Named(host)
	c, err := ovsdpdk.Connect(ctx, ovsdpdk.Options{Endpoint: o.Endpoint, Logger: log.Named("ovsdb")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg, err := ovsdpdk.ParseNodeConfig("node.yaml", strings.NewReader(
		"ovsdb: "+o.Endpoint+"\ndatapath: netdev\nintegration_bridge: br-int\ntunnel:\n  local_ip: "+tunnelCIDR+"\n  types: [vxlan]\n"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ovsdpdk.Resolve(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := &remoteNode{o: o, host: host, ports: ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{Bridge: "br-int"}),
		of: ovsdpdk.NewOfctl(ovsdpdk.OfctlOptions{RunDir: o.Dir})}
	n.plugger = kernel.NewPlugger(kernel.PlugOptions{HostNamespace: o.NS, Switch: n.ports})
	n.ag, err = agent.New(agent.Config{Host: host, Layout: ovsdpdk.NodeLayout(spec), TunnelIP: netip.MustParsePrefix(tunnelCIDR).Addr(),
		StateDir: t.TempDir(), Debounce: 50 * time.Millisecond, Resync: 5 * time.Second, Probe: time.Second, Heartbeat: time.Second},
		agent.Deps{State: state, OVS: c, Ports: n.ports, Flows: ovsdpdk.NewFlows(n.of, ovsdpdk.FlowsOptions{Logger: log}),
			OpenFlow: n.of, Logger: log,
			Detect: func(ctx context.Context) (*hwdetect.Node, error) {
				return hwdetect.Detect(ctx, hwdetect.Options{OVS: ovsdpdk.NewProber(o.Endpoint), Logger: log})
			}})
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- n.ag.Run(actx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent %s: %v", host, err)
		}
	})
	return n
}

// vm plugs a namespace into port p as `offlane vif plug` does.
func (n *remoteNode) vm(t *testing.T, name string, p *ports.Port, cidr netip.Prefix) *lab.VM {
	t.Helper()
	ns := "ol" + n.o.ID + "-" + name
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	addr := netip.PrefixFrom(netip.MustParseAddr(p.FixedIPs[0].IPAddress), cidr.Bits())
	spec := kernel.PlugSpec{Namespace: ns, IfName: "eth0", HostIfName: kernel.IfName(kernel.PrefixTap, p.ID), MAC: p.MACAddress,
		IfaceID: p.ID, MTU: 1450, NoTxChecksum: true, Addrs: []netip.Prefix{addr}}
	if _, err := n.plugger.Plug(context.Background(), spec); err != nil {
		t.Fatalf("plug %s: %v", name, err)
	}
	return &lab.VM{NS: ns, HostIf: spec.HostIfName, IP: addr.Addr().String(), MAC: p.MACAddress}
}

func (n *remoteNode) flowsOf(t *testing.T, kind offload.Kind, id string) int {
	t.Helper()
	fl, err := n.of.DumpFlows(context.Background(), "br-int", offload.CookieFor(kind, id), ^uint64(0), false)
	if err != nil {
		t.Fatal(err)
	}
	return len(fl)
}

// TestLabAgentOverHTTP runs two hosts joined by a VXLAN underlay: node A's agent beside
// the store, node B's agent in the role of `offlane agent --url` (HTTPState against the
// server's agent API). Through the API only: both ports go ACTIVE, the VMs ping across
// the hosts (each node learnt the other's VTEP from the agents registry), and a port
// deleted through the API loses its flows on its host.
func TestLabAgentOverHTTP(t *testing.T) {
	lab.RequireOVS(t)
	lab.Require(t, "ovs-ofctl", "ping")
	ctx := context.Background()
	oA := lab.StartOVS(t, lab.Options{})
	oB := lab.StartOVS(t, lab.Options{})
	ul := lab.ConnectUnderlay(t, oA, oB, "10.99.0.1/24", "10.99.0.2/24")

	srv, err := controlplane.NewServer(ctx, controlplane.ServerConfig{DataDir: t.TempDir(), Logger: lab.Logger(t).Named("api")})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); _ = srv.Close() }) // after the agents stop (cleanups run LIFO)
	nc := &gophercloud.ServiceClient{ProviderClient: &gophercloud.ProviderClient{HTTPClient: *hs.Client()},
		Endpoint: hs.URL + "/", ResourceBase: hs.URL + "/v2.0/", MoreHeaders: map[string]string{"X-Project-Id": "proj-a"}}

	remote, err := agent.NewHTTPState(hs.URL, hs.Client(), "")
	if err != nil {
		t.Fatal(err)
	}
	a := startRemoteNode(t, oA, "nodea", ul.A.Addr+"/24", agent.StoreState{Store: srv.Store()})
	b := startRemoteNode(t, oB, "nodeb", ul.B.Addr+"/24", remote)

	var nw struct {
		ID string `json:"id"`
	}
	if err := networks.Create(ctx, nc, networks.CreateOpts{Name: "tenant"}).ExtractInto(&nw); err != nil || nw.ID == "" {
		t.Fatalf("create network: %v", err)
	}
	// the segment as the remote agent reads it through GET /v2.0/offlane/state
	if st, err := remote.Load(ctx); err != nil || len(st.Networks) != 1 || st.Networks[0].NetworkType != "vxlan" {
		t.Fatalf("state over HTTP: want one vxlan network, got %+v (%v)", st, err)
	}
	cidr := netip.MustParsePrefix("10.10.0.0/24")
	if _, err := subnets.Create(ctx, nc, subnets.CreateOpts{NetworkID: nw.ID, CIDR: cidr.String(), IPVersion: gophercloud.IPv4}).Extract(); err != nil {
		t.Fatal(err)
	}
	mkPort := func(name, host string) *ports.Port {
		var p ports.Port
		if err := ports.Create(ctx, nc, portsbinding.CreateOptsExt{CreateOptsBuilder: ports.CreateOpts{NetworkID: nw.ID, Name: name},
			HostID: host}).ExtractInto(&p); err != nil {
			t.Fatal(err)
		}
		return &p
	}
	pA, pB := mkPort("vma", "nodea"), mkPort("vmb", "nodeb")
	for _, n := range []*remoteNode{a, b} {
		eventually(t, "agent "+n.host+" ready (node laid out)", 30*time.Second, func() bool { ok, _ := n.ag.Ready(); return ok })
	}
	vmA := a.vm(t, "vma", pA, cidr)
	vmB := b.vm(t, "vmb", pB, cidr)
	e := &env{t: t, nc: nc}
	for _, p := range []*ports.Port{pA, pB} {
		got := e.waitStatus(p.ID, controlplane.PortStatusActive)
		if got.VIFType != agent.VIFTypeOVS {
			t.Fatalf("port %s: vif_type %q, want ovs", p.Name, got.VIFType)
		}
	}
	// both agents registered with their VTEPs, as GET /v2.0/agents shows
	st, err := remote.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vteps := map[string]string{}
	for _, ag := range st.Agents {
		vteps[ag.Host], _ = ag.Configurations["tunneling_ip"].(string)
	}
	if vteps["nodea"] != ul.A.Addr || vteps["nodeb"] != ul.B.Addr {
		t.Fatalf("agents registry VTEPs %v, want nodea=%s nodeb=%s", vteps, ul.A.Addr, ul.B.Addr)
	}
	pingWorks(t, vmA, vmB.IP)
	pingWorks(t, vmB, vmA.IP)
	// each node sends to the other's VTEP (learnt from the agents registry) on br-tun
	for _, c := range []struct {
		o    *lab.OVS
		peer string
	}{{oA, ul.B.Addr}, {oB, ul.A.Addr}} {
		cmd := exec.Command("ovs-ofctl", "-O", "OpenFlow15", "dump-flows", "br-tun")
		cmd.Env = append(cmd.Environ(), c.o.Env()...)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "set_field:"+c.peer+"->tun_dst") {
			t.Fatalf("%s: no flow to VTEP %s on br-tun (%v):\n%s", c.o.NS, c.peer, err, out)
		}
	}

	// deleting node B's port through the API removes its flows on node B (the HTTP agent)
	if n := b.flowsOf(t, offload.KindPort, pB.ID); n == 0 {
		t.Fatal("node B has no flows for its port")
	}
	if err := ports.Delete(ctx, nc, pB.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted port's flows gone on node B", 20*time.Second, func() bool { return b.flowsOf(t, offload.KindPort, pB.ID) == 0 })
	if out, err := ping(vmA, vmB.IP, "-c", "1"); err == nil {
		t.Fatalf("ping to a deleted port still works:\n%s", out)
	}
}
