package lab

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Capture is a running tcpdump inside a namespace.
type Capture struct {
	t      testing.TB
	cmd    *exec.Cmd
	out    *os.File
	errOut *os.File
	done   chan struct{}
	once   sync.Once
	lines  []string
}

// StartCapture runs `tcpdump -l -n -e -i ifname [filter...]` inside namespace ns (link
// headers included, so MACs and VLAN tags show; VXLAN is decoded on UDP 4789) and
// returns once tcpdump is capturing. Stop returns what it saw; cleanup stops it anyway.
func StartCapture(t testing.TB, ns, ifname string, filter ...string) *Capture {
	t.Helper()
	Require(t, "tcpdump")
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "tcpdump.out"))
	if err != nil {
		t.Fatal(err)
	}
	errOut, err := os.Create(filepath.Join(dir, "tcpdump.err"))
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"netns", "exec", ns, "tcpdump", "-l", "-n", "-e", "-i", ifname}, filter...)
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = out, errOut
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("lab: tcpdump: %v", err)
	}
	c := &Capture{t: t, cmd: cmd, out: out, errOut: errOut, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() { c.Stop() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(errOut.Name())
		if bytes.Contains(b, []byte("listening on")) {
			return c
		}
		select {
		case <-c.done:
			t.Fatalf("lab: tcpdump on %s in %s exited: %s", ifname, ns, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("lab: tcpdump on %s in %s did not start: %s", ifname, ns, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop ends tcpdump (SIGINT, so it flushes; SIGKILL if it hangs) and returns one line per
// packet it printed. Calling it again returns the same lines.
func (c *Capture) Stop() []string {
	c.once.Do(func() {
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.done
		}
		_ = c.out.Close()
		_ = c.errOut.Close()
		b, _ := os.ReadFile(c.out.Name())
		for _, l := range strings.Split(string(b), "\n") {
			if strings.TrimSpace(l) != "" {
				c.lines = append(c.lines, l)
			}
		}
	})
	return c.lines
}
