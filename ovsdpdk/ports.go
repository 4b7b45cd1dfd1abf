package ovsdpdk

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/offlane/offlane/ovsdpdk/vswitchd"
)

// PortType is the kind of tenant port (the OVS interface type, except PortSystem).
type PortType string

// Port types.
const (
	// PortVhostUser is a vhost-user port where OVS is the client and the VM (QEMU,
	// testpmd) the server of the socket: it survives OVS restarts.
	PortVhostUser PortType = "dpdkvhostuserclient"
	PortDPDK      PortType = "dpdk"     // a DPDK-driven device (Devargs)
	PortInternal  PortType = "internal" // an OVS-created netdev
	PortSystem    PortType = "system"   // an existing netdev: tap, veth, VF representor (OVS type "")
	PortVXLAN     PortType = "vxlan"
	PortGeneve    PortType = "geneve"
	PortGRE       PortType = "gre"
)

// External IDs tenant ports carry on their Interface row, as Neutron and OVN do.
const (
	KeyIfaceID     = "iface-id"     // the tenant port's id
	KeyAttachedMAC = "attached-mac" // the VM's MAC
	KeyIfaceStatus = "iface-status" // "active" once attached
)

// ErrPortNotFound is returned by PortGet for a name that is not an offlane tenant port.
var ErrPortNotFound = errors.New("port not found")

// Port is a tenant port to attach.
type Port struct {
	Name    string   // OVS port and interface name (at most 15 bytes for system/internal)
	Bridge  string   // "" = the Ports' bridge (the integration bridge)
	Type    PortType // required
	IfaceID string   // tenant port id (external_ids:iface-id); required except for tunnels
	MAC     string   // external_ids:attached-mac
	Tag     int      // access VLAN (the network's local VLAN); 0 = none
	MTU     int      // mtu_request; 0 = OVS default
	OFPort  int      // ofport_request; 0 = OVS picks
	// SocketPath is a vhost-user socket; default <socket dir>/<Name>.
	SocketPath string
	Devargs    string // dpdk: options:dpdk-devargs (required)
	// Tunnels: RemoteIP required ("flow" lets flows choose); LocalIP and Key optional.
	RemoteIP, LocalIP, Key string
}

// PortStatus is an attached port as OVS reports it.
type PortStatus struct {
	Name    string
	Bridge  string
	Type    PortType
	IfaceID string
	MAC     string
	Tag     int
	// OFPort is the OpenFlow port number: 0 while ovs-vswitchd has not added the
	// interface yet, -1 when it failed to (see Error).
	OFPort     int
	LinkState  string // "up", "down", or "" when not reported yet
	AdminState string
	Error      string // OVS's error for the interface, "" when none
	MTU        int
	SocketPath string // vhost-user ports
}

// PortsOptions configure Ports.
type PortsOptions struct {
	Bridge    string // default bridge for ports (default DefaultIntegrationBridge)
	SocketDir string // vhost-user socket directory (default DefaultVhostUserSocketDir)
}

// Ports attaches and detaches tenant ports. Every row it creates carries
// external_ids:offlane-owner=port; it refuses to change rows without that tag.
type Ports struct {
	c         *Client
	bridge    string
	socketDir string
}

// NewPorts returns the tenant port API on c.
func NewPorts(c *Client, opts PortsOptions) *Ports {
	if opts.Bridge == "" {
		opts.Bridge = DefaultIntegrationBridge
	}
	if opts.SocketDir == "" {
		opts.SocketDir = DefaultVhostUserSocketDir
	}
	return &Ports{c: c, bridge: opts.Bridge, socketDir: opts.SocketDir}
}

// wantPort is a Port turned into the rows it needs.
type wantPort struct {
	Port
	ifType   string
	options  map[string]string
	ifaceEID map[string]string
	portEID  map[string]string
}

