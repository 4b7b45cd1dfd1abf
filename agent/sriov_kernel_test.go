//go:build linux

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
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/offlane/offlane/agent"
	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/sriov"
	"github.com/offlane/offlane/test/kernellab"
	"github.com/offlane/offlane/test/lab"
)

// TestKernelAgentDirectPorts: the real agent realises direct (SR-IOV) ports on two
// netdevsim PFs in Debian's kernel: one in switchdev mode (tc flower on the VF
// representors and the uplink) and one in legacy mode (VF settings through the PF).
// Ports are created through the API with binding:profile pci_slot naming a VF
// (netdevsim VFs are not PCI functions: their slot is "netdevsim/netdevsimN/vfI", see
// sriov.Entry.Slot). Read back from the kernel: the tc rules on the representors and
// the uplink equal what offload.CompileTC returns for the agent's IR and plan (and
// iproute2 shows the VLAN push and the vlan_id match), the legacy VF has the port's
// MAC, VLAN and spoof checking (ip link); the bindings (vif_type hw_veb, vif_details
// with pci_slot, physical_network, representor; status ACTIVE) are written back; a port
// whose pci_slot names no VF is ERROR with the reason while the others stay ACTIVE.
// Deleting a port removes its rules and leaves the other port's.
func TestKernelAgentDirectPorts(t *testing.T) {
	kernellab.RequireGuest(t)
	lab.RequireOVS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := lab.Logger(t)

	// the NICs: netdevsim 41 in switchdev with 4 VFs, netdevsim 42 legacy with 2
	m, err := sriov.NewLive("/", nil, log.Named("sriov"))
	if err != nil {
		t.Fatal(err)
	}
	sw := kernellab.NewNetdevsim(t, 41, 1)
	if _, err := m.Configure(ctx, sriov.Spec{PF: sw.Handle, NumVFs: 4, Mode: sriov.ModeSwitchdev}, false); err != nil {
		t.Fatal(err)
	}
	leg := kernellab.NewNetdevsim(t, 42, 1)
	leg.SetNumVFs(t, 2)
	rep := vfRepresentors(t, ctx, m, sw.Handle)
	uplink := sw.Ports[0]

	// the node: OVS on the kernel datapath (the agent needs it for its other ports), the
	// API on a bbolt file, the agent with its direct-port component
	o := lab.StartOVS(t, lab.Options{SystemDatapath: true})
	srv, err := controlplane.NewServer(ctx, controlplane.ServerConfig{DataDir: t.TempDir(), Logger: log.Named("api")})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); _ = srv.Close() })
	nc := &gophercloud.ServiceClient{ProviderClient: &gophercloud.ProviderClient{HTTPClient: *hs.Client()}, Endpoint: hs.URL + "/",
		ResourceBase: hs.URL + "/v2.0/", MoreHeaders: map[string]string{"X-Project-Id": "proj-a"}}
	// as `offlane serve --agent` wires it: no hwdetect inventory behind the registry the
	// agent rebuilds on every reconcile
	nl, err := sriov.NewNetlinkLinks()
	if err != nil {
		t.Fatal(err)
	}
	dm, err := sriov.New(sriov.Config{SysFS: sriov.DirFS{Root: "/"}, Devlink: sriov.NetlinkDevlink{}, Links: nl, Ethtool: &sriov.IoctlEthtool{}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	da := startDirectAgent(t, o, "datapath: system\nintegration_bridge: br-int\nphysnets:\n  physnet1: {bridge: br-phys1}\n", dm, srv, 5*time.Second)
	ag, direct, g, detect := da.ag, da.direct, da.tc, da.detect

	// the tenant side, through the API
	net := must(networks.Create(ctx, nc, provider.CreateOptsExt{CreateOptsBuilder: networks.CreateOpts{Name: "vlan100"},
		Segments: []provider.Segment{{NetworkType: "vlan", PhysicalNetwork: "physnet1", SegmentationID: 100}}}).Extract()).get(t, "network")
	must(subnets.Create(ctx, nc, subnets.CreateOpts{NetworkID: net.ID, CIDR: "10.0.0.0/24", IPVersion: gophercloud.IPv4}).Extract()).get(t, "subnet")
	direct0 := func(name, slot, mac string) string {
		t.Helper()
		p := must(ports.Create(ctx, nc, portsbinding.CreateOptsExt{CreateOptsBuilder: ports.CreateOpts{Name: name, NetworkID: net.ID, MACAddress: mac},
			HostID: host, VNICType: controlplane.VNICDirect, Profile: map[string]any{"pci_slot": slot}}).Extract()).get(t, "port "+name)
		return p.ID
	}
	slot := func(h string, vf int) string { return fmt.Sprintf("%s/vf%d", h, vf) }
	tc0 := direct0("tc0", slot(sw.Handle, 0), "fa:16:3e:00:00:10")
	tc1 := direct0("tc1", slot(sw.Handle, 1), "fa:16:3e:00:00:11")
	vf0 := direct0("vf0", slot(leg.Handle, 0), "fa:16:3e:00:00:20")
	bad := direct0("bad", "0000:99:00.7", "fa:16:3e:00:00:30")

	e := &env{t: t, nc: nc}
	for id, r := range map[string]string{tc0: rep[0], tc1: rep[1]} {
		p := e.waitStatus(id, controlplane.PortStatusActive)
		d := p.VIFDetails
		if p.VIFType != agent.VIFTypeHwVeb || d["pci_slot"] != p.Profile["pci_slot"] || d["physical_network"] != "physnet1" || d["representor"] != r {
			t.Errorf("port %s binding: vif_type %s, vif_details %v (want hw_veb, its pci_slot, physnet1, representor %s)", id, p.VIFType, d, r)
		}
	}
	p := e.waitStatus(vf0, controlplane.PortStatusActive)
	if p.VIFType != agent.VIFTypeHwVeb || p.VIFDetails["vlan"] != "100" || p.VIFDetails["physical_network"] != "physnet1" {
		t.Errorf("legacy VF port binding: %s %v", p.VIFType, p.VIFDetails)
	}
	pb := e.waitStatus(bad, controlplane.PortStatusError)
	if why, _ := pb.VIFDetails["reason"].(string); !strings.Contains(why, "0000:99:00.7") {
		t.Errorf("bad port's reason %q does not name its pci_slot", why)
	}

	// the legacy VF as the PF driver reports it (iproute2)
	out, err := exec.Command("ip", "link", "show", "dev", leg.Ports[0]).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "vf 0     link/ether fa:16:3e:00:00:20") && !strings.Contains(string(out), "vf 0 link/ether fa:16:3e:00:00:20") {
		t.Errorf("legacy VF 0 has not the port's MAC:\n%s", out)
	}
	if !strings.Contains(string(out), "vlan 100") || !strings.Contains(string(out), "spoof checking on") {
		t.Errorf("legacy VF 0: want vlan 100 and spoof checking on:\n%s", out)
	}

	// the tc rules: equal to what the compiler makes of the agent's own IR and plan
	devs := []string{uplink, rep[0], rep[1], rep[2], rep[3]}
	checkTC := func(what string, gone string) *offload.TCResult {
		t.Helper()
		var want *offload.TCResult
		eventuallyWhy(t, what, 90*time.Second, func() (bool, string) {
			r := ag.Last()
			if r.IR == nil || r.IR.Ports[gone] != nil {
				return false, "the agent has not reconciled the deletion yet"
			}
			node, err := detect(ctx)
			if err != nil {
				return false, err.Error()
			}
			want, err = offload.CompileTC(r.IR, r.Plan, node, offload.TCLayout{Node: r.Layout})
			if err != nil {
				return false, err.Error()
			}
			var got []sriov.TCFilter
			for _, d := range devs {
				fs, err := g.Filters(ctx, d)
				if err != nil {
					return false, err.Error()
				}
				for _, f := range fs {
					if f.Own() {
						got = append(got, f)
					}
				}
			}
			if m := sriov.TCMissing(want.Rules, got); len(m) > 0 || len(got) != len(want.Rules) {
				return false, fmt.Sprintf("kernel has %d offlane filters, compiler %d rules, missing %v", len(got), len(want.Rules), m)
			}
			return true, ""
		})
		return want
	}
	want := checkTC("tc rules of tc0 and tc1 in the kernel", "")
	if len(want.Rules) == 0 || len(want.Skipped) > 0 {
		t.Fatalf("compiled %d rules, skipped %+v", len(want.Rules), want.Skipped)
	}
	upl := tcShow(t, uplink)
	r0 := tcShow(t, rep[0])
	if !strings.Contains(upl, "vlan_id 100") || !strings.Contains(r0, "push id 100") || !strings.Contains(r0, "Egress Redirect to device "+uplink) {
		t.Errorf("iproute2 does not show the VLAN rules:\nuplink %s:\n%s\n%s:\n%s", uplink, upl, rep[0], r0)
	}
	// what runs in software, and why, is in the plan (explain, offlane_feature_backend)
	for _, id := range []string{tc0, tc1} {
		st, ok := direct.Status(id)
		if !ok || st.Backend != offload.BackendTC || st.Representor == "" {
			t.Errorf("direct status of %s: %+v", id, st)
		}
		d := planL2(t, ag.Last().Plan, id)
		if len(st.Fallbacks) > 0 && !strings.Contains(d.Reason, "tc fallback") {
			t.Errorf("port %s: %d tc fallbacks not in the plan's reason %q", id, len(st.Fallbacks), d.Reason)
		}
		t.Logf("%s: l2 %s: %s (fallbacks %v)", id, d.Backend, d.Reason, st.Fallbacks)
	}

	// delete tc1: its rules go, tc0's stay
	if err := ports.Delete(ctx, nc, tc1).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	after := checkTC("tc rules after deleting tc1", tc1)
	for _, r := range after.Rules {
		if r.Origin.ID == tc1 || r.Dev == rep[1] {
			t.Errorf("rule of the deleted port still compiled: %s", r.String())
		}
	}
	if fs, err := g.Filters(ctx, rep[1]); err != nil || len(fs) != 0 {
		t.Errorf("representor %s of the deleted port still has %d filters (%v)", rep[1], len(fs), err)
	}
	if !strings.Contains(tcShow(t, rep[0]), "push id 100") {
		t.Errorf("tc0's rules went with tc1's")
	}
	e.waitStatus(tc0, controlplane.PortStatusActive)
}

