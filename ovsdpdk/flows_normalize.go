package ovsdpdk

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// OVS rewrites what it is given: `dl_type=0x0800,nw_proto=6` comes back as `tcp`,
// `nw_src=10.0.0.5/32` as `nw_src=10.0.0.5`, `vlan_vid=0x1064` as `dl_vlan=100`,
// `load:0x5->NXM_NX_REG6[]` as `set_field:0x5->reg6`, `strip_vlan` as `pop_vlan`. To
// compare a desired flow with an installed one, both go through NormalizeMatch and
// NormalizeActions, which map every spelling of the same match or action list to one
// canonical text (not OVS's: a form that is easy to compare, sorted, and that the
// functions map to itself). A spelling they do not know is kept as written, so the
// worst case of a gap is a needless modify or replace in the next bundle, never a wrong
// flow: see Flows.Sync.

// fieldKind says how a match field's value is read.
type fieldKind uint8

const (
	kindInt  fieldKind = iota + 1 // unsigned integer, optionally /mask
	kindIPv4                      // a.b.c.d[/len|/mask]
	kindIPv6                      // IPv6 address[/len|/mask]
	kindMAC                       // xx:xx:xx:xx:xx:xx[/mask]
	kindPort                      // an OpenFlow port number or a reserved port name
)

type fieldInfo struct {
	name string // canonical name
	kind fieldKind
	bits uint // integer width
}

// matchFields maps every accepted spelling of a match field to its canonical name and
// kind. Fields not listed are compared as written (lower-cased).
var matchFields = func() map[string]fieldInfo {
	m := map[string]fieldInfo{}
	add := func(canon string, kind fieldKind, bits uint, aliases ...string) {
		fi := fieldInfo{canon, kind, bits}
		m[canon] = fi
		for _, a := range aliases {
			m[a] = fi
		}
	}
	add("in_port", kindPort, 32, "in_port_oxm", "nxm_of_in_port", "oxm_of_in_port")
	add("dl_type", kindInt, 16, "eth_type", "nxm_of_eth_type", "oxm_of_eth_type")
	add("nw_proto", kindInt, 8, "ip_proto", "nxm_of_ip_proto", "oxm_of_ip_proto")
	add("tp_src", kindInt, 16, "tcp_src", "udp_src", "sctp_src", "nxm_of_tcp_src", "nxm_of_udp_src")
	add("tp_dst", kindInt, 16, "tcp_dst", "udp_dst", "sctp_dst", "nxm_of_tcp_dst", "nxm_of_udp_dst")
	add("icmp_type", kindInt, 8, "icmpv4_type", "icmpv6_type", "nxm_of_icmp_type")
	add("icmp_code", kindInt, 8, "icmpv4_code", "icmpv6_code", "nxm_of_icmp_code")
	add("arp_op", kindInt, 16, "nxm_of_arp_op")
	add("nw_tos", kindInt, 8)
	add("nw_ecn", kindInt, 2)
	add("nw_ttl", kindInt, 8)
	add("ip_dscp", kindInt, 6)
	add("metadata", kindInt, 64, "oxm_of_metadata")
	add("tun_id", kindInt, 64, "tunnel_id", "nxm_nx_tun_id")
	add("conj_id", kindInt, 32)
	add("ct_zone", kindInt, 16)
	add("ct_mark", kindInt, 32)
	add("pkt_mark", kindInt, 32)
	add("recirc_id", kindInt, 32)
	add("dp_hash", kindInt, 32)
	add("skb_priority", kindInt, 32)
	add("ipv6_label", kindInt, 20)
	add("mpls_label", kindInt, 20)
	add("mpls_tc", kindInt, 3)
	add("mpls_bos", kindInt, 1)
	add("ct_nw_proto", kindInt, 8)
	add("ct_tp_src", kindInt, 16)
	add("ct_tp_dst", kindInt, 16)
	add("tun_gbp_id", kindInt, 16)
	add("actset_output", kindPort, 32)
	for i := 0; i < 16; i++ {
		n := strconv.Itoa(i)
		add("reg"+n, kindInt, 32, "nxm_nx_reg"+n)
	}
	add("nw_src", kindIPv4, 32, "ip_src", "ipv4_src", "nxm_of_ip_src")
	add("nw_dst", kindIPv4, 32, "ip_dst", "ipv4_dst", "nxm_of_ip_dst")
	add("arp_spa", kindIPv4, 32, "nxm_of_arp_spa")
	add("arp_tpa", kindIPv4, 32, "nxm_of_arp_tpa")
	add("tun_src", kindIPv4, 32, "tun_ipv4_src")
	add("tun_dst", kindIPv4, 32, "tun_ipv4_dst")
	add("ct_nw_src", kindIPv4, 32)
	add("ct_nw_dst", kindIPv4, 32)
	add("ipv6_src", kindIPv6, 128, "nxm_nx_ipv6_src")
	add("ipv6_dst", kindIPv6, 128, "nxm_nx_ipv6_dst")
	add("nd_target", kindIPv6, 128, "nxm_nx_nd_target")
	add("tun_ipv6_src", kindIPv6, 128)
	add("tun_ipv6_dst", kindIPv6, 128)
	add("ct_ipv6_src", kindIPv6, 128)
	add("ct_ipv6_dst", kindIPv6, 128)
	add("dl_src", kindMAC, 48, "eth_src", "nxm_of_eth_src")
	add("dl_dst", kindMAC, 48, "eth_dst", "nxm_of_eth_dst")
	add("arp_sha", kindMAC, 48, "nxm_nx_arp_sha")
	add("arp_tha", kindMAC, 48, "nxm_nx_arp_tha")
	add("nd_sll", kindMAC, 48, "nxm_nx_nd_sll")
	add("nd_tll", kindMAC, 48, "nxm_nx_nd_tll")
	return m
}()