func (ps *Ports) want(p Port) (wantPort, error) {
	w := wantPort{Port: p}
	if w.Bridge == "" {
		w.Bridge = ps.bridge
	}
	if w.Name == "" {
		return w, errors.New("port without a name")
	}
	if len(w.Name) > 64 || strings.ContainsAny(w.Name, "/ \t\n") {
		return w, fmt.Errorf("port %q: not a valid port name", w.Name)
	}
	w.options = map[string]string{}
	w.ifaceEID = map[string]string{KeyOwner: OwnerPort}
	w.portEID = map[string]string{KeyOwner: OwnerPort}
	tunnel := false
	switch p.Type {
	case PortVhostUser:
		w.ifType = string(p.Type)
		if w.SocketPath == "" {
			w.SocketPath = filepath.Join(ps.socketDir, w.Name)
		}
		if !filepath.IsAbs(w.SocketPath) {
			return w, fmt.Errorf("port %s: vhost-user socket %q is not an absolute path", w.Name, w.SocketPath)
		}
		w.options["vhost-server-path"] = w.SocketPath
	case PortDPDK:
		w.ifType = string(p.Type)
		if p.Devargs == "" {
			return w, fmt.Errorf("port %s: a dpdk port needs Devargs (e.g. a PCI address)", w.Name)
		}
		w.options["dpdk-devargs"] = p.Devargs
	case PortInternal, PortSystem:
		if !validIfName(w.Name) {
			return w, fmt.Errorf("port %q: a %s port is a netdev: at most 15 bytes, no '/', ':' or spaces", w.Name, p.Type)
		}
		if p.Type == PortInternal {
			w.ifType = "internal"
		}
	case PortVXLAN, PortGeneve, PortGRE:
		tunnel = true
		w.ifType = string(p.Type)
		if p.RemoteIP == "" {
			return w, fmt.Errorf("port %s: a %s port needs RemoteIP (an address or \"flow\")", w.Name, p.Type)
		}
		w.options["remote_ip"] = p.RemoteIP
		if p.LocalIP != "" {
			w.options["local_ip"] = p.LocalIP
		}
		if p.Key != "" {
			w.options["key"] = p.Key
		}
	default:
		return w, fmt.Errorf("port %s: unknown type %q", w.Name, p.Type)
	}
	if w.IfaceID == "" && !tunnel {
		return w, fmt.Errorf("port %s: IfaceID (the tenant port id) is required", w.Name)
	}
	if w.IfaceID != "" {
		w.ifaceEID[KeyIfaceID] = w.IfaceID
		w.ifaceEID[KeyIfaceStatus] = "active"
	}
	if w.MAC != "" {
		w.ifaceEID[KeyAttachedMAC] = strings.ToLower(w.MAC)
	}
	if w.Tag < 0 || w.Tag > 4095 || w.MTU < 0 || w.OFPort < 0 || w.OFPort > 65279 {
		return w, fmt.Errorf("port %s: tag, MTU or OFPort out of range", w.Name)
	}
	return w, nil
}

// tenantKeys are the Interface external_ids the Ports API manages.
var tenantKeys = []string{KeyOwner, KeyIfaceID, KeyAttachedMAC, KeyIfaceStatus}

// PortAdd attaches ports, idempotently: a port that exists with the same settings is
// left alone, one that differs is updated (moved to another bridge if need be). The
// ports go in transactions of the client's batch size; everything is checked against the
// database before the first one, so a conflict (a foreign row of the same name, a bridge
// that does not exist) writes nothing. Safe to retry, also after a lost connection.
func (ps *Ports) PortAdd(ctx context.Context, ports ...Port) error {
	wants := make([]wantPort, 0, len(ports))
	seen := map[string]bool{}
	for _, p := range ports {
		w, err := ps.want(p)
		if err != nil {
			return err
		}
		if seen[w.Name] {
			return fmt.Errorf("port %s listed twice", w.Name)
		}
		seen[w.Name] = true
		wants = append(wants, w)
	}
	c := ps.c
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := ps.precheck(ctx, wants); err != nil {
		return err
	}
	for start := 0; start < len(wants); start += c.batch {
		chunk := wants[start:min(start+c.batch, len(wants))]
		if _, err := c.transact(ctx, fmt.Sprintf("attach %d port(s) starting with %s", len(chunk), chunk[0].Name), func() ([]ovsdb.Operation, error) {
			return ps.addOps(ctx, chunk)
		}); err != nil {
			return err
		}
	}
	return nil
}

