package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/offlane/offlane/test/lab"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const cliNodeYAML = `datapath: netdev
userspace_tso: true
integration_bridge: br-int
external_bridge: br-ex
physnets:
  physnet1: {bridge: br-phys1}
tunnel: {local_ip: 10.99.0.1, types: [vxlan]}
`

func TestNodePlanApplyCLI(t *testing.T) {
	cfg := writeConfig(t, "ovsdb: "+lab.MemOVSDB(t)+"\n"+cliNodeYAML)
	code, out, stderr := offlane(t, "node", "plan", "--config", cfg)
	if code != exitOK {
		t.Fatalf("plan exit %d: %s", code, stderr)
	}
	for _, w := range []string{"change(s) to make OVS at unix:", "(nothing changed yet; run node apply)",
		"+ bridge br-int: datapath_type=netdev fail_mode=standalone", "+ port patch-tun on br-int: type=patch options{peer=patch-int}",
		`+ Open_vSwitch other_config:userspace-tso-enable: "true"`} {
		if !strings.Contains(out, w) {
			t.Errorf("plan output lacks %q:\n%s", w, out)
		}
	}
	// Plan wrote nothing: a second plan shows the same changes.
	if _, out2, _ := offlane(t, "node", "plan", "--config", cfg); out2 != out {
		t.Errorf("second plan differs:\n%s", out2)
	}
	code, out, stderr = offlane(t, "node", "apply", "--config", cfg, "--wait=false")
	if code != exitOK || !strings.Contains(out, "in one transaction:") || !strings.Contains(out, "+ bridge br-phys1") {
		t.Fatalf("apply exit %d:\n%s\n%s", code, out, stderr)
	}
	code, out, stderr = offlane(t, "node", "apply", "--config", cfg, "--wait=false")
	if code != exitOK || !strings.Contains(out, "no changes: OVS at unix:") || !strings.Contains(out, "nothing written") {
		t.Fatalf("second apply exit %d:\n%s\n%s", code, out, stderr)
	}
	code, out, _ = offlane(t, "node", "plan", "--config", cfg, "-o", "json")
	var rep nodeReport
	if code != exitOK || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Changes) != 0 || rep.Applied {
		t.Fatalf("json plan exit %d: %s", code, out)
	}
}

func TestNodeDPDKAutoFromCapture(t *testing.T) {
	capture := filepath.Join("..", "..", "hwdetect", "testdata", "numa2-hugepages")
	if _, err := os.Stat(capture); err != nil {
		t.Skipf("capture %s not present: %v", capture, err)
	}
	cfg := writeConfig(t, "ovsdb: "+lab.MemOVSDB(t)+"\ndatapath: netdev\ndpdk: {enabled: true, socket_mem: auto, pmd_cpus: auto, lcore_cpus: auto}\n")
	code, out, stderr := offlane(t, "node", "plan", "--config", cfg, "--hw-from", capture)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, w := range []string{"derived:\n", "dpdk.pmd_cpus: auto → ", "dpdk.lcore_cpus: auto → ", "dpdk.socket_mem: auto → ", `+ Open_vSwitch other_config:dpdk-init: "true"`} {
		if !strings.Contains(out, w) {
			t.Errorf("plan lacks %q:\n%s", w, out)
		}
	}
}

func TestNodeCLIErrors(t *testing.T) {
	sock := "unix:" + filepath.Join(t.TempDir(), "absent.sock")
	for _, tc := range []struct {
		name   string
		args   []string
		config string
		code   int
		want   []string
	}{
		{"no config flag", []string{"node", "plan"}, "", exitUsage, []string{"--config is required"}},
		{"missing file", []string{"node", "plan", "--config", "/nonexistent/node.yaml"}, "", exitUsage, []string{"--config: open /nonexistent/node.yaml"}},
		{"unknown key", []string{"node", "apply"}, "datapath: netdev\ndpdk:\n  enable: true\n", exitUsage,
			[]string{"node.yaml:3: dpdk.enable: unknown key: did you mean dpdk.enabled?"}},
		{"dpdk on system datapath", []string{"node", "apply"}, "datapath: system\ndpdk: {enabled: true}\n", exitUsage,
			[]string{"node.yaml: dpdk.enabled: DPDK needs the userspace datapath: set datapath: netdev"}},
		{"several problems at once", []string{"node", "plan"}, "datapath: fast\ntunnel: {local_ip: 300.1.1.1, types: [vxlan]}\nphysnets: {p: {bridge: br-int}}\n", exitUsage,
			[]string{`datapath: "fast" is not a datapath type`, "tunnel.local_ip", "physnets.p.bridge: bridge br-int is already the bridge of integration_bridge"}},
		{"bad output", []string{"node", "plan", "-o", "xml"}, "datapath: netdev\n", exitUsage, []string{`--output "xml"`}},
		{"unreachable ovsdb", []string{"node", "apply", "--timeout", "2s"}, "ovsdb: " + sock + "\ndatapath: netdev\n", exitFailure,
			[]string{"connect to ovsdb-server at " + sock, "is ovsdb-server running?"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.config != "" {
				args = append(args, "--config", writeConfig(t, tc.config))
			}
			code, out, stderr := offlane(t, args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if out != "" {
				t.Errorf("stdout on error: %q", out)
			}
		})
	}
}

// TestLabNodeCLI: `offlane node plan/apply` against a real ovsdb-server + ovs-vswitchd:
// apply waits for ovs-vswitchd, the second apply changes nothing and exits 0.
func TestLabNodeCLI(t *testing.T) {
	o := lab.StartOVS(t, lab.Options{})
	cfg := writeConfig(t, "ovsdb: "+o.Endpoint+"\n"+cliNodeYAML)
	code, out, stderr := offlane(t, "node", "apply", "--config", cfg)
	if code != exitOK || !strings.Contains(out, "in one transaction:") {
		t.Fatalf("apply exit %d:\n%s\n%s", code, out, stderr)
	}
	// --wait (the default) returned only once ovs-vswitchd had created the bridges.
	if _, err := o.Ofctl("show", "br-phys1"); err != nil {
		t.Fatalf("ovs-vswitchd has no br-phys1 after apply returned: %v", err)
	}
	before, err := o.Select("Open_vSwitch", nil, "next_cfg")
	if err != nil {
		t.Fatal(err)
	}
	code, out, stderr = offlane(t, "node", "apply", "--config", cfg)
	if code != exitOK || !strings.Contains(out, "no changes") {
		t.Fatalf("second apply exit %d:\n%s\n%s", code, out, stderr)
	}
	after, err := o.Select("Open_vSwitch", nil, "next_cfg")
	if err != nil || after[0]["next_cfg"] != before[0]["next_cfg"] {
		t.Fatalf("second apply committed a transaction: next_cfg %v → %v (%v)", before, after, err)
	}
}
