package kernel

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/test/lab"
)

// BenchmarkLabRouterThroughput: iperf3 TCP through one qrouter namespace of the nftables
// backend (Linux bridges stand in for br-int), in one run: routed east-west without NAT
// (the baseline), SNAT to an external server, and a floating IP (DNAT inbound). Reported
// as Gbit/s and as ratios to the routed baseline. Each b.N iteration is a 2 s iperf3 run.
func BenchmarkLabRouterThroughput(b *testing.B) {
	lab.Require(b, "ip", "nft", "iperf3")
	k := newKL(b)
	k.bridge("br-a", "r1-pa")
	k.bridge("br-b", "r1-pb")
	k.bridge("br-ext", "r1-pg")
	vmA := k.host("vma", "br-a", "10.0.1.5/24", "10.0.1.1")
	vmB := k.host("vmb", "br-b", "10.0.2.5/24", "10.0.2.1")
	ext := k.host("ext", "br-ext", "172.24.4.1/24", "")
	in := RouterInput{Router: labRouter("r1", "ext", "172.24.4.10"),
		FloatingIPs: []*offload.FloatingIP{{ID: "fip-b", RouterID: "r1", FloatingIP: addr("172.24.4.20"), FixedIP: addr("10.0.2.5")}}}
	if _, err := k.rs.Ensure(context.Background(), in); err != nil {
		b.Fatal(err)
	}
	run := func(from, serverNS, dst string) float64 {
		srv := exec.Command("ip", "netns", "exec", serverNS, "iperf3", "-s", "-1")
		if err := srv.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
		for i := 0; ; i++ { // until the server listens
			if o, _ := lab.Run("ip", "netns", "exec", serverNS, "ss", "-ltn"); strings.Contains(o, ":5201 ") {
				break
			}
			if i == 100 {
				b.Fatalf("iperf3 server in %s did not start", serverNS)
			}
			time.Sleep(50 * time.Millisecond)
		}
		out, err := exec.Command("ip", "netns", "exec", from, "iperf3", "-c", dst, "-t", "2", "-J").Output()
		if err != nil {
			b.Fatalf("iperf3 %s → %s: %v\n%s", from, dst, err, out)
		}
		var res struct {
			End struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		if err := json.Unmarshal(out, &res); err != nil {
			b.Fatal(err)
		}
		if res.End.SumReceived.BitsPerSecond == 0 {
			b.Fatalf("iperf3 %s → %s measured nothing:\n%s", from, dst, out)
		}
		return res.End.SumReceived.BitsPerSecond / 1e9
	}
	pingTTL(b, vmA, "10.0.2.5")
	pingTTL(b, vmA, "172.24.4.1")
	var routed, snat, fip float64
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		routed += run(vmA, vmB, "10.0.2.5")
		snat += run(vmA, ext, "172.24.4.1")
		fip += run(ext, vmB, "172.24.4.20")
	}
	n := float64(b.N)
	b.ReportMetric(routed/n, "routed-Gbit/s")
	b.ReportMetric(snat/n, "snat-Gbit/s")
	b.ReportMetric(fip/n, "fip-Gbit/s")
	b.ReportMetric(snat/routed, "snat/routed")
	b.ReportMetric(fip/routed, "fip/routed")
}
