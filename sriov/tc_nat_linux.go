//go:build linux

package sriov

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/offlane/offlane/offload"
)

// Encoding and decoding of offload's tc_nat.go: the IPv4 source and ct_state matches,
// the ct action (zone, commit, NAT) and gact goto chain.

// Attribute numbers and values of the kernel's uapi (pkt_cls.h, tc_act/tc_ct.h,
// pkt_cls.h's TC_ACT_GOTO_CHAIN).
const (
	flowerKeyIPv4Src            = 10
	flowerKeyIPv4SrcMask        = 11
	flowerKeyCTState            = 91 // u16
	flowerKeyCTStateMask        = 92
	flowerKeyCTZone             = 93
	flowerKeyCTZoneMask         = 94
	ctParms                     = 1 // struct tc_ct: tc_gen
	ctAction                    = 3 // u16 TCA_CT_ACT_*
	ctZone                      = 4 // u16
	ctNATIPv4Min                = 9
	ctNATIPv4Max                = 10
	ctActCommit          uint16 = 1
	ctActNAT             uint16 = 8
	ctActNATSrc          uint16 = 16
	ctActNATDst          uint16 = 32

	actGotoChain uint32 = 0x20000000 // TC_ACT_GOTO_CHAIN (__TC_ACT_EXT(2))
	actExtMask   uint32 = 0x0fffffff // TC_ACT_EXT_VAL_MASK: the chain
)

// natMatch appends the src_ip and ct_state matches of r.
func (e *tcEncoder) natMatch(r *offload.TCRule) error {
	m := &r.Match
	if m.SrcIP.IsValid() {
		if !m.SrcIP.Addr().Is4() || r.Proto != offload.TCProtoIPv4 {
			return fmt.Errorf("rule %s: src_ip %s: only IPv4, under protocol ip", r, m.SrcIP)
		}
		ip := m.SrcIP.Masked().Addr().As4()
		e.attrBytes(flowerKeyIPv4Src, ip[:])
		e.attrBE32(flowerKeyIPv4SrcMask, ^uint32(0)<<(32-m.SrcIP.Bits()))
	}
	if m.CTState != "" {
		state, mask, err := offload.ParseCTState(m.CTState)
		if err != nil {
			return fmt.Errorf("rule %s: %w", r, err)
		}
		e.attrU16(flowerKeyCTState, state)
		e.attrU16(flowerKeyCTStateMask, mask)
	}
	return nil
}

// natAction appends the kind and options of a ct or goto action and returns the offset
// of the options for end.
func (e *tcEncoder) natAction(r *offload.TCRule, a *offload.TCAction) (int, error) {
	switch a.Kind {
	case offload.TCActGoto:
		if a.Chain == 0 || a.Chain > actExtMask {
			return 0, fmt.Errorf("rule %s: goto chain %d: want 1..%d", r, a.Chain, actExtMask)
		}
		e.attrString(actKind, "gact")
		opts := e.nest(actOptions)
		e.attr(actParms, tcGenLen)
		e.tcGen(actGotoChain | a.Chain)
		return opts, nil
	}
	var flags uint16
	if a.CTCommit {
		flags |= ctActCommit
	}
	switch a.CTNAT {
	case "":
	case "nat":
		flags |= ctActNAT
	case "src", "dst":
		if !a.CTAddr.Is4() {
			return 0, fmt.Errorf("rule %s: ct nat %s addr %s: want an IPv4 address", r, a.CTNAT, a.CTAddr)
		}
		if !a.CTCommit {
			return 0, fmt.Errorf("rule %s: ct nat %s needs commit", r, a.CTNAT)
		}
		flags |= ctActNAT | ctActNATSrc
		if a.CTNAT == "dst" {
			flags ^= ctActNATSrc | ctActNATDst
		}
	default:
		return 0, fmt.Errorf("rule %s: ct nat %q: want \"\", nat, src or dst", r, a.CTNAT)
	}
	e.attrString(actKind, "ct")
	opts := e.nest(actOptions)
	e.attr(ctParms, tcGenLen)
	e.tcGen(actPipe)
	e.attrU16(ctAction, flags)
	e.attrU16(ctZone, a.CTZone)
	if flags&(ctActNATSrc|ctActNATDst) != 0 {
		ip := a.CTAddr.As4()
		e.attrBytes(ctNATIPv4Min, ip[:])
		e.attrBytes(ctNATIPv4Max, ip[:])
	}
	return opts, nil
}

// decodeCT reads a ct action's options (attribute type → payload).
func decodeCT(attrs map[uint16][]byte) offload.TCAction {
	a := offload.TCAction{Kind: offload.TCActCT}
	var flags uint16
	if v := attrs[ctAction]; len(v) >= 2 {
		flags = binary.NativeEndian.Uint16(v)
	}
	if v := attrs[ctZone]; len(v) >= 2 {
		a.CTZone = binary.NativeEndian.Uint16(v)
	}
	a.CTCommit = flags&ctActCommit != 0
	switch {
	case flags&ctActNATSrc != 0:
		a.CTNAT = "src"
	case flags&ctActNATDst != 0:
		a.CTNAT = "dst"
	case flags&ctActNAT != 0:
		a.CTNAT = "nat"
	}
	if a.CTNAT == "src" || a.CTNAT == "dst" {
		a.CTAddr, _ = netip.AddrFromSlice(attrs[ctNATIPv4Min])
	}
	return a
}

// decodeGoto is a gact's verdict as goto chain; false for other verdicts.
func decodeGoto(verdict uint32) (offload.TCAction, bool) {
	if verdict&^actExtMask != actGotoChain {
		return offload.TCAction{}, false
	}
	return offload.TCAction{Kind: offload.TCActGoto, Chain: verdict & actExtMask}, true
}

// natKeys collects the src_ip and ct_state keys of a flower dump.
type natKeys struct {
	src, srcMask    []byte
	ctState, ctMask uint16
	haveCT          bool
}

// take reads attribute typ's payload b when it is one of natKeys'; false otherwise.
func (k *natKeys) take(typ uint16, b []byte) bool {
	switch typ {
	case flowerKeyIPv4Src:
		k.src = b
	case flowerKeyIPv4SrcMask:
		k.srcMask = b
	case flowerKeyCTState:
		if len(b) >= 2 {
			k.ctState, k.haveCT = binary.NativeEndian.Uint16(b), true
		}
	case flowerKeyCTStateMask:
		if len(b) >= 2 {
			k.ctMask = binary.NativeEndian.Uint16(b)
		}
	default:
		return false
	}
	return true
}

func (k *natKeys) apply(m *offload.TCMatch) {
	if k.src != nil {
		m.SrcIP = ipv4Prefix(k.src, k.srcMask)
	}
	if k.haveCT && k.ctMask != 0 {
		m.CTState = offload.FormatCTState(k.ctState, k.ctMask)
	}
}
