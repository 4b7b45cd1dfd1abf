package offload

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/controlplane"
	"github.com/offlane/offlane/test/lab"
)

// The L3 benchmark node of the issue: 1,000 routers with 4 interfaces each (4,000 VXLAN
// networks, 10 ports per router), every router with a gateway on one external network
// and SNAT, and 10,000 floating IPs (one per port). Ports have port security off (their
// L2 flows are not what this measures).
const (
	l3BenchRouters = 1000
	l3BenchIfaces  = 4
	l3BenchPorts   = 10 // per router
)

func l3BenchSnapshot(withFIPs bool) (Snapshot, map[string]int) {
	var s Snapshot
	ofp := map[string]int{}
	ext := network("ext", "admin", SegVLAN, "physnet1", 4000)
	ext.External = true
	s.Networks = append(s.Networks, ext)
	s.Subnets = append(s.Subnets, controlplane.Subnet{ID: "s-ext", NetworkID: "ext", CIDR: "100.64.0.0/16", GatewayIP: strp("100.64.0.1"), IPVersion: 4})
	addr := func(i int) string { return fmt.Sprintf("100.64.%d.%d", 1+i/250, 1+i%250) }
	n := 0
	for r := 0; r < l3BenchRouters; r++ {
		rid := fmt.Sprintf("r%04d", r)
		for k := 0; k < l3BenchIfaces; k++ {
			net := fmt.Sprintf("n%04d-%d", r, k)
			s.Networks = append(s.Networks, network(net, "t", SegVXLAN, "", 10000+4*r+k))
			sub := "s" + net
			s.Subnets = append(s.Subnets, controlplane.Subnet{ID: sub, NetworkID: net, CIDR: fmt.Sprintf("10.%d.0.0/24", k), GatewayIP: strp(fmt.Sprintf("10.%d.0.1", k)), IPVersion: 4})
			s.Ports = append(s.Ports, controlplane.Port{ID: rid + "-if" + fmt.Sprint(k), NetworkID: net, MACAddress: fmt.Sprintf("fa:16:3f:%02x:%02x:%02x", r>>8, r&0xff, k),
				AdminStateUp: true, DeviceOwner: controlplane.OwnerRouterInterface, DeviceID: rid,
				FixedIPs: []controlplane.FixedIP{{SubnetID: sub, IPAddress: fmt.Sprintf("10.%d.0.1", k)}}})
		}
		gw := controlplane.Port{ID: rid + "-gw", NetworkID: "ext", MACAddress: fmt.Sprintf("fa:16:3f:%02x:%02x:ff", r>>8, r&0xff), AdminStateUp: true,
			DeviceOwner: controlplane.OwnerRouterGateway, DeviceID: rid, FixedIPs: []controlplane.FixedIP{{SubnetID: "s-ext", IPAddress: addr(r)}}}
		s.Ports = append(s.Ports, gw)
		s.Routers = append(s.Routers, controlplane.Router{ID: rid, TenantID: "t", AdminStateUp: true, GatewayPortID: gw.ID,
			ExternalGatewayInfo: &controlplane.GatewayInfo{NetworkID: "ext", EnableSNAT: true, ExternalFixedIPs: gw.FixedIPs}})
		for j := 0; j < l3BenchPorts; j++ {
			k := j % l3BenchIfaces
			pid := fmt.Sprintf("p%05d", n)
			ip := fmt.Sprintf("10.%d.0.%d", k, 10+j)
			p := port(pid, fmt.Sprintf("n%04d-%d", r, k), "node1", fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", n>>16, n>>8&0xff, n&0xff), []string{ip})
			p.PortSecurityEnabled = false
			p.FixedIPs[0].SubnetID = fmt.Sprintf("sn%04d-%d", r, k)
			s.Ports = append(s.Ports, p)
			ofp[pid] = 100 + n
			if withFIPs {
				s.FloatingIPs = append(s.FloatingIPs, controlplane.FloatingIP{ID: "f" + pid, TenantID: "t", FloatingNetworkID: "ext",
					FloatingIPAddress: addr(l3BenchRouters + n), PortID: strp(pid), FixedIPAddress: strp(ip), RouterID: strp(rid)})
			}
			n++
		}
	}
	return s, ofp
}

func l3BenchModel(tb testing.TB, withRouters bool) (*IR, *Plan) {
	tb.Helper()
	s, ofp := l3BenchSnapshot(withRouters)
	if !withRouters {
		s.Routers, s.FloatingIPs = nil, nil
	}
	ir, err := Build(BuildInput{Host: "node1", Snapshot: s, OFPorts: ofp})
	if err != nil {
		tb.Fatal(err)
	}
	return ir, PlanNode(ir, natNode("true"), testLayout())
}

// BenchmarkL3CompileFull compiles the L3 benchmark node from scratch; the baseline is
// the same node's ports and networks without routers and floating IPs (L2 only), in the
// same run.
func BenchmarkL3CompileFull(b *testing.B) {
	ir, plan := l3BenchModel(b, true)
	if len(ir.Routers) != l3BenchRouters || len(ir.FloatingIPs) != l3BenchRouters*l3BenchPorts {
		b.Fatalf("model has %d routers and %d floating IPs", len(ir.Routers), len(ir.FloatingIPs))
	}
	irL2, planL2 := l3BenchModel(b, false)
	start := time.Now()
	if _, err := Compile(testLayout(), irL2, planL2); err != nil {
		b.Fatal(err)
	}
	l2 := time.Since(start)
	var flows int
	var peak float64
	b.ReportAllocs()
	for b.Loop() {
		h := startSampler()
		c, err := NewCompiler(testLayout())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Update(ir, plan); err != nil {
			b.Fatal(err)
		}
		flows = c.Len()
		if len(c.Conflicts()) > 0 {
			b.Fatalf("conflicts: %v", c.Conflicts()[:1])
		}
		p, _ := h.done()
		peak = max(peak, p)
	}
	perOp := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(flows), "flows")
	b.ReportMetric(peak, "peak-MB")
	b.ReportMetric(perOp/l2.Seconds(), "x-of-l2-only-compile")
}

