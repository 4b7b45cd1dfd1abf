package sriov_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/sriov"
	"github.com/offlane/offlane/test/kernellab"
)

// TestKernelSwitchdevVFSettings: VF settings of a switchdev PF go through devlink on
// netdevsim: the rates of VF 2 land in its devlink rate object (iproute2's `devlink
// port function rate show` and netdevsim's own debugfs record agree), a second call
// changes nothing, and what netdevsim cannot do (port function hw_addr) or switchdev
// has no VF setting for (VLAN) is refused with the reason before anything changes.
func TestKernelSwitchdevVFSettings(t *testing.T) {
	kernellab.RequireGuest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nsim := kernellab.NewNetdevsim(t, 25, 1)
	m := liveManager(t)
	if _, err := m.Configure(ctx, sriov.Spec{PF: nsim.Handle, NumVFs: 4, Mode: sriov.ModeSwitchdev}, false); err != nil {
		t.Fatal(err)
	}
	min, max := uint32(10), uint32(100)
	res, err := m.VFSet(ctx, nsim.Handle, 2, sriov.VFSettings{MinTxRate: &min, MaxTxRate: &max})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changes) != 1 || !strings.Contains(res.Changes[0], "-> min 10 max 100") || res.Config.MinTxRate != 10 || res.Config.MaxTxRate != 100 {
		t.Fatalf("VFSet: %+v", res)
	}
	rates := func() string {
		t.Helper()
		out, err := exec.Command("devlink", "port", "function", "rate", "show").CombinedOutput()
		if err != nil {
			t.Fatalf("devlink port function rate show: %v\n%s", err, out)
		}
		return string(out)
	}
	out := rates()
	if strings.Count(out, "tx_share 10Mbit tx_max 100Mbit") != 1 {
		t.Fatalf("devlink port function rate show: want one leaf with tx_share 10Mbit tx_max 100Mbit:\n%s", out)
	}
	// netdevsim's own record of the VF's rates (Mbit/s)
	dbg, _ := filepath.Glob("/sys/kernel/debug/netdevsim/netdevsim25/ports/*/tx_max")
	found := 0
	for _, f := range dbg {
		b, _ := os.ReadFile(f)
		s, _ := os.ReadFile(filepath.Join(filepath.Dir(f), "tx_share"))
		if strings.TrimSpace(string(b)) == "100" && strings.TrimSpace(string(s)) == "10" {
			found++
		}
	}
	if found != 1 {
		t.Errorf("netdevsim debugfs: %d VF ports with tx_share 10 tx_max 100 (of %v)", found, dbg)
	}
	if res, err := m.VFSet(ctx, nsim.Handle, 2, sriov.VFSettings{MinTxRate: &min, MaxTxRate: &max}); err != nil || len(res.Changes) != 0 {
		t.Errorf("again: %+v %v", res, err)
	}
	// refused, nothing changed
	mac, _ := net.ParseMAC("02:00:00:00:00:25")
	five := uint32(5)
	if _, err := m.VFSet(ctx, nsim.Handle, 2, sriov.VFSettings{MAC: mac, MaxTxRate: &five}); !errors.Is(err, sriov.ErrUnsupported) || !strings.Contains(err.Error(), "hw_addr") {
		t.Errorf("MAC on netdevsim: %v, want ErrUnsupported naming hw_addr", err)
	}
	vlan := 100
	if _, err := m.VFSet(ctx, nsim.Handle, 2, sriov.VFSettings{VLAN: &vlan}); !errors.Is(err, sriov.ErrUnsupported) || !strings.Contains(err.Error(), "tc vlan push/pop on its representor") {
		t.Errorf("VLAN in switchdev: %v", err)
	}
	if out2 := rates(); out2 != out {
		t.Errorf("a refused call changed the rates:\n%s\nwas\n%s", out2, out)
	}
}
