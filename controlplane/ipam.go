package controlplane

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// IPAM: every allocated address is a claim subnet-id/hex16(address) → port id in one
// bbolt bucket, so "is it free" is one lookup and "next free" walks only the claims
// inside a pool, in address order.

func ipKey(subnetID string, a netip.Addr) string {
	b := a.As16()
	return subnetID + "/" + hex.EncodeToString(b[:])
}

func parseIPKey(subnetID, key string, is4 bool) (netip.Addr, bool) {
	h := key[len(subnetID)+1:]
	var b [16]byte
	if len(h) != 32 {
		return netip.Addr{}, false
	}
	if _, err := hex.Decode(b[:], []byte(h)); err != nil {
		return netip.Addr{}, false
	}
	a := netip.AddrFrom16(b)
	if is4 {
		a = a.Unmap()
	}
	return a, true
}

// subnetPrefix is a parsed subnet.
func subnetPrefix(s *Subnet) netip.Prefix {
	p, _ := netip.ParsePrefix(s.CIDR)
	return p
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	b := a.AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	out, _ := netip.AddrFromSlice(b)
	return out
}

// usableRange is the first and last address IPAM may give out in p: without the
// network address, and for IPv4 without the broadcast address (except /31 and /32).
func usableRange(p netip.Prefix) (netip.Addr, netip.Addr) {
	first, last := p.Masked().Addr(), lastAddr(p)
	if p.Addr().Is4() && p.Bits() >= 31 {
		return first, last
	}
	first = first.Next()
	if p.Addr().Is4() {
		last = last.Prev()
	}
	return first, last
}

// validHostIP reports whether a may be a port address on subnet p.
func validHostIP(p netip.Prefix, a netip.Addr) bool {
	if !p.Contains(a) {
		return false
	}
	first, last := usableRange(p)
	return a.Compare(first) >= 0 && a.Compare(last) <= 0
}

// defaultPools is Neutron's default: the usable range minus the gateway.
func defaultPools(p netip.Prefix, gw *netip.Addr) []AllocationPool {
	first, last := usableRange(p)
	if !first.IsValid() || first.Compare(last) > 0 {
		return []AllocationPool{}
	}
	if gw == nil || !gw.IsValid() || gw.Compare(first) < 0 || gw.Compare(last) > 0 {
		return []AllocationPool{{Start: first.String(), End: last.String()}}
	}
	var out []AllocationPool
	if gw.Compare(first) > 0 {
		out = append(out, AllocationPool{Start: first.String(), End: gw.Prev().String()})
	}
	if gw.Compare(last) < 0 {
		out = append(out, AllocationPool{Start: gw.Next().String(), End: last.String()})
	}
	if out == nil {
		out = []AllocationPool{}
	}
	return out
}

// errPoolExhausted: no free address in the subnet's pools.
var errPoolExhausted = errors.New("no free address")

// ipHints remembers, per subnet, where the next search for a free address starts (just
// after the last address handed out), so allocation does not walk every address
// already taken. Only a hint: it is not persisted and a stale one costs a longer walk.
type ipHints struct {
	mu   sync.Mutex
	next map[string]netip.Addr
}

func (h *ipHints) get(subnet string) netip.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.next[subnet]
}

func (h *ipHints) set(subnet string, a netip.Addr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next[subnet] = a
}

// allocateNext claims a free address of the subnet's pools for owner: the first free
// one at or after the hint, wrapping around to the pools' start.
func (s *Server) allocateNext(tx Tx, sn *Subnet, owner string) (netip.Addr, error) {
	type span struct{ lo, hi netip.Addr }
	var pools []span
	for _, p := range sn.AllocationPools {
		lo, err1 := netip.ParseAddr(p.Start)
		hi, err2 := netip.ParseAddr(p.End)
		if err1 != nil || err2 != nil {
			return netip.Addr{}, fmt.Errorf("subnet %s: corrupt pool %v", sn.ID, p)
		}
		pools = append(pools, span{lo, hi})
	}
	// Search order: from the hint to the end of its pool, the later pools, the earlier
	// pools, then the hint pool's start up to the hint.
	var order []span
	hint := s.hints.get(sn.ID)
	at := -1
	for i, p := range pools {
		if hint.IsValid() && hint.Is4() == p.lo.Is4() && p.lo.Compare(hint) < 0 && hint.Compare(p.hi) <= 0 {
			at = i
		}
	}
	if at < 0 {
		order = pools
	} else {
		order = append(order, span{hint, pools[at].hi})
		order = append(order, pools[at+1:]...)
		order = append(order, pools[:at]...)
		order = append(order, span{pools[at].lo, hint.Prev()})
	}
	for _, sp := range order {
		a, ok, err := firstFree(tx, sn, sp.lo, sp.hi)
		if err != nil {
			return netip.Addr{}, err
		}
		if !ok {
			continue
		}
		if err := tx.Claim(claimIPs, ipKey(sn.ID, a), owner); err != nil {
			return netip.Addr{}, err
		}
		if n := a.Next(); n.IsValid() {
			s.hints.set(sn.ID, n)
		}
		return a, nil
	}
	return netip.Addr{}, errPoolExhausted
}

// firstFree walks the claims inside [lo, hi] for the first gap.
func firstFree(tx ReadTx, sn *Subnet, lo, hi netip.Addr) (netip.Addr, bool, error) {
	next := lo
	var walkErr error
	err := tx.Claims(claimIPs, sn.ID+"/", ipKey(sn.ID, lo), func(key, _ string) bool {
		a, ok := parseIPKey(sn.ID, key, lo.Is4())
		if !ok {
			walkErr = fmt.Errorf("subnet %s: corrupt address claim %q", sn.ID, key)
			return false
		}
		if a.Compare(hi) > 0 || a.Compare(next) > 0 {
			return false
		}
		next = a.Next()
		return next.IsValid()
	})
	if err != nil || walkErr != nil {
		return netip.Addr{}, false, errors.Join(err, walkErr)
	}
	if next.IsValid() && next.Compare(lo) >= 0 && next.Compare(hi) <= 0 {
		return next, true, nil
	}
	return netip.Addr{}, false, nil
}

// eui64 is the SLAAC address of mac in a /64.
func eui64(p netip.Prefix, mac string) (netip.Addr, error) {
	hw, err := parseMAC(mac)
	if err != nil {
		return netip.Addr{}, err
	}
	b := p.Masked().Addr().As16()
	b[8] = hw[0] ^ 0x02
	b[9], b[10] = hw[1], hw[2]
	b[11], b[12] = 0xff, 0xfe
	b[13], b[14], b[15] = hw[3], hw[4], hw[5]
	return netip.AddrFrom16(b), nil
}

// parseMAC accepts the colon-separated 6-octet form only (as Neutron's validator).
func parseMAC(s string) ([6]byte, error) {
	var hw [6]byte
	if len(s) != 17 {
		return hw, fmt.Errorf("'%s' is not a valid MAC address", shortStr(s))
	}
	for i := range 6 {
		if i > 0 && s[i*3-1] != ':' {
			return hw, fmt.Errorf("'%s' is not a valid MAC address", s)
		}
		if _, err := hex.Decode(hw[i:i+1], []byte(s[i*3:i*3+2])); err != nil {
			return hw, fmt.Errorf("'%s' is not a valid MAC address", s)
		}
	}
	return hw, nil
}
