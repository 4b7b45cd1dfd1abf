//go:build linux

package sriov_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offlane/offlane/offload"
	"github.com/offlane/offlane/sriov"
	"github.com/offlane/offlane/test/kernellab"
)

// The in-guest comparison: insertion rate of offlane's applier against
// `tc -batch` of the same rules, on the same boot, each on fresh devices. The rates are
// logged (a figure, not a timed assertion); what is asserted is that both put every rule
// into the kernel and that the kernel holds, read back, exactly the rules (so tc's
// encoding and offlane's agree).

const (
	insDevs   = 4   // veth devices per method; rules redirect among them
	insPerDev = 500 // rules per device
)

// insDevices creates insDevs veth pairs prefix0..; their peers stay down in the host
// namespace (no traffic: the test measures insertion).
func insDevices(t *testing.T, prefix string) []string {
	t.Helper()
	devs := make([]string, insDevs)
	for i := range devs {
		devs[i] = fmt.Sprintf("%s%d", prefix, i)
		tcsh(t, "ip", "link", "add", devs[i], "type", "veth", "peer", "name", devs[i]+"p")
		dev := devs[i]
		t.Cleanup(func() { _ = exec.Command("ip", "link", "del", dev).Run() })
		tcsh(t, "ip", "link", "set", devs[i], "up")
	}
	return devs
}