// l3BenchLab is a real ovs-vswitchd with br-int and br-tun holding the compiled node.
type l3BenchLab struct {
	o   *lab.OVS
	dir string
}

func startL3BenchLab(b *testing.B) *l3BenchLab {
	b.Helper()
	lab.RequireOVS(b)
	o := lab.StartOVS(b, lab.Options{})
	for _, br := range []string{"br-int", "br-tun"} {
		o.Vsctl(b, "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev", "fail_mode=secure")
	}
	return &l3BenchLab{o: o, dir: b.TempDir()}
}

// bundle runs ovs-ofctl --bundle (replace-flows for a full install, add-flows for a
// delta) with the lines of one bridge.
func (l *l3BenchLab) bundle(b *testing.B, cmd, bridge string, lines []string) {
	b.Helper()
	file := filepath.Join(l.dir, bridge+".flows")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	out, err := lab.Run("ovs-ofctl", "-O", "OpenFlow15", "--no-names", "--bundle", cmd, // the applier's flags (ovsdpdk.Ofctl)
		"unix:"+filepath.Join(l.o.Dir, bridge+".mgmt"), file)
	if err != nil {
		b.Fatalf("%s %s: %v\n%s", cmd, bridge, err, out)
	}
}

func flowLines(fs []Flow, bridge string) []string {
	var out []string
	for _, f := range fs {
		if f.Bridge == bridge {
			out = append(out, f.String())
		}
	}
	return out
}

