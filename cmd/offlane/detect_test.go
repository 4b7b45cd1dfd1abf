package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/offlane/offlane/hwdetect"
)

// offlane runs the CLI in-process and returns the exit code, stdout and stderr.
func offlane(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

const testdataDir = "../../hwdetect/testdata/"

func decodeNode(t *testing.T, s string) *hwdetect.Node {
	t.Helper()
	var n hwdetect.Node
	if err := json.Unmarshal([]byte(s), &n); err != nil {
		t.Fatalf("stdout is not a node as JSON: %v\n%s", err, s)
	}
	return &n
}

func TestDetectJSONFromCapture(t *testing.T) {
	code, out, stderr := offlane(t, "detect", "-o", "json", "--from", testdataDir+"cx6dx-switchdev")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	n := decodeNode(t, out)
	if len(n.NICs) != 2 || n.NICs[0].Name != "ens1f0np0" || n.NICs[0].RecommendedMode != hwdetect.ModeSwitchdevOffload {
		t.Fatalf("nics = %+v", n.NICs)
	}
	// The documented keys are all there, spelled as in the README.
	var raw map[string]any
	_ = json.Unmarshal([]byte(out), &raw)
	for _, k := range []string{"hostname", "kernel", "cpus", "hugepages", "iommu", "ovs", "kernel_features", "nics"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("node key %q missing", k)
		}
	}
	nic := raw["nics"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "mac", "mtu", "operstate", "speed_mbps", "pci_address", "vendor_id", "device_id",
		"vendor_name", "device_name", "driver", "driver_version", "firmware_version", "numa_node", "iommu_group", "sriov",
		"eswitch_mode", "representors", "features", "dpdk", "capabilities", "recommended_mode", "reasons"} {
		if _, ok := nic[k]; !ok {
			t.Errorf("nic key %q missing", k)
		}
	}
	caps := nic["capabilities"].(map[string]any)
	for _, k := range []string{"vlan", "vxlan_encap", "geneve_encap", "ct_offload", "police", "dscp_rewrite", "vf_rate_limit"} {
		c, ok := caps[k].(map[string]any)
		if !ok || c["level"] == nil || c["reason"] == nil {
			t.Errorf("capabilities.%s = %v", k, caps[k])
		}
	}
}

func TestDetectYAMLAndTable(t *testing.T) {
	code, out, stderr := offlane(t, "detect", "-o", "yaml", "--from", testdataDir+"e810-legacy-8vfs")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var n hwdetect.Node
	if err := yaml.Unmarshal([]byte(out), &n); err != nil || len(n.NICs) != 1 || n.NICs[0].RecommendedMode != hwdetect.ModeOVSDPDK {
		t.Fatalf("yaml = %v %+v", err, n.NICs)
	}
	code, out, _ = offlane(t, "detect", "--from", testdataDir+"e810-legacy-8vfs")
	if code != exitOK || !strings.Contains(out, "ens2f0") || !strings.Contains(out, "ovs-dpdk") {
		t.Fatalf("table exit %d:\n%s", code, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if len([]rune(l)) > hwdetect.TableWidth {
			t.Errorf("table line over %d columns: %q", hwdetect.TableWidth, l)
		}
	}
}

// TestDetectLiveJSON: on this machine `offlane detect -o json` reports eth0 (virtio_net).
func TestDetectLiveJSON(t *testing.T) {
	if _, err := os.Stat("/sys/class/net/eth0/device"); err != nil {
		t.Skip("no device-backed eth0 here (the CI VM has a virtio eth0)")
	}
	code, out, stderr := offlane(t, "detect", "-o", "json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	n := decodeNode(t, out)
	var eth0 *hwdetect.NIC
	for i := range n.NICs {
		if n.NICs[i].Name == "eth0" {
			eth0 = &n.NICs[i]
		}
	}
	if eth0 == nil {
		t.Fatalf("eth0 not reported: %s", out)
	}
	drv, _ := os.Readlink("/sys/class/net/eth0/device/driver")
	if eth0.Driver != filepath.Base(drv) {
		t.Errorf("eth0 driver = %q, sysfs says %q", eth0.Driver, filepath.Base(drv))
	}
	if filepath.Base(drv) == "virtio_net" && (eth0.Model != "virtio-net" || eth0.RecommendedMode == "") {
		t.Errorf("eth0 = %+v", eth0)
	}
}

// TestDetectCaptureReplayCLI: --capture then --from gives the same JSON.
func TestDetectCaptureReplayCLI(t *testing.T) {
	file := filepath.Join(t.TempDir(), "node.tar.gz")
	code, live, stderr := offlane(t, "detect", "-o", "json", "--all", "--capture", file)
	if code != exitOK {
		t.Fatalf("capture exit %d: %s", code, stderr)
	}
	code, replayed, stderr := offlane(t, "detect", "-o", "json", "--all", "--from", file)
	if code != exitOK {
		t.Fatalf("replay exit %d: %s", code, stderr)
	}
	a, b := decodeNode(t, live), decodeNode(t, replayed)
	a.Source, b.Source = "", ""
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if !bytes.Equal(ja, jb) {
		t.Fatalf("replay differs from the capture run:\n%s\n%s", ja, jb)
	}
	ents, _ := os.ReadDir(filepath.Dir(file))
	if len(ents) != 1 {
		t.Errorf("capture left temp files: %v", ents)
	}
}

// TestDetectBadInput: user mistakes exit 2 with one clear line and no panic.
func TestDetectBadInput(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.tar.gz")
	_ = os.WriteFile(corrupt, []byte{0x1f, 0x8b, 0x08, 0x00, 0xff, 0xff}, 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"detect", "-o", "xml"}, `--output "xml": use table, json or yaml`},
		{[]string{"detect", "--from", filepath.Join(dir, "missing.tar.gz")}, "missing.tar.gz does not exist"},
		{[]string{"detect", "--from", corrupt}, "corrupt gzip data"},
		{[]string{"detect", "--from", dir}, "not an offlane capture"},
		{[]string{"detect", "--capture", "/nonexistent-dir/x.tar.gz"}, "directory /nonexistent-dir does not exist"},
		{[]string{"detect", "--from", testdataDir + "virtio-vm", "--ovsdb", "unix:/x"}, "--ovsdb cannot be used with --from"},
		{[]string{"detect", "extra"}, "unknown command"},
	} {
		code, out, stderr := offlane(t, tc.args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", tc.args, code, exitUsage, stderr)
		}
		if !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: stderr %q, want one line containing %q", tc.args, stderr, tc.want)
		}
		if out != "" {
			t.Errorf("%v: wrote to stdout: %q", tc.args, out)
		}
	}
}
