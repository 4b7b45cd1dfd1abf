package ovsdpdk

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/offlane/offlane/offload"
)

// ConntrackEntry is one line of `ovs-appctl dpctl/dump-conntrack`: its zone and its
// original-direction tuple (pre-NAT: what a flush must name).
type ConntrackEntry struct {
	Zone  uint16
	Tuple offload.CTTuple
}

// ConntrackFlushResult is what FlushConntrack did.
type ConntrackFlushResult struct {
	// Done counts the flushes fully applied (every call they needed succeeded).
	Done int
	// Calls counts the dpctl/flush-conntrack calls made (partial tuples and exact
	// entries).
	Calls int
	// Entries counts the entries flushed one by one after a dump (flushes a partial
	// tuple cannot express exactly: ICMP, CIDRs, port ranges).
	Entries int
	// Failed are the flushes a call into ovs-vswitchd failed for (worth a retry); not
	// the ones refused by validation or that left entries OVS cannot flush.
	Failed []offload.CTFlush
}

// maxExactFlushes: a flush matching more dumped entries than this is sent as its
// partial tuple instead when that tuple is usable (one call, wider than the flush),
// as every exact flush is one ovs-appctl process.
const maxExactFlushes = 64

// FlushConntrack deletes the conntrack entries the flushes select, in ovs-vswitchd's
// datapath (the userspace tracker for netdev, the kernel's through the system
// datapath). A flush whose partial tuple is exact (offload.CTFlush.Exact) is one
// `dpctl/flush-conntrack zone=N <tuple>`; the others (ICMP, which OVS 3.1 cannot match
// by a partial tuple; CIDRs and port ranges, which a tuple cannot express) dump their
// zone once and flush each matching entry by its full original tuple. Idempotent: an
// entry already gone is not an error. Every flush is tried; the error joins the failures,
// each naming its flush. A flush that does not validate (a zone of 0, a tuple without an
// address, which would empty the whole zone) is refused without any call.
//
// ICMPv6 entries are left in place, with an error saying so, when the userspace
// datapath's conntrack would abort ovs-vswitchd on flushing them (see
// icmpv6FlushAborts); the rest of such a flush is applied entry by entry.
func (u *Unixctl) FlushConntrack(ctx context.Context, flushes []offload.CTFlush) (ConntrackFlushResult, error) {
	var res ConntrackFlushResult
	var errs []error
	dumps := map[uint16][]ConntrackEntry{}
	flushed := map[uint16]map[offload.CTTuple]bool{}
	var icmpv6Unsafe *bool
	for _, f := range flushes {
		if err := validateFlush(f); err != nil {
			errs = append(errs, err)
			continue
		}
		spareICMPv6 := false
		if mayMatchICMPv6(f) {
			if icmpv6Unsafe == nil {
				unsafe, err := u.icmpv6FlushAborts(ctx)
				if err != nil {
					errs = append(errs, fmt.Errorf("conntrack flush %s: %w", f, err))
					res.Failed = append(res.Failed, f)
					continue
				}
				icmpv6Unsafe = &unsafe
			}
			spareICMPv6 = *icmpv6Unsafe
		}
		if f.Exact() && !spareICMPv6 {
			res.Calls++
			if err := u.flushTuple(ctx, f.Zone, f.Tuple()); err != nil {
				errs = append(errs, fmt.Errorf("conntrack flush %s: %w", f, err))
				res.Failed = append(res.Failed, f)
				continue
			}
			res.Done++
			continue
		}
		entries, ok := dumps[f.Zone]
		if !ok {
			var err error
			if entries, err = u.DumpConntrack(ctx, f.Zone); err != nil {
				errs = append(errs, fmt.Errorf("conntrack flush %s: %w", f, err))
				res.Failed = append(res.Failed, f)
				continue
			}
			dumps[f.Zone] = entries
			flushed[f.Zone] = map[offload.CTTuple]bool{}
		}
		var match []offload.CTTuple
		spared, odd := 0, 0
		for _, e := range entries {
			if e.Zone != f.Zone || !f.Matches(e.Tuple) || flushed[f.Zone][e.Tuple] {
				continue
			}
			if spareICMPv6 && e.Tuple.Proto == offload.ProtoICMPv6 {
				spared++
				continue
			}
			if e.Tuple.Proto == offload.ProtoICMP && !icmpEcholike(e.Tuple.ICMPType) {
				// OVS's userspace conntrack aborts on reversing other types; it makes
				// entries only for these (requests), so none should be here
				odd++
				continue
			}
			match = append(match, e.Tuple)
		}
		if len(match) > maxExactFlushes && partialUsable(f) && !spareICMPv6 {
			res.Calls++
			if err := u.flushTuple(ctx, f.Zone, f.Tuple()); err != nil {
				errs = append(errs, fmt.Errorf("conntrack flush %s: %w", f, err))
				res.Failed = append(res.Failed, f)
				continue
			}
			for _, t := range match {
				flushed[f.Zone][t] = true
			}
			res.Done++
			continue
		}
		var ferrs []error
		callFailed := false
		for _, t := range match {
			res.Calls++
			err := u.flushTuple(ctx, f.Zone, t.String())
			if err != nil && !isNoEntry(err) {
				ferrs = append(ferrs, err)
				callFailed = true
				continue
			}
			flushed[f.Zone][t] = true
			res.Entries++
		}
		if spared > 0 {
			ferrs = append(ferrs, fmt.Errorf("%d ICMPv6 entries left in place: %w", spared, ErrICMPv6FlushAborts))
		}
		if odd > 0 {
			ferrs = append(ferrs, fmt.Errorf("%d ICMP entries of types other than echo, timestamp and information left in place (flushing them would abort ovs-vswitchd's userspace conntrack)", odd))
		}
		if callFailed {
			res.Failed = append(res.Failed, f)
		}
		if len(ferrs) > 0 {
			errs = append(errs, fmt.Errorf("conntrack flush %s: %w", f, errors.Join(ferrs...)))
			continue
		}
		res.Done++
	}
	return res, errors.Join(errs...)
}

