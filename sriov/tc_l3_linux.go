//go:build linux

package sriov

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net"
	"net/netip"

	"github.com/mdlayher/netlink"

	"github.com/offlane/offlane/offload"
)

// Encoding and decoding of the actions of offload's tc_l3.go (police, pedit, csum), of
// the IPv4 destination match and of the egress hook.

// Attribute numbers and values of the kernel's uapi (pkt_cls.h, tc_act/tc_pedit.h,
// tc_act/tc_csum.h, pkt_sched.h).
const (
	flowerKeyIPv4Dst     = 12
	flowerKeyIPv4DstMask = 13

	policeTBF    = 1 // struct tc_police
	policeRate   = 2 // the rate table (TC_RTAB_SIZE)
	policeResult = 5 // the conform action
	policeRate64 = 8

	peditParmsEx = 4 // struct tc_pedit_sel + keys
	peditKeysEx  = 5 // nested TCA_PEDIT_KEY_EX
	peditKeyEx   = 6
	peditKeyHTyp = 1
	peditKeyCmd  = 2
	peditHdrEth  = 1 // TCA_PEDIT_KEY_EX_HDR_TYPE_ETH
	peditHdrIP4  = 2
	peditCmdSet  = 0
	peditCmdAdd  = 1

	csumParms   = 1
	csumIPv4Hdr = 1 // TCA_CSUM_UPDATE_FLAG_IPV4HDR

	actUnspec = 0xffffffff // TC_ACT_UNSPEC (-1): "continue" with the next filter

	tcPoliceLen   = 56 // struct tc_police
	tcRtabSize    = 1024
	tcPeditSelLen = 24 // struct tc_pedit_sel without keys
	tcPeditKeyLen = 24 // struct tc_pedit_key

	linkLayerEthernet = 1 // TC_LINKLAYER_ETHERNET

	// egressParent is TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS): clsact's egress hook.
	egressParent uint32 = 0xfffffff3
)

func hookParent(egress bool) uint32 {
	if egress {
		return egressParent
	}
	return ingressParent
}

// control is an action's verdict: pipe, or continue with the next filter.
func control(a *offload.TCAction) uint32 {
	if a.Continue {
		return actUnspec
	}
	return actPipe
}

// peditKey is one 32-bit word of a pedit action: the header, the offset in it, the bits
// kept (mask) and the value, both as the packet's bytes read big-endian, and whether
// the value is added (with carry inside the word) rather than set.
type peditKey struct {
	htype uint16
	off   uint32
	mask  uint32
	val   uint32
	add   bool
}

// peditKeys are the pedit words of a, or an error for a bad MAC.
func peditKeys(r *offload.TCRule, a *offload.TCAction) ([]peditKey, error) {
	switch a.Kind {
	case offload.TCActPeditEth:
		dst, ok1 := parseMAC6(a.EthDst)
		src, ok2 := parseMAC6(a.EthSrc)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("rule %s: pedit eth dst %q src %q: not MAC addresses", r, a.EthDst, a.EthSrc)
		}
		var h [12]byte
		copy(h[:6], dst[:])
		copy(h[6:], src[:])
		be := binary.BigEndian
		return []peditKey{{htype: peditHdrEth, off: 0, val: be.Uint32(h[0:])},
			{htype: peditHdrEth, off: 4, val: be.Uint32(h[4:])},
			{htype: peditHdrEth, off: 8, val: be.Uint32(h[8:])}}, nil
	case offload.TCActPeditTTL:
		// ttl is the first byte of the word at 8 (ttl, protocol, checksum): add 0xff
		return []peditKey{{htype: peditHdrIP4, off: 8, mask: 0x00ffffff, val: 0xff000000, add: true}}, nil
	case offload.TCActPeditDSCP:
		// tos is the second byte of the word at 0: its top six bits, ECN kept
		return []peditKey{{htype: peditHdrIP4, off: 0, mask: 0xff03ffff, val: uint32(a.DSCP) << 18}}, nil
	}
	return nil, fmt.Errorf("rule %s: %s is not a pedit action", r, a.Kind)
}

