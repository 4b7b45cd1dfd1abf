package main

import (
	"strings"
	"testing"
)

func TestMemoryLimitFlag(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{{"150MiB", 150 << 20, true}, {"1GiB", 1 << 30, true}, {"20000000", 20000000, true}, {"12KiB", 12 << 10, true},
		{"150MB", 0, false}, {"-1MiB", 0, false}, {"MiB", 0, false}, {"99999999999GiB", 0, false}} {
		got, err := parseSize(c.in)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("parseSize(%q) = %d, %v", c.in, got, err)
		}
	}
	f := &agentFlags{standalone: true, nodeConfig: "node.yaml", host: "h", l3Backend: "auto", memLimit: "10MiB"}
	if err := f.validate("/tmp"); err == nil || !strings.Contains(err.Error(), "--memory-limit") {
		t.Fatalf("10MiB: %v", err)
	}
	f.memLimit = "150MiB"
	if err := f.validate("/tmp"); err != nil || f.memBytes != 150<<20 {
		t.Fatalf("150MiB: %d bytes, %v", f.memBytes, err)
	}
	f.memLimit, f.memBytes = "off", 0
	if err := f.validate("/tmp"); err != nil || f.memBytes != 0 {
		t.Fatalf("off: %d bytes, %v", f.memBytes, err)
	}
}
