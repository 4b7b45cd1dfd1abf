package ovsdpdk

import (
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"

	"github.com/offlane/offlane/ovsdpdk/vswitchd"
)

// State is a snapshot of the rows node apply cares about, read from the OVSDB cache.
// The maps hold copies; diff never changes them.
type State struct {
	OVS        *vswitchd.OpenvSwitch // nil when the database has no Open_vSwitch row yet
	Bridges    map[string]*vswitchd.Bridge
	Ports      map[string]*vswitchd.Port      // by UUID
	Interfaces map[string]*vswitchd.Interface // by UUID
}

func (s *State) portByName(name string) (*vswitchd.Port, *vswitchd.Bridge) {
	for _, br := range s.Bridges {
		for _, pu := range br.Ports {
			if p := s.Ports[pu]; p != nil && p.Name == name {
				return p, br
			}
		}
	}
	return nil, nil
}

// ChangeOp is what a change does.
type ChangeOp string

// Change ops, printed as the first column of a plan.
const (
	OpAdd    ChangeOp = "+"
	OpUpdate ChangeOp = "~"
	OpRemove ChangeOp = "-"
)

// Change is one human-readable line of a plan.
type Change struct {
	Op     ChangeOp
	Object string // "bridge br-int", "port patch-tun on br-int", "Open_vSwitch other_config:pmd-cpu-mask"
	Detail string
}

func (c Change) String() string {
	if c.Detail == "" {
		return fmt.Sprintf("%s %s", c.Op, c.Object)
	}
	return fmt.Sprintf("%s %s: %s", c.Op, c.Object, c.Detail)
}

// Plan is the difference between a Layout and a State: the changes to print and the
// steps apply turns into one OVSDB transaction. An empty plan means OVS already matches.
type Plan struct {
	Changes []Change
	// Notes are remarks that are not changes: derivations of auto values, restarts needed.
	Notes []string

	createOVSRow bool
	ovsUUID      string
	ocSet        map[string]string // Open_vSwitch other_config keys to set
	ocDel        []string          // ... and to remove
	eidSet       map[string]string // Open_vSwitch external_ids
	eidDel       []string
	addBridges   []BridgeSpec // whole new bridges with their ports
	delBridges   []*vswitchd.Bridge
	updBridges   []bridgeUpdate
	addPorts     []portAdd
	delPorts     []portDel
	updPorts     []portUpdate
	addDatapaths []string // datapath types to give a Datapath row
}

type bridgeUpdate struct {
	uuid         string
	datapathType *string
	failMode     *string
	eidSet       map[string]string
	eidDel       []string
}

type portAdd struct {
	bridgeUUID string
	port       PortSpec
}

type portDel struct {
	bridgeUUID string // "" when the bridge itself is deleted
	port       *vswitchd.Port
}

type portUpdate struct {
	portUUID, ifaceUUID string
	portEIDSet          map[string]string
	portEIDDel          []string
	clearTag            bool
	ifaceType           *string
	ifaceOptions        map[string]string // replaces the whole map when non-nil
	ifaceEIDSet         map[string]string
	ifaceEIDDel         []string
}

// Empty reports whether applying the plan would change nothing.
func (p *Plan) Empty() bool { return len(p.Changes) == 0 }

func owner(eids map[string]string) string { return eids[KeyOwner] }

