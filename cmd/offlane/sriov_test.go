package main

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/offlane/offlane/sriov"
)

func TestSriovUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		has  string
	}{
		{[]string{"sriov", "configure", "--pf", "ens1f0np0"}, "missing --num-vfs, --mode"},
		{[]string{"sriov", "configure", "--pf", "ens1f0np0", "--num-vfs", "-1", "--mode", "legacy"}, "--num-vfs -1: give 0 or more"},
		{[]string{"sriov", "configure", "--pf", "ens1f0np0", "--num-vfs", "4", "--mode", "offload"}, `--mode "offload": use switchdev or legacy`},
		{[]string{"sriov", "configure", "--pf", "ens1f0np0", "--num-vfs", "4", "--mode", "legacy", "--vf-driver", "uio"}, `--vf-driver "uio": use vfio-pci or kernel`},
		{[]string{"sriov", "configure", "--pf", "x", "--num-vfs", "4", "--mode", "legacy", "-o", "xml"}, `--output "xml"`},
		{[]string{"sriov", "list", "--ovsdb", "http://x"}, `--ovsdb "http://x": use unix:PATH`},
		{[]string{"sriov", "vf", "set", "--pf", "ens1f0np0"}, "missing --pf or --vf"},
		{[]string{"sriov", "vf", "set", "--pf", "ens1f0np0", "--vf", "0"}, "nothing to set"},
		{[]string{"sriov", "vf", "set", "--pf", "p", "--vf", "0", "--mac", "zz"}, `--mac "zz"`},
		{[]string{"sriov", "vf", "set", "--pf", "p", "--vf", "0", "--trust", "yes"}, `--trust "yes": use on or off`},
		{[]string{"sriov", "vf", "set", "--pf", "p", "--vf", "0", "--link-state", "up"}, `--link-state "up"`},
		{[]string{"sriov", "vf", "set", "--pf", "p", "--vf", "0", "--vlan-proto", "qinq"}, `--vlan-proto "qinq"`},
		{[]string{"sriov", "vf", "set", "--pf", "p", "--vf", "0", "--max-tx-rate", "-5"}, "--max-tx-rate -5"},
		{[]string{"sriov", "configure", "--pf", "ens1f0np0", "--num-vfs", "4", "--mode", "legacy", "extra"}, "unknown command"},
	}
	for _, tc := range tests {
		code, _, stderr := offlane(t, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.has) {
			t.Errorf("%v: exit %d, stderr %q, want exit 2 with %q", tc.args, code, stderr, tc.has)
		}
	}
}

func TestSriovRefusalsExit2(t *testing.T) {
	// This machine's eth0 (virtio_net) has no SR-IOV: a refusal, nothing done, exit 2.
	code, _, stderr := offlane(t, "sriov", "configure", "--pf", "no-such-nic0", "--num-vfs", "4", "--mode", "switchdev")
	if code != exitUsage || !strings.Contains(stderr, `no netdev, PCI device or devlink handle "no-such-nic0"`) {
		t.Errorf("exit %d: %s", code, stderr)
	}
}

