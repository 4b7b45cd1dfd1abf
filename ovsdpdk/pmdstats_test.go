package ovsdpdk_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/offlane/offlane/ovsdpdk"
)

func readPMDCapture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "pmdstats", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The captures are real OVS 3.1 output (TestLabPMDStats* -update-pmd rewrites them);
// the expected values are read off the files by hand.
func TestParsePMDStatsCaptures(t *testing.T) {
	mainNetdev := ovsdpdk.PMDStats{Main: true, NUMA: -1, Core: -1, PacketsReceived: 12, MegaflowHits: 8, MissUpcallOK: 4}
	tests := []struct {
		file string
		want []ovsdpdk.PMDStats
	}{
		{"ovs-3.1-netdev-main.txt", []ovsdpdk.PMDStats{mainNetdev}},
		{"ovs-3.1-dpdk-pmd.txt", []ovsdpdk.PMDStats{
			{NUMA: 0, Core: 1, PacketsReceived: 4, MegaflowHits: 2, MissUpcallOK: 2, HasCycles: true,
				IdleCycles: 25888846, ProcessingCycles: 708748, AvgCyclesPerPacket: 6649398.50, AvgProcessingCyclesPerPacket: 177187.00},
			{Main: true, NUMA: -1, Core: -1, PacketsReceived: 5, MegaflowHits: 3, MissUpcallOK: 2},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ovsdpdk.ParsePMDStats(strings.NewReader(readPMDCapture(t, tt.file)))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	pmd := ovsdpdk.PMDStats{HasCycles: true, IdleCycles: 25888846, ProcessingCycles: 708748}
	if u := pmd.Utilization(); fmt.Sprintf("%.4f", u) != "0.0266" { // OVS printed 2.66%
		t.Errorf("utilization %v, want OVS's 2.66%%", u)
	}
	if u := (&ovsdpdk.PMDStats{Main: true}).Utilization(); u != 0 {
		t.Errorf("main thread utilization %v, want 0", u)
	}
}

func TestParsePMDStatsEdges(t *testing.T) {
	tests := []struct {
		name, in string
		want     []ovsdpdk.PMDStats
		err      string
	}{
		{name: "empty", in: ""},
		{name: "unknown lines of later versions are skipped",
			in:   "pmd thread numa_id 1 core_id 7:\n  packets received: 9\n  sleep iterations: 12 (3.0 %)\n  emc hits: 9\n",
			want: []ovsdpdk.PMDStats{{NUMA: 1, Core: 7, PacketsReceived: 9, EMCHits: 9}}},
		{name: "tabs and CRLF", in: "main thread:\r\n\tpackets received: 3\r\n",
			want: []ovsdpdk.PMDStats{{Main: true, NUMA: -1, Core: -1, PacketsReceived: 3}}},
		{name: "counter before any header", in: "  packets received: 3\n", err: "line 1: \"packets received: 3\" before any thread header"},
		{name: "bad header", in: "pmd thread core_id 1:\n", err: "line 1: thread header"},
		{name: "not a header", in: "main thread\n", err: "line 1: \"main thread\" is neither a thread header"},
		{name: "negative core", in: "pmd thread numa_id 0 core_id -1:\n", err: "numa_id and core_id must be numbers"},
		{name: "bad counter", in: "main thread:\n  emc hits: lots\n", err: "line 2: emc hits: \"lots\" is not a counter"},
		{name: "no colon", in: "main thread:\n  emc hits 3\n", err: "line 2: \"emc hits 3\" is not \"name: value\""},
		{name: "bad float", in: "pmd thread numa_id 0 core_id 1:\n  avg cycles per packet: NaN (1/0)\n", err: "line 2: avg cycles per packet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ovsdpdk.ParsePMDStats(strings.NewReader(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// formatPMDStats writes stats back in OVS 3.1's pmd-stats-show layout.
func formatPMDStats(stats []ovsdpdk.PMDStats) string {
	var b strings.Builder
	for _, s := range stats {
		if s.Main {
			b.WriteString("main thread:\n")
		} else {
			fmt.Fprintf(&b, "pmd thread numa_id %d core_id %d:\n", s.NUMA, s.Core)
		}
		for _, kv := range []struct {
			k string
			v uint64
		}{{"packets received", s.PacketsReceived}, {"packet recirculations", s.Recirculations}, {"phwol hits", s.PHWOLHits},
			{"mfex opt hits", s.MFEXOptHits}, {"simple match hits", s.SimpleMatchHits}, {"emc hits", s.EMCHits},
			{"smc hits", s.SMCHits}, {"megaflow hits", s.MegaflowHits}, {"miss with success upcall", s.MissUpcallOK},
			{"miss with failed upcall", s.MissUpcallFailed}} {
			fmt.Fprintf(&b, "  %s: %d\n", kv.k, kv.v)
		}
		if s.HasCycles {
			fmt.Fprintf(&b, "  idle cycles: %d (50.00%%)\n  processing cycles: %d (50.00%%)\n", s.IdleCycles, s.ProcessingCycles)
		}
		if s.AvgCyclesPerPacket != 0 || s.AvgProcessingCyclesPerPacket != 0 {
			fmt.Fprintf(&b, "  avg cycles per packet: %v (1/1)\n  avg processing cycles per packet: %v (1/1)\n",
				s.AvgCyclesPerPacket, s.AvgProcessingCyclesPerPacket)
		}
	}
	return b.String()
}

// FuzzParsePMDStats: the parser never panics, and whatever it accepts formats back into
// text that parses to the same stats.
func FuzzParsePMDStats(f *testing.F) {
	for _, name := range []string{"ovs-3.1-netdev-main.txt", "ovs-3.1-dpdk-pmd.txt"} {
		f.Add(readPMDCapture(f, name))
	}
	f.Add("pmd thread numa_id 1 core_id 7:\n  idle cycles: 5 (x)\n  avg cycles per packet: 1e3 (1/1)\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ovsdpdk.ParsePMDStats(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, s := range got {
			if s.Main != (s.NUMA == -1 && s.Core == -1) || (!s.Main && (s.NUMA < 0 || s.Core < 0)) {
				t.Fatalf("thread identity %+v", s)
			}
			if u := s.Utilization(); u < 0 || u > 1 {
				t.Fatalf("utilization %v", u)
			}
		}
		again, err := ovsdpdk.ParsePMDStats(strings.NewReader(formatPMDStats(got)))
		if err != nil {
			t.Fatalf("reparse: %v", err)
		}
		if len(got) == 0 {
			got = nil
		}
		if !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip:\n%+v\n%+v", got, again)
		}
	})
}

// BenchmarkParsePMDStats parses a 16-PMD output; the baseline is reading the same text
// line by line with bufio (the floor any line parser pays).
func BenchmarkParsePMDStats(b *testing.B) {
	cap := readPMDCapture(b, "ovs-3.1-dpdk-pmd.txt")
	pmd, _, _ := strings.Cut(cap, "main thread:")
	var in strings.Builder
	for i := range 16 {
		in.WriteString(strings.Replace(pmd, "core_id 1:", fmt.Sprintf("core_id %d:", i), 1))
	}
	in.WriteString("main thread:" + strings.SplitN(cap, "main thread:", 2)[1])
	text := in.String()
	b.ReportAllocs()
	b.SetBytes(int64(len(text)))
	var base float64
	b.Run("baseline-lines", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			for _, l := range strings.Split(text, "\n") {
				n += len(strings.TrimSpace(l))
			}
			_ = n
		}
		base = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ovsdpdk.ParsePMDStats(strings.NewReader(text)); err != nil {
				b.Fatal(err)
			}
		}
		if base > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/base, "x-baseline")
		}
	})
}
