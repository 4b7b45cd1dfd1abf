package lab_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offlane/offlane/test/lab"
)

func netnsExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

func pidAlive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// TestLabTeardown: a lab comes up (daemons answering, VM wired) and everything it made
// is gone after its test ends, also when the test stops early (SkipNow runs the same
// cleanups as Fatal).
func TestLabTeardown(t *testing.T) {
	lab.RequireOVS(t)
	var o *lab.OVS
	var vm *lab.VM
	var pid int
	t.Run("up", func(t *testing.T) {
		start := time.Now()
		o = lab.StartOVS(t, lab.Options{})
		t.Logf("ovsdb-server + ovs-vswitchd up in %s", time.Since(start).Round(time.Millisecond))
		vm = o.AddVM(t, "vm1", lab.VMOptions{IP: "10.0.0.1/24"})
		pid = o.VswitchdPID()
		if !pidAlive(pid) || !netnsExists(o.NS) || !netnsExists(vm.NS) {
			t.Fatalf("lab not up: pid %d ns %s vm %s", pid, o.NS, vm.NS)
		}
		// A netdev bridge makes ovs-vswitchd create its userspace datapath tap, which
		// must live in the lab namespace only.
		if _, err := o.Transact(
			map[string]any{"op": "insert", "table": "Interface", "uuid-name": "i", "row": map[string]any{"name": "br0", "type": "internal"}},
			map[string]any{"op": "insert", "table": "Port", "uuid-name": "p", "row": map[string]any{"name": "br0", "interfaces": []any{"named-uuid", "i"}}},
			map[string]any{"op": "insert", "table": "Bridge", "uuid-name": "b", "row": map[string]any{"name": "br0", "datapath_type": "netdev", "ports": []any{"named-uuid", "p"}}},
			map[string]any{"op": "mutate", "table": "Open_vSwitch", "where": []any{}, "mutations": []any{[]any{"bridges", "insert", []any{"named-uuid", "b"}}}},
		); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := lab.Run("ip", "-n", o.NS, "link", "show", "ovs-netdev"); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no ovs-netdev tap in %s", o.NS)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := lab.Run("ip", "link", "show", "br0"); err == nil {
			t.Error("the bridge's tap leaked into the host namespace")
		}
		t.SkipNow()
	})
	if o == nil {
		t.Fatal("lab never started")
	}
	if pidAlive(pid) {
		t.Errorf("ovs-vswitchd (pid %d) still running", pid)
	}
	if netnsExists(o.NS) || netnsExists(vm.NS) {
		t.Errorf("namespaces left: %s %s", o.NS, vm.NS)
	}
	if _, err := os.Stat("/run/offlane-lab/" + o.ID + ".json"); err == nil {
		t.Error("the lab's sweep record was left behind")
	}
	if _, err := os.Lstat(o.Dir); err == nil && strings.HasPrefix(o.Dir, os.TempDir()+"/ol-") {
		t.Errorf("symlink %s left", o.Dir)
	}
}

// TestLabTeardownDPDK: the DPDK lab initialises DPDK with its private hugetlbfs and
// unmounts it at teardown. (nr_hugepages is restored and checked by the harness itself,
// inside the DPDK lock: read from here it could be another package's lab's value.)
func TestLabTeardownDPDK(t *testing.T) {
	lab.RequireDPDK(t)
	var o *lab.OVS
	var hugeDir string // as /proc/mounts shows it (the lab dir may be reached by a symlink)
	t.Run("up", func(t *testing.T) {
		o = lab.StartOVS(t, lab.Options{DPDK: true, PresetDPDK: true})
		rows, err := o.Select("Open_vSwitch", nil, "dpdk_initialized")
		if err != nil || rows[0]["dpdk_initialized"] != true {
			t.Fatalf("DPDK not initialised: %v %v", rows, err)
		}
		if o.DPDK.HugeDir != "" {
			if hugeDir, err = filepath.EvalSymlinks(o.DPDK.HugeDir); err != nil {
				t.Fatal(err)
			}
			if mounts, _ := os.ReadFile("/proc/mounts"); !strings.Contains(string(mounts), hugeDir+" hugetlbfs") {
				t.Errorf("no hugetlbfs at %s", hugeDir)
			}
		}
		t.SkipNow()
	})
	if o == nil {
		t.Fatal("lab never started")
	}
	if mounts, _ := os.ReadFile("/proc/mounts"); hugeDir != "" && strings.Contains(string(mounts), hugeDir) {
		t.Errorf("hugetlbfs still mounted at %s", hugeDir)
	}
	if netnsExists(o.NS) {
		t.Errorf("namespace %s left", o.NS)
	}
}
