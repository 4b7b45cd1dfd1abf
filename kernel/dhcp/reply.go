package dhcp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Reply answers one DHCPv4 request from the table, as RFC 2131 section 4.3 asks of a
// server with static bindings: DISCOVER → OFFER; REQUEST for the client's address → ACK,
// for another address → NAK, naming another server → nothing (the client chose it);
// INFORM → ACK with the options only. An unknown MAC, a RELEASE or DECLINE (bindings are
// static), a reply or a malformed request get nothing: resp is nil and why says which.
func (t *Table) Reply(req *dhcpv4.DHCPv4) (resp *dhcpv4.DHCPv4, why string) {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return nil, "not a BOOTREQUEST"
	}
	l := t.Lookup(req.ClientHWAddr)
	if l == nil {
		return nil, fmt.Sprintf("unknown MAC %s: no static lease on network %s", req.ClientHWAddr, t.NetworkID)
	}
	ours := func(ip net.IP) bool {
		a, ok := netip.AddrFromSlice(ip.To4())
		return ok && a == l.ServerID
	}
	switch mt := req.MessageType(); mt {
	case dhcpv4.MessageTypeDiscover:
		return built(t.reply(req, l, dhcpv4.MessageTypeOffer))
	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !ours(sid) {
			return nil, fmt.Sprintf("%s requested from server %s", req.ClientHWAddr, sid)
		}
		want := req.RequestedIPAddress() // SELECTING, INIT-REBOOT
		if want == nil {
			want = req.ClientIPAddr // RENEWING, REBINDING
		}
		a, ok := netip.AddrFromSlice(want.To4())
		if !ok || a.IsUnspecified() {
			return nil, fmt.Sprintf("%s: REQUEST without an address", req.ClientHWAddr)
		}
		if a != l.IP {
			r, err := nak(req, l)
			if err != nil {
				return built(nil, err)
			}
			return r, fmt.Sprintf("NAK: %s requested %s, its address is %s", req.ClientHWAddr, a, l.IP)
		}
		return built(t.reply(req, l, dhcpv4.MessageTypeAck))
	case dhcpv4.MessageTypeInform:
		r, err := t.reply(req, l, dhcpv4.MessageTypeAck)
		if err != nil {
			return built(nil, err)
		}
		r.YourIPAddr = net.IPv4zero
		r.Options.Del(dhcpv4.OptionIPAddressLeaseTime)
		return r, ""
	default:
		return nil, fmt.Sprintf("%s: %s ignored (static leases)", req.ClientHWAddr, mt)
	}
}

// reply builds an OFFER or ACK carrying the lease and its options. Option 121 goes only
// to clients that ask for it (RFC 3442 section 2: with it they ignore option 3).
func (t *Table) reply(req *dhcpv4.DHCPv4, l *Lease, mt dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
	mask := net.CIDRMask(l.Subnet.Bits(), 32)
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithYourIP(l.IP.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(l.ServerID.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(mask)),
		dhcpv4.WithOption(dhcpv4.OptBroadcastAddress(broadcast(l.Subnet).AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(t.LeaseTime)),
	}
	if l.Router.IsValid() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRouter(l.Router.AsSlice())))
	}
	if len(l.DNS) > 0 {
		ips := make([]net.IP, len(l.DNS))
		for i, d := range l.DNS {
			ips[i] = d.AsSlice()
		}
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(ips...)))
	}
	if l.MTU >= 68 && l.MTU <= 0xffff {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionInterfaceMTU, binary.BigEndian.AppendUint16(nil, uint16(l.MTU)))))
	}
	if len(l.Routes) > 0 && req.IsOptionRequested(dhcpv4.OptionClasslessStaticRoute) {
		rs := make([]*dhcpv4.Route, len(l.Routes))
		for i, r := range l.Routes {
			rs[i] = &dhcpv4.Route{
				Dest:   &net.IPNet{IP: r.Destination.Addr().AsSlice(), Mask: net.CIDRMask(r.Destination.Bits(), 32)},
				Router: r.NextHop.AsSlice(),
			}
		}
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClasslessStaticRoute(rs...)))
	}
	return dhcpv4.NewReplyFromRequest(req, mods...)
}

// built passes a reply on, or says why there is none.
func built(r *dhcpv4.DHCPv4, err error) (*dhcpv4.DHCPv4, string) {
	if err != nil {
		return nil, fmt.Sprintf("build reply: %v", err)
	}
	return r, ""
}

// nak refuses a REQUEST (RFC 2131 table 3: no address, only the server identifier),
// broadcast so a client on a wrong address hears it.
func nak(req *dhcpv4.DHCPv4, l *Lease) (*dhcpv4.DHCPv4, error) {
	return dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(l.ServerID.AsSlice())),
		dhcpv4.WithBroadcast(true))
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) | (1<<(32-p.Bits()) - 1)
	return netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, v)))
}
