package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The rules are plain nftables expressions on register 1, the ones `nft` itself emits
// for `oifname "qg-x" ip saddr 10.0.0.0/24 snat to 192.0.2.10`, so `nft list` prints
// them as such and a rule written by nft decodes the same.

const (
	ipSaddrOffset = 12
	ipDaddrOffset = 16
	ifNameSize    = 16 // IFNAMSIZ: oifname compares the zero-padded name
)

func table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}
}

// chainShape is what each of the table's chains must be.
var chainShapes = map[string]struct {
	hook *nftables.ChainHook
	prio *nftables.ChainPriority
}{
	ChainPrerouting:  {nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest},
	ChainPostrouting: {nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource},
}

// encodeRule turns a rule into nftables expressions and its userdata (the comment).
func encodeRule(r NATRule) ([]expr.Any, []byte, error) {
	var ex []expr.Any
	if r.OutIf != "" {
		if len(r.OutIf) >= ifNameSize {
			return nil, nil, fmt.Errorf("rule %s: interface name too long", r)
		}
		ex = append(ex,
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifNameData(r.OutIf)})
	}
	for _, m := range []struct {
		p   netip.Prefix
		off uint32
	}{{r.Src, ipSaddrOffset}, {r.Dst, ipDaddrOffset}} {
		if !m.p.IsValid() {
			continue
		}
		if !m.p.Addr().Is4() {
			return nil, nil, fmt.Errorf("rule %s: not an IPv4 prefix", r)
		}
		ex = append(ex, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: m.off, Len: 4})
		if m.p.Bits() < 32 {
			ex = append(ex, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: ipNet(m.p).Mask, Xor: []byte{0, 0, 0, 0}})
		}
		ex = append(ex, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: m.p.Masked().Addr().AsSlice()})
	}
	var nt expr.NATType
	switch r.Action {
	case ActionSNAT:
		nt = expr.NATTypeSourceNAT
	case ActionDNAT:
		nt = expr.NATTypeDestNAT
	default:
		return nil, nil, fmt.Errorf("rule %s: unknown action %q", r, r.Action)
	}
	if !r.To.Is4() {
		return nil, nil, fmt.Errorf("rule %s: NAT target is not IPv4", r)
	}
	ex = append(ex,
		&expr.Immediate{Register: 1, Data: r.To.AsSlice()},
		&expr.NAT{Type: nt, Family: unix.NFPROTO_IPV4, RegAddrMin: 1})
	var ud []byte
	if r.Comment != "" {
		ud = userdata.AppendString(nil, userdata.TypeComment, r.Comment)
	}
	return ex, ud, nil
}

func ifNameData(name string) []byte {
	b := make([]byte, ifNameSize)
	copy(b, name)
	return b
}

// decodeRule is encodeRule's inverse; anything else (a rule some other tool wrote) is an
// error naming what it did not understand.
func decodeRule(chain string, ex []expr.Any, ud []byte) (NATRule, error) {
	r := NATRule{Chain: chain}
	bad := func(i int) (NATRule, error) {
		return r, fmt.Errorf("chain %s: unexpected expression %d (%T %+v)", chain, i, ex[i], ex[i])
	}
	for i := 0; i < len(ex); i++ {
		switch e := ex[i].(type) {
		case *expr.Meta:
			c, ok := at[*expr.Cmp](ex, i+1)
			if e.Key != expr.MetaKeyOIFNAME || e.SourceRegister || !ok || c.Op != expr.CmpOpEq || c.Register != e.Register || r.OutIf != "" {
				return bad(i)
			}
			r.OutIf = string(bytes.TrimRight(c.Data, "\x00"))
			i++
		case *expr.Payload:
			if e.OperationType != expr.PayloadLoad || e.Base != expr.PayloadBaseNetworkHeader || e.Len != 4 {
				return bad(i)
			}
			bits := 32
			j := i + 1
			if bw, ok := at[*expr.Bitwise](ex, j); ok {
				if bw.SourceRegister != e.DestRegister || bw.DestRegister != e.DestRegister || bw.Len != 4 || !bytes.Equal(bw.Xor, []byte{0, 0, 0, 0}) {
					return bad(j)
				}
				ones, ok := maskBits(bw.Mask)
				if !ok {
					return bad(j)
				}
				bits = ones
				j++
			}
			c, ok := at[*expr.Cmp](ex, j)
			if !ok || c.Op != expr.CmpOpEq || c.Register != e.DestRegister || len(c.Data) != 4 {
				return bad(i)
			}
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte(c.Data)), bits)
			switch {
			case e.Offset == ipSaddrOffset && !r.Src.IsValid():
				r.Src = p
			case e.Offset == ipDaddrOffset && !r.Dst.IsValid():
				r.Dst = p
			default:
				return bad(i)
			}
			i = j
		case *expr.Immediate:
			n, ok := at[*expr.NAT](ex, i+1)
			if !ok || len(e.Data) != 4 || n.Family != unix.NFPROTO_IPV4 || n.RegAddrMin != e.Register ||
				(n.RegAddrMax != 0 && n.RegAddrMax != e.Register) || n.RegProtoMin != 0 || n.Random || n.FullyRandom ||
				n.Persistent || n.Prefix || n.Specified || i+2 != len(ex) {
				return bad(i)
			}
			switch n.Type {
			case expr.NATTypeSourceNAT:
				r.Action = ActionSNAT
			case expr.NATTypeDestNAT:
				r.Action = ActionDNAT
			default:
				return bad(i + 1)
			}
			r.To = netip.AddrFrom4([4]byte(e.Data))
			i++
		default:
			return bad(i)
		}
	}
	if r.Action == "" {
		return r, fmt.Errorf("chain %s: a rule without a NAT action", chain)
	}
	if c, ok := userdata.GetString(ud, userdata.TypeComment); ok {
		r.Comment = c
	}
	return r, nil
}

