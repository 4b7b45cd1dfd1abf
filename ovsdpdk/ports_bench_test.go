package ovsdpdk_test

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

// loopPorts is how many ports the per-port ovs-vsctl baseline attaches per iteration: at
// ~80 ports/s on an empty bridge, 1000 would take >10 s per iteration. Its rate is
// measured on the first loopPorts ports of an empty bridge, where ovs-vsctl is fastest
// (each call reads the whole database, so the cost grows with every port), so the
// ratio reported against it is a lower bound for 1000 ports.
const loopPorts = 100

// benchLab starts ovsdb-server alone (no ovs-vswitchd: every method is measured on the
// database path, as ovs-vsctl --no-wait does) with an offlane br-int, and connects.
func benchLab(b *testing.B) (*lab.OVS, *ovsdpdk.Client, *ovsdpdk.Ports) {
	b.Helper()
	lab.Require(b, "ovs-vsctl")
	o := lab.StartOVS(b, lab.Options{DBOnly: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := ovsdpdk.Connect(ctx, ovsdpdk.Options{Endpoint: o.Endpoint})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	l := &ovsdpdk.Layout{Bridges: []ovsdpdk.BridgeSpec{{Name: "br-int", DatapathType: "netdev", FailMode: "secure",
		ExternalIDs: map[string]string{ovsdpdk.KeyOwner: ovsdpdk.OwnerNode},
		Ports:       []ovsdpdk.PortSpec{{Name: "br-int", Type: "internal", ExternalIDs: map[string]string{ovsdpdk.KeyOwner: ovsdpdk.OwnerNode}}}}},
		OtherConfig: map[string]string{}, ExternalIDs: map[string]string{}}
	if _, err := c.ApplyNode(ctx, l, ovsdpdk.ApplyOptions{}); err != nil {
		b.Fatal(err)
	}
	return o, c, ovsdpdk.NewPorts(c, ovsdpdk.PortsOptions{})
}

func benchPorts(prefix string, from, n int) []ovsdpdk.Port {
	ps := make([]ovsdpdk.Port, n)
	for i := range ps {
		k := from + i
		ps[i] = ovsdpdk.Port{Name: fmt.Sprintf("%s%05d", prefix, k), Type: ovsdpdk.PortSystem,
			IfaceID: fmt.Sprintf("00000000-0000-4000-8000-%012d", k), MAC: fmt.Sprintf("02:00:00:%02x:%02x:%02x", k>>16&0xff, k>>8&0xff, k&0xff)}
	}
	return ps
}

func names(ps []ovsdpdk.Port) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name
	}
	return out
}

// vsctlClauses is the ovs-vsctl equivalent of attaching p: the port plus the same
// interface external_ids offlane writes.
func vsctlClauses(bridge string, p ovsdpdk.Port) []string {
	return []string{"add-port", bridge, p.Name, "--", "set", "Interface", p.Name,
		"external_ids:iface-id=" + p.IfaceID, "external_ids:attached-mac=" + p.MAC, "external_ids:iface-status=active"}
}

func vsctl(b *testing.B, o *lab.OVS, args ...string) {
	b.Helper()
	cmd := exec.Command("ovs-vsctl", append([]string{"--db=" + o.Endpoint, "--no-wait", "--timeout=120"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("ovs-vsctl: %v: %s", err, out)
	}
}

func resetVsctlBridge(b *testing.B, o *lab.OVS, br string) {
	b.Helper()
	vsctl(b, o, "--if-exists", "del-br", br, "--", "add-br", br, "--", "set", "Bridge", br, "datapath_type=netdev")
}

// BenchmarkPortAdd1000: attach 1000 ports to an empty bridge, side by side on one
// ovsdb-server: offlane's batched transactions (ns/op is this), ovs-vsctl --no-wait
// called once per port (measured on loopPorts ports, see loopPorts), and one ovs-vsctl
// call with 1000 add-port clauses. Reports ports/s for each and offlane's ratios.
func BenchmarkPortAdd1000(b *testing.B) {
	const n = 1000
	o, _, ps := benchLab(b)
	ctx := context.Background()
	var offlane, batch, loop time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ports := benchPorts("p", 0, n)
		start := time.Now()
		if err := ps.PortAdd(ctx, ports...); err != nil {
			b.Fatal(err)
		}
		offlane += time.Since(start)
		b.StopTimer()
		if err := ps.PortDel(ctx, names(ports)...); err != nil {
			b.Fatal(err)
		}

		resetVsctlBridge(b, o, "br-batch")
		args := []string{}
		for _, p := range benchPorts("b", 0, n) {
			args = append(append(args, vsctlClauses("br-batch", p)...), "--")
		}
		start = time.Now()
		vsctl(b, o, args[:len(args)-1]...)
		batch += time.Since(start)

		// Each method starts from the same database: ovs-vsctl reads all of it per call.
		vsctl(b, o, "del-br", "br-batch")
		resetVsctlBridge(b, o, "br-loop")
		start = time.Now()
		for _, p := range benchPorts("l", 0, loopPorts) {
			vsctl(b, o, vsctlClauses("br-loop", p)...)
		}
		loop += time.Since(start)
		vsctl(b, o, "del-br", "br-loop")
		b.StartTimer()
	}
	b.StopTimer()
	rate := func(ports int, d time.Duration) float64 { return float64(ports*b.N) / d.Seconds() }
	off, bat, lp := rate(n, offlane), rate(n, batch), rate(loopPorts, loop)
	b.ReportMetric(off, "offlane-ports/s")
	b.ReportMetric(bat, "vsctl-batch-ports/s")
	b.ReportMetric(lp, "vsctl-loop-ports/s")
	b.ReportMetric(off/lp, "x-vs-vsctl-loop")
	b.ReportMetric(off/bat, "x-vs-vsctl-batch")
}

// BenchmarkPortAddScale: the cost of attaching 1000 more ports to a bridge that already
// holds 0 … 9000 (so up to 10k ports in the database). ns/op is offlane's time for the
// 1000; flat ns/port across the sub-benchmarks means the cost per port does not grow
// with N. (ovs-vsctl is left out here: one call with 1000 clauses took 15 s beside 4000
// ports and 80 s beside 9000 on the lab machine.)
func BenchmarkPortAddScale(b *testing.B) {
	const n = 1000
	for _, existing := range []int{0, 4000, 9000} {
		b.Run(fmt.Sprintf("existing=%d", existing), func(b *testing.B) {
			_, _, ps := benchLab(b)
			ctx := context.Background()
			if existing > 0 {
				if err := ps.PortAdd(ctx, benchPorts("base", 0, existing)...); err != nil {
					b.Fatal(err)
				}
			}
			var offlane time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ports := benchPorts("p", existing, n)
				start := time.Now()
				if err := ps.PortAdd(ctx, ports...); err != nil {
					b.Fatal(err)
				}
				offlane += time.Since(start)
				b.StopTimer()
				if err := ps.PortDel(ctx, names(ports)...); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(offlane.Nanoseconds())/float64(n*b.N), "ns/port")
			b.ReportMetric(float64(n*b.N)/offlane.Seconds(), "offlane-ports/s")
		})
	}
}
