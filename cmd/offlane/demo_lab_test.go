package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/test/lab"
)

// TestLabDemo runs the README's quick start, `deploy/demo.sh` (what `make demo` runs),
// to the end: a real OVS, `offlane serve --agent`, the sample topology created with the
// CLI, every connectivity check passing, and a clean teardown.
func TestLabDemo(t *testing.T) {
	lab.RequireOVS(t)
	lab.Require(t, "go", "bash", "iperf3", "tcpdump", "curl", "python3", "ethtool", "ping")
	dir := t.TempDir()
	bin := filepath.Join(dir, "offlane")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	env := append(os.Environ(), "DEMO_EXIT=1", "OFFLANE_BIN="+bin, "OFFLANE_DEMO_DIR="+filepath.Join(dir, "demo"),
		"OFFLANE_DEMO_PORT="+strconv.Itoa(freePort(t)), "OFFLANE_DEMO_METRICS="+strconv.Itoa(freePort(t)))
	script := filepath.Join("..", "..", "deploy", "demo.sh")
	t.Cleanup(func() {
		down := exec.Command("bash", script, "down")
		down.Env = env
		_ = down.Run()
	})
	cmd := exec.Command("bash", script, "up")
	cmd.Env = env
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(8 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the demo did not finish in 8 minutes:\n%s", out)
	}
	if err != nil || !regexp.MustCompile(`connectivity: ([7-9]|\d\d) passed, 0 failed`).Match(out) {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	// a-vnf: vhostuser (ACTIVE, or DOWN once the testpmd VNF is gone) with OVS-DPDK, else ERROR with
	// the reason
	if !regexp.MustCompile(`a-vnf +((ACTIVE|DOWN) +vhostuser|ERROR +binding_failed)`).Match(out) {
		t.Errorf("the report lacks a-vnf's binding:\n%s", out)
	}
	for _, want := range []string{"a-vm1   ACTIVE  ovs", "b-vm2   ACTIVE  ovs", "offlane_ series"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
	// Nothing of the demo is left: its namespaces and its OVS.
	ns, _ := exec.Command("ip", "netns", "list").Output()
	for _, l := range strings.Split(string(ns), "\n") {
		if strings.HasPrefix(l, "ol-demo") {
			t.Errorf("namespace left behind: %s", l)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "demo")); err == nil {
		t.Error("the demo's directory is left behind")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
