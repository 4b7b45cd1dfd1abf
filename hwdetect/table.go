package hwdetect

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// TableWidth is the terminal width WriteTable fits its lines into.
const TableWidth = 100

// tableCols are the NIC row's columns: header and width (the last one is not padded).
var tableCols = []struct {
	head  string
	width int
}{
	{"NIC", 15}, {"DRIVER", 10}, {"MODEL", 16}, {"PCI", 12}, {"NUMA", 4}, {"VFS", 7}, {"ESWITCH", 9}, {"MODE", 17},
}

// WriteTable writes the operator's view of a node: the node summary, then one row per
// NIC with its recommended mode and, under it, the reasons and the capability matrix.
// Every line fits in TableWidth columns.
func WriteTable(w io.Writer, n *Node) error {
	bw := bufio.NewWriter(w)
	kv := func(k, v string) {
		wrap(bw, fmt.Sprintf("%-10s ", k), v, TableWidth)
	}
	kv("node", fmt.Sprintf("%s · kernel %s · source %s", orDash(n.Hostname), orDash(n.Kernel), n.Source))
	kv("cpus", fmt.Sprintf("online %s · isolated %s · nohz_full %s",
		formatCPUList(n.CPUs.Online), formatCPUList(n.CPUs.Isolated), formatCPUList(n.CPUs.NohzFull)))
	var numa []string
	for _, nn := range n.CPUs.NUMA {
		numa = append(numa, fmt.Sprintf("node%d cpus %s isolated %s", nn.ID, formatCPUList(nn.CPUs), formatCPUList(nn.Isolated)))
	}
	kv("numa", strings.Join(numa, " · "))
	kv("hugepages", hugepageSummary(n.Hugepages))
	kv("iommu", iommuSummary(n.IOMMU))
	kv("ovs", ovsSummary(n.OVS))
	kf := n.KernelFeatures
	kv("kernel", fmt.Sprintf("openvswitch %s · tc_flower %s · act_ct %s · 8021q %s · vxlan %s · geneve %s · vfio_pci %s",
		kf.OVSDatapath, kf.TCFlower, kf.ActCT, kf.VLAN8021Q, kf.VXLAN, kf.Geneve, kf.VFIOPCI))
	_, _ = bw.WriteString("\n")

	head := make([]string, len(tableCols))
	for i, c := range tableCols {
		head[i] = c.head
	}
	writeRow(bw, head)
	if len(n.NICs) == 0 {
		_, _ = bw.WriteString("(no network interface backed by a device; --all lists the others)\n")
	}
	for i := range n.NICs {
		nic := &n.NICs[i]
		vfs, numa, mode := "-", "-", string(nic.RecommendedMode)
		if nic.SRIOV != nil {
			vfs = strconv.Itoa(nic.SRIOV.NumVFs) + "/" + strconv.Itoa(nic.SRIOV.TotalVFs)
		}
		if nic.NUMANode >= 0 {
			numa = strconv.Itoa(nic.NUMANode)
		}
		if mode == "" {
			mode = "(" + nic.Kind + ")"
		}
		model := nic.Model
		if model == "" {
			model = nic.DeviceName
		}
		esw := nic.EswitchMode
		if nic.SRIOV == nil && esw == EswitchUnknown {
			esw = "-" // no SR-IOV: there is no eswitch to speak of
		}
		writeRow(bw, []string{nic.Name, orDash(nic.Driver), orDash(model), orDash(nic.PCIAddress), numa, vfs, esw, mode})
		for _, r := range nic.Reasons {
			wrap(bw, "  - ", r, TableWidth)
		}
		if nic.Kind == KindDevice {
			wrap(bw, "  caps ", capSummary(nic), TableWidth)
		}
	}
	return bw.Flush()
}

func writeRow(w *bufio.Writer, cells []string) {
	var b strings.Builder
	for i, c := range tableCols {
		s := truncate(cells[i], c.width)
		b.WriteString(s)
		if i < len(tableCols)-1 {
			b.WriteString(strings.Repeat(" ", c.width-utf8.RuneCountInString(s)+1))
		}
	}
	_, _ = w.WriteString(strings.TrimRight(b.String(), " "))
	_ = w.WriteByte('\n')
}