// protoShorthands are the protocol words OVS prints instead of dl_type and nw_proto.
var protoShorthands = map[string][2]int{
	"ip": {0x0800, -1}, "ipv4": {0x0800, -1}, "ipv6": {0x86dd, -1},
	"icmp": {0x0800, 1}, "icmp6": {0x86dd, 58},
	"tcp": {0x0800, 6}, "tcp6": {0x86dd, 6}, "udp": {0x0800, 17}, "udp6": {0x86dd, 17},
	"sctp": {0x0800, 132}, "sctp6": {0x86dd, 132},
	"arp": {0x0806, -1}, "rarp": {0x8035, -1}, "mpls": {0x8847, -1}, "mplsm": {0x8848, -1},
}

// reservedPorts are OpenFlow's reserved port names with their OpenFlow 1.0 numbers, as
// OVS prints them.
var reservedPorts = map[string]uint64{"in_port": 0xfff8, "table": 0xfff9, "normal": 0xfffa,
	"flood": 0xfffb, "all": 0xfffc, "controller": 0xfffd, "local": 0xfffe, "none": 0xffff, "any": 0xffff}

// ctStateFlags are conntrack state flags in OVS's bit order.
var ctStateFlags = []string{"new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat"}

// NormalizeMatch returns the canonical text of a match in ovs-ofctl syntax (without
// priority): field aliases resolved, protocol shorthands expanded, numbers, addresses
// and masks in one form, wildcards dropped, VLAN fields merged into vlan_tci, ct_state
// flags ordered, fields sorted.
func NormalizeMatch(m string) string {
	if m == "" {
		return ""
	}
	var out []string
	var vlanVal, vlanMask uint64
	for _, tok := range splitTop(m) {
		tok = strings.Trim(tok, asciiSpace)
		if tok == "" {
			continue
		}
		name, val, hasVal := strings.Cut(tok, "=")
		name = strings.ToLower(strings.Trim(name, asciiSpace))
		val = strings.Trim(val, asciiSpace)
		if !hasVal {
			if p, ok := protoShorthands[name]; ok {
				out = append(out, "dl_type="+hex(uint64(p[0])))
				if p[1] >= 0 {
					out = append(out, "nw_proto="+hex(uint64(p[1])))
				}
				continue
			}
			out = append(out, name)
			continue
		}
		switch name {
		case "dl_vlan":
			v, ok := parseUint(val)
			if ok && v == 0xffff { // OpenFlow 1.0's "no VLAN"
				vlanMask |= 0x1fff
				continue
			}
			if !ok || v > 0xfff {
				break
			}
			vlanVal |= 0x1000 | v
			vlanMask |= 0x1fff
			continue
		case "dl_vlan_pcp":
			v, ok := parseUint(val)
			if !ok || v > 7 {
				break
			}
			vlanVal |= 0x1000 | v<<13
			vlanMask |= 0xf000
			continue
		case "vlan_vid", "oxm_of_vlan_vid":
			v, mk, ok := parseMasked(val, 0x1fff)
			if !ok || v > 0x1fff || mk > 0x1fff {
				break
			}
			vlanVal |= v & mk
			vlanMask |= mk
			continue
		case "vlan_tci", "nxm_of_vlan_tci":
			v, mk, ok := parseMasked(val, 0xffff)
			if !ok || v > 0xffff || mk > 0xffff {
				break
			}
			vlanVal |= v & mk
			vlanMask |= mk
			continue
		case "ct_state":
			if s, ok := canonCtState(val); ok {
				if s != "" {
					out = append(out, "ct_state="+s)
				}
				continue
			}
		}
		fi, known := matchFields[name]
		if !known {
			out = append(out, name+"="+strings.ToLower(val))
			continue
		}
		if cv, ok := canonValue(fi, val); ok {
			if cv != "" {
				out = append(out, fi.name+"="+cv)
			}
			continue
		}
		out = append(out, fi.name+"="+strings.ToLower(val))
	}
	if vlanMask != 0 {
		// Without a VLAN header the PCP bits mean nothing: OVS stores "no VLAN" as
		// vlan_tci=0/0x1fff whatever PCP mask it was given.
		if vlanMask&0x1000 != 0 && vlanVal&0x1000 == 0 && vlanMask&0x1fff == 0x1fff {
			vlanVal, vlanMask = 0, 0x1fff
		}
		out = append(out, "vlan_tci="+hex(vlanVal&vlanMask)+"/"+hex(vlanMask))
	}
	slices.Sort(out)
	out = slices.Compact(out)
	return strings.Join(out, ",")
}

