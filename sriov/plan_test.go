package sriov

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func boolp(b bool) *bool { return &b }

func TestPlan(t *testing.T) {
	mlx := func(numVFs int, mode string) *PF {
		pf := &PF{Device: Device{"pci", "0000:3b:00.0"}, Netdev: "ens1f0np0", Driver: "mlx5_core", TotalVFs: 8, TotalVFsFrom: "sriov_totalvfs",
			NumVFs: numVFs, EswitchMode: mode, HWTCOffload: boolp(false), DriversAutoprobe: boolp(true)}
		for i := range numVFs {
			pf.VFs = append(pf.VFs, VF{Index: i, PCIAddress: "0000:3b:00." + string(rune('2'+i)), Driver: "mlx5_core"})
		}
		return pf
	}
	nsim := &PF{Device: Device{"netdevsim", "netdevsim1"}, Netdev: "eth0", TotalVFs: 4, TotalVFsFrom: "debugfs max_vfs", NumVFs: 0, EswitchMode: ModeLegacy}
	i40e := &PF{Device: Device{"pci", "0000:5e:00.0"}, Netdev: "ens2f0", Driver: "i40e", TotalVFs: 64, NumVFs: 0, EswitchErr: "devlink pci/0000:5e:00.0 reports no eswitch"}
	switchdevOn := mlx(4, ModeSwitchdev)
	switchdevOn.HWTCOffload = boolp(true)
	vfioVFs := mlx(2, ModeLegacy)
	for i := range vfioVFs.VFs {
		vfioVFs.VFs[i].Driver = VFDriverVFIO
	}
	tests := []struct {
		name    string
		pf      *PF
		spec    Spec
		env     planEnv
		want    []string
		wantErr error
		errHas  string
	}{
		{name: "legacy to switchdev destroys VFs first", pf: mlx(4, ModeLegacy), spec: Spec{NumVFs: 4, Mode: ModeSwitchdev}, want: []string{
			"sriov_numvfs: 4 -> 0 (the eswitch mode changes only without VFs)",
			"eswitch mode: legacy -> switchdev",
			"sriov_numvfs: 0 -> 4",
			"ens1f0np0 hw-tc-offload: off -> on (tc flower rules on the representors go to the NIC)"}},
		{name: "already there", pf: switchdevOn, spec: Spec{NumVFs: 4, Mode: ModeSwitchdev}, want: nil},
		{name: "keep mode", pf: switchdevOn, spec: Spec{NumVFs: 4}, want: nil},
		{name: "more VFs through 0", pf: mlx(4, ModeLegacy), spec: Spec{NumVFs: 8, Mode: ModeLegacy}, want: []string{
			"sriov_numvfs: 4 -> 0 (the VF count changes only through 0)", "sriov_numvfs: 0 -> 8"}},
		{name: "remove all", pf: mlx(4, ModeLegacy), spec: Spec{NumVFs: 0, Mode: ModeLegacy}, want: []string{
			"sriov_numvfs: 4 -> 0 (the VF count changes only through 0)"}},
		{name: "switchdev without VFs turns offload on", pf: mlx(0, ModeSwitchdev), spec: Spec{NumVFs: 0, Mode: ModeSwitchdev}, want: []string{
			"ens1f0np0 hw-tc-offload: off -> on (tc flower rules on the representors go to the NIC)"}},
		{name: "new VFs for vfio skip the net driver", pf: mlx(0, ModeLegacy), spec: Spec{NumVFs: 2, Mode: ModeLegacy, VFDriver: VFDriverVFIO}, env: planEnv{vfioLoaded: true}, want: []string{
			"sriov_drivers_autoprobe: 1 -> 0 (new VFs go to vfio-pci, not to mlx5_core)",
			"sriov_numvfs: 0 -> 2",
			"VF 0 driver: (new VF) -> vfio-pci", "VF 1 driver: (new VF) -> vfio-pci"}},
		{name: "rebind existing VFs to vfio", pf: mlx(2, ModeLegacy), spec: Spec{NumVFs: 2, Mode: ModeLegacy, VFDriver: VFDriverVFIO}, env: planEnv{vfioLoaded: true}, want: []string{
			"VF 0 driver: mlx5_core -> vfio-pci", "VF 1 driver: mlx5_core -> vfio-pci"}},
		{name: "back to the kernel driver", pf: vfioVFs, spec: Spec{NumVFs: 2, Mode: ModeLegacy, VFDriver: VFDriverKernel}, want: []string{
			"VF 0 driver: vfio-pci -> kernel", "VF 1 driver: vfio-pci -> kernel"}},
		{name: "kernel VFs already on the kernel driver", pf: mlx(2, ModeLegacy), spec: Spec{NumVFs: 2, Mode: ModeLegacy, VFDriver: VFDriverKernel}, want: nil},
		{name: "netdevsim switchdev", pf: nsim, spec: Spec{NumVFs: 4, Mode: ModeSwitchdev}, want: []string{
			"eswitch mode: legacy -> switchdev", "sriov_numvfs: 0 -> 4",
			"eth0 hw-tc-offload: unknown -> on (tc flower rules on the representors go to the NIC)"}},
		{name: "legacy on a NIC without eswitch is fine", pf: i40e, spec: Spec{NumVFs: 8, Mode: ModeLegacy}, want: []string{"sriov_numvfs: 0 -> 8"}},

		{name: "above totalvfs", pf: mlx(0, ModeLegacy), spec: Spec{NumVFs: 9, Mode: ModeLegacy}, wantErr: ErrUnsupported, errHas: "at most 8 VFs (sriov_totalvfs), asked for 9"},
		{name: "netdevsim above max_vfs", pf: nsim, spec: Spec{NumVFs: 5}, wantErr: ErrUnsupported, errHas: "at most 4 VFs (debugfs max_vfs)"},
		{name: "switchdev without eswitch", pf: i40e, spec: Spec{NumVFs: 8, Mode: ModeSwitchdev}, wantErr: ErrUnsupported, errHas: "(driver i40e) has no devlink eswitch"},
		{name: "vf driver on netdevsim", pf: nsim, spec: Spec{NumVFs: 4, VFDriver: VFDriverVFIO}, wantErr: ErrUnsupported, errHas: "PCI VFs only"},
		{name: "vfio not loaded", pf: mlx(0, ModeLegacy), spec: Spec{NumVFs: 2, VFDriver: VFDriverVFIO}, wantErr: ErrUnsupported, errHas: "modprobe vfio-pci"},
		{name: "in use", pf: mlx(4, ModeLegacy), spec: Spec{NumVFs: 4, Mode: ModeSwitchdev}, env: planEnv{inUse: map[int]string{3: "netdev ens1f0v3 is up", 1: "ens1f0v1 is enslaved to br0"}},
			wantErr: ErrInUse, errHas: "(VF 1: ens1f0v1 is enslaved to br0; VF 3: netdev ens1f0v3 is up): detach them first, or pass --force"},
		{name: "in use but rebinding others is fine", pf: mlx(4, ModeLegacy), spec: Spec{NumVFs: 4, Mode: ModeLegacy}, env: planEnv{inUse: map[int]string{3: "up"}}, want: nil},
		{name: "in use, rebound", pf: mlx(2, ModeLegacy), spec: Spec{NumVFs: 2, Mode: ModeLegacy, VFDriver: VFDriverVFIO}, env: planEnv{vfioLoaded: true, inUse: map[int]string{1: "up"}}, wantErr: ErrInUse, errHas: "VF 1: up"},
		{name: "bad spec lists every field", pf: mlx(0, ModeLegacy), spec: Spec{NumVFs: -1, Mode: "offload", VFDriver: "igb_uio"}, wantErr: ErrInvalid,
			errHas: `--num-vfs -1: must be 0 or more; --mode "offload": want legacy or switchdev; --vf-driver "igb_uio": want vfio-pci or kernel`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			steps, err := plan(tc.pf, tc.spec, tc.env)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err %v, want %v containing %q", err, tc.wantErr, tc.errHas)
				}
				if steps != nil {
					t.Fatalf("a refusal returned steps %v", steps)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range steps {
				got = append(got, s.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
	// Force lets the in-use plan through unchanged.
	steps, err := plan(mlx(4, ModeLegacy), Spec{NumVFs: 4, Mode: ModeSwitchdev, Force: true}, planEnv{inUse: map[int]string{1: "up"}})
	if err != nil || len(steps) != 4 {
		t.Errorf("forced: %v %v", steps, err)
	}
}

func TestVFDiffOrder(t *testing.T) {
	cur := VFConfig{Index: 0}
	s := VFSettings{MAC: mustMAC("02:00:00:00:00:01"), VLAN: intp(10), QoS: intp(2), Trust: boolp(true), SpoofChk: boolp(true), LinkState: lsp(LinkStateEnable), MinTxRate: u32p(1), MaxTxRate: u32p(50)}
	var order []string
	for _, c := range vfDiff(cur, s.want(cur)) {
		order = append(order, c.what)
	}
	if got := strings.Join(order, ","); got != "trust,spoofchk,mac,vlan,rate,link-state" {
		t.Errorf("order %s", got)
	}
	if d := vfDiff(s.want(cur), s.want(s.want(cur))); len(d) != 0 {
		t.Errorf("applying the same settings twice differs: %v", d)
	}
	// Removing the VLAN drops its QoS; a zero MAC equals an unset one.
	w := VFSettings{VLAN: intp(0)}.want(VFConfig{VLAN: 5, QoS: 3})
	if w.VLAN != 0 || w.QoS != 0 {
		t.Errorf("vlan 0 keeps qos: %+v", w)
	}
	if d := vfDiff(VFConfig{MAC: nil}, VFConfig{MAC: mustMAC("00:00:00:00:00:00")}); len(d) != 0 {
		t.Errorf("zero MAC vs nil: %v", d)
	}
}

func TestVFSettingsValidate(t *testing.T) {
	for _, tc := range []struct {
		s   VFSettings
		has string
	}{
		{VFSettings{MAC: mustMAC("01:00:5e:00:00:01")}, "multicast"},
		{VFSettings{VLAN: intp(4095)}, "vlan 4095: want 0 (none) to 4094"},
		{VFSettings{QoS: intp(8)}, "qos 8"},
		{VFSettings{VLANProto: u16p(0x9100)}, "vlan protocol 0x9100"},
		{VFSettings{MinTxRate: u32p(100), MaxTxRate: u32p(10)}, "min tx rate 100 Mbit/s is above max tx rate 10"},
		{VFSettings{LinkState: lsp(7)}, "link state 7"},
	} {
		if err := tc.s.validate(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.has) {
			t.Errorf("%+v: %v, want %q", tc.s, err, tc.has)
		}
	}
	if err := (VFSettings{MaxTxRate: u32p(0), MinTxRate: u32p(5)}).validate(); err != nil {
		t.Errorf("max 0 means unlimited: %v", err)
	}
}

func intp(i int) *int            { return &i }
func u32p(i uint32) *uint32      { return &i }
func u16p(i uint16) *uint16      { return &i }
func lsp(s LinkState) *LinkState { return &s }
func mustMAC(s string) []byte {
	m, err := parseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func parseMAC(s string) ([]byte, error) {
	var b [6]byte
	_, err := fmt.Sscanf(s, "%02x:%02x:%02x:%02x:%02x:%02x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5])
	return b[:], err
}
