package dhcp

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"go.uber.org/zap"
)

// Server is one network's DHCPv4 server on a listening socket (see Listen). Its lease
// table is swapped atomically (SetTable) while it serves.
type Server struct {
	log   *zap.Logger
	table atomic.Pointer[Table]
	srv   *server4.Server
	done  chan struct{}
	err   error
}

// NewServer starts serving on conn (a UDP socket on port 67 bound to the DHCP port's
// interface, from Listen) with table. Close stops it and closes conn.
func NewServer(conn net.PacketConn, table *Table, log *zap.Logger) (*Server, error) {
	if table == nil {
		return nil, errors.New("dhcp server: nil lease table")
	}
	s := &Server{log: log.With(zap.String("network", table.NetworkID)), done: make(chan struct{})}
	s.table.Store(table)
	srv, err := server4.NewServer("", nil, s.handle, server4.WithConn(conn))
	if err != nil {
		return nil, fmt.Errorf("dhcp server for network %s: %w", table.NetworkID, err)
	}
	s.srv = srv
	go func() {
		defer close(s.done)
		s.err = srv.Serve()
	}()
	return s, nil
}

// SetTable replaces the lease table; requests already being answered finish with the
// old one. Tables are never modified in place.
func (s *Server) SetTable(t *Table) { s.table.Store(t) }

// Table returns the lease table in use.
func (s *Server) Table() *Table { return s.table.Load() }

// Close stops the server and waits for its receive loop to end. Idempotent.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// handle answers one request. server4 gives peer as the broadcast address when the
// client has none yet (then the reply is broadcast: the client cannot take unicast
// before it has its address unless it says so, and broadcasting always works here); a
// NAK is always broadcast (RFC 2131 4.3.2); a relayed request is answered to the relay.
func (s *Server) handle(conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4) {
	resp, why := s.table.Load().Reply(req)
	if resp == nil {
		s.log.Debug("dhcp: no answer", zap.String("mac", req.ClientHWAddr.String()),
			zap.Stringer("type", req.MessageType()), zap.String("why", why))
		return
	}
	dst := peer
	switch {
	case !req.GatewayIPAddr.IsUnspecified() && req.GatewayIPAddr != nil:
		dst = &net.UDPAddr{IP: req.GatewayIPAddr, Port: dhcpv4.ServerPort}
	case resp.MessageType() == dhcpv4.MessageTypeNak:
		dst = &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
	}
	if why != "" {
		s.log.Debug("dhcp: "+why, zap.String("mac", req.ClientHWAddr.String()))
	}
	if _, err := conn.WriteTo(resp.ToBytes(), dst); err != nil {
		s.log.Warn("dhcp: send reply", zap.String("mac", req.ClientHWAddr.String()),
			zap.Stringer("type", resp.MessageType()), zap.Stringer("to", dst), zap.Error(err))
		return
	}
	s.log.Debug("dhcp: answered", zap.String("mac", req.ClientHWAddr.String()), zap.Stringer("type", resp.MessageType()),
		zap.Stringer("ip", resp.YourIPAddr), zap.Stringer("to", dst))
}
