package offload

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
)

// The QoS unit of a local port (KindQoS, ID = the port ID). Inputs: the port (ofport,
// mode), its plan's QoS decisions, its QoS policy, and the meter IDs.
//
// Egress (from the VM): a port with an egress meter or DSCP marking is classified into
// TableQoS instead of port security; there its IP traffic gets the meter and the DSCP
// mark, everything else the meter, and all of it goes on to port security (or the ARP
// responder for unfiltered ports). Ingress (to the VM): a metered port gets its own
// delivery flow in TableDeliver with the meter before the output.
//
// Meters cannot go into a flow bundle: the applier adds and modifies Compiler.Meters()
// before the bundle that references them and deletes the ones no longer wanted after it.

// Meter IDs: offlane's marker in the top byte (so the applier owns exactly these), a
// 24-bit hash of (port, direction) in the rest, probing upwards on collisions in key
// order, so IDs depend only on the set of metered ports.
const (
	MeterMarker uint32 = 0x6f << 24
	MeterMask   uint32 = 0xff << 24
	meterIDMask uint32 = 1<<24 - 1
)

// IsOfflaneMeter reports whether a meter ID is in offlane's range.
func IsOfflaneMeter(id uint32) bool { return id&MeterMask == MeterMarker }

// Meter is one OpenFlow meter: a drop band at Kbps with a burst of BurstKb kilobits
// (flags kbps, burst, stats).
type Meter struct {
	Bridge    string `json:"bridge"`
	ID        uint32 `json:"id"`
	Kbps      int    `json:"kbps"`
	BurstKb   int    `json:"burst_kb"`
	PortID    string `json:"port_id"`
	Direction string `json:"direction"` // egress (from the VM) | ingress (to the VM)
}

// Spec is the meter as ovs-ofctl's add-meter / mod-meter argument.
func (m Meter) Spec() string {
	return "meter=" + strconv.FormatUint(uint64(m.ID), 10) + ",kbps,burst,stats,bands=type=drop,rate=" +
		strconv.Itoa(m.Kbps) + ",burst_size=" + strconv.Itoa(m.BurstKb)
}

type meterKey struct{ port, dir string }

// qosState is the compiler's QoS bookkeeping.
type qosState struct {
	policyPorts map[string]set        // policy → local ports using it
	keys        map[meterKey]Meter    // wanted meters (ID unset)
	ids         map[meterKey]uint32   // allocated IDs of keys
	meters      map[string][]Meter    // port → its compiled meters
	portMeters  map[string][]meterKey // port → its keys
}

func newQoSState() *qosState {
	return &qosState{policyPorts: map[string]set{}, keys: map[meterKey]Meter{}, ids: map[meterKey]uint32{},
		meters: map[string][]Meter{}, portMeters: map[string][]meterKey{}}
}

// qosUpdate runs in Update before the ports are re-indexed: it follows policy changes to
// the ports using them (adding them to modeCheck: the port's classification depends on
// its egress QoS), marks the QoS units of every re-checked port dirty, and re-allocates
// meter IDs when the set of metered ports changed.
func (c *Compiler) qosUpdate(old *IR, modeCheck set, d *dirty) {
	q := c.qos
	for id := range modeCheck {
		if o := old.Ports[id]; o != nil && o.QoSPolicyID != "" {
			setDel(q.policyPorts, o.QoSPolicyID, id)
		}
		if n := c.ir.Ports[id]; n != nil && n.QoSPolicyID != "" {
			setAdd(q.policyPorts, n.QoSPolicyID, id)
		}
	}
	diffIn(c.scoped, c.ch.QoSPolicies, old.QoSPolicies, c.ir.QoSPolicies, (*QoSPolicy).equal, func(id string, _, _ *QoSPolicy) {
		for pid := range q.policyPorts[id] {
			modeCheck[pid] = struct{}{}
		}
	})
	changed := false
	for id := range modeCheck {
		d.unit(unitKey{KindQoS, id})
		want := c.portMeterWants(id)
		for _, k := range q.portMeters[id] {
			if _, ok := want[k]; !ok {
				delete(q.keys, k)
				changed = true
			}
		}
		ks := make([]meterKey, 0, len(want))
		for k, m := range want {
			ks = append(ks, k)
			if _, ok := q.keys[k]; !ok {
				changed = true
			}
			q.keys[k] = m
		}
		if len(ks) == 0 {
			delete(q.portMeters, id)
		} else {
			q.portMeters[id] = ks
		}
	}
	if !changed {
		return
	}
	ids := allocateMeterIDs(q.keys)
	for k, id := range q.ids {
		if nid, ok := ids[k]; ok && nid != id {
			d.unit(unitKey{KindQoS, k.port}) // a collision moved a surviving meter
		}
	}
	q.ids = ids
}

