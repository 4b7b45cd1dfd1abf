package ovsdpdk

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/offlane/offlane/ovsdpdk/vswitchd"
)

// stateOf builds the State a database would be in right after applying l.
func stateOf(l *Layout) *State {
	eid := maps.Clone(l.ExternalIDs)
	eid[KeyManagedOtherConfig] = strings.Join(sortedKeys(l.OtherConfig), ",")
	st := &State{
		OVS:        &vswitchd.OpenvSwitch{UUID: "ovs", OtherConfig: maps.Clone(l.OtherConfig), ExternalIDs: eid, Datapaths: map[string]string{}},
		Bridges:    map[string]*vswitchd.Bridge{},
		Ports:      map[string]*vswitchd.Port{},
		Interfaces: map[string]*vswitchd.Interface{},
	}
	for _, wb := range l.Bridges {
		st.OVS.Datapaths[wb.DatapathType] = "dp-" + wb.DatapathType
		fm := wb.FailMode
		br := &vswitchd.Bridge{UUID: "b-" + wb.Name, Name: wb.Name, DatapathType: wb.DatapathType, FailMode: &fm, ExternalIDs: maps.Clone(wb.ExternalIDs)}
		for _, wp := range wb.Ports {
			addPortRow(st, br, wp.Name, wp.Type, wp.Options, wp.ExternalIDs)
		}
		st.Bridges[wb.Name] = br
		st.OVS.Bridges = append(st.OVS.Bridges, br.UUID)
	}
	return st
}

func addPortRow(st *State, br *vswitchd.Bridge, name, typ string, opts, eids map[string]string) {
	if opts == nil {
		opts = map[string]string{}
	}
	st.Interfaces["i-"+name] = &vswitchd.Interface{UUID: "i-" + name, Name: name, Type: typ, Options: maps.Clone(opts), ExternalIDs: maps.Clone(eids)}
	st.Ports["p-"+name] = &vswitchd.Port{UUID: "p-" + name, Name: name, Interfaces: []string{"i-" + name}, ExternalIDs: maps.Clone(eids)}
	br.Ports = append(br.Ports, "p-"+name)
}

func exampleLayout(t *testing.T) *Layout {
	t.Helper()
	spec, err := Resolve(parse(t, exampleYAML), twoNUMA())
	if err != nil {
		t.Fatal(err)
	}
	return NodeLayout(spec)
}

func changes(p *Plan) string {
	var lines []string
	for _, c := range p.Changes {
		lines = append(lines, c.String())
	}
	return strings.Join(lines, "\n")
}

func TestDiffFresh(t *testing.T) {
	l := exampleLayout(t)
	p, err := Diff(l, &State{OVS: &vswitchd.OpenvSwitch{UUID: "ovs"}, Bridges: map[string]*vswitchd.Bridge{}})
	if err != nil {
		t.Fatal(err)
	}
	got := changes(p)
	for _, w := range []string{
		`+ Open_vSwitch other_config:pmd-cpu-mask: "0xc0"`,
		`+ Open_vSwitch external_ids:offlane-managed-other-config: "dpdk-init,dpdk-lcore-mask,dpdk-socket-mem,hw-offload,pmd-cpu-mask,userspace-tso-enable"`,
		"+ bridge br-int: datapath_type=netdev fail_mode=standalone external_ids{offlane-owner=node offlane-role=integration}",
		"+ port patch-tun on br-int: type=patch options{peer=patch-int}",
		"+ port eth1 on br-phys1: type=system",
		"+ port tun-vxlan on br-tun: type=vxlan options{key=flow local_ip=10.99.0.1 remote_ip=flow tos=inherit}",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("plan lacks %q:\n%s", w, got)
		}
	}
	if len(p.addBridges) != 4 || p.createOVSRow {
		t.Errorf("addBridges %d createOVSRow %v", len(p.addBridges), p.createOVSRow)
	}
}

