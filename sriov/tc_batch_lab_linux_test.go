package sriov

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/offlane/offlane/offload"
)

// TestLabTCBatchErrorMapping sends 3×batchMsgs+5 rules through the batched sender on
// this machine's rtnetlink (chunks of batchMsgs per sendmsg): rules on a missing ifindex
// get the kernel's ENODEV, rules on lo (no ingress hook) another refusal, a rule whose
// device does not resolve is never sent; every answer lands on its own rule.
func TestLabTCBatchErrorMapping(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("lab: needs root (rtnetlink RTM_NEWTFILTER)")
	}
	if os.Getenv("OFFLANE_LAB") == "off" {
		t.Skip("lab: OFFLANE_LAB=off")
	}
	nb, err := newNLBatch()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nb.Close() })
	base := extraRules()[1]
	rules := make([]offload.TCRule, 3*batchMsgs+5)
	for i := range rules {
		rules[i] = base
		switch i % 3 {
		case 0:
			rules[i].Dev = "bogus"
		case 1:
			rules[i].Dev = "lo"
		case 2:
			rules[i].Dev = "unresolved"
		}
	}
	gone := errors.New("no such netdev")
	resolve := func(d string) (uint32, error) {
		switch d {
		case "bogus":
			return 0x7ffffff0, nil
		case "unresolved":
			return 0, gone
		}
		return 1, nil // lo, and the mirred targets
	}
	errs := nb.add(rules, resolve)
	if len(errs) != len(rules) {
		t.Fatalf("%d answers for %d rules", len(errs), len(rules))
	}
	for i, err := range errs {
		switch i % 3 {
		case 0:
			if !errors.Is(err, unix.ENODEV) {
				t.Errorf("rule %d on a missing ifindex: %v, want ENODEV", i, err)
			}
		case 1:
			if err == nil || errors.Is(err, unix.ENODEV) || errors.Is(err, gone) {
				t.Errorf("rule %d on lo without an ingress hook: %v, want the kernel's refusal (not ENODEV)", i, err)
			}
		case 2:
			if !errors.Is(err, gone) {
				t.Errorf("rule %d with an unresolved device: %v", i, err)
			}
		}
	}
	t.Logf("lo: %v", errs[1])
	// the sequence numbers go on across calls; the socket has nothing left queued
	if errs := nb.add(rules[:2], resolve); !errors.Is(errs[0], unix.ENODEV) || errs[1] == nil {
		t.Errorf("second call: %v", errs)
	}
	if _, _, err := unix.Recvfrom(nb.fd, make([]byte, 64), unix.MSG_DONTWAIT); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("socket not drained: %v", err)
	}
}
