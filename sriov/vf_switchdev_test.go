package sriov

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"
)

// fakeFnDevlink is the fake kernel's devlink with port functions and rate objects that
// hold state, as a switchdev driver (mlx5) has them.
type fakeFnDevlink struct {
	*fakeKernel
	mac        map[uint32]net.HardwareAddr
	share, max map[uint32]uint64
	noHWAddr   bool // netdevsim: no port function hw_addr
	dropRate   bool // a driver that accepts and forgets
	calls      []string
}

func (d *fakeFnDevlink) PortFunctionHWAddr(_ context.Context, p DevlinkPort) (net.HardwareAddr, error) {
	if d.noHWAddr {
		return nil, fmt.Errorf("%w: devlink port %s/%d: the driver reports no port function hw_addr", ErrUnsupported, p.Device, p.Index)
	}
	if m := d.mac[p.Index]; m != nil {
		return m, nil
	}
	return make(net.HardwareAddr, 6), nil
}

func (d *fakeFnDevlink) SetPortFunctionHWAddr(_ context.Context, p DevlinkPort, mac net.HardwareAddr) error {
	d.calls = append(d.calls, fmt.Sprintf("hw_addr %d %s", p.Index, mac))
	d.mac[p.Index] = mac
	return nil
}

func (d *fakeFnDevlink) PortRate(_ context.Context, p DevlinkPort) (uint64, uint64, error) {
	return d.share[p.Index], d.max[p.Index], nil
}

func (d *fakeFnDevlink) SetPortRate(_ context.Context, p DevlinkPort, share, max uint64) error {
	d.calls = append(d.calls, fmt.Sprintf("rate %d %d %d", p.Index, share, max))
	if !d.dropRate {
		d.share[p.Index], d.max[p.Index] = share, max
	}
	return nil
}

func TestVFSetSwitchdev(t *testing.T) {
	k := newFakeKernel(t, "cx6dx-switchdev")
	fd := &fakeFnDevlink{fakeKernel: k, mac: map[uint32]net.HardwareAddr{}, share: map[uint32]uint64{}, max: map[uint32]uint64{}}
	m, err := New(Config{SysFS: k, Devlink: fd, Links: k, Ethtool: k, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pf, err := m.PF(ctx, "ens1f0np0")
	if err != nil || pf.EswitchMode != ModeSwitchdev {
		t.Fatalf("PF %+v %v", pf, err)
	}
	mac, _ := net.ParseMAC("02:00:00:00:00:21")
	s := VFSettings{MAC: mac, MinTxRate: u32p(100), MaxTxRate: u32p(1000)}
	res, err := m.VFSet(ctx, "ens1f0np0", 1, s)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"hw_addr 65537 02:00:00:00:00:21", "rate 65537 12500000 125000000"}
	if strings.Join(fd.calls, "|") != strings.Join(want, "|") || len(res.Changes) != 2 ||
		res.Config.MinTxRate != 100 || res.Config.MaxTxRate != 1000 || res.Config.MAC.String() != mac.String() {
		t.Fatalf("calls %q, result %+v", fd.calls, res)
	}
	// idempotent; only what is given changes
	fd.calls = nil
	if res, err = m.VFSet(ctx, "ens1f0np0", 1, s); err != nil || len(fd.calls) != 0 || len(res.Changes) != 0 {
		t.Errorf("again: %+v %v %q", res, err, fd.calls)
	}
	if _, err = m.VFSet(ctx, "ens1f0np0", 1, VFSettings{MaxTxRate: u32p(0)}); err != nil || fd.share[0x10001] != 12500000 || fd.max[0x10001] != 0 {
		t.Errorf("max 0: %v share %d max %d", err, fd.share[0x10001], fd.max[0x10001])
	}
	if _, err = m.VFSet(ctx, "ens1f0np0", 1, VFSettings{MaxTxRate: u32p(1000)}); err != nil {
		t.Fatal(err)
	}
	// refused before any change: settings with no switchdev VF equivalent, bad values
	fd.calls = nil
	for _, c := range []struct {
		s    VFSettings
		want error
		has  string
	}{
		{VFSettings{MAC: mac, VLAN: intp(100)}, ErrUnsupported, "vlan: in switchdev mode a VF's VLAN is tc vlan push/pop on its representor"},
		{VFSettings{Trust: boolp(true)}, ErrUnsupported, "trust/spoofchk: no switchdev equivalent"},
		{VFSettings{MinTxRate: u32p(2000)}, ErrInvalid, "min tx rate 2000 Mbit/s is above max tx rate 1000 Mbit/s"},
	} {
		if _, err := m.VFSet(ctx, "ens1f0np0", 1, c.s); !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.has) {
			t.Errorf("%+v: %v, want %v with %q", c.s, err, c.want, c.has)
		}
	}
	if _, err := m.VFSet(ctx, "ens1f0np0", 7, s); !errors.Is(err, ErrInvalid) {
		t.Errorf("VF 7: %v", err)
	}
	// a driver without hw_addr: the rate is not set either
	fd.noHWAddr = true
	if _, err := m.VFSet(ctx, "ens1f0np0", 0, s); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "no port function hw_addr") {
		t.Errorf("no hw_addr: %v", err)
	}
	if len(fd.calls) != 0 {
		t.Errorf("refused settings made calls: %q", fd.calls)
	}
	// a driver that forgets the rate is caught by the read-back
	fd.noHWAddr, fd.dropRate = false, true
	if _, err := m.VFSet(ctx, "ens1f0np0", 0, VFSettings{MaxTxRate: u32p(10)}); err == nil || !strings.Contains(err.Error(), "did not keep the settings: rate reads") {
		t.Errorf("dropped rate: %v", err)
	}
	// a devlink without port functions
	m2 := k.manager(t)
	if _, err := m2.VFSet(ctx, "ens1f0np0", 0, VFSettings{MaxTxRate: u32p(10)}); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "no port functions") {
		t.Errorf("plain devlink: %v", err)
	}
}
