package hwdetect

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"strconv"
	"strings"
)

// maxCPU bounds CPU numbers read from lists (the kernel's NR_CPUS tops out at 8192), so
// a corrupt capture cannot make detection allocate without limit.
const maxCPU = 8191

// ParseCPUList parses the kernel's cpulist format ("0-3,8,10-11", "0-7:2/4", "" or
// "\n" for none), as in /sys/devices/system/cpu/online and isolcpus=. The result is
// sorted and without duplicates. It is the one CPU-list parser of the project (node
// configs use it too).
func ParseCPUList(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return []int{}, nil
	}
	// A bitset keeps memory bounded however many overlapping ranges the input holds.
	var set [maxCPU/64 + 1]uint64
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		// Optional group syntax a-b:used/group (Documentation/admin-guide/kernel-parameters.rst).
		rng, grp, hasGrp := strings.Cut(part, ":")
		lo, hi, isRange := strings.Cut(rng, "-")
		a, err := parseCPU(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = parseCPU(hi); err != nil {
				return nil, fmt.Errorf("cpu list %q: %w", s, err)
			}
			if b < a {
				return nil, fmt.Errorf("cpu list %q: range %d-%d is reversed", s, a, b)
			}
		}
		used, group := 1, 1
		if hasGrp {
			if !isRange {
				return nil, fmt.Errorf("cpu list %q: group %q needs a range", s, grp)
			}
			u, g, ok := strings.Cut(grp, "/")
			if !ok {
				return nil, fmt.Errorf("cpu list %q: group %q is not used/size", s, grp)
			}
			if used, err = strconv.Atoi(u); err != nil || used < 1 {
				return nil, fmt.Errorf("cpu list %q: bad group %q", s, grp)
			}
			if group, err = strconv.Atoi(g); err != nil || group < used {
				return nil, fmt.Errorf("cpu list %q: bad group %q", s, grp)
			}
		}
		for c := a; c <= b; c += group {
			for k := c; k < c+used && k <= b; k++ {
				set[k/64] |= 1 << (k % 64)
			}
		}
	}
	out := []int{}
	for w, bits := range set {
		for ; bits != 0; bits &= bits - 1 {
			out = append(out, w*64+bits0(bits))
		}
	}
	return out, nil
}

// bits0 is the index of the lowest set bit.
func bits0(x uint64) int { return bits.TrailingZeros64(x) }

func parseCPU(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("bad cpu number %q", s)
	}
	if n < 0 || n > maxCPU {
		return 0, fmt.Errorf("cpu number %d out of range 0-%d", n, maxCPU)
	}
	return n, nil
}

// formatCPUList is FormatCPUList for display: "-" for none.
func formatCPUList(cpus []int) string {
	if len(cpus) == 0 {
		return "-"
	}
	return FormatCPUList(cpus)
}

