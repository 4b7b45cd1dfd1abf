package kernel

import (
	"strings"

	"go.uber.org/zap"
)

// DefaultNamespacePrefix names router namespaces as Neutron's L3 agent does.
const DefaultNamespacePrefix = "qrouter-"

// RoutersOptions configure Routers.
type RoutersOptions struct {
	// NamespacePrefix + router ID names a router's namespace (default "qrouter-"). Every
	// namespace with the prefix belongs to this Routers: Prune deletes those it is not
	// told to keep. Labs running several "nodes" on one machine give each its own prefix.
	NamespacePrefix string
	// HostNamespace is where the switch side of the veths lives ("" = this process's).
	HostNamespace string
	// Switch attaches the qr-/qg- host ends to the integration bridge (*ovsdpdk.Ports);
	// nil leaves them in HostNamespace for the caller to wire.
	Switch Switch
	Logger *zap.Logger
}

// Routers is the nftables router backend: each router is a namespace with one veth
// port per router port (qr-<port> on tenant subnets, qg-<port> on the external network),
// kernel forwarding and routes, and one nftables table ("ip offlane") of DNAT/SNAT rules.
// It keeps no state of its own: every call diffs the kernel against the IR, so it
// survives restarts. Calls for one router must not run concurrently.
type Routers struct {
	prefix string
	hostNS string
	sw     Switch
	plug   *Plugger
	log    *zap.Logger
}

// NewRouters returns the router backend.
func NewRouters(opts RoutersOptions) *Routers {
	if opts.NamespacePrefix == "" {
		opts.NamespacePrefix = DefaultNamespacePrefix
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Routers{prefix: opts.NamespacePrefix, hostNS: opts.HostNamespace, sw: opts.Switch,
		plug: NewPlugger(PlugOptions{HostNamespace: opts.HostNamespace, Switch: opts.Switch}),
		log:  opts.Logger.Named("routers")}
}

// Namespace is router id's namespace.
func (rs *Routers) Namespace(id string) string { return rs.prefix + id }

// routerID is the router of a namespace name, "" when the name is not one of ours.
func (rs *Routers) routerID(ns string) string {
	id, ok := strings.CutPrefix(ns, rs.prefix)
	if !ok {
		return ""
	}
	return id
}

// isRouterIf reports whether an interface name is a router port's.
func isRouterIf(name string) bool {
	return strings.HasPrefix(name, PrefixRouterInterface) || strings.HasPrefix(name, PrefixRouterGateway)
}
