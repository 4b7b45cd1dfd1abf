package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"go.uber.org/zap"

	"github.com/offlane/offlane/agent"
	"github.com/offlane/offlane/test/lab"
)

// benchProc is a process the benchmark started: its stdout lines, its stderr in a file.
type benchProc struct {
	name    string
	cmd     *exec.Cmd
	stderr  string // file
	started time.Time
	mu      sync.Mutex
	out     []string
	done    chan struct{}
}

// fetchTo saves the body of a GET of url in path.
func fetchTo(b *testing.B, url, path string) {
	b.Helper()
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		b.Fatal(err)
	}
}

// startBenchProc starts bin with args; it is SIGKILLed if the test binary dies, and
// stopped at cleanup with SIGTERM (SIGKILL after 20 s), by PID.
func startBenchProc(b *testing.B, name string, env []string, bin string, args ...string) *benchProc {
	b.Helper()
	p := &benchProc{name: name, stderr: filepath.Join(b.TempDir(), name+".stderr"), done: make(chan struct{})}
	errf, err := os.Create(p.stderr)
	if err != nil {
		b.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = errf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	p.started = time.Now()
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.out = append(p.out, sc.Text())
			p.mu.Unlock()
		}
		_ = p.cmd.Wait()
		_ = errf.Close()
		close(p.done)
	}()
	b.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			b.Errorf("%s (pid %d) did not stop on SIGTERM: killed", name, p.cmd.Process.Pid)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitLine waits for a stdout line matching re and returns its first group.