func TestDiffNoOVSRow(t *testing.T) {
	p, err := Diff(exampleLayout(t), &State{Bridges: map[string]*vswitchd.Bridge{}})
	if err != nil {
		t.Fatal(err)
	}
	if !p.createOVSRow || !strings.Contains(changes(p), "+ Open_vSwitch row: the database was not initialised") {
		t.Fatalf("plan:\n%s", changes(p))
	}
}

func TestDiffInSync(t *testing.T) {
	l := exampleLayout(t)
	st := stateOf(l)
	// Foreign things next to the layout do not make a difference.
	st.OVS.OtherConfig["foreign"] = "x"
	st.OVS.ExternalIDs["system-id"] = "n1"
	st.Bridges["br-int"].ExternalIDs["foreign-tag"] = "y"
	addPortRow(st, st.Bridges["br-int"], "vhu-tenant", "dpdkvhostuserclient", nil, map[string]string{KeyOwner: OwnerPort})
	addPortRow(st, st.Bridges["br-int"], "foreign0", "", nil, nil)
	st.Bridges["br-other"] = &vswitchd.Bridge{UUID: "b-other", Name: "br-other"}
	p, err := Diff(l, st)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() {
		t.Fatalf("plan not empty:\n%s", changes(p))
	}
}

func TestDiffPutsBackManualChanges(t *testing.T) {
	l := exampleLayout(t)
	st := stateOf(l)
	fm := "standalone"
	st.Bridges["br-tun"].FailMode = &fm
	st.Bridges["br-ex"].DatapathType = "system"
	st.Bridges["br-ex"].ExternalIDs[KeyRole] = "something"
	st.Bridges["br-ex"].ExternalIDs["offlane-stale"] = "1"
	st.Interfaces["i-tun-vxlan"].Options["dst_port"] = "4790"
	st.Interfaces["i-patch-tun"].Type = "internal"
	tag := 5
	st.Ports["p-int-br-ex"].Tag = &tag
	st.OVS.OtherConfig["pmd-cpu-mask"] = "0x3"
	delete(st.OVS.OtherConfig, "hw-offload")
	// patch-int removed from br-tun by hand.
	st.Bridges["br-tun"].Ports = deleteOne(st.Bridges["br-tun"].Ports, "p-patch-int")
	delete(st.Ports, "p-patch-int")
	p, err := Diff(l, st)
	if err != nil {
		t.Fatal(err)
	}
	want := `+ Open_vSwitch other_config:hw-offload: "false"
~ Open_vSwitch other_config:pmd-cpu-mask: "0x3" → "0xc0"
~ bridge br-ex: datapath_type "system" → "netdev", external_ids offlane-role="external" -offlane-stale
~ port int-br-ex on br-int: tag 5 → none
~ port patch-tun on br-int: type "internal" → "patch"
~ bridge br-tun: fail_mode "standalone" → "secure"
+ port patch-int on br-tun: type=patch options{peer=patch-tun}
~ port tun-vxlan on br-tun: options {dst_port=4790 key=flow local_ip=10.99.0.1 remote_ip=flow tos=inherit} → {key=flow local_ip=10.99.0.1 remote_ip=flow tos=inherit}`
	if got := changes(p); got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}
	if len(p.Notes) != 0 {
		t.Errorf("notes %v", p.Notes)
	}
}

func TestDiffDatapathRow(t *testing.T) {
	l := exampleLayout(t)
	st := stateOf(l)
	st.OVS.Datapaths = nil
	p, err := Diff(l, st)
	if err != nil {
		t.Fatal(err)
	}
	if got := changes(p); got != "+ Datapath netdev: ovs-vswitchd publishes the datapath's capabilities there" || !slices.Equal(p.addDatapaths, []string{"netdev"}) {
		t.Fatalf("plan without a Datapath row:\n%s", got)
	}
}

