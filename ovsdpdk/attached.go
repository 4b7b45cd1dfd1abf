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
	var brs []*vswitchd.Bridge
	if err := ps.c.ovs.List(ctx, &brs); err != nil {
		return nil, err
	}
	var ifaces []*vswitchd.Interface
	if err := ps.c.ovs.WhereCache(func(i *vswitchd.Interface) bool { return i.ExternalIDs[KeyIfaceID] != "" }).List(ctx, &ifaces); err != nil {
		return nil, err
	}
	tagged := make(map[string]bool, len(ifaces))
	for _, i := range ifaces {
		tagged[i.UUID] = true
	}
	var out []PortStatus
	for _, b := range brs {
		for _, pu := range b.Ports {
			hp := &vswitchd.Port{UUID: pu}
			if err := ps.c.ovs.Get(ctx, hp); err != nil {
				continue
			}
			ok := false
			for _, iu := range hp.Interfaces {
				ok = ok || tagged[iu]
			}
			if !ok {
				continue
			}
			st, err := ps.status(ctx, hp, b.Name)
			if err != nil {
				return nil, err
			}
			out = append(out, *st)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// OnPortsChanged registers fn to run whenever an Interface row appears, goes away, or
// changes its OpenFlow port, link state, error or external_ids: what a hypervisor
// plugging a VM, a vhost-user client connecting or a restarted ovs-vswitchd look like.
// fn runs on the client's cache goroutine: it must return at once (signal a channel).
// Register before the events of interest; handlers cannot be removed (they live as long
// as the client).
func (c *Client) OnPortsChanged(fn func()) {
	c.ovs.Cache().AddEventHandler(&cache.EventHandlerFuncs{
		AddFunc: func(table string, _ model.Model) {
			if table == vswitchd.InterfaceTable {
				fn()
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
				fn()
			}
		},
		DeleteFunc: func(table string, _ model.Model) {
			if table == vswitchd.InterfaceTable {
				fn()
			}
		},
	})
}
