package sriov

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
)

// VF settings in switchdev mode: the PF driver no longer takes ip-link style VF
// settings; the VF's MAC is its devlink port function's hw_addr and its rates are the
// devlink rate object (leaf) of its port. VLANs and filtering are tc rules on the
// representor (offload.CompileTC), not VF settings.

// DevlinkFunctions is the devlink port-function and rate calls for VFs in switchdev
// mode. NetlinkDevlink has them; a Devlink without them cannot configure such VFs.
type DevlinkFunctions interface {
	// PortFunctionHWAddr returns the MAC of the function (VF) behind a devlink port.
	// An error wrapping ErrUnsupported when the driver reports no port function.
	// Read-only; safe to retry.
	PortFunctionHWAddr(ctx context.Context, p DevlinkPort) (net.HardwareAddr, error)
	// SetPortFunctionHWAddr sets it (`devlink port function set … hw_addr`); a driver
	// without it gives an error wrapping ErrUnsupported. Idempotent.
	SetPortFunctionHWAddr(ctx context.Context, p DevlinkPort, mac net.HardwareAddr) error
	// PortRate returns the port's leaf rate object: tx_share and tx_max in bytes/s (0 =
	// none). An error wrapping ErrUnsupported when the device has no rate objects.
	// Read-only.
	PortRate(ctx context.Context, p DevlinkPort) (share, max uint64, err error)
	// SetPortRate sets tx_share and tx_max (`devlink port function rate set`).
	// Idempotent.
	SetPortRate(ctx context.Context, p DevlinkPort, share, max uint64) error
}

// bytesPerMbit converts the Mbit/s of VFSettings to devlink rate's bytes/s.
const bytesPerMbit = 125000

