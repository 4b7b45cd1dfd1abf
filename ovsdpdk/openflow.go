package ovsdpdk

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/offlane/offlane/offload"
)

// OpenFlow is the channel to the OpenFlow switches (bridges) of one ovs-vswitchd. It
// holds only the two calls the applier makes, so a native OpenFlow connection can
// replace the ovs-ofctl implementation (Ofctl) later.
type OpenFlow interface {
	// DumpFlows returns the flows of bridge whose cookie equals cookie under mask (mask 0:
	// every flow), with counters when stats is true. Read-only, safe to retry. A bridge
	// that does not exist is an error.
	DumpFlows(ctx context.Context, bridge string, cookie, mask uint64, stats bool) ([]InstalledFlow, error)
	// Bundle applies mods to bridge in one atomic, ordered OpenFlow bundle: when it
	// returns nil every mod took effect at the same instant (packets see the old or the
	// new table, never a mix); when it returns an error none did. Mods are applied in
	// order. An empty mods is a no-op. Not idempotent in general (an add replaces, so
	// re-sending a successful bundle of adds and strict deletes is harmless).
	Bundle(ctx context.Context, bridge string, mods []FlowMod) error
}

// FlowOp is what a FlowMod does.
type FlowOp uint8

// Flow mod operations (ovs-ofctl bundle file keywords).
const (
	// FlowAdd adds the flow, replacing a flow with the same table, priority and match
	// (its cookie and actions; OVS keeps its counters unless the flow sets reset_counts).
	FlowAdd FlowOp = iota + 1
	// FlowModify changes the actions of the flow with exactly this table, priority and
	// match (modify_strict); counters and cookie stay. Nothing happens if there is none.
	FlowModify
	// FlowDelete removes the flow with exactly this table, priority and match, and only
	// if its cookie is Flow.Cookie (delete_strict with cookie=C/-1).
	FlowDelete
)

func (op FlowOp) String() string {
	switch op {
	case FlowAdd:
		return "add"
	case FlowModify:
		return "modify_strict"
	case FlowDelete:
		return "delete_strict"
	}
	return "flowop(" + strconv.Itoa(int(op)) + ")"
}

// FlowMod is one change in a bundle.
type FlowMod struct {
	Op   FlowOp
	Flow offload.Flow
}

// AppendLine appends the mod as one line of an `ovs-ofctl --bundle add-flows` file.
func (m FlowMod) AppendLine(b []byte) []byte {
	f := &m.Flow
	b = append(b, m.Op.String()...)
	b = append(b, " table="...)
	b = strconv.AppendUint(b, uint64(f.Table), 10)
	b = append(b, ",priority="...)
	b = strconv.AppendUint(b, uint64(f.Priority), 10)
	switch m.Op {
	case FlowAdd:
		b = append(b, ",cookie=0x"...)
		b = strconv.AppendUint(b, f.Cookie, 16)
	case FlowDelete:
		b = append(b, ",cookie=0x"...)
		b = strconv.AppendUint(b, f.Cookie, 16)
		b = append(b, "/-1"...)
	}
	if f.Match != "" {
		b = append(b, ',')
		b = append(b, f.Match...)
	}
	if m.Op != FlowDelete {
		b = append(b, ",actions="...)
		b = append(b, f.Actions...)
	}
	return append(b, '\n')
}

// OfctlOptions configure Ofctl.
type OfctlOptions struct {
	// RunDir is ovs-vswitchd's run directory, where each bridge listens on
	// <RunDir>/<bridge>.mgmt (default /var/run/openvswitch).
	RunDir string
	// Binary is the ovs-ofctl to run (default "ovs-ofctl" from PATH).
	Binary string
	// Timeout bounds each ovs-ofctl run (default 5 minutes: a bundle of hundreds of
	// thousands of flows takes tens of seconds on a loaded host).
	Timeout time.Duration
}

// DefaultOVSRunDir is where a packaged ovs-vswitchd puts its sockets.
const DefaultOVSRunDir = "/var/run/openvswitch"

// Ofctl is the OpenFlow channel through OVS's own ovs-ofctl (OpenFlow 1.5), one process
// per call, talking to the bridge's management socket. Safe for concurrent use.
type Ofctl struct {
	runDir  string
	bin     string
	timeout time.Duration
}

// NewOfctl returns the ovs-ofctl channel.
func NewOfctl(opts OfctlOptions) *Ofctl {
	o := &Ofctl{runDir: opts.RunDir, bin: opts.Binary, timeout: opts.Timeout}
	if o.runDir == "" {
		o.runDir = DefaultOVSRunDir
	}
	if o.bin == "" {
		o.bin = "ovs-ofctl"
	}
	if o.timeout <= 0 {
		o.timeout = 5 * time.Minute
	}
	return o
}

// Target is the ovs-ofctl switch argument for bridge: its management socket.
func (o *Ofctl) Target(bridge string) string {
	return "unix:" + filepath.Join(o.runDir, bridge+".mgmt")
}

func validBridgeName(b string) error {
	if b == "" || strings.ContainsAny(b, "/ \t\n") || len(b) > 64 {
		return fmt.Errorf("bridge %q: not a valid bridge name", b)
	}
	return nil
}