// ErrICMPv6FlushAborts says why ICMPv6 conntrack entries were not flushed.
var ErrICMPv6FlushAborts = errors.New("this ovs-vswitchd's userspace conntrack aborts on flushing ICMPv6 entries " +
	"(upstream fix \"conntrack: Do not use icmp reverse helper for icmpv6\", in OVS 2.17.10, 3.0.7, 3.1.5, 3.2.3, 3.3.1, 3.4.0): " +
	"they expire 30 s after their last packet")

// icmpEcholike: the ICMP types OVS's conntrack can reverse (requests and replies of
// echo, timestamp and information).
func icmpEcholike(t int) bool {
	switch t {
	case 0, 8, 13, 14, 15, 16:
		return true
	}
	return false
}

// mayMatchICMPv6: the flush selects ICMPv6 entries, or its partial tuple would.
func mayMatchICMPv6(f offload.CTFlush) bool {
	return f.EtherType == offload.IPv6 && (f.Proto == offload.ProtoAny || f.Proto == offload.ProtoICMPv6)
}

// icmpv6FlushAborts reports whether flushing an ICMPv6 entry would abort ovs-vswitchd:
// a netdev (userspace) datapath in an OVS without the fix (its conntrack reverses an
// ICMPv6 type with the ICMPv4 helper, which aborts on type 128: OVS_NOT_REACHED).
// Debian 12's 3.1.0-2+deb12u1 has the bug (seen in the lab: SIGABRT on
// `dpctl/flush-conntrack zone=N ct_ipv6_dst=...` with an echo in the zone).
func (u *Unixctl) icmpv6FlushAborts(ctx context.Context) (bool, error) {
	dps, err := u.Run(ctx, "dpctl/dump-dps")
	if err != nil {
		return false, err
	}
	if !strings.Contains(dps, "netdev@") {
		return false, nil // the kernel's conntrack, through netlink
	}
	v, err := u.Run(ctx, "version")
	if err != nil {
		return false, err
	}
	return !ovsHasICMPv6FlushFix(v), nil
}

// ovsHasICMPv6FlushFix reads `ovs-appctl version` ("ovs-vswitchd (Open vSwitch) 3.1.0")
// and reports whether that release has the ICMPv6 flush fix; unreadable: no.
func ovsHasICMPv6FlushFix(version string) bool {
	line, _, _ := strings.Cut(strings.TrimSpace(version), "\n")
	f := strings.Fields(line)
	if len(f) == 0 {
		return false
	}
	var major, minor, patch int
	if _, err := fmt.Sscanf(f[len(f)-1], "%d.%d.%d", &major, &minor, &patch); err != nil {
		return false
	}
	fixed := map[[2]int]int{{2, 17}: 10, {3, 0}: 7, {3, 1}: 5, {3, 2}: 3, {3, 3}: 1}
	if p, ok := fixed[[2]int{major, minor}]; ok {
		return patch >= p
	}
	return major > 3 || major == 3 && minor >= 4
}

