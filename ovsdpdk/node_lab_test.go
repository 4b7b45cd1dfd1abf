package ovsdpdk_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/ovsdpdk"
	"github.com/offlane/offlane/test/lab"
)

const labNodeYAML = `
datapath: netdev
userspace_tso: true
hw_offload: false
integration_bridge: br-int
external_bridge: br-ex
physnets:
  physnet1: {bridge: br-phys1, interface: up1}
tunnel:
  local_ip: 10.99.0.1/24
  types: [vxlan, geneve, gre]
vhostuser_socket_dir: /var/run/offlane/vhu
`

// TestLabNodeApply: node apply on a fresh OVS produces the Neutron layout (read back
// from ovsdb-server and from ovs-vswitchd), a second apply makes no transaction, a manual
// change to an owned row is put back, foreign rows survive, and rows the config drops
// are pruned.
func TestLabNodeApply(t *testing.T) {
	o := lab.StartOVS(t, lab.Options{})
	// The physnet uplink: a veth end inside the vswitchd namespace.
	o.AddVM(t, "up1", lab.VMOptions{})
	// Foreign state another tool made: a bridge with a port, and keys on Open_vSwitch.
	if _, err := o.Transact(
		map[string]any{"op": "insert", "table": "Interface", "uuid-name": "fi", "row": map[string]any{"name": "fport", "type": "internal"}},
		map[string]any{"op": "insert", "table": "Port", "uuid-name": "fp", "row": map[string]any{"name": "fport", "interfaces": []any{"named-uuid", "fi"}}},
		map[string]any{"op": "insert", "table": "Bridge", "uuid-name": "fb", "row": map[string]any{"name": "br-foreign", "datapath_type": "netdev", "ports": []any{"named-uuid", "fp"}}},
		map[string]any{"op": "mutate", "table": "Open_vSwitch", "where": []any{}, "mutations": []any{
			[]any{"bridges", "insert", []any{"named-uuid", "fb"}},
			[]any{"other_config", "insert", []any{"map", []any{[]any{"foreign-key", "keep-me"}}}},
			[]any{"external_ids", "insert", []any{"map", []any{[]any{"system-id", "node-7"}}}},
		}},
	); err != nil {
		t.Fatal(err)
	}
	c := connect(t, o)
	ctx := ctxT(t, 60*time.Second)
	want := layoutFrom(t, labNodeYAML, nil)

	// plan changes nothing.
	before := nextCfg(t, o)
	plan, err := c.PlanNode(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Empty() {
		t.Fatal("plan on a fresh OVS is empty")
	}
	if got := nextCfg(t, o); got != before || row(t, o, "Bridge", "br-int") != nil {
		t.Fatalf("plan wrote to the database (next_cfg %d → %d)", before, got)
	}

	res, err := c.ApplyNode(ctx, want, ovsdpdk.ApplyOptions{Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Transacted || len(res.Plan.Changes) != len(plan.Changes) {
		t.Fatalf("apply: transacted=%v, %d changes (plan had %d)", res.Transacted, len(res.Plan.Changes), len(plan.Changes))
	}
	if n := c.Transactions(); n != 1 {
		t.Fatalf("apply used %d transactions, want 1", n)
	}
	checkLayout(t, o)

	// ovs-vswitchd made it real: every owned interface got an OpenFlow port, no errors.
	for _, name := range []string{"br-int", "patch-tun", "int-br-ex", "int-br-phys1", "patch-int", "tun-vxlan", "tun-geneve", "tun-gre", "phy-br-ex", "phy-br-phys1", "up1"} {
		r := row(t, o, "Interface", name, "ofport", "error")
		if r == nil {
			t.Fatalf("interface %s missing", name)
		}
		if of, _ := r["ofport"].(float64); of < 1 {
			t.Errorf("interface %s: ofport %v error %v", name, r["ofport"], r["error"])
		}
	}
	if out, err := o.Appctl("dpif/show"); err != nil || !strings.Contains(out, "patch-tun 1/none: (patch: peer=patch-int)") && !strings.Contains(out, "peer=patch-int") {
		t.Errorf("dpif/show does not show the patch port: %v\n%s", err, out)
	}

	// Second apply: no transaction, and ovsdb-server shows no row modified.
	vb, vp := versions(t, o, "Bridge"), versions(t, o, "Port")
	cfg := nextCfg(t, o)
	res, err = c.ApplyNode(ctx, want, ovsdpdk.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Transacted || !res.Plan.Empty() || c.Transactions() != 1 {
		t.Fatalf("second apply: transacted=%v changes=%v", res.Transacted, res.Plan.Changes)
	}
	if !maps.Equal(vb, versions(t, o, "Bridge")) || !maps.Equal(vp, versions(t, o, "Port")) || nextCfg(t, o) != cfg {
		t.Fatal("second apply modified rows")
	}

	// Manual changes to owned rows (behind offlane's back) are put back.
	if _, err := o.Transact(
		map[string]any{"op": "update", "table": "Bridge", "where": []any{[]any{"name", "==", "br-tun"}}, "row": map[string]any{"fail_mode": "standalone"}},
		map[string]any{"op": "update", "table": "Interface", "where": []any{[]any{"name", "==", "tun-vxlan"}}, "row": map[string]any{"options": []any{"map", []any{[]any{"remote_ip", "192.0.2.9"}}}}},
		map[string]any{"op": "mutate", "table": "Open_vSwitch", "where": []any{}, "mutations": []any{
			[]any{"other_config", "delete", []any{"set", []any{"userspace-tso-enable"}}},
			[]any{"other_config", "insert", []any{"map", []any{[]any{"userspace-tso-enable", "false"}}}},
		}},
	); err != nil {
		t.Fatal(err)
	}
	pi := row(t, o, "Port", "patch-tun", "_uuid")
	if _, err := o.Transact(map[string]any{"op": "mutate", "table": "Bridge", "where": []any{[]any{"name", "==", "br-int"}},
		"mutations": []any{[]any{"ports", "delete", pi["_uuid"]}}}); err != nil {
		t.Fatal(err)
	}
	if row(t, o, "Port", "patch-tun") != nil {
		t.Fatal("patch-tun still there after the manual delete")
	}
	// The client sees the manual changes when its monitor delivers them: wait for that.
	var lines []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if plan, err = c.PlanNode(ctx, want); err != nil {
			t.Fatal(err)
		}
		if len(plan.Changes) >= 4 || time.Now().After(deadline) {
			break
		}
	}
	for _, ch := range plan.Changes {
		lines = append(lines, ch.String())
	}
	t.Logf("plan after manual changes:\n%s", strings.Join(lines, "\n"))
	if len(plan.Changes) != 4 {
		t.Errorf("want 4 changes (fail_mode, tunnel options, other_config, patch port), got %d", len(plan.Changes))
	}
	if _, err := c.ApplyNode(ctx, want, ovsdpdk.ApplyOptions{Wait: true}); err != nil {
		t.Fatal(err)
	}
	checkLayout(t, o)

	// A smaller config prunes the owned rows it no longer names, not the foreign ones.
	smaller := layoutFrom(t, strings.Replace(strings.Replace(labNodeYAML, "external_bridge: br-ex\n", "", 1),
		"physnets:\n  physnet1: {bridge: br-phys1, interface: up1}\n", "", 1), nil)
	res, err = c.ApplyNode(ctx, smaller, ovsdpdk.ApplyOptions{Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pruning plan: %v", res.Plan.Changes)
	for _, gone := range []string{"br-ex", "br-phys1"} {
		if row(t, o, "Bridge", gone) != nil {
			t.Errorf("bridge %s not pruned", gone)
		}
	}
	for _, gone := range []string{"int-br-ex", "int-br-phys1", "phy-br-phys1", "up1"} {
		if row(t, o, "Port", gone) != nil || row(t, o, "Interface", gone) != nil {
			t.Errorf("port %s not pruned", gone)
		}
	}
	if got := portNames(t, o, "br-int"); !sameSet(got, []string{"br-int", "patch-tun"}) {
		t.Errorf("br-int ports after pruning: %v", got)
	}
	ovs := mustOVSRow(t, o)
	if _, ok := ovsMap(ovs["external_ids"])[ovsdpdk.KeyBridgeMappings]; ok {
		t.Error("bridge mappings not removed with the physnets")
	}
	checkForeign(t, o)

	// A config naming the foreign bridge is refused, and nothing at all is written.
	txns, cfg := c.Transactions(), nextCfg(t, o)
	clash := layoutFrom(t, strings.Replace(labNodeYAML, "external_bridge: br-ex", "external_bridge: br-foreign", 1), nil)
	if _, err := c.ApplyNode(ctx, clash, ovsdpdk.ApplyOptions{}); err == nil || !strings.Contains(err.Error(), "bridge br-foreign exists and offlane does not own it") {
		t.Fatalf("apply over a foreign bridge: %v", err)
	}
	if c.Transactions() != txns || nextCfg(t, o) != cfg || row(t, o, "Bridge", "br-phys1") != nil {
		t.Fatal("a refused apply wrote to the database")
	}
	checkForeign(t, o)
}

func checkLayout(t *testing.T, o *lab.OVS) {
	t.Helper()
	wantBridges := map[string]struct {
		failMode string
		ports    []string
	}{
		"br-int":   {"standalone", []string{"br-int", "patch-tun", "int-br-ex", "int-br-phys1"}},
		"br-tun":   {"secure", []string{"br-tun", "patch-int", "tun-vxlan", "tun-geneve", "tun-gre"}},
		"br-ex":    {"secure", []string{"br-ex", "phy-br-ex"}},
		"br-phys1": {"secure", []string{"br-phys1", "phy-br-phys1", "up1"}},
	}
	for name, wb := range wantBridges {
		br := row(t, o, "Bridge", name, "datapath_type", "fail_mode", "external_ids")
		if br == nil {
			t.Fatalf("bridge %s missing", name)
		}
		if br["datapath_type"] != "netdev" || fmt.Sprint(br["fail_mode"]) != wb.failMode {
			t.Errorf("bridge %s: datapath_type=%v fail_mode=%v", name, br["datapath_type"], br["fail_mode"])
		}
		if ovsMap(br["external_ids"])[ovsdpdk.KeyOwner] != ovsdpdk.OwnerNode {
			t.Errorf("bridge %s not tagged as offlane's: %v", name, br["external_ids"])
		}
		if got := portNames(t, o, name); !sameSet(got, wb.ports) {
			t.Errorf("bridge %s ports %v, want %v", name, got, wb.ports)
		}
	}
	if p := ovsMap(row(t, o, "Bridge", "br-phys1", "external_ids")["external_ids"]); p[ovsdpdk.KeyPhysnet] != "physnet1" {
		t.Errorf("br-phys1 external_ids %v", p)
	}
	for name, peer := range map[string]string{"patch-tun": "patch-int", "patch-int": "patch-tun", "int-br-ex": "phy-br-ex",
		"phy-br-ex": "int-br-ex", "int-br-phys1": "phy-br-phys1", "phy-br-phys1": "int-br-phys1"} {
		i := row(t, o, "Interface", name, "type", "options")
		if i["type"] != "patch" || ovsMap(i["options"])["peer"] != peer {
			t.Errorf("interface %s: type=%v options=%v, want patch to %s", name, i["type"], i["options"], peer)
		}
	}
	for _, ty := range []string{"vxlan", "geneve", "gre"} {
		i := row(t, o, "Interface", "tun-"+ty, "type", "options")
		opts := ovsMap(i["options"])
		if i["type"] != ty || opts["local_ip"] != "10.99.0.1" || opts["remote_ip"] != "flow" || opts["key"] != "flow" || opts["tos"] != "inherit" || len(opts) != 4 {
			t.Errorf("tunnel port tun-%s: type=%v options=%v", ty, i["type"], opts)
		}
	}
	ovs := mustOVSRow(t, o)
	oc := ovsMap(ovs["other_config"])
	if oc["userspace-tso-enable"] != "true" || oc["hw-offload"] != "false" {
		t.Errorf("other_config %v", oc)
	}
	eid := ovsMap(ovs["external_ids"])
	if eid[ovsdpdk.KeyBridgeMappings] != "physnet1:br-phys1" || eid[ovsdpdk.KeyManagedOtherConfig] != "hw-offload,userspace-tso-enable" {
		t.Errorf("Open_vSwitch external_ids %v", eid)
	}
	checkForeign(t, o)
}

func checkForeign(t *testing.T, o *lab.OVS) {
	t.Helper()
	if got := portNames(t, o, "br-foreign"); !sameSet(got, []string{"fport"}) {
		t.Errorf("foreign bridge ports %v", got)
	}
	ovs := mustOVSRow(t, o)
	if ovsMap(ovs["other_config"])["foreign-key"] != "keep-me" || ovsMap(ovs["external_ids"])["system-id"] != "node-7" {
		t.Errorf("foreign keys on Open_vSwitch lost: %v %v", ovs["other_config"], ovs["external_ids"])
	}
	if ovsMap(row(t, o, "Bridge", "br-foreign", "external_ids")["external_ids"])[ovsdpdk.KeyOwner] != "" {
		t.Error("foreign bridge got tagged")
	}
}

func mustOVSRow(t *testing.T, o *lab.OVS) map[string]any {
	t.Helper()
	rows, err := o.Select("Open_vSwitch", nil, "other_config", "external_ids")
	if err != nil || len(rows) != 1 {
		t.Fatalf("Open_vSwitch: %v %v", rows, err)
	}
	return rows[0]
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
