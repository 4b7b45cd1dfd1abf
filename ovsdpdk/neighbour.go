package ovsdpdk

import (
	"bytes"
	"context"
	enchex "encoding/hex"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"

	"github.com/offlane/offlane/offload"
)

// PacketOut injects one Ethernet frame into bridge's pipeline (`ovs-ofctl -O OpenFlow15
// packet-out`, in_port=controller) with the given actions. Safe to retry; it changes no
// flow.
func (o *Ofctl) PacketOut(ctx context.Context, bridge string, frame []byte, actions string) error {
	if err := validBridgeName(bridge); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	spec := "in_port=controller packet=" + enchex.EncodeToString(frame) + " actions=" + actions
	cmd := exec.CommandContext(ctx, o.bin, "-O", "OpenFlow15", "packet-out", o.Target(bridge), spec)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("bridge %s: packet-out: %w: %s", bridge, err, firstLines(out.String(), 5))
	}
	return nil
}

// ProbeNeighbours sends, for each probe, an ARP request for the next hop from the router
// gateway's MAC and address, flooded on the external network (its local VLAN in reg6,
// offload.TableFlood), so the answer passes the network's ARP-learning flow and the
// next-hop table learns the MAC (offload's l3 stage). The agent calls it after each
// reconcile and periodically; answers arrive asynchronously. Errors are joined.
func ProbeNeighbours(ctx context.Context, of *Ofctl, probes []offload.NeighbourProbe) error {
	var errs []error
	for _, p := range probes {
		frame, err := arpRequest(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("router %s: %w", p.RouterID, err))
			continue
		}
		actions := "set_field:0x" + strconv.FormatUint(uint64(p.LocalVLAN), 16) + "->reg6,resubmit(," + strconv.Itoa(int(offload.TableFlood)) + ")"
		if err := of.PacketOut(ctx, p.Bridge, frame, actions); err != nil {
			errs = append(errs, fmt.Errorf("router %s: probe %s: %w", p.RouterID, p.Target, err))
		}
	}
	return errors.Join(errs...)
}

// arpRequest is a broadcast ARP request (RFC 826) for p.Target from p.SenderMAC/IP.
func arpRequest(p offload.NeighbourProbe) ([]byte, error) {
	mac, err := net.ParseMAC(p.SenderMAC)
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("sender MAC %q: not an Ethernet MAC", p.SenderMAC)
	}
	if !p.SenderIP.Is4() || !p.Target.Is4() {
		return nil, fmt.Errorf("ARP needs IPv4 addresses (have %s → %s)", p.SenderIP, p.Target)
	}
	b := make([]byte, 0, 42)
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	b = append(b, mac...)
	b = append(b, 0x08, 0x06)                   // ethertype ARP
	b = append(b, 0x00, 0x01, 0x08, 0x00, 6, 4) // Ethernet, IPv4, hlen, plen
	b = append(b, 0x00, 0x01)                   // request
	b = append(b, mac...)
	spa, tpa := p.SenderIP.As4(), p.Target.As4()
	b = append(b, spa[:]...)
	b = append(b, 0, 0, 0, 0, 0, 0)
	b = append(b, tpa[:]...)
	return b, nil
}
