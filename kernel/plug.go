package kernel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/offlane/offlane/ovsdpdk"
)

// ErrNotSupported is returned off Linux.
var ErrNotSupported = errors.New("kernel: network namespaces and nftables need Linux")

// Interface name prefixes, Neutron's.
const (
	PrefixRouterInterface = "qr-" // a router's port on a tenant subnet
	PrefixRouterGateway   = "qg-" // a router's port on its external network
	PrefixTap             = "tap" // DHCP and VIF ports
	ifNameMax             = 15    // IFNAMSIZ - 1
	portIDChars           = 11    // Neutron's DEVICE_NAME_MAX_LEN - len("qr-") - 1
	nsNameMax             = 255   // a file name under /run/netns
)

// IfName is a port's interface name: prefix + 11 characters of the port ID, as Neutron
// names them (at most 15 bytes). Neutron takes the ID's first 11 characters, which are
// random in its UUID4s; offlane's IDs are time-ordered (ports created in the same
// millisecond share their first 11 characters), so the 11 are the ID's last hexadecimal
// digits, its random part ("qr-" + "f0e1d2c3b4a"); a short ID is used whole.
func IfName(prefix, portID string) string {
	id := portID
	if len(id) > portIDChars {
		id = strings.ReplaceAll(id, "-", "")
		id = id[max(0, len(id)-portIDChars):]
	}
	return prefix + id
}

// Switch attaches veth ends to the integration bridge. *ovsdpdk.Ports implements it
// (external_ids:iface-id = the tenant port's ID makes the port a local port of the L2
// pipeline); a test may use a Linux bridge.
type Switch interface {
	// PortAdd attaches ports idempotently (an identical port is left alone).
	PortAdd(ctx context.Context, ports ...ovsdpdk.Port) error
	// PortDel detaches ports by name; names that do not exist are skipped.
	PortDel(ctx context.Context, names ...string) error
	// PortGet returns a port's status, or an error wrapping ovsdpdk.ErrPortNotFound.
	PortGet(ctx context.Context, name string) (*ovsdpdk.PortStatus, error)
}

// PlugSpec is one veth pair between a namespace and the switch.
type PlugSpec struct {
	// Namespace is the named network namespace (under /run/netns) that gets IfName;
	// created when missing.
	Namespace string
	IfName    string // the interface inside Namespace (≤ 15 bytes)
	// HostIfName is the veth end attached to the switch (≤ 15 bytes; "" = IfName: the two
	// ends live in different namespaces, so they may share the name, which keeps
	// `ovs-vsctl show` and `ip -n <ns> link` in step).
	HostIfName string
	MAC        string         // IfName's MAC ("" = the kernel's random one)
	Addrs      []netip.Prefix // IfName's addresses with their prefix lengths
	MTU        int            // both ends (0 = 1500)
	IfaceID    string         // the tenant port ID (external_ids:iface-id); required with a Switch
	// Gateway, when valid, is the namespace's default route, via IfName (a VM's
	// subnet gateway).
	Gateway netip.Addr
	// NoTxChecksum turns TX checksum offload off on IfName (TxChecksumOff): for
	// endpoints on the userspace datapath.
	NoTxChecksum bool
}

func (s PlugSpec) hostName() string {
	if s.HostIfName == "" {
		return s.IfName
	}
	return s.HostIfName
}

func (s PlugSpec) validate() error {
	if err := checkNSName(s.Namespace); err != nil {
		return fmt.Errorf("plug %s: %w", s.IfName, err)
	}
	for _, n := range []string{s.IfName, s.hostName()} {
		if n == "" || len(n) > ifNameMax || strings.ContainsAny(n, "/: \t\n") {
			return fmt.Errorf("plug: interface name %q: want 1-15 bytes without '/', ':' or spaces", n)
		}
	}
	if s.MAC != "" {
		hw, err := net.ParseMAC(s.MAC)
		if err != nil || len(hw) != 6 || hw[0]&1 == 1 {
			return fmt.Errorf("plug %s: MAC %q is not a unicast Ethernet address", s.IfName, s.MAC)
		}
	}
	for _, a := range s.Addrs {
		if !a.IsValid() {
			return fmt.Errorf("plug %s: an invalid address", s.IfName)
		}
	}
	if s.Gateway.IsValid() {
		onLink := false
		for _, a := range s.Addrs {
			onLink = onLink || a.Masked().Contains(s.Gateway)
		}
		if !onLink {
			return fmt.Errorf("plug %s: gateway %s is on none of the addresses' subnets %v", s.IfName, s.Gateway, s.Addrs)
		}
	}
	if s.MTU < 0 || (s.MTU > 0 && s.MTU < 68) || s.MTU > 65535 {
		return fmt.Errorf("plug %s: MTU %d out of range (68-65535, 0 = 1500)", s.IfName, s.MTU)
	}
	return nil
}

func checkNSName(ns string) error {
	if ns == "" || len(ns) > nsNameMax || strings.ContainsAny(ns, "/ \t\n") || ns == "." || ns == ".." {
		return fmt.Errorf("namespace name %q: want a file name (no '/', no spaces)", ns)
	}
	return nil
}

// PlugOptions configure a Plugger.
type PlugOptions struct {
	// HostNamespace is the named namespace of the switch side ("" = this process's, where
	// ovs-vswitchd runs in production; the lab runs each vswitchd in its own).
	HostNamespace string
	// Switch attaches the host ends; nil leaves them unattached in HostNamespace.
	Switch Switch
}

// Plugger creates and removes namespace ports: veth pairs with one end configured inside
// a namespace and the other attached to the switch.
type Plugger struct {
	hostNS string
	sw     Switch
}

// NewPlugger returns a Plugger.
func NewPlugger(opts PlugOptions) *Plugger {
	return &Plugger{hostNS: opts.HostNamespace, sw: opts.Switch}
}