// portMeterWants are the meters a port needs: one per direction planned on OpenFlow,
// for ports the compiler compiles.
func (c *Compiler) portMeterWants(id string) map[meterKey]Meter {
	p := c.ir.Ports[id]
	if p == nil || p.QoSPolicyID == "" || !c.mode(p).compiled {
		return nil
	}
	pol := c.ir.QoSPolicies[p.QoSPolicyID]
	pp := c.plan.Port(id)
	var out map[meterKey]Meter
	for _, dir := range []string{Egress, Ingress} {
		r := pol.Rule(QoSBandwidthLimit, dir)
		if r == nil || PortQoSMechanism(p, pp, QoSBandwidthLimit, dir) != QoSMechMeter {
			continue
		}
		if out == nil {
			out = map[meterKey]Meter{}
		}
		out[meterKey{id, dir}] = Meter{Bridge: c.layout.IntegrationBridge, Kbps: r.MaxKbps, BurstKb: r.BurstKb(), PortID: id, Direction: dir}
	}
	return out
}

func allocateMeterIDs(keys map[meterKey]Meter) map[meterKey]uint32 {
	ks := make([]meterKey, 0, len(keys))
	for k := range keys {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b meterKey) int {
		if c := strings.Compare(a.port, b.port); c != 0 {
			return c
		}
		return strings.Compare(a.dir, b.dir)
	})
	out := make(map[meterKey]uint32, len(ks))
	used := make(map[uint32]bool, len(ks))
	for _, k := range ks {
		h := fnv.New32a()
		_, _ = h.Write([]byte(k.port + "\x00" + k.dir))
		v := h.Sum32() & meterIDMask
		for used[v] {
			v = (v + 1) & meterIDMask
		}
		used[v] = true
		out[k] = MeterMarker | v
	}
	return out
}

// qosEgress reports whether a compiled port's traffic from the VM goes through TableQoS.
func (c *Compiler) qosEgress(p *Port) bool {
	if p.QoSPolicyID == "" {
		return false
	}
	pp := c.plan.Port(p.ID)
	if pp == nil {
		return false
	}
	return pp.Backend(FeatureDSCP) == BackendOpenFlow ||
		PortQoSMechanism(p, pp, QoSBandwidthLimit, Egress) == QoSMechMeter
}

// afterClassify is where a port's classification flow sends its traffic: TableQoS when
// it has egress QoS, else next.
func (m portMode) afterClassify(next uint8) uint8 {
	if m.qos {
		return TableQoS
	}
	return next
}

// qosFlows: the QoS unit of one local port.
func (c *Compiler) qosFlows(id string) *emitter {
	q := c.qos
	delete(q.meters, id)
	p := c.ir.Ports[id]
	m := c.portIdx[id].mode
	if p == nil || !m.compiled || p.QoSPolicyID == "" {
		return nil
	}
	pp := c.plan.Port(id)
	pol := c.ir.QoSPolicies[p.QoSPolicyID]
	if pp == nil || pol == nil {
		return nil
	}
	var meters []Meter
	meterAct := func(dir string) string {
		k := meterKey{id, dir}
		mt, ok := q.keys[k]
		if !ok {
			return ""
		}
		mt.ID = q.ids[k]
		meters = append(meters, mt)
		return "meter:" + strconv.FormatUint(uint64(mt.ID), 10)
	}
	e := newEmitter(c.layout.IntegrationBridge, KindQoS, id, 4)
	o := p.OFPort
	if m.qos {
		next := TablePortSecurity
		if !m.filtered {
			next = TableARPResponder
		}
		var pre []string
		if a := meterAct(Egress); a != "" {
			pre = append(pre, a)
		}
		if r := pol.Rule(QoSDSCPMarking, ""); r != nil && pp.Backend(FeatureDSCP) == BackendOpenFlow {
			mark := append(slices.Clone(pre), "set_field:"+strconv.Itoa(r.DSCPMark)+"->ip_dscp", actGoto(next))
			e.add(TableQoS, prioPort+10, e.nm().proto("ip").inPort(o), joinActions(mark...))
			e.add(TableQoS, prioPort+10, e.nm().proto("ipv6").inPort(o), joinActions(mark...))
		}
		e.add(TableQoS, prioPort, e.nm().inPort(o), joinActions(append(pre, actGoto(next))...))
	}
	if a := meterAct(Ingress); a != "" {
		e.add(TableDeliver, prioPort, e.nm().reg(RegOutPort, o), joinActions(a, actOutput(o)))
	}
	if len(meters) > 0 {
		q.meters[id] = meters
	}
	return e
}

