package ovsdpdk

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Datapath flows: what ovs-vswitchd actually put into its datapath, as
// `ovs-appctl dpctl/dump-flows -m` prints it. With other_config:hw-offload=true the
// kernel datapath's flows may live in tc instead (dp:tc), and in the NIC when the tc
// rule is in hardware (offloaded:yes); explain reports this per flow.

// DatapathFlow is one line of `ovs-appctl dpctl/dump-flows -m`.
type DatapathFlow struct {
	UFID  string `json:"ufid,omitempty"`
	Match string `json:"match"` // the flow key with masks, as printed
	// InPort is the in_port(...) of Match: a port name (or a number when OVS printed
	// numbers); "" when the match has none.
	InPort  string `json:"in_port,omitempty"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	Used    string `json:"used"`            // "never" or seconds ago ("0.870s")
	Flags   string `json:"flags,omitempty"` // TCP flags seen
	// Offloaded is "yes" (the datapath layer below OVS has it in hardware, or cannot say
	// it has not), "partial" (OVS's userspace datapath with a hardware-assisted match),
	// or "" when OVS printed nothing: not offloaded.
	Offloaded string `json:"offloaded,omitempty"`
	// DP is the datapath layer holding the flow: "ovs" (the kernel or userspace datapath
	// itself), "tc" (a tc flower rule OVS installed: hw-offload=true), "dpdk" (rte_flow).
	DP      string `json:"dp,omitempty"`
	Actions string `json:"actions"`
}

// InTC reports whether OVS put the flow into tc.
func (f *DatapathFlow) InTC() bool { return f.DP == "tc" }

// InHW reports whether the flow is in the NIC: offloaded fully and held below OVS.
func (f *DatapathFlow) InHW() bool { return f.Offloaded == "yes" && f.DP != "" && f.DP != "ovs" }

// Touches reports whether the flow comes in on port, or outputs to it (an action that
// is the bare port name or number, at any nesting depth: clone(...,p2)).
func (f *DatapathFlow) Touches(port string) bool {
	if port == "" || strings.ContainsAny(port, "=:(),") {
		return false // not a port name: a piece of an action
	}
	if f.InPort == port {
		return true
	}
	return actionOutputs(f.Actions, port)
}

// actionOutputs reports whether the action list has an output to port: a token that is
// exactly the port, not followed by '(' (an action name) and not a key=value or
// key:value piece.
func actionOutputs(acts, port string) bool {
	for i := 0; i < len(acts); {
		j := i
		for j < len(acts) && !strings.ContainsRune(",()", rune(acts[j])) {
			j++
		}
		tok := acts[i:j]
		if tok == port && (j == len(acts) || acts[j] != '(') {
			return true
		}
		i = j + 1
	}
	return false
}

// ParseDatapathFlows reads the output of `ovs-appctl dpctl/dump-flows -m` (also without
// -m). Header lines of the userspace datapath ("flow-dump from pmd on cpu core: 0",
// "flow-dump from the main thread:") and blank lines are skipped; any other line that is
// not a flow is an error naming the line.
func ParseDatapathFlows(r io.Reader) ([]DatapathFlow, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	var out []DatapathFlow
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "flow-dump from ") {
			continue
		}
		f, err := ParseDatapathFlow(line)
		if err != nil {
			return nil, fmt.Errorf("datapath flow dump line %d: %w", n, err)
		}
		out = append(out, f)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("datapath flow dump line %d: %w", n+1, err)
	}
	return out, nil
}

// ParseDatapathFlow parses one flow line:
//
//	[ufid:U, ]MATCH, packets:N, bytes:N, used:T[, flags:F][, offloaded:yes|partial][, dp:L][, dp-extra-info:X], actions:A
//
// MATCH holds commas only inside parentheses; A is the rest of the line.
func ParseDatapathFlow(line string) (DatapathFlow, error) {
	var f DatapathFlow
	rest := line
	if strings.HasPrefix(rest, "ufid:") {
		i := strings.Index(rest, ", ")
		if i < 0 {
			return f, fmt.Errorf("%q: ufid without a flow after it", line)
		}
		f.UFID, rest = rest[len("ufid:"):i], rest[i+2:]
	}
	// The match ends at the first top-level ", " (commas inside key(...) are nested).
	depth, end := 0, -1
	for i := 0; i < len(rest) && end < 0; i++ {
		switch rest[i] {
		case '(':
			depth++
		case ')':
			if depth == 0 {
				return f, fmt.Errorf("%q: unbalanced ')' in the match", line)
			}
			depth--
		case ',':
			if depth == 0 && i+1 < len(rest) && rest[i+1] == ' ' {
				end = i
			}
		}
	}
	if end < 0 {
		return f, fmt.Errorf("%q: not a datapath flow (no statistics after the match)", line)
	}
	f.Match, rest = rest[:end], rest[end+2:]
	f.InPort = matchField(f.Match, "in_port")
	seen := map[string]bool{}
	for {
		if a, ok := strings.CutPrefix(rest, "actions:"); ok {
			f.Actions = a
			break
		}
		i := strings.Index(rest, ", ")
		if i < 0 {
			return f, fmt.Errorf("%q: no actions", line)
		}
		field := rest[:i]
		rest = rest[i+2:]
		k, v, ok := strings.Cut(field, ":")
		if !ok {
			return f, fmt.Errorf("%q: field %q is not key:value", line, field)
		}
		if seen[k] {
			return f, fmt.Errorf("%q: field %s twice", line, k)
		}
		seen[k] = true
		var err error
		switch k {
		case "packets":
			f.Packets, err = strconv.ParseUint(v, 10, 64)
		case "bytes":
			f.Bytes, err = strconv.ParseUint(v, 10, 64)
		case "used":
			f.Used = v
		case "flags":
			f.Flags = v
		case "offloaded":
			f.Offloaded = v
		case "dp":
			f.DP = v
		default: // dp-extra-info and fields of later OVS versions
		}
		if err != nil {
			return f, fmt.Errorf("%q: %s: %w", line, k, err)
		}
	}
	if !seen["packets"] || !seen["bytes"] || !seen["used"] {
		return f, fmt.Errorf("%q: not a datapath flow (packets, bytes and used are required)", line)
	}
	return f, nil
}

// matchField returns the value inside key(...) at the top level of a match, "" if absent.
func matchField(match, key string) string {
	depth, start := 0, 0
	for i := 0; i <= len(match); i++ {
		if i < len(match) {
			switch match[i] {
			case '(':
				depth++
				continue
			case ')':
				depth--
				continue
			case ',':
				if depth != 0 {
					continue
				}
			default:
				continue
			}
		}
		field := match[start:i]
		start = i + 1
		if v, ok := strings.CutPrefix(field, key+"("); ok && strings.HasSuffix(v, ")") {
			return v[:len(v)-1]
		}
	}
	return ""
}

// DatapathFlows returns every datapath flow of ovs-vswitchd's datapaths with its
// datapath layer (`ovs-appctl dpctl/dump-flows -m`). Read-only; safe to retry.
func (u *Unixctl) DatapathFlows(ctx context.Context) ([]DatapathFlow, error) {
	out, err := u.Run(ctx, "dpctl/dump-flows", "-m")
	if err != nil {
		return nil, err
	}
	return ParseDatapathFlows(strings.NewReader(out))
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// PortNames maps the OpenFlow port numbers of bridge to their names
// (`ovs-ofctl dump-ports-desc`). Read-only.
func (o *Ofctl) PortNames(ctx context.Context, bridge string) (map[int]string, error) {
	if err := validBridgeName(bridge); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.bin, "-O", "OpenFlow15", "dump-ports-desc", o.Target(bridge))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("bridge %s: %s dump-ports-desc: %w: %s", bridge, o.bin, err, firstLines(stderr.String(), 5))
	}
	return ParsePortDesc(stdout.String())
}

// ParsePortDesc reads `ovs-ofctl dump-ports-desc` output: the lines " N(name): addr:..."
// give port N's name (LOCAL, the bridge's own port, is left out). Other lines (the reply
// header, config/state/speed lines) are skipped.
func ParsePortDesc(s string) (map[int]string, error) {
	out := map[int]string{}
	for _, line := range strings.Split(s, "\n") {
		l := strings.TrimSpace(line)
		open := strings.IndexByte(l, '(')
		if open <= 0 || !strings.Contains(l, "): addr:") {
			continue
		}
		num := l[:open]
		end := strings.Index(l, "): addr:")
		if num == "LOCAL" || end < open {
			continue
		}
		n, err := strconv.Atoi(num)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("port description %q: port number %q", l, num)
		}
		name := l[open+1 : end]
		if name == "" {
			return nil, fmt.Errorf("port description %q: empty port name", l)
		}
		out[n] = name
	}
	return out, nil
}
