//go:build linux

package sriov

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// NetlinkDevlink's DevlinkFunctions: port function hw_addr through vishvananda/netlink,
// devlink rate (which that library lacks) with its generic-netlink request helpers.

// devlink uapi numbers (linux/devlink.h) the library does not define.
const (
	devlinkCmdRateGet    = 74
	devlinkCmdRateSet    = 75
	devlinkAttrBusName   = 1
	devlinkAttrDevName   = 2
	devlinkAttrPortIndex = 3
	devlinkAttrTxShare   = 166
	devlinkAttrTxMax     = 167
)

func unsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP)
}

// PortFunctionHWAddr implements DevlinkFunctions.
func (NetlinkDevlink) PortFunctionHWAddr(ctx context.Context, p DevlinkPort) (net.HardwareAddr, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dp, err := netlink.DevLinkGetPortByIndex(p.Device.Bus, p.Device.Name, p.Index)
	if err != nil {
		return nil, fmt.Errorf("devlink port %s/%d: %w", p.Device, p.Index, err)
	}
	if dp.Fn == nil || dp.Fn.HwAddr == nil {
		return nil, fmt.Errorf("%w: devlink port %s/%d: the driver reports no port function hw_addr", ErrUnsupported, p.Device, p.Index)
	}
	return dp.Fn.HwAddr, nil
}

// SetPortFunctionHWAddr implements DevlinkFunctions.
func (NetlinkDevlink) SetPortFunctionHWAddr(ctx context.Context, p DevlinkPort, mac net.HardwareAddr) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := netlink.DevlinkPortFnSet(p.Device.Bus, p.Device.Name, p.Index,
		netlink.DevlinkPortFnSetAttrs{FnAttrs: netlink.DevlinkPortFn{HwAddr: mac}, HwAddrValid: true})
	if unsupported(err) {
		return fmt.Errorf("%w: devlink port %s/%d: port function hw_addr: %w", ErrUnsupported, p.Device, p.Index, err)
	}
	return err
}

// rateRequest is a devlink rate request for port p's leaf object.
func rateRequest(cmd uint8, p DevlinkPort, flags int) (*nl.NetlinkRequest, error) {
	f, err := netlink.GenlFamilyGet(nl.GENL_DEVLINK_NAME)
	if err != nil {
		return nil, fmt.Errorf("devlink family: %w", err)
	}
	req := nl.NewNetlinkRequest(int(f.ID), unix.NLM_F_REQUEST|flags)
	req.AddData(&nl.Genlmsg{Command: cmd, Version: nl.GENL_DEVLINK_VERSION})
	req.AddData(nl.NewRtAttr(devlinkAttrBusName, nl.ZeroTerminated(p.Device.Bus)))
	req.AddData(nl.NewRtAttr(devlinkAttrDevName, nl.ZeroTerminated(p.Device.Name)))
	req.AddData(nl.NewRtAttr(devlinkAttrPortIndex, nl.Uint32Attr(p.Index)))
	return req, nil
}

// PortRate implements DevlinkFunctions.
func (NetlinkDevlink) PortRate(ctx context.Context, p DevlinkPort) (share, max uint64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	req, err := rateRequest(devlinkCmdRateGet, p, 0)
	if err != nil {
		return 0, 0, err
	}
	msgs, err := req.Execute(unix.NETLINK_GENERIC, 0)
	if err != nil {
		if unsupported(err) || errors.Is(err, unix.ENODEV) {
			return 0, 0, fmt.Errorf("%w: devlink port %s/%d has no rate object: %w", ErrUnsupported, p.Device, p.Index, err)
		}
		return 0, 0, fmt.Errorf("devlink port %s/%d: rate get: %w", p.Device, p.Index, err)
	}
	for _, m := range msgs {
		if len(m) < nl.SizeofGenlmsg {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[nl.SizeofGenlmsg:])
		if err != nil {
			return 0, 0, fmt.Errorf("devlink port %s/%d: rate get: %w", p.Device, p.Index, err)
		}
		for _, a := range attrs {
			switch {
			case a.Attr.Type == devlinkAttrTxShare && len(a.Value) == 8:
				share = binary.NativeEndian.Uint64(a.Value)
			case a.Attr.Type == devlinkAttrTxMax && len(a.Value) == 8:
				max = binary.NativeEndian.Uint64(a.Value)
			}
		}
		return share, max, nil
	}
	return 0, 0, fmt.Errorf("devlink port %s/%d: rate get: no answer", p.Device, p.Index)
}

// SetPortRate implements DevlinkFunctions.
func (NetlinkDevlink) SetPortRate(ctx context.Context, p DevlinkPort, share, max uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	req, err := rateRequest(devlinkCmdRateSet, p, unix.NLM_F_ACK)
	if err != nil {
		return err
	}
	req.AddData(nl.NewRtAttr(devlinkAttrTxShare, nl.Uint64Attr(share)))
	req.AddData(nl.NewRtAttr(devlinkAttrTxMax, nl.Uint64Attr(max)))
	if _, err := req.Execute(unix.NETLINK_GENERIC, 0); err != nil {
		if unsupported(err) {
			return fmt.Errorf("%w: devlink port %s/%d: rate set: %w", ErrUnsupported, p.Device, p.Index, err)
		}
		return fmt.Errorf("devlink port %s/%d: rate set tx_share %d tx_max %d: %w", p.Device, p.Index, share, max, err)
	}
	return nil
}

var _ DevlinkFunctions = NetlinkDevlink{}