// canonValue returns a field value in canonical form ("" for a full wildcard), or false
// when the value does not parse (it is then compared as written).
func canonValue(fi fieldInfo, val string) (string, bool) {
	switch fi.kind {
	case kindPort:
		if v, ok := reservedPorts[strings.ToLower(val)]; ok {
			return hex(v), true
		}
		v, ok := parseUint(val)
		if !ok {
			return "", false
		}
		return hex(v), true
	case kindInt:
		full := uint64(1)<<fi.bits - 1
		if fi.bits == 64 {
			full = ^uint64(0)
		}
		v, mk, ok := parseMasked(val, full)
		if !ok || v&^full != 0 || mk&^full != 0 {
			return "", false
		}
		return maskedText(v, mk, full), true
	case kindIPv4, kindIPv6:
		return canonIP(val, fi.kind == kindIPv4)
	case kindMAC:
		return canonMAC(val)
	}
	return "", false
}

func maskedText(v, mk, full uint64) string {
	switch mk {
	case 0:
		return ""
	case full:
		return hex(v)
	}
	return hex(v&mk) + "/" + hex(mk)
}

func hex(v uint64) string { return "0x" + strconv.FormatUint(v, 16) }

// parseUint reads a decimal or 0x-prefixed hexadecimal number.
func parseUint(s string) (uint64, bool) {
	var v uint64
	var err error
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		v, err = strconv.ParseUint(h, 16, 64)
	} else {
		v, err = strconv.ParseUint(s, 10, 64)
	}
	return v, err == nil
}

// parseMasked reads value[/mask]; the mask defaults to full.
func parseMasked(s string, full uint64) (uint64, uint64, bool) {
	vs, ms, masked := strings.Cut(s, "/")
	v, ok := parseUint(vs)
	if !ok {
		return 0, 0, false
	}
	if !masked {
		return v, full, true
	}
	mk, ok := parseUint(ms)
	return v, mk, ok
}

// canonIP reads addr[/prefix-length|/mask-address] and prints the masked address, with
// "/len" for a CIDR mask, "/mask" otherwise, nothing for a host mask, "" for /0.
func canonIP(s string, v4 bool) (string, bool) {
	as, ms, masked := strings.Cut(s, "/")
	a, err := netip.ParseAddr(as)
	if err != nil || a.Is4() != v4 || a.Zone() != "" {
		return "", false
	}
	if a.Is4In6() && !v4 {
		return "", false
	}
	bits := a.BitLen()
	ab := a.AsSlice()
	mask := make([]byte, len(ab))
	switch {
	case !masked:
		for i := range mask {
			mask[i] = 0xff
		}
	default:
		if n, err := strconv.Atoi(ms); err == nil {
			if n < 0 || n > bits {
				return "", false
			}
			for i := 0; i < n; i++ {
				mask[i/8] |= 0x80 >> (i % 8)
			}
		} else {
			m, err := netip.ParseAddr(ms)
			if err != nil || m.BitLen() != bits || m.Zone() != "" {
				return "", false
			}
			copy(mask, m.AsSlice())
		}
	}
	for i := range ab {
		ab[i] &= mask[i]
	}
	addr, _ := netip.AddrFromSlice(ab)
	ones, cidr := maskOnes(mask)
	switch {
	case ones == 0 && cidr:
		return "", true
	case ones == bits && cidr:
		return addr.String(), true
	case cidr:
		return addr.String() + "/" + strconv.Itoa(ones), true
	}
	m, _ := netip.AddrFromSlice(mask)
	return addr.String() + "/" + m.String(), true
}

