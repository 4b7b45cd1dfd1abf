package offload

import (
	"fmt"
	"net/netip"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/offlane/offlane/controlplane"
)

// The benchmark node of the issue: 10,000 ports on 200 networks (100 VLAN, 100 VXLAN,
// 50 ports each), 1,000 more ports of those VXLAN networks on two other hosts, 50
// security groups of 20 rules (port ranges, CIDRs, ICMP, IPv6, and two rules naming the
// group itself as remote group, so every port is in an address set).
const (
	benchNets    = 200
	benchPerNet  = 50
	benchGroups  = 50
	benchRemotes = 5 // per VXLAN network and remote host
)

func benchSnapshot() (Snapshot, map[string]int) {
	var s Snapshot
	ofp := map[string]int{}
	for g := 0; g < benchGroups; g++ {
		id := fmt.Sprintf("sg%02d", g)
		self := ruleSpec{group: id}
		rules := []ruleSpec{
			{dir: Ingress, proto: "tcp", min: 22, max: 22, cidr: "192.168.0.0/16"},
			{dir: Ingress, proto: "tcp", min: 80, max: 80},
			{dir: Ingress, proto: "tcp", min: 443, max: 443},
			{dir: Ingress, proto: "tcp", min: 8000, max: 8080},
			{dir: Ingress, proto: "udp", min: 53, max: 53, cidr: "10.0.0.0/8"},
			{dir: Ingress, proto: "udp", min: 5000, max: 5100, cidr: "172.16.0.0/12"},
			{dir: Ingress, proto: "icmp", min: 8, max: 0},
			{dir: Ingress, proto: "tcp", min: 3306, max: 3306, group: self.group},
			{dir: Ingress, proto: "icmp", group: self.group},
			{dir: Ingress, proto: "sctp", min: 36412, max: 36412},
			{dir: Ingress, proto: "tcp", min: 9000, max: 9999, cidr: fmt.Sprintf("10.%d.0.0/16", g)},
			{dir: Ingress, eth: IPv6, proto: "tcp", min: 22, max: 22},
			{dir: Ingress, eth: IPv6, proto: "icmp"},
			{dir: Ingress, proto: "47", cidr: "198.51.100.0/24"},
			{dir: Ingress, proto: "udp", min: 4789, max: 4789},
			{dir: Egress},
			{dir: Egress, eth: IPv6},
			{dir: Egress, proto: "tcp", min: 25, max: 25, cidr: "203.0.113.0/24"},
			{dir: Egress, proto: "udp", min: 123, max: 123},
			{dir: Egress, proto: "tcp", min: 1024, max: 65535},
		}
		for i := range rules {
			rules[i].id = fmt.Sprintf("%s-r%02d", id, i)
		}
		s.SecurityGroups = append(s.SecurityGroups, secgroup(id, "t", rules...))
	}
	n := 0
	for k := 0; k < benchNets; k++ {
		var nw controlplane.Network
		if k%2 == 0 {
			nw = network(fmt.Sprintf("net%03d", k), "t", SegVLAN, "physnet1", 100+k)
		} else {
			nw = network(fmt.Sprintf("net%03d", k), "t", SegVXLAN, "", 5000+k)
		}
		s.Networks = append(s.Networks, nw)
		for j := 0; j < benchPerNet; j++ {
			id := fmt.Sprintf("p%05d", n)
			p := port(id, nw.ID, "node1", fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", k, j, n%256),
				[]string{fmt.Sprintf("10.%d.%d.%d", k/100, k%100, 10+j)}, fmt.Sprintf("sg%02d", n%benchGroups))
			s.Ports = append(s.Ports, p)
			ofp[id] = 100 + n
			n++
		}
		if nw.NetworkType == SegVXLAN {
			for _, h := range []string{"node2", "node3"} {
				for j := 0; j < benchRemotes; j++ {
					id := fmt.Sprintf("r%s-%03d-%d", h, k, j)
					s.Ports = append(s.Ports, port(id, nw.ID, h, fmt.Sprintf("fa:16:3f:%02x:0%s:%02x", k, h[4:], j),
						[]string{fmt.Sprintf("10.%d.%d.%d", k/100, k%100, 200+j)}, fmt.Sprintf("sg%02d", k%benchGroups)))
				}
			}
		}
	}
	return s, ofp
}

