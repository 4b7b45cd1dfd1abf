package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/offlane/offlane/offload"
)

// TestStreamJSONEqualsMarshal: the streamed encoding is byte for byte json.Marshal's,
// for the node plan file of the explain tests and for IR-shaped values large enough to
// be streamed element by element.
func TestStreamJSONEqualsMarshal(t *testing.T) {
	ir, err := offload.Build(offload.BuildInput{Host: "node1", Snapshot: explainSnapshot(),
		VTEPs: map[string]netip.Addr{"node2": netip.MustParseAddr("192.0.2.2")}})
	if err != nil {
		t.Fatal(err)
	}
	big := &offload.IR{Host: "node1", Ports: map[string]*offload.Port{}, Members: map[string]*offload.Member{}}
	plan := &offload.Plan{Host: "node1"}
	for i := range 3 * streamMin {
		id := fmt.Sprintf("p%04d", i)
		big.Ports[id] = &offload.Port{ID: id, NetworkID: "net-\"quoted\" <&>", MAC: "fa:16:3e:00:00:01",
			IPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, OFPort: i}
		if i%2 == 0 {
			big.Members[id] = &offload.Member{PortID: id, Groups: []string{"g"}}
		}
		plan.Ports = append(plan.Ports, offload.PortPlan{PortID: id, Decisions: []offload.Decision{{Feature: offload.FeatureL2, Backend: offload.BackendOpenFlow, Reason: "r"}}})
	}
	for _, v := range []any{
		nodePlanFile{Format: nodePlanFormat, Host: "node1", Saved: time.Unix(1700000000, 0).UTC(), Layout: explainLayout(), IR: ir,
			Plan: offload.PlanNode(ir, ovsOnlyNode(), explainLayout())},
		nodePlanFile{Format: nodePlanFormat, Host: "node1", Layout: explainLayout(), IR: big, Plan: plan},
		big, plan, (*offload.IR)(nil),
	} {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := streamJSON(&got, v); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%T: streamed\n%.400s\nmarshalled\n%.400s", v, got.Bytes(), want)
		}
	}
}