// maskOnes counts a mask's one bits and reports whether they are contiguous from the top.
func maskOnes(mask []byte) (int, bool) {
	ones, seenZero, cidr := 0, false, true
	for _, b := range mask {
		for i := 7; i >= 0; i-- {
			if b&(1<<i) != 0 {
				ones++
				if seenZero {
					cidr = false
				}
			} else {
				seenZero = true
			}
		}
	}
	return ones, cidr
}

// canonMAC reads mac[/mask] and prints lower-case, masked, without a full mask.
func canonMAC(s string) (string, bool) {
	vs, ms, masked := strings.Cut(s, "/")
	v, ok := parseMAC(vs)
	if !ok {
		return "", false
	}
	mk := uint64(0xffffffffffff)
	if masked {
		if mk, ok = parseMAC(ms); !ok {
			return "", false
		}
	}
	switch mk {
	case 0:
		return "", true
	case 0xffffffffffff:
		return macText(v), true
	}
	return macText(v&mk) + "/" + macText(mk), true
}

func parseMAC(s string) (uint64, bool) {
	if len(s) != 17 {
		return 0, false
	}
	var v uint64
	for i := 0; i < 6; i++ {
		if i > 0 && s[3*i-1] != ':' {
			return 0, false
		}
		b, err := strconv.ParseUint(s[3*i:3*i+2], 16, 8)
		if err != nil {
			return 0, false
		}
		v = v<<8 | b
	}
	return v, true
}

func macText(v uint64) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 17)
	for i := 5; i >= 0; i-- {
		x := byte(v)
		v >>= 8
		b[3*i] = digits[x>>4]
		b[3*i+1] = digits[x&0xf]
		if i > 0 {
			b[3*i-1] = ':'
		}
	}
	return string(b)
}

// canonCtState reads ct_state as +flag-flag... or value/mask and prints +/- flags in bit
// order ("" when nothing is matched).
func canonCtState(s string) (string, bool) {
	var on, mask uint64
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		for s != "" {
			sign := s[0]
			if sign != '+' && sign != '-' {
				return "", false
			}
			s = s[1:]
			end := strings.IndexAny(s, "+-")
			if end < 0 {
				end = len(s)
			}
			i := slices.Index(ctStateFlags, strings.ToLower(s[:end]))
			if i < 0 {
				return "", false
			}
			bit := uint64(1) << i
			if mask&bit != 0 && (on&bit != 0) != (sign == '+') {
				return "", false // +x-x: OVS refuses it
			}
			mask |= bit
			if sign == '+' {
				on |= bit
			}
			s = s[end:]
		}
	} else {
		v, mk, ok := parseMasked(s, 0xff)
		if !ok || v > 0xff || mk > 0xff {
			return "", false
		}
		on, mask = v&mk, mk
	}
	var b strings.Builder
	for i, f := range ctStateFlags {
		bit := uint64(1) << i
		if mask&bit == 0 {
			continue
		}
		if on&bit != 0 {
			b.WriteByte('+')
		} else {
			b.WriteByte('-')
		}
		b.WriteString(f)
	}
	return b.String(), true
}

// splitTop splits s at commas outside parentheses and brackets.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(', '[':
			depth++
		case ')', ']':
			if depth > 0 {
				depth--
			}
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// loadFields maps the NXM/OXM names of `load:` destinations to set_field names and kinds.
var loadFields = map[string]fieldInfo{
	"oxm_of_metadata": {"metadata", kindInt, 64},
	"nxm_nx_tun_id":   {"tun_id", kindInt, 64},
	"nxm_of_eth_src":  {"eth_src", kindMAC, 48},
	"nxm_of_eth_dst":  {"eth_dst", kindMAC, 48},
	"nxm_of_arp_op":   {"arp_op", kindInt, 16},
	"nxm_nx_arp_sha":  {"arp_sha", kindMAC, 48},
	"nxm_nx_arp_tha":  {"arp_tha", kindMAC, 48},
	"nxm_of_arp_spa":  {"arp_spa", kindIPv4, 32},
	"nxm_of_arp_tpa":  {"arp_tpa", kindIPv4, 32},
	"nxm_of_ip_src":   {"ip_src", kindIPv4, 32},
	"nxm_of_ip_dst":   {"ip_dst", kindIPv4, 32},
	"nxm_nx_ct_mark":  {"ct_mark", kindInt, 32},
	"nxm_nx_pkt_mark": {"pkt_mark", kindInt, 32},
}