// partialUsable: the flush's partial tuple selects a superset of its entries (not ICMP,
// whose partial tuples OVS 3.1 matches against nothing) and names an address.
func partialUsable(f offload.CTFlush) bool {
	return f.Proto != offload.ProtoICMP && f.Proto != offload.ProtoICMPv6 &&
		(f.Src.IsValid() && f.Src.IsSingleIP() || f.Dst.IsValid() && f.Dst.IsSingleIP())
}

// isNoEntry: OVS's answer to an exact flush of an entry that no longer exists
// (expired, or flushed by an earlier call).
func isNoEntry(err error) bool {
	return strings.Contains(err.Error(), "No such file or directory")
}

func validateFlush(f offload.CTFlush) error {
	if f.Zone == 0 {
		return fmt.Errorf("conntrack flush %s: zone 0: offlane's zones are the networks' local VLANs (1..4094)", f)
	}
	if f.EtherType != offload.IPv4 && f.EtherType != offload.IPv6 {
		return fmt.Errorf("conntrack flush %s: ethertype %q: want IPv4 or IPv6", f, f.EtherType)
	}
	return nil
}

// flushTuple runs `dpctl/flush-conntrack zone=N tuple` after checking the tuple.
func (u *Unixctl) flushTuple(ctx context.Context, zone uint16, tuple string) error {
	if err := ValidateConntrackTuple(tuple); err != nil {
		return err
	}
	_, err := u.Run(ctx, "dpctl/flush-conntrack", "zone="+strconv.Itoa(int(zone)), tuple)
	return err
}

// conntrackTupleKeys are the fields of a dpctl/flush-conntrack tuple offlane sends, and
// whether the value is an address (else a number up to the given maximum).
var conntrackTupleKeys = map[string]int{
	"ct_nw_src": -4, "ct_nw_dst": -4, "ct_ipv6_src": -6, "ct_ipv6_dst": -6,
	"ct_nw_proto": 255, "ct_tp_src": 65535, "ct_tp_dst": 65535,
	"icmp_type": 255, "icmp_code": 255, "icmp_id": 65535,
}

