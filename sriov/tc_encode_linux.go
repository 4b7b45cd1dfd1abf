//go:build linux

package sriov

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/offlane/offlane/offload"
)

// The writing half of the tc netlink: RTM_NEWTFILTER messages for exactly the matches
// and actions offload.TCRule has, appended into one reused buffer (no reflection, no
// allocation per attribute), and a sender that puts many of them into one sendmsg, each
// with NLM_F_ACK, and maps the acks back to the rules, as `tc -batch` does. The decoder
// of tc_dump_linux.go reads what this writes (TestTCEncodeDecode).

// Attribute numbers written besides those the decoder reads (pkt_cls.h, tc_act/*.h).
const (
	flowerKeyEthType         = 8
	flowerKeyEthSrcMask      = 7
	flowerKeyEncIPv4DstMask  = 30
	flowerKeyEncUDPDstPrtMsk = 46

	nlaFNested = 1 << 15 // NLA_F_NESTED

	nlmsgHdrLen = 16
	nlmsgerrLen = 4 + nlmsgHdrLen // struct nlmsgerr without the echoed payload

	nlmsgerrAttrMsg = 1 // NLMSGERR_ATTR_MSG
	nlmFAckTLVs     = 0x200

	// a sendmsg carries at most this many bytes / messages (the socket's send buffer
	// bounds one message; the acks of a chunk must fit the receive buffer)
	batchBytes = 64 << 10
	batchMsgs  = 128
)

// tcEncoder appends netlink messages to buf.
type tcEncoder struct {
	buf []byte
}

func (e *tcEncoder) u16(v uint16) { e.buf = binary.NativeEndian.AppendUint16(e.buf, v) }
func (e *tcEncoder) u32(v uint32) { e.buf = binary.NativeEndian.AppendUint32(e.buf, v) }

// attr appends an attribute header for n bytes of payload; the caller appends the
// payload and then calls pad.
func (e *tcEncoder) attr(typ uint16, n int) {
	e.u16(uint16(4 + n))
	e.u16(typ)
}

func (e *tcEncoder) pad() {
	for len(e.buf)%4 != 0 {
		e.buf = append(e.buf, 0)
	}
}

func (e *tcEncoder) attrU32(typ uint16, v uint32) { e.attr(typ, 4); e.u32(v) }

func (e *tcEncoder) attrU16(typ uint16, v uint16) { e.attr(typ, 2); e.u16(v); e.pad() }

func (e *tcEncoder) attrBE16(typ uint16, v uint16) {
	e.attr(typ, 2)
	e.buf = binary.BigEndian.AppendUint16(e.buf, v)
	e.pad()
}

func (e *tcEncoder) attrBE32(typ uint16, v uint32) {
	e.attr(typ, 4)
	e.buf = binary.BigEndian.AppendUint32(e.buf, v)
}

func (e *tcEncoder) attrBytes(typ uint16, b []byte) {
	e.attr(typ, len(b))
	e.buf = append(e.buf, b...)
	e.pad()
}

func (e *tcEncoder) attrString(typ uint16, s string) {
	e.attr(typ, len(s)+1)
	e.buf = append(e.buf, s...)
	e.buf = append(e.buf, 0)
	e.pad()
}

// nest opens a nested attribute and returns its offset for end.
func (e *tcEncoder) nest(typ uint16) int {
	at := len(e.buf)
	e.attr(typ|nlaFNested, 0)
	return at
}

func (e *tcEncoder) end(at int) {
	binary.NativeEndian.PutUint16(e.buf[at:], uint16(len(e.buf)-at))
}

// tcGen appends struct tc_gen (index, capab, action, refcnt, bindcnt) with action.
func (e *tcEncoder) tcGen(action uint32) {
	e.buf = append(e.buf, make([]byte, 8)...)
	e.u32(action)
	e.buf = append(e.buf, make([]byte, 8)...)
}