func (ps *Ports) precheck(ctx context.Context, wants []wantPort) error {
	var errs []error
	bridges := map[string]bool{}
	for _, w := range wants {
		if _, ok := bridges[w.Bridge]; !ok {
			err := ps.c.ovs.Get(ctx, &vswitchd.Bridge{Name: w.Bridge})
			bridges[w.Bridge] = err == nil
			if err != nil {
				errs = append(errs, fmt.Errorf("bridge %s does not exist: create it with `offlane node apply` first", w.Bridge))
			}
		}
		hp := &vswitchd.Port{Name: w.Name}
		if err := ps.c.ovs.Get(ctx, hp); err == nil && hp.ExternalIDs[KeyOwner] != OwnerPort {
			errs = append(errs, fmt.Errorf("port %s exists and is not an offlane tenant port (no external_ids:%s=%s): refusing to change it", w.Name, KeyOwner, OwnerPort))
		}
	}
	return errors.Join(errs...)
}

// addOps builds the operations for one chunk from the current cache.
func (ps *Ports) addOps(ctx context.Context, chunk []wantPort) ([]ovsdb.Operation, error) {
	c := ps.c
	var ops []ovsdb.Operation
	var nm namer
	bridgeUUID := map[string]string{}
	inserts := map[string][]string{} // bridge uuid -> new port (named) uuids
	removes := map[string][]string{} // bridge uuid -> port uuids leaving it
	var order []string
	var where map[string]string // port uuid -> bridge uuid, built on the first move
	for _, w := range chunk {
		bu, ok := bridgeUUID[w.Bridge]
		if !ok {
			br := &vswitchd.Bridge{Name: w.Bridge}
			if err := c.ovs.Get(ctx, br); err != nil {
				return nil, fmt.Errorf("bridge %s: %w", w.Bridge, err)
			}
			bu = br.UUID
			bridgeUUID[w.Bridge] = bu
			order = append(order, bu)
		}
		hp := &vswitchd.Port{Name: w.Name}
		err := c.ovs.Get(ctx, hp)
		switch {
		case errors.Is(err, client.ErrNotFound):
			pid, pops, err := ps.insertOps(&nm, w)
			if err != nil {
				return nil, err
			}
			ops = append(ops, pops...)
			inserts[bu] = append(inserts[bu], pid)
			continue
		case err != nil:
			return nil, fmt.Errorf("port %s: %w", w.Name, err)
		case hp.ExternalIDs[KeyOwner] != OwnerPort:
			return nil, fmt.Errorf("port %s exists and is not an offlane tenant port: refusing to change it", w.Name)
		}
		if where == nil {
			where = map[string]string{}
			var brs []*vswitchd.Bridge
			if err := c.ovs.List(ctx, &brs); err != nil {
				return nil, err
			}
			for _, b := range brs {
				for _, pu := range b.Ports {
					where[pu] = b.UUID
				}
			}
		}
		if cur := where[hp.UUID]; cur != bu {
			// Another bridge: replace the rows (same name, new bridge) in this transaction.
			if cur != "" {
				removes[cur] = append(removes[cur], hp.UUID)
			}
			dops, err := c.portDeleteOps(hp)
			if err != nil {
				return nil, err
			}
			pid, pops, err := ps.insertOps(&nm, w)
			if err != nil {
				return nil, err
			}
			ops = append(append(ops, dops...), pops...)
			inserts[bu] = append(inserts[bu], pid)
			continue
		}
		uops, err := ps.updateOps(ctx, w, hp)
		if err != nil {
			return nil, err
		}
		ops = append(ops, uops...)
	}
	for bu, gone := range removes {
		br := &vswitchd.Bridge{UUID: bu}
		o, err := c.ovs.Where(br).Mutate(br, model.Mutation{Field: &br.Ports, Mutator: ovsdb.MutateOperationDelete, Value: gone})
		if err != nil {
			return nil, err
		}
		ops = append(ops, o...)
	}
	for _, bu := range order {
		if len(inserts[bu]) == 0 {
			continue
		}
		br := &vswitchd.Bridge{UUID: bu}
		o, err := c.ovs.Where(br).Mutate(br, model.Mutation{Field: &br.Ports, Mutator: ovsdb.MutateOperationInsert, Value: inserts[bu]})
		if err != nil {
			return nil, err
		}
		ops = append(ops, o...)
	}
	if len(ops) == 0 {
		return nil, errNothingToDo
	}
	return ops, nil
}