func TestWriteRegistryTable(t *testing.T) {
	on := true
	reg := &sriov.Registry{
		PFs: []sriov.PFEntry{{
			PF:       sriov.PF{Device: sriov.Device{Bus: "pci", Name: "0000:3b:00.0"}, Netdev: "ens1f0np0", Driver: "mlx5_core", NumVFs: 2, TotalVFs: 8, EswitchMode: "switchdev", HWTCOffload: &on},
			Model:    "ConnectX-6 Dx",
			SwitchID: "1c34da",
			VFs: []sriov.Entry{
				{VFIndex: 0, VFPCI: "0000:3b:00.2", VFNetdev: "ens1f0v0", VFDriver: "mlx5_core", VFMAC: "02:00:00:00:00:10", Representor: "ens1f0npf0vf0", OVSBridge: "br-int", OVSPort: "ens1f0npf0vf0", TenantPort: "8d1f2c"},
				{VFIndex: 1, VFPCI: "0000:3b:00.3", VFDriver: "vfio-pci", Representor: "ens1f0npf0vf1"},
			},
		}},
		Warnings: []string{"pci/0000:3b:00.0 VF 1: something"},
	}
	var b bytes.Buffer
	if err := writeRegistryTable(&b, reg); err != nil {
		t.Fatal(err)
	}
	want := `pci/0000:3b:00.0  netdev ens1f0np0  driver mlx5_core  model ConnectX-6 Dx
  vfs 2/8  eswitch switchdev  hw-tc-offload on  switch-id 1c34da
  VF  PCI           NETDEV    DRIVER     MAC                REPRESENTOR    OVS PORT              TENANT PORT
  0   0000:3b:00.2  ens1f0v0  mlx5_core  02:00:00:00:00:10  ens1f0npf0vf0  br-int/ens1f0npf0vf0  8d1f2c
  1   0000:3b:00.3  -         vfio-pci   -                  ens1f0npf0vf1  -                     -

warnings:
  - pci/0000:3b:00.0 VF 1: something
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWriteConfigureTable(t *testing.T) {
	off, on := false, true
	before := &sriov.PF{Device: sriov.Device{Bus: "netdevsim", Name: "netdevsim1"}, Netdev: "eth0", NumVFs: 4, EswitchMode: "legacy", HWTCOffload: &off}
	after := *before
	after.EswitchMode, after.HWTCOffload = "switchdev", &on
	steps := []sriov.Step{{Kind: sriov.StepSetNumVFs, VF: -1, From: "4", To: "0", Why: "the eswitch mode changes only without VFs"}, {Kind: sriov.StepSetMode, VF: -1, From: "legacy", To: "switchdev"}}
	var b bytes.Buffer
	writeConfigureTable(&b, &sriov.Result{Before: before, After: &after, Steps: steps}, true)
	want := `netdevsim/netdevsim1 (netdev eth0, driver -): 4 VFs, legacy, hw-tc-offload off
2 steps:
  1. sriov_numvfs: 4 -> 0 (the eswitch mode changes only without VFs)
  2. eswitch mode: legacy -> switchdev
now: 4 VFs, switchdev, hw-tc-offload on
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	writeConfigureTable(&b, &sriov.Result{Before: before, Steps: steps, DryRun: true}, true)
	if !strings.Contains(b.String(), "dry run: would apply 2 steps:") || strings.Contains(b.String(), "now:") {
		t.Errorf("dry run:\n%s", b.String())
	}
	b.Reset()
	writeConfigureTable(&b, &sriov.Result{Before: before, After: before}, true)
	if !strings.HasSuffix(b.String(), "nothing to change\n") {
		t.Errorf("no-op:\n%s", b.String())
	}
}

func TestSriovVFSetFlags(t *testing.T) {
	g := &globalOptions{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	cmd := newSriovVFSetCmd(g)
	if err := cmd.ParseFlags([]string{"--pf", "p", "--vf", "2", "--mac", "02:00:00:00:00:01", "--vlan", "0", "--trust", "off", "--link-state", "enable", "--max-tx-rate", "100", "--vlan-proto", "802.1ad"}); err != nil {
		t.Fatal(err)
	}
	// RunE's closure holds the options; rebuild them the same way for the check.
	o := &sriovVFSetOptions{sriovCommon: sriovCommon{g: g, output: "table"}, pf: "p", vf: 2, mac: "02:00:00:00:00:01", vlan: 0, trust: "off", linkState: "enable", maxTxRate: 100, vlanProto: "802.1ad"}
	if err := o.validate(cmd); err != nil {
		t.Fatal(err)
	}
	s := o.settings
	mac, _ := net.ParseMAC("02:00:00:00:00:01")
	if s.MAC.String() != mac.String() || s.VLAN == nil || *s.VLAN != 0 || s.QoS != nil || s.Trust == nil || *s.Trust || s.SpoofChk != nil ||
		s.LinkState == nil || *s.LinkState != sriov.LinkStateEnable || s.MaxTxRate == nil || *s.MaxTxRate != 100 || s.MinTxRate != nil || s.VLANProto == nil || *s.VLANProto != 0x88a8 {
		t.Errorf("settings %+v", s)
	}
}