// l3Action appends the kind and options of a police, pedit or csum action and returns
// the options' nest offset (closed by the caller).
func (e *tcEncoder) l3Action(r *offload.TCRule, a *offload.TCAction) (int, error) {
	switch a.Kind {
	case offload.TCActPolice:
		if a.Rate == 0 {
			return 0, fmt.Errorf("rule %s: police with rate 0", r)
		}
		e.attrString(actKind, "police")
		opts := e.nest(actOptions)
		rate32 := uint32(min(a.Rate, 1<<32-1))
		e.attr(policeTBF, tcPoliceLen)
		e.u32(0)                                                      // index
		e.u32(actShot)                                                // over the rate: drop
		e.u32(0)                                                      // limit
		e.u32(offload.PoliceBurstTicks(a.Rate, a.Burst))              // burst
		e.u32(^uint32(0))                                             // mtu: none
		e.buf = append(e.buf, 3, linkLayerEthernet, 0, 0, 0, 0, 0, 0) // rate: cell_log, linklayer, overhead, cell_align, mpu
		e.u32(rate32)
		e.buf = append(e.buf, make([]byte, 12+12)...) // peakrate, refcnt, bindcnt, capab
		// The kernel wants a rate table with a rate (qdisc_get_rtab) but computes the
		// rate from the ratespec; with the link layer set it does not read the table.
		e.attr(policeRate, tcRtabSize)
		e.buf = append(e.buf, zeroRtab[:]...)
		e.attrU32(policeResult, control(a))
		if a.Rate > 1<<32-1 {
			e.attr(policeRate64, 8)
			e.buf = binary.NativeEndian.AppendUint64(e.buf, a.Rate)
		}
		return opts, nil
	case offload.TCActCsum:
		e.attrString(actKind, "csum")
		opts := e.nest(actOptions)
		e.attr(csumParms, tcGenLen+4)
		e.tcGen(control(a))
		e.u32(csumIPv4Hdr)
		return opts, nil
	}
	keys, err := peditKeys(r, a)
	if err != nil {
		return 0, err
	}
	e.attrString(actKind, "pedit")
	opts := e.nest(actOptions)
	e.attr(peditParmsEx, tcPeditSelLen+tcPeditKeyLen*len(keys))
	e.tcGen(control(a))
	e.buf = append(e.buf, byte(len(keys)), 0, 0, 0) // nkeys, flags, padding
	for _, k := range keys {
		e.buf = binary.BigEndian.AppendUint32(e.buf, k.mask) // the packet's bytes
		e.buf = binary.BigEndian.AppendUint32(e.buf, k.val)
		e.u32(k.off)
		e.buf = append(e.buf, make([]byte, 12)...) // at, offmask, shift
	}
	kx := e.nest(peditKeysEx)
	for _, k := range keys {
		one := e.nest(peditKeyEx)
		e.attrU16(peditKeyHTyp, k.htype)
		cmd := uint16(peditCmdSet)
		if k.add {
			cmd = peditCmdAdd
		}
		e.attrU16(peditKeyCmd, cmd)
		e.end(one)
	}
	e.end(kx)
	return opts, nil
}

var zeroRtab [tcRtabSize]byte

