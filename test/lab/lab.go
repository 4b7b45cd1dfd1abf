package lab

import (
	"os"
	"os/exec"
	"testing"
)

// Paths of the binaries the lab runs (Debian packages openvswitch-switch,
// openvswitch-switch-dpdk, dpdk-dev, iproute2, ethtool, iputils-ping).
const (
	VswitchdBin     = "/usr/lib/openvswitch-switch/ovs-vswitchd"
	VswitchdDPDKBin = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk"
	SchemaPath      = "/usr/share/openvswitch/vswitch.ovsschema"
)

// Require skips the test, with the reason, unless lab tests can run here: env OFFLANE_LAB
// is not "off", the process is root, and every named binary is found (an absolute path
// must exist; a bare name is looked up in PATH).
func Require(t testing.TB, bins ...string) {
	t.Helper()
	if os.Getenv("OFFLANE_LAB") == "off" {
		t.Skip("lab: OFFLANE_LAB=off")
	}
	if os.Geteuid() != 0 {
		t.Skip("lab: needs root (network namespaces, OVS daemons); run as root or via `make test-lab`")
	}
	for _, b := range bins {
		if !binaryExists(b) {
			t.Skipf("lab: %s not found: run deploy/install-deps.sh", b)
		}
	}
}

// RequireOVS is Require for an OVS lab (ovsdb-server, ovs-vswitchd, ip, ...).
func RequireOVS(t testing.TB) {
	t.Helper()
	Require(t, "ovsdb-server", "ovsdb-tool", "ovsdb-client", "ovs-appctl", "ovs-ofctl", "ip", "ethtool", "ping", VswitchdBin)
}

// RequireDPDK is Require for the OVS-DPDK lab with dpdk-testpmd as the VM.
func RequireDPDK(t testing.TB) {
	t.Helper()
	RequireOVS(t)
	Require(t, VswitchdDPDKBin, "dpdk-testpmd")
}

func binaryExists(b string) bool {
	if b == "" {
		return false
	}
	if b[0] == '/' {
		st, err := os.Stat(b)
		return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
	}
	_, err := exec.LookPath(b)
	return err == nil
}
