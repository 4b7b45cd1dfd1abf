package kernellab

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestKernelGuestEnvironment proves the guest the other guest tests rely on: Debian's
// kernel (not the host's), netdevsim loaded at boot, and on-demand module loading
// through /sbin/modprobe (a dummy link, an ingress qdisc and a flower filter with a gact
// action each pull in a module the host kernel lacks).
func TestKernelGuestEnvironment(t *testing.T) {
	RequireGuest(t)
	rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	if r := strings.TrimSpace(string(rel)); !strings.HasSuffix(r, "-amd64") {
		t.Errorf("kernel release %q: want Debian's -amd64 kernel", r)
	}
	if _, err := os.Stat("/sys/module/netdevsim"); err != nil {
		t.Errorf("netdevsim not loaded at boot: %v", err)
	}
	sh := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	sh("ip", "link", "add", "kl0", "type", "dummy")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", "kl0").Run() })
	sh("tc", "qdisc", "add", "dev", "kl0", "ingress")
	sh("tc", "filter", "add", "dev", "kl0", "ingress", "protocol", "ip", "pref", "1", "flower", "skip_hw", "dst_ip", "192.0.2.1", "action", "drop")
	out := sh("tc", "filter", "show", "dev", "kl0", "ingress")
	if !strings.Contains(out, "dst_ip 192.0.2.1") || !strings.Contains(out, "gact action drop") {
		t.Errorf("flower filter not read back:\n%s", out)
	}
	for _, m := range []string{"dummy", "sch_ingress", "cls_flower", "act_gact"} {
		if _, err := os.Stat("/sys/module/" + m); err != nil {
			t.Errorf("module %s was not loaded on demand: %v", m, err)
		}
	}
}
