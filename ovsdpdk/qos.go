package ovsdpdk

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"

	"github.com/ovn-kubernetes/libovsdb/ovsdb"
	"go.uber.org/zap"

	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/ovsdpdk/vswitchd"
)

// QoS rows offlane creates carry external_ids:offlane-owner=qos and offlane-port=<the
// tenant port id>; QoS and Queue rows without the owner tag are foreign and never
// changed or deleted.
const (
	OwnerQoS   = "qos"
	KeyQoSPort = "offlane-port"
)

// QoS applies the OVSDB side of tenant ports' QoS (offload.OVSQoS): the Interface's
// ingress_policing_rate/burst (traffic from the VM) and an owned QoS row, with queue 0
// for linux-htb, on the Port (traffic to the VM).
type QoS struct {
	c   *Client
	log *zap.Logger
}

// NewQoS returns the QoS applier on c.
func NewQoS(c *Client, log *zap.Logger) *QoS {
	if log == nil {
		log = zap.NewNop()
	}
	return &QoS{c: c, log: log.Named("qos")}
}

// QoSResult is what an Apply did.
type QoSResult struct {
	// Transacted is true when a transaction was sent (false: already as wanted).
	Transacted bool `json:"transacted"`
	// Changed lists the tenant ports (iface-id) whose QoS settings changed, sorted.
	Changed []string `json:"changed,omitempty"`
	// Unattached lists the wanted ports without an OVS interface yet (applied once
	// attached), sorted.
	Unattached []string `json:"unattached,omitempty"`
	// Pruned is the number of owned QoS and Queue rows deleted.
	Pruned int `json:"pruned"`
}

// Apply makes every offlane tenant port's QoS settings exactly want (ports not in want
// get none): ingress policing on the Interface, the owned QoS row (and its queue) on the
// Port. Owned QoS and Queue rows nothing references any more are deleted. Everything
// goes in one transaction, built from the cache and diffed, so an Apply without changes
// sends nothing; idempotent and safe to retry. A port whose Port row references a foreign
// QoS row keeps it: Apply refuses (an error naming the port) before sending anything.
func (q *QoS) Apply(ctx context.Context, want []offload.OVSPortQoS) (*QoSResult, error) {
	byID := make(map[string]*offload.OVSPortQoS, len(want))
	for i := range want {
		w := &want[i]
		if _, dup := byID[w.PortID]; dup {
			return nil, fmt.Errorf("qos: port %s listed twice", w.PortID)
		}
		if err := checkPortQoS(w); err != nil {
			return nil, err
		}
		byID[w.PortID] = w
	}
	c := q.c
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	var res *QoSResult
	_, err := c.transact(ctx, "apply port QoS", func() ([]ovsdb.Operation, error) {
		var err error
		var ops []ovsdb.Operation
		ops, res, err = q.ops(ctx, byID)
		if err == nil && len(ops) == 0 {
			err = errNothingToDo
		}
		return ops, err
	})
	if err != nil {
		return nil, err
	}
	res.Transacted = len(res.Changed) > 0 || res.Pruned > 0
	if res.Transacted {
		q.log.Debug("port QoS applied", zap.Strings("changed", res.Changed), zap.Int("pruned", res.Pruned))
	}
	return res, nil
}

func checkPortQoS(w *offload.OVSPortQoS) error {
	if w.PortID == "" {
		return errors.New("qos: a port QoS without port_id")
	}
	if w.PolicingKbps < 0 || w.PolicingBurstKb < 0 {
		return fmt.Errorf("qos: port %s: negative ingress policing rate or burst", w.PortID)
	}
	switch w.Type {
	case "", string(offload.QoSMechEgressPolicer), string(offload.QoSMechLinuxHTB):
	default:
		return fmt.Errorf("qos: port %s: QoS type %q: want egress-policer or linux-htb", w.PortID, w.Type)
	}
	return nil
}

// tenantIface is an offlane tenant port's Port and Interface rows.
type tenantIface struct {
	port  *vswitchd.Port
	iface *vswitchd.Interface
}

