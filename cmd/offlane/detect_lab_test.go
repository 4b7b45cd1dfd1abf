package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/test/lab"
)

// ovsdbStrings reads an OVSDB string or set-of-strings column as ovsdb-client prints it.
func ovsdbStrings(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		if len(x) == 2 && x[0] == "set" {
			var out []string
			for _, e := range x[1].([]any) {
				out = append(out, e.(string))
			}
			slices.Sort(out)
			return out
		}
	}
	return nil
}

// TestLabDetectOVS: `offlane detect --ovsdb` reads a real ovsdb-server + ovs-vswitchd
// over libovsdb and reports what the database holds; when the server is gone the node
// still detects, with ovs.reachable=false and the reason.
func TestLabDetectOVS(t *testing.T) {
	o := lab.StartOVS(t, lab.Options{OtherConfig: map[string]string{"hw-offload": "true"}})
	// ovs-ctl, not ovs-vswitchd, records the versions at start; do as it does.
	if _, err := o.Transact(map[string]any{"op": "update", "table": "Open_vSwitch", "where": []any{},
		"row": map[string]any{"ovs_version": "3.1.0-lab", "db_version": "8.3.1-lab"}}); err != nil {
		t.Fatal(err)
	}
	var row map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for {
		rows, err := o.Select("Open_vSwitch", nil, "ovs_version", "db_version", "datapath_types", "iface_types")
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 1 && len(ovsdbStrings(rows[0]["iface_types"])) > 0 {
			row = rows[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ovs-vswitchd never filled iface_types: %v", rows)
		}
		time.Sleep(100 * time.Millisecond)
	}

	code, out, stderr := offlane(t, "detect", "-o", "json", "--ovsdb", o.Endpoint)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	ovs := decodeNode(t, out).OVS
	if !ovs.Reachable || ovs.Endpoint != o.Endpoint {
		t.Fatalf("ovs = %+v", ovs)
	}
	if want := ovsdbStrings(row["ovs_version"]); len(want) != 1 || ovs.Version != want[0] {
		t.Errorf("version = %q, database says %v", ovs.Version, want)
	}
	if want := ovsdbStrings(row["db_version"]); len(want) != 1 || ovs.DBVersion != want[0] {
		t.Errorf("db_version = %q, database says %v", ovs.DBVersion, want)
	}
	if want := ovsdbStrings(row["datapath_types"]); !slices.Equal(ovs.DatapathTypes, want) || !slices.Contains(want, "netdev") {
		t.Errorf("datapath_types = %v, database says %v", ovs.DatapathTypes, want)
	}
	if want := ovsdbStrings(row["iface_types"]); !slices.Equal(ovs.IfaceTypes, want) {
		t.Errorf("iface_types = %v, database says %v", ovs.IfaceTypes, want)
	}
	if !ovs.HWOffload || ovs.DPDKInitialized {
		t.Errorf("hw_offload = %v (other_config has true), dpdk_initialized = %v (plain build)", ovs.HWOffload, ovs.DPDKInitialized)
	}
	code, table, _ := offlane(t, "detect", "--ovsdb", o.Endpoint)
	if code != exitOK || !strings.Contains(table, "ovs        "+ovs.Version) || !strings.Contains(table, "hw-offload true") {
		t.Errorf("table does not show the OVS line:\n%s", table)
	}

	if err := o.KillOVSDBServer(); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = offlane(t, "detect", "-o", "json", "--ovsdb", o.Endpoint)
	if code != exitOK {
		t.Fatalf("exit %d with ovsdb-server gone: %s", code, stderr)
	}
	gone := decodeNode(t, out).OVS
	if gone.Reachable || !strings.Contains(gone.Reason, strings.TrimPrefix(o.Endpoint, "unix:")) {
		t.Errorf("ovs with the server killed = %+v, want unreachable with a reason naming the socket", gone)
	}
}
