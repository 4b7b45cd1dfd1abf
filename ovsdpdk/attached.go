package ovsdpdk

import (
	"context"
	"maps"
	"sort"

	"github.com/ovn-kubernetes/libovsdb/cache"
	"github.com/ovn-kubernetes/libovsdb/model"

	"github.com/offlane/offlane/ovsdpdk/vswitchd"
)

// Attached returns every port of any bridge whose interface carries
// external_ids:iface-id — the ones the Ports API made and the ones a hypervisor
// integration (os-vif style, `offlane vif plug`) added itself — with their status, sorted
// by name. It reads the client's cache only.
func (ps *Ports) Attached(ctx context.Context) ([]PortStatus, error) {
	st, err := ps.c.view(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(st.Bridges))
	for n := range st.Bridges {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []PortStatus
	for _, bn := range names {
		for _, pu := range st.Bridges[bn].Ports {
			hp := st.Ports[pu]
			if hp == nil {
				continue
			}
			ok := false
			for _, iu := range hp.Interfaces {
				if i := st.Interfaces[iu]; i != nil && i.ExternalIDs[KeyIfaceID] != "" {
					ok = true
				}
			}
			if ok {
				out = append(out, statusOf(st, hp, bn))
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// AttachedIDs is Attached for the ports whose interfaces carry one of the iface-ids ids,
// by iface-id: what a reconcile that changed a few ports needs, at the cost of those
// ports (the client's tenant index).
func (ps *Ports) AttachedIDs(ctx context.Context, ids map[string]struct{}) (map[string]PortStatus, error) {
	if len(ids) == 0 {
		return map[string]PortStatus{}, nil
	}
	idx, err := ps.c.index() // index.go
	if err != nil {
		return nil, err
	}
	return idx.statuses(ids), nil
}

// OnInterfacesChanged registers fn to run whenever an Interface row appears, goes away,
// or changes its OpenFlow port, link state, error or external_ids — what a hypervisor
// plugging a VM, a vhost-user client connecting or a restarted ovs-vswitchd look like —
// with the iface-ids (external_ids:iface-id) of the row before and after the change, when
// it has one. fn runs on the client's cache goroutine: it must return at once (record
// and signal). Register before the events of interest; handlers cannot be removed (they
// live as long as the client).
func (c *Client) OnInterfacesChanged(fn func(ifaceIDs []string)) {
	ids := func(ms ...model.Model) []string {
		var out []string
		for _, m := range ms {
			if i, ok := m.(*vswitchd.Interface); ok && i.ExternalIDs[KeyIfaceID] != "" {
				out = append(out, i.ExternalIDs[KeyIfaceID])
			}
		}
		return out
	}
	c.ovs.Cache().AddEventHandler(&cache.EventHandlerFuncs{
		AddFunc: func(table string, m model.Model) {
			if table == vswitchd.InterfaceTable {
				fn(ids(m))
			}
		},
		UpdateFunc: func(table string, old, cur model.Model) {
			if table != vswitchd.InterfaceTable {
				return
			}
			o, ok1 := old.(*vswitchd.Interface)
			n, ok2 := cur.(*vswitchd.Interface)
			if !ok1 || !ok2 || !equalPtr(o.Ofport, n.Ofport) || !equalPtr(o.LinkState, n.LinkState) ||
				!equalPtr(o.Error, n.Error) || !maps.Equal(o.ExternalIDs, n.ExternalIDs) {
				fn(ids(old, cur))
			}
		},
		DeleteFunc: func(table string, m model.Model) {
			if table == vswitchd.InterfaceTable {
				fn(ids(m))
			}
		},
	})
}
