package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options choose what StartOVS brings up.
type Options struct {
	// DBOnly starts ovsdb-server alone (no ovs-vswitchd): benchmarks of the database path.
	DBOnly bool
	// DPDK runs the DPDK build of ovs-vswitchd. It takes the host-wide DPDK lab lock
	// (DPDK tests are serial even across test binaries), prepares hugepages (or --no-huge)
	// and fills OVS.DPDK. DPDK is initialised only if PresetDPDK is set or the test
	// writes dpdk-init=true itself (e.g. through `offlane node apply`).
	DPDK bool
	// NoHuge forces DPDK's --no-huge memory even when hugepages could be allocated.
	NoHuge bool
	// PresetDPDK writes OVS.DPDK.OtherConfig plus dpdk-init=true before ovs-vswitchd
	// starts and waits until it reports dpdk_initialized.
	PresetDPDK bool
	// OtherConfig is written into Open_vSwitch other_config before ovs-vswitchd starts.
	OtherConfig map[string]string
	// SystemDatapath prepares for bridges with datapath_type=system (OVS's kernel
	// datapath): the openvswitch module is loaded before ovs-vswitchd starts, and the test
	// skips when the kernel has no OVS datapath (this machine's; the kernel lab's has one).
	SystemDatapath bool
	// ServerArgs are added to ovsdb-server's command line, e.g. more remotes
	// ("--remote=pssl:6640:127.0.0.1") with "--private-key=…", "--certificate=…",
	// "--ca-cert=…".
	ServerArgs []string
}

// DPDKEnv is what a DPDK lab needs in OVS's other_config and on testpmd's command line.
type DPDKEnv struct {
	NoHuge      bool   // DPDK runs on anonymous memory (--no-huge)
	HugeDir     string // private hugetlbfs mount ("" with NoHuge)
	SocketMem   []int  // MB per NUMA node for dpdk-socket-mem (nil with NoHuge)
	Extra       string // dpdk-extra: --no-pci, the file prefix, --no-huge memory
	PMDCPU      int    // the CPU for the PMD thread
	LcoreCPU    int    // the CPU for DPDK's non-PMD lcore
	PMDMaxSleep int    // µs; keeps an idle PMD from spinning a whole core
	// OtherConfig is the complete set of Open_vSwitch other_config keys above.
	OtherConfig map[string]string
	filePrefix  string
}

// OVS is one private Open vSwitch: ovsdb-server with its database, logs and sockets in
// Dir, and (unless DBOnly) ovs-vswitchd running inside its own network namespace NS.
type OVS struct {
	t        testing.TB
	ID       string // short random id naming this lab's namespaces and DPDK prefixes
	Dir      string // run, db and log directory (under t.TempDir)
	NS       string // network namespace of ovs-vswitchd
	DBSock   string // ovsdb-server's unix socket
	Endpoint string // "unix:" + DBSock, for OVSDB clients
	DPDK     *DPDKEnv

	opts     Options
	rec      *labRecord
	mu       sync.Mutex
	server   *proc
	vswitchd *proc
}

// proc is a daemon the lab started and waits for.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// PID is the process id.
func (p *proc) PID() int { return p.cmd.Process.Pid }

// state says whether the process is running or how it ended.
func (p *proc) state() string {
	if p.alive() {
		return "still running"
	}
	if p.err != nil {
		return "exited: " + p.err.Error()
	}
	return "exited"
}

// errOrNone keeps %w printable when there is no error.
func errOrNone(err error) error {
	if err == nil {
		return errors.New("none")
	}
	return err
}