// insRules is insDevs × insPerDev software rules on devs, one exact destination MAC
// each, with a mix of the compiler's action lists: redirect; vlan push + redirect;
// mirror + vlan push + redirect; tunnel_key unset + redirect.
func insRules(devs []string) []offload.TCRule {
	out := make([]offload.TCRule, 0, len(devs)*insPerDev)
	for d, dev := range devs {
		next, prev := devs[(d+1)%len(devs)], devs[(d+len(devs)-1)%len(devs)]
		for j := range insPerDev {
			r := offload.TCRule{Dev: dev, Chain: offload.TCChain, Prio: offload.TCPrioUnicast, Proto: offload.TCProtoAll,
				Match: offload.TCMatch{DstMAC: fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", d, j>>8, j&0xff)},
				Flags: offload.TCSkipHW, Origin: offload.Origin{Kind: offload.KindPort, ID: fmt.Sprintf("port-%d-%d", d, j)}}
			vid := uint16(1 + j%4000)
			switch j % 4 {
			case 0:
				r.Actions = []offload.TCAction{{Kind: offload.TCActRedirect, Dev: next}}
			case 1:
				r.Actions = []offload.TCAction{{Kind: offload.TCActVLANPush, VLANID: vid}, {Kind: offload.TCActRedirect, Dev: next}}
			case 2:
				r.Actions = []offload.TCAction{{Kind: offload.TCActMirror, Dev: prev}, {Kind: offload.TCActVLANPush, VLANID: vid},
					{Kind: offload.TCActRedirect, Dev: next}}
			case 3:
				r.Actions = []offload.TCAction{{Kind: offload.TCActTunUnset}, {Kind: offload.TCActRedirect, Dev: prev}}
			}
			r.Seal()
			out = append(out, r)
		}
	}
	return out
}

// insReadBack checks that devs hold exactly rules: every one present with equal content
// and no other offlane filter.
func insReadBack(t *testing.T, g *sriov.NetlinkTC, who string, devs []string, rules []offload.TCRule) {
	t.Helper()
	var got []sriov.TCFilter
	for _, d := range devs {
		fs, err := g.Filters(context.Background(), d)
		if err != nil {
			t.Fatalf("%s: read back %s: %v", who, d, err)
		}
		got = append(got, fs...)
	}
	if m := sriov.TCMissing(rules, got); len(m) > 0 {
		t.Fatalf("%s: %d of %d rules missing or different after insertion, first: %s", who, len(m), len(rules), m[0])
	}
	if len(got) != len(rules) {
		t.Fatalf("%s: read back %d filters, want %d", who, len(got), len(rules))
	}
}

// TestKernelTCInsertVsTCBatch: the same rules (on fresh devices each) inserted by
// offlane's applier (batched sendmsg, ends with its own read-back), by its sender alone,
// and by `tc -batch` from a file written beforehand; rates logged, results read back;
// then the applier prunes its rules (batched deletes) and none is left.
func TestKernelTCInsertVsTCBatch(t *testing.T) {
	kernellab.RequireGuest(t)
	ctx := context.Background()
	g, err := sriov.NewNetlinkTC()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	a := sriov.NewTCApplier(g, nil)

	// warm up: the first rules load sch_ingress, cls_flower and the action modules
	wdevs := insDevices(t, "insw")
	if _, err := a.Apply(ctx, insRules(wdevs)[:4], nil); err != nil {
		t.Fatalf("warm-up apply: %v", err)
	}

	// tc -batch: the file is written before timing; qdiscs are in it as the applier
	// creates its own
	tdevs := insDevices(t, "insb")
	trules := insRules(tdevs)
	var file strings.Builder
	for _, d := range tdevs {
		fmt.Fprintf(&file, "qdisc add dev %s clsact\n", d)
	}
	for i := range trules {
		file.WriteString(trules[i].String())
		file.WriteByte('\n')
	}
	batch := filepath.Join(t.TempDir(), "rules.batch")
	if err := os.WriteFile(batch, []byte(file.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if out, err := exec.Command("tc", "-batch", batch).CombinedOutput(); err != nil {
		t.Fatalf("tc -batch: %v\n%s", err, out)
	}
	dtTC := time.Since(t0)
	insReadBack(t, g, "tc -batch", tdevs, trules)

	// offlane's applier: ingress hooks, listing, batched adds, read back
	adevs := insDevices(t, "insa")
	arules := insRules(adevs)
	t0 = time.Now()
	rep, err := a.Apply(ctx, arules, nil)
	dtApply := time.Since(t0)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if rep.Added != len(arules) || len(rep.Filters) != len(arules) {
		t.Fatalf("apply: added %d, read back %d, want %d", rep.Added, len(rep.Filters), len(arules))
	}
	insReadBack(t, g, "applier", adevs, arules)

	// the applier's sender alone (what tc -batch does: create the hooks, add)
	sdevs := insDevices(t, "inss")
	srules := insRules(sdevs)
	t0 = time.Now()
	for _, d := range sdevs {
		if err := g.EnsureClsact(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	errs := g.FilterAddBatch(ctx, srules)
	dtSend := time.Since(t0)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("batched add of %s: %v", srules[i].String(), err)
		}
	}
	insReadBack(t, g, "sender", sdevs, srules)

	// pruning: the applier deletes all its rules on the devices, batched
	t0 = time.Now()
	prep, err := a.Apply(ctx, nil, adevs)
	dtPrune := time.Since(t0)
	if err != nil || prep.Deleted != len(arules) || len(prep.Filters) != 0 {
		t.Fatalf("prune: deleted %d of %d, %d left: %v", prep.Deleted, len(arules), len(prep.Filters), err)
	}
	insReadBack(t, g, "prune", adevs, nil)

	n := float64(len(trules))
	rTC, rApply, rSend := n/dtTC.Seconds(), n/dtApply.Seconds(), n/dtSend.Seconds()
	t.Logf("insertion of %d rules on %d devices (same boot, fresh devices each; rates under this guest's emulation):", len(trules), insDevs)
	t.Logf("  tc -batch:                        %8.0f rules/s (%v)", rTC, dtTC.Round(time.Millisecond))
	t.Logf("  offlane applier (incl. read back): %8.0f rules/s (%v) = %.2fx tc -batch (target >= 0.9x)", rApply, dtApply.Round(time.Millisecond), rApply/rTC)
	t.Logf("  offlane batched sender alone:      %8.0f rules/s (%v) = %.2fx tc -batch", rSend, dtSend.Round(time.Millisecond), rSend/rTC)
	t.Logf("  offlane applier pruning them all: %8.0f rules/s (%v)", n/dtPrune.Seconds(), dtPrune.Round(time.Millisecond))
}