// BenchmarkL3Install compiles the L3 benchmark node and installs it into a real
// ovs-vswitchd (one bundle per bridge), against the same for the L2-only node.
func BenchmarkL3Install(b *testing.B) {
	l := startL3BenchLab(b)
	ir, plan := l3BenchModel(b, true)
	irL2, planL2 := l3BenchModel(b, false)
	run := func(ir *IR, plan *Plan) (time.Duration, int) {
		start := time.Now()
		res, err := Compile(testLayout(), ir, plan)
		if err != nil {
			b.Fatal(err)
		}
		for _, br := range []string{"br-int", "br-tun"} {
			l.bundle(b, "replace-flows", br, flowLines(res.Flows, br))
		}
		return time.Since(start), len(res.Flows)
	}
	var l3, l2 time.Duration
	var flows int
	b.ReportAllocs()
	for b.Loop() {
		var d time.Duration
		d, flows = run(ir, plan)
		l3 += d
		d, _ = run(irL2, planL2)
		l2 += d
	}
	b.ReportMetric(l3.Seconds()/float64(b.N), "l3-node-s")
	b.ReportMetric(float64(flows), "flows")
	b.ReportMetric(l3.Seconds()/l2.Seconds(), "x-of-l2-only-install")
}

// BenchmarkL3FloatingIPAssociate associates (and, every other op, disassociates) one
// more floating IP on the installed L3 benchmark node: plan the port again, compile the
// delta with the change set (Compiler.UpdateChanges), apply it with one ovs-ofctl bundle. Target < 10 ms; the compile-only share is
// reported apart.
func BenchmarkL3FloatingIPAssociate(b *testing.B) {
	l := startL3BenchLab(b)
	irAll, planAll := l3BenchModel(b, true)
	node, lay := natNode("true"), testLayout()
	// Before: port p05003 has no floating IP; after: it has f-new.
	ir0 := irAll.Clone()
	delete(ir0.FloatingIPs, "fp05003")
	pp0, _ := PlanPort(ir0, "p05003", node, lay)
	plan0 := planAll.With(pp0)
	c, err := NewCompiler(testLayout())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Update(ir0, plan0); err != nil {
		b.Fatal(err)
	}
	for _, br := range []string{"br-int", "br-tun"} {
		l.bundle(b, "replace-flows", br, flowLines(c.Flows(), br))
	}
	ir1 := ir0.Clone()
	f := &FloatingIP{ID: "f-new", TenantID: "t", RouterID: "r0500", NetworkID: "ext", FloatingIP: netip.MustParseAddr("100.64.200.200"),
		PortID: "p05003", FixedIP: netip.MustParseAddr("10.3.0.13"), PortNetworkID: "n0500-3", Host: "node1", MAC: ir0.Routers["r0500"].Gateway.MAC}
	ir1.FloatingIPs[f.ID] = f
	irs := []*IR{ir1, ir0}
	var compile time.Duration
	changed := 0
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		pp, _ := PlanPort(irs[i%2], "p05003", node, lay)
		// the caller knows what it changed: one floating IP and its port's plan
		d, err := c.UpdateChanges(irs[i%2], plan0.With(pp), &Changes{FloatingIPs: []string{f.ID}, PlanPorts: []string{"p05003"}})
		if err != nil {
			b.Fatal(err)
		}
		compile += time.Since(start)
		changed = len(d.Add) + len(d.Modify) + len(d.Delete)
		if changed == 0 {
			b.Fatal("the association changed no flow")
		}
		l.bundle(b, "add-flows", "br-int", d.BundleLines("br-int"))
		i++
	}
	perOp := b.Elapsed().Seconds() / float64(b.N)
	b.StopTimer()
	// The floor: one ovs-ofctl bundle of the same size that changes nothing (re-adding
	// the current flows), on the same switch.
	var same []string
	for _, f := range c.Flows() {
		if f.Bridge == "br-int" && (f.Cookie == CookieFor(KindPort, "p05003") || CookieKind(f.Cookie) == KindFloatingIP) && len(same) < changed {
			same = append(same, "add "+f.String())
		}
	}
	start := time.Now()
	for range 5 {
		l.bundle(b, "add-flows", "br-int", same)
	}
	floor := time.Since(start).Seconds() / 5
	b.ReportMetric(floor*1000, "ofctl-bundle-floor-ms")
	b.ReportMetric(float64(changed), "flows-changed")
	b.ReportMetric(compile.Seconds()/float64(b.N)*1000, "compile-ms/op")
	b.ReportMetric(perOp*1000, "total-ms/op")
	b.ReportMetric(perOp/0.010, "x-of-10ms-target")
}
