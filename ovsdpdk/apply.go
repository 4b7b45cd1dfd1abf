package ovsdpdk

import (
	"context"
	"fmt"

	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/offlane/offlane/ovsdpdk/vswitchd"
)

// ApplyOptions tune ApplyNode.
type ApplyOptions struct {
	// Wait for ovs-vswitchd to apply the change (cur_cfg reaches next_cfg), like
	// ovs-vsctl without --no-wait.
	Wait bool
}

// ApplyResult is what ApplyNode did.
type ApplyResult struct {
	// Plan is the plan that was committed (empty when OVS already matched).
	Plan *Plan
	// Transacted is true when a transaction was committed (exactly one).
	Transacted bool
	NextCfg    int
}

// PlanNode reads the current state and returns what ApplyNode would change. It writes
// nothing.
func (c *Client) PlanNode(ctx context.Context, want *Layout) (*Plan, error) {
	st, err := c.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return Diff(want, st)
}

// ApplyNode makes OVS match the layout in one OVSDB transaction: all changes or none.
// It is idempotent: when OVS already matches, it sends no transaction. Rows offlane does
// not own are never changed; a conflict with one is an error before anything is written.
// Safe to retry.
func (c *Client) ApplyNode(ctx context.Context, want *Layout, opts ApplyOptions) (*ApplyResult, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	res := &ApplyResult{}
	next, err := c.transact(ctx, "node apply", func() ([]ovsdb.Operation, error) {
		st, err := c.Snapshot(ctx)
		if err != nil {
			return nil, err
		}
		p, err := Diff(want, st)
		if err != nil {
			return nil, err
		}
		res.Plan = p
		if p.Empty() {
			return nil, errNothingToDo
		}
		return c.planOps(p)
	})
	if err != nil {
		return nil, err
	}
	res.Transacted = !res.Plan.Empty()
	res.NextCfg = next
	if res.Transacted && opts.Wait {
		if err := c.WaitApplied(ctx, next); err != nil {
			return res, err
		}
	}
	return res, nil
}

