//go:build linux

package sriov

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/offlane/offlane/offload"
)

// Reading filters back is done with a small decoder of its own over a plain rtnetlink
// dump: go-tc v0.4.8 decodes TCA_VLAN_PUSH_VLAN_PRIORITY (a u8) as a u32 and fails the
// whole dump of a device holding a vlan push action. Writing is tc_encode_linux.go; the
// kernel's dump (not an echo of the request) is what every apply checks.

// Attribute numbers of the kernel's uapi (pkt_cls.h, tc_act/*.h).
const (
	tcaKind    = 1
	tcaOptions = 2
	tcaChain   = 11

	flowerAct             = 3
	flowerKeyEthDst       = 4
	flowerKeyEthDstMask   = 5
	flowerKeyEthSrc       = 6
	flowerFlags           = 22
	flowerKeyVlanID       = 23
	flowerKeyEncKeyID     = 26
	flowerKeyEncIPv4Dst   = 29
	flowerKeyEncUDPDstPrt = 45

	actKind    = 1
	actOptions = 2
	actCookie  = 6

	actParms        = 2 // TCA_{MIRRED,VLAN,TUNNEL_KEY,GACT}_PARMS
	vlanPushID      = 3
	tunEncIPv4Src   = 3
	tunEncIPv4Dst   = 4
	tunEncKeyID     = 7
	tunEncDstPort   = 9
	tcGenLen        = 20 // struct tc_gen: index, capab, action, refcnt, bindcnt
	tcmsgLen        = 20
	mirredIfindexAt = 24
)

// dumpFilters lists the flower filters on the ingress (or egress) hook of ifindex idx.
func (g *NetlinkTC) dumpFilters(dev string, idx uint32, egress bool) ([]TCFilter, error) {
	req := make([]byte, tcmsgLen)
	binary.NativeEndian.PutUint32(req[4:], idx)
	binary.NativeEndian.PutUint32(req[12:], hookParent(egress))
	msgs, err := g.raw.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETTFILTER, Flags: netlink.Request | netlink.Dump},
		Data:   req,
	})
	if err != nil {
		return nil, err
	}
	var out []TCFilter
	for _, m := range msgs {
		if len(m.Data) < tcmsgLen {
			continue
		}
		f, ok, err := g.decodeFilter(dev, m.Data)
		if err != nil {
			return nil, fmt.Errorf("decode filter: %w", err)
		}
		if ok {
			out = append(out, f)
		}
	}
	return out, nil
}

func (g *NetlinkTC) decodeFilter(dev string, b []byte) (TCFilter, bool, error) {
	handle := binary.NativeEndian.Uint32(b[8:])
	info := binary.NativeEndian.Uint32(b[16:])
	r := offload.TCRule{Dev: dev, Handle: handle, Prio: uint16(info >> 16), Proto: htons(uint16(info)),
		Egress: binary.NativeEndian.Uint32(b[12:]) == egressParent}
	var dstIP, dstMask []byte
	f := TCFilter{}
	ad, err := netlink.NewAttributeDecoder(b[tcmsgLen:])
	if err != nil {
		return f, false, err
	}
	var kind string
	var opts []byte
	for ad.Next() {
		switch ad.Type() {
		case tcaKind:
			kind = ad.String()
		case tcaChain:
			r.Chain = ad.Uint32()
		case tcaOptions:
			opts = ad.Bytes()
		}
	}
	if err := ad.Err(); err != nil {
		return f, false, err
	}
	if kind != "flower" || handle == 0 || opts == nil {
		return f, false, nil // the per-priority header of a dump has no handle
	}
	od, err := netlink.NewAttributeDecoder(opts)
	if err != nil {
		return f, false, err
	}
	var nk natKeys
	for od.Next() {
		if t := od.Type(); t == flowerKeyIPv4Src || t == flowerKeyIPv4SrcMask || t == flowerKeyCTState || t == flowerKeyCTStateMask {
			nk.take(t, od.Bytes())
			continue
		}
		switch od.Type() {
		case flowerKeyEthDst:
			r.Match.DstMAC = net.HardwareAddr(od.Bytes()).String()
		case flowerKeyEthDstMask:
			if m := net.HardwareAddr(od.Bytes()).String(); m != "ff:ff:ff:ff:ff:ff" {
				r.Match.DstMACMask = m
			}
		case flowerKeyEthSrc:
			r.Match.SrcMAC = net.HardwareAddr(od.Bytes()).String()
		case flowerFlags:
			fl := od.Uint32()
			r.Flags = offload.TCFlags(fl & clsFlagsMask)
			f.InHW = fl&clsFlagsInHW != 0
		case flowerKeyVlanID:
			r.Match.VLANID = od.Uint16() // NLA_U16, host order; a wrong length is the decoder's error
		case flowerKeyEncKeyID:
			if b := od.Bytes(); len(b) == 4 {
				r.Match.EncKeyID = binary.BigEndian.Uint32(b)
			}
		case flowerKeyEncIPv4Dst:
			r.Match.EncDstIP, _ = netip.AddrFromSlice(od.Bytes())
		case flowerKeyEncUDPDstPrt:
			if b := od.Bytes(); len(b) == 2 {
				r.Match.EncDstPort = binary.BigEndian.Uint16(b)
			}
		case flowerKeyIPv4Dst:
			dstIP = od.Bytes()
		case flowerKeyIPv4DstMask:
			dstMask = od.Bytes()
		case flowerAct:
			od.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					var a offload.TCAction
					var cookie []byte
					nad.Nested(func(aad *netlink.AttributeDecoder) error {
						a, cookie = g.decodeAction(aad)
						return nil
					})
					if len(r.Actions) == 0 {
						f.Cookie = cookie
					}
					r.Actions = append(r.Actions, a)
				}
				return nil
			})
		}
	}
	if err := od.Err(); err != nil {
		return f, false, err
	}
	if dstIP != nil {
		r.Match.DstIP = ipv4Prefix(dstIP, dstMask)
	}
	nk.apply(&r.Match)
	f.Rule = r
	return f, true, nil
}

