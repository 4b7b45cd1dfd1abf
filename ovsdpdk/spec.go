package ovsdpdk

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/offlane/offlane/hwdetect"
)

// Defaults for keys a node config may leave out.
const (
	DefaultOVSDB              = "unix:/var/run/openvswitch/db.sock"
	DefaultDatapath           = "system"
	DefaultIntegrationBridge  = "br-int"
	DefaultTunnelBridge       = "br-tun"
	DefaultVhostUserSocketDir = "/var/run/offlane/vhu"
)

// autoSocketMemMB is what socket_mem: auto asks per NUMA node that has a NIC, capped by the
// free hugepage memory there.
const autoSocketMemMB = 1024

// NodeSpec is a node config with defaults applied, validated, and its auto values
// resolved against the detected hardware: the input of Layout.
type NodeSpec struct {
	Config NodeConfig
	// Resolved DPDK values (nil: leave the OVS key alone / unset).
	SocketMem   []int
	SocketLimit []int
	PMDCPUs     []int
	LcoreCPUs   []int
	// Derivations say how each auto value was computed, for `node plan`.
	Derivations []string
}

// Resolve applies defaults, validates cfg (every problem at once, each naming its key and
// the fix, as *ConfigError joined with errors.Join) and computes the auto values from hw.
// hw is needed only when DPDK is enabled (CPU and NUMA layout, hugepages); nil is
// accepted otherwise. It touches nothing.
func Resolve(cfg *NodeConfig, hw *hwdetect.Node) (*NodeSpec, error) {
	c := withDefaults(*cfg)
	var errs []error
	add := func(key, msg, fix string) { errs = append(errs, &ConfigError{Key: key, Msg: msg, Fix: fix}) }

	validateEndpoint(&c, add)
	switch c.Datapath {
	case "netdev", "system":
	default:
		add("datapath", fmt.Sprintf("%q is not a datapath type", c.Datapath), "use netdev (userspace, DPDK) or system (kernel)")
	}
	if c.UserspaceTSO != nil && c.Datapath == "system" {
		add("userspace_tso", "userspace TSO applies to the netdev datapath only", "remove userspace_tso or set datapath: netdev")
	}
	switch c.TCPolicy {
	case "", "skip_sw", "skip_hw", "none":
	default:
		add("tc_policy", fmt.Sprintf("%q is not a tc policy", c.TCPolicy), "use skip_sw, skip_hw or none")
	}
	if c.TCPolicy != "" && (c.HWOffload == nil || !*c.HWOffload) {
		add("tc_policy", "only used with hardware offload", "set hw_offload: true or remove tc_policy")
	}
	if !filepath.IsAbs(c.VhostUserSocketDir) {
		add("vhostuser_socket_dir", fmt.Sprintf("%q is not an absolute path", c.VhostUserSocketDir), "give an absolute directory, e.g. "+DefaultVhostUserSocketDir)
	}
	switch c.L3Backend {
	case "", "auto", "openflow", "nftables":
	default:
		add("l3_backend", fmt.Sprintf("%q is not an L3 backend", c.L3Backend), "use auto, openflow or nftables")
	}
	validateBridges(&c, add)
	if c.Tunnel != nil {
		validateTunnel(c.Tunnel, add)
	}
	for _, name := range sortedKeys(c.Physnets) {
		pn := c.Physnets[name]
		key := "physnets." + name
		if !physnetName.MatchString(name) {
			add(key, "physnet names may use letters, digits, '-', '_' and '.'", "rename the physnet")
		}
		if pn.Interface != "" && !validIfName(pn.Interface) {
			add(key+".interface", fmt.Sprintf("%q is not an interface name (1-15 bytes, no '/', ':' or spaces)", pn.Interface), "give the uplink's name, e.g. eth1")
		}
		if pn.Devargs != "" && pn.Interface == "" {
			add(key+".devargs", "a DPDK uplink needs a name", "set "+key+".interface (the OVS port name, e.g. dpdk-p0)")
		}
		if pn.Devargs != "" && (c.DPDK == nil || !c.DPDK.Enabled) {
			add(key+".devargs", "a DPDK uplink needs DPDK", "set dpdk.enabled: true or remove devargs")
		}
	}

	spec := &NodeSpec{Config: c}
	if d := c.DPDK; d != nil && d.Enabled {
		if c.Datapath != "netdev" {
			add("dpdk.enabled", "DPDK needs the userspace datapath", "set datapath: netdev, or dpdk.enabled: false for the kernel datapath")
		}
		if d.PMDMaxSleep != nil && (*d.PMDMaxSleep < 0 || *d.PMDMaxSleep > 10000) {
			add("dpdk.pmd_maxsleep", fmt.Sprintf("%d µs is out of range", *d.PMDMaxSleep), "use 0..10000 µs (0: never sleep)")
		}
		if d.HugepageDir != "" && !filepath.IsAbs(d.HugepageDir) {
			add("dpdk.hugepage_dir", fmt.Sprintf("%q is not an absolute path", d.HugepageDir), "give the hugetlbfs mount point, e.g. /dev/hugepages")
		}
		if hw == nil {
			add("dpdk", "needs the node's CPU, NUMA and hugepage layout, but hardware detection gave none", "run where `offlane detect` works, or pass a captured tree")
		} else {
			resolveDPDK(spec, hw, add)
		}
	}
	if len(errs) == 0 {
		// Uplink names share the port namespace with the ports the layout creates.
		made := map[string]string{}
		for _, b := range NodeLayout(spec).Bridges {
			for _, p := range b.Ports {
				if p.ExternalIDs[KeyRole] != RoleUplink {
					made[p.Name] = b.Name
				}
			}
		}
		for _, name := range sortedKeys(c.Physnets) {
			if br, ok := made[c.Physnets[name].Interface]; ok {
				add("physnets."+name+".interface", fmt.Sprintf("%s is the name of a port offlane creates on %s", c.Physnets[name].Interface, br), "name the physical interface, e.g. eth1")
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return spec, nil
}

func withDefaults(c NodeConfig) NodeConfig {
	if c.OVSDB == "" {
		c.OVSDB = DefaultOVSDB
	}
	if c.Datapath == "" {
		c.Datapath = DefaultDatapath
	}
	if c.IntegrationBridge == "" {
		c.IntegrationBridge = DefaultIntegrationBridge
	}
	if c.VhostUserSocketDir == "" {
		c.VhostUserSocketDir = DefaultVhostUserSocketDir
	}
	if c.Tunnel != nil {
		t := *c.Tunnel
		if t.Bridge == "" {
			t.Bridge = DefaultTunnelBridge
		}
		c.Tunnel = &t
	}
	return c
}

var (
	physnetName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	hostPort    = regexp.MustCompile(`^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$`)
)

// validIfName reports whether s can name a bridge or port that is also a netdev.
func validIfName(s string) bool {
	return len(s) > 0 && len(s) <= 15 && s != "." && s != ".." && !strings.ContainsAny(s, "/: \t\n,")
}

func validateEndpoint(c *NodeConfig, add func(key, msg, fix string)) {
	scheme, rest, _ := strings.Cut(c.OVSDB, ":")
	switch scheme {
	case "unix":
		if !filepath.IsAbs(rest) {
			add("ovsdb", fmt.Sprintf("%q: the unix socket path must be absolute", c.OVSDB), "e.g. "+DefaultOVSDB)
		}
	case "tcp", "ssl":
		if !hostPort.MatchString(rest) {
			add("ovsdb", fmt.Sprintf("%q: want %s:HOST:PORT", c.OVSDB, scheme), "e.g. "+scheme+":192.0.2.10:6640")
		}
	default:
		add("ovsdb", fmt.Sprintf("%q is not an OVSDB endpoint", c.OVSDB), "use unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT")
	}
	if scheme == "ssl" {
		t := c.TLS
		if t == nil {
			add("tls", "an ssl: endpoint needs client TLS files", "set tls.private_key, tls.certificate and tls.ca_cert")
			return
		}
		for k, v := range map[string]string{"tls.private_key": t.PrivateKey, "tls.certificate": t.Certificate, "tls.ca_cert": t.CACert} {
			if v == "" {
				add(k, "missing", "give the PEM file's path")
			}
		}
	} else if c.TLS != nil {
		add("tls", "only used with an ssl: endpoint", "remove tls or use ovsdb: ssl:HOST:PORT")
	}
}

func validateBridges(c *NodeConfig, add func(key, msg, fix string)) {
	owner := map[string]string{} // bridge name -> key that named it
	claim := func(key, name string) {
		if !validIfName(name) {
			add(key, fmt.Sprintf("%q is not a bridge name (1-15 bytes, no '/', ':' or spaces)", name), "pick a short name such as br-int")
			return
		}
		if prev, ok := owner[name]; ok {
			add(key, fmt.Sprintf("bridge %s is already the bridge of %s", name, prev), "give each role and each physnet its own bridge")
			return
		}
		owner[name] = key
	}
	claim("integration_bridge", c.IntegrationBridge)
	if c.Tunnel != nil {
		claim("tunnel.bridge", c.Tunnel.Bridge)
	}
	if c.ExternalBridge != "" {
		claim("external_bridge", c.ExternalBridge)
	}
	uplinks := map[string]string{}
	for _, name := range sortedKeys(c.Physnets) {
		pn := c.Physnets[name]
		key := "physnets." + name
		if pn.Bridge == "" {
			add(key+".bridge", "missing", "name the physnet's bridge, e.g. br-"+name)
		} else {
			claim(key+".bridge", pn.Bridge)
		}
		if pn.Interface != "" {
			if prev, ok := uplinks[pn.Interface]; ok {
				add(key+".interface", fmt.Sprintf("%s is already the uplink of %s", pn.Interface, prev), "give each physnet its own uplink")
			} else if _, isBridge := owner[pn.Interface]; isBridge {
				add(key+".interface", fmt.Sprintf("%s is a bridge name", pn.Interface), "name the physical interface, e.g. eth1")
			}
			uplinks[pn.Interface] = key
		}
	}
}

func validateTunnel(t *TunnelConfig, add func(key, msg, fix string)) {
	if t.LocalIP == "" {
		add("tunnel.local_ip", "missing", "give this node's tunnel endpoint address, e.g. 10.99.0.1")
	} else if _, err := tunnelIP(t.LocalIP); err != nil {
		add("tunnel.local_ip", fmt.Sprintf("%q is not an IP address or CIDR", t.LocalIP), "give this node's tunnel endpoint address, e.g. 10.99.0.1 or 10.99.0.1/24")
	}
	if len(t.Types) == 0 {
		add("tunnel.types", "missing", "list one or more of vxlan, geneve, gre")
	}
	seen := map[string]bool{}
	for _, ty := range t.Types {
		switch ty {
		case "vxlan", "geneve", "gre":
		default:
			add("tunnel.types", fmt.Sprintf("%q is not a tunnel type", ty), "use vxlan, geneve or gre")
		}
		if seen[ty] {
			add("tunnel.types", ty+" is listed twice", "list each type once")
		}
		seen[ty] = true
	}
}

// tunnelIP accepts "10.99.0.1" or "10.99.0.1/24" and returns the address.
func tunnelIP(s string) (netip.Addr, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Addr{}, err
		}
		return p.Addr(), nil
	}
	return netip.ParseAddr(s)
}

// resolveDPDK computes auto values and checks explicit ones against the hardware.
func resolveDPDK(spec *NodeSpec, hw *hwdetect.Node, add func(key, msg, fix string)) {
	d := spec.Config.DPDK
	online := map[int]bool{}
	for _, c := range hw.CPUs.Online {
		online[c] = true
	}
	isolated := map[int]bool{}
	for _, c := range hw.CPUs.Isolated {
		isolated[c] = true
	}
	numaNodes := hw.CPUs.NUMA
	if len(numaNodes) == 0 {
		numaNodes = []hwdetect.NUMANode{{ID: 0, CPUs: hw.CPUs.Online, Isolated: hw.CPUs.Isolated}}
	}
	nicNUMA, why := nicNUMANodes(spec.Config, hw, numaNodes)
	onNICNUMA := func(pick func(n hwdetect.NUMANode) []int) []int {
		var out []int
		for _, n := range numaNodes {
			if slices.Contains(nicNUMA, n.ID) {
				out = append(out, pick(n)...)
			}
		}
		sort.Ints(out)
		return slices.Compact(out)
	}
	checkCPUs := func(key string, cpus []int) {
		for _, c := range cpus {
			if !online[c] {
				add(key, fmt.Sprintf("CPU %d does not exist or is offline (online: %s)", c, hwdetect.FormatCPUList(hw.CPUs.Online)), "list online CPUs or write auto")
				return
			}
		}
	}

	// PMD CPUs: isolated CPUs on the NICs' NUMA nodes.
	switch {
	case d.PMDCPUs.Auto:
		spec.PMDCPUs = onNICNUMA(func(n hwdetect.NUMANode) []int { return n.Isolated })
		if len(spec.PMDCPUs) == 0 {
			spec.PMDCPUs = nil
			spec.Derivations = append(spec.Derivations, fmt.Sprintf(
				"dpdk.pmd_cpus: auto → not set: no isolated CPUs on NUMA node(s) %s (%s); OVS then runs one PMD per NUMA node on a shared CPU. Isolate CPUs (isolcpus=) or list them",
				ints(nicNUMA), why))
		} else {
			spec.Derivations = append(spec.Derivations, fmt.Sprintf("dpdk.pmd_cpus: auto → %s: the isolated CPUs on NUMA node(s) %s (%s)",
				hwdetect.FormatCPUList(spec.PMDCPUs), ints(nicNUMA), why))
		}
	case d.PMDCPUs.CPUs != nil:
		checkCPUs("dpdk.pmd_cpus", d.PMDCPUs.CPUs)
		spec.PMDCPUs = d.PMDCPUs.CPUs
	}

	// lcore: the first housekeeping (not isolated, not PMD) CPU on the NICs' NUMA nodes.
	switch {
	case d.LcoreCPUs.Auto:
		var house []int
		for _, c := range onNICNUMA(func(n hwdetect.NUMANode) []int { return n.CPUs }) {
			if !isolated[c] && !slices.Contains(spec.PMDCPUs, c) {
				house = append(house, c)
			}
		}
		if len(house) == 0 {
			spec.Derivations = append(spec.Derivations, fmt.Sprintf(
				"dpdk.lcore_cpus: auto → not set: no housekeeping CPU on NUMA node(s) %s; DPDK uses its default", ints(nicNUMA)))
		} else {
			spec.LcoreCPUs = house[:1]
			spec.Derivations = append(spec.Derivations, fmt.Sprintf(
				"dpdk.lcore_cpus: auto → %d: the first CPU on NUMA node(s) %s that is neither isolated nor a PMD CPU", house[0], ints(nicNUMA)))
		}
	case d.LcoreCPUs.CPUs != nil:
		checkCPUs("dpdk.lcore_cpus", d.LcoreCPUs.CPUs)
		spec.LcoreCPUs = d.LcoreCPUs.CPUs
		for _, c := range d.LcoreCPUs.CPUs {
			if slices.Contains(spec.PMDCPUs, c) {
				add("dpdk.lcore_cpus", fmt.Sprintf("CPU %d is also a PMD CPU (PMD threads spin at 100 %%)", c), "pick housekeeping CPUs that are not in pmd_cpus")
				break
			}
		}
	}

	// socket_mem: hugepage MB per NUMA node, ids 0..max.
	maxID := 0
	for _, n := range numaNodes {
		maxID = max(maxID, n.ID)
	}
	switch {
	case d.SocketMem.Auto:
		free := freeHugeMB(hw, maxID)
		mem := make([]int, maxID+1)
		total := 0
		for _, id := range nicNUMA {
			if id >= 0 && id <= maxID {
				mem[id] = min(autoSocketMemMB, free[id])
				total += mem[id]
			}
		}
		if total == 0 {
			spec.Derivations = append(spec.Derivations, fmt.Sprintf(
				"dpdk.socket_mem: auto → not set: no free hugepages on NUMA node(s) %s. DPDK cannot start without them: reserve some (vm.nr_hugepages) or give dpdk.extra --no-huge for a test node", ints(nicNUMA)))
		} else {
			spec.SocketMem = mem
			spec.Derivations = append(spec.Derivations, fmt.Sprintf(
				"dpdk.socket_mem: auto → %s: up to %d MB of free hugepages on each NIC NUMA node %s, 0 elsewhere (free MB per node: %s)",
				ints(mem), autoSocketMemMB, ints(nicNUMA), ints(free)))
		}
	case d.SocketMem.MB != nil:
		checkMB("dpdk.socket_mem", d.SocketMem.MB, maxID, add)
		spec.SocketMem = d.SocketMem.MB
	}

	// socket_limit: auto caps OVS at what socket_mem reserves for it.
	switch {
	case d.SocketLimit.Auto && spec.SocketMem == nil:
		spec.Derivations = append(spec.Derivations, "dpdk.socket_limit: auto → not set: socket_mem is not set")
	case d.SocketLimit.Auto:
		spec.SocketLimit = spec.SocketMem
		spec.Derivations = append(spec.Derivations, fmt.Sprintf("dpdk.socket_limit: auto → %s: socket_mem, so OVS takes no more hugepages than it reserved", ints(spec.SocketMem)))
	case d.SocketLimit.MB != nil:
		checkMB("dpdk.socket_limit", d.SocketLimit.MB, maxID, add)
		for i, v := range d.SocketLimit.MB {
			if i < len(spec.SocketMem) && v != 0 && v < spec.SocketMem[i] {
				add("dpdk.socket_limit", fmt.Sprintf("%d MB on NUMA node %d is below socket_mem's %d MB", v, i, spec.SocketMem[i]), "raise the limit (0 = none) or lower socket_mem")
				break
			}
		}
		spec.SocketLimit = d.SocketLimit.MB
	}
}

// checkMB checks a list of MB per NUMA node (socket_mem, socket_limit).
func checkMB(key string, mb []int, maxID int, add func(key, msg, fix string)) {
	if len(mb) > maxID+1 {
		add(key, fmt.Sprintf("%d values for %d NUMA node(s)", len(mb), maxID+1), "give one value per NUMA node")
	}
	for _, v := range mb {
		if v < 0 || v > 1<<20 {
			add(key, fmt.Sprintf("%d MB is out of range", v), "give MB per NUMA node, e.g. [1024, 0]")
			return
		}
	}
}

// nicNUMANodes returns the NUMA nodes of the physnet uplinks found among the detected
// NICs (all NUMA nodes when none is found) and a sentence saying which NICs.
func nicNUMANodes(c NodeConfig, hw *hwdetect.Node, all []hwdetect.NUMANode) ([]int, string) {
	var nodes []int
	var found []string
	for _, name := range sortedKeys(c.Physnets) {
		pn := c.Physnets[name]
		for _, nic := range hw.NICs {
			if (pn.Interface != "" && nic.Name == pn.Interface) || (nic.PCIAddress != "" && strings.Contains(pn.Devargs, nic.PCIAddress)) {
				if nic.NUMANode >= 0 {
					nodes = append(nodes, nic.NUMANode)
					found = append(found, fmt.Sprintf("%s on node %d", nic.Name, nic.NUMANode))
				} else {
					found = append(found, nic.Name+" without NUMA affinity")
				}
			}
		}
	}
	sort.Ints(nodes)
	nodes = slices.Compact(nodes)
	if len(nodes) == 0 {
		for _, n := range all {
			nodes = append(nodes, n.ID)
		}
		if len(found) == 0 {
			return nodes, "no physnet uplink among the detected NICs, so every NUMA node"
		}
		return nodes, strings.Join(found, ", ") + ", so every NUMA node"
	}
	return nodes, "uplinks: " + strings.Join(found, ", ")
}

// freeHugeMB returns the free hugepage memory in MB per NUMA node 0..maxID.
func freeHugeMB(hw *hwdetect.Node, maxID int) []int {
	free := make([]int, maxID+1)
	for _, hp := range hw.Hugepages {
		mbPerPage := int(hp.SizeKB / 1024)
		if len(hp.NUMA) == 0 {
			if maxID == 0 {
				free[0] += int(hp.Free) * mbPerPage
			}
			continue
		}
		for _, n := range hp.NUMA {
			if n.Node >= 0 && n.Node <= maxID {
				free[n.Node] += int(n.Free) * mbPerPage
			}
		}
	}
	return free
}

func ints(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// cpuMask writes CPUs as the hex mask OVS expects (pmd-cpu-mask, dpdk-lcore-mask).
func cpuMask(cpus []int) string {
	if len(cpus) == 0 {
		return ""
	}
	top := slices.Max(cpus)
	digits := make([]byte, top/4+1)
	for _, c := range cpus {
		digits[c/4] |= 1 << (c % 4)
	}
	var b strings.Builder
	b.WriteString("0x")
	for i := len(digits) - 1; i >= 0; i-- {
		b.WriteString(strconv.FormatInt(int64(digits[i]), 16))
	}
	return b.String()
}