// StartOVS brings up a private OVS and registers its teardown with t.Cleanup (even when
// the test fails): `ovs-appctl exit --cleanup` then SIGKILL by PID, the namespace deleted,
// hugetlbfs unmounted and nr_hugepages restored. It skips the test when the lab cannot
// run here (see Require).
func StartOVS(t testing.TB, opts Options) *OVS {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("lab: needs Linux (network namespaces, OVS userspace datapath)")
	}
	RequireOVS(t)
	if opts.DPDK {
		RequireDPDK(t)
	}
	if opts.SystemDatapath {
		requireKernelDatapath(t)
	}
	o := &OVS{t: t, ID: newID(), opts: opts}
	if !opts.DPDK {
		sweep(t, false) // DPDK labs sweep under the DPDK lock, hugepages included
	}
	o.record(nil)
	t.Cleanup(o.dropRecord) // the last cleanup to run
	o.Dir = shortDir(t, o.ID)
	o.NS = "ol" + o.ID + "-ovs"
	o.DBSock = filepath.Join(o.Dir, "db.sock")
	o.Endpoint = "unix:" + o.DBSock

	if opts.DPDK {
		dpdkLock(t)
		sweep(t, true)
		// OFFLANE_LAB_NOHUGE=1 forces DPDK's --no-huge (to exercise that path by hand).
		o.DPDK = o.prepareDPDK(t, opts.NoHuge || os.Getenv("OFFLANE_LAB_NOHUGE") == "1")
	}
	if !opts.DBOnly {
		mustRun(t, "ip", "netns", "add", o.NS)
		t.Cleanup(func() { o.deleteNetns(o.NS) })
		mustRun(t, "ip", "-n", o.NS, "link", "set", "lo", "up")
	}

	db := filepath.Join(o.Dir, "conf.db")
	mustRun(t, "ovsdb-tool", "create", db, SchemaPath)
	oc := map[string]string{}
	for k, v := range opts.OtherConfig {
		oc[k] = v
	}
	if opts.PresetDPDK && o.DPDK != nil {
		for k, v := range o.DPDK.OtherConfig {
			oc[k] = v
		}
		oc["dpdk-init"] = "true"
	}
	mustRun(t, "ovsdb-tool", "transact", db, initTxn(oc))

	t.Cleanup(func() {
		if t.Failed() {
			o.dumpLogs()
		}
		o.stopAll()
	})
	if err := o.StartOVSDBServer(); err != nil {
		t.Fatal(err)
	}
	if !opts.DBOnly {
		if err := o.StartVswitchd(); err != nil {
			t.Fatal(err)
		}
		if opts.PresetDPDK && o.DPDK != nil {
			if err := o.WaitDPDKInitialized(15 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	return o
}

// initTxn is the OVSDB transaction that `ovs-vsctl init` would make: the one
// Open_vSwitch row, here with other_config preset.
func initTxn(oc map[string]string) string {
	pairs := [][2]string{}
	for k, v := range oc {
		pairs = append(pairs, [2]string{k, v})
	}
	row := map[string]any{"other_config": []any{"map", pairs}}
	b, _ := json.Marshal([]any{"Open_vSwitch", map[string]any{"op": "insert", "table": "Open_vSwitch", "row": row}})
	return string(b)
}

func (o *OVS) env() []string {
	return append(os.Environ(),
		"OVS_RUNDIR="+o.Dir, "OVS_DBDIR="+o.Dir, "OVS_LOGDIR="+o.Dir, "OVS_SYSCONFDIR="+o.Dir,
		"OVS_PKGDATADIR=/usr/share/openvswitch")
}

// Env is the environment for OVS command-line tools (ovs-ofctl, ovs-appctl) to find this
// instance's sockets.
func (o *OVS) Env() []string { return o.env() }

// StartOVSDBServer starts (or restarts, after KillOVSDBServer) ovsdb-server on the
// existing database and waits until its socket accepts connections.
func (o *OVS) StartOVSDBServer() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.server != nil && o.server.alive() {
		return fmt.Errorf("lab: ovsdb-server already running (pid %d)", o.server.PID())
	}
	_ = os.Remove(o.DBSock)
	args := []string{filepath.Join(o.Dir, "conf.db"),
		"--remote=punix:" + o.DBSock,
		"--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
		"--unixctl=" + filepath.Join(o.Dir, "ovsdb-server.ctl"),
		"--log-file=" + filepath.Join(o.Dir, "ovsdb-server.log"),
		"--no-chdir", "-vconsole:off"}
	args = append(args, o.opts.ServerArgs...)
	p, err := o.spawn("ovsdb-server", nil, "ovsdb-server", args...)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	o.server = p
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", o.DBSock); err == nil {
			_ = c.Close()
			return nil
		}
		if !p.alive() || time.Now().After(deadline) {
			return fmt.Errorf("lab: ovsdb-server did not come up (%s):\n%s", p.state(), o.tail("ovsdb-server.log", 20))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// StartVswitchd starts (or restarts, after KillVswitchd) ovs-vswitchd inside NS and waits
// until its control socket answers.
func (o *OVS) StartVswitchd() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.opts.DBOnly {
		return errors.New("lab: StartVswitchd on a DBOnly lab")
	}
	if o.vswitchd != nil && o.vswitchd.alive() {
		return fmt.Errorf("lab: ovs-vswitchd already running (pid %d)", o.vswitchd.PID())
	}
	bin := VswitchdBin
	if o.opts.DPDK {
		bin = VswitchdDPDKBin
	}
	ctl := filepath.Join(o.Dir, "ovs-vswitchd.ctl")
	_ = os.Remove(ctl)
	args := []string{"netns", "exec", o.NS, bin, o.Endpoint,
		"--unixctl=" + ctl,
		"--log-file=" + filepath.Join(o.Dir, "ovs-vswitchd.log"),
		"--no-chdir", "-vconsole:off"}
	p, err := o.spawn("ovs-vswitchd", nil, "ip", args...)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	o.vswitchd = p
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(ctl); err == nil {
			if _, err := o.appctl(5*time.Second, "version"); err == nil {
				return nil
			}
		}
		if !p.alive() || time.Now().After(deadline) {
			return fmt.Errorf("lab: ovs-vswitchd did not come up (%s):\n%s", p.state(), o.tail("ovs-vswitchd.log", 30))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// KillVswitchd sends SIGKILL to ovs-vswitchd (no cleanup: its taps stay, as after a
// crash) and waits until it is gone.
func (o *OVS) KillVswitchd() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return kill(o.vswitchd)
}

// KillOVSDBServer sends SIGKILL to ovsdb-server and waits until it is gone.
func (o *OVS) KillOVSDBServer() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return kill(o.server)
}

// VswitchdPID is the PID of the running ovs-vswitchd (0 when not running).
func (o *OVS) VswitchdPID() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.vswitchd == nil || !o.vswitchd.alive() {
		return 0
	}
	return o.vswitchd.PID()
}

