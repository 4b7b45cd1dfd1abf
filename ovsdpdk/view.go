package ovsdpdk

import (
	"context"
	"errors"

	"github.com/ovn-kubernetes/libovsdb/cache"

	"github.com/offlane/offlane/ovsdpdk/vswitchd"
)

// view reads the Bridge, Port and Interface rows from the cache without copying them:
// the rows are the cache's own and READ ONLY (libovsdb replaces a row on update instead
// of changing it, so they stay consistent while the caller reads). Attached and PortList
// use it: a deep copy of every row at 10,000 ports cost each of them 100–150 ms. The
// Open_vSwitch row is a copy (one row).
func (c *Client) view(ctx context.Context) (*State, error) {
	ovsRow, err := c.ovsRow(ctx)
	if err != nil {
		return nil, err
	}
	tc := c.ovs.Cache()
	if tc == nil {
		return nil, errors.New("read OVSDB cache: the client is not connected")
	}
	st := &State{OVS: ovsRow}
	st.Bridges = shallow(tc.Table(vswitchd.BridgeTable), func(b *vswitchd.Bridge) string { return b.Name })
	st.Ports = shallow(tc.Table(vswitchd.PortTable), func(p *vswitchd.Port) string { return p.UUID })
	st.Interfaces = shallow(tc.Table(vswitchd.InterfaceTable), func(i *vswitchd.Interface) string { return i.UUID })
	return st, nil
}

// shallow maps a cache table's rows of type *T by key, uncopied (empty when the table is
// not cached).
func shallow[T any](rc *cache.RowCache, key func(*T) string) map[string]*T {
	if rc == nil {
		return map[string]*T{}
	}
	rows := rc.RowsShallow()
	out := make(map[string]*T, len(rows))
	for _, m := range rows {
		if r, ok := m.(*T); ok {
			out[key(r)] = r
		}
	}
	return out
}

// index returns the tenant index, caught up with the cache (see tenantIndex).
func (c *Client) index() (*tenantIndex, error) {
	tc := c.ovs.Cache()
	if tc == nil {
		return nil, errors.New("read OVSDB cache: the client is not connected")
	}
	nb, np, ni := c.idx.counts()
	if nb != tableLen(tc, vswitchd.BridgeTable) || np != tableLen(tc, vswitchd.PortTable) || ni != tableLen(tc, vswitchd.InterfaceTable) {
		c.idx.sync(tc)
	} else {
		c.idx.catchUp(tc)
	}
	return c.idx, nil
}

func tableLen(tc *cache.TableCache, table string) int {
	if rc := tc.Table(table); rc != nil {
		return rc.Len()
	}
	return 0
}
