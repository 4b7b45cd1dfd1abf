package offload

// portBlock is a value/mask pair matching an aligned block of ports.
type portBlock struct{ value, mask uint16 }

// portBlocks splits the inclusive port range lo..hi into the fewest value/mask blocks
// (bitwise matches), as Neutron's OVS firewall does. The whole space 0..65535 is one
// block with mask 0 (callers drop the match then).
func portBlocks(lo, hi int) []portBlock {
	var out []portBlock
	for lo <= hi {
		size := 1
		for size < 1<<16 && lo%(size*2) == 0 && lo+size*2-1 <= hi {
			size *= 2
		}
		out = append(out, portBlock{value: uint16(lo), mask: uint16((1<<16 - size) & 0xffff)})
		lo += size
	}
	return out
}