func (p *benchProc) waitLine(b *testing.B, re *regexp.Regexp, timeout time.Duration) string {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for seen := 0; ; {
		p.mu.Lock()
		lines := p.out[seen:]
		p.mu.Unlock()
		for _, l := range lines {
			if m := re.FindStringSubmatch(l); m != nil {
				return m[1]
			}
		}
		seen += len(lines)
		select {
		case <-p.done:
			b.Fatalf("%s exited: %s", p.name, p.tail())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s printed no %q within %s: %s", p.name, re, timeout, p.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *benchProc) tail() string {
	raw, _ := os.ReadFile(p.stderr)
	if len(raw) > 4000 {
		raw = raw[len(raw)-4000:]
	}
	return string(raw)
}

// buildOfflane builds cmd/offlane as `make build` does.
func buildOfflane(b *testing.B) string {
	b.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		b.Skip("the go command is not in PATH (make bench puts /usr/local/go/bin there): cannot build cmd/offlane")
	}
	out := filepath.Join(b.TempDir(), "offlane")
	if raw, err := exec.Command(goBin, "build", "-trimpath", "-o", out, "github.com/offlane/offlane/cmd/offlane").CombinedOutput(); err != nil {
		b.Fatalf("go build cmd/offlane: %v\n%s", err, raw)
	}
	return out
}

// agentNetnsScript runs a command in a mount namespace of its own whose /run/netns holds
// only the OVS lab's namespace $NS and what the command creates. An agent deletes the
// qdhcp- namespaces it does not serve; `offlane agent` has no flag for their prefix, and
// other labs (the demo) may run agents on this host at the same time: here it sees none
// of theirs. Its namespaces go with the process.
const agentNetnsScript = `set -e
touch "$H/ovs-ns"
mount --bind "/run/netns/$NS" "$H/ovs-ns"
mount -t tmpfs -o size=1m,mode=0755 offlane-bench /run/netns
touch "/run/netns/$NS"
mount --bind "$H/ovs-ns" "/run/netns/$NS"
umount "$H/ovs-ns"
exec "$@"`

// BenchmarkLabAgentProcess10kPorts: the real binaries, `offlane serve` (the API on its
// bbolt store) and `offlane agent --url` (with --metrics-listen, as a scraped node runs
// it) on a lab OVS, converged on 10,000 ACTIVE ports: 50 VXLAN networks of 200 behind 5
// routers with SNAT gateways, all in the remote-group security group, on tunnel ports
// (see bench_lab_linux_test.go). The ports are created unbound (bulk API), their
// interfaces made, then bound to the node through the API (8 clients), as Nova binds a
// port and plugs its VM. Reported: the agent process's VmRSS once every port is ACTIVE
// (target < 200 MB), its peak VmHWM, its RSS after one /metrics scrape with the Go heap
// that scrape reports, and as baselines in the same run the agent's RSS before any port
// and the RSS of `offlane serve` and ovs-vswitchd holding the same 10,000 ports.
func BenchmarkLabAgentProcess10kPorts(b *testing.B) {
	lab.RequireOVS(b)
	lab.Require(b, "unshare", "mount", "umount", "sh")
	b.ReportAllocs()
	for range b.N {
		agentProcess10k(b)
	}
}

func agentProcess10k(b *testing.B) {
	const total = 10_000
	b.StopTimer()
	bin := buildOfflane(b)
	log := lab.Logger(b).WithOptions(zap.IncreaseLevel(zap.WarnLevel))
	s := startScaleOVS(b, log)
	dir := b.TempDir()
	node := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(node, []byte(s.yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	srv := startBenchProc(b, "serve", nil, bin, "serve", "--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "data"))
	url := srv.waitLine(b, regexp.MustCompile(`serving the Neutron API on (https?://\S+)`), 30*time.Second)
	h := filepath.Join(dir, "mnt")
	if err := os.MkdirAll(h, 0o700); err != nil {
		b.Fatal(err)
	}
	// GODEBUG=gctrace=1: the runtime prints each GC's heap sizes on stderr, among them the
	// live heap it marked (the only change to the process)
	ag := startBenchProc(b, "agent", []string{"H=" + h, "NS=" + s.o.NS, "GODEBUG=gctrace=1"}, "unshare", "--mount", "--propagation", "private",
		"sh", "-c", agentNetnsScript, "sh", bin, "agent", "--url", url, "--node-config", node, "--host", host,
		"--ovs-netns", s.o.NS, "--state-dir", filepath.Join(dir, "agent"), "--plan-file", filepath.Join(dir, "plan.json"),
		"--metrics-listen", "127.0.0.1:0", "--pprof")
	metricsURL := ag.waitLine(b, regexp.MustCompile(`metrics on (http://\S+)/metrics`), 30*time.Second)
	pid := ag.cmd.Process.Pid
	if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); strings.TrimSpace(string(comm)) != "offlane" {
		b.Fatalf("pid %d is %q, not the offlane agent", pid, comm)
	}
	waitReady := func(what string) {
		deadline := time.Now().Add(3 * time.Minute)
		for {
			resp, err := http.Get(metricsURL + "/readyz")
			if err == nil {
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("agent not ready %s after 3 min: %s", what, ag.tail())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitReady("on the empty store")
	time.Sleep(time.Second) // past the first reconcile's garbage
	rssEmpty := procStatus(b, pid)["VmRSS"]

	admin, api := scaleClient(url, "admin"), scaleClient(url, "bench")
	topo := scaleTopology(b, admin, api, 50, 5)
	ctx := context.Background()
	var ids, macs []string
	for start := 0; start < total; start += 200 {
		var list []map[string]any
		for i := start; i < start+200; i++ {
			list = append(list, map[string]any{"network_id": topo.nets[i%len(topo.nets)], "name": fmt.Sprintf("b%05d", i),
				"security_groups": []string{topo.sg}})
		}
		var resp struct {
			Ports []struct {
				ID  string `json:"id"`
				MAC string `json:"mac_address"`
			} `json:"ports"`
		}
		if _, err := api.Post(ctx, api.ServiceURL("ports"), map[string]any{"ports": list}, &resp,
			&gophercloud.RequestOpts{OkCodes: []int{http.StatusCreated}}); err != nil {
			b.Fatalf("bulk create: %v", err)
		}
		for _, p := range resp.Ports {
			ids, macs = append(ids, p.ID), append(macs, p.MAC)
		}
	}
	s.addIfaces(b, kindTunnel, ifaceNames("vx", 0, total), ids, macs)

	st, err := agent.NewHTTPState(url, &http.Client{}, "")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.Load(ctx); err != nil { // the revision to watch from
		b.Fatal(err)
	}
	w := watchActive(b, st)
	b.StartTimer()
	bindStart := time.Now()
	inParallel(b, 8, total, func(k int) error {
		body := map[string]any{"port": map[string]any{"binding:host_id": host}}
		if _, err := api.Put(ctx, api.ServiceURL("ports", ids[k]), body, nil, &gophercloud.RequestOpts{OkCodes: []int{http.StatusOK}}); err != nil {
			return fmt.Errorf("bind port %s: %w", ids[k], err)
		}
		return nil
	})
	bound := time.Now()
	done, err := w.wait(ids, 4*time.Minute)
	b.StopTimer()
	if err != nil {
		b.Fatalf("%v; agent stderr: %s", err, ag.tail())
	}
	waitReady("on 10,000 ports")
	agentSt := procStatus(b, pid)
	if path := os.Getenv("OFFLANE_BENCH_HEAPPROFILE"); path != "" {
		// the agent's heap once converged, before the scrape (gc=1: live objects only)
		fetchTo(b, metricsURL+"/debug/pprof/heap?gc=1", path)
	}
	srvSt := procStatus(b, srv.cmd.Process.Pid)
	vsSt := procStatus(b, s.o.VswitchdPID())

	// One Prometheus scrape, as a scraped node serves one every interval.
	resp, err := http.Get(metricsURL + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	heap := promValue(raw, "go_memstats_heap_inuse_bytes")
	if path := os.Getenv("OFFLANE_BENCH_HEAPPROFILE"); path != "" {
		fetchTo(b, metricsURL+"/debug/pprof/heap", path+".after-scrape")
	}
	scraped := procStatus(b, pid)
	maxLive, gcs := gcLive(b, ag.stderr, bindStart.Sub(ag.started))

	mb := func(v int64) float64 { return float64(v) / (1 << 20) }
	b.ReportMetric(mb(agentSt["VmRSS"]), "agent-rss-MB")
	b.ReportMetric(float64(agentSt["VmRSS"])/scaleRSSTarget, "x-of-200MB-target")
	b.ReportMetric(mb(agentSt["VmHWM"]), "agent-peak-rss-MB")
	b.ReportMetric(float64(agentSt["VmHWM"])/scaleRSSTarget, "peak-x-of-200MB-target")
	b.ReportMetric(mb(scraped["VmRSS"]), "agent-rss-after-scrape-MB")
	b.ReportMetric(heap/(1<<20), "agent-go-heap-inuse-MB")
	// the largest live heap a GC marked while the agent converged on the ports: what a
	// reconcile at 10,000 ports holds at once (GOGC=100 lets the heap grow to twice that
	// before the next GC)
	b.ReportMetric(maxLive, "agent-live-heap-max-MB")
	b.ReportMetric(float64(gcs), "agent-gcs-converging")
	b.ReportMetric(mb(rssEmpty), "agent-rss-no-ports-MB")
	b.ReportMetric(float64(agentSt["VmRSS"]-rssEmpty)/total/1024, "agent-KB/port")
	b.ReportMetric(mb(srvSt["VmRSS"]), "serve-rss-MB")
	b.ReportMetric(mb(vsSt["VmRSS"]), "vswitchd-rss-MB")
	b.ReportMetric(done.t.Sub(bound).Seconds(), "converge-after-binds-s")
	b.ReportMetric(bound.Sub(bindStart).Seconds(), "bind-calls-s")
}

// gcLine is a GODEBUG=gctrace=1 line: "gc 12 @3.4s 2%: … 250->260->140 MB, 280 MB goal, …":
// the time since the process started, and the heap at GC start, at GC end and the live
// heap it marked.
var gcLine = regexp.MustCompile(`^gc \d+ @([0-9.]+)s .* \d+->\d+->(\d+) MB, `)

// gcLive returns the largest live heap (MB) of the GCs in a gctrace log that ran from
// since (after the process started) on, and how many there were.
func gcLive(b *testing.B, file string, since time.Duration) (hi float64, n int) {
	b.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		m := gcLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		at, _ := strconv.ParseFloat(m[1], 64)
		live, _ := strconv.ParseFloat(m[2], 64)
		if at < since.Seconds() {
			continue
		}
		hi = max(hi, live)
		n++
	}
	if n == 0 {
		b.Fatalf("no gctrace line after %s in the agent's stderr (%s)", since, file)
	}
	return hi, n
}

// promValue returns the value of an unlabelled sample in a Prometheus text exposition
// (0 when absent).
func promValue(text []byte, name string) float64 {
	for _, l := range bytes.Split(text, []byte("\n")) {
		if f := strings.Fields(string(l)); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return 0
}