// FormatCPUList is the inverse of ParseCPUList for sorted input: "0-3,8" ("" for none).
func FormatCPUList(cpus []int) string {
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(cpus[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return b.String()
}

// splitCmdline splits /proc/cmdline into parameters the way the kernel does: blanks
// separate, double quotes group ("a=\"b c\""), and "--" ends the kernel's part (what
// follows goes to init).
func splitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	flush := func() {
		if have {
			out = append(out, cur.String())
		}
		cur.Reset()
		have = false
	}
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			flush()
			if len(out) > 0 && out[len(out)-1] == "--" {
				return out[:len(out)-1]
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	flush()
	if len(out) > 0 && out[len(out)-1] == "--" {
		out = out[:len(out)-1]
	}
	return out
}

// cmdlineValue returns the value of the last key=value parameter (the kernel lets later
// parameters override earlier ones).
func cmdlineValue(params []string, key string) (string, bool) {
	val, found := "", false
	for _, p := range params {
		k, v, ok := strings.Cut(p, "=")
		if ok && k == key {
			val, found = v, true
		}
	}
	return val, found
}

// isolcpusFlags are the flag words isolcpus= accepts before its CPU list.
var isolcpusFlags = map[string]bool{"nohz": true, "domain": true, "managed_irq": true}

// parseIsolcpus parses the value of isolcpus= ("domain,managed_irq,2-5" or "2-5"): the
// flags are dropped, the rest is a cpulist.
func parseIsolcpus(v string) ([]int, error) {
	var keep []string
	for _, tok := range strings.Split(v, ",") {
		if isolcpusFlags[strings.TrimSpace(tok)] {
			continue
		}
		keep = append(keep, tok)
	}
	return ParseCPUList(strings.Join(keep, ","))
}

// parseKernelConfig reads a kernel config ("CONFIG_X=y", "# CONFIG_X is not set").
// Values keep their quotes; unset options map to "n".
func parseKernelConfig(r io.Reader) (map[string]string, error) {
	cfg := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "# "); ok {
			if name, ok := strings.CutSuffix(rest, " is not set"); ok && strings.HasPrefix(name, "CONFIG_") {
				cfg[name] = "n"
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(k, "CONFIG_") {
			continue
		}
		cfg[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kernel config: %w", err)
	}
	return cfg, nil
}

// parseSysInt parses a decimal sysfs integer ("-1\n", "4").
func parseSysInt(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("not an integer: %q", s)
	}
	return n, nil
}

// parseSysUint parses a non-negative decimal sysfs counter.
func parseSysUint(s string) (uint64, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not a counter: %q", s)
	}
	return n, nil
}

// parseHexID parses a PCI id attribute ("0x15b3\n") into 4 lowercase hex digits.
func parseHexID(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	h, ok := strings.CutPrefix(s, "0x")
	if !ok {
		return "", fmt.Errorf("pci id %q: no 0x prefix", s)
	}
	n, err := strconv.ParseUint(h, 16, 32)
	if err != nil || len(h) > 8 {
		return "", fmt.Errorf("pci id %q: not hex", s)
	}
	if n > 0xffff {
		return fmt.Sprintf("%x", n), nil
	}
	return fmt.Sprintf("%04x", n), nil
}

// errNoPortName means phys_port_name does not follow a known representor grammar.
var errNoPortName = errors.New("unrecognised phys_port_name")

// portName is a parsed phys_port_name.
type portName struct {
	flavour    string // FlavourUplink, FlavourPF, FlavourVF, FlavourSF
	controller int    // -1 when absent (local controller)
	pf         int
	index      int // VF or SF number, -1 for uplink and pf
}

// parsePhysPortName parses the names the kernel builds in
// net/devlink/port.c:__devlink_port_phys_port_name_get: "p0" and "p0s1" (physical,
// split), "pf0" / "c1pf0" (PCI PF), "pf0vf3" / "c1pf0vf3" (PCI VF), "pf0sf88" /
// "c1pf0sf88" (PCI SF). These are the same grammars sriovnet matches. A bare number ("3")
// is what mlx5 VF representors reported before devlink ports (kernels < 5.x); it reads
// as VF 3 of PF 0.
func parsePhysPortName(s string) (portName, error) {
	p := portName{controller: -1, index: -1}
	if s == "" {
		return p, errNoPortName
	}
	if n, ok := atoiStrict(s); ok {
		p.flavour, p.index = FlavourVF, n
		return p, nil
	}
	rest := s
	if r, ok := strings.CutPrefix(rest, "c"); ok {
		n, tail, ok := leadingInt(r)
		if !ok {
			return p, errNoPortName
		}
		p.controller, rest = n, tail
	}
	if r, ok := strings.CutPrefix(rest, "pf"); ok {
		n, tail, ok := leadingInt(r)
		if !ok {
			return p, errNoPortName
		}
		p.pf = n
		switch {
		case tail == "":
			p.flavour = FlavourPF
			return p, nil
		case strings.HasPrefix(tail, "vf"):
			p.flavour = FlavourVF
		case strings.HasPrefix(tail, "sf"):
			p.flavour = FlavourSF
		default:
			return p, errNoPortName
		}
		idx, ok := atoiStrict(tail[2:])
		if !ok {
			return p, errNoPortName
		}
		p.index = idx
		return p, nil
	}
	if r, ok := strings.CutPrefix(rest, "p"); ok && p.controller < 0 {
		n, tail, ok := leadingInt(r)
		if !ok {
			return p, errNoPortName
		}
		if tail != "" {
			// split port "p0s1"
			sub, ok := strings.CutPrefix(tail, "s")
			if _, ok2 := atoiStrict(sub); !ok || !ok2 {
				return p, errNoPortName
			}
		}
		p.flavour, p.pf = FlavourUplink, n
		return p, nil
	}
	return p, errNoPortName
}

// atoiStrict accepts only plain decimal digits (no sign, no blanks), up to 9 of them.
func atoiStrict(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// leadingInt splits "12vf3" into 12 and "vf3".
func leadingInt(s string) (int, string, bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, ok := atoiStrict(s[:i])
	return n, s[i:], ok
}

// hugepageDirSize parses "hugepages-2048kB" into 2048.
func hugepageDirSize(name string) (uint64, bool) {
	s, ok := strings.CutPrefix(name, "hugepages-")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "kB")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, false
	}
	return n, true
}

// nodeDirID parses "node1" into 1.
func nodeDirID(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "node")
	if !ok {
		return 0, false
	}
	return atoiStrict(s)
}

// virtfnIndex parses "virtfn12" into 12.
func virtfnIndex(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "virtfn")
	if !ok {
		return 0, false
	}
	return atoiStrict(s)
}

// isPCIAddress reports a PCI address in domain:bus:device.function form
// ("0000:3b:00.1"; domains may have more than 4 digits with VMD).
func isPCIAddress(s string) bool {
	dom, rest, ok := strings.Cut(s, ":")
	if !ok || len(dom) < 4 || len(rest) != 7 || rest[2] != ':' || rest[5] != '.' {
		return false
	}
	return isHex(dom) && isHex(rest[0:2]) && isHex(rest[3:5]) && isHex(rest[6:7])
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
		default:
			return false
		}
	}
	return true
}