func at[T expr.Any](ex []expr.Any, i int) (T, bool) {
	var zero T
	if i >= len(ex) {
		return zero, false
	}
	v, ok := ex[i].(T)
	return v, ok
}

// maskBits returns the prefix length of a contiguous IPv4 network mask.
func maskBits(m []byte) (int, bool) {
	if len(m) != 4 {
		return 0, false
	}
	ones := 0
	for _, b := range m {
		ones += bits.OnesCount8(b)
	}
	return ones, bytes.Equal(net.CIDRMask(ones, 32), m)
}

// nftConn opens an nftables connection into the named namespace.
func nftConn(ns string) (*nftables.Conn, func(), error) {
	_, nsh, closer, err := handleAt(ns)
	if err != nil {
		return nil, nil, err
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(nsh)))
	if err != nil {
		closer()
		return nil, nil, fmt.Errorf("namespace %s: nftables: %w", ns, err)
	}
	return c, closer, nil
}

// errNoTable is readRuleset's answer when the namespace has no offlane table.
var errNoTable = errors.New("no table ip " + TableName)

// readRuleset reads the table back from the kernel and decodes it. A table whose chains
// are not exactly ours (type, hook, priority, policy) or with rules it cannot decode is
// an error (and gets replaced by the next apply).
func readRuleset(c *nftables.Conn) (Ruleset, error) {
	var rs Ruleset
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return rs, fmt.Errorf("list tables: %w", err)
	}
	if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == TableName }) {
		return rs, errNoTable
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return rs, fmt.Errorf("list chains: %w", err)
	}
	seen := map[string]*nftables.Chain{}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != TableName {
			continue
		}
		shape, ok := chainShapes[ch.Name]
		if !ok || ch.Type != nftables.ChainTypeNAT || ch.Hooknum == nil || *ch.Hooknum != *shape.hook ||
			ch.Priority == nil || *ch.Priority != *shape.prio || ch.Policy == nil || *ch.Policy != nftables.ChainPolicyAccept {
			return rs, fmt.Errorf("table %s: chain %s is not one of ours (nat prerouting dstnat / postrouting srcnat, policy accept)", TableName, ch.Name)
		}
		seen[ch.Name] = ch
	}
	for _, name := range []string{ChainPrerouting, ChainPostrouting} {
		ch := seen[name]
		if ch == nil {
			return rs, fmt.Errorf("table %s: chain %s missing", TableName, name)
		}
		rules, err := c.GetRules(table(), ch)
		if err != nil {
			return rs, fmt.Errorf("table %s chain %s: list rules: %w", TableName, name, err)
		}
		for _, rl := range rules {
			r, err := decodeRule(name, rl.Exprs, rl.UserData)
			if err != nil {
				return rs, fmt.Errorf("table %s: %w", TableName, err)
			}
			rs.Rules = append(rs.Rules, r)
		}
	}
	return rs, nil
}

// queueRuleset queues the atomic replacement of the table: add (so the delete cannot
// fail on a missing table), delete, and the whole table again. Nothing is sent until
// Flush, and the kernel applies the batch as one transaction: a failure leaves the old
// table as it was.
func queueRuleset(c *nftables.Conn, rs Ruleset) error {
	t := table()
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	chains := map[string]*nftables.Chain{}
	for _, name := range []string{ChainPrerouting, ChainPostrouting} {
		s := chainShapes[name]
		chains[name] = c.AddChain(&nftables.Chain{Name: name, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: s.hook, Priority: s.prio, Policy: &accept})
	}
	for _, r := range rs.Rules {
		ch := chains[r.Chain]
		if ch == nil {
			return fmt.Errorf("rule %s: unknown chain %q", r, r.Chain)
		}
		ex, ud, err := encodeRule(r)
		if err != nil {
			return err
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ex, UserData: ud})
	}
	return nil
}