func tcShow(t *testing.T, dev string) string {
	t.Helper()
	out, err := exec.Command("tc", "filter", "show", "dev", dev, "ingress").CombinedOutput()
	if err != nil {
		t.Fatalf("tc filter show dev %s ingress: %v\n%s", dev, err, out)
	}
	return string(out)
}

func planL2(t *testing.T, plan *offload.Plan, port string) offload.Decision {
	t.Helper()
	pp := plan.Port(port)
	if pp == nil {
		t.Fatalf("port %s not in the plan", port)
	}
	for _, d := range pp.Decisions {
		if d.Feature == offload.FeatureL2 {
			return d
		}
	}
	t.Fatalf("port %s has no l2 decision", port)
	return offload.Decision{}
}

// directAgent is the real agent with DirectPorts wired as `offlane serve --agent` wires
// them: the tc applier, representor plugging through the OVS Ports API, and the SR-IOV
// inventory behind detect.
type directAgent struct {
	ag     *agent.Agent
	direct *agent.DirectPorts
	ports  *ovsdpdk.Ports
	of     *ovsdpdk.Ofctl
	tc     *sriov.NetlinkTC
	detect func(context.Context) (*hwdetect.Node, error) // what the agent detects with
}

// startDirectAgent starts that agent on OVS o with the node config nodeYAML (its ovsdb
// line is added) over srv's store; it runs until the test's cleanup, which fails the
// test if Run returned an error.
// vfRepresentors returns the representors of pf's VFs by VF index, from m's registry;
// it fails the test unless VFs 0 and 1 have one.
func vfRepresentors(t *testing.T, ctx context.Context, m *sriov.Manager, pf string) map[int]string {
	t.Helper()
	reg, err := m.Registry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rep := map[int]string{}
	for _, pe := range reg.PFs {
		if pe.PF.Device.String() == pf {
			for _, e := range pe.VFs {
				rep[e.VFIndex] = e.Representor
			}
		}
	}
	if rep[0] == "" || rep[1] == "" {
		t.Fatalf("no representors for VFs 0 and 1 of %s: %+v", pf, reg)
	}
	return rep
}