// planOps turns a plan into OVSDB operations (one transaction).
func (c *Client) planOps(p *Plan) ([]ovsdb.Operation, error) {
	var ops []ovsdb.Operation
	var nm namer
	add := func(o []ovsdb.Operation, err error) error {
		if err != nil {
			return err
		}
		ops = append(ops, o...)
		return nil
	}

	// New bridges with their ports and interfaces.
	var newBridges []string
	for _, wb := range p.addBridges {
		var portIDs []string
		for _, wp := range wb.Ports {
			pid, pops, err := c.portInsertOps(&nm, wp, nil)
			if err != nil {
				return nil, err
			}
			ops = append(ops, pops...)
			portIDs = append(portIDs, pid)
		}
		fm := wb.FailMode
		br := &vswitchd.Bridge{UUID: nm.next(), Name: wb.Name, DatapathType: wb.DatapathType, FailMode: &fm,
			Ports: portIDs, ExternalIDs: wb.ExternalIDs}
		if err := add(c.ovs.Create(br)); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", wb.Name, err)
		}
		newBridges = append(newBridges, br.UUID)
	}

	newDatapaths := map[string]string{}
	for _, dt := range p.addDatapaths {
		dp := &vswitchd.Datapath{UUID: nm.next(), ExternalIDs: map[string]string{KeyOwner: OwnerNode}}
		if err := add(c.ovs.Create(dp)); err != nil {
			return nil, fmt.Errorf("datapath row %s: %w", dt, err)
		}
		newDatapaths[dt] = dp.UUID
	}

	// The Open_vSwitch row.
	if p.createOVSRow {
		row := &vswitchd.OpenvSwitch{UUID: nm.next(), OtherConfig: p.ocSet, ExternalIDs: p.eidSet, Bridges: newBridges, Datapaths: newDatapaths}
		if err := add(c.ovs.Create(row)); err != nil {
			return nil, fmt.Errorf("Open_vSwitch row: %w", err)
		}
	} else {
		row := &vswitchd.OpenvSwitch{UUID: p.ovsUUID}
		var muts []model.Mutation
		muts = append(muts, mapMutations(&row.OtherConfig, p.ocSet, p.ocDel)...)
		muts = append(muts, mapMutations(&row.ExternalIDs, p.eidSet, p.eidDel)...)
		if len(newBridges) > 0 {
			muts = append(muts, model.Mutation{Field: &row.Bridges, Mutator: ovsdb.MutateOperationInsert, Value: newBridges})
		}
		if len(newDatapaths) > 0 {
			muts = append(muts, model.Mutation{Field: &row.Datapaths, Mutator: ovsdb.MutateOperationInsert, Value: newDatapaths})
		}
		var gone []string
		for _, b := range p.delBridges {
			gone = append(gone, b.UUID)
		}
		if len(gone) > 0 {
			muts = append(muts, model.Mutation{Field: &row.Bridges, Mutator: ovsdb.MutateOperationDelete, Value: gone})
		}
		if len(muts) > 0 {
			if err := add(c.ovs.Where(row).Mutate(row, muts...)); err != nil {
				return nil, fmt.Errorf("Open_vSwitch row: %w", err)
			}
		}
	}

	// Bridges to delete (their ports and interfaces are in delPorts without a bridge:
	// ovsdb-server would garbage-collect them; being explicit keeps the transaction
	// self-describing and works on servers without garbage collection).
	for _, b := range p.delBridges {
		if err := add(c.ovs.Where(&vswitchd.Bridge{UUID: b.UUID}).Delete()); err != nil {
			return nil, err
		}
	}

	for _, u := range p.updBridges {
		br := &vswitchd.Bridge{UUID: u.uuid}
		var fields []any
		if u.datapathType != nil {
			br.DatapathType = *u.datapathType
			fields = append(fields, &br.DatapathType)
		}
		if u.failMode != nil {
			fm := *u.failMode
			br.FailMode = &fm
			fields = append(fields, &br.FailMode)
		}
		if len(fields) > 0 {
			if err := add(c.ovs.Where(br).Update(br, fields...)); err != nil {
				return nil, fmt.Errorf("bridge update: %w", err)
			}
		}
		if muts := mapMutations(&br.ExternalIDs, u.eidSet, u.eidDel); len(muts) > 0 {
			if err := add(c.ovs.Where(br).Mutate(br, muts...)); err != nil {
				return nil, fmt.Errorf("bridge external_ids: %w", err)
			}
		}
	}

	// Ports. OVSDB checks indexes and references at commit, so within one transaction a
	// moved port's name is free again once its old row is deleted.
	for _, d := range p.delPorts {
		if d.bridgeUUID != "" {
			br := &vswitchd.Bridge{UUID: d.bridgeUUID}
			if err := add(c.ovs.Where(br).Mutate(br, model.Mutation{Field: &br.Ports, Mutator: ovsdb.MutateOperationDelete, Value: []string{d.port.UUID}})); err != nil {
				return nil, err
			}
		}
		if err := add(c.portDeleteOps(d.port)); err != nil {
			return nil, err
		}
	}
	byBridge := map[string][]string{}
	var order []string
	for _, a := range p.addPorts {
		pid, pops, err := c.portInsertOps(&nm, a.port, nil)
		if err != nil {
			return nil, err
		}
		ops = append(ops, pops...)
		if _, ok := byBridge[a.bridgeUUID]; !ok {
			order = append(order, a.bridgeUUID)
		}
		byBridge[a.bridgeUUID] = append(byBridge[a.bridgeUUID], pid)
	}
	for _, bu := range order {
		br := &vswitchd.Bridge{UUID: bu}
		if err := add(c.ovs.Where(br).Mutate(br, model.Mutation{Field: &br.Ports, Mutator: ovsdb.MutateOperationInsert, Value: byBridge[bu]})); err != nil {
			return nil, err
		}
	}
	for _, u := range p.updPorts {
		if err := c.portUpdateOps(&ops, u); err != nil {
			return nil, err
		}
	}
	return ops, nil
}

