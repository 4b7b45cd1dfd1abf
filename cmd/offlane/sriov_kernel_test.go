package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/sriov"
	"github.com/offlane/offlane/test/kernellab"
)

// TestKernelSriovConfigureCLI runs `offlane sriov configure` against a real netdevsim PF
// in the kernel lab: a dry run changes nothing, the real run creates 4 VFs in switchdev
// mode, a second run changes nothing, `offlane sriov list -o json` shows the 4
// representors devlink reports, and a request above the device's limit exits 2
// without a change.
func TestKernelSriovConfigureCLI(t *testing.T) {
	kernellab.RequireGuest(t)
	nsim := kernellab.NewNetdevsim(t, 21, 1)
	pf := nsim.Ports[0] // by netdev name, as an operator would
	args := []string{"sriov", "configure", "--pf", pf, "--num-vfs", "4", "--mode", "switchdev"}

	code, out, errs := offlane(t, append(args, "--dry-run")...)
	if code != 0 || !strings.Contains(out, "dry run: would apply 3 steps") {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errs)
	}
	if b, _ := os.ReadFile(nsim.Dir + "/sriov_numvfs"); strings.TrimSpace(string(b)) != "0" {
		t.Fatalf("the dry run created VFs: sriov_numvfs %s", b)
	}

	code, out, errs = offlane(t, args...)
	if code != 0 || !strings.Contains(out, "now: 4 VFs, switchdev, hw-tc-offload on") {
		t.Fatalf("configure: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = offlane(t, args...)
	if code != 0 || !strings.Contains(out, "nothing to change") {
		t.Fatalf("second configure: exit %d\n%s%s", code, out, errs)
	}

	code, out, errs = offlane(t, "sriov", "list", "-o", "json")
	if code != 0 {
		t.Fatalf("list: exit %d\n%s%s", code, out, errs)
	}
	var reg sriov.Registry
	if err := json.Unmarshal([]byte(out), &reg); err != nil {
		t.Fatalf("list -o json: %v\n%s", err, out)
	}
	var found *sriov.PFEntry
	for i := range reg.PFs {
		if reg.PFs[i].PF.Device.String() == nsim.Handle {
			found = &reg.PFs[i]
		}
	}
	if found == nil || len(found.VFs) != 4 {
		t.Fatalf("list has no %s with 4 VFs:\n%s", nsim.Handle, out)
	}
	for _, e := range found.VFs {
		if e.Representor == "" || e.RepresentorPort == "" {
			t.Errorf("VF %d has no representor: %+v", e.VFIndex, e)
		}
		pn, _ := os.ReadFile("/sys/class/net/" + e.Representor + "/phys_port_name")
		if want := "pf0vf" + string(rune('0'+e.VFIndex)); strings.TrimSpace(string(pn)) != want {
			t.Errorf("VF %d: representor %s has phys_port_name %q, want %s", e.VFIndex, e.Representor, pn, want)
		}
	}
	// A representor attached to a real OVSDB (ovsdb-server in the guest) with a tenant
	// port: list joins it, and destroying the VFs is refused because of it.
	ep := startOVSDB(t)
	rep1 := found.VFs[1].Representor
	vsctl(t, ep, "add-br", "br-int", "--", "add-port", "br-int", rep1, "--", "set", "Interface", rep1, "external_ids:iface-id=tenant-port-7")
	code, out, errs = offlane(t, "sriov", "list", "-o", "json", "--ovsdb", ep)
	if code != 0 {
		t.Fatalf("list --ovsdb: exit %d\n%s%s", code, out, errs)
	}
	var reg2 sriov.Registry
	if err := json.Unmarshal([]byte(out), &reg2); err != nil {
		t.Fatal(err)
	}
	joined := false
	for _, p := range reg2.PFs {
		if p.PF.Device.String() != nsim.Handle {
			continue
		}
		joined = true
		if e := p.VFs[1]; e.OVSBridge != "br-int" || e.OVSPort != rep1 || e.TenantPort != "tenant-port-7" {
			t.Errorf("VF 1 with OVS: %+v", e)
		}
		if e := p.VFs[0]; e.OVSPort != "" || e.TenantPort != "" {
			t.Errorf("VF 0 got an OVS port: %+v", e)
		}
		t.Logf("registry VF 1: representor %s, OVS port %s/%s, tenant port %s", p.VFs[1].Representor, p.VFs[1].OVSBridge, p.VFs[1].OVSPort, p.VFs[1].TenantPort)
	}
	if !joined {
		t.Errorf("list --ovsdb has no %s:\n%s", nsim.Handle, out)
	}
	code, _, errs = offlane(t, "sriov", "configure", "--pf", pf, "--num-vfs", "0", "--mode", "switchdev", "--ovsdb", ep)
	if want := "VF 1: representor " + rep1 + " is OVS port " + rep1 + " on br-int (tenant port tenant-port-7)"; code != 2 || !strings.Contains(errs, want) {
		t.Errorf("removing VFs under OVS: exit %d, %s; want %q", code, errs, want)
	}
	vsctl(t, ep, "del-br", "br-int")

	code, table, _ := offlane(t, "sriov", "list")
	if code != 0 || !strings.Contains(table, nsim.Handle) || !strings.Contains(table, "eswitch switchdev") {
		t.Errorf("list table: exit %d\n%s", code, table)
	}

	code, _, errs = offlane(t, "sriov", "configure", "--pf", pf, "--num-vfs", "9", "--mode", "switchdev")
	if code != 2 || !strings.Contains(errs, "at most 4 VFs") {
		t.Errorf("9 VFs: exit %d, %s", code, errs)
	}
	if b, _ := os.ReadFile(nsim.Dir + "/sriov_numvfs"); strings.TrimSpace(string(b)) != "4" {
		t.Errorf("a refused configure changed sriov_numvfs to %s", b)
	}

	// Back to legacy and a VF setting through the CLI, read back by the next run.
	if code, out, errs = offlane(t, "sriov", "configure", "--pf", pf, "--num-vfs", "4", "--mode", "legacy"); code != 0 {
		t.Fatalf("legacy: exit %d\n%s%s", code, out, errs)
	}
	vfset := []string{"sriov", "vf", "set", "--pf", pf, "--vf", "3", "--mac", "02:00:00:00:00:33", "--trust", "on"}
	if code, out, errs = offlane(t, vfset...); code != 0 || !strings.Contains(out, "now: mac 02:00:00:00:00:33") || !strings.Contains(out, "trust on") {
		t.Fatalf("vf set: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ = offlane(t, vfset...); code != 0 || !strings.Contains(out, "nothing to change") {
		t.Errorf("vf set again: exit %d\n%s", code, out)
	}
}

// startOVSDB runs a private ovsdb-server (no ovs-vswitchd) and returns its endpoint.
func startOVSDB(t *testing.T) string {
	t.Helper()
	for _, b := range []string{"ovsdb-server", "ovsdb-tool", "ovs-vsctl"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not in the guest: install openvswitch-switch on the host (deploy/install-deps.sh)", b)
		}
	}
	dir := t.TempDir()
	env := append(os.Environ(), "OVS_RUNDIR="+dir, "OVS_DBDIR="+dir, "OVS_LOGDIR="+dir)
	db, sock := filepath.Join(dir, "conf.db"), filepath.Join(dir, "db.sock")
	if out, err := exec.Command("ovsdb-tool", "create", db, "/usr/share/openvswitch/vswitch.ovsschema").CombinedOutput(); err != nil {
		t.Fatalf("ovsdb-tool create: %v %s", err, out)
	}
	srv := exec.Command("ovsdb-server", db, "--remote=punix:"+sock, "--unixctl="+filepath.Join(dir, "ctl"), "--no-chdir", "-vconsole:off", "--log-file="+filepath.Join(dir, "ovsdb.log"))
	srv.Env = env
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	for deadline := time.Now().Add(20 * time.Second); ; {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ovsdb-server socket never appeared")
		}
		time.Sleep(50 * time.Millisecond)
	}
	ep := "unix:" + sock
	vsctl(t, ep, "init")
	return ep
}

func vsctl(t *testing.T, ep string, args ...string) {
	t.Helper()
	if out, err := exec.Command("ovs-vsctl", append([]string{"--db=" + ep, "--no-wait", "--timeout=20"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ovs-vsctl %v: %v %s", args, err, out)
	}
}
