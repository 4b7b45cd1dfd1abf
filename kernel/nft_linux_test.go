package kernel

import (
	"strings"
	"testing"

	"github.com/google/nftables/expr"
)

// TestRuleRoundTrip: every rule Compile emits encodes to nftables expressions that
// decode back to the same rule (the read-back comparison relies on it).
func TestRuleRoundTrip(t *testing.T) {
	spec, err := Compile(RouterInput{Router: testRouter(), FloatingIPs: testFIPs()}, "ns")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range spec.Ruleset.Rules {
		ex, ud, err := encodeRule(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeRule(r.Chain, ex, ud)
		if err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		if got != r {
			t.Errorf("round trip: %s → %s", r, got)
		}
	}
}

// TestDecodeForeign: rules this backend did not write are reported, not misread.
func TestDecodeForeign(t *testing.T) {
	r := NATRule{Chain: ChainPostrouting, OutIf: "qg-x", Src: pfx("10.0.0.0/24"), Action: ActionSNAT, To: addr("192.0.2.1")}
	ex, _, err := encodeRule(r)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]expr.Any{
		"counter":        append([]expr.Any{&expr.Counter{}}, ex...),
		"no action":      ex[:len(ex)-2],
		"iifname":        append([]expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Register: 1, Data: ifNameData("x")}}, ex[2:]...),
		"neq":            append([]expr.Any{ex[0], &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifNameData("qg-x")}}, ex[2:]...),
		"odd mask":       append(append(append([]expr.Any{}, ex[:3]...), &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 255, 0}, Xor: []byte{0, 0, 0, 0}}), ex[4:]...),
		"random nat":     append(append([]expr.Any{}, ex[:len(ex)-1]...), &expr.NAT{Type: expr.NATTypeSourceNAT, Family: 2, RegAddrMin: 1, Random: true}),
		"trailing junk":  append(append([]expr.Any{}, ex...), &expr.Counter{}),
		"payload offset": append(append([]expr.Any{}, ex[:2]...), append([]expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 9, Len: 4}}, ex[3:]...)...),
	} {
		if got, err := decodeRule(ChainPostrouting, bad, nil); err == nil {
			t.Errorf("%s: decoded as %s, want an error", name, got)
		}
	}
	if _, _, err := encodeRule(NATRule{Chain: ChainPostrouting, Action: "masquerade", To: addr("192.0.2.1")}); err == nil || !strings.Contains(err.Error(), "unknown action") {
		t.Errorf("unknown action: %v", err)
	}
}
