//go:build linux

package sriov

import (
	"encoding/binary"
	"fmt"
	"net"

	tc "github.com/florianl/go-tc"
	"golang.org/x/sys/unix"

	"github.com/offlane/offlane/offload"
)

// go-tc, the applier's former encoder, kept for tests only: the baseline of
// BenchmarkTCCompileEncodeGoTC10kPorts and a second, independent encoder whose output
// the decoder must read as it reads offlane's (TestTCEncodeDecode).

func swap16(v uint16) uint16 { return v<<8 | v>>8 }

var bigEndian = binary.NativeEndian.Uint16([]byte{0, 1}) == 1

// EncodeTC turns a rule into go-tc's filter object, resolving device names with ifindex.
func EncodeTC(r *offload.TCRule, ifindex func(string) (uint32, error)) (*tc.Object, error) {
	idx, err := ifindex(r.Dev)
	if err != nil {
		return nil, err
	}
	cookie := r.Cookie[:]
	fl := &tc.Flower{}
	flags := uint32(r.Flags)
	fl.Flags = &flags
	m := r.Match
	if r.Proto == offload.TCProto8021Q {
		et := offload.TCProto8021Q
		fl.KeyEthType = &et // the kernel parses vlan_id only under a VLAN eth_type
	}
	if m.VLANID != 0 {
		// go-tc v0.4.8 writes TCA_FLOWER_KEY_VLAN_ID big-endian; the kernel reads it as a
		// host-order NLA_U16: hand it the value swapped on little-endian hosts.
		v := m.VLANID
		if !bigEndian {
			v = swap16(v)
		}
		fl.KeyVlanID = &v
	}
	if m.DstMAC != "" {
		mac, err := net.ParseMAC(m.DstMAC)
		if err != nil {
			return nil, fmt.Errorf("rule %s: dst_mac: %w", r, err)
		}
		fl.KeyEthDst = &mac
		mask := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		if m.DstMACMask != "" {
			if mask, err = net.ParseMAC(m.DstMACMask); err != nil {
				return nil, fmt.Errorf("rule %s: dst_mac mask: %w", r, err)
			}
		}
		fl.KeyEthDstMask = &mask
	}
	if m.SrcMAC != "" {
		mac, err := net.ParseMAC(m.SrcMAC)
		if err != nil {
			return nil, fmt.Errorf("rule %s: src_mac: %w", r, err)
		}
		mask := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		fl.KeyEthSrc, fl.KeyEthSrcMask = &mac, &mask
	}
	if m.EncKeyID != 0 {
		v := m.EncKeyID
		fl.KeyEncKeyID = &v
	}
	if m.EncDstIP.IsValid() {
		ip := net.IP(m.EncDstIP.AsSlice())
		mask := net.IP(net.CIDRMask(m.EncDstIP.BitLen(), m.EncDstIP.BitLen()))
		fl.KeyEncIPv4Dst, fl.KeyEncIPv4DstMask = &ip, &mask
	}
	if m.EncDstPort != 0 {
		v, mask := m.EncDstPort, uint16(0xffff)
		fl.KeyEncUDPDstPort, fl.KeyEncUDPDstPortMask = &v, &mask
	}
	acts := make([]*tc.Action, 0, len(r.Actions))
	for _, a := range r.Actions {
		c := cookie
		act := &tc.Action{Cookie: &c}
		switch a.Kind {
		case offload.TCActVLANPush:
			id := a.VLANID
			act.Kind, act.VLan = "vlan", &tc.VLan{Parms: &tc.VLanParms{Action: actPipe, VLanAction: vlanPush}, PushID: &id}
		case offload.TCActVLANPop:
			act.Kind, act.VLan = "vlan", &tc.VLan{Parms: &tc.VLanParms{Action: actPipe, VLanAction: vlanPop}}
		case offload.TCActTunSet:
			src, dst := net.IP(a.TunSrc.AsSlice()), net.IP(a.TunDst.AsSlice())
			vni, port := a.VNI, a.TunPort
			act.Kind, act.TunnelKey = "tunnel_key", &tc.TunnelKey{Parms: &tc.TunnelParms{Action: actPipe, TunnelKeyAction: tunSet},
				KeyEncSrc: &src, KeyEncDst: &dst, KeyEncKeyID: &vni, KeyEncDstPort: &port}
		case offload.TCActTunUnset:
			act.Kind, act.TunnelKey = "tunnel_key", &tc.TunnelKey{Parms: &tc.TunnelParms{Action: actPipe, TunnelKeyAction: tunRelease}}
		case offload.TCActRedirect, offload.TCActMirror:
			to, err := ifindex(a.Dev)
			if err != nil {
				return nil, fmt.Errorf("rule %s: mirred target: %w", r, err)
			}
			p := &tc.MirredParam{Action: actStolen, Eaction: egressRedir, IfIndex: to}
			if a.Kind == offload.TCActMirror {
				p.Action, p.Eaction = actPipe, egressMirror
			}
			act.Kind, act.Mirred = "mirred", &tc.Mirred{Parms: p}
		case offload.TCActDrop:
			act.Kind, act.Gact = "gact", &tc.Gact{Parms: &tc.GactParms{Action: actShot}}
		default:
			return nil, fmt.Errorf("rule %s: unknown action %q", r, a.Kind)
		}
		acts = append(acts, act)
	}
	fl.Actions = &acts
	chain := r.Chain
	return &tc.Object{
		Msg: tc.Msg{Family: unix.AF_UNSPEC, Ifindex: idx, Handle: r.Handle, Parent: ingressParent,
			Info: uint32(r.Prio)<<16 | uint32(htons(r.Proto))},
		Attribute: tc.Attribute{Kind: "flower", Chain: &chain, Flower: fl},
	}, nil
}
