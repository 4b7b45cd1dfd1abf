package controlplane_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offlane/offlane/controlplane"
)

// benchServer is a noauth server on a real bbolt file (fsync on every commit unless
// the options say otherwise).
type benchServer struct {
	srv    *controlplane.Server
	hs     *httptest.Server
	client *http.Client
	dir    string
}

func newBenchServer(b *testing.B) *benchServer {
	return newBenchServerWith(b, controlplane.BoltOptions{})
}

func newBenchServerWith(b *testing.B, opt controlplane.BoltOptions) *benchServer {
	b.Helper()
	dir := b.TempDir()
	st, err := controlplane.OpenBolt(b.Context(), filepath.Join(dir, controlplane.DBFileName), opt)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := controlplane.NewServer(b.Context(), controlplane.ServerConfig{Store: st, Auth: controlplane.AuthNoAuth})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	b.Cleanup(func() { hs.Close(); _ = srv.Close(); _ = st.Close() })
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	return &benchServer{srv: srv, hs: hs, client: &http.Client{Transport: tr}, dir: dir}
}

func (s *benchServer) do(method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, s.hs.URL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (s *benchServer) mustCreate(b *testing.B, path, body, member string) string {
	b.Helper()
	st, out, err := s.do("POST", path, []byte(body))
	if err != nil || st != 201 {
		b.Fatalf("POST %s: %d %v %s", path, st, err, out)
	}
	var m map[string]map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		b.Fatal(err)
	}
	return m[member]["id"].(string)
}

// networks100 makes 100 networks with a /24 each.
func (s *benchServer) networks100(b *testing.B) []string {
	var nets []string
	for i := range 100 {
		id := s.mustCreate(b, "/v2.0/networks", fmt.Sprintf(`{"network": {"name": "net-%d", "project_id": "bench"}}`, i), "network")
		s.mustCreate(b, "/v2.0/subnets", fmt.Sprintf(`{"subnet": {"network_id": %q, "cidr": "10.%d.%d.0/24", "ip_version": 4}}`, id, i/256, i%256), "subnet")
		nets = append(nets, id)
	}
	return nets
}

func percentile(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[int(float64(len(d)-1)*p)]
}

// createResult is one run of concurrent port creates.
type createResult struct {
	rate     float64 // ports/s
	p50, p99 time.Duration
	dbBytes  int64
}

// createPorts creates total ports round-robin on 100 networks with 16 concurrent
// clients through the HTTP API.
func createPorts(b *testing.B, opt controlplane.BoltOptions, total int) createResult {
	const clients = 16
	s := newBenchServerWith(b, opt)
	nets := s.networks100(b)
	bodies := make([][]byte, total)
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, `{"port": {"network_id": %q, "name": "p%d", "device_id": "vm-%d", "binding:vnic_type": "normal"}}`, nets[i%len(nets)], i, i)
	}
	lat := make([]time.Duration, total)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				t0 := time.Now()
				st, out, err := s.do("POST", "/v2.0/ports", bodies[i])
				lat[i] = time.Since(t0)
				if err != nil || st != 201 {
					failed.Add(1)
					b.Errorf("port %d: %d %v %s", i, st, err, out)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failed.Load() > 0 {
		b.Fatalf("%d creates failed", failed.Load())
	}
	fi, err := os.Stat(filepath.Join(s.dir, controlplane.DBFileName))
	if err != nil {
		b.Fatal(err)
	}
	return createResult{rate: float64(total) / elapsed.Seconds(), p50: percentile(lat, 0.50), p99: percentile(lat, 0.99), dbBytes: fi.Size()}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkPortCreate10k creates 10,000 ports on 100 networks through the HTTP API with
// 16 concurrent clients; every answer comes after its commit's fsync. Baselines in the
// same run: the same load without group commit (one fsync'd bbolt commit per create,
// 2,000 ports) and without fsync at all (NoSync, what the disk costs).
func BenchmarkPortCreate10k(b *testing.B) {
	b.ReportAllocs()
	var r, serial, nosync createResult
	for b.Loop() {
		r = createPorts(b, controlplane.BoltOptions{}, 10_000)
		b.StopTimer()
		serial = createPorts(b, controlplane.BoltOptions{MaxBatch: 1}, 2_000)
		nosync = createPorts(b, controlplane.BoltOptions{NoSync: true}, 10_000)
		b.StartTimer()
	}
	b.ReportMetric(r.rate, "ports/s")
	b.ReportMetric(ms(r.p50), "p50_ms")
	b.ReportMetric(ms(r.p99), "p99_ms")
	b.ReportMetric(float64(r.dbBytes)/(1<<20), "bbolt_MB")
	b.ReportMetric(serial.rate, "no_group_commit_ports/s")
	b.ReportMetric(ms(serial.p99), "no_group_commit_p99_ms")
	b.ReportMetric(r.rate/serial.rate, "x_vs_no_group_commit")
	b.ReportMetric(nosync.rate, "nosync_ports/s")
	b.ReportMetric(r.rate/nosync.rate, "fraction_of_nosync")
}

// BenchmarkPortList lists 10,000 ports on 100 networks: one network's 100 ports through
// the network_id index, the same 100 through a non-indexed filter (full scan, the
// baseline), and all 10,000.
func BenchmarkPortList(b *testing.B) {
	s := newBenchServer(b)
	nets := s.networks100(b)
	for i, n := range nets {
		var buf bytes.Buffer
		buf.WriteString(`{"ports": [`)
		for j := range 100 {
			if j > 0 {
				buf.WriteByte(',')
			}
			fmt.Fprintf(&buf, `{"network_id": %q, "name": "on-%d", "device_id": "vm-%d-%d"}`, n, i, i, j)
		}
		buf.WriteString(`]}`)
		if st, out, err := s.do("POST", "/v2.0/ports", buf.Bytes()); err != nil || st != 201 {
			b.Fatalf("bulk create: %d %v %.200s", st, err, out)
		}
	}
	list := func(b *testing.B, q string, want int) {
		b.ReportAllocs()
		for b.Loop() {
			st, out, err := s.do("GET", "/v2.0/ports"+q, nil)
			if err != nil || st != 200 {
				b.Fatalf("list: %d %v", st, err)
			}
			if b.N == 1 {
				var m map[string][]json.RawMessage
				if err := json.Unmarshal(out, &m); err != nil || len(m["ports"]) != want {
					b.Fatalf("list %s: %d ports, want %d (%v)", q, len(m["ports"]), want, err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/list")
	}
	var indexed, scan float64
	b.Run("filtered_by_network_id", func(b *testing.B) {
		list(b, "?network_id="+nets[42], 100)
		indexed = float64(b.Elapsed()) / float64(b.N)
	})
	b.Run("filtered_by_name_fullscan_baseline", func(b *testing.B) {
		list(b, "?name=on-42", 100)
		scan = float64(b.Elapsed()) / float64(b.N)
		if indexed > 0 {
			b.ReportMetric(scan/indexed, "x_slower_than_indexed")
		}
	})
	b.Run("all_10k", func(b *testing.B) {
		list(b, "", 10_100-100)
		if indexed > 0 {
			b.ReportMetric(float64(b.Elapsed())/float64(b.N)/indexed, "x_of_indexed")
		}
	})
}
