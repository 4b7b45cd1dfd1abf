package ovsdpdk_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/hwdetect"
	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

// connect opens an offlane OVSDB client on the lab, closed at cleanup.
func connect(t *testing.T, o *lab.OVS) *ovsdpdk.Client {
	t.Helper()
	log := lab.Logger(t) // safe if libovsdb logs after Close
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := ovsdpdk.Connect(ctx, ovsdpdk.Options{Endpoint: o.Endpoint, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// layoutFrom parses and resolves a node config written in YAML.
func layoutFrom(t *testing.T, yaml string, hw *hwdetect.Node) *ovsdpdk.Layout {
	t.Helper()
	cfg, err := ovsdpdk.ParseNodeConfig("node.yaml", strings.NewReader(yaml))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ovsdpdk.Resolve(cfg, hw)
	if err != nil {
		t.Fatal(err)
	}
	return ovsdpdk.NodeLayout(spec)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// row selects one row by name straight from ovsdb-server (ovsdb-client), so checks do
// not depend on offlane's own cache.
func row(t *testing.T, o *lab.OVS, table, name string, cols ...string) map[string]any {
	t.Helper()
	rows, err := o.Select(table, []any{[]any{"name", "==", name}}, cols...)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		return nil
	}
	return rows[0]
}

// ovsMap turns OVSDB JSON ["map", [[k, v], ...]] into a Go map of strings.
func ovsMap(v any) map[string]string {
	out := map[string]string{}
	a, ok := v.([]any)
	if !ok || len(a) != 2 || a[0] != "map" {
		return out
	}
	for _, kv := range a[1].([]any) {
		p := kv.([]any)
		out[fmt.Sprint(p[0])] = fmt.Sprint(p[1])
	}
	return out
}

// ovsSet turns OVSDB JSON for a set (or a single atom) into strings; uuids as their
// string.
func ovsSet(v any) []string {
	a, ok := v.([]any)
	if !ok {
		if v == nil {
			return nil
		}
		return []string{fmt.Sprint(v)}
	}
	switch a[0] {
	case "set":
		var out []string
		for _, e := range a[1].([]any) {
			out = append(out, ovsSet(e)...)
		}
		return out
	case "uuid", "named-uuid":
		return []string{fmt.Sprint(a[1])}
	}
	return nil
}

// portNames returns the names of a bridge's ports, read from ovsdb-server.
func portNames(t *testing.T, o *lab.OVS, bridge string) []string {
	t.Helper()
	br := row(t, o, "Bridge", bridge, "ports")
	if br == nil {
		t.Fatalf("bridge %s not in the database", bridge)
	}
	var names []string
	for _, u := range ovsSet(br["ports"]) {
		rows, err := o.Select("Port", []any{[]any{"_uuid", "==", []any{"uuid", u}}}, "name")
		if err != nil || len(rows) != 1 {
			t.Fatalf("port %s: %v", u, err)
		}
		names = append(names, fmt.Sprint(rows[0]["name"]))
	}
	return names
}

// versions returns the _version of every row of table, by name: a row's _version
// changes with every committed modification, so equal maps prove no write happened.
func versions(t *testing.T, o *lab.OVS, table string) map[string]string {
	t.Helper()
	rows, err := o.Select(table, nil, "name", "_version")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range rows {
		out[fmt.Sprint(r["name"])] = fmt.Sprint(r["_version"])
	}
	return out
}

func nextCfg(t *testing.T, o *lab.OVS) int {
	t.Helper()
	rows, err := o.Select("Open_vSwitch", nil, "next_cfg")
	if err != nil || len(rows) != 1 {
		t.Fatalf("Open_vSwitch next_cfg: %v %v", rows, err)
	}
	return int(rows[0]["next_cfg"].(float64))
}