// setFieldNames maps set_field destination aliases to one name.
var setFieldNames = map[string]string{"dl_src": "eth_src", "dl_dst": "eth_dst", "tunnel_id": "tun_id",
	"nw_src": "ip_src", "nw_dst": "ip_dst", "tcp_src": "tp_src", "tcp_dst": "tp_dst",
	"udp_src": "tp_src", "udp_dst": "tp_dst"}

// setFieldKinds are the set_field destinations whose values NormalizeActions reads.
var setFieldKinds = func() map[string]fieldInfo {
	m := map[string]fieldInfo{
		"vlan_vid": {"vlan_vid", kindInt, 13}, "tun_id": {"tun_id", kindInt, 64},
		"metadata": {"metadata", kindInt, 64}, "eth_src": {"eth_src", kindMAC, 48},
		"eth_dst": {"eth_dst", kindMAC, 48}, "arp_op": {"arp_op", kindInt, 16},
		"arp_sha": {"arp_sha", kindMAC, 48}, "arp_tha": {"arp_tha", kindMAC, 48},
		"arp_spa": {"arp_spa", kindIPv4, 32}, "arp_tpa": {"arp_tpa", kindIPv4, 32},
		"ip_src": {"ip_src", kindIPv4, 32}, "ip_dst": {"ip_dst", kindIPv4, 32},
		"tun_dst": {"tun_dst", kindIPv4, 32}, "tun_src": {"tun_src", kindIPv4, 32},
		"ct_mark": {"ct_mark", kindInt, 32}, "pkt_mark": {"pkt_mark", kindInt, 32},
		"tp_src": {"tp_src", kindInt, 16}, "tp_dst": {"tp_dst", kindInt, 16},
	}
	for i := 0; i < 16; i++ {
		n := "reg" + strconv.Itoa(i)
		m[n] = fieldInfo{n, kindInt, 32}
	}
	return m
}()

// NormalizeActions returns the canonical text of an action list. match is the flow's
// match: OVS turns mod_vlan_vid into set_field on a tagged packet but into push_vlan plus
// set_field on an untagged one, and only the match says which.
func NormalizeActions(actions, match string) string {
	var out []string
	for _, a := range splitTop(actions) {
		a = dropASCIISpace(a)
		if a == "" {
			continue
		}
		out = append(out, canonAction(a, match)...)
	}
	if len(out) == 0 {
		return "drop"
	}
	return strings.Join(out, ",")
}

// asciiSpace is the white space ovs-ofctl's flow syntax knows. Unicode spacing (NEL,
// NBSP) is not white space there, and treating it as such made normalising
// non-idempotent: dropping the space in "\xc2 \x85" forms U+0085 (found by
// FuzzNormalizeMatch).
const asciiSpace = " \t\r\n\v\f"

// dropASCIISpace removes every ASCII white space byte from s, leaving other bytes (valid
// UTF-8 or not) as they are.
func dropASCIISpace(s string) string {
	if !strings.ContainsAny(s, asciiSpace) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(asciiSpace, s[i]) < 0 {
			b = append(b, s[i])
		}
	}
	return string(b)
}

func canonAction(a, match string) []string {
	lower := strings.ToLower(a)
	if _, err := strconv.ParseUint(a, 10, 32); err == nil {
		return []string{"output:" + a}
	}
	switch lower {
	case "drop":
		return nil
	case "strip_vlan":
		return []string{"pop_vlan"}
	case "normal", "flood", "all", "local", "in_port":
		return []string{strings.ToUpper(lower)}
	case "controller":
		return []string{"CONTROLLER:65535"}
	}
	name, arg, _ := strings.Cut(a, ":")
	switch strings.ToLower(name) {
	case "output":
		if v, ok := reservedPorts[strings.ToLower(arg)]; ok && v != 0xffff {
			return []string{strings.ToUpper(arg)}
		}
		return []string{"output:" + arg}
	case "mod_dl_src":
		return []string{canonSetField(arg, "eth_src")}
	case "mod_dl_dst":
		return []string{canonSetField(arg, "eth_dst")}
	case "mod_vlan_vid":
		v, ok := parseUint(arg)
		if !ok || v > 0xfff {
			return []string{a}
		}
		set := canonSetField(strconv.FormatUint(v|0x1000, 10), "vlan_vid")
		if matchTagged(match) {
			return []string{set}
		}
		return []string{"push_vlan:0x8100", set}
	case "set_field":
		val, dst, ok := strings.Cut(arg, "->")
		if !ok {
			return []string{a}
		}
		return []string{canonSetField(val, dst)}
	case "load":
		return []string{canonLoad(arg, a)}
	}
	return []string{a}
}