// decodeL3Action decodes a police, pedit or csum action from its options' attributes
// by type; ok is false for other kinds, or for one offlane does not write.
func decodeL3Action(kind string, attrs map[uint16][]byte) (offload.TCAction, bool) {
	u32 := func(b []byte, off int) uint32 {
		if len(b) < off+4 {
			return 0
		}
		return binary.NativeEndian.Uint32(b[off:])
	}
	switch kind {
	case "police":
		parms := attrs[policeTBF]
		if len(parms) < tcPoliceLen {
			return offload.TCAction{}, false
		}
		a := offload.TCAction{Kind: offload.TCActPolice, Rate: uint64(u32(parms, 28))}
		if v := attrs[policeRate64]; len(v) == 8 {
			a.Rate = binary.NativeEndian.Uint64(v)
		}
		a.Burst = offload.PoliceBurstBytes(a.Rate, u32(parms, 12))
		a.Continue = u32(attrs[policeResult], 0) == actUnspec
		return a, u32(parms, 4) == actShot
	case "csum":
		parms := attrs[csumParms]
		a := offload.TCAction{Kind: offload.TCActCsum, Continue: u32(parms, 8) == actUnspec}
		return a, u32(parms, tcGenLen) == csumIPv4Hdr
	case "pedit":
		return decodePedit(attrs)
	}
	return offload.TCAction{}, false
}

func decodePedit(attrs map[uint16][]byte) (offload.TCAction, bool) {
	sel := attrs[peditParmsEx]
	if len(sel) < tcPeditSelLen {
		return offload.TCAction{}, false
	}
	n := int(sel[tcGenLen])
	if len(sel) < tcPeditSelLen+n*tcPeditKeyLen || n == 0 {
		return offload.TCAction{}, false
	}
	keys := make([]peditKey, n)
	for i := range keys {
		k := sel[tcPeditSelLen+i*tcPeditKeyLen:]
		keys[i] = peditKey{mask: binary.BigEndian.Uint32(k), val: binary.BigEndian.Uint32(k[4:]), off: binary.NativeEndian.Uint32(k[8:])}
	}
	if ad, err := netlink.NewAttributeDecoder(attrs[peditKeysEx]); err == nil {
		for i := 0; ad.Next() && i < n; i++ {
			ad.Nested(func(kd *netlink.AttributeDecoder) error {
				for kd.Next() {
					switch kd.Type() {
					case peditKeyHTyp:
						keys[i].htype = kd.Uint16()
					case peditKeyCmd:
						keys[i].add = kd.Uint16() == peditCmdAdd
					}
				}
				return nil
			})
		}
	}
	a := offload.TCAction{Continue: binary.NativeEndian.Uint32(sel[8:]) == actUnspec}
	switch {
	case n == 1 && keys[0] == peditKey{htype: peditHdrIP4, off: 8, mask: 0x00ffffff, val: 0xff000000, add: true}:
		a.Kind = offload.TCActPeditTTL
	case n == 1 && keys[0].htype == peditHdrIP4 && keys[0].off == 0 && keys[0].mask == 0xff03ffff && !keys[0].add && keys[0].val&^0x00fc0000 == 0:
		a.Kind, a.DSCP = offload.TCActPeditDSCP, uint8(keys[0].val>>18)
	case n == 3 && keys[0].htype == peditHdrEth:
		var h [12]byte
		for i, k := range keys {
			if k.htype != peditHdrEth || k.off != uint32(4*i) || k.mask != 0 || k.add {
				return offload.TCAction{}, false
			}
			binary.BigEndian.PutUint32(h[4*i:], k.val)
		}
		a.Kind, a.EthDst, a.EthSrc = offload.TCActPeditEth, net.HardwareAddr(h[:6]).String(), net.HardwareAddr(h[6:]).String()
	default:
		return offload.TCAction{}, false
	}
	return a, true
}

// ipv4Prefix is the prefix of an address and a mask as flower dumps them ("" mask:
// /32); invalid for a non-contiguous mask.
func ipv4Prefix(addr, mask []byte) netip.Prefix {
	a, ok := netip.AddrFromSlice(addr)
	if !ok || !a.Is4() {
		return netip.Prefix{}
	}
	n := 32
	if len(mask) == 4 {
		m := binary.BigEndian.Uint32(mask)
		n = bits.LeadingZeros32(^m)
		if m<<n != 0 {
			return netip.Prefix{}
		}
	}
	return netip.PrefixFrom(a, n)
}