func (ps *Ports) insertOps(nm *namer, w wantPort) (string, []ovsdb.Operation, error) {
	iface := &vswitchd.Interface{UUID: nm.next(), Name: w.Name, Type: w.ifType, Options: w.options, ExternalIDs: w.ifaceEID}
	if w.MTU > 0 {
		iface.MTURequest = &w.MTU
	}
	if w.OFPort > 0 {
		iface.OfportRequest = &w.OFPort
	}
	iops, err := ps.c.ovs.Create(iface)
	if err != nil {
		return "", nil, fmt.Errorf("interface %s: %w", w.Name, err)
	}
	port := &vswitchd.Port{UUID: nm.next(), Name: w.Name, Interfaces: []string{iface.UUID}, ExternalIDs: w.portEID}
	if w.Tag > 0 {
		port.Tag = &w.Tag
	}
	pops, err := ps.c.ovs.Create(port)
	if err != nil {
		return "", nil, fmt.Errorf("port %s: %w", w.Name, err)
	}
	return port.UUID, append(iops, pops...), nil
}

// updateOps brings an existing owned port on the right bridge to the wanted settings.
func (ps *Ports) updateOps(ctx context.Context, w wantPort, hp *vswitchd.Port) ([]ovsdb.Operation, error) {
	c := ps.c
	var ops []ovsdb.Operation
	add := func(o []ovsdb.Operation, err error) error {
		if err != nil {
			return err
		}
		ops = append(ops, o...)
		return nil
	}
	var hi *vswitchd.Interface
	for _, iu := range hp.Interfaces {
		i := &vswitchd.Interface{UUID: iu}
		if err := c.ovs.Get(ctx, i); err == nil && i.Name == w.Name {
			hi = i
		}
	}
	if hi == nil {
		return nil, fmt.Errorf("port %s: its interface row is missing", w.Name)
	}
	port := &vswitchd.Port{UUID: hp.UUID}
	wantTag := (*int)(nil)
	if w.Tag > 0 {
		wantTag = &w.Tag
	}
	if !equalPtr(hp.Tag, wantTag) {
		port.Tag = wantTag
		if err := add(c.ovs.Where(port).Update(port, &port.Tag)); err != nil {
			return nil, err
		}
	}
	if set, del := managedMapDiff(w.portEID, hp.ExternalIDs, []string{KeyOwner}); len(set)+len(del) > 0 {
		if err := add(c.ovs.Where(port).Mutate(port, mapMutations(&port.ExternalIDs, set, del)...)); err != nil {
			return nil, err
		}
	}
	iface := &vswitchd.Interface{UUID: hi.UUID}
	var fields []any
	if hi.Type != w.ifType {
		iface.Type = w.ifType
		fields = append(fields, &iface.Type)
	}
	if !maps.Equal(hi.Options, w.options) {
		iface.Options = w.options
		fields = append(fields, &iface.Options)
	}
	wantMTU, wantOF := (*int)(nil), (*int)(nil)
	if w.MTU > 0 {
		wantMTU = &w.MTU
	}
	if w.OFPort > 0 {
		wantOF = &w.OFPort
	}
	if !equalPtr(hi.MTURequest, wantMTU) {
		iface.MTURequest = wantMTU
		fields = append(fields, &iface.MTURequest)
	}
	if !equalPtr(hi.OfportRequest, wantOF) {
		iface.OfportRequest = wantOF
		fields = append(fields, &iface.OfportRequest)
	}
	if len(fields) > 0 {
		if err := add(c.ovs.Where(iface).Update(iface, fields...)); err != nil {
			return nil, err
		}
	}
	if set, del := managedMapDiff(w.ifaceEID, hi.ExternalIDs, tenantKeys); len(set)+len(del) > 0 {
		if err := add(c.ovs.Where(iface).Mutate(iface, mapMutations(&iface.ExternalIDs, set, del)...)); err != nil {
			return nil, err
		}
	}
	return ops, nil
}

