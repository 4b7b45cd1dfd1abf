package offload

import (
	"cmp"
	"slices"
)

// TableCount is how many flows the compiler holds for one bridge table.
type TableCount struct {
	Bridge string
	Table  uint8
	Flows  int
}

// TableCounts counts the compiled flows per bridge and table without copying them (for
// metrics after every reconcile), sorted by bridge then table.
func (c *Compiler) TableCounts() []TableCount {
	type key struct {
		bridge uint16
		table  uint8
	}
	n := map[key]int{}
	for f := range c.flows.all {
		n[key{f.bridge, f.table}]++
	}
	out := make([]TableCount, 0, len(n))
	for k, v := range n {
		out = append(out, TableCount{Bridge: c.bridges[k.bridge], Table: k.table, Flows: v})
	}
	slices.SortFunc(out, func(a, b TableCount) int {
		return cmp.Or(cmp.Compare(a.Bridge, b.Bridge), cmp.Compare(a.Table, b.Table))
	})
	return out
}