func (q *QoS) ops(ctx context.Context, want map[string]*offload.OVSPortQoS) ([]ovsdb.Operation, *QoSResult, error) {
	c := q.c
	var ports []*vswitchd.Port
	var ifaces []*vswitchd.Interface
	var qoss []*vswitchd.QoS
	var queues []*vswitchd.Queue
	for _, l := range []struct {
		what string
		rows any
	}{{"Port", &ports}, {"Interface", &ifaces}, {"QoS", &qoss}, {"Queue", &queues}} {
		if err := c.ovs.List(ctx, l.rows); err != nil {
			return nil, nil, fmt.Errorf("read %s table: %w", l.what, err)
		}
	}
	ifaceByUUID := make(map[string]*vswitchd.Interface, len(ifaces))
	for _, i := range ifaces {
		ifaceByUUID[i.UUID] = i
	}
	qosByUUID := make(map[string]*vswitchd.QoS, len(qoss))
	for _, r := range qoss {
		qosByUUID[r.UUID] = r
	}
	queueByUUID := make(map[string]*vswitchd.Queue, len(queues))
	for _, r := range queues {
		queueByUUID[r.UUID] = r
	}
	tenants := map[string]tenantIface{}
	referenced := map[string]bool{} // QoS rows some Port uses
	for _, p := range ports {
		if p.QOS != nil {
			referenced[*p.QOS] = true
		}
		if p.ExternalIDs[KeyOwner] != OwnerPort || len(p.Interfaces) != 1 {
			continue
		}
		i := ifaceByUUID[p.Interfaces[0]]
		if i == nil || i.ExternalIDs[KeyIfaceID] == "" {
			continue
		}
		tenants[i.ExternalIDs[KeyIfaceID]] = tenantIface{port: p, iface: i}
	}

	res := &QoSResult{}
	var ops []ovsdb.Operation
	var nm namer
	var errs []error
	add := func(o []ovsdb.Operation, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		ops = append(ops, o...)
	}
	dropped := map[string]bool{} // owned QoS rows this transaction unreferences
	changed := map[string]bool{}
	for _, id := range sortedKeys(tenants) {
		t := tenants[id]
		w := want[id]
		if w == nil {
			w = &offload.OVSPortQoS{PortID: id}
		}
		// Ingress policing (from the VM).
		if t.iface.IngressPolicingRate != w.PolicingKbps || t.iface.IngressPolicingBurst != w.PolicingBurstKb {
			i := &vswitchd.Interface{UUID: t.iface.UUID, IngressPolicingRate: w.PolicingKbps, IngressPolicingBurst: w.PolicingBurstKb}
			add(c.ovs.Where(i).Update(i, &i.IngressPolicingRate, &i.IngressPolicingBurst))
			changed[id] = true
		}
		// The QoS row (to the VM).
		var cur *vswitchd.QoS
		if t.port.QOS != nil {
			cur = qosByUUID[*t.port.QOS]
			if cur != nil && cur.ExternalIDs[KeyOwner] != OwnerQoS {
				if w.Type != "" {
					errs = append(errs, fmt.Errorf("port %s (%s) uses QoS row %s, which is not offlane's (no external_ids:%s=%s): remove it or its policy; left alone",
						id, t.port.Name, cur.UUID, KeyOwner, OwnerQoS))
				}
				continue
			}
		}
		switch {
		case w.Type == "" && cur == nil:
		case w.Type == "":
			p := &vswitchd.Port{UUID: t.port.UUID}
			add(c.ovs.Where(p).Update(p, &p.QOS))
			dropped[cur.UUID] = true
			changed[id] = true
		case cur == nil:
			qid, qops, err := q.insertQoS(&nm, id, w)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			ops = append(ops, qops...)
			p := &vswitchd.Port{UUID: t.port.UUID, QOS: &qid}
			add(c.ovs.Where(p).Update(p, &p.QOS))
			changed[id] = true
		default:
			uops, n, err := q.updateQoS(&nm, id, w, cur, queueByUUID, dropped)
			if err != nil {
				errs = append(errs, err)
			} else if n {
				ops = append(ops, uops...)
				changed[id] = true
			}
		}
	}
	for id := range want {
		if _, ok := tenants[id]; !ok {
			res.Unattached = append(res.Unattached, id)
		}
	}
	// Owned rows nothing references any more (a detached port, a crash between steps).
	queueUsed := map[string]bool{}
	for _, r := range qoss {
		if r.ExternalIDs[KeyOwner] == OwnerQoS && (dropped[r.UUID] || !referenced[r.UUID]) {
			add(c.ovs.Where(&vswitchd.QoS{UUID: r.UUID}).Delete())
			res.Pruned++
			continue
		}
		for _, qu := range r.Queues {
			queueUsed[qu] = true
		}
	}
	for _, r := range queues {
		if r.ExternalIDs[KeyOwner] == OwnerQoS && !queueUsed[r.UUID] && !dropped[r.UUID] {
			add(c.ovs.Where(&vswitchd.Queue{UUID: r.UUID}).Delete())
			res.Pruned++
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, fmt.Errorf("port QoS refused, nothing sent: %w", err)
	}
	for id := range changed {
		res.Changed = append(res.Changed, id)
	}
	sort.Strings(res.Changed)
	sort.Strings(res.Unattached)
	return ops, res, nil
}

func qosTags(portID string) map[string]string {
	return map[string]string{KeyOwner: OwnerQoS, KeyQoSPort: portID}
}

func (q *QoS) insertQoS(nm *namer, id string, w *offload.OVSPortQoS) (string, []ovsdb.Operation, error) {
	var ops []ovsdb.Operation
	row := &vswitchd.QoS{UUID: nm.next(), Type: w.Type, OtherConfig: cloneMap(w.OtherConfig), ExternalIDs: qosTags(id)}
	if w.Queue != nil {
		qu := &vswitchd.Queue{UUID: nm.next(), OtherConfig: cloneMap(w.Queue), ExternalIDs: qosTags(id)}
		o, err := q.c.ovs.Create(qu)
		if err != nil {
			return "", nil, fmt.Errorf("port %s: queue: %w", id, err)
		}
		ops = append(ops, o...)
		row.Queues = map[int]string{0: qu.UUID}
	}
	o, err := q.c.ovs.Create(row)
	if err != nil {
		return "", nil, fmt.Errorf("port %s: qos: %w", id, err)
	}
	return row.UUID, append(ops, o...), nil
}

// updateQoS brings an owned QoS row (and its queue 0) to w in place; false when it
// already is. Owned queues it stops using are deleted (and marked in dropped).
func (q *QoS) updateQoS(nm *namer, id string, w *offload.OVSPortQoS, cur *vswitchd.QoS, queues map[string]*vswitchd.Queue, dropped map[string]bool) ([]ovsdb.Operation, bool, error) {
	var ops []ovsdb.Operation
	var errs []error
	add := func(o []ovsdb.Operation, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("port %s: qos %s: %w", id, cur.UUID, err))
			return
		}
		ops = append(ops, o...)
	}
	c := q.c
	row := &vswitchd.QoS{UUID: cur.UUID}
	var fields []any
	if cur.Type != w.Type {
		row.Type = w.Type
		fields = append(fields, &row.Type)
	}
	if !maps.Equal(cur.OtherConfig, w.OtherConfig) {
		row.OtherConfig = cloneMap(w.OtherConfig)
		fields = append(fields, &row.OtherConfig)
	}
	var curQ *vswitchd.Queue
	if u, ok := cur.Queues[0]; ok {
		curQ = queues[u]
	}
	switch {
	case w.Queue == nil && len(cur.Queues) > 0:
		row.Queues = map[int]string{}
		fields = append(fields, &row.Queues)
		for _, u := range cur.Queues {
			if qu := queues[u]; qu != nil && qu.ExternalIDs[KeyOwner] == OwnerQoS {
				dropped[u] = true
				add(c.ovs.Where(&vswitchd.Queue{UUID: u}).Delete())
			}
		}
	case w.Queue != nil && (curQ == nil || curQ.ExternalIDs[KeyOwner] != OwnerQoS || len(cur.Queues) != 1):
		qu := &vswitchd.Queue{UUID: nm.next(), OtherConfig: cloneMap(w.Queue), ExternalIDs: qosTags(id)}
		add(c.ovs.Create(qu))
		row.Queues = map[int]string{0: qu.UUID}
		fields = append(fields, &row.Queues)
	case w.Queue != nil && !maps.Equal(curQ.OtherConfig, w.Queue):
		qu := &vswitchd.Queue{UUID: curQ.UUID, OtherConfig: cloneMap(w.Queue)}
		add(c.ovs.Where(qu).Update(qu, &qu.OtherConfig))
	}
	if len(fields) > 0 {
		add(c.ovs.Where(row).Update(row, fields...))
	}
	return ops, len(ops) > 0, errors.Join(errs...)
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	maps.Copy(out, m)
	return out
}