// vfSetSwitchdev is VFSet for a PF in switchdev mode: the MAC through the VF's devlink
// port function, the rates through its devlink rate object. Everything is read (and
// every unsupported setting refused) before the first change.
func (m *Manager) vfSetSwitchdev(ctx context.Context, pf *PF, vf int, s VFSettings) (*VFSetResult, error) {
	var refuse []string
	if s.VLAN != nil || s.QoS != nil || s.VLANProto != nil {
		refuse = append(refuse, "vlan: in switchdev mode a VF's VLAN is tc vlan push/pop on its representor (offload.CompileTC), not a VF setting")
	}
	if s.Trust != nil || s.SpoofChk != nil {
		refuse = append(refuse, "trust/spoofchk: no switchdev equivalent: the representor's tc rules decide what the VF may send")
	}
	if s.LinkState != nil {
		refuse = append(refuse, "link state: set the representor's link instead (ip link set <representor> up|down)")
	}
	if len(refuse) > 0 {
		return nil, fmt.Errorf("%w: %s is in switchdev mode: %s", ErrUnsupported, pf.Device, strings.Join(refuse, "; "))
	}
	fn, ok := m.dl.(DevlinkFunctions)
	if !ok {
		return nil, fmt.Errorf("%w: %s is in switchdev mode and this devlink has no port functions", ErrUnsupported, pf.Device)
	}
	if vf < 0 || vf >= pf.NumVFs {
		return nil, fmt.Errorf("%w: %s has %d VFs (0 to %d): no VF %d", ErrInvalid, pf.Device, pf.NumVFs, pf.NumVFs-1, vf)
	}
	port, err := m.vfDevlinkPort(ctx, pf, vf)
	if err != nil {
		return nil, err
	}
	res := &VFSetResult{PF: pf.Device, VF: vf, Changes: []string{}}
	var curMAC net.HardwareAddr
	if s.MAC != nil {
		if curMAC, err = fn.PortFunctionHWAddr(ctx, port); err != nil {
			return nil, fmt.Errorf("vf %d of %s: read port function hw_addr: %w", vf, pf.Device, err)
		}
	}
	rates := s.MinTxRate != nil || s.MaxTxRate != nil
	var share, max uint64
	if rates {
		if share, max, err = fn.PortRate(ctx, port); err != nil {
			return nil, fmt.Errorf("vf %d of %s: read devlink rate: %w", vf, pf.Device, err)
		}
	}
	wantShare, wantMax := share, max
	if s.MinTxRate != nil {
		wantShare = uint64(*s.MinTxRate) * bytesPerMbit
	}
	if s.MaxTxRate != nil {
		wantMax = uint64(*s.MaxTxRate) * bytesPerMbit
	}
	if rates && wantMax != 0 && wantShare > wantMax {
		return nil, fmt.Errorf("%w: min tx rate %d Mbit/s is above max tx rate %d Mbit/s", ErrInvalid, wantShare/bytesPerMbit, wantMax/bytesPerMbit)
	}
	if s.MAC != nil && !bytes.Equal(curMAC, s.MAC) {
		if err := fn.SetPortFunctionHWAddr(ctx, port, s.MAC); err != nil {
			return res, fmt.Errorf("vf %d of %s: set port function hw_addr %s: %w", vf, pf.Device, s.MAC, err)
		}
		res.Changes = append(res.Changes, fmt.Sprintf("mac %s -> %s", curMAC, s.MAC))
	}
	if rates && (share != wantShare || max != wantMax) {
		if err := fn.SetPortRate(ctx, port, wantShare, wantMax); err != nil {
			return res, fmt.Errorf("vf %d of %s: set devlink rate tx_share %d tx_max %d bytes/s: %w", vf, pf.Device, wantShare, wantMax, err)
		}
		res.Changes = append(res.Changes, fmt.Sprintf("rate min %d max %d -> min %d max %d (Mbit/s; devlink rate)",
			share/bytesPerMbit, max/bytesPerMbit, wantShare/bytesPerMbit, wantMax/bytesPerMbit))
	}
	// read back what the driver kept
	res.Config = VFConfig{Index: vf}
	var left []string
	if s.MAC != nil {
		got, err := fn.PortFunctionHWAddr(ctx, port)
		if err != nil {
			return res, fmt.Errorf("vf %d of %s: read back hw_addr: %w", vf, pf.Device, err)
		}
		res.Config.MAC = got
		if !bytes.Equal(got, s.MAC) {
			left = append(left, fmt.Sprintf("hw_addr reads %s, want %s", got, s.MAC))
		}
	}
	if rates {
		gs, gm, err := fn.PortRate(ctx, port)
		if err != nil {
			return res, fmt.Errorf("vf %d of %s: read back devlink rate: %w", vf, pf.Device, err)
		}
		res.Config.MinTxRate, res.Config.MaxTxRate = uint32(gs/bytesPerMbit), uint32(gm/bytesPerMbit)
		if gs != wantShare || gm != wantMax {
			left = append(left, fmt.Sprintf("rate reads tx_share %d tx_max %d, want %d %d (bytes/s)", gs, gm, wantShare, wantMax))
		}
	}
	if len(left) > 0 {
		return res, fmt.Errorf("vf %d of %s: the driver did not keep the settings: %s", vf, pf.Device, strings.Join(left, "; "))
	}
	return res, nil
}

// vfDevlinkPort finds the devlink port of VF vf of pf (flavour pcivf, local controller).
func (m *Manager) vfDevlinkPort(ctx context.Context, pf *PF, vf int) (DevlinkPort, error) {
	ports, err := m.dl.Ports(ctx)
	if err != nil {
		return DevlinkPort{}, err
	}
	for _, p := range ports {
		if p.Device == pf.Device && p.Flavour == FlavourPCIVF && p.VF == vf && !p.External {
			return p, nil
		}
	}
	return DevlinkPort{}, fmt.Errorf("%w: devlink reports no port for VF %d of %s (its representor appears in switchdev mode with the VFs)", ErrNoDevice, vf, pf.Device)
}
