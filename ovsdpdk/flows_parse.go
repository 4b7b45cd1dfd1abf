package ovsdpdk

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/offlane/offlane/offload"
)

// InstalledFlow is one flow as `ovs-ofctl -O OpenFlow15 --no-names dump-flows` prints it:
// the flow (Match and Actions as OVS wrote them, Bridge as asked) and, when the dump had
// statistics, its counters and timeouts.
type InstalledFlow struct {
	offload.Flow
	HasStats    bool          `json:"-"`
	Packets     uint64        `json:"n_packets"`
	Bytes       uint64        `json:"n_bytes"`
	Duration    time.Duration `json:"duration"`
	IdleTimeout int           `json:"idle_timeout,omitempty"`
	HardTimeout int           `json:"hard_timeout,omitempty"`
	Importance  int           `json:"importance,omitempty"`
	// Flags are flow-mod flags OVS printed (send_flow_rem, check_overlap, reset_counts,
	// no_packet_counts, no_byte_counts).
	Flags []string `json:"flags,omitempty"`
}

// defaultPriority is OpenFlow's default flow priority; OVS omits it from dumps.
const defaultPriority = 32768

// ParseFlowDump reads the output of `ovs-ofctl -O OpenFlow15 --no-names dump-flows`
// (with or without --no-stats) and returns its flows, with Bridge set to bridge. Reply
// headers ("OFPST_FLOW reply ...") and blank lines are skipped; any other line that is
// not a flow is an error naming the line.
func ParseFlowDump(r io.Reader, bridge string) ([]InstalledFlow, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	var out []InstalledFlow
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if isDumpHeader(line) {
			continue
		}
		f, err := ParseFlowLine(line)
		if err != nil {
			return nil, fmt.Errorf("flow dump line %d: %w", n, err)
		}
		f.Bridge = bridge
		out = append(out, f)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("flow dump line %d: %w", n+1, err)
	}
	return out, nil
}

func isDumpHeader(line string) bool {
	if strings.TrimSpace(line) == "" {
		return true
	}
	if line[0] == ' ' {
		return false
	}
	return strings.HasPrefix(line, "OFPST_FLOW reply") || strings.HasPrefix(line, "NXST_FLOW reply")
}

// flowFlags are the flow-mod flags OVS prints as bare words before the match.
var flowFlags = map[string]bool{"send_flow_rem": true, "check_overlap": true, "reset_counts": true,
	"no_packet_counts": true, "no_byte_counts": true}

// flowMeta are the keys OVS prints before the match, each followed by a comma.
var flowMeta = map[string]bool{"cookie": true, "duration": true, "table": true, "n_packets": true,
	"n_bytes": true, "idle_timeout": true, "hard_timeout": true, "importance": true, "idle_age": true,
	"hard_age": true}

// ParseFlowLine parses one flow line of a dump (see ParseFlowDump). Bridge is left empty.
func ParseFlowLine(line string) (InstalledFlow, error) {
	f := InstalledFlow{Flow: offload.Flow{Priority: defaultPriority}}
	s := strings.TrimSpace(line)
	var head, acts string
	if rest, ok := strings.CutPrefix(s, "actions="); ok {
		acts = rest
	} else {
		i := strings.Index(s, " actions=")
		if i < 0 {
			return f, fmt.Errorf("%q: no actions=", clip(s))
		}
		head, acts = s[:i], s[i+len(" actions="):]
	}
	f.Actions = strings.TrimSpace(acts)
	if f.Actions == "" {
		return f, fmt.Errorf("%q: empty actions", clip(s))
	}
	toks := strings.Fields(head)
	for i, tok := range toks {
		last := i == len(toks)-1
		key, val, hasVal := strings.Cut(strings.TrimSuffix(tok, ","), "=")
		switch {
		case !hasVal && flowFlags[key]:
			f.Flags = append(f.Flags, key)
			continue
		case hasVal && flowMeta[key] && (!last || strings.HasSuffix(tok, ",")):
			if err := f.setMeta(key, val); err != nil {
				return f, fmt.Errorf("%q: %w", clip(s), err)
			}
			continue
		case !last:
			return f, fmt.Errorf("%q: unexpected %q before the match", clip(s), tok)
		case hasVal && flowMeta[key]:
			return f, fmt.Errorf("%q: %s is a flow attribute, not a match field", clip(s), key)
		}
		if err := f.setMatch(tok); err != nil {
			return f, fmt.Errorf("%q: %w", clip(s), err)
		}
	}
	return f, nil
}