func benchModel(tb testing.TB) (*IR, *Plan) {
	tb.Helper()
	s, ofp := benchSnapshot()
	ir, err := Build(BuildInput{Host: "node1", Snapshot: s, OFPorts: ofp,
		VTEPs: map[string]netip.Addr{"node2": netip.MustParseAddr("192.0.2.2"), "node3": netip.MustParseAddr("192.0.2.3")}})
	if err != nil {
		tb.Fatal(err)
	}
	return ir, PlanNode(ir, ovsNode(), testLayout())
}

// heapSampler tracks the peak of live heap objects while a compile runs (runtime/metrics
// reads without stopping the world).
type heapSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	peak uint64
	base uint64
}

func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func startSampler() *heapSampler {
	runtime.GC()
	h := &heapSampler{stop: make(chan struct{}), base: heapObjects()}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			if v := heapObjects(); v > h.peak {
				h.peak = v
			}
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) done() (peakMB, retainedMB float64) {
	close(h.stop)
	h.wg.Wait()
	if v := heapObjects(); v > h.peak {
		h.peak = v
	}
	runtime.GC()
	retained := heapObjects()
	return float64(h.peak-h.base) / (1 << 20), float64(retained-h.base) / (1 << 20)
}

// expandedFlows is the baseline of conjunctive matches: the flows the security-group
// rules would need if every (port, rule, remote address) were its own flow, the way a
// compiler without conjunctions (or OVN's port-group ACLs at scale) expands them.
func expandedFlows(ir *IR) int {
	n := 0
	sets := map[string]int{}
	for _, p := range ir.Ports {
		for _, sgID := range p.SecurityGroups {
			for _, r := range ir.SecurityGroups[sgID].Rules {
				m := len(ruleMatches(r))
				if r.RemoteGroupID != "" {
					k, ok := sets[r.RemoteGroupID]
					if !ok {
						k = len(ir.AddressSet(r.RemoteGroupID))
						sets[r.RemoteGroupID] = k
					}
					m *= k
				}
				n += m
			}
		}
	}
	return n
}

func BenchmarkCompileFull(b *testing.B) {
	ir, plan := benchModel(b)
	b.ReportAllocs()
	var flows int
	var peak, retained float64
	var c *Compiler
	cpu0 := cpuTime()
	for b.Loop() {
		c = nil
		h := startSampler()
		var err error
		if c, err = NewCompiler(testLayout()); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Update(ir, plan); err != nil {
			b.Fatal(err)
		}
		flows = c.Len()
		p, r := h.done()
		peak, retained = max(peak, p), r
	}
	b.StopTimer()
	cpu := (cpuTime() - cpu0).Seconds() / float64(b.N)
	sgFlows := 0
	for _, f := range c.Flows() {
		if f.Table == TableEgressSG || f.Table == TableIngressSG {
			sgFlows++
		}
	}
	perOp := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(flows), "flows")
	b.ReportMetric(float64(flows)/float64(len(ir.Ports)), "flows/port")
	b.ReportMetric(peak, "peak-MB")
	b.ReportMetric(retained, "retained-MB")
	b.ReportMetric(retained*(1<<20)/float64(flows), "retained-B/flow")
	b.ReportMetric(perOp/2.0, "x-of-2s-target")
	b.ReportMetric(cpu, "cpu-s/op")
	b.ReportMetric(peak/200, "x-of-200MB-target")
	b.ReportMetric(float64(expandedFlows(ir))/float64(sgFlows), "expanded/conj-sg-flows")
}

