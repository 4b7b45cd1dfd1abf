package ovsdpdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ErrNoNetdevDatapath is returned by PMDStats when ovs-vswitchd runs no userspace
// (netdev) datapath, so there are no PMD or main-thread statistics to read.
var ErrNoNetdevDatapath = errors.New("ovs-vswitchd has no netdev datapath")

// UnixctlOptions configure Unixctl.
type UnixctlOptions struct {
	// Target is ovs-appctl's -t: the control socket path (e.g.
	// /var/run/openvswitch/ovs-vswitchd.<pid>.ctl) or a daemon name looked up through
	// its pidfile in RunDir. Default: RunDir/ovs-vswitchd.ctl when that exists (a daemon
	// started with --unixctl there, as the labs and the demo do), else "ovs-vswitchd".
	Target string
	// RunDir is ovs-vswitchd's run directory (OVS_RUNDIR; default DefaultOVSRunDir).
	RunDir string
	// Binary is the ovs-appctl to run (default "ovs-appctl" from PATH).
	Binary string
	// Timeout bounds each call (default 30 s: a datapath flow dump at scale takes
	// seconds; ovs-appctl's own -T is set to it too). Callers bound it further with
	// their context (a scrape has 3 s).
	Timeout time.Duration
}

// Unixctl runs read-only `ovs-appctl` commands against ovs-vswitchd's control socket,
// one process per call. Safe for concurrent use.
type Unixctl struct {
	opts UnixctlOptions
}

// NewUnixctl returns the ovs-appctl runner.
func NewUnixctl(opts UnixctlOptions) *Unixctl {
	if opts.RunDir == "" {
		opts.RunDir = DefaultOVSRunDir
	}
	if opts.Target == "" {
		opts.Target = "ovs-vswitchd"
		if ctl := filepath.Join(opts.RunDir, "ovs-vswitchd.ctl"); fileExists(ctl) {
			opts.Target = ctl
		}
	}
	if opts.Binary == "" {
		opts.Binary = "ovs-appctl"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	return &Unixctl{opts: opts}
}

// Run runs `ovs-appctl -t <target> args...` and returns its standard output. A failure
// carries ovs-appctl's error output.
func (u *Unixctl) Run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, u.opts.Timeout)
	defer cancel()
	secs := max(1, int(u.opts.Timeout/time.Second))
	a := append([]string{"-T", fmt.Sprint(secs), "-t", u.opts.Target}, args...)
	cmd := exec.CommandContext(ctx, u.opts.Binary, a...)
	cmd.Env = append(os.Environ(), "OVS_RUNDIR="+u.opts.RunDir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("ovs-appctl -t %s %s: %w: %s", u.opts.Target, strings.Join(args, " "), err,
			firstLines(strings.TrimSpace(stderr.String()), 3))
	}
	return stdout.String(), nil
}

// PMDStats reads and parses `dpif-netdev/pmd-stats-show`: one entry per datapath thread
// (the main thread, and one per PMD thread when DPDK runs). It returns
// ErrNoNetdevDatapath (wrapped) when ovs-vswitchd has no netdev datapath.
func (u *Unixctl) PMDStats(ctx context.Context) ([]PMDStats, error) {
	out, err := u.Run(ctx, "dpif-netdev/pmd-stats-show")
	if err != nil {
		// OVS 3.1 answers this when no netdev datapath exists (all netdev bridges share
		// one, "ovs-netdev").
		if strings.Contains(err.Error(), "please specify an existing datapath") {
			return nil, fmt.Errorf("%w: %w", ErrNoNetdevDatapath, err)
		}
		return nil, err
	}
	return ParsePMDStats(strings.NewReader(out))
}