// managedMapDiff is ownedMapDiff for an explicit list of managed keys.
func managedMapDiff(want, have map[string]string, managed []string) (map[string]string, []string) {
	set := map[string]string{}
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			set[k] = v
		}
	}
	var del []string
	for _, k := range managed {
		if _, ok := want[k]; !ok {
			if _, ok := have[k]; ok {
				del = append(del, k)
			}
		}
	}
	return set, del
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// PortDel detaches ports by name, idempotently: names that do not exist are skipped.
// Ports that exist but are not offlane tenant ports are refused before anything is
// written. Batched like PortAdd; safe to retry.
func (ps *Ports) PortDel(ctx context.Context, names ...string) error {
	c := ps.c
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	var errs []error
	for _, n := range names {
		hp := &vswitchd.Port{Name: n}
		if err := c.ovs.Get(ctx, hp); err == nil && hp.ExternalIDs[KeyOwner] != OwnerPort {
			errs = append(errs, fmt.Errorf("port %s is not an offlane tenant port: refusing to delete it", n))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for start := 0; start < len(names); start += c.batch {
		chunk := names[start:min(start+c.batch, len(names))]
		if _, err := c.transact(ctx, fmt.Sprintf("detach %d port(s) starting with %s", len(chunk), chunk[0]), func() ([]ovsdb.Operation, error) {
			return ps.delOps(ctx, chunk)
		}); err != nil {
			return err
		}
	}
	return nil
}

func (ps *Ports) delOps(ctx context.Context, names []string) ([]ovsdb.Operation, error) {
	c := ps.c
	var brs []*vswitchd.Bridge
	if err := c.ovs.List(ctx, &brs); err != nil {
		return nil, err
	}
	where := map[string]string{}
	for _, b := range brs {
		for _, pu := range b.Ports {
			where[pu] = b.UUID
		}
	}
	var ops []ovsdb.Operation
	gone := map[string][]string{}
	for _, n := range names {
		hp := &vswitchd.Port{Name: n}
		err := c.ovs.Get(ctx, hp)
		if errors.Is(err, client.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("port %s: %w", n, err)
		}
		if hp.ExternalIDs[KeyOwner] != OwnerPort {
			return nil, fmt.Errorf("port %s is not an offlane tenant port: refusing to delete it", n)
		}
		if bu := where[hp.UUID]; bu != "" {
			gone[bu] = append(gone[bu], hp.UUID)
		}
		dops, err := c.portDeleteOps(hp)
		if err != nil {
			return nil, err
		}
		ops = append(ops, dops...)
	}
	for bu, uuids := range gone {
		br := &vswitchd.Bridge{UUID: bu}
		o, err := c.ovs.Where(br).Mutate(br, model.Mutation{Field: &br.Ports, Mutator: ovsdb.MutateOperationDelete, Value: uuids})
		if err != nil {
			return nil, err
		}
		ops = append(ops, o...)
	}
	if len(ops) == 0 {
		return nil, errNothingToDo
	}
	return ops, nil
}

// PortGet returns one tenant port's status from the cache, or ErrPortNotFound.
func (ps *Ports) PortGet(ctx context.Context, name string) (*PortStatus, error) {
	c := ps.c
	hp := &vswitchd.Port{Name: name}
	if err := c.ovs.Get(ctx, hp); err != nil {
		if errors.Is(err, client.ErrNotFound) {
			return nil, fmt.Errorf("%s: %w", name, ErrPortNotFound)
		}
		return nil, fmt.Errorf("port %s: %w", name, err)
	}
	if hp.ExternalIDs[KeyOwner] != OwnerPort {
		return nil, fmt.Errorf("%s is not an offlane tenant port: %w", name, ErrPortNotFound)
	}
	var brs []*vswitchd.Bridge
	if err := c.ovs.WhereCache(func(b *vswitchd.Bridge) bool {
		for _, pu := range b.Ports {
			if pu == hp.UUID {
				return true
			}
		}
		return false
	}).List(ctx, &brs); err != nil {
		return nil, err
	}
	bridge := ""
	if len(brs) > 0 {
		bridge = brs[0].Name
	}
	return ps.status(ctx, hp, bridge)
}

// PortList returns every tenant port (offlane-owner=port) with its status, by name.
func (ps *Ports) PortList(ctx context.Context) ([]PortStatus, error) {
	st, err := ps.c.view(ctx)
	if err != nil {
		return nil, err
	}
	where := map[string]string{}
	for _, b := range st.Bridges {
		for _, pu := range b.Ports {
			where[pu] = b.Name
		}
	}
	var out []PortStatus
	for _, hp := range st.Ports {
		if hp.ExternalIDs[KeyOwner] == OwnerPort {
			out = append(out, statusOf(st, hp, where[hp.UUID]))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (ps *Ports) status(ctx context.Context, hp *vswitchd.Port, bridge string) (*PortStatus, error) {
	st := &State{Interfaces: map[string]*vswitchd.Interface{}}
	for _, iu := range hp.Interfaces {
		i := &vswitchd.Interface{UUID: iu}
		if err := ps.c.ovs.Get(ctx, i); err == nil {
			st.Interfaces[iu] = i
		}
	}
	s := statusOf(st, hp, bridge)
	return &s, nil
}

// statusOf is a port's status from a snapshot (its interfaces looked up there).
func statusOf(st *State, hp *vswitchd.Port, bridge string) PortStatus {
	out := PortStatus{Name: hp.Name, Bridge: bridge}
	if hp.Tag != nil {
		out.Tag = *hp.Tag
	}
	for _, iu := range hp.Interfaces {
		i := st.Interfaces[iu]
		if i == nil {
			continue
		}
		out.Type = PortType(i.Type)
		if i.Type == "" {
			out.Type = PortSystem
		}
		out.IfaceID = i.ExternalIDs[KeyIfaceID]
		out.MAC = i.ExternalIDs[KeyAttachedMAC]
		if i.Ofport != nil {
			out.OFPort = *i.Ofport
		}
		out.LinkState = deref(i.LinkState)
		out.AdminState = deref(i.AdminState)
		out.Error = deref(i.Error)
		if i.MTU != nil {
			out.MTU = *i.MTU
		}
		out.SocketPath = i.Options["vhost-server-path"]
	}
	return out
}

// PortWait polls the cache until cond holds for the named port (e.g. link up) and returns
// its status; it fails when ctx ends first, with the last status seen.
func (ps *Ports) PortWait(ctx context.Context, name string, cond func(*PortStatus) bool) (*PortStatus, error) {
	var last *PortStatus
	var lastErr error
	delay := defaultPollStart
	for {
		st, err := ps.PortGet(ctx, name)
		if err == nil && cond(st) {
			return st, nil
		}
		last, lastErr = st, err
		if err := sleepCtx(ctx, delay); err != nil {
			if lastErr != nil {
				return nil, fmt.Errorf("port %s: %w (last error: %w)", name, err, lastErr)
			}
			return last, fmt.Errorf("port %s: %w (last status: %+v)", name, err, *last)
		}
		delay = min(2*delay, defaultPollMax)
	}
}
