package ovsdpdk

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// PMDStats is one datapath thread's section of `ovs-appctl dpif-netdev/pmd-stats-show`:
// the "main thread" (packets of non-PMD ports, e.g. veths on the netdev datapath) or a
// "pmd thread numa_id N core_id M". Counters are cumulative since ovs-vswitchd started
// or since the last `dpif-netdev/pmd-stats-clear`.
type PMDStats struct {
	// Main is true for the main thread; NUMA and Core are then -1.
	Main bool
	NUMA int
	Core int

	PacketsReceived uint64 // "packets received"
	Recirculations  uint64 // "packet recirculations"
	// Hits per lookup stage, in the order the datapath tries them.
	PHWOLHits       uint64 // partial hardware offload ("phwol hits")
	MFEXOptHits     uint64 // optimised miniflow extract ("mfex opt hits")
	SimpleMatchHits uint64 // "simple match hits"
	EMCHits         uint64 // exact match cache ("emc hits")
	SMCHits         uint64 // signature match cache ("smc hits")
	MegaflowHits    uint64 // dpcls ("megaflow hits")
	// Misses that went to ovs-vswitchd's slow path.
	MissUpcallOK     uint64 // "miss with success upcall"
	MissUpcallFailed uint64 // "miss with failed upcall"

	// HasCycles is true when the section reports cycles (PMD threads that have run):
	// OVS prints no cycle lines for the main thread.
	HasCycles        bool
	IdleCycles       uint64 // "idle cycles"
	ProcessingCycles uint64 // "processing cycles"
	// AvgCyclesPerPacket is "avg cycles per packet" (0 when OVS printed none: no packets
	// yet).
	AvgCyclesPerPacket float64
	// AvgProcessingCyclesPerPacket is "avg processing cycles per packet".
	AvgProcessingCyclesPerPacket float64
}

// Utilization is the share of the thread's cycles spent processing packets (0..1),
// since the counters started; 0 without cycle counters.
func (s *PMDStats) Utilization() float64 {
	total := float64(s.IdleCycles) + float64(s.ProcessingCycles) // no uint64 wrap-around
	if !s.HasCycles || total == 0 {
		return 0
	}
	return float64(s.ProcessingCycles) / total
}

// pmdCounters maps pmd-stats-show's counter lines (OVS 3.1 wording) to fields.
var pmdCounters = map[string]func(*PMDStats) *uint64{
	"packets received":                       func(s *PMDStats) *uint64 { return &s.PacketsReceived },
	"packet recirculations":                  func(s *PMDStats) *uint64 { return &s.Recirculations },
	"phwol hits":                             func(s *PMDStats) *uint64 { return &s.PHWOLHits },
	"mfex opt hits":                          func(s *PMDStats) *uint64 { return &s.MFEXOptHits },
	"simple match hits":                      func(s *PMDStats) *uint64 { return &s.SimpleMatchHits },
	"emc hits":                               func(s *PMDStats) *uint64 { return &s.EMCHits },
	"smc hits":                               func(s *PMDStats) *uint64 { return &s.SMCHits },
	"megaflow hits":                          func(s *PMDStats) *uint64 { return &s.MegaflowHits },
	"miss with success upcall":               func(s *PMDStats) *uint64 { return &s.MissUpcallOK },
	"miss with failed upcall":                func(s *PMDStats) *uint64 { return &s.MissUpcallFailed },
	"idle cycles":                            func(s *PMDStats) *uint64 { return &s.IdleCycles },
	"processing cycles":                      func(s *PMDStats) *uint64 { return &s.ProcessingCycles },
	"avg. datapath passes per packet":        nil, // derived: ignored
	"avg. subtable lookups per megaflow hit": nil,
	"avg. packets per output batch":          nil,
}

// ParsePMDStats parses the output of `ovs-appctl dpif-netdev/pmd-stats-show` (OVS 3.1
// wording; lines it does not know, as later versions add, are skipped) into one entry
// per thread section, in output order. A counter line outside a section, a section
// header it cannot read or a malformed number is an error naming the line.
func ParsePMDStats(r io.Reader) ([]PMDStats, error) {
	var out []PMDStats
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		if line == "" {
			continue
		}
		indented := raw[0] == ' ' || raw[0] == '\t'
		if !indented {
			s, err := parsePMDHeader(line)
			if err != nil {
				return nil, fmt.Errorf("pmd-stats-show line %d: %w", n, err)
			}
			out = append(out, s)
			continue
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("pmd-stats-show line %d: %q before any thread header", n, line)
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("pmd-stats-show line %d: %q is not \"name: value\"", n, line)
		}
		val = strings.TrimSpace(val)
		cur := &out[len(out)-1]
		switch key {
		case "avg cycles per packet":
			f, err := parseLeadingFloat(val)
			if err != nil {
				return nil, fmt.Errorf("pmd-stats-show line %d: %s: %w", n, key, err)
			}
			cur.AvgCyclesPerPacket = f
			continue
		case "avg processing cycles per packet":
			f, err := parseLeadingFloat(val)
			if err != nil {
				return nil, fmt.Errorf("pmd-stats-show line %d: %s: %w", n, key, err)
			}
			cur.AvgProcessingCyclesPerPacket = f
			continue
		}
		field, known := pmdCounters[key]
		if !known || field == nil {
			continue
		}
		// "idle cycles: 123 (99.50%)": the count comes first.
		num, _, _ := strings.Cut(val, " ")
		v, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("pmd-stats-show line %d: %s: %q is not a counter", n, key, num)
		}
		*field(cur) = v
		if key == "idle cycles" || key == "processing cycles" {
			cur.HasCycles = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("pmd-stats-show: %w", err)
	}
	return out, nil
}

// parsePMDHeader reads "main thread:" or "pmd thread numa_id 0 core_id 1:".
func parsePMDHeader(line string) (PMDStats, error) {
	h, ok := strings.CutSuffix(line, ":")
	if !ok {
		return PMDStats{}, fmt.Errorf("%q is neither a thread header nor an indented counter", line)
	}
	if h == "main thread" {
		return PMDStats{Main: true, NUMA: -1, Core: -1}, nil
	}
	f := strings.Fields(h)
	if len(f) != 6 || f[0] != "pmd" || f[1] != "thread" || f[2] != "numa_id" || f[4] != "core_id" {
		return PMDStats{}, fmt.Errorf("thread header %q: want \"main thread:\" or \"pmd thread numa_id N core_id M:\"", line)
	}
	numa, err1 := strconv.Atoi(f[3])
	core, err2 := strconv.Atoi(f[5])
	if err1 != nil || err2 != nil || numa < 0 || core < 0 {
		return PMDStats{}, fmt.Errorf("thread header %q: numa_id and core_id must be numbers", line)
	}
	return PMDStats{NUMA: numa, Core: core}, nil
}

// parseLeadingFloat reads "2345.67 (1234/56)" as 2345.67.
func parseLeadingFloat(s string) (float64, error) {
	num, _, _ := strings.Cut(s, " ")
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a non-negative number", num)
	}
	return f, nil
}
