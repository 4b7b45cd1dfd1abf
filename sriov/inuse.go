package sriov

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
)

// inUse returns, per VF index, why the VF is in use — the things that break when
// the VF is destroyed or rebound:
//   - its netdev (PCI VFs) or its representor (switchdev) is enslaved (bridge, bond,
//     kernel OVS's ovs-system) or is an OVS port (when OVS is wired in);
//   - its netdev is administratively up;
//   - it is bound to vfio-pci and a process holds its IOMMU group open (a VM, DPDK).
//
// It is best effort: what cannot be read is not counted.
func (m *Manager) inUse(ctx context.Context, pf *PF) map[int]string {
	out := map[int]string{}
	add := func(i int, why string) {
		if prev, ok := out[i]; ok {
			out[i] = prev + ", " + why
		} else {
			out[i] = why
		}
	}
	ovs := map[string]OVSInterface{}
	if m.ovs != nil {
		if ifs, err := m.ovs.Interfaces(ctx); err == nil {
			for _, i := range ifs {
				ovs[i.Name] = i
			}
		}
	}
	netdevBusy := func(nd string) string {
		if nd == "" {
			return ""
		}
		if o, ok := ovs[nd]; ok {
			s := fmt.Sprintf("%s is OVS port %s on %s", nd, o.Port, o.Bridge)
			if o.IfaceID != "" {
				s += " (tenant port " + o.IfaceID + ")"
			}
			return s
		}
		if master := linkBase(m.sys, "sys/class/net/"+nd+"/master"); master != "" {
			return nd + " is enslaved to " + master
		}
		return ""
	}
	for _, vf := range pf.VFs {
		if why := netdevBusy(vf.Netdev); why != "" {
			add(vf.Index, why)
		} else if vf.Netdev != "" && netdevUp(m.sys, vf.Netdev) {
			add(vf.Index, "netdev "+vf.Netdev+" is up")
		}
	}
	if ports, err := m.dl.Ports(ctx); err == nil {
		for _, p := range ports {
			if p.Device == pf.Device && p.Flavour == FlavourPCIVF && !p.External && p.VF >= 0 {
				if why := netdevBusy(p.Netdev); why != "" {
					add(p.VF, "representor "+why)
				}
			}
		}
	}
	open := m.openVFIOGroups()
	for _, vf := range pf.VFs {
		if vf.Driver != VFDriverVFIO || vf.PCIAddress == "" {
			continue
		}
		g := linkBase(m.sys, "sys/bus/pci/devices/"+vf.PCIAddress+"/iommu_group")
		if pids := open[g]; g != "" && len(pids) > 0 {
			add(vf.Index, fmt.Sprintf("vfio group %s is open by %s", g, strings.Join(pids, ", ")))
		}
	}
	return out
}

// netdevUp reads IFF_UP from the netdev's flags.
func netdevUp(f SysFS, nd string) bool {
	s, err := readAttr(f, "sys/class/net/"+nd+"/flags")
	if err != nil {
		return false
	}
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 32)
	return err == nil && v&1 != 0
}

// openVFIOGroups maps IOMMU group numbers to the processes ("pid 123 (qemu)") holding
// /dev/vfio/<group> open, from /proc/*/fd.
func (m *Manager) openVFIOGroups() map[string][]string {
	out := map[string][]string{}
	procs, err := m.sys.ReadDir("proc")
	if err != nil {
		return out
	}
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		fds, err := m.sys.ReadDir("proc/" + p.Name() + "/fd")
		if err != nil {
			continue
		}
		seen := map[string]bool{}
		for _, fd := range fds {
			t, err := m.sys.Readlink("proc/" + p.Name() + "/fd/" + fd.Name())
			if err != nil || !strings.HasPrefix(t, "/dev/vfio/") {
				continue
			}
			g := path.Base(t)
			if g == "vfio" || seen[g] {
				continue
			}
			seen[g] = true
			comm, _ := readAttr(m.sys, "proc/"+p.Name()+"/comm")
			out[g] = append(out[g], fmt.Sprintf("pid %s (%s)", p.Name(), comm))
		}
	}
	for g := range out {
		sort.Strings(out[g])
	}
	return out
}
