package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// The DHCP port of a network. Neutron's DHCP agent creates it (device_owner network:dhcp,
// device_id dhcp<host uuid>-<network>) when it starts serving a network; offlane's server
// keeps it itself, in the same transaction as the subnet change, so every client and
// every node sees one port per network as soon as the network has a DHCP subnet. The
// device_id is "dhcp-<network id>" (one port per network, not per agent host: every node
// carrying the network serves it from its own qdhcp namespace with that port's MAC and
// addresses, as a distributed service port).

// OwnerDHCP is the device_owner of a network's DHCP port.
const OwnerDHCP = "network:dhcp"

// DHCPDeviceID is the device_id of a network's DHCP port.
func DHCPDeviceID(networkID string) string { return "dhcp-" + networkID }

// dhcpPort returns the network's DHCP port, or nil when it has none.
func dhcpPort(tx ReadTx, networkID string) (*Port, error) {
	var found *Port
	err := tx.ListBy(KindPort, "device_id", DHCPDeviceID(networkID), func(id string, v []byte) error {
		var p Port
		if err := json.Unmarshal(v, &p); err != nil {
			return fmt.Errorf("port %s: decode: %w", id, err)
		}
		if found == nil && p.DeviceOwner == OwnerDHCP && p.NetworkID == networkID {
			found = &p
		}
		return nil
	})
	return found, err
}

// syncDHCPPort brings net's DHCP port in step with its subnets (net.Subnets as they will
// be once the transaction commits; the subnets themselves are read from tx): created with
// the network's first DHCP subnet, one fixed IP per DHCP subnet (an address it already
// has is kept, a new one is the lowest free address of the subnet's pools, or the EUI-64
// address on a SLAAC subnet), deleted with the last one. A DHCP subnet without a free
// address fails the whole change (409 IpAddressGenerationFailure).
func (rq *request) syncDHCPPort(tx Tx, net *Network) error {
	var want []*Subnet
	for _, id := range net.Subnets {
		sn, err := rq.s.getSubnet(tx, id, nil)
		if err != nil {
			return fmt.Errorf("network %s: subnet %s: %w", net.ID, id, err)
		}
		if sn.EnableDHCP {
			want = append(want, sn)
		}
	}
	p, err := dhcpPort(tx, net.ID)
	if err != nil {
		return err
	}
	if len(want) == 0 {
		if p == nil {
			return nil
		}
		return removePort(tx, p)
	}
	changed, created := false, p == nil
	if created {
		p = &Port{
			ID: newID(), ProjectID: net.ProjectID, TenantID: net.ProjectID, NetworkID: net.ID, AdminStateUp: true,
			Status: "DOWN", FixedIPs: []FixedIP{}, DeviceID: DHCPDeviceID(net.ID), DeviceOwner: OwnerDHCP,
			SecurityGroups: []string{}, AllowedAddressPairs: []AddressPair{}, VNICType: VNICNormal,
			Profile: map[string]any{}, VIFType: "unbound", VIFDetails: map[string]any{}, Tags: []string{},
			CreatedAt: rq.now, UpdatedAt: rq.now, RevisionNumber: 1,
		}
		if p.MACAddress, err = generateMAC(tx, net.ID, p.ID); err != nil {
			return err
		}
		changed = true
	}
	// Keep the addresses on DHCP subnets, in the network's subnet order; release the rest.
	var keep, drop []FixedIP
	for _, sn := range want {
		for _, f := range p.FixedIPs {
			if f.SubnetID == sn.ID {
				keep = append(keep, f)
			}
		}
	}
	for _, f := range p.FixedIPs {
		if !slices.Contains(keep, f) {
			drop = append(drop, f)
		}
	}
	if len(drop) > 0 {
		if err := releaseIPs(tx, drop); err != nil {
			return err
		}
		changed = true
	}
	out := []FixedIP{}
	for _, sn := range want {
		i := slices.IndexFunc(keep, func(f FixedIP) bool { return f.SubnetID == sn.ID })
		if i >= 0 {
			out = append(out, keep[i])
			continue
		}
		ip, err := firstFreeInPools(tx, sn, p)
		if err != nil {
			return err
		}
		if err := tx.Claim(claimIPs, ipKey(sn.ID, ip), p.ID); errors.Is(err, ErrClaimed) {
			return conflict("IpAddressInUse", "Unable to complete operation for network %s. The IP address %s (the DHCP port's on subnet %s) is in use.", net.ID, ip, sn.ID)
		} else if err != nil {
			return err
		}
		out = append(out, FixedIP{SubnetID: sn.ID, IPAddress: ip.String()})
		changed = true
	}
	// Addresses kept beyond the first on one subnet (an admin's edit) stay too.
	for _, f := range keep {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	if !changed {
		return nil
	}
	p.FixedIPs = out
	if !created {
		p.touch(rq.now)
	}
	return save(tx, KindPort, p.ID, p)
}

// firstFreeInPools is the DHCP port's address on sn: EUI-64 on a SLAAC subnet, else the
// lowest free address of the pools (Neutron's DHCP port is usually .2 behind a .1 gateway).
func firstFreeInPools(tx ReadTx, sn *Subnet, p *Port) (netip.Addr, error) {
	if slaac(sn) {
		return eui64(subnetPrefix(sn), p.MACAddress)
	}
	for _, pool := range sn.AllocationPools {
		lo, err1 := netip.ParseAddr(pool.Start)
		hi, err2 := netip.ParseAddr(pool.End)
		if err1 != nil || err2 != nil {
			return netip.Addr{}, fmt.Errorf("subnet %s: corrupt pool %v", sn.ID, pool)
		}
		a, ok, err := firstFree(tx, sn, lo, hi)
		if err != nil {
			return netip.Addr{}, err
		}
		if ok {
			return a, nil
		}
	}
	return netip.Addr{}, conflict("IpAddressGenerationFailure",
		"No more IP addresses available for subnet %s: its DHCP port needs one; widen allocation_pools or set enable_dhcp=false.", sn.ID)
}