// ServerPID is the PID of the running ovsdb-server (0 when not running).
func (o *OVS) ServerPID() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.server == nil || !o.server.alive() {
		return 0
	}
	return o.server.PID()
}

func kill(p *proc) error {
	if p == nil || !p.alive() {
		return errors.New("lab: not running")
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("lab: %s (pid %d) survived SIGKILL", p.name, p.PID())
	}
}

// spawn starts a daemon as a child of the test process (so it is reaped and can be
// killed by PID), with its output in Dir/<name>.out.
func (o *OVS) spawn(name string, extraEnv []string, bin string, args ...string) (*proc, error) {
	out, err := os.OpenFile(filepath.Join(o.Dir, name+".out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(o.env(), extraEnv...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = o.Dir
	// Own process group (a ^C to `go test` is handled by the cleanups) and SIGKILL if the
	// test binary dies without running them.
	cmd.SysProcAttr = daemonAttr()
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = out.Close()
		close(p.done)
	}()
	return p, nil
}

// stopAll stops ovs-vswitchd (exit --cleanup removes its taps) and ovsdb-server, killing
// them by PID when they do not exit in time.
func (o *OVS) stopAll() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if p := o.vswitchd; p != nil && p.alive() {
		_, _ = o.appctl(10*time.Second, "exit", "--cleanup")
		o.waitOrKill(p, 5*time.Second)
	}
	if p := o.server; p != nil && p.alive() {
		_, _ = runCmd(5*time.Second, nil, "ovs-appctl", "-t", filepath.Join(o.Dir, "ovsdb-server.ctl"), "exit")
		o.waitOrKill(p, 5*time.Second)
	}
}

