package sriov

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
)

// VLAN protocols for VFSettings.VLANProto.
const (
	VLANProto8021Q  uint16 = 0x8100
	VLANProto8021AD uint16 = 0x88a8
)

// VFSettings are a VF's legacy-mode settings; nil fields are left as they are.
type VFSettings struct {
	MAC       net.HardwareAddr // nil: leave; a unicast MAC
	VLAN      *int             // 0 (none) … 4094
	QoS       *int             // 802.1p priority 0 … 7 (needs a VLAN)
	VLANProto *uint16          // VLANProto8021Q or VLANProto8021AD
	Trust     *bool
	SpoofChk  *bool
	LinkState *LinkState
	MinTxRate *uint32 // Mbit/s
	MaxTxRate *uint32 // Mbit/s, 0 = unlimited
}

// validate checks the settings on their own; errors name the field and the fix.
func (s VFSettings) validate() error {
	var errs []string
	if s.MAC != nil {
		switch {
		case len(s.MAC) != 6:
			errs = append(errs, fmt.Sprintf("mac %s: want 6 bytes (02:00:00:00:00:01)", s.MAC))
		case s.MAC[0]&1 == 1:
			errs = append(errs, fmt.Sprintf("mac %s: a multicast address cannot be a VF's MAC", s.MAC))
		}
	}
	if s.VLAN != nil && (*s.VLAN < 0 || *s.VLAN > 4094) {
		errs = append(errs, fmt.Sprintf("vlan %d: want 0 (none) to 4094", *s.VLAN))
	}
	if s.QoS != nil && (*s.QoS < 0 || *s.QoS > 7) {
		errs = append(errs, fmt.Sprintf("qos %d: want an 802.1p priority 0 to 7", *s.QoS))
	}
	if s.VLANProto != nil && *s.VLANProto != VLANProto8021Q && *s.VLANProto != VLANProto8021AD {
		errs = append(errs, fmt.Sprintf("vlan protocol %#04x: want 802.1Q (0x8100) or 802.1ad (0x88a8)", *s.VLANProto))
	}
	if s.LinkState != nil && *s.LinkState > LinkStateDisable {
		errs = append(errs, fmt.Sprintf("link state %d: want auto, enable or disable", uint32(*s.LinkState)))
	}
	if s.MinTxRate != nil && s.MaxTxRate != nil && *s.MaxTxRate != 0 && *s.MinTxRate > *s.MaxTxRate {
		errs = append(errs, fmt.Sprintf("min tx rate %d Mbit/s is above max tx rate %d Mbit/s", *s.MinTxRate, *s.MaxTxRate))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return nil
}

// vfChange is one setter call.
type vfChange struct {
	what string // "trust", "spoofchk", "mac", "vlan", "rate", "link-state"
	from string
	to   string
}

// want is the VF config after applying s to cur.
func (s VFSettings) want(cur VFConfig) VFConfig {
	w := cur
	if s.MAC != nil {
		w.MAC = s.MAC
	}
	if s.VLAN != nil {
		w.VLAN = *s.VLAN
	}
	if s.QoS != nil {
		w.QoS = *s.QoS
	}
	if s.VLANProto != nil {
		w.VLANProto = *s.VLANProto
	}
	if s.Trust != nil {
		w.Trust = *s.Trust
	}
	if s.SpoofChk != nil {
		w.SpoofChk = *s.SpoofChk
	}
	if s.LinkState != nil {
		w.LinkState = *s.LinkState
	}
	if s.MinTxRate != nil {
		w.MinTxRate = *s.MinTxRate
	}
	if s.MaxTxRate != nil {
		w.MaxTxRate = *s.MaxTxRate
	}
	if w.VLAN == 0 {
		w.QoS = 0 // the kernel drops the priority with the VLAN
	}
	return w
}

// vfDiff lists the setter calls that take cur to want, in the order that works on real
// drivers: trust and spoof checking first (an untrusted VF may not have its MAC
// changed on some drivers, and spoofchk is checked against the MAC), then the MAC, the
// port VLAN, the rates, and the link state last so the VF comes up configured.
func vfDiff(cur, want VFConfig) []vfChange {
	var out []vfChange
	onoff := func(b bool) string {
		if b {
			return "on"
		}
		return "off"
	}
	if cur.Trust != want.Trust {
		out = append(out, vfChange{"trust", onoff(cur.Trust), onoff(want.Trust)})
	}
	if cur.SpoofChk != want.SpoofChk {
		out = append(out, vfChange{"spoofchk", onoff(cur.SpoofChk), onoff(want.SpoofChk)})
	}
	if !bytes.Equal(cur.MAC, want.MAC) && (!isZeroMAC(cur.MAC) || !isZeroMAC(want.MAC)) {
		out = append(out, vfChange{"mac", cur.MAC.String(), want.MAC.String()})
	}
	vlanStr := func(c VFConfig) string {
		s := fmt.Sprintf("%d qos %d", c.VLAN, c.QoS)
		if c.VLANProto != 0 {
			s += fmt.Sprintf(" proto %#04x", c.VLANProto)
		}
		return s
	}
	protoDiffers := want.VLANProto != 0 && cur.VLANProto != 0 && want.VLANProto != cur.VLANProto
	if cur.VLAN != want.VLAN || cur.QoS != want.QoS || (want.VLAN != 0 && protoDiffers) {
		out = append(out, vfChange{"vlan", vlanStr(cur), vlanStr(want)})
	}
	if cur.MinTxRate != want.MinTxRate || cur.MaxTxRate != want.MaxTxRate {
		out = append(out, vfChange{"rate", fmt.Sprintf("min %d max %d", cur.MinTxRate, cur.MaxTxRate), fmt.Sprintf("min %d max %d", want.MinTxRate, want.MaxTxRate)})
	}
	if cur.LinkState != want.LinkState {
		out = append(out, vfChange{"link-state", cur.LinkState.String(), want.LinkState.String()})
	}
	return out
}

func isZeroMAC(m net.HardwareAddr) bool {
	for _, b := range m {
		if b != 0 {
			return false
		}
	}
	return true
}

// VFSetResult is what VFSet changed and what the driver reports afterwards.
type VFSetResult struct {
	PF      Device   `json:"pf"`
	VF      int      `json:"vf"`
	Changes []string `json:"changes"` // "mac 00:00:00:00:00:00 -> 02:00:00:00:00:10"
	Config  VFConfig `json:"config"`
}

// VFSet applies settings to VF vf of the PF named by ref and reads them back: in legacy
// mode over rtnetlink, in switchdev mode the MAC and rates over devlink (port function
// hw_addr, rate tx_share/tx_max; the rest is refused there: tc rules on the
// representor do it). Idempotent: settings already in place make no call. It refuses
// (changing nothing) bad values and an unknown VF.
func (m *Manager) VFSet(ctx context.Context, ref string, vf int, s VFSettings) (*VFSetResult, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	pf, err := m.PF(ctx, ref)
	if err != nil {
		return nil, err
	}
	if pf.EswitchMode == ModeSwitchdev {
		return m.vfSetSwitchdev(ctx, pf, vf, s) // vf_switchdev.go
	}
	if vf < 0 || vf >= pf.NumVFs {
		return nil, fmt.Errorf("%w: %s has %d VFs (0 to %d): no VF %d", ErrInvalid, pf.Device, pf.NumVFs, pf.NumVFs-1, vf)
	}
	if pf.Netdev == "" {
		return nil, fmt.Errorf("%w: %s has no netdev to configure its VFs through", ErrUnsupported, pf.Device)
	}
	cur, err := m.vfConfig(ctx, pf.Netdev, vf)
	if err != nil {
		return nil, err
	}
	want := s.want(cur)
	res := &VFSetResult{PF: pf.Device, VF: vf, Changes: []string{}}
	for _, c := range vfDiff(cur, want) {
		var err error
		switch c.what {
		case "trust":
			err = m.links.SetVFTrust(ctx, pf.Netdev, vf, want.Trust)
		case "spoofchk":
			err = m.links.SetVFSpoofChk(ctx, pf.Netdev, vf, want.SpoofChk)
		case "mac":
			err = m.links.SetVFMAC(ctx, pf.Netdev, vf, want.MAC)
		case "vlan":
			err = m.links.SetVFVLAN(ctx, pf.Netdev, vf, want.VLAN, want.QoS, want.VLANProto)
		case "rate":
			err = m.links.SetVFRate(ctx, pf.Netdev, vf, want.MinTxRate, want.MaxTxRate)
		case "link-state":
			err = m.links.SetVFLinkState(ctx, pf.Netdev, vf, want.LinkState)
		}
		if err != nil {
			return res, fmt.Errorf("vf %d of %s: set %s %s: %w", vf, pf.Netdev, c.what, c.to, err)
		}
		res.Changes = append(res.Changes, c.what+" "+c.from+" -> "+c.to)
	}
	got, err := m.vfConfig(ctx, pf.Netdev, vf)
	if err != nil {
		return res, err
	}
	res.Config = got
	if left := vfDiff(got, want); len(left) > 0 {
		var d []string
		for _, c := range left {
			d = append(d, fmt.Sprintf("%s reads %s, want %s", c.what, c.from, c.to))
		}
		return res, fmt.Errorf("vf %d of %s: the driver did not keep the settings: %s", vf, pf.Netdev, strings.Join(d, "; "))
	}
	return res, nil
}

// vfConfig reads one VF's config.
func (m *Manager) vfConfig(ctx context.Context, pfNetdev string, vf int) (VFConfig, error) {
	cfgs, err := m.links.VFConfigs(ctx, pfNetdev)
	if err != nil {
		return VFConfig{}, fmt.Errorf("read VFs of %s: %w", pfNetdev, err)
	}
	for _, c := range cfgs {
		if c.Index == vf {
			return c, nil
		}
	}
	return VFConfig{}, fmt.Errorf("%w: %s reports no VF %d over rtnetlink", ErrNoDevice, pfNetdev, vf)
}