// BenchmarkCompilePortChange is one port's IP changing on the compiled benchmark node:
// the caller's IR shares every other object with the previous one (IR.Clone). The
// baseline is a full compile of the same node, measured in the same run.
func BenchmarkCompilePortChange(b *testing.B) {
	ir0, plan := benchModel(b)
	c, err := NewCompiler(testLayout())
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if _, err := c.Update(ir0, plan); err != nil {
		b.Fatal(err)
	}
	full := time.Since(start)
	ir1 := ir0.Clone()
	p := *ir1.Ports["p05025"]
	p.IPs = []netip.Addr{netip.MustParseAddr("10.1.0.250")}
	ir1.Ports[p.ID] = &p
	m := *ir1.Members[p.ID]
	m.Addresses = []netip.Prefix{netip.MustParsePrefix("10.1.0.250/32")}
	ir1.Members[p.ID] = &m
	irs := []*IR{ir1, ir0}
	b.ReportAllocs()
	changed := 0
	i := 0
	cpu0 := cpuTime()
	for b.Loop() {
		d, err := c.Update(irs[i%2], plan)
		if err != nil {
			b.Fatal(err)
		}
		changed = len(d.Add) + len(d.Modify) + len(d.Delete)
		i++
	}
	perOp := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N)*1000, "cpu-ms/op")
	b.ReportMetric(float64(changed), "flows-changed")
	b.ReportMetric(full.Seconds()/perOp, "speedup-vs-full")
	b.ReportMetric(perOp/0.010, "x-of-10ms-target")
}

// BenchmarkPortChangeFromSnapshot is the same change when the caller rebuilds the IR
// and the plan from a fresh snapshot (no shared objects): the cost of the whole path.
func BenchmarkPortChangeFromSnapshot(b *testing.B) {
	var full time.Duration
	for _, mode := range []string{"full", "incremental"} {
		b.Run(mode, func(b *testing.B) {
			per := portChangeFromSnapshot(b, mode == "incremental")
			if mode == "full" {
				full = per
			} else if full > 0 {
				b.ReportMetric(float64(per)/float64(full), "x-of-full")
			}
			b.ReportMetric(float64(per)/1e6, "ms/change")
		})
	}
}

// portChangeFromSnapshot is what the agent does per reconcile after one port's IP
// changed on a 10k-port node: build the IR from the whole snapshot, plan, compile. full
// plans and diffs everything (PlanNode, Compiler.Update); incremental re-plans what
// DiffChanges names (PlanNodeChanges) and compiles with the change set (UpdateChanges),
// as agent/plan.go does. It returns the time per change.
func portChangeFromSnapshot(b *testing.B, incremental bool) time.Duration {
	s, ofp := benchSnapshot()
	vteps := map[string]netip.Addr{"node2": netip.MustParseAddr("192.0.2.2"), "node3": netip.MustParseAddr("192.0.2.3")}
	c, err := NewCompiler(testLayout())
	if err != nil {
		b.Fatal(err)
	}
	node, layout := ovsNode(), testLayout()
	var vlans map[string]uint16
	var prevIR *IR
	var prevPlan *Plan
	step := func(ip string) int {
		s.Ports[5025].FixedIPs[0].IPAddress = ip
		ir, err := Build(BuildInput{Host: "node1", Snapshot: s, OFPorts: ofp, VTEPs: vteps, LocalVLANs: vlans})
		if err != nil {
			b.Fatal(err)
		}
		vlans = ir.LocalVLANs()
		var d *Delta
		if incremental && prevIR != nil {
			ch := DiffChanges(prevIR, ir, nil, nil)
			prevPlan = PlanNodeChanges(prevIR, prevPlan, ir, ch, node, layout)
			d, err = c.UpdateChanges(ir, prevPlan, ch)
		} else {
			prevPlan = PlanNode(ir, node, layout)
			d, err = c.Update(ir, prevPlan)
		}
		if err != nil {
			b.Fatal(err)
		}
		prevIR = ir
		n := len(d.Add) + len(d.Modify) + len(d.Delete)
		if n == 0 {
			b.Fatal("the change changed no flow")
		}
		return n
	}
	step("10.1.0.35")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		step([]string{"10.1.0.250", "10.1.0.35"}[i%2])
		i++
	}
	return b.Elapsed() / time.Duration(b.N)
}