// Diff compares the desired layout with the state and returns the plan. It refuses (with
// an error naming the row and the fix, and no plan) to take over or delete rows offlane
// does not own: a foreign bridge or port with a name the layout needs, or an owned bridge
// to delete that still holds ports offlane did not create for the layout.
func Diff(want *Layout, have *State) (*Plan, error) {
	p := &Plan{ocSet: map[string]string{}, eidSet: map[string]string{}}
	var errs []error

	// --- Open_vSwitch row ------------------------------------------------------------
	var haveOC, haveEID map[string]string
	if have.OVS == nil {
		p.createOVSRow = true
		p.Changes = append(p.Changes, Change{Op: OpAdd, Object: "Open_vSwitch row", Detail: "the database was not initialised"})
	} else {
		p.ovsUUID = have.OVS.UUID
		haveOC, haveEID = have.OVS.OtherConfig, have.OVS.ExternalIDs
	}
	managed := map[string]bool{}
	for _, k := range strings.Split(haveEID[KeyManagedOtherConfig], ",") {
		if k != "" {
			managed[k] = true
		}
	}
	for _, k := range sortedKeys(want.OtherConfig) {
		v := want.OtherConfig[k]
		old, ok := haveOC[k]
		if ok && old == v {
			continue
		}
		p.ocSet[k] = v
		detail := fmt.Sprintf("%q", v)
		if ok {
			detail = fmt.Sprintf("%q → %q", old, v)
		}
		p.Changes = append(p.Changes, Change{Op: pick(ok, OpUpdate, OpAdd), Object: "Open_vSwitch other_config:" + k, Detail: detail})
		if restartKeys[k] && have.OVS != nil && ok {
			p.Notes = append(p.Notes, fmt.Sprintf("other_config:%s takes effect when ovs-vswitchd restarts", k))
		}
	}
	for _, k := range sortedKeys(managed) {
		if _, keep := want.OtherConfig[k]; keep {
			continue
		}
		if old, ok := haveOC[k]; ok {
			p.ocDel = append(p.ocDel, k)
			p.Changes = append(p.Changes, Change{Op: OpRemove, Object: "Open_vSwitch other_config:" + k, Detail: fmt.Sprintf("was %q; offlane set it and the config no longer does", old)})
			if restartKeys[k] || k == "dpdk-init" {
				p.Notes = append(p.Notes, fmt.Sprintf("removing other_config:%s takes effect when ovs-vswitchd restarts", k))
			}
		}
	}
	// One Datapath row per datapath type the bridges use: ovs-vswitchd fills its
	// capabilities column (ct_state_nat, ...), which the planner reads to choose where
	// NAT runs. OVN's controller creates the same rows.
	dps := map[string]bool{}
	for _, b := range want.Bridges {
		if b.DatapathType != "" {
			dps[b.DatapathType] = true
		}
	}
	for _, dt := range sortedKeys(dps) {
		if have.OVS == nil || have.OVS.Datapaths[dt] == "" {
			p.addDatapaths = append(p.addDatapaths, dt)
			p.Changes = append(p.Changes, Change{Op: OpAdd, Object: "Datapath " + dt, Detail: "ovs-vswitchd publishes the datapath's capabilities there"})
		}
	}

	wantEID := maps.Clone(want.ExternalIDs)
	wantEID[KeyManagedOtherConfig] = strings.Join(sortedKeys(want.OtherConfig), ",")
	if wantEID[KeyManagedOtherConfig] == "" {
		delete(wantEID, KeyManagedOtherConfig)
	}
	set, del := ownedMapDiff(wantEID, haveEID)
	p.eidSet, p.eidDel = set, del
	for _, k := range sortedKeys(set) {
		old, ok := haveEID[k]
		d := fmt.Sprintf("%q", set[k])
		if ok {
			d = fmt.Sprintf("%q → %q", old, set[k])
		}
		p.Changes = append(p.Changes, Change{Op: pick(ok, OpUpdate, OpAdd), Object: "Open_vSwitch external_ids:" + k, Detail: d})
	}
	for _, k := range del {
		p.Changes = append(p.Changes, Change{Op: OpRemove, Object: "Open_vSwitch external_ids:" + k})
	}

	// --- bridges and their ports -------------------------------------------------------
	wanted := map[string]bool{}
	wantedPorts := map[string]string{} // port name -> bridge
	for _, wb := range want.Bridges {
		wanted[wb.Name] = true
		for _, wp := range wb.Ports {
			wantedPorts[wp.Name] = wb.Name
		}
	}
	// Ports the layout needs that exist elsewhere: owned ones move (deleted there, created
	// here in the same transaction), foreign ones are refused.
	moved := map[string]bool{}
	for _, wb := range want.Bridges {
		hb := have.Bridges[wb.Name]
		if hb != nil && owner(hb.ExternalIDs) != OwnerNode {
			errs = append(errs, fmt.Errorf("bridge %s exists and offlane does not own it (no external_ids:%s=%s): delete it or choose another bridge name in the config", wb.Name, KeyOwner, OwnerNode))
			continue
		}
		for _, wp := range wb.Ports {
			hp, hpb := have.portByName(wp.Name)
			if hp == nil || (hb != nil && hpb.UUID == hb.UUID) {
				continue
			}
			if owner(hp.ExternalIDs) != OwnerNode {
				errs = append(errs, fmt.Errorf("port %s (on bridge %s) exists and offlane does not own it: the layout needs that name on %s; delete the port or rename the uplink/bridge in the config", wp.Name, hpb.Name, wb.Name))
				continue
			}
			moved[hp.UUID] = true
			p.delPorts = append(p.delPorts, portDel{bridgeUUID: hpb.UUID, port: hp})
			p.Changes = append(p.Changes, Change{Op: OpRemove, Object: fmt.Sprintf("port %s on %s", wp.Name, hpb.Name), Detail: "moves to " + wb.Name})
		}
	}

	for _, wb := range want.Bridges {
		hb := have.Bridges[wb.Name]
		if hb == nil {
			p.addBridges = append(p.addBridges, wb)
			p.Changes = append(p.Changes, Change{Op: OpAdd, Object: "bridge " + wb.Name, Detail: fmt.Sprintf("datapath_type=%s fail_mode=%s %s", wb.DatapathType, wb.FailMode, fmtMap("external_ids", wb.ExternalIDs))})
			for _, wp := range wb.Ports {
				p.Changes = append(p.Changes, Change{Op: OpAdd, Object: fmt.Sprintf("port %s on %s", wp.Name, wb.Name), Detail: describePort(wp)})
			}
			continue
		}
		if owner(hb.ExternalIDs) != OwnerNode {
			continue // refused above
		}
		var u bridgeUpdate
		u.uuid = hb.UUID
		var what []string
		if hb.DatapathType != wb.DatapathType {
			u.datapathType = &wb.DatapathType
			what = append(what, fmt.Sprintf("datapath_type %q → %q", hb.DatapathType, wb.DatapathType))
		}
		if hb.FailMode == nil || *hb.FailMode != wb.FailMode {
			u.failMode = &wb.FailMode
			what = append(what, fmt.Sprintf("fail_mode %q → %q", deref(hb.FailMode), wb.FailMode))
		}
		u.eidSet, u.eidDel = ownedMapDiff(wb.ExternalIDs, hb.ExternalIDs)
		if len(u.eidSet)+len(u.eidDel) > 0 {
			what = append(what, "external_ids "+describeMapDiff(u.eidSet, u.eidDel))
		}
		if len(what) > 0 {
			p.updBridges = append(p.updBridges, u)
			p.Changes = append(p.Changes, Change{Op: OpUpdate, Object: "bridge " + wb.Name, Detail: strings.Join(what, ", ")})
		}

		onBridge := map[string]*vswitchd.Port{}
		for _, pu := range hb.Ports {
			if hp := have.Ports[pu]; hp != nil {
				onBridge[hp.Name] = hp
			}
		}
		for _, wp := range wb.Ports {
			hp := onBridge[wp.Name]
			if hp == nil {
				p.addPorts = append(p.addPorts, portAdd{bridgeUUID: hb.UUID, port: wp})
				p.Changes = append(p.Changes, Change{Op: OpAdd, Object: fmt.Sprintf("port %s on %s", wp.Name, wb.Name), Detail: describePort(wp)})
				continue
			}
			if owner(hp.ExternalIDs) != OwnerNode {
				errs = append(errs, fmt.Errorf("port %s on bridge %s exists and offlane does not own it: the layout needs that name; delete the port or rename the uplink in the config", wp.Name, wb.Name))
				continue
			}
			if u, what := diffPort(wp, hp, have); len(what) > 0 {
				p.updPorts = append(p.updPorts, u)
				p.Changes = append(p.Changes, Change{Op: OpUpdate, Object: fmt.Sprintf("port %s on %s", wp.Name, wb.Name), Detail: strings.Join(what, ", ")})
			}
		}
		for _, name := range sortedKeys(onBridge) {
			hp := onBridge[name]
			if owner(hp.ExternalIDs) != OwnerNode || wantedPorts[name] == wb.Name || moved[hp.UUID] {
				continue
			}
			if _, elsewhere := wantedPorts[name]; elsewhere {
				continue // handled as a move above
			}
			p.delPorts = append(p.delPorts, portDel{bridgeUUID: hb.UUID, port: hp})
			p.Changes = append(p.Changes, Change{Op: OpRemove, Object: fmt.Sprintf("port %s on %s", name, wb.Name), Detail: "owned by offlane, no longer in the config"})
		}
	}

	// Owned bridges the config no longer names.
	for _, name := range sortedKeys(have.Bridges) {
		hb := have.Bridges[name]
		if wanted[name] || owner(hb.ExternalIDs) != OwnerNode {
			continue
		}
		var strangers []string
		for _, pu := range hb.Ports {
			if hp := have.Ports[pu]; hp != nil && owner(hp.ExternalIDs) != OwnerNode {
				strangers = append(strangers, hp.Name)
			}
		}
		if len(strangers) > 0 {
			sort.Strings(strangers)
			errs = append(errs, fmt.Errorf("bridge %s is owned by offlane and no longer in the config, but holds ports offlane did not create for the layout (%s): move or delete them, then apply again", name, strings.Join(strangers, ", ")))
			continue
		}
		p.delBridges = append(p.delBridges, hb)
		for _, pu := range hb.Ports {
			if hp := have.Ports[pu]; hp != nil && !moved[hp.UUID] {
				p.delPorts = append(p.delPorts, portDel{port: hp}) // the bridge row goes too
			}
		}
		p.Changes = append(p.Changes, Change{Op: OpRemove, Object: "bridge " + name, Detail: fmt.Sprintf("owned by offlane, no longer in the config (with its %d port(s))", len(hb.Ports))})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if p.createOVSRow {
		// A fresh row: everything in ocSet/eidSet goes in at insert.
		p.ocDel, p.eidDel = nil, nil
	}
	return p, nil
}

// diffPort compares an owned port (and its interface) with the wanted spec.
func diffPort(wp PortSpec, hp *vswitchd.Port, have *State) (portUpdate, []string) {
	u := portUpdate{portUUID: hp.UUID}
	var what []string
	u.portEIDSet, u.portEIDDel = ownedMapDiff(wp.ExternalIDs, hp.ExternalIDs)
	if len(u.portEIDSet)+len(u.portEIDDel) > 0 {
		what = append(what, "port external_ids "+describeMapDiff(u.portEIDSet, u.portEIDDel))
	}
	if hp.Tag != nil {
		u.clearTag = true
		what = append(what, fmt.Sprintf("tag %d → none", *hp.Tag))
	}
	var hi *vswitchd.Interface
	for _, iu := range hp.Interfaces {
		if i := have.Interfaces[iu]; i != nil && i.Name == wp.Name {
			hi = i
		}
	}
	if hi == nil {
		// Should not happen (OVSDB requires at least one interface); treat as a type fix.
		return u, append(what, "interface missing")
	}
	u.ifaceUUID = hi.UUID
	if hi.Type != wp.Type {
		u.ifaceType = &wp.Type
		what = append(what, fmt.Sprintf("type %q → %q", hi.Type, wp.Type))
	}
	wantOpts := wp.Options
	if wantOpts == nil {
		wantOpts = map[string]string{}
	}
	if !maps.Equal(wantOpts, hi.Options) {
		u.ifaceOptions = wantOpts
		what = append(what, fmt.Sprintf("options %s → %s", fmtMap("", hi.Options), fmtMap("", wantOpts)))
	}
	u.ifaceEIDSet, u.ifaceEIDDel = ownedMapDiff(wp.ExternalIDs, hi.ExternalIDs)
	if len(u.ifaceEIDSet)+len(u.ifaceEIDDel) > 0 {
		what = append(what, "interface external_ids "+describeMapDiff(u.ifaceEIDSet, u.ifaceEIDDel))
	}
	return u, what
}

// ownedMapDiff compares the offlane-* keys of want and have: keys to set and keys to
// delete. Other keys in have are left alone.
func ownedMapDiff(want, have map[string]string) (map[string]string, []string) {
	set := map[string]string{}
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			set[k] = v
		}
	}
	var del []string
	for k := range have {
		if _, ok := want[k]; !ok && strings.HasPrefix(k, ownedPrefix) {
			del = append(del, k)
		}
	}
	sort.Strings(del)
	return set, del
}

func describeMapDiff(set map[string]string, del []string) string {
	var parts []string
	for _, k := range sortedKeys(set) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, set[k]))
	}
	for _, k := range del {
		parts = append(parts, "-"+k)
	}
	return strings.Join(parts, " ")
}

func describePort(wp PortSpec) string {
	t := wp.Type
	if t == "" {
		t = "system"
	}
	s := "type=" + t
	if len(wp.Options) > 0 {
		s += " " + fmtMap("options", wp.Options)
	}
	return s
}

func fmtMap(name string, m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	if name == "" {
		return "{" + strings.Join(parts, " ") + "}"
	}
	return name + "{" + strings.Join(parts, " ") + "}"
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func pick[T any](cond bool, a, b T) T {
	if cond {
		return a
	}
	return b
}