// portInsertOps inserts an Interface and a Port of the same name; it returns the Port's
// named UUID.
func (c *Client) portInsertOps(nm *namer, wp PortSpec, port *vswitchd.Port) (string, []ovsdb.Operation, error) {
	iface := &vswitchd.Interface{UUID: nm.next(), Name: wp.Name, Type: wp.Type, Options: wp.Options, ExternalIDs: wp.ExternalIDs}
	iops, err := c.ovs.Create(iface)
	if err != nil {
		return "", nil, fmt.Errorf("interface %s: %w", wp.Name, err)
	}
	if port == nil {
		port = &vswitchd.Port{}
	}
	port.UUID, port.Name, port.Interfaces = nm.next(), wp.Name, []string{iface.UUID}
	if port.ExternalIDs == nil {
		port.ExternalIDs = wp.ExternalIDs
	}
	pops, err := c.ovs.Create(port)
	if err != nil {
		return "", nil, fmt.Errorf("port %s: %w", wp.Name, err)
	}
	return port.UUID, append(iops, pops...), nil
}

// portDeleteOps deletes a Port row and its Interface rows (the caller removes the
// bridge's reference in the same transaction).
func (c *Client) portDeleteOps(p *vswitchd.Port) ([]ovsdb.Operation, error) {
	ops, err := c.ovs.Where(&vswitchd.Port{UUID: p.UUID}).Delete()
	if err != nil {
		return nil, err
	}
	for _, iu := range p.Interfaces {
		o, err := c.ovs.Where(&vswitchd.Interface{UUID: iu}).Delete()
		if err != nil {
			return nil, err
		}
		ops = append(ops, o...)
	}
	return ops, nil
}

func (c *Client) portUpdateOps(ops *[]ovsdb.Operation, u portUpdate) error {
	add := func(o []ovsdb.Operation, err error) error {
		if err != nil {
			return err
		}
		*ops = append(*ops, o...)
		return nil
	}
	port := &vswitchd.Port{UUID: u.portUUID}
	if u.clearTag {
		if err := add(c.ovs.Where(port).Update(port, &port.Tag)); err != nil {
			return err
		}
	}
	if muts := mapMutations(&port.ExternalIDs, u.portEIDSet, u.portEIDDel); len(muts) > 0 {
		if err := add(c.ovs.Where(port).Mutate(port, muts...)); err != nil {
			return err
		}
	}
	if u.ifaceUUID == "" {
		return nil
	}
	iface := &vswitchd.Interface{UUID: u.ifaceUUID}
	var fields []any
	if u.ifaceType != nil {
		iface.Type = *u.ifaceType
		fields = append(fields, &iface.Type)
	}
	if u.ifaceOptions != nil {
		iface.Options = u.ifaceOptions
		fields = append(fields, &iface.Options)
	}
	if len(fields) > 0 {
		if err := add(c.ovs.Where(iface).Update(iface, fields...)); err != nil {
			return err
		}
	}
	if muts := mapMutations(&iface.ExternalIDs, u.ifaceEIDSet, u.ifaceEIDDel); len(muts) > 0 {
		if err := add(c.ovs.Where(iface).Mutate(iface, muts...)); err != nil {
			return err
		}
	}
	return nil
}

// mapMutations sets and deletes keys of a map column without touching its other keys:
// OVSDB's map insert never overwrites, so changed keys are deleted first.
func mapMutations(field *map[string]string, set map[string]string, del []string) []model.Mutation {
	var out []model.Mutation
	keys := append([]string{}, del...)
	for k := range set {
		keys = append(keys, k)
	}
	if len(keys) > 0 {
		out = append(out, model.Mutation{Field: field, Mutator: ovsdb.MutateOperationDelete, Value: keys})
	}
	if len(set) > 0 {
		out = append(out, model.Mutation{Field: field, Mutator: ovsdb.MutateOperationInsert, Value: set})
	}
	return out
}