var macOnes = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// parseMAC6 reads "aa:bb:cc:dd:ee:ff" (either case) without allocating.
func parseMAC6(s string) ([6]byte, bool) {
	var m [6]byte
	if len(s) != 17 {
		return m, false
	}
	for i := range 6 {
		if i > 0 && s[3*i-1] != ':' {
			return m, false
		}
		hi, ok1 := unhex(s[3*i])
		lo, ok2 := unhex(s[3*i+1])
		if !ok1 || !ok2 {
			return m, false
		}
		m[i] = hi<<4 | lo
	}
	return m, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// appendFilter appends the RTM_NEWTFILTER message of r (exclusive create, NLM_F_ACK)
// with sequence number seq, resolving device names with ifindex. On error nothing is
// appended.
func (e *tcEncoder) appendFilter(r *offload.TCRule, seq uint32, ifindex func(string) (uint32, error)) error {
	start := len(e.buf)
	if err := e.filter(r, seq, ifindex); err != nil {
		e.buf = e.buf[:start]
		return err
	}
	binary.NativeEndian.PutUint32(e.buf[start:], uint32(len(e.buf)-start))
	return nil
}

func (e *tcEncoder) filter(r *offload.TCRule, seq uint32, ifindex func(string) (uint32, error)) error {
	idx, err := ifindex(r.Dev)
	if err != nil {
		return err
	}
	// length set by appendFilter; tcmsg info: priority, protocol
	e.header(unix.RTM_NEWTFILTER, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL,
		seq, idx, r.Handle, hookParent(r.Egress), uint32(r.Prio)<<16|uint32(htons(r.Proto)))
	e.attrString(tcaKind, "flower")
	e.attrU32(tcaChain, r.Chain)
	opts := e.nest(tcaOptions)
	e.attrU32(flowerFlags, uint32(r.Flags))
	m := &r.Match
	if r.Proto == offload.TCProto8021Q || r.Proto == offload.TCProtoIPv4 {
		e.attrBE16(flowerKeyEthType, r.Proto) // vlan_id, IPv4 keys are parsed only under it
	}
	if m.VLANID != 0 {
		e.attrU16(flowerKeyVlanID, m.VLANID) // NLA_U16: host order
	}
	if m.DstMAC != "" {
		mac, ok := parseMAC6(m.DstMAC)
		if !ok {
			return fmt.Errorf("rule %s: dst_mac %q is not a MAC address", r, m.DstMAC)
		}
		mask := macOnes
		if m.DstMACMask != "" {
			if mask, ok = parseMAC6(m.DstMACMask); !ok {
				return fmt.Errorf("rule %s: dst_mac mask %q is not a MAC address", r, m.DstMACMask)
			}
		}
		e.attrBytes(flowerKeyEthDst, mac[:])
		e.attrBytes(flowerKeyEthDstMask, mask[:])
	}
	if m.SrcMAC != "" {
		mac, ok := parseMAC6(m.SrcMAC)
		if !ok {
			return fmt.Errorf("rule %s: src_mac %q is not a MAC address", r, m.SrcMAC)
		}
		e.attrBytes(flowerKeyEthSrc, mac[:])
		e.attrBytes(flowerKeyEthSrcMask, macOnes[:])
	}
	if m.EncKeyID != 0 {
		e.attrBE32(flowerKeyEncKeyID, m.EncKeyID)
	}
	if m.EncDstIP.IsValid() {
		if !m.EncDstIP.Is4() {
			return fmt.Errorf("rule %s: enc_dst_ip %s: only IPv4 is supported", r, m.EncDstIP)
		}
		ip := m.EncDstIP.As4()
		e.attrBytes(flowerKeyEncIPv4Dst, ip[:])
		e.attrBytes(flowerKeyEncIPv4DstMask, macOnes[:4])
	}
	if m.EncDstPort != 0 {
		e.attrBE16(flowerKeyEncUDPDstPort, m.EncDstPort)
		e.attrBE16(flowerKeyEncUDPDstPrtMsk, 0xffff)
	}
	if m.DstIP.IsValid() {
		if !m.DstIP.Addr().Is4() || r.Proto != offload.TCProtoIPv4 {
			return fmt.Errorf("rule %s: dst_ip %s: only IPv4, under protocol ip", r, m.DstIP)
		}
		ip := m.DstIP.Masked().Addr().As4()
		e.attrBytes(flowerKeyIPv4Dst, ip[:])
		e.attrBE32(flowerKeyIPv4DstMask, ^uint32(0)<<(32-m.DstIP.Bits()))
	}
	if err := e.natMatch(r); err != nil {
		return err
	}
	acts := e.nest(flowerAct)
	for i := range r.Actions {
		if err := e.action(r, &r.Actions[i], uint16(i+1), ifindex); err != nil {
			return err
		}
	}
	e.end(acts)
	e.end(opts)
	return nil
}

// flowerKeyEncUDPDstPort is tc_dump_linux.go's flowerKeyEncUDPDstPrt under a clearer name.
const flowerKeyEncUDPDstPort = flowerKeyEncUDPDstPrt

func (e *tcEncoder) action(r *offload.TCRule, a *offload.TCAction, n uint16, ifindex func(string) (uint32, error)) error {
	at := e.nest(n)
	var opts int
	switch a.Kind {
	case offload.TCActVLANPush, offload.TCActVLANPop:
		e.attrString(actKind, "vlan")
		opts = e.nest(actOptions)
		e.attr(actParms, tcGenLen+4)
		e.tcGen(actPipe)
		if a.Kind == offload.TCActVLANPop {
			e.u32(vlanPop)
			break
		}
		e.u32(vlanPush)
		e.attrU16(vlanPushID, a.VLANID)
	case offload.TCActTunSet:
		if !a.TunSrc.Is4() || !a.TunDst.Is4() {
			return fmt.Errorf("rule %s: tunnel_key set: src %s dst %s: only IPv4 is supported", r, a.TunSrc, a.TunDst)
		}
		e.attrString(actKind, "tunnel_key")
		opts = e.nest(actOptions)
		e.attr(actParms, tcGenLen+4)
		e.tcGen(actPipe)
		e.u32(tunSet)
		src, dst := a.TunSrc.As4(), a.TunDst.As4()
		e.attrBytes(tunEncIPv4Src, src[:])
		e.attrBytes(tunEncIPv4Dst, dst[:])
		e.attrBE32(tunEncKeyID, a.VNI)
		e.attrBE16(tunEncDstPort, a.TunPort)
	case offload.TCActTunUnset:
		e.attrString(actKind, "tunnel_key")
		opts = e.nest(actOptions)
		e.attr(actParms, tcGenLen+4)
		e.tcGen(actPipe)
		e.u32(tunRelease)
	case offload.TCActRedirect, offload.TCActMirror:
		to, err := ifindex(a.Dev)
		if err != nil {
			return fmt.Errorf("rule %s: mirred target: %w", r, err)
		}
		e.attrString(actKind, "mirred")
		opts = e.nest(actOptions)
		e.attr(actParms, tcGenLen+8)
		if a.Kind == offload.TCActMirror {
			e.tcGen(actPipe)
			e.u32(egressMirror)
		} else {
			e.tcGen(actStolen)
			e.u32(egressRedir)
		}
		e.u32(to)
	case offload.TCActDrop:
		e.attrString(actKind, "gact")
		opts = e.nest(actOptions)
		e.attr(actParms, tcGenLen)
		e.tcGen(actShot)
	case offload.TCActPolice, offload.TCActPeditEth, offload.TCActPeditTTL, offload.TCActPeditDSCP, offload.TCActCsum:
		var err error
		if opts, err = e.l3Action(r, a); err != nil {
			return err
		}
	case offload.TCActCT, offload.TCActGoto:
		var err error
		if opts, err = e.natAction(r, a); err != nil {
			return err
		}
	default:
		return fmt.Errorf("rule %s: unknown action %q", r, a.Kind)
	}
	e.end(opts)
	e.attrBytes(actCookie, r.Cookie[:])
	e.end(at)
	return nil
}

// nlBatch is an rtnetlink socket that sends RTM_NEWTFILTER messages in batches.
type nlBatch struct {
	mu  sync.Mutex
	fd  int
	enc tcEncoder
	rb  []byte
	seq uint32
	// for each message of the chunk in flight: its rule's index, by seq - first
	idx []int
}

func newNLBatch() (*nlBatch, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("tc: open rtnetlink: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("tc: bind rtnetlink: %w", err)
	}
	// acks without the request echoed, but with the kernel's reason on errors
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	// room for a chunk's acks (each a small skb); FORCE needs CAP_NET_ADMIN
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	return &nlBatch{fd: fd, rb: make([]byte, 64<<10), enc: tcEncoder{buf: make([]byte, 0, batchBytes+4096)}}, nil
}

func (b *nlBatch) Close() error { return unix.Close(b.fd) }

// add creates rules, many per sendmsg; errs[i] is the kernel's answer for rules[i]
// (errors wrap the unix.Errno, with the kernel's extended-ack message when there is one).
func (b *nlBatch) add(rules []offload.TCRule, ifindex func(string) (uint32, error)) []error {
	return b.send(len(rules), func(e *tcEncoder, i int, seq uint32) error {
		return e.appendFilter(&rules[i], seq, ifindex)
	})
}

// del deletes filters (by device, chain, priority, protocol and handle), many per
// sendmsg; errs[i] is the kernel's answer for fs[i].
func (b *nlBatch) del(fs []TCFilter, ifindex func(string) (uint32, error)) []error {
	return b.send(len(fs), func(e *tcEncoder, i int, seq uint32) error {
		idx, err := ifindex(fs[i].Rule.Dev)
		if err != nil {
			return err
		}
		e.appendFilterDel(idx, &fs[i].Rule, seq)
		return nil
	})
}

// send encodes messages 0..n-1 with encode (which appends nothing when it fails) and
// sends them in chunks.
func (b *nlBatch) send(n int, encode func(e *tcEncoder, i int, seq uint32) error) []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	errs := make([]error, n)
	b.enc.buf, b.idx = b.enc.buf[:0], b.idx[:0]
	first := b.seq + 1
	for i := range n {
		b.seq++
		if err := encode(&b.enc, i, b.seq); err != nil {
			errs[i] = err
			b.seq--
			continue
		}
		b.idx = append(b.idx, i)
		if len(b.enc.buf) >= batchBytes || len(b.idx) >= batchMsgs {
			b.flush(first, errs)
			first = b.seq + 1
		}
	}
	if len(b.idx) > 0 {
		b.flush(first, errs)
	}
	return errs
}

