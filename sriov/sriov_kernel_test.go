package sriov_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/offlane/offlane/sriov"
	"github.com/offlane/offlane/test/kernellab"
)

// Guest tests: they run inside the kernel lab (Debian's kernel under qemu) against a
// real netdevsim device; on the host they skip.

func liveManager(t *testing.T) *sriov.Manager {
	t.Helper()
	m, err := sriov.NewLive("/", nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// devlinkPorts is `devlink -j port show` (iproute2, independent of the netlink library
// the package uses): port handle → attributes.
func devlinkPorts(t *testing.T) map[string]map[string]any {
	t.Helper()
	out, err := exec.Command("devlink", "-j", "port", "show").Output()
	if err != nil {
		t.Fatalf("devlink -j port show: %v", err)
	}
	var v struct {
		Port map[string]map[string]any `json:"port"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("devlink -j port show: %v\n%s", err, out)
	}
	return v.Port
}

// vfRepsFromDevlink returns VF number → representor netdev of dev, as devlink reports.
func vfRepsFromDevlink(t *testing.T, dev string) map[int]string {
	t.Helper()
	reps := map[int]string{}
	for handle, attrs := range devlinkPorts(t) {
		if !strings.HasPrefix(handle, dev+"/") || attrs["flavour"] != "pcivf" {
			continue
		}
		vf, ok := attrs["vfnum"].(float64)
		nd, _ := attrs["netdev"].(string)
		if !ok || nd == "" {
			t.Fatalf("devlink port %s: no vfnum/netdev: %v", handle, attrs)
		}
		reps[int(vf)] = nd
	}
	return reps
}

func ifindex(t *testing.T, nd string) int {
	t.Helper()
	b, err := os.ReadFile("/sys/class/net/" + nd + "/ifindex")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

func sysattr(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestKernelSwitchdevNetdevsim: a netdevsim PF with 4 VFs in legacy mode is switched to
// switchdev by Configure in the order real NICs need (VFs destroyed, mode set, VFs
// re-created, hw-tc-offload on); the representors exist, and the identity registry
// matches what devlink (iproute2) and sysfs report. A second Configure changes nothing;
// refusals (too many VFs, VFs in use) change nothing.
func TestKernelSwitchdevNetdevsim(t *testing.T) {
	kernellab.RequireGuest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nsim := kernellab.NewNetdevsim(t, 11, 1)
	nsim.SetNumVFs(t, 4)
	m := liveManager(t)

	pf, err := m.PF(ctx, nsim.Handle)
	if err != nil {
		t.Fatal(err)
	}
	if pf.NumVFs != 4 || pf.TotalVFs != 4 || pf.TotalVFsFrom != "debugfs max_vfs" || pf.EswitchMode != sriov.ModeLegacy || pf.Netdev != nsim.Ports[0] {
		t.Fatalf("PF before: %+v (port netdev %s)", pf, nsim.Ports[0])
	}
	// The PF's netdev names the same PF.
	if byNetdev, err := m.PF(ctx, nsim.Ports[0]); err != nil || byNetdev.Device != pf.Device {
		t.Fatalf("PF by netdev %s: %+v, %v", nsim.Ports[0], byNetdev, err)
	}

	spec := sriov.Spec{PF: nsim.Handle, NumVFs: 4, Mode: sriov.ModeSwitchdev}
	res, err := m.Configure(ctx, spec, false)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, s := range res.Steps {
		kinds = append(kinds, string(s.Kind)+" "+s.To)
	}
	want := []string{"set-numvfs 0", "set-eswitch-mode switchdev", "set-numvfs 4", "set-feature on"}
	if strings.Join(kinds, ", ") != strings.Join(want, ", ") {
		t.Errorf("steps %q, want %q", kinds, want)
	}
	if res.After.EswitchMode != sriov.ModeSwitchdev || res.After.NumVFs != 4 || res.After.HWTCOffload == nil || !*res.After.HWTCOffload {
		t.Errorf("after: %+v", res.After)
	}
	// Independent read-backs: devlink (iproute2) and sysfs.
	out, err := exec.Command("devlink", "dev", "eswitch", "show", nsim.Handle).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "mode switchdev") {
		t.Errorf("devlink dev eswitch show: %s %v", out, err)
	}
	if got := sysattr(t, nsim.Dir+"/sriov_numvfs"); got != "4" {
		t.Errorf("sriov_numvfs %s, want 4", got)
	}
	feat, _ := exec.Command("ethtool", "-k", pf.Netdev).CombinedOutput()
	if !strings.Contains(string(feat), "hw-tc-offload: on") {
		t.Errorf("ethtool -k %s: hw-tc-offload not on:\n%s", pf.Netdev, feat)
	}

	// The registry matches devlink and sysfs.
	reps := vfRepsFromDevlink(t, nsim.Handle)
	if len(reps) != 4 {
		t.Fatalf("devlink shows %d VF representors, want 4: %v", len(reps), reps)
	}
	reg, err := m.Registry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(reg.Warnings) > 0 {
		t.Errorf("registry warnings: %q", reg.Warnings)
	}
	dev := sriov.Device{Bus: "netdevsim", Name: "netdevsim11"}
	switchID := sysattr(t, "/sys/class/net/"+pf.Netdev+"/phys_switch_id")
	before := map[string]int{}
	for vf := 0; vf < 4; vf++ {
		e, ok := reg.VF(dev, vf)
		if !ok {
			t.Fatalf("registry has no VF %d of %s", vf, dev)
		}
		if e.Representor != reps[vf] || e.PFNetdev != pf.Netdev || e.SwitchID != switchID {
			t.Errorf("registry VF %d: %+v; devlink representor %s, PF %s, switch %s", vf, e, reps[vf], pf.Netdev, switchID)
		}
		if pn := sysattr(t, "/sys/class/net/"+e.Representor+"/phys_port_name"); pn != "pf0vf"+strconv.Itoa(vf) {
			t.Errorf("representor %s phys_port_name %s", e.Representor, pn)
		}
		if sw := sysattr(t, "/sys/class/net/"+e.Representor+"/phys_switch_id"); sw != switchID {
			t.Errorf("representor %s switch %s, PF %s", e.Representor, sw, switchID)
		}
		if back, ok := reg.ByRepresentor(e.Representor); !ok || back.VFIndex != vf || back.PF != dev {
			t.Errorf("ByRepresentor(%s) = %+v, %v", e.Representor, back, ok)
		}
		before[e.Representor] = ifindex(t, e.Representor)
	}

	// Idempotence: nothing planned, nothing touched (same representor ifindexes).
	res2, err := m.Configure(ctx, spec, false)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Changed() {
		t.Errorf("second Configure planned %v", res2.Steps)
	}
	for rep, idx := range before {
		if got := ifindex(t, rep); got != idx {
			t.Errorf("representor %s re-created (ifindex %d -> %d)", rep, idx, got)
		}
	}

	// Refusals change nothing.
	if _, err := m.Configure(ctx, sriov.Spec{PF: nsim.Handle, NumVFs: 5, Mode: sriov.ModeSwitchdev}, false); !errors.Is(err, sriov.ErrUnsupported) || !strings.Contains(err.Error(), "at most 4 VFs") {
		t.Errorf("5 VFs: %v, want ErrUnsupported naming the limit", err)
	}
	// A representor in a bridge is in use: going back to legacy would destroy it.
	br := "brsriov"
	for _, args := range [][]string{{"link", "add", br, "type", "bridge"}, {"link", "set", reps[2], "master", br}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", br).Run() })
	_, err = m.Configure(ctx, sriov.Spec{PF: nsim.Handle, NumVFs: 4, Mode: sriov.ModeLegacy}, false)
	if !errors.Is(err, sriov.ErrInUse) || !strings.Contains(err.Error(), "VF 2: representor "+reps[2]+" is enslaved to "+br) {
		t.Errorf("legacy with a bridged representor: %v, want ErrInUse naming VF 2", err)
	}
	if got, _ := m.PF(ctx, nsim.Handle); got.EswitchMode != sriov.ModeSwitchdev || ifindex(t, reps[2]) != before[reps[2]] {
		t.Errorf("a refused Configure changed the PF: %+v", got)
	}
	// --force goes ahead; the VFs come back in legacy mode, without representors.
	res3, err := m.Configure(ctx, sriov.Spec{PF: nsim.Handle, NumVFs: 4, Mode: sriov.ModeLegacy, Force: true}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res3.After.EswitchMode != sriov.ModeLegacy || res3.After.NumVFs != 4 {
		t.Errorf("after forced legacy: %+v", res3.After)
	}
	if reps := vfRepsFromDevlink(t, nsim.Handle); len(reps) != 0 {
		t.Errorf("legacy mode still has VF representors: %v", reps)
	}
}

// ipVFInfo is one entry of `ip -j -d link show` vfinfo_list (iproute2's own decoding).
type ipVFInfo struct {
	VF       int    `json:"vf"`
	Address  string `json:"address"`
	VLANList []struct {
		VLAN     int    `json:"vlan"`
		QoS      int    `json:"qos"`
		Protocol string `json:"protocol"`
	} `json:"vlan_list"`
	Rate struct {
		MaxTx int `json:"max_tx"`
		MinTx int `json:"min_tx"`
	} `json:"rate"`
	SpoofChk  bool   `json:"spoofchk"`
	LinkState string `json:"link_state"`
	Trust     bool   `json:"trust"`
}

func ipVFs(t *testing.T, pf string) []ipVFInfo {
	t.Helper()
	out, err := exec.Command("ip", "-j", "-d", "link", "show", "dev", pf).Output()
	if err != nil {
		t.Fatalf("ip link show %s: %v", pf, err)
	}
	var links []struct {
		VFs []ipVFInfo `json:"vfinfo_list"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j link show %s: %v\n%s", pf, err, out)
	}
	sort.Slice(links[0].VFs, func(i, j int) bool { return links[0].VFs[i].VF < links[0].VFs[j].VF })
	return links[0].VFs
}

// TestKernelLegacyVFSettings: in legacy mode every VF setting (MAC, VLAN + QoS, trust,
// spoof checking, link state, min/max tx rate) goes in over rtnetlink and reads back the
// same through iproute2; setting it again changes nothing; bad values and switchdev
// mode are refused without a change.
func TestKernelLegacyVFSettings(t *testing.T) {
	kernellab.RequireGuest(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nsim := kernellab.NewNetdevsim(t, 12, 1)
	m := liveManager(t)
	if _, err := m.Configure(ctx, sriov.Spec{PF: nsim.Handle, NumVFs: 4, Mode: sriov.ModeLegacy}, false); err != nil {
		t.Fatal(err)
	}
	pf := nsim.Ports[0]
	mac, _ := net.ParseMAC("02:00:00:00:00:11")
	vlan, qos, trust, spoof := 100, 3, true, true // netdevsim starts with trust and spoofchk off
	state := sriov.LinkStateDisable
	minR, maxR := uint32(10), uint32(100)
	s := sriov.VFSettings{MAC: mac, VLAN: &vlan, QoS: &qos, Trust: &trust, SpoofChk: &spoof, LinkState: &state, MinTxRate: &minR, MaxTxRate: &maxR}
	res, err := m.VFSet(ctx, nsim.Handle, 1, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changes) != 6 {
		t.Errorf("changes %q, want trust, spoofchk, mac, vlan, rate, link-state", res.Changes)
	}
	got := ipVFs(t, pf)
	if len(got) != 4 {
		t.Fatalf("ip shows %d VFs, want 4", len(got))
	}
	v := got[1]
	if v.Address != "02:00:00:00:00:11" || len(v.VLANList) != 1 || v.VLANList[0].VLAN != 100 || v.VLANList[0].QoS != 3 ||
		!v.Trust || !v.SpoofChk || v.LinkState != "disable" || v.Rate.MinTx != 10 || v.Rate.MaxTx != 100 {
		t.Errorf("ip reads VF 1 back as %+v", v)
	}
	if got[0].Address == v.Address || got[0].Trust {
		t.Errorf("VF 0 changed too: %+v", got[0])
	}
	// Again: no change.
	res, err = m.VFSet(ctx, nsim.Handle, 1, s)
	if err != nil || len(res.Changes) != 0 {
		t.Errorf("second VFSet: changes %q, %v", res.Changes, err)
	}
	// Clearing the VLAN drops the QoS with it.
	zero := 0
	if res, err = m.VFSet(ctx, nsim.Handle, 1, sriov.VFSettings{VLAN: &zero}); err != nil || res.Config.VLAN != 0 || res.Config.QoS != 0 {
		t.Errorf("clear VLAN: %+v, %v", res, err)
	}
	// Refusals.
	bad := 4095
	if _, err := m.VFSet(ctx, nsim.Handle, 1, sriov.VFSettings{VLAN: &bad}); !errors.Is(err, sriov.ErrInvalid) {
		t.Errorf("vlan 4095: %v, want ErrInvalid", err)
	}
	if _, err := m.VFSet(ctx, nsim.Handle, 4, sriov.VFSettings{Trust: &trust}); !errors.Is(err, sriov.ErrInvalid) {
		t.Errorf("VF 4 of 4: %v, want ErrInvalid", err)
	}
	if _, err := m.Configure(ctx, sriov.Spec{PF: nsim.Handle, NumVFs: 4, Mode: sriov.ModeSwitchdev}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := m.VFSet(ctx, nsim.Handle, 1, sriov.VFSettings{Trust: &trust}); !errors.Is(err, sriov.ErrUnsupported) {
		t.Errorf("VFSet in switchdev: %v, want ErrUnsupported", err)
	}
}