// ValidateConntrackTuple checks a dpctl/flush-conntrack tuple before it is sent:
// comma-separated key=value fields OVS knows, each once, addresses of one family, and
// at least one address (a tuple without one would flush far more than a security group
// change warrants; an empty one, the whole zone).
func ValidateConntrackTuple(tuple string) error {
	if tuple == "" {
		return errors.New("conntrack tuple is empty (it would flush the whole zone)")
	}
	seen := map[string]bool{}
	family := 0
	for _, field := range strings.Split(tuple, ",") {
		k, v, ok := strings.Cut(field, "=")
		kind, known := conntrackTupleKeys[k]
		switch {
		case !ok || v == "":
			return fmt.Errorf("conntrack tuple %q: field %q: want key=value", tuple, field)
		case !known:
			return fmt.Errorf("conntrack tuple %q: unknown field %q (want ct_nw_src, ct_nw_dst, ct_ipv6_src, ct_ipv6_dst, ct_nw_proto, ct_tp_src, ct_tp_dst, icmp_type, icmp_code or icmp_id)", tuple, k)
		case seen[k]:
			return fmt.Errorf("conntrack tuple %q: field %s given twice", tuple, k)
		}
		seen[k] = true
		if kind < 0 {
			a, err := netip.ParseAddr(v)
			if err != nil || a.Zone() != "" || a.Is4() != (kind == -4) || a.Is4In6() {
				return fmt.Errorf("conntrack tuple %q: %s=%s: want an IPv%d address", tuple, k, v, -kind)
			}
			if family != 0 && family != kind {
				return fmt.Errorf("conntrack tuple %q: mixes IPv4 and IPv6 addresses", tuple)
			}
			family = kind
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > kind {
			return fmt.Errorf("conntrack tuple %q: %s=%s: want a number 0..%d", tuple, k, v, kind)
		}
	}
	if family == 0 {
		return fmt.Errorf("conntrack tuple %q names no address (ct_nw_src/ct_nw_dst or ct_ipv6_src/ct_ipv6_dst)", tuple)
	}
	return nil
}

// DumpConntrack reads and parses `dpctl/dump-conntrack zone=N` (zone 0: every zone).
func (u *Unixctl) DumpConntrack(ctx context.Context, zone uint16) ([]ConntrackEntry, error) {
	args := []string{"dpctl/dump-conntrack"}
	if zone != 0 {
		args = append(args, "zone="+strconv.Itoa(int(zone)))
	}
	out, err := u.Run(ctx, args...)
	if err != nil {
		return nil, err
	}
	return ParseConntrack(strings.NewReader(out))
}

// conntrackProtos are the protocol names OVS prints (ct_dpif_format_ipproto); others
// are printed as numbers.
var conntrackProtos = map[string]int{
	"icmp": offload.ProtoICMP, "icmpv6": offload.ProtoICMPv6, "tcp": offload.ProtoTCP, "udp": offload.ProtoUDP,
	"sctp": offload.ProtoSCTP, "udplite": 136, "dccp": 33, "igmp": 2,
}

// ParseConntrack parses `ovs-appctl dpctl/dump-conntrack` output (OVS 3.1), e.g.
//
//	icmp,orig=(src=10.0.0.1,dst=10.0.0.2,id=4110,type=8,code=0),reply=(...),zone=5
//	tcp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=51028,dport=5201),reply=(...),zone=5,protoinfo=(state=ESTABLISHED)
//
// into entries in output order (an entry without zone= is in zone 0). Empty lines are
// skipped; a line it cannot read is an error naming it.
func ParseConntrack(r io.Reader) ([]ConntrackEntry, error) {
	var out []ConntrackEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		e, err := parseConntrackLine(line)
		if err != nil {
			return nil, fmt.Errorf("dump-conntrack line %d %q: %w", n, line, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

func parseConntrackLine(line string) (ConntrackEntry, error) {
	var e ConntrackEntry
	fields, err := ctSplitTop(line)
	if err != nil {
		return e, err
	}
	if len(fields) < 2 {
		return e, errors.New("want proto,orig=(...)")
	}
	if p, ok := conntrackProtos[fields[0]]; ok {
		e.Tuple.Proto = p
	} else if p, err := strconv.Atoi(fields[0]); err == nil && p >= 0 && p <= 255 {
		e.Tuple.Proto = p
	} else {
		return e, fmt.Errorf("protocol %q", fields[0])
	}
	origSeen := false
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "orig":
			if err := parseOrig(v, &e.Tuple); err != nil {
				return e, fmt.Errorf("orig: %w", err)
			}
			origSeen = true
		case "zone":
			z, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return e, fmt.Errorf("zone %q", v)
			}
			e.Zone = uint16(z)
		}
	}
	if !origSeen {
		return e, errors.New("no orig=(...)")
	}
	return e, nil
}

// parseOrig reads "(src=...,dst=...,sport=...,dport=...)" or the ICMP form with id,
// type and code.
func parseOrig(v string, t *offload.CTTuple) error {
	if len(v) < 2 || v[0] != '(' || v[len(v)-1] != ')' {
		return fmt.Errorf("%q: want (...)", v)
	}
	for _, kv := range strings.Split(v[1:len(v)-1], ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("field %q", kv)
		}
		var err error
		switch k {
		case "src":
			t.Src, err = ctAddr(val)
		case "dst":
			t.Dst, err = ctAddr(val)
		case "sport":
			t.SrcPort, err = ctUint(val, 65535)
		case "dport":
			t.DstPort, err = ctUint(val, 65535)
		case "id":
			t.ICMPID, err = ctUint(val, 65535)
		case "type":
			t.ICMPType, err = ctUint(val, 255)
		case "code":
			t.ICMPCode, err = ctUint(val, 255)
		}
		if err != nil {
			return fmt.Errorf("%s=%s: %w", k, val, err)
		}
	}
	if !t.Src.IsValid() || !t.Dst.IsValid() || t.Src.Is4() != t.Dst.Is4() {
		return fmt.Errorf("%q: want src and dst of one family", v)
	}
	return nil
}

func ctUint(s string, limit int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > limit {
		return 0, fmt.Errorf("want 0..%d", limit)
	}
	return n, nil
}

// ctSplitTop splits at the commas outside parentheses.
func ctSplitTop(s string) ([]string, error) {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return nil, errors.New("unbalanced parentheses")
			}
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, errors.New("unbalanced parentheses")
	}
	return append(out, s[start:]), nil
}

// ctAddr is a conntrack dump's address: plain IPv4 or IPv6 (no zone, no IPv4-mapped
// form: OVS prints neither, and a flush tuple cannot carry them).
func ctAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" || a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("%q: want a plain IPv4 or IPv6 address", s)
	}
	return a, nil
}