// flush sends the buffered messages (sequence numbers first..) in one sendmsg and reads
// their acks: the kernel handles the messages one after another inside the call, so
// every ack is queued when it returns and the reads never wait.
func (b *nlBatch) flush(first uint32, errs []error) {
	defer func() { b.enc.buf, b.idx = b.enc.buf[:0], b.idx[:0] }()
	fail := func(err error) {
		for _, i := range b.idx {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	if err := unix.Sendto(b.fd, b.enc.buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		fail(fmt.Errorf("rtnetlink sendmsg: %w", err))
		return
	}
	acked := 0
	for acked < len(b.idx) {
		n, _, err := unix.Recvfrom(b.fd, b.rb, unix.MSG_DONTWAIT)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			fail(fmt.Errorf("rtnetlink: %d of %d acks read: %w", acked, len(b.idx), err))
			return
		}
		for p := b.rb[:n]; len(p) >= nlmsgHdrLen; {
			l := int(binary.NativeEndian.Uint32(p))
			if l < nlmsgHdrLen || l > len(p) {
				break
			}
			typ := binary.NativeEndian.Uint16(p[4:])
			flags := binary.NativeEndian.Uint16(p[6:])
			seq := binary.NativeEndian.Uint32(p[8:])
			msg := p[:l]
			p = p[min(nlmsgAlign(l), len(p)):]
			k := int(seq - first)
			if typ != unix.NLMSG_ERROR || k < 0 || k >= len(b.idx) || l < nlmsgHdrLen+nlmsgerrLen {
				continue // not an ack of this chunk
			}
			acked++
			code := int32(binary.NativeEndian.Uint32(msg[nlmsgHdrLen:]))
			if code == 0 {
				continue
			}
			var err error = unix.Errno(-code)
			if why := extAckMsg(msg, flags); why != "" {
				err = fmt.Errorf("%w (%s)", err, why)
			}
			errs[b.idx[k]] = err
		}
	}
}

func nlmsgAlign(n int) int { return (n + 3) &^ 3 }

// extAckMsg is NLMSGERR_ATTR_MSG of an error ack (NETLINK_CAP_ACK: no echoed request).
func extAckMsg(msg []byte, flags uint16) string {
	if flags&nlmFAckTLVs == 0 {
		return ""
	}
	for p := msg[nlmsgHdrLen+nlmsgerrLen:]; len(p) >= 4; {
		l, typ := int(binary.NativeEndian.Uint16(p)), binary.NativeEndian.Uint16(p[2:])
		if l < 4 || l > len(p) {
			return ""
		}
		if typ == nlmsgerrAttrMsg {
			s := p[4:l]
			for len(s) > 0 && s[len(s)-1] == 0 {
				s = s[:len(s)-1]
			}
			return string(s)
		}
		p = p[min(nlmsgAlign(l), len(p)):]
	}
	return ""
}

// tcAddError maps the kernel's answer to a rule to the applier's errors.
func tcAddError(r *offload.TCRule, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%w: %w", ErrTCExists, err)
	case r.Flags == offload.TCSkipSW && errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("%w: %w", ErrTCSkipSWRejected, err)
	}
	return err
}