// PortQoSState is one tenant port's QoS as the database holds it (for tests and
// explain).
type PortQoSState struct {
	PortID          string
	PolicingKbps    int
	PolicingBurstKb int
	QoSType         string
	QoSOwned        bool
	OtherConfig     map[string]string
	Queue           map[string]string
}

// PortQoS reads a tenant port's QoS settings from the cache (by iface-id).
func (q *QoS) PortQoS(ctx context.Context, portID string) (*PortQoSState, error) {
	var ifaces []*vswitchd.Interface
	if err := q.c.ovs.WhereCache(func(i *vswitchd.Interface) bool { return i.ExternalIDs[KeyIfaceID] == portID }).List(ctx, &ifaces); err != nil {
		return nil, err
	}
	if len(ifaces) != 1 {
		return nil, fmt.Errorf("port %s: %d interfaces with this iface-id: %w", portID, len(ifaces), ErrPortNotFound)
	}
	i := ifaces[0]
	st := &PortQoSState{PortID: portID, PolicingKbps: i.IngressPolicingRate, PolicingBurstKb: i.IngressPolicingBurst}
	p := &vswitchd.Port{Name: i.Name}
	if err := q.c.ovs.Get(ctx, p); err != nil {
		return nil, fmt.Errorf("port %s: %w", portID, err)
	}
	if p.QOS == nil {
		return st, nil
	}
	r := &vswitchd.QoS{UUID: *p.QOS}
	if err := q.c.ovs.Get(ctx, r); err != nil {
		return nil, fmt.Errorf("port %s: qos %s: %w", portID, *p.QOS, err)
	}
	st.QoSType, st.QoSOwned, st.OtherConfig = r.Type, r.ExternalIDs[KeyOwner] == OwnerQoS, r.OtherConfig
	if u, ok := r.Queues[0]; ok {
		qu := &vswitchd.Queue{UUID: u}
		if err := q.c.ovs.Get(ctx, qu); err == nil {
			st.Queue = qu.OtherConfig
		}
	}
	return st, nil
}

// QoSRows counts offlane's QoS and Queue rows.
type QoSRows struct{ QoS, Queues int }

// Rows counts the owned QoS and Queue rows in the cache.
func (q *QoS) Rows(ctx context.Context) (QoSRows, error) {
	var qoss []*vswitchd.QoS
	var queues []*vswitchd.Queue
	if err := q.c.ovs.List(ctx, &qoss); err != nil {
		return QoSRows{}, fmt.Errorf("read QoS table: %w", err)
	}
	if err := q.c.ovs.List(ctx, &queues); err != nil {
		return QoSRows{}, fmt.Errorf("read Queue table: %w", err)
	}
	var n QoSRows
	for _, r := range qoss {
		if r.ExternalIDs[KeyOwner] == OwnerQoS {
			n.QoS++
		}
	}
	for _, r := range queues {
		if r.ExternalIDs[KeyOwner] == OwnerQoS {
			n.Queues++
		}
	}
	return n, nil
}