func startDirectAgent(t *testing.T, o *lab.OVS, nodeYAML string, dm *sriov.Manager, srv *controlplane.Server, resync time.Duration) *directAgent {
	t.Helper()
	ctx := context.Background()
	log := lab.Logger(t)
	c, err := ovsdpdk.Connect(ctx, ovsdpdk.Options{Endpoint: o.Endpoint, Logger: log.Named("ovsdb")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg, err := ovsdpdk.ParseNodeConfig("node.yaml", strings.NewReader("ovsdb: "+o.Endpoint+"\n"+nodeYAML))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ovsdpdk.Resolve(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := sriov.NewNetlinkTC()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	links, err := agent.NewNetlinkDirectLinks()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(links.Close)
	da := &directAgent{ports: ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{}), of: ovsdpdk.NewOfctl(ovsdpdk.OfctlOptions{RunDir: o.Dir}), tc: g}
	da.direct = &agent.DirectPorts{SRIOV: dm, Links: links, TC: sriov.NewTCApplier(g, log), OVS: da.ports, Logger: log.Named("direct")}
	da.detect = agent.WithSRIOVInventory(func(ctx context.Context) (*hwdetect.Node, error) {
		return hwdetect.Detect(ctx, hwdetect.Options{OVS: ovsdpdk.NewProber(o.Endpoint), Logger: log})
	}, dm)
	da.ag, err = agent.New(agent.Config{Host: host, Layout: ovsdpdk.NodeLayout(spec), StateDir: t.TempDir(), Debounce: 50 * time.Millisecond,
		Resync: resync},
		agent.Deps{Store: srv.Store(), OVS: c, Ports: da.ports, Flows: ovsdpdk.NewFlows(da.of, ovsdpdk.FlowsOptions{Logger: log}),
			OpenFlow: da.of, Detect: da.detect, Direct: da.direct, Logger: log.Named("agent")})
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- da.ag.Run(actx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	return da
}