func (o *OVS) waitOrKill(p *proc, grace time.Duration) {
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		o.t.Errorf("lab: %s (pid %d) survived SIGKILL", p.name, p.PID())
	}
}

// Appctl runs `ovs-appctl -t <vswitchd ctl> args...` and returns its output.
func (o *OVS) Appctl(args ...string) (string, error) {
	return o.appctl(20*time.Second, args...)
}

func (o *OVS) appctl(timeout time.Duration, args ...string) (string, error) {
	a := append([]string{"-t", filepath.Join(o.Dir, "ovs-vswitchd.ctl")}, args...)
	return runCmd(timeout, o.env(), "ovs-appctl", a...)
}

// Ofctl runs `ovs-ofctl args...` against this instance (OVS_RUNDIR points at Dir).
func (o *OVS) Ofctl(args ...string) (string, error) {
	return runCmd(20*time.Second, o.env(), "ovs-ofctl", args...)
}

// Select reads rows straight from ovsdb-server with ovsdb-client (independent of the
// code under test): columns of the rows of table matching where (an OVSDB condition
// list, nil for all rows). Values are OVSDB JSON notation.
func (o *OVS) Select(table string, where []any, columns ...string) ([]map[string]any, error) {
	if where == nil {
		where = []any{}
	}
	op := map[string]any{"op": "select", "table": table, "where": where}
	if len(columns) > 0 {
		op["columns"] = columns
	}
	txn, _ := json.Marshal([]any{"Open_vSwitch", op})
	out, err := runCmd(20*time.Second, nil, "ovsdb-client", "transact", o.Endpoint, string(txn))
	if err != nil {
		return nil, err
	}
	var res []struct {
		Rows  []map[string]any `json:"rows"`
		Error string           `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return nil, fmt.Errorf("ovsdb-client output %q: %w", out, err)
	}
	if len(res) != 1 || res[0].Error != "" {
		return nil, fmt.Errorf("select %s: %s", table, out)
	}
	return res[0].Rows, nil
}

// Transact sends raw OVSDB operations (JSON objects as Go maps) with ovsdb-client, the
// way an operator or another tool would change the database behind offlane's back, and
// returns the result array. An operation error is returned as an error.
func (o *OVS) Transact(ops ...any) ([]map[string]any, error) {
	txn, _ := json.Marshal(append([]any{"Open_vSwitch"}, ops...))
	out, err := runCmd(20*time.Second, nil, "ovsdb-client", "transact", o.Endpoint, string(txn))
	if err != nil {
		return nil, err
	}
	var res []map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return nil, fmt.Errorf("ovsdb-client output %q: %w", out, err)
	}
	for _, r := range res {
		if r != nil && r["error"] != nil {
			return res, fmt.Errorf("transact: %v: %v", r["error"], r["details"])
		}
	}
	return res, nil
}

// WaitDPDKInitialized waits until ovs-vswitchd reports Open_vSwitch dpdk_initialized=true.
func (o *OVS) WaitDPDKInitialized(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		rows, err := o.Select("Open_vSwitch", nil, "dpdk_initialized")
		if err == nil && len(rows) == 1 && rows[0]["dpdk_initialized"] == true {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: DPDK not initialized after %s (rows %v, select error %w):\n%s", timeout, rows, errOrNone(err), o.tail("ovs-vswitchd.log", 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Tail returns the last n lines of a file in Dir (e.g. "ovs-vswitchd.log").
func (o *OVS) Tail(name string, n int) string { return o.tail(name, n) }

func (o *OVS) tail(name string, n int) string {
	b, err := os.ReadFile(filepath.Join(o.Dir, name))
	if err != nil {
		return fmt.Sprintf("(%s: %v)", name, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (o *OVS) dumpLogs() {
	for _, f := range []string{"ovsdb-server.log", "ovs-vswitchd.log", "ovs-vswitchd.out", "testpmd.out"} {
		if _, err := os.Stat(filepath.Join(o.Dir, f)); err == nil {
			o.t.Logf("lab: last lines of %s:\n%s", f, o.tail(f, 40))
		}
	}
}

func (o *OVS) deleteNetns(ns string) {
	if out, err := runCmd(10*time.Second, nil, "ip", "netns", "del", ns); err != nil && !strings.Contains(out, "No such file") {
		o.t.Errorf("lab: delete netns %s: %v", ns, err)
	}
}

// newID returns 6 random hex characters.
func newID() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// shortDir returns a fresh directory under t.TempDir(). Unix socket paths are limited to
// 107 bytes and long test names make long temp dirs, so when needed the directory is
// reached through a short symlink in /tmp (removed at cleanup).
func shortDir(t testing.TB, id string) string {
	d := t.TempDir()
	if len(d) <= 48 {
		return d
	}
	link := filepath.Join(os.TempDir(), "ol-"+id)
	if err := os.Symlink(d, link); err != nil {
		t.Fatalf("lab: symlink %s: %v", link, err)
	}
	t.Cleanup(func() { _ = os.Remove(link) })
	return link
}

// runCmd runs a command with a timeout and returns its combined output.
func runCmd(timeout time.Duration, env []string, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	if env != nil {
		cmd.Env = env
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

func mustRun(t testing.TB, bin string, args ...string) string {
	t.Helper()
	out, err := runCmd(30*time.Second, nil, bin, args...)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	return out
}

// Run runs a command (e.g. "ip", "netns", "exec", ...) with a 30 s timeout and returns
// its combined output.
func Run(bin string, args ...string) (string, error) {
	return runCmd(30*time.Second, nil, bin, args...)
}

// --- DPDK ------------------------------------------------------------------------

// dpdkLockPath serialises DPDK labs across test binaries: a PMD and testpmd each spin a
// core, and `go test ./...` runs packages in parallel.
const dpdkLockPath = "/run/lock/offlane-lab-dpdk.lock"

func dpdkLock(t testing.TB) {
	t.Helper()
	path := dpdkLockPath
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		path = filepath.Join(os.TempDir(), filepath.Base(path))
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("lab: DPDK lock: %v", err)
	}
	start := time.Now()
	if err := lockFile(f); err != nil {
		_ = f.Close()
		t.Fatalf("lab: DPDK lock %s: %v", path, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("lab: waited %s for the DPDK lab lock", d.Round(time.Millisecond))
	}
	t.Cleanup(func() {
		_ = unlockFile(f)
		_ = f.Close()
	})
}

const hugepagesSysctl = "/proc/sys/vm/nr_hugepages"

// labHugeMB is the 2M-hugepage memory a DPDK lab makes sure is free: OVS takes
// dpdk-socket-mem (512 MB) and testpmd 256 MB, with room for the page rounding.
const labHugeMB = 1024

func (o *OVS) prepareDPDK(t testing.TB, noHuge bool) *DPDKEnv {
	t.Helper()
	env := &DPDKEnv{filePrefix: "ol" + o.ID, PMDMaxSleep: 100, LcoreCPU: 0, PMDCPU: 0}
	if runtime.NumCPU() > 1 {
		env.PMDCPU = 1
	}
	t.Cleanup(func() {
		for _, s := range []string{"-ovs", "-vm"} {
			_ = os.RemoveAll(filepath.Join("/var/run/dpdk", env.filePrefix+s))
		}
	})
	if !noHuge {
		if dir, err := o.hugepages(t); err != nil {
			t.Logf("lab: no hugepages (%v): DPDK runs with --no-huge (functional only, slower)", err)
		} else {
			env.HugeDir = dir
		}
	}
	env.NoHuge = env.HugeDir == ""
	oc := map[string]string{
		"dpdk-lcore-mask": fmt.Sprintf("0x%x", 1<<env.LcoreCPU),
		"pmd-cpu-mask":    fmt.Sprintf("0x%x", 1<<env.PMDCPU),
		"pmd-maxsleep":    strconv.Itoa(env.PMDMaxSleep),
	}
	if env.NoHuge {
		// OVS 3.1 always adds --in-memory, which needs --legacy-mem next to --no-huge.
		env.Extra = "--no-pci --no-huge -m 1024 --legacy-mem --file-prefix=" + env.filePrefix + "-ovs"
	} else {
		env.Extra = "--no-pci --file-prefix=" + env.filePrefix + "-ovs"
		env.SocketMem = []int{512}
		oc["dpdk-socket-mem"] = "512"
		// Without a limit OVS sizes its mempools from every free hugepage, and testpmd
		// (the VM) finds none left.
		oc["dpdk-socket-limit"] = "512"
		oc["dpdk-hugepage-dir"] = env.HugeDir
	}
	oc["dpdk-extra"] = env.Extra
	env.OtherConfig = oc
	return env
}

// hugepages makes sure labHugeMB of free 2M pages exist (raising vm.nr_hugepages and
// restoring it at cleanup) and mounts a private hugetlbfs (unmounted at cleanup).
func (o *OVS) hugepages(t testing.TB) (string, error) {
	need := uint64(labHugeMB / 2)
	free, err := meminfo("HugePages_Free")
	if err != nil {
		return "", err
	}
	if free < need {
		b, err := os.ReadFile(hugepagesSysctl)
		if err != nil {
			return "", err
		}
		orig, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return "", err
		}
		want := orig + need - free
		if err := os.WriteFile(hugepagesSysctl, []byte(strconv.FormatUint(want, 10)), 0o644); err != nil {
			return "", fmt.Errorf("raise %s: %w", hugepagesSysctl, err)
		}
		o.record(func(r *labRecord) { r.HugeOrig, r.HugeWant = orig, want })
		t.Cleanup(func() {
			// Give back what we added, unless someone else changed the pool meanwhile.
			// (This runs before the DPDK lock is released, so no other lab interferes.)
			b, err := os.ReadFile(hugepagesSysctl)
			if err == nil && strings.TrimSpace(string(b)) == strconv.FormatUint(want, 10) {
				if err := os.WriteFile(hugepagesSysctl, []byte(strconv.FormatUint(orig, 10)), 0o644); err != nil {
					t.Errorf("lab: restore nr_hugepages=%d: %v", orig, err)
				}
				if b, _ := os.ReadFile(hugepagesSysctl); strings.TrimSpace(string(b)) != strconv.FormatUint(orig, 10) {
					t.Errorf("lab: nr_hugepages is %s after restoring it to %d", strings.TrimSpace(string(b)), orig)
				}
			}
		})
		if free, err = meminfo("HugePages_Free"); err != nil || free < need {
			return "", fmt.Errorf("only %d free 2M hugepages after raising nr_hugepages (need %d)", free, need)
		}
	}
	dir := filepath.Join(o.Dir, "huge")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", err
	}
	if err := mountHugetlbfs(dir); err != nil {
		return "", fmt.Errorf("mount hugetlbfs on %s: %w", dir, err)
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		o.record(func(r *labRecord) { r.HugeMount = real }) // as /proc/mounts shows it
	}
	t.Cleanup(func() {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
		unmount(dir)
	})
	return dir, nil
}

func meminfo(key string) (uint64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == key+":" {
			return strconv.ParseUint(f[1], 10, 64)
		}
	}
	return 0, errors.New("/proc/meminfo has no " + key)
}

// requireKernelDatapath loads the openvswitch module (ovs-vswitchd does not: its
// genetlink families are not auto-loaded) or skips the test.
func requireKernelDatapath(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/sys/module/openvswitch"); err == nil {
		return
	}
	if out, err := runCmd(30*time.Second, nil, "modprobe", "openvswitch"); err != nil {
		t.Skipf("lab: no OVS kernel datapath in this kernel (modprobe openvswitch: %v %s); the kernel lab (make test-kernel) has one", err, strings.TrimSpace(out))
	}
}