func (g *NetlinkTC) decodeAction(ad *netlink.AttributeDecoder) (offload.TCAction, []byte) {
	var kind string
	var opts, cookie []byte
	for ad.Next() {
		switch ad.Type() {
		case actKind:
			kind = ad.String()
		case actOptions:
			opts = ad.Bytes()
		case actCookie:
			cookie = ad.Bytes()
		}
	}
	a := offload.TCAction{Kind: "unknown:" + kind}
	od, err := netlink.NewAttributeDecoder(opts)
	if err != nil {
		return a, cookie
	}
	var parms []byte
	attrs := map[uint16][]byte{}
	for od.Next() {
		if od.Type() == actParms {
			parms = od.Bytes()
		} else {
			attrs[od.Type()] = od.Bytes()
		}
	}
	u32 := func(off int) uint32 {
		if len(parms) < off+4 {
			return 0
		}
		return binary.NativeEndian.Uint32(parms[off:])
	}
	switch kind {
	case "mirred":
		a = offload.TCAction{Kind: offload.TCActRedirect, Dev: g.ifname(u32(mirredIfindexAt))}
		if u32(tcGenLen) == egressMirror {
			a.Kind = offload.TCActMirror
		}
	case "vlan":
		a = offload.TCAction{Kind: offload.TCActVLANPop}
		if u32(tcGenLen) == vlanPush {
			a.Kind = offload.TCActVLANPush
			if v := attrs[vlanPushID]; len(v) == 2 {
				a.VLANID = binary.NativeEndian.Uint16(v)
			}
		}
	case "tunnel_key":
		a = offload.TCAction{Kind: offload.TCActTunUnset}
		if u32(tcGenLen) == tunSet {
			a.Kind = offload.TCActTunSet
			a.TunSrc, _ = netip.AddrFromSlice(attrs[tunEncIPv4Src])
			a.TunDst, _ = netip.AddrFromSlice(attrs[tunEncIPv4Dst])
			if v := attrs[tunEncKeyID]; len(v) == 4 {
				a.VNI = binary.BigEndian.Uint32(v)
			}
			if v := attrs[tunEncDstPort]; len(v) == 2 {
				a.TunPort = binary.BigEndian.Uint16(v)
			}
		}
	case "gact":
		if u32(8) == actShot {
			a = offload.TCAction{Kind: offload.TCActDrop}
		} else if g, ok := decodeGoto(u32(8)); ok {
			a = g
		}
	case "ct":
		a = decodeCT(attrs)
	case "police", "pedit", "csum":
		attrs[actParms] = parms // police's rate table, csum's tm: not PARMS for them
		if l3, ok := decodeL3Action(kind, attrs); ok {
			a = l3
		}
	}
	return a, cookie
}