// Meters returns the meters the current flows reference, sorted by ID.
func (c *Compiler) Meters() []Meter {
	var out []Meter
	for _, ms := range c.qos.meters {
		out = append(out, ms...)
	}
	slices.SortFunc(out, func(a, b Meter) int {
		if a.ID != b.ID {
			if a.ID < b.ID {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Bridge, b.Bridge)
	})
	return out
}

// PortMeters returns a local port's meters (for explain).
func (c *Compiler) PortMeters(id string) []Meter { return slices.Clone(c.qos.meters[id]) }

// OVSPortQoS is what a port's ovs-qos decisions ask of the OVS database: the
// Interface's ingress policing (traffic from the VM) and a QoS row on the Port (traffic
// to the VM). Zero values mean none.
type OVSPortQoS struct {
	PortID string `json:"port_id"`
	// PolicingKbps / PolicingBurstKb: Interface ingress_policing_rate / _burst (kbit/s, kbit).
	PolicingKbps    int `json:"policing_kbps,omitempty"`
	PolicingBurstKb int `json:"policing_burst_kb,omitempty"`
	// Type is the QoS row's type: egress-policer or linux-htb ("" for no QoS row).
	Type string `json:"type,omitempty"`
	// OtherConfig is the QoS row's other_config (egress-policer: cir, cbs in bytes/s and
	// bytes; linux-htb: max-rate in bit/s).
	OtherConfig map[string]string `json:"other_config,omitempty"`
	// Queue is queue 0's other_config (linux-htb: max-rate, burst in bits, min-rate in
	// bit/s); nil for none.
	Queue map[string]string `json:"queue,omitempty"`
}

// Empty reports whether the port needs nothing from OVSDB.
func (q *OVSPortQoS) Empty() bool { return q.PolicingKbps == 0 && q.Type == "" }

// OVSQoS computes the OVSDB QoS settings of every local port whose QoS the plan puts on
// backend ovs-qos, sorted by port ID. Ports not listed need none (the applier clears
// what it set on them before). Pure.
func OVSQoS(ir *IR, plan *Plan) []OVSPortQoS {
	var out []OVSPortQoS
	for _, pp := range plan.Ports {
		p := ir.Ports[pp.PortID]
		if p == nil || p.QoSPolicyID == "" {
			continue
		}
		pol := ir.QoSPolicies[p.QoSPolicyID]
		if pol == nil {
			continue
		}
		s := OVSPortQoS{PortID: p.ID}
		if r := pol.Rule(QoSBandwidthLimit, Egress); r != nil && PortQoSMechanism(p, &pp, QoSBandwidthLimit, Egress) == QoSMechIngressPolicer {
			s.PolicingKbps, s.PolicingBurstKb = r.MaxKbps, r.BurstKb()
		}
		in := pol.Rule(QoSBandwidthLimit, Ingress)
		switch PortQoSMechanism(p, &pp, QoSBandwidthLimit, Ingress) {
		case QoSMechEgressPolicer:
			s.Type = string(QoSMechEgressPolicer)
			s.OtherConfig = map[string]string{"cir": strconv.Itoa(in.MaxKbps * 125), "cbs": strconv.Itoa(in.BurstKb() * 125)}
		case QoSMechLinuxHTB:
			s.Type = string(QoSMechLinuxHTB)
			s.OtherConfig = map[string]string{"max-rate": strconv.Itoa(in.MaxKbps * 1000)}
			s.Queue = map[string]string{"max-rate": strconv.Itoa(in.MaxKbps * 1000), "burst": strconv.Itoa(in.BurstKb() * 1000)}
		}
		if mr := pol.Rule(QoSMinimumBandwidth, Ingress); mr != nil && PortQoSMechanism(p, &pp, QoSMinimumBandwidth, Ingress) == QoSMechLinuxHTB {
			if s.Type == "" {
				s.Type = string(QoSMechLinuxHTB)
				s.OtherConfig = map[string]string{}
				s.Queue = map[string]string{}
			}
			if s.Type == string(QoSMechLinuxHTB) {
				s.Queue["min-rate"] = strconv.Itoa(mr.MinKbps * 1000)
			}
		}
		if !s.Empty() {
			out = append(out, s)
		}
	}
	return out
}

func (q OVSPortQoS) String() string {
	return fmt.Sprintf("port %s: policing %d kbit/s burst %d kbit, qos %q %v queue %v", q.PortID, q.PolicingKbps, q.PolicingBurstKb, q.Type, q.OtherConfig, q.Queue)
}
