package ovsdpdk

import (
	"context"
	"fmt"
	"sort"

	"github.com/ovn-kubernetes/libovsdb/ovsdb"

	"github.com/offlane/offlane/ovsdpdk/vswitchd"
)

// InterfaceStats is one tenant interface's counters and link state as ovs-vswitchd last
// wrote them into OVSDB (every other_config:stats-update-interval, 5 s by default).
// Counters are from the switch's side: rx is what OVS received from the VM.
type InterfaceStats struct {
	Name       string // the OVS interface name
	Type       string // the OVS interface type ("" for a system netdev)
	IfaceID    string // external_ids:iface-id, the tenant port id
	LinkState  string // "up", "down", or "" while ovs-vswitchd has not reported it
	AdminState string
	// Statistics is the Interface statistics column: rx_packets, rx_bytes, rx_dropped,
	// rx_errors, tx_* and more depending on the type. OVS leaves out counters the
	// device does not keep, so a missing key means "unknown", not 0.
	Statistics map[string]uint64
}

// interfaceStatsColumns are the columns InterfaceStats selects.
var interfaceStatsColumns = []string{"name", "type", "external_ids", "link_state", "admin_state", "statistics"}

// InterfaceStats reads the statistics and link state of every interface that carries
// external_ids:iface-id (whoever created it), sorted by name. It is one read-only select
// straight from ovsdb-server, not the cache: the client does not monitor the statistics
// column, which ovs-vswitchd rewrites every few seconds for every interface. Safe to
// call concurrently and to retry.
func (c *Client) InterfaceStats(ctx context.Context) ([]InterfaceStats, error) {
	op := ovsdb.Operation{Op: ovsdb.OperationSelect, Table: vswitchd.InterfaceTable,
		Where: []ovsdb.Condition{}, Columns: interfaceStatsColumns}
	res, err := c.ovs.Transact(ctx, op)
	if err != nil {
		return nil, fmt.Errorf("read interface statistics: %w", err)
	}
	if _, err := ovsdb.CheckOperationResults(res, []ovsdb.Operation{op}); err != nil {
		return nil, fmt.Errorf("read interface statistics: %w", err)
	}
	return interfaceStatsFromRows(res[0].Rows)
}

// interfaceStatsFromRows converts selected Interface rows (OVSDB notation as libovsdb
// decodes it) and keeps the tenant interfaces.
func interfaceStatsFromRows(rows []ovsdb.Row) ([]InterfaceStats, error) {
	out := make([]InterfaceStats, 0, len(rows))
	for _, r := range rows {
		name, _ := r["name"].(string)
		eids, err := stringMap(r["external_ids"])
		if err != nil {
			return nil, fmt.Errorf("interface %s: external_ids: %w", name, err)
		}
		id := eids[KeyIfaceID]
		if id == "" {
			continue
		}
		st := InterfaceStats{Name: name, IfaceID: id, Statistics: map[string]uint64{}}
		st.Type, _ = r["type"].(string)
		if st.LinkState, err = optionalString(r["link_state"]); err != nil {
			return nil, fmt.Errorf("interface %s: link_state: %w", name, err)
		}
		if st.AdminState, err = optionalString(r["admin_state"]); err != nil {
			return nil, fmt.Errorf("interface %s: admin_state: %w", name, err)
		}
		if m, ok := r["statistics"].(ovsdb.OvsMap); ok {
			for k, v := range m.GoMap {
				key, ok1 := k.(string)
				// JSON numbers: exact up to 2^53, i.e. 9 PB of bytes per interface.
				n, ok2 := v.(float64)
				if !ok1 || !ok2 {
					return nil, fmt.Errorf("interface %s: statistics: %v=%v is not name=integer", name, k, v)
				}
				if n >= 0 {
					st.Statistics[key] = uint64(n)
				}
			}
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func stringMap(v any) (map[string]string, error) {
	out := map[string]string{}
	if v == nil {
		return out, nil
	}
	m, ok := v.(ovsdb.OvsMap)
	if !ok {
		return nil, fmt.Errorf("%T is not a map", v)
	}
	for k, val := range m.GoMap {
		ks, ok1 := k.(string)
		vs, ok2 := val.(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%v=%v is not a string pair", k, val)
		}
		out[ks] = vs
	}
	return out, nil
}

// optionalString reads an optional string column: a bare string, or a set of zero or
// one string.
func optionalString(v any) (string, error) {
	switch s := v.(type) {
	case nil:
		return "", nil
	case string:
		return s, nil
	case ovsdb.OvsSet:
		if len(s.GoSet) == 0 {
			return "", nil
		}
		if str, ok := s.GoSet[0].(string); ok && len(s.GoSet) == 1 {
			return str, nil
		}
	}
	return "", fmt.Errorf("%v is not an optional string", v)
}