// truncate shortens s to n runes, marking the cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// wrap writes prefix+text, folding at word boundaries so no line passes width; the
// continuation lines are indented under the text.
func wrap(w *bufio.Writer, prefix, text string, width int) {
	indent := strings.Repeat(" ", utf8.RuneCountInString(prefix))
	avail := width - len(indent)
	line := prefix
	n := 0
	for _, word := range strings.Fields(text) {
		wl := utf8.RuneCountInString(word)
		for wl > avail { // a single word longer than a line: hard split
			if n > 0 {
				_, _ = w.WriteString(line + "\n")
				line, n = indent, 0
			}
			r := []rune(word)
			_, _ = w.WriteString(line + string(r[:avail]) + "\n")
			word, wl = string(r[avail:]), wl-avail
			line = indent
		}
		if n > 0 && n+1+wl > avail {
			_, _ = w.WriteString(line + "\n")
			line, n = indent, 0
		}
		if n > 0 {
			line += " "
			n++
		}
		line += word
		n += wl
	}
	_, _ = w.WriteString(line + "\n")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func hugepageSummary(hp []HugepageSize) string {
	if len(hp) == 0 {
		return "none (no hugepage pools)"
	}
	var parts []string
	for _, h := range hp {
		s := fmt.Sprintf("%s %d/%d free", sizeLabel(h.SizeKB), h.Free, h.Total)
		if len(h.NUMA) > 1 {
			var per []string
			for _, c := range h.NUMA {
				per = append(per, fmt.Sprintf("node%d %d/%d", c.Node, c.Free, c.Total))
			}
			s += " (" + strings.Join(per, ", ") + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " · ")
}

func iommuSummary(io IOMMU) string {
	s := "disabled (no IOMMU groups)"
	if io.Enabled {
		s = fmt.Sprintf("enabled (%d groups)", io.Groups)
	}
	if io.Passthrough {
		s += " · passthrough"
	}
	if io.NoIOMMUMode {
		s += " · vfio no-IOMMU mode"
	}
	if len(io.Cmdline) > 0 {
		s += " · " + strings.Join(io.Cmdline, " ")
	}
	return s
}

func ovsSummary(o *OVSInfo) string {
	if o == nil {
		return "unknown"
	}
	if !o.Reachable {
		return "not reachable: " + o.Reason
	}
	dpdk := "DPDK not initialized"
	if o.DPDKInitialized {
		dpdk = "DPDK " + orDash(o.DPDKVersion)
	}
	return fmt.Sprintf("%s · datapaths %s · %s · hw-offload %t · %d iface types",
		o.Version, strings.Join(o.DatapathTypes, ","), dpdk, o.HWOffload, len(o.IfaceTypes))
}

func capSummary(n *NIC) string {
	c := n.Capabilities
	by := map[Level][]string{}
	for _, fc := range []struct {
		name string
		c    Capability
	}{{"vlan", c.VLAN}, {"vxlan", c.VXLANEncap}, {"geneve", c.GeneveEncap}, {"ct", c.CTOffload},
		{"police", c.Police}, {"dscp", c.DSCPRewrite}, {"vf-rate", c.VFRateLimit}} {
		by[fc.c.Level] = append(by[fc.c.Level], fc.name)
	}
	var parts []string
	for _, l := range []Level{LevelHW, LevelSW, LevelNone} {
		if len(by[l]) > 0 {
			parts = append(parts, string(l)+": "+strings.Join(by[l], " "))
		}
	}
	return strings.Join(parts, " · ") + " · dpdk: " + dpdkSummary(n.DPDK)
}

func dpdkSummary(d DPDK) string {
	switch {
	case !d.Bindable && d.PMD == "":
		return "none"
	case !d.Bindable:
		return d.PMD + " (not bindable)"
	case d.Bifurcated:
		return d.PMD + " (bifurcated)"
	}
	return d.PMD + " (vfio-pci)"
}