// DumpFlows implements OpenFlow.
func (o *Ofctl) DumpFlows(ctx context.Context, bridge string, cookie, mask uint64, stats bool) ([]InstalledFlow, error) {
	if err := validBridgeName(bridge); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	args := []string{"-O", "OpenFlow15", "--no-names"}
	if !stats {
		args = append(args, "--no-stats")
	}
	args = append(args, "dump-flows", o.Target(bridge))
	if mask != 0 {
		args = append(args, fmt.Sprintf("cookie=%#x/%#x", cookie&mask, mask))
	}
	cmd := exec.CommandContext(ctx, o.bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bridge %s: dump flows: %w", bridge, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bridge %s: dump flows: %w", bridge, err)
	}
	flows, perr := ParseFlowDump(bufio.NewReaderSize(out, 256*1024), bridge)
	if perr != nil {
		_, _ = io.Copy(io.Discard, out)
	}
	werr := cmd.Wait()
	if werr != nil {
		return nil, fmt.Errorf("bridge %s: %s dump-flows: %w: %s", bridge, o.bin, werr, firstLines(stderr.String(), 5))
	}
	if perr != nil {
		return nil, fmt.Errorf("bridge %s: %w", bridge, perr)
	}
	return flows, nil
}

// Bundle implements OpenFlow: `ovs-ofctl -O OpenFlow15 --no-names --bundle add-flows <bridge> -`
// with one add / modify_strict / delete_strict line per mod on stdin. OVS opens an
// ordered atomic bundle, sends the flow mods into it and commits; any error (a bad
// field, an unknown group or meter, a full table) discards the whole bundle.
func (o *Ofctl) Bundle(ctx context.Context, bridge string, mods []FlowMod) error {
	if err := validBridgeName(bridge); err != nil {
		return err
	}
	if len(mods) == 0 {
		return nil
	}
	for i := range mods {
		if err := checkFlowText(&mods[i].Flow); err != nil {
			return fmt.Errorf("bridge %s: %s: %w", bridge, mods[i].Op, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	// --no-names: numbers only (offlane writes no port or table names), and it spares
	// ovs-ofctl the port and table-features dumps it makes to resolve names: ~30 ms a
	// bundle, most of a small one's cost
	cmd := exec.CommandContext(ctx, o.bin, "-O", "OpenFlow15", "--no-names", "--bundle", "add-flows", o.Target(bridge), "-")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("bridge %s: bundle: %w", bridge, err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("bridge %s: bundle: %w", bridge, err)
	}
	// Stream the lines while ovs-ofctl parses them. Nothing reaches the switch before
	// ovs-ofctl has read (and parsed) the whole input, so a write error here cannot
	// leave half a bundle applied.
	buf := make([]byte, 0, 256*1024)
	var werr error
	for i := range mods {
		buf = mods[i].AppendLine(buf)
		if len(buf) >= 240*1024 || i == len(mods)-1 {
			if _, werr = stdin.Write(buf); werr != nil {
				break
			}
			buf = buf[:0]
		}
	}
	if err := stdin.Close(); err != nil && werr == nil {
		werr = err
	}
	if err := cmd.Wait(); err != nil {
		return &BundleError{Bridge: bridge, Err: err, Output: firstLines(out.String(), 10), Line: failedLine(out.String(), mods)}
	}
	if werr != nil {
		// ovs-ofctl exited 0 without reading everything: it cannot have committed the
		// whole change, so report it.
		return &BundleError{Bridge: bridge, Err: werr, Output: firstLines(out.String(), 10)}
	}
	return nil
}

// checkFlowText refuses text that would change the meaning of a bundle file line.
func checkFlowText(f *offload.Flow) error {
	if strings.ContainsAny(f.Match, "\n\r") || strings.ContainsAny(f.Actions, "\n\r") {
		return fmt.Errorf("flow %s: a newline in the match or actions", f.String())
	}
	if strings.Contains(f.Match, "actions=") {
		return fmt.Errorf("flow %s: the match contains actions=", f.String())
	}
	return nil
}

// BundleError is a bundle OVS refused; nothing of it was applied.
type BundleError struct {
	Bridge string
	Err    error
	Output string // what ovs-ofctl said (first lines)
	Line   string // the bundle line ovs-ofctl named, when it named one
}

func (e *BundleError) Error() string {
	msg := fmt.Sprintf("bridge %s: OpenFlow bundle refused, nothing applied: %v: %s", e.Bridge, e.Err, e.Output)
	if e.Line != "" {
		msg += " (at: " + e.Line + ")"
	}
	return msg
}

func (e *BundleError) Unwrap() error { return e.Err }

// ErrBundle matches every *BundleError with errors.Is.
var ErrBundle = errors.New("openflow bundle refused")

// Is makes errors.Is(err, ErrBundle) true for bundle errors.
func (e *BundleError) Is(target error) bool { return target == ErrBundle }

var lineRef = regexp.MustCompile(`-:(\d+):`)

// failedLine returns the bundle line ovs-ofctl's "-:N:" message points at (line N is
// mods[N-1]).
func failedLine(msg string, mods []FlowMod) string {
	m := lineRef.FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	n, err := strconv.Atoi(m[1])
	if err != nil || n < 1 || n > len(mods) {
		return ""
	}
	return clip(strings.TrimSuffix(string(mods[n-1].AppendLine(nil)), "\n"))
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], fmt.Sprintf("(%d more lines)", len(lines)-n))
	}
	for i, l := range lines {
		lines[i] = clip(l)
	}
	return strings.Join(lines, "; ")
}