// canonSetField prints set_field:value[/mask]->field with the field's one name and, for
// the fields it knows, the value in canonical form.
func canonSetField(val, dst string) string {
	dst = strings.ToLower(dst)
	if n, ok := setFieldNames[dst]; ok {
		dst = n
	}
	if fi, ok := setFieldKinds[dst]; ok {
		if fi.kind == kindInt {
			full := uint64(1)<<fi.bits - 1
			if fi.bits == 64 {
				full = ^uint64(0)
			}
			if v, mk, ok := parseMasked(val, full); ok {
				if mk == full || mk == 0 {
					return "set_field:" + hex(v) + "->" + dst
				}
				return "set_field:" + hex(v&mk) + "/" + hex(mk) + "->" + dst
			}
		} else if cv, ok := canonValue(fi, val); ok && cv != "" {
			return "set_field:" + cv + "->" + dst
		}
	}
	return "set_field:" + strings.ToLower(val) + "->" + dst
}

// canonLoad turns load:value->FIELD[] or load:value->FIELD[a..b] into set_field, as OVS
// prints it for OpenFlow 1.5.
func canonLoad(arg, orig string) string {
	val, dst, ok := strings.Cut(arg, "->")
	if !ok {
		return orig
	}
	open := strings.IndexByte(dst, '[')
	if open < 0 || !strings.HasSuffix(dst, "]") {
		return orig
	}
	name := strings.ToLower(dst[:open])
	rng := dst[open+1 : len(dst)-1]
	var fi fieldInfo
	if strings.HasPrefix(name, "nxm_nx_reg") {
		n, err := strconv.Atoi(name[len("nxm_nx_reg"):])
		if err != nil || n < 0 || n > 15 {
			return orig
		}
		fi = fieldInfo{"reg" + strconv.Itoa(n), kindInt, 32}
	} else if fi, ok = loadFields[name]; !ok {
		return orig
	}
	v, ok := parseUint(val)
	if !ok {
		return orig
	}
	if rng == "" {
		switch fi.kind {
		case kindMAC:
			if v > 0xffffffffffff {
				return orig
			}
			return "set_field:" + macText(v) + "->" + fi.name
		case kindIPv4:
			if v > 0xffffffff {
				return orig
			}
			return "set_field:" + netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String() + "->" + fi.name
		}
		return canonSetField(hex(v), fi.name)
	}
	if fi.kind != kindInt {
		return orig
	}
	lo, hi, ok := parseRange(rng)
	if !ok || hi >= fi.bits || lo > hi {
		return orig
	}
	width := hi - lo + 1
	if width < 64 && v >= 1<<width {
		return orig
	}
	mask := (uint64(1)<<width - 1) << lo
	if width == 64 {
		mask = ^uint64(0)
	}
	return canonSetField(hex(v<<lo)+"/"+hex(mask), fi.name)
}

// parseRange reads "a..b" or "a" (one bit).
func parseRange(s string) (uint, uint, bool) {
	a, b, two := strings.Cut(s, "..")
	lo, err := strconv.ParseUint(a, 10, 8)
	if err != nil {
		return 0, 0, false
	}
	if !two {
		return uint(lo), uint(lo), true
	}
	hi, err := strconv.ParseUint(b, 10, 8)
	if err != nil {
		return 0, 0, false
	}
	return uint(lo), uint(hi), true
}

// matchTagged reports whether a match requires a VLAN header.
func matchTagged(match string) bool {
	for _, f := range strings.Split(NormalizeMatch(match), ",") {
		if v, ok := strings.CutPrefix(f, "vlan_tci="); ok {
			val, mk, _ := parseMasked(v, 0xffff)
			return mk&0x1000 != 0 && val&0x1000 != 0
		}
	}
	return false
}