func TestDiffPrunesOwned(t *testing.T) {
	st := stateOf(exampleLayout(t))
	st.OVS.OtherConfig["foreign"] = "keep"
	smaller, err := Resolve(parse(t, "datapath: netdev\nintegration_bridge: br-int\ntunnel: {local_ip: 10.99.0.1, types: [vxlan]}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Diff(NodeLayout(smaller), st)
	if err != nil {
		t.Fatal(err)
	}
	got := changes(p)
	for _, w := range []string{
		`- Open_vSwitch other_config:pmd-cpu-mask: was "0xc0"; offlane set it and the config no longer does`,
		`- Open_vSwitch other_config:dpdk-init`,
		"- Open_vSwitch external_ids:offlane-bridge-mappings",
		"- port int-br-ex on br-int: owned by offlane, no longer in the config",
		"- bridge br-ex: owned by offlane, no longer in the config (with its 2 port(s))",
		"- bridge br-phys1: owned by offlane, no longer in the config (with its 3 port(s))",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("plan lacks %q:\n%s", w, got)
		}
	}
	if strings.Contains(got, "foreign") {
		t.Errorf("plan touches a foreign key:\n%s", got)
	}
	if strings.Join(p.Notes, "\n") == "" || !strings.Contains(strings.Join(p.Notes, "\n"), "dpdk-init takes effect when ovs-vswitchd restarts") {
		t.Errorf("notes %v", p.Notes)
	}
}

func TestDiffRefusesForeign(t *testing.T) {
	l := exampleLayout(t)
	for _, tc := range []struct {
		name  string
		setup func(st *State)
		want  string
	}{
		{"foreign bridge with a layout name", func(st *State) {
			delete(st.Bridges["br-ex"].ExternalIDs, KeyOwner)
		}, "bridge br-ex exists and offlane does not own it"},
		{"foreign port with a layout name", func(st *State) {
			delete(st.Ports["p-eth1"].ExternalIDs, KeyOwner)
		}, "port eth1 on bridge br-phys1 exists and offlane does not own it"},
		{"foreign port elsewhere", func(st *State) {
			br := &vswitchd.Bridge{UUID: "b-x", Name: "br-x"}
			st.Bridges["br-x"] = br
			st.Bridges["br-phys1"].Ports = deleteOne(st.Bridges["br-phys1"].Ports, "p-eth1")
			st.Ports["p-eth1"].ExternalIDs = nil
			br.Ports = append(br.Ports, "p-eth1")
		}, "port eth1 (on bridge br-x) exists and offlane does not own it"},
		{"owned bridge to prune holds a foreign port", func(st *State) {
			br := &vswitchd.Bridge{UUID: "b-old", Name: "br-old", ExternalIDs: map[string]string{KeyOwner: OwnerNode}}
			st.Bridges["br-old"] = br
			addPortRow(st, br, "vm7", "", nil, map[string]string{KeyOwner: OwnerPort})
		}, "bridge br-old is owned by offlane and no longer in the config, but holds ports offlane did not create for the layout (vm7)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := stateOf(l)
			tc.setup(st)
			p, err := Diff(l, st)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if p != nil {
				t.Error("a plan came with the error")
			}
		})
	}
}

func TestDiffMovesOwnedPort(t *testing.T) {
	st := stateOf(exampleLayout(t))
	moved, err := Resolve(parse(t, strings.Replace(exampleYAML, "bridge: br-phys1", "bridge: br-phys2", 1)), twoNUMA())
	if err != nil {
		t.Fatal(err)
	}
	p, err := Diff(NodeLayout(moved), st)
	if err != nil {
		t.Fatal(err)
	}
	got := changes(p)
	for _, w := range []string{"- port eth1 on br-phys1: moves to br-phys2", "+ bridge br-phys2", "+ port eth1 on br-phys2", "- bridge br-phys1"} {
		if !strings.Contains(got, w) {
			t.Errorf("plan lacks %q:\n%s", w, got)
		}
	}
	// eth1 is deleted once (as a move), not again with its old bridge.
	n := 0
	for _, d := range p.delPorts {
		if d.port.Name == "eth1" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("eth1 deleted %d times", n)
	}
}

func deleteOne(s []string, v string) []string {
	out := s[:0:0]
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}