func (f *InstalledFlow) setMeta(key, val string) error {
	var err error
	switch key {
	case "cookie":
		f.Cookie, err = parseHex64(val)
	case "duration":
		var sec float64
		sec, err = strconv.ParseFloat(strings.TrimSuffix(val, "s"), 64)
		if err == nil && (sec < 0 || sec > 1e12 || sec != sec) {
			err = errors.New("out of range")
		}
		f.Duration = time.Duration(sec * float64(time.Second))
		f.HasStats = true
	case "table":
		var t uint64
		t, err = strconv.ParseUint(val, 10, 8)
		f.Table = uint8(t)
	case "n_packets":
		f.Packets, err = strconv.ParseUint(val, 10, 64)
		f.HasStats = true
	case "n_bytes":
		f.Bytes, err = strconv.ParseUint(val, 10, 64)
		f.HasStats = true
	case "idle_timeout", "hard_timeout", "importance":
		var v uint64
		v, err = strconv.ParseUint(val, 10, 16)
		switch key {
		case "idle_timeout":
			f.IdleTimeout = int(v)
		case "hard_timeout":
			f.HardTimeout = int(v)
		default:
			f.Importance = int(v)
		}
	case "idle_age", "hard_age":
		_, err = strconv.ParseUint(val, 10, 64)
	}
	if err != nil {
		return fmt.Errorf("%s=%q: %w", key, val, err)
	}
	return nil
}

// setMatch takes the match as OVS prints it: "priority=N," first when not the default.
func (f *InstalledFlow) setMatch(m string) error {
	if strings.Contains(m, "actions=") {
		return fmt.Errorf("match %q contains actions=", m)
	}
	if rest, ok := strings.CutPrefix(m, "priority="); ok {
		p, tail, _ := strings.Cut(rest, ",")
		v, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return fmt.Errorf("priority=%q: %w", p, err)
		}
		f.Priority = uint16(v)
		m = tail
	}
	if m != "" && (strings.HasSuffix(m, ",") || strings.HasPrefix(m, ",") || strings.Contains(m, ",,")) {
		return fmt.Errorf("match %q has an empty field", m)
	}
	f.Match = m
	return nil
}

func parseHex64(s string) (uint64, error) {
	h, ok := strings.CutPrefix(s, "0x")
	if !ok {
		return strconv.ParseUint(s, 10, 64)
	}
	return strconv.ParseUint(h, 16, 64)
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// DumpLine formats the flow as `ovs-ofctl --no-names dump-flows` prints it (with
// statistics when HasStats); ParseFlowLine reads it back.
func (f InstalledFlow) DumpLine() string {
	var b strings.Builder
	b.WriteString(" cookie=0x")
	b.WriteString(strconv.FormatUint(f.Cookie, 16))
	b.WriteString(", ")
	if f.HasStats {
		fmt.Fprintf(&b, "duration=%.3fs, ", f.Duration.Seconds())
	}
	b.WriteString("table=")
	b.WriteString(strconv.Itoa(int(f.Table)))
	b.WriteString(", ")
	if f.HasStats {
		fmt.Fprintf(&b, "n_packets=%d, n_bytes=%d, ", f.Packets, f.Bytes)
	}
	if f.IdleTimeout > 0 {
		fmt.Fprintf(&b, "idle_timeout=%d, ", f.IdleTimeout)
	}
	if f.HardTimeout > 0 {
		fmt.Fprintf(&b, "hard_timeout=%d, ", f.HardTimeout)
	}
	for _, fl := range f.Flags {
		b.WriteString(fl)
		b.WriteByte(' ')
	}
	if f.Importance > 0 {
		fmt.Fprintf(&b, "importance=%d, ", f.Importance)
	}
	m := f.Match
	if f.Priority != defaultPriority {
		m = "priority=" + strconv.Itoa(int(f.Priority)) + pick(m == "", "", ","+m)
	}
	if m != "" {
		b.WriteString(m)
		b.WriteByte(' ')
	}
	b.WriteString("actions=")
	b.WriteString(f.Actions)
	return b.String()
}