// header appends an nlmsghdr (length set by finish) and a tcmsg.
func (e *tcEncoder) header(typ, flags uint16, seq, idx, handle, parent, info uint32) int {
	at := len(e.buf)
	e.u32(0)
	e.u16(typ)
	e.u16(flags)
	e.u32(seq)
	e.u32(0)
	e.u32(unix.AF_UNSPEC)
	e.u32(idx)
	e.u32(handle)
	e.u32(parent)
	e.u32(info)
	return at
}

func (e *tcEncoder) finish(at int) {
	binary.NativeEndian.PutUint32(e.buf[at:], uint32(len(e.buf)-at))
}

// one sends the single message build appends and returns the kernel's answer.
func (b *nlBatch) one(build func(e *tcEncoder, seq uint32)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.enc.buf, b.idx = b.enc.buf[:0], b.idx[:0]
	b.seq++
	build(&b.enc, b.seq)
	b.idx = append(b.idx, 0)
	var errs [1]error
	b.flush(b.seq, errs[:])
	return errs[0]
}

// clsact creates a clsact qdisc on ifindex idx (exclusive: EEXIST when there is one).
func (b *nlBatch) clsact(idx uint32) error {
	return b.one(func(e *tcEncoder, seq uint32) {
		at := e.header(unix.RTM_NEWQDISC, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL,
			seq, idx, clsactHandle, clsactParent, 0)
		e.attrString(tcaKind, "clsact")
		e.finish(at)
	})
}

// filterDel deletes the flower filter r (device ifindex idx, chain, priority, protocol,
// handle) from the ingress hook.
func (b *nlBatch) filterDel(idx uint32, r *offload.TCRule) error {
	return b.one(func(e *tcEncoder, seq uint32) { e.appendFilterDel(idx, r, seq) })
}

// appendFilterDel appends the RTM_DELTFILTER message of r on ifindex idx.
func (e *tcEncoder) appendFilterDel(idx uint32, r *offload.TCRule, seq uint32) {
	at := e.header(unix.RTM_DELTFILTER, unix.NLM_F_REQUEST|unix.NLM_F_ACK,
		seq, idx, r.Handle, hookParent(r.Egress), uint32(r.Prio)<<16|uint32(htons(r.Proto)))
	e.attrString(tcaKind, "flower")
	e.attrU32(tcaChain, r.Chain)
	e.finish(at)
}
